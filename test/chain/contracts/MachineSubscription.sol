// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {
    Gen2Peer, Subscription, IInfoDesk, IStatePauses, IERC20Like, KEY_MACHINE_STATE_AND_SYNC
} from "./Gen2Types.sol";

/// @title Stand-in for the gen-2 MachineSubscription (bond quote, voucher credit, status).
/// @notice Set up with `harnessInit(infoDesk, admin)`; it then reports
/// `isEconomicAuthority() == true`, a 30-day period, and bonds per tier that the harness sets
/// with `harnessSetRequiredPeaqAmount` (a tier with bond 0 reverts `PriceNotAvailable()`).
/// Activation (`onMachineOnboarded`, only from MachineStateAndSync, `data = abi.encode(uint8
/// tier)`): `InvalidTier` for tier >= 3, `TechnicallyPaused` while either MachineStateAndSync
/// technical pause flag is set, `AlreadyActivated` when the machine's status is not 0; then
/// credit = min(pendingVoucherCredit(operator), bond), net = bond - credit, and exactly `net`
/// is pulled with `transferFrom(operator, address(this), net)` on `InfoDesk.peaqToken()`
/// (skipped when 0). Emits `VoucherRedeemed` (only when credit > 0) and `Activated` with the
/// full bond; stores `Subscription{tier, now, now + period, bond, 0}` and status 1 (Active).
/// Status values: 0 not activated, 1 active, 2 grace, 3 runoff, 4 terminated. An active
/// subscription reads as 2 (Grace) once `block.timestamp > periodEnd` and as 3 (Runoff) after
/// `periodEnd + graceDuration` (default 7 days; the live grace duration is an InfoDesk parameter,
/// value not known here). `harnessSetStatus` stores any status directly (a stored 1 still ages).
contract MachineSubscription is Gen2Peer {
    error AlreadyActivated();
    error InvalidTier();
    error PriceNotAvailable();
    error TechnicallyPaused();
    error SafeERC20FailedOperation(address token);

    event Activated(
        uint256 indexed machineId, address indexed operator, uint8 tier, uint256 bondedAmount, uint64 periodStart, uint64 periodEnd
    );
    event VoucherRedeemed(uint256 indexed machineId, address indexed operator, uint256 amount);

    uint8 public constant TIER_ENTRY = 0;
    uint8 public constant TIER_BASIC = 1;
    uint8 public constant TIER_PRO = 2;
    uint8 public constant TIER_COUNT = 3;

    mapping(uint256 => Subscription) private _subscriptions;
    mapping(uint256 => uint8) private _status;
    mapping(uint8 => uint256) private _requiredPeaq;
    mapping(address => uint256) private _voucherCredit;
    uint64 private _periodLength;
    uint64 private _graceDuration;
    uint256 private _totalBonded;
    uint256 private _activeCount;

    /// @notice Harness only: bond in PEAQ wei for `tier` (0 = price not available).
    function harnessSetRequiredPeaqAmount(uint8 tier, uint256 amount) external onlyOwner {
        if (tier >= TIER_COUNT) revert InvalidTier();
        _requiredPeaq[tier] = amount;
    }

    /// @notice Harness only: voucher credit an operator can redeem on its next activation.
    function harnessSetVoucherCredit(address operator, uint256 amount) external onlyOwner {
        _voucherCredit[operator] = amount;
    }

    /// @notice Harness only: force a machine's subscription status (e.g. 3 runoff, 4 terminated).
    function harnessSetStatus(uint256 machineId, uint8 status) external onlyOwner {
        _status[machineId] = status;
    }

    /// @notice Harness only: subscription period length in seconds (default 30 days).
    function harnessSetPeriodLength(uint64 seconds_) external onlyOwner {
        _periodLength = seconds_;
    }

    /// @notice Harness only: grace duration in seconds after periodEnd (default 7 days).
    function harnessSetGraceDuration(uint64 seconds_) external onlyOwner {
        _graceDuration = seconds_;
    }

    function isEconomicAuthority() external view returns (bool) {
        return _infoDesk != address(0);
    }

    function requiredPeaqAmount(uint8 tier) public view returns (uint256 amount) {
        if (tier >= TIER_COUNT) revert InvalidTier();
        amount = _requiredPeaq[tier];
        if (amount == 0) revert PriceNotAvailable();
    }

    function pendingVoucherCredit(address operator) external view returns (uint256) {
        return _voucherCredit[operator];
    }

    function voucherCredit(address operator) external view returns (uint256) {
        return _voucherCredit[operator];
    }

    function subscriptionStatus(uint256 machineId) external view returns (uint8 status) {
        status = _status[machineId];
        if (status == 1) {
            uint64 periodEnd = _subscriptions[machineId].periodEnd;
            uint64 grace = _graceDuration == 0 ? 7 days : _graceDuration;
            if (block.timestamp > uint256(periodEnd) + grace) status = 3;
            else if (block.timestamp > periodEnd) status = 2;
        }
    }

    function subscriptions(uint256 machineId) external view returns (Subscription memory) {
        return _subscriptions[machineId];
    }

    function totalBondedAmount() external view returns (uint256) {
        return _totalBonded;
    }

    function activeMachineCount() external view returns (uint256) {
        return _activeCount;
    }

    function onMachineOnboarded(uint256 machineId, address operator, bytes calldata data) external onlyStateAndSync {
        uint8 tier = abi.decode(data, (uint8));
        if (tier >= TIER_COUNT) revert InvalidTier();
        IStatePauses pauses = IStatePauses(msg.sender);
        if (pauses.isTechnicalPausedGlobal() || pauses.isTechnicalPaused(machineId)) revert TechnicallyPaused();
        if (_status[machineId] != 0) revert AlreadyActivated();
        uint256 bond = requiredPeaqAmount(tier);

        uint256 credit = _voucherCredit[operator];
        if (credit > bond) credit = bond;
        if (credit > 0) {
            _voucherCredit[operator] -= credit;
            emit VoucherRedeemed(machineId, operator, credit);
        }
        uint256 net = bond - credit;
        if (net > 0) {
            address token = IInfoDesk(_infoDesk).peaqToken();
            if (!IERC20Like(token).transferFrom(operator, address(this), net)) revert SafeERC20FailedOperation(token);
        }

        uint64 start = uint64(block.timestamp);
        uint64 period = _periodLength == 0 ? 30 days : _periodLength;
        _subscriptions[machineId] = Subscription(tier, start, start + period, bond, 0);
        _status[machineId] = 1;
        _totalBonded += bond;
        _activeCount += 1;
        emit Activated(machineId, operator, tier, bond, start, start + period);
    }
}
