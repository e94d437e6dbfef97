// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Stand-in for the peaq Batch precompile (0x…0805, Moonbeam port).
/// @notice Placed with `anvil_setCode` at 0x0000000000000000000000000000000000000805.
/// Semantics copied from peaq-network-node `precompiles/batch/src/lib.rs`:
/// * `to` fixes the number of subcalls; `value`, `callData` and `gasLimit` may be shorter
///   (missing entries are 0 / empty / 0). `gasLimit` 0 forwards all remaining gas.
/// * `batchSome`: runs every subcall, failures are skipped (`SubcallFailed(i)`).
/// * `batchSomeUntilFailure`: stops at the first failure (`SubcallFailed(i)`), no revert.
/// * `batchAll`: the first failing subcall reverts the whole batch with that subcall's revert
///   data forwarded unchanged, so the target's custom errors stay decodable.
/// * `SubcallSucceeded(i)` is emitted for every successful subcall.
/// Sender: every subcall's calldata gets the 20-byte address of the batch's caller appended
/// (ERC-2771 style, see `Common.sol`); the test contracts read it back with `_sender()`.
/// Values are sent from this contract's own balance (the functions are nonpayable as in the
/// real ABI); the SDKs always send value 0.
contract BatchPrecompile {
    event SubcallSucceeded(uint256 index);
    event SubcallFailed(uint256 index);

    enum Mode {
        All,
        Some,
        SomeUntilFailure
    }

    function batchSome(
        address[] calldata to,
        uint256[] calldata value,
        bytes[] calldata callData,
        uint64[] calldata gasLimit
    ) external {
        _run(to, value, callData, gasLimit, Mode.Some);
    }

    function batchSomeUntilFailure(
        address[] calldata to,
        uint256[] calldata value,
        bytes[] calldata callData,
        uint64[] calldata gasLimit
    ) external {
        _run(to, value, callData, gasLimit, Mode.SomeUntilFailure);
    }

    function batchAll(
        address[] calldata to,
        uint256[] calldata value,
        bytes[] calldata callData,
        uint64[] calldata gasLimit
    ) external {
        _run(to, value, callData, gasLimit, Mode.All);
    }

    function _run(
        address[] calldata to,
        uint256[] calldata value,
        bytes[] calldata callData,
        uint64[] calldata gasLimit,
        Mode mode
    ) private {
        for (uint256 i = 0; i < to.length; i++) {
            uint256 v = i < value.length ? value[i] : 0;
            uint256 g = i < gasLimit.length ? gasLimit[i] : 0;
            bytes memory payload = abi.encodePacked(i < callData.length ? callData[i] : bytes(""), msg.sender);
            (bool ok, bytes memory ret) = to[i].call{value: v, gas: g == 0 ? gasleft() : g}(payload);
            if (ok) {
                emit SubcallSucceeded(i);
                continue;
            }
            if (mode == Mode.All) {
                assembly {
                    revert(add(ret, 32), mload(ret))
                }
            }
            emit SubcallFailed(i);
            if (mode == Mode.SomeUntilFailure) return;
        }
    }
}
