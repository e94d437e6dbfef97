// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {HarnessOwnable} from "./Common.sol";

/// @title Stand-in for the gen-1 IdentityStaking (bond bookkeeping + the views SDK/CLI read).
/// @notice Set up with `initialize(stakingToken, owner)` (real ABI) and `authorize(registry)`.
/// The 1 PEAQ bond arrives as `msg.value` on `IdentityRegistry.register()`; the registry
/// forwards it here with `stakeNative(machineId, owner)` (test-chain wiring, only callable by
/// an authorised address). `harnessSetStake` lets a test un-bond a machine (e.g. to provoke
/// `MachineNotBonded`). Stake status: 0 none, 1 active.
contract IdentityStaking is HarnessOwnable {
    error AlreadyStaked();
    error AmountZero();
    error NotAuthorized();
    error InvalidAddress();

    event Staked(uint256 indexed machineId, address indexed owner, uint256 amount);
    event Authorized(address indexed addr);
    event Revoked(address indexed addr);

    mapping(uint256 => uint256) private _stakes;
    mapping(address => bool) private _authorized;
    address private _stakingToken;
    uint256 private _totalStaked;

    function initialize(address _stakingTokenAddr, address _owner) external {
        _initOwner(_owner);
        _stakingToken = _stakingTokenAddr;
    }

    function authorize(address addr) external onlyOwner {
        if (addr == address(0)) revert InvalidAddress();
        _authorized[addr] = true;
        emit Authorized(addr);
    }

    function revoke(address addr) external onlyOwner {
        _authorized[addr] = false;
        emit Revoked(addr);
    }

    function isAuthorized(address addr) external view returns (bool) {
        return _authorized[addr];
    }

    /// @notice Test-chain wiring: records a native bond forwarded by the IdentityRegistry.
    function stakeNative(uint256 machineId, address owner_) external payable {
        if (!_authorized[msg.sender]) revert NotAuthorized();
        if (msg.value == 0) revert AmountZero();
        if (_stakes[machineId] != 0) revert AlreadyStaked();
        _stakes[machineId] = msg.value;
        _totalStaked += msg.value;
        emit Staked(machineId, owner_, msg.value);
    }

    /// @notice Harness only: overwrite a machine's recorded stake (0 = not bonded).
    function harnessSetStake(uint256 machineId, uint256 amount) external onlyOwner {
        _totalStaked = _totalStaked - _stakes[machineId] + amount;
        _stakes[machineId] = amount;
    }

    function getStake(uint256 machineId) external view returns (uint256) {
        return _stakes[machineId];
    }

    function isStaked(uint256 machineId) external view returns (bool) {
        return _stakes[machineId] != 0;
    }

    function getStakeInfo(uint256 machineId)
        external
        view
        returns (uint256 amount, uint8 status, uint32 slashCount, uint64 unstakeRequestTime)
    {
        amount = _stakes[machineId];
        status = amount == 0 ? 0 : 1;
        slashCount = 0;
        unstakeRequestTime = 0;
    }

    function totalStaked() external view returns (uint256) {
        return _totalStaked;
    }

    function stakingToken() external view returns (address) {
        return _stakingToken;
    }

    function paused() external pure returns (bool) {
        return false;
    }
}
