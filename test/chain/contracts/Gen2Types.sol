// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {HarnessOwnable} from "./Common.sol";

/// @notice Gen-2 (Economics 2.0) shared types, peer keys and interfaces.
/// Peer keys are `keccak256(<PeerKeys.sol constant name>)`, exactly what SDK 0.12.1
/// `onboarding/_internal/preflight.py` hashes for `InfoDesk.peer(bytes32)`.

struct VerificationMethod {
    string id;
    string methodType;
    address controller;
    string publicKeyMultibase;
}

struct ServiceEndpoint {
    string id;
    string serviceType;
    string serviceEndpoint;
}

struct DIDDocument {
    string id;
    address controller;
    VerificationMethod[] verificationMethods;
    uint256[] authentication;
    ServiceEndpoint[] serviceEndpoints;
}

struct Subscription {
    uint8 tier;
    uint64 periodStart;
    uint64 periodEnd;
    uint256 bondedAmount;
    uint256 accumulatedPoints;
}

bytes32 constant KEY_MACHINE_REGISTRY = keccak256("MACHINE_REGISTRY");
bytes32 constant KEY_MACHINE_SUBSCRIPTION = keccak256("MACHINE_SUBSCRIPTION");
bytes32 constant KEY_MACHINE_STATE_AND_SYNC = keccak256("MACHINE_STATE_AND_SYNC");
bytes32 constant KEY_CROSS_CHAIN_MIRROR = keccak256("CROSS_CHAIN_MIRROR");
bytes32 constant KEY_MACHINE_BRIDGE_ADAPTER = keccak256("MACHINE_BRIDGE_ADAPTER");
bytes32 constant KEY_SUBSCRIPTION_TOKEN_PROVISION_POOL = keccak256("SUBSCRIPTION_TOKEN_PROVISION_POOL");

interface IInfoDesk {
    function peer(bytes32 key) external view returns (address);
    function peaqToken() external view returns (address);
    function localChainId() external view returns (uint16);
}

interface IMachineRegistry {
    function computeTokenId(string calldata machineType_, bytes calldata credentialSubject_) external pure returns (uint256);
    function ownerOf(uint256 tokenId) external view returns (address);
    function controllerOf(uint256 tokenId) external view returns (address);
}

interface IMachineSubscription {
    function subscriptionStatus(uint256 machineId) external view returns (uint8);
}

interface IStatePauses {
    function isTechnicalPaused(uint256 machineId) external view returns (bool);
    function isTechnicalPausedGlobal() external view returns (bool);
}

interface IOnboardingPeer {
    function onMachineOnboarded(uint256 machineId, address operator, bytes calldata data) external;
}

interface IERC20Like {
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// @notice Base of every gen-2 stand-in: owner plus the InfoDesk it resolves peers from.
/// The real contracts take `infoDesk_` as an immutable constructor argument; the stand-ins
/// keep it in storage, set once by `harnessInit(infoDesk_, owner_)`.
abstract contract Gen2Peer is HarnessOwnable {
    error InvalidAddress();
    error NotMachineStateAndSync();

    address internal _infoDesk;

    function harnessInit(address infoDesk_, address owner_) external {
        if (infoDesk_ == address(0)) revert InvalidAddress();
        _initOwner(owner_);
        _infoDesk = infoDesk_;
    }

    function infoDesk() external view returns (address) {
        return _infoDesk;
    }

    function _peer(bytes32 key) internal view returns (address) {
        return IInfoDesk(_infoDesk).peer(key);
    }

    modifier onlyStateAndSync() {
        if (msg.sender != _peer(KEY_MACHINE_STATE_AND_SYNC)) revert NotMachineStateAndSync();
        _;
    }
}
