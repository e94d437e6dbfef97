// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {EventStore} from "./EventStore.sol";
import {IInfoDesk, IMachineRegistry, IMachineSubscription, KEY_MACHINE_REGISTRY, KEY_MACHINE_SUBSCRIPTION} from "./Gen2Types.sol";

/// @title Stand-in for the gen-2 EventRegistry (2.0), placed at the peaq-mainnet record address.
/// @notice Set up with `harnessInit(infoDesk, admin)`. Authorisation, in this order:
///   1. `MachineRegistry.ownerOf(machineId)` first — a missing machine bubbles up
///      `ERC721NonexistentToken(machineId)` from the registry unchanged;
///   2. caller must be that owner or `MachineRegistry.controllerOf(machineId)`, else
///      `NotOwnerOrController()`;
///   3. `MachineSubscription.subscriptionStatus(machineId)` must be 1 (Active) or 2 (Grace),
///      else `SubscriptionNotEligible(status)`.
/// Then the shared field checks of `EventStore`.
contract EventRegistryV2 is EventStore {
    error InvalidAddress();
    error NotOwnerOrController();
    error SubscriptionNotEligible(uint8 status);

    address private _infoDesk;

    function harnessInit(address infoDesk_, address owner_) external {
        if (infoDesk_ == address(0)) revert InvalidAddress();
        _initOwner(owner_);
        _infoDesk = infoDesk_;
    }

    function infoDesk() external view returns (address) {
        return _infoDesk;
    }

    function priorEventCount(uint256) external pure returns (uint256) {
        return 0;
    }

    function _authorize(uint256 machineId, address caller) internal view override {
        IMachineRegistry registry = IMachineRegistry(IInfoDesk(_infoDesk).peer(KEY_MACHINE_REGISTRY));
        address owner_ = registry.ownerOf(machineId);
        if (caller != owner_ && caller != registry.controllerOf(machineId)) revert NotOwnerOrController();
        uint8 status =
            IMachineSubscription(IInfoDesk(_infoDesk).peer(KEY_MACHINE_SUBSCRIPTION)).subscriptionStatus(machineId);
        if (status != 1 && status != 2) revert SubscriptionNotEligible(status);
    }
}
