// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Shared building blocks of the peaqOS test chain.
/// @notice Every stand-in on the test chain is placed with `anvil_setCode`, so no constructor
/// ever runs: state is set up by an `initialize(...)` (when the real ABI has one with the
/// right arguments) or by a `harnessInit(...)` call made once by the harness.
///
/// Sender forwarding (ERC-2771 style). On peaq the Batch precompile (0x…0805) runs each
/// subcall with the EOA that called the batch as `msg.sender`. A contract cannot do that, so
/// the stand-in Batch appends the 20-byte address of its caller to every subcall's calldata,
/// and every test contract that authorises callers reads its effective sender with
/// `_sender()`: when `msg.sender` is the Batch address, the last 20 calldata bytes; otherwise
/// `msg.sender`. Solidity's ABI decoder ignores trailing calldata, so appended bytes never
/// change how arguments decode. Contracts do NOT trust the tail from any other caller.
abstract contract BatchAware {
    address internal constant BATCH_PRECOMPILE = 0x0000000000000000000000000000000000000805;

    function _sender() internal view returns (address account) {
        if (msg.sender == BATCH_PRECOMPILE && msg.data.length >= 24) {
            assembly {
                account := shr(96, calldataload(sub(calldatasize(), 20)))
            }
        } else {
            account = msg.sender;
        }
    }
}

/// @notice Owner handling shared by the stand-ins (OpenZeppelin Ownable errors and event).
abstract contract HarnessOwnable is BatchAware {
    error OwnableUnauthorizedAccount(address account);
    error InvalidInitialization();

    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    address private _owner;

    modifier onlyOwner() {
        address caller = _sender();
        if (caller != _owner) revert OwnableUnauthorizedAccount(caller);
        _;
    }

    function owner() external view returns (address) {
        return _owner;
    }

    /// @dev One-shot: a second call, or a zero owner, reverts `InvalidInitialization()`.
    function _initOwner(address initialOwner) internal {
        if (_owner != address(0) || initialOwner == address(0)) revert InvalidInitialization();
        _owner = initialOwner;
        emit OwnershipTransferred(address(0), initialOwner);
    }
}

library Decimal {
    function toString(uint256 value) internal pure returns (string memory) {
        if (value == 0) return "0";
        uint256 digits;
        for (uint256 v = value; v != 0; v /= 10) digits++;
        bytes memory out = new bytes(digits);
        while (value != 0) {
            digits--;
            out[digits] = bytes1(uint8(48 + (value % 10)));
            value /= 10;
        }
        return string(out);
    }
}
