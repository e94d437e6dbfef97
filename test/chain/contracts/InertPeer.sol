// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Placeholder bytecode for gen-2 roles the test chain does not implement.
/// @notice SDK 0.12.1's preflight only requires non-empty bytecode at MachineBridgeAdapter
/// and SubscriptionTokenProvisionPool plus their `InfoDesk.peer()` entries. Any call to this
/// contract reverts with empty data.
contract InertPeer {}
