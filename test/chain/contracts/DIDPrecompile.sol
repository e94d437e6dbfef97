// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {BatchAware} from "./Common.sol";

/// @title Stand-in for the peaq DID precompile (0x…0800).
/// @notice Placed with `anvil_setCode` at 0x0000000000000000000000000000000000000800; no setup.
/// Behaviour (SPEC §2.2, peaq-network-node `precompiles/peaq-did` + pallet `peaq-pallet-did`):
/// * attributes are keyed by (didAccount, keccak256(name));
/// * the effective sender (`_sender()`, so batch subcalls count as the EOA) must equal
///   `didAccount`, as the peaqOS CLI states, else `Error("AttributeAuthorizationFailed")`;
/// * `addAttribute` is add-only: an existing name reverts `Error("AttributeAlreadyExist")`;
/// * `updateAttribute` / `removeAttribute` on a missing name revert `Error("AttributeNotFound")`;
/// * `readAttribute` on a missing name reverts `Error("Cannot find the item")` (the exact text
///   the CLI matches);
/// * name > 64 bytes: `Error("Name too long")`; value > 2560 bytes: `Error("Value too long")`;
/// * `validity` = block number until which the attribute is valid: `validityFor` 0 means no
///   expiry and stores `type(uint32).max`, otherwise `block.number + validityFor`;
///   `created` = block timestamp in milliseconds (pallet_timestamp `Moment`, GUESS).
/// Events are emitted like the node does: ONE topic (topic0) and every field in the data
/// (the SDK ABI marks sender/didAccount/validity `indexed`; topic0 is identical either way).
/// The SDK ABI's `EntryNotFound(address,bytes)` custom error is not used: the node reverts
/// with the string above.
contract DIDPrecompile is BatchAware {
    struct Attribute {
        bytes name;
        bytes value;
        uint32 validity;
        uint256 created;
    }

    event AddAttribute(address sender, address didAccount, bytes name, bytes value, uint32 validity);
    event UpdateAttribute(address sender, address didAccount, bytes name, bytes value, uint32 validity);
    event RemoveAttribute(address didAccount, bytes name);

    uint256 private constant MAX_NAME_SIZE = 64;
    uint256 private constant MAX_VALUE_SIZE = 2560;

    mapping(address => mapping(bytes32 => Attribute)) private _attributes;
    mapping(address => mapping(bytes32 => bool)) private _exists;

    function readAttribute(address didAccount, bytes calldata name) external view returns (Attribute memory) {
        bytes32 key = keccak256(name);
        require(_exists[didAccount][key], "Cannot find the item");
        return _attributes[didAccount][key];
    }

    function addAttribute(address didAccount, bytes calldata name, bytes calldata value, uint32 validityFor)
        external
        returns (bool)
    {
        address caller = _authorize(didAccount, name, value);
        bytes32 key = keccak256(name);
        require(!_exists[didAccount][key], "AttributeAlreadyExist");
        _exists[didAccount][key] = true;
        uint32 validity = _store(didAccount, key, name, value, validityFor);
        emit AddAttribute(caller, didAccount, name, value, validity);
        return true;
    }

    function updateAttribute(address didAccount, bytes calldata name, bytes calldata value, uint32 validityFor)
        external
        returns (bool)
    {
        address caller = _authorize(didAccount, name, value);
        bytes32 key = keccak256(name);
        require(_exists[didAccount][key], "AttributeNotFound");
        uint32 validity = _store(didAccount, key, name, value, validityFor);
        emit UpdateAttribute(caller, didAccount, name, value, validity);
        return true;
    }

    function removeAttribute(address didAccount, bytes calldata name) external returns (bool) {
        _authorize(didAccount, name, "");
        bytes32 key = keccak256(name);
        require(_exists[didAccount][key], "AttributeNotFound");
        delete _exists[didAccount][key];
        delete _attributes[didAccount][key];
        emit RemoveAttribute(didAccount, name);
        return true;
    }

    function _authorize(address didAccount, bytes calldata name, bytes memory value) private view returns (address caller) {
        caller = _sender();
        require(caller == didAccount, "AttributeAuthorizationFailed");
        require(name.length <= MAX_NAME_SIZE, "Name too long");
        require(value.length <= MAX_VALUE_SIZE, "Value too long");
    }

    function _store(address didAccount, bytes32 key, bytes calldata name, bytes calldata value, uint32 validityFor)
        private
        returns (uint32 validity)
    {
        if (validityFor == 0) {
            validity = type(uint32).max;
        } else {
            uint256 until = block.number + validityFor;
            require(until < type(uint32).max, "MaxBlockNumberExceeded");
            validity = uint32(until);
        }
        Attribute storage a = _attributes[didAccount][key];
        a.name = name;
        a.value = value;
        a.validity = validity;
        a.created = block.timestamp * 1000;
    }
}
