// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {EventStore} from "./EventStore.sol";

interface IIdentityRegistryGate {
    function machineExists(uint256 machineId) external view returns (bool);
    function isDeactivated(uint256 machineId) external view returns (bool);
    function isAuthorizedOrOwner(address caller, uint256 machineId) external view returns (bool);
}

interface IIdentityStakingGate {
    function isStaked(uint256 machineId) external view returns (bool);
}

/// @title Stand-in for the gen-1 EventRegistry (1.0).
/// @notice Set up with `initialize(identityRegistry, identityStaking, owner)` (the real ABI).
/// Authorisation, in this order: `MachineNotFound()` unless IdentityRegistry.machineExists,
/// `MachineNotBonded()` unless IdentityStaking.isStaked, `MachineDeactivated()` when
/// IdentityRegistry.isDeactivated, `NotAuthorizedSubmitter()` unless
/// IdentityRegistry.isAuthorizedOrOwner(caller, machineId) (machine owner or its operator;
/// the exact live rule is not documented, this is the SPEC §3.8 GUESS). Then the shared field
/// checks of `EventStore`.
contract EventRegistryV1 is EventStore {
    error InvalidAddress();
    error MachineNotFound();
    error MachineNotBonded();
    error MachineDeactivated();
    error NotAuthorizedSubmitter();

    event IdentityRegistrySet(address indexed registry);
    event IdentityStakingSet(address indexed staking);

    address private _registry;
    address private _staking;

    function initialize(address _identityRegistry, address _identityStaking, address _owner) external {
        if (_identityRegistry == address(0) || _identityStaking == address(0)) revert InvalidAddress();
        _initOwner(_owner);
        _registry = _identityRegistry;
        _staking = _identityStaking;
        emit IdentityRegistrySet(_identityRegistry);
        emit IdentityStakingSet(_identityStaking);
    }

    function identityRegistryAddress() external view returns (address) {
        return _registry;
    }

    function identityStakingAddress() external view returns (address) {
        return _staking;
    }

    function _authorize(uint256 machineId, address caller) internal view override {
        IIdentityRegistryGate registry = IIdentityRegistryGate(_registry);
        if (!registry.machineExists(machineId)) revert MachineNotFound();
        if (!IIdentityStakingGate(_staking).isStaked(machineId)) revert MachineNotBonded();
        if (registry.isDeactivated(machineId)) revert MachineDeactivated();
        if (!registry.isAuthorizedOrOwner(caller, machineId)) revert NotAuthorizedSubmitter();
    }
}
