// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {HarnessOwnable} from "./Common.sol";

/// @title Storage, validation and views shared by both EventRegistry generations.
/// @notice `submitEvent` (selector 0xe58a43ca) runs, in this order:
///   1. `EnforcedPause()` while paused;
///   2. the generation's authorisation (`_authorize`, see EventRegistryV1/EventRegistryV2);
///   3. `FutureTimestamp()` when `timestamp > block.timestamp`;
///   4. `InvalidEventType()` unless eventType is 0 (revenue) or 1 (activity);
///   5. `InvalidTrustLevel()` unless trustLevel is 0, 1 or 2;
///   6. `InvalidCurrencyShape()`: revenue needs `[A-Z0-9]{CURRENCY_MIN_LEN,CURRENCY_MAX_LEN}`
///      = 3..10 characters, activity needs the empty string;
///   7. `MetadataTooLarge()` when `metadata.length > MAX_METADATA_SIZE` (1024 bytes);
/// then appends the event to the machine's list and emits
/// `EventSubmitted(machineId, index, eventType, value, currency)` (currency indexed, i.e.
/// topic3 = keccak256(bytes(currency))).
/// Views: `getEventCount`, `getEventAt` (index >= count: `OffsetOutOfBounds()`), `getEvents`
/// (offset > count: `OffsetOutOfBounds()`; at most `MAX_QUERY_LIMIT` = 100 items),
/// `totalEventCount`. No sourceChainId / dataHash checks are made on chain.
abstract contract EventStore is HarnessOwnable {
    struct MachineEvent {
        uint256 machineId;
        uint8 eventType;
        uint256 value;
        uint256 timestamp;
        bytes32 dataHash;
        uint8 trustLevel;
        uint256 sourceChainId;
        bytes32 sourceTxHash;
        bytes metadata;
        string currency;
    }

    error EnforcedPause();
    error ExpectedPause();
    error FutureTimestamp();
    error InvalidEventType();
    error InvalidTrustLevel();
    error InvalidCurrencyShape();
    error MetadataTooLarge();
    error OffsetOutOfBounds();

    event EventSubmitted(
        uint256 indexed machineId, uint256 indexed eventIndex, uint8 eventType, uint256 value, string indexed currency
    );
    event Paused(address account);
    event Unpaused(address account);

    uint256 public constant MAX_METADATA_SIZE = 1024;
    uint256 public constant CURRENCY_MIN_LEN = 3;
    uint256 public constant CURRENCY_MAX_LEN = 10;
    uint256 public constant MAX_QUERY_LIMIT = 100;

    mapping(uint256 => MachineEvent[]) private _events;
    uint256 private _total;
    bool private _paused;

    function _authorize(uint256 machineId, address caller) internal view virtual;

    function submitEvent(
        uint256 machineId,
        uint8 eventType,
        uint256 value,
        string memory currency,
        uint256 timestamp,
        bytes32 dataHash,
        uint8 trustLevel,
        uint256 sourceChainId,
        bytes32 sourceTxHash,
        bytes memory metadata
    ) external {
        if (_paused) revert EnforcedPause();
        _authorize(machineId, _sender());
        if (timestamp > block.timestamp) revert FutureTimestamp();
        if (eventType > 1) revert InvalidEventType();
        if (trustLevel > 2) revert InvalidTrustLevel();
        if (!_isValidCurrencyShape(eventType, currency)) revert InvalidCurrencyShape();
        if (metadata.length > MAX_METADATA_SIZE) revert MetadataTooLarge();

        MachineEvent storage e = _events[machineId].push();
        e.machineId = machineId;
        e.eventType = eventType;
        e.value = value;
        e.timestamp = timestamp;
        e.dataHash = dataHash;
        e.trustLevel = trustLevel;
        e.sourceChainId = sourceChainId;
        e.sourceTxHash = sourceTxHash;
        e.metadata = metadata;
        e.currency = currency;
        _total += 1;
        emit EventSubmitted(machineId, _events[machineId].length - 1, eventType, value, currency);
    }

    function getEventCount(uint256 machineId) external view returns (uint256) {
        return _events[machineId].length;
    }

    function getEventAt(uint256 machineId, uint256 index) external view returns (MachineEvent memory) {
        if (index >= _events[machineId].length) revert OffsetOutOfBounds();
        return _events[machineId][index];
    }

    function getEvents(uint256 machineId, uint256 offset, uint256 limit) external view returns (MachineEvent[] memory out) {
        MachineEvent[] storage list = _events[machineId];
        if (offset > list.length) revert OffsetOutOfBounds();
        uint256 n = list.length - offset;
        if (n > limit) n = limit;
        if (n > MAX_QUERY_LIMIT) n = MAX_QUERY_LIMIT;
        out = new MachineEvent[](n);
        for (uint256 i = 0; i < n; i++) {
            out[i] = list[offset + i];
        }
    }

    function totalEventCount() external view returns (uint256) {
        return _total;
    }

    function paused() external view returns (bool) {
        return _paused;
    }

    function pause() external onlyOwner {
        if (_paused) revert EnforcedPause();
        _paused = true;
        emit Paused(_sender());
    }

    function unpause() external onlyOwner {
        if (!_paused) revert ExpectedPause();
        _paused = false;
        emit Unpaused(_sender());
    }

    function _isValidCurrencyShape(uint8 eventType, string memory currency) private pure returns (bool) {
        bytes memory c = bytes(currency);
        if (eventType == 1) return c.length == 0;
        if (c.length < CURRENCY_MIN_LEN || c.length > CURRENCY_MAX_LEN) return false;
        for (uint256 i = 0; i < c.length; i++) {
            bytes1 ch = c[i];
            if (!((ch >= "A" && ch <= "Z") || (ch >= "0" && ch <= "9"))) return false;
        }
        return true;
    }
}
