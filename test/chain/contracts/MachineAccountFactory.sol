// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {MachineSmartAccount} from "./MachineSmartAccount.sol";

/// @title Stand-in for the gen-1 MachineAccountFactory (SDK 0.11.2 smart accounts).
/// @notice `createAccount(owner, machine, salt)` (0x1230aea2) deploys a MachineSmartAccount with
/// CREATE2 under the salt `keccak256(abi.encode(owner, machine, salt))`, initialises it and emits
/// `AccountCreated(account, owner, machine)`; `getAddress(owner, machine, salt)` (0x08a6354e)
/// predicts that address. The real factory deploys beacon proxies (its CREATE2 inputs are not in
/// the SDK); the prediction = deployment property is what the node and the SDK rely on.
/// Creating an account that exists reverts `FailedDeployment()`, as OpenZeppelin's `Create2.deploy`
/// does, so a client must check for the account first. Zero owner or machine: `InvalidAddress()`.
contract MachineAccountFactory {
    error InvalidAddress();
    error FailedDeployment();

    event AccountCreated(address indexed account, address indexed owner, address indexed machine);

    function createAccount(address owner, address machine, uint256 salt) external returns (address account) {
        if (owner == address(0) || machine == address(0)) revert InvalidAddress();
        account = getAddress(owner, machine, salt);
        if (account.code.length != 0) revert FailedDeployment();
        MachineSmartAccount created = new MachineSmartAccount{salt: _salt(owner, machine, salt)}();
        if (address(created) != account) revert FailedDeployment();
        created.initialize(owner, machine);
        emit AccountCreated(account, owner, machine);
    }

    function getAddress(address owner, address machine, uint256 salt) public view returns (address) {
        bytes32 codeHash = keccak256(type(MachineSmartAccount).creationCode);
        bytes32 h = keccak256(abi.encodePacked(bytes1(0xff), address(this), _salt(owner, machine, salt), codeHash));
        return address(uint160(uint256(h)));
    }

    function getInitCode(address, address, uint256) external pure returns (bytes memory) {
        return type(MachineSmartAccount).creationCode;
    }

    /// No ERC-4337 EntryPoint and no beacon on the test chain.
    function entryPoint() external pure returns (address) {
        return address(0);
    }

    function beacon() external view returns (address) {
        return address(this);
    }

    function _salt(address owner, address machine, uint256 salt) private pure returns (bytes32) {
        return keccak256(abi.encode(owner, machine, salt));
    }
}
