// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Gen2Peer, IInfoDesk} from "./Gen2Types.sol";

/// @title Stand-in for the gen-2 CrossChainMirror (home-chain registry only).
/// @notice Set up with `harnessInit(infoDesk, admin)`. Activation (`onMachineOnboarded` from
/// MachineStateAndSync) registers the machine's home chain as `InfoDesk.localChainId()` (the
/// protocol chain id, 1 = peaq) and emits `HomeChainRegistered`.
/// `isHomedLocally(id) = homeChainOf(id) != 0 && homeChainOf(id) == localChainId()`.
/// `harnessSetHomeChain` lets a test mark a machine as homed elsewhere.
contract CrossChainMirror is Gen2Peer {
    error AlreadyRegistered();

    event HomeChainRegistered(uint256 indexed machineId, uint16 homeChainId);
    event HomeChainUpdated(uint256 indexed machineId, uint16 previousChainId, uint16 newChainId);

    mapping(uint256 => uint16) private _homeChain;

    function homeChainOf(uint256 machineId) external view returns (uint16) {
        return _homeChain[machineId];
    }

    function isHomedLocally(uint256 machineId) external view returns (bool) {
        uint16 home = _homeChain[machineId];
        return home != 0 && home == IInfoDesk(_infoDesk).localChainId();
    }

    function onMachineOnboarded(uint256 machineId, address, bytes calldata) external onlyStateAndSync {
        if (_homeChain[machineId] != 0) revert AlreadyRegistered();
        uint16 local = IInfoDesk(_infoDesk).localChainId();
        _homeChain[machineId] = local;
        emit HomeChainRegistered(machineId, local);
    }

    /// @notice Harness only: set (or clear with 0) a machine's home chain.
    function harnessSetHomeChain(uint256 machineId, uint16 homeChainId) external onlyOwner {
        uint16 previous = _homeChain[machineId];
        _homeChain[machineId] = homeChainId;
        emit HomeChainUpdated(machineId, previous, homeChainId);
    }
}
