//! Revert decoding into the SDK's error codes.
//!
//! Revert data is matched by 4-byte selector against the errors declared in [`crate::bindings`]
//! (the Batch precompile's `batchAll` forwards a failing subcall's revert data unchanged, so the
//! same decoder serves batches). Code tables:
//! * [`RevertScope::EventsGen2`]: SDK 0.12.1 `utils/transaction.py` `REVERT_CODES`
//!   (`NotOwnerOrController→NOT_OWNER_OR_CONTROLLER`, …, `ERC721NonexistentToken→MACHINE_NOT_FOUND`),
//!   other names keep themselves as the code; messages from `KNOWN_REVERTS`.
//! * [`RevertScope::Legacy`]: SDK 0.11.2 `KNOWN_REVERTS`, code = Solidity error name.
//! * [`RevertScope::Activation`]: SDK 0.12.1 `utils/revert.py` `_CODE_BY_SOLIDITY_ERROR`, unknown
//!   names → `CONTRACT_REVERTED`.
//! * `Error(string)`: the DID precompile's "Cannot find the item" → `ATTRIBUTE_NOT_FOUND`;
//!   "AlreadyExists"/"AttributeExists"/"AttributeAlreadyExist" → `ATTRIBUTE_ALREADY_EXISTS`;
//!   a reason naming a known error → that error's code (SDK substring fallback); otherwise
//!   `TX_REVERTED` with `"Transaction reverted: <reason>"`.

use alloy::primitives::{hex, keccak256};
use alloy::sol_types::SolError;

use crate::bindings::*;
use crate::error::{ChainError, ErrorCode};

/// Which SDK table applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevertScope {
    EventsGen2,
    Legacy,
    Activation,
}

/// A decoded revert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRevert {
    /// Solidity error name (`Error` for `Error(string)`), empty if unknown.
    pub name: String,
    pub code: ErrorCode,
    pub message: String,
}

/// Every custom error declared in [`crate::bindings`], as its Solidity signature.
pub fn declared_error_signatures() -> Vec<&'static str> {
    macro_rules! sigs {
        ($($t:ty),* $(,)?) => { vec![$(<$t as SolError>::SIGNATURE),*] };
    }
    use IEventRegistry as E;
    use IIdentityRegistry as R;
    use IMachineNft as N;
    use IMachineRegistry as M;
    use IMachineStateAndSync as S;
    use IMachineSubscription as U;
    sigs!(
        E::FutureTimestamp,
        E::InvalidCurrencyShape,
        E::InvalidEventType,
        E::InvalidTrustLevel,
        E::MetadataTooLarge,
        E::OffsetOutOfBounds,
        E::EnforcedPause,
        E::InvalidAddress,
        E::MachineDeactivated,
        E::MachineNotBonded,
        E::MachineNotFound,
        E::NotAuthorizedSubmitter,
        E::NotOwnerOrController,
        E::SubscriptionNotEligible,
        E::NotMachineStateAndSync,
        R::AlreadyRegistered,
        R::BondBelowFloor,
        R::BondNotRequired,
        R::IncorrectBondAmount,
        R::InvalidMachineAddress,
        R::WalletAlreadyBound,
        R::IdentityNFTSoulbound,
        R::ContractNotConfigured,
        R::NotMachineOwner,
        IIdentityStaking::AlreadyStaked,
        IIdentityStaking::AmountZero,
        IIdentityStaking::NotAuthorized,
        N::AlreadyMinted,
        N::RecipientMustBeMachineOwner,
        S::MachineRelocating,
        S::NotActive,
        S::NotSuspended,
        S::TierChosenOnSubscriptionChain,
        M::CredentialSubjectMismatch,
        M::InvalidAuthenticationIndex,
        M::InvalidDIDFormat,
        M::ERC721NonexistentToken,
        U::AlreadyActivated,
        U::InvalidTier,
        U::PriceNotAvailable,
        U::TechnicallyPaused,
        U::TierChangeWhileActive,
        U::NotActivated,
        IDid::EntryNotFound,
        IMachineAccountFactory::Create2EmptyBytecode,
        IMachineAccountFactory::FailedDeployment,
        IMachineAccountFactory::InsufficientBalance,
        N::ERC721InsufficientApproval,
        N::ERC721IncorrectOwner,
        N::ERC721InvalidApprover,
        IMachineNftAdapter::NoPeer,
        IMachineNftAdapter::NotEnoughNative,
        IMachineNftAdapter::OnlyNFTOwner,
        IMachineNftAdapter::InvalidReceiver,
        IMachineNftAdapter::LzTokenUnavailable,
        IMachineNftAdapter::InvalidOptions,
    )
}

/// The declared error named `name`, as a `'static` name (see [`crate::error::ErrorCode::Solidity`]).
pub(crate) fn declared_error_name(name: &str) -> Option<&'static str> {
    declared_error_signatures().into_iter().map(|s| s.split('(').next().unwrap_or(s)).find(|n| *n == name)
}

/// Selector → error name.
fn error_name(data: &[u8]) -> Option<&'static str> {
    let sel = data.get(..4)?;
    declared_error_signatures()
        .into_iter()
        .find(|s| &keccak256(s.as_bytes())[..4] == sel)
        .map(|s| s.split('(').next().unwrap_or(s))
}

const GEN2_CODES: &[(&str, ErrorCode)] = &[
    ("NotOwnerOrController", ErrorCode::NotOwnerOrController),
    ("SubscriptionNotEligible", ErrorCode::SubscriptionNotEligible),
    ("MetadataTooLarge", ErrorCode::MetadataTooLarge),
    ("InvalidCurrencyShape", ErrorCode::InvalidCurrencyShape),
    ("FutureTimestamp", ErrorCode::FutureTimestamp),
    ("ERC721NonexistentToken", ErrorCode::MachineNotFound),
];

const GEN2_MESSAGES: &[(&str, &str)] = &[
    ("NotOwnerOrController", "Caller is neither the owner nor the DID controller of the machine"),
    ("SubscriptionNotEligible", "Machine subscription is not Active or Grace"),
    ("MetadataTooLarge", "Event metadata exceeds the EventRegistry limit"),
    ("InvalidCurrencyShape", "Currency code has the wrong length or characters for this event type"),
    ("FutureTimestamp", "Event timestamp is later than the block timestamp"),
    ("ERC721NonexistentToken", "Machine does not exist on this deployment"),
    ("InvalidAddress", "Invalid address (zero address not allowed)"),
    ("InvalidEventType", "Invalid event type"),
    ("InvalidTrustLevel", "Invalid trust level"),
];

const GEN1_MESSAGES: &[(&str, &str)] = &[
    ("AlreadyRegistered", "Machine address is already registered"),
    ("InvalidMachineAddress", "Invalid machine address (zero address not allowed)"),
    ("AmountZero", "Bond amount must be greater than zero"),
    ("AlreadyStaked", "Machine is already bonded/staked"),
    ("MachineNotBonded", "Machine is not bonded"),
    ("MachineNotFound", "Machine not found in the registry"),
    ("AlreadyMinted", "NFT already minted for this machine"),
    ("NotMachineOwner", "Caller is not the machine owner"),
    ("RecipientMustBeMachineOwner", "Operator mint requires recipient to be the machine owner"),
    ("InvalidAddress", "Invalid address (zero address not allowed)"),
    ("MachineDeactivated", "Machine is deactivated"),
    ("NotAuthorizedSubmitter", "Caller is not authorized submitter"),
    ("InvalidEventType", "Invalid event type"),
    ("InvalidTrustLevel", "Invalid trust level"),
];

const ACTIVATION_CODES: &[(&str, ErrorCode)] = &[
    ("AlreadyActivated", ErrorCode::AlreadyActivated),
    ("AlreadyTerminated", ErrorCode::AlreadyTerminated),
    ("ERC721NonexistentToken", ErrorCode::MachineNotFound),
    ("InsufficientBalance", ErrorCode::InsufficientBalance),
    ("InvalidTier", ErrorCode::InvalidTier),
    ("MachineRelocating", ErrorCode::MachineRelocating),
    ("NotActivated", ErrorCode::NotActivated),
    ("NotActive", ErrorCode::NotActive),
    ("NotMachineOwner", ErrorCode::NotMachineOwner),
    ("NotOwnerOrController", ErrorCode::NotOwnerOrController),
    ("NotSuspended", ErrorCode::NotSuspended),
    ("PriceNotAvailable", ErrorCode::PriceNotAvailable),
    ("TechnicallyPaused", ErrorCode::TechnicallyPaused),
    ("TierChangeWhileActive", ErrorCode::TierChangeWhileActive),
];

fn lookup<T: Copy>(table: &[(&str, T)], k: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
}

fn from_name(scope: RevertScope, name: &'static str) -> DecodedRevert {
    let (code, message) = match scope {
        RevertScope::EventsGen2 => (
            lookup(GEN2_CODES, name).unwrap_or(ErrorCode::Solidity(name)),
            lookup(GEN2_MESSAGES, name).map(str::to_string).unwrap_or_else(|| format!("Transaction reverted: {name}")),
        ),
        RevertScope::Legacy => (
            ErrorCode::Solidity(name),
            lookup(GEN1_MESSAGES, name).map(str::to_string).unwrap_or_else(|| format!("Transaction reverted: {name}")),
        ),
        RevertScope::Activation => (
            lookup(ACTIVATION_CODES, name).unwrap_or(ErrorCode::ContractReverted),
            format!("Contract reverted with {name}"),
        ),
    };
    DecodedRevert { name: name.to_string(), code, message }
}

fn known_names(scope: RevertScope) -> Vec<&'static str> {
    match scope {
        RevertScope::EventsGen2 => GEN2_MESSAGES.iter().map(|p| p.0).collect(),
        RevertScope::Legacy => GEN1_MESSAGES.iter().map(|p| p.0).collect(),
        RevertScope::Activation => ACTIVATION_CODES.iter().map(|p| p.0).collect(),
    }
}

/// Classify a free-text revert reason (an `Error(string)` payload or a node's error message).
pub fn decode_reason(scope: RevertScope, reason: &str) -> DecodedRevert {
    if reason.contains("Cannot find the item") {
        return DecodedRevert { name: "Error".into(), code: ErrorCode::AttributeNotFound, message: reason.to_string() };
    }
    if ["AlreadyExists", "AttributeExists", "AttributeAlreadyExist"].iter().any(|m| reason.contains(m)) {
        return DecodedRevert {
            name: "Error".into(),
            code: ErrorCode::AttributeAlreadyExists,
            message: reason.to_string(),
        };
    }
    for n in known_names(scope) {
        if reason.contains(n) {
            return from_name(scope, n);
        }
    }
    DecodedRevert {
        name: "Error".into(),
        code: ErrorCode::TxReverted,
        message: format!("Transaction reverted: {reason}"),
    }
}

/// Decode raw revert data.
pub fn decode(scope: RevertScope, data: &[u8]) -> DecodedRevert {
    if let Ok(e) = IBuiltinErrors::Error::abi_decode(data) {
        return decode_reason(scope, &e.message);
    }
    if let Ok(p) = IBuiltinErrors::Panic::abi_decode(data) {
        return DecodedRevert {
            name: "Panic".into(),
            code: ErrorCode::TxReverted,
            message: format!("Transaction reverted: panic code {}", p.code),
        };
    }
    if let Some(name) = error_name(data) {
        return from_name(scope, name);
    }
    DecodedRevert {
        name: String::new(),
        code: if scope == RevertScope::Activation { ErrorCode::ContractReverted } else { ErrorCode::TxReverted },
        message: format!("Transaction reverted: 0x{}", hex::encode(data)),
    }
}

/// As a [`ChainError::Revert`].
pub fn to_error(scope: RevertScope, data: &[u8]) -> ChainError {
    let d = decode(scope, data);
    ChainError::Revert { code: d.code, message: d.message, data: format!("0x{}", hex::encode(data)) }
}
