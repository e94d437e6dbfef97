//! The one error type of this crate, shaped for the ROS service responses.
//!
//! Every variant maps to a stable `code()` (the SDK's codes where the SDK has one: `VALIDATION_ERROR`
//! carries the SDK `ValidationError` field/constraint/message, `TYPE_ERROR` is the SDK's value
//! `TypeError`, revert codes come from [`crate::revert`], MCR codes from [`crate::mcr`]) and a
//! `field()` naming the input concerned (empty when none). Messages never contain key material:
//! signers appear only as addresses, RPC URLs are reduced to scheme+host by [`redact_url`].
//!
//! The code strings themselves live in one table, [`ErrorCode`]; variants carry an `ErrorCode`, and
//! `code()` gives its string. No variant wraps another error (they carry text), so none has a
//! `#[source]`.

use thiserror::Error;

// `ErrorCode` and its string table, written once: the variants, `LISTED` and `as_str` all come
// from the one list in the invocation below.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $v:ident => $s:literal,)*) => {
        /// The machine-readable error codes, spelled exactly as the SDK spells them. This table is the one
        /// place the strings live ([`ErrorCode::as_str`], [`ErrorCode::parse`]); the crate names variants.
        ///
        /// Besides the listed codes, a contract error's Solidity name serves as the code where the SDK
        /// keeps it ([`ErrorCode::Solidity`]: gen-1 reverts, gen-2 errors its table does not rename), and
        /// text that names neither (a stored record or another crate's string) stays as it is
        /// ([`ErrorCode::Unlisted`]), so converting text to a code and back never changes it.
        #[derive(Debug, Clone, Copy)]
        pub enum ErrorCode {
            $($(#[$doc])* $v,)*
            /// A custom error declared in [`crate::bindings`], by its Solidity name.
            Solidity(&'static str),
            /// Text no listed code or declared error spells (see [`ErrorCode::parse`]).
            Unlisted(&'static str),
        }

        impl ErrorCode {
            const LISTED: &'static [ErrorCode] = &[$(ErrorCode::$v),*];

            /// The SDK's string for this code.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(ErrorCode::$v => $s,)*
                    ErrorCode::Solidity(name) => name,
                    ErrorCode::Unlisted(text) => text,
                }
            }
        }
    };
}

error_codes! {
    // Validation, type and operational-limit refusals (before anything is stored or sent)
    ValidationError => "VALIDATION_ERROR",
    TypeError => "TYPE_ERROR",
    ValueCapExceeded => "VALUE_CAP_EXCEEDED",
    RateLimited => "RATE_LIMITED",
    // Configuration
    ConfigInvalid => "CONFIG_INVALID",
    DeploymentUnavailable => "DEPLOYMENT_UNAVAILABLE",
    DeploymentUnknown => "DEPLOYMENT_UNKNOWN",
    GenerationUnsupported => "GENERATION_UNSUPPORTED",
    SignerUnavailable => "SIGNER_UNAVAILABLE",
    ProxyNotRegistered => "PROXY_NOT_REGISTERED",
    // Transport and RPC
    RpcUnavailable => "RPC_UNAVAILABLE",
    RpcError => "RPC_ERROR",
    RpcRateLimited => "RPC_RATE_LIMITED",
    BadRpcResponse => "BAD_RPC_RESPONSE",
    ReadFailed => "READ_FAILED",
    // Durable store
    StoreIo => "STORE_IO",
    StoreCorrupt => "STORE_CORRUPT",
    StoreLocked => "STORE_LOCKED",
    /// The store's file system is full (ENOSPC/EDQUOT): new intents are refused until space is
    /// freed; stored intents are intact and go on once it is.
    StoreFull => "STORE_FULL",
    // Outcome of a submitted transaction
    TxReverted => "TX_REVERTED",
    TxFailed => "TX_FAILED",
    ReceiptAwaitFailed => "RECEIPT_AWAIT_FAILED",
    NonceConflict => "NONCE_CONFLICT",
    RebroadcastRefused => "REBROADCAST_REFUSED",
    GasLimitExceedsBlock => "GAS_LIMIT_EXCEEDS_BLOCK",
    MergeRecordMissing => "MERGE_RECORD_MISSING",
    IntentUnknown => "INTENT_UNKNOWN",
    RegisteredEventMissing => "REGISTERED_EVENT_MISSING",
    RegisteredEventMalformed => "REGISTERED_EVENT_MALFORMED",
    MintOwnerMismatch => "MINT_OWNER_MISMATCH",
    // Gen-1 smart accounts (SDK 0.11.2 `smart_account`)
    AccountCreatedEventMissing => "ACCOUNT_CREATED_EVENT_MISSING",
    AccountCreatedEventMalformed => "ACCOUNT_CREATED_EVENT_MALFORMED",
    InvalidAddressResult => "INVALID_ADDRESS_RESULT",
    // Gen-1 NFT bridge (SDK 0.11.2 `bridge`) and the node's own refusals around it
    InvalidFeeResult => "INVALID_FEE_RESULT",
    NotTokenOwner => "NOT_TOKEN_OWNER",
    ArrivalTimeout => "ARRIVAL_TIMEOUT",
    Cancelled => "CANCELLED",
    // Decoded reverts (SDK `REVERT_CODES`, the DID precompile's reasons)
    NotOwnerOrController => "NOT_OWNER_OR_CONTROLLER",
    SubscriptionNotEligible => "SUBSCRIPTION_NOT_ELIGIBLE",
    MetadataTooLarge => "METADATA_TOO_LARGE",
    InvalidCurrencyShape => "INVALID_CURRENCY_SHAPE",
    FutureTimestamp => "FUTURE_TIMESTAMP",
    MachineNotFound => "MACHINE_NOT_FOUND",
    AttributeNotFound => "ATTRIBUTE_NOT_FOUND",
    AttributeAlreadyExists => "ATTRIBUTE_ALREADY_EXISTS",
    // Gen-2 activation (SDK `ActivationError.code`, `_CODE_BY_SOLIDITY_ERROR`)
    ContractReverted => "CONTRACT_REVERTED",
    AlreadyActivated => "ALREADY_ACTIVATED",
    AlreadyTerminated => "ALREADY_TERMINATED",
    InsufficientBalance => "INSUFFICIENT_BALANCE",
    InvalidTier => "INVALID_TIER",
    MachineRelocating => "MACHINE_RELOCATING",
    NotActivated => "NOT_ACTIVATED",
    NotActive => "NOT_ACTIVE",
    NotMachineOwner => "NOT_MACHINE_OWNER",
    NotSuspended => "NOT_SUSPENDED",
    PriceNotAvailable => "PRICE_NOT_AVAILABLE",
    TechnicallyPaused => "TECHNICALLY_PAUSED",
    TierChangeWhileActive => "TIER_CHANGE_WHILE_ACTIVE",
    ChainMismatch => "CHAIN_MISMATCH",
    ContractNotDeployed => "CONTRACT_NOT_DEPLOYED",
    PeerUnset => "PEER_UNSET",
    PeerMismatch => "PEER_MISMATCH",
    NotEconomicAuthority => "NOT_ECONOMIC_AUTHORITY",
    MachineIdMismatch => "MACHINE_ID_MISMATCH",
    MaxNetPeaqExceeded => "MAX_NET_PEAQ_EXCEEDED",
    AllowanceInsufficient => "ALLOWANCE_INSUFFICIENT",
    ApprovalFailed => "APPROVAL_FAILED",
    PendingTransaction => "PENDING_TRANSACTION",
    EventMismatch => "EVENT_MISMATCH",
    StateMismatch => "STATE_MISMATCH",
    // MCR API (SDK `ApiError.code`)
    Timeout => "TIMEOUT",
    NetworkError => "NETWORK_ERROR",
    BadResponse => "BAD_RESPONSE",
    MachineHomedElsewhere => "MACHINE_HOMED_ELSEWHERE",
    Conflict => "CONFLICT",
    InvalidRequest => "INVALID_REQUEST",
    Unauthorized => "UNAUTHORIZED",
    NotFound => "NOT_FOUND",
    ServiceUnavailable => "SERVICE_UNAVAILABLE",
    ServerError => "SERVER_ERROR",
    HttpError => "HTTP_ERROR",
    // Gas Station (SDK 0.12.1 `gas_station`: the faucet's codes its `_FUND_ERRORS` and
    // `_SETUP_ERRORS` name, and its client-side codes; `RATE_LIMITED` and `NETWORK_ERROR` above)
    Invalid2fa => "INVALID_2FA",
    TwoFactorNotConfigured => "2FA_NOT_CONFIGURED",
    TwoFactorNotActive => "2FA_NOT_ACTIVE",
    TwoFactorLocked => "2FA_LOCKED",
    DuplicateRequest => "DUPLICATE_REQUEST",
    RequestAlreadyProcessed => "REQUEST_ALREADY_PROCESSED",
    CapExceededOwner => "CAP_EXCEEDED_OWNER",
    CapExceededWallet => "CAP_EXCEEDED_WALLET",
    TransferFailed => "TRANSFER_FAILED",
    InvalidOwnerAddress => "INVALID_OWNER_ADDRESS",
    QrGenerationFailed => "QR_GENERATION_FAILED",
    InvalidResponse => "INVALID_RESPONSE",
    UnexpectedResponse => "UNEXPECTED_RESPONSE",
}

impl ErrorCode {
    /// The code `text` spells: a listed code, else a declared Solidity error name, else
    /// [`ErrorCode::Unlisted`] with the text kept (interned once per distinct text; in practice
    /// only hand-edited records get there, since every stored code was written from a variant).
    pub fn parse(text: &str) -> ErrorCode {
        if let Some(c) = Self::LISTED.iter().find(|c| c.as_str() == text) {
            return *c;
        }
        if let Some(name) = crate::revert::declared_error_name(text) {
            return ErrorCode::Solidity(name);
        }
        ErrorCode::Unlisted(intern(text))
    }
}

/// A `'static` copy of `text`, made once per distinct text.
fn intern(text: &str) -> &'static str {
    static SEEN: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = seen.iter().find(|s| **s == text) {
        return s;
    }
    let s: &'static str = Box::leak(text.to_owned().into_boxed_str());
    seen.push(s);
    s
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Codes are equal when they spell the same string (whichever variant holds it).
impl PartialEq for ErrorCode {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for ErrorCode {}

impl std::hash::Hash for ErrorCode {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl From<&str> for ErrorCode {
    fn from(text: &str) -> Self {
        ErrorCode::parse(text)
    }
}

/// Errors of the chain client. `code()`/`field()`/`to_string()` fill the node's
/// `success/error_code/error_field/message` response fields.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ChainError {
    /// SDK `ValidationError(field, constraint, message)`.
    #[error("{message}")]
    Validation { field: String, constraint: String, message: String },
    /// SDK `TypeError` of the value type guard (field `value`).
    #[error("{message}")]
    Type { field: String, message: String },
    /// SDK `ValueCapExceeded(value, cap)`: refused before anything was stored or sent.
    #[error("Value {value} exceeds cap {cap}")]
    ValueCapExceeded { value: String, cap: String },
    /// SDK `RateLimitExceeded(machine_id, count, max_events, window_seconds)`: refused before anything was stored or sent.
    #[error("Machine {machine_id}: {count}/{max_events} events in {window_seconds}s")]
    RateLimited { machine_id: String, count: u64, max_events: u64, window_seconds: u64 },
    /// Configuration problem (`CONFIG_INVALID`, `DEPLOYMENT_UNAVAILABLE`, `DEPLOYMENT_UNKNOWN`).
    #[error("{message}")]
    Config { code: ErrorCode, field: String, message: String },
    /// A contract revert decoded by [`crate::revert`] (code = SDK code or Solidity error name).
    #[error("{message}")]
    Revert { code: ErrorCode, message: String, data: String },
    /// Transport/RPC failure (`RPC_UNAVAILABLE`, `RPC_ERROR`, `RPC_RATE_LIMITED`, `BAD_RPC_RESPONSE`).
    #[error("{message}")]
    Rpc { code: ErrorCode, message: String },
    /// Outcome of a submitted transaction (`TX_REVERTED`, `RECEIPT_AWAIT_FAILED`, `NONCE_CONFLICT`,
    /// `REGISTERED_EVENT_MISSING`, ...). `intent_id`/`tx_hash` let the caller follow up.
    #[error("{message}")]
    Tx { code: ErrorCode, message: String, intent_id: String, tx_hash: String },
    /// Gen-2 activation step failure (SDK `ActivationError.code`).
    #[error("{message}")]
    Activation { code: ErrorCode, field: String, message: String },
    /// Durable store problem (`STORE_IO`, `STORE_CORRUPT`, `STORE_LOCKED`), names the path.
    #[error("{message}")]
    Store { code: ErrorCode, path: String, message: String },
    /// MCR API error (SDK `ApiError.code`).
    #[error("{message}")]
    Api { code: ErrorCode, status: u16, message: String },
    /// Gas Station refusal or failure (SDK 0.12.1 `ApiError.code` of `fund_from_gas_station`),
    /// about `field` (`two_factor_code`, `owner_address`, `request_id`, `faucet_base_url`, ...).
    #[error("{message}")]
    /// `request_id` names the funding request concerned (empty: none was sent).
    Faucet { code: ErrorCode, field: String, status: u16, message: String, request_id: String },
}

impl ChainError {
    /// Stable machine-readable code (the SDK's string).
    pub fn code(&self) -> &str {
        self.error_code().as_str()
    }

    /// The code as an [`ErrorCode`].
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ChainError::Validation { .. } => ErrorCode::ValidationError,
            ChainError::Type { .. } => ErrorCode::TypeError,
            ChainError::ValueCapExceeded { .. } => ErrorCode::ValueCapExceeded,
            ChainError::RateLimited { .. } => ErrorCode::RateLimited,
            ChainError::Config { code, .. }
            | ChainError::Revert { code, .. }
            | ChainError::Rpc { code, .. }
            | ChainError::Tx { code, .. }
            | ChainError::Activation { code, .. }
            | ChainError::Store { code, .. }
            | ChainError::Api { code, .. }
            | ChainError::Faucet { code, .. } => *code,
        }
    }

    /// Input field concerned, empty when none.
    pub fn field(&self) -> &str {
        match self {
            ChainError::Validation { field, .. }
            | ChainError::Type { field, .. }
            | ChainError::Config { field, .. }
            | ChainError::Activation { field, .. }
            | ChainError::Faucet { field, .. } => field,
            ChainError::ValueCapExceeded { .. } => "value",
            ChainError::RateLimited { .. } => "machine_id",
            ChainError::Store { path, .. } => path,
            _ => "",
        }
    }

    /// SDK-style validation error.
    pub fn validation(field: &str, constraint: &str, message: impl Into<String>) -> Self {
        ChainError::Validation { field: field.into(), constraint: constraint.into(), message: message.into() }
    }

    pub(crate) fn config(code: ErrorCode, field: &str, message: impl Into<String>) -> Self {
        ChainError::Config { code, field: field.into(), message: message.into() }
    }

    pub(crate) fn rpc(code: ErrorCode, message: impl Into<String>) -> Self {
        ChainError::Rpc { code, message: message.into() }
    }

    pub(crate) fn activation(code: ErrorCode, field: &str, message: impl Into<String>) -> Self {
        ChainError::Activation { code, field: field.into(), message: message.into() }
    }

    pub(crate) fn store(code: ErrorCode, path: &std::path::Path, message: impl std::fmt::Display) -> Self {
        let p = path.display().to_string();
        ChainError::Store { code, message: format!("{p}: {message}"), path: p }
    }
}

/// Reduce a URL to `scheme://host[:port]` so API keys embedded in paths or queries never reach
/// logs or error strings.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host);
            format!("{scheme}://{host}")
        }
        None => "<invalid url>".to_string(),
    }
}

pub type Result<T, E = ChainError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_paths_and_userinfo() {
        assert_eq!(redact_url("https://user:pw@rpc.example.com/v1/SECRETKEY?x=1"), "https://rpc.example.com");
        assert_eq!(redact_url("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
        assert_eq!(redact_url("nonsense"), "<invalid url>");
    }

    #[test]
    fn codes_and_fields() {
        let e = ChainError::validation("currency", "must be \"\"", "activity events require an empty currency string");
        assert_eq!(e.code(), "VALIDATION_ERROR");
        assert_eq!(e.field(), "currency");
        let e = ChainError::RateLimited { machine_id: "42".into(), count: 2, max_events: 2, window_seconds: 60 };
        assert_eq!(e.code(), "RATE_LIMITED");
        assert_eq!(e.to_string(), "Machine 42: 2/2 events in 60s");
    }
}
