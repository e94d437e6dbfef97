// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {
    Gen2Peer,
    DIDDocument,
    IMachineRegistry,
    IOnboardingPeer,
    KEY_MACHINE_REGISTRY,
    KEY_MACHINE_SUBSCRIPTION,
    KEY_CROSS_CHAIN_MIRROR
} from "./Gen2Types.sol";

/// @title Stand-in for the gen-2 MachineStateAndSync (atomic activation + pause flags).
/// @notice Set up with `harnessInit(infoDesk, admin)`.
/// `activateMachine(doc, machineType, credentialSubject, manufacturer, tier)` with the effective
/// sender as owner, operator and payer:
///   1. machineId = MachineRegistry.computeTokenId(machineType, credentialSubject);
///   2. MachineSubscription.onMachineOnboarded(id, sender, abi.encode(tier)) — InvalidTier,
///      TechnicallyPaused, AlreadyActivated, PriceNotAvailable, net-bond transferFrom, Activated;
///   3. MachineRegistry.onMachineOnboarded(id, sender, abi.encode(doc, type, subject, manufacturer))
///      — Transfer + MachineMinted;
///   4. CrossChainMirror.onMachineOnboarded(id, sender, "") — HomeChainRegistered;
///   5. emit MachineOnboarded(id, sender).
/// Peer reverts bubble up unchanged (the SDK decodes them against the peers' ABIs).
/// Pause flags are plain owner-set booleans; relocation is never in progress.
contract MachineStateAndSync is Gen2Peer {
    event MachineOnboarded(uint256 indexed machineId, address indexed operator);
    event TechnicalPausedSet(uint256 indexed machineId, bool value);
    event TechnicalPausedGlobalSet(bool value);
    event GeneralPausedSet(uint256 indexed machineId, bool value);
    event GeneralPausedGlobalSet(bool value);

    mapping(uint256 => bool) private _technicalPaused;
    mapping(uint256 => bool) private _generalPaused;
    bool private _technicalPausedGlobal;
    bool private _generalPausedGlobal;

    function activateMachine(
        DIDDocument calldata doc,
        string calldata machineType_,
        bytes calldata credentialSubject_,
        address manufacturer_,
        uint8 tier
    ) external returns (uint256 machineId) {
        address operator = _sender();
        machineId = IMachineRegistry(_peer(KEY_MACHINE_REGISTRY)).computeTokenId(machineType_, credentialSubject_);
        IOnboardingPeer(_peer(KEY_MACHINE_SUBSCRIPTION)).onMachineOnboarded(machineId, operator, abi.encode(tier));
        IOnboardingPeer(_peer(KEY_MACHINE_REGISTRY)).onMachineOnboarded(
            machineId, operator, abi.encode(doc, machineType_, credentialSubject_, manufacturer_)
        );
        IOnboardingPeer(_peer(KEY_CROSS_CHAIN_MIRROR)).onMachineOnboarded(machineId, operator, "");
        emit MachineOnboarded(machineId, operator);
    }

    function isTechnicalPaused(uint256 machineId) external view returns (bool) {
        return _technicalPaused[machineId];
    }

    function isTechnicalPausedGlobal() external view returns (bool) {
        return _technicalPausedGlobal;
    }

    function isGeneralPaused(uint256 machineId) external view returns (bool) {
        return _generalPaused[machineId] || _generalPausedGlobal;
    }

    function isGeneralPausedGlobal() external view returns (bool) {
        return _generalPausedGlobal;
    }

    function isRelocating(uint256) external pure returns (bool) {
        return false;
    }

    function isMachineAvailable(uint256 machineId) external view returns (bool) {
        return !(_technicalPaused[machineId] || _technicalPausedGlobal || _generalPaused[machineId] || _generalPausedGlobal);
    }

    function setTechnicalPaused(uint256 machineId, bool paused) external onlyOwner {
        _technicalPaused[machineId] = paused;
        emit TechnicalPausedSet(machineId, paused);
    }

    function setTechnicalPausedGlobal(bool paused) external onlyOwner {
        _technicalPausedGlobal = paused;
        emit TechnicalPausedGlobalSet(paused);
    }

    function setGeneralPaused(uint256 machineId, bool paused) external onlyOwner {
        _generalPaused[machineId] = paused;
        emit GeneralPausedSet(machineId, paused);
    }

    function setGeneralPausedGlobal(bool paused) external onlyOwner {
        _generalPausedGlobal = paused;
        emit GeneralPausedGlobalSet(paused);
    }
}
