// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Stand-in for the gen-1 MachineSmartAccount (ERC-4337 account of one machine).
/// @notice Deployed by the MachineAccountFactory stand-in with CREATE2 and set up once with
/// `initialize(owner, machine)` (real ABI). Only what the node and the SDK read is here: `owner()`,
/// `machine()`, `entryPoint()` and receiving native value; no user operations (subset).
contract MachineSmartAccount {
    error InvalidAddress();
    error InvalidInitialization();

    event Initialized(uint64 version);
    event OwnerChanged(address indexed previousOwner, address indexed newOwner);
    event MachineChanged(address indexed previousMachine, address indexed newMachine);

    address private _owner;
    address private _machine;
    address private immutable _factory;

    constructor() {
        _factory = msg.sender;
    }

    function initialize(address owner_, address machine_) external {
        if (msg.sender != _factory || _owner != address(0)) revert InvalidInitialization();
        if (owner_ == address(0) || machine_ == address(0)) revert InvalidAddress();
        _owner = owner_;
        _machine = machine_;
        emit OwnerChanged(address(0), owner_);
        emit MachineChanged(address(0), machine_);
        emit Initialized(1);
    }

    function owner() external view returns (address) {
        return _owner;
    }

    function machine() external view returns (address) {
        return _machine;
    }

    function entryPoint() external pure returns (address) {
        return address(0);
    }

    receive() external payable {}
}
