//! Typed errors of the Machine Markets client.
//!
//! Every HTTP error of the orchestration API is [`MarketError::Api`] with the server's `code`
//! (ORCHESTRATION.md §1.7–1.8): the SDK does not map HTTP statuses to classes and neither do we;
//! callers branch on [`ApiCode`]. Garbage answers become `BAD_RESPONSE` (not JSON, or an error
//! body without `{error:{code,message}}`) or `INVALID_RESPONSE_SHAPE` (JSON of the wrong shape, the
//! message naming the field), as the SDK reports them. Server `details` are kept for callers with
//! secret-looking keys redacted, and never appear in `Display`.
use std::path::PathBuf;

use serde_json::Value;

macro_rules! api_codes {
    ($($variant:ident => $code:literal,)*) => {
        /// An orchestration error code: the SDK's 34 `CommonErrorCode`s, the other server codes it
        /// names, the two client-synthesised ones, and [`ApiCode::Other`] for codes it does not know
        /// (the SDK types `code` as `str`: unknown codes pass through).
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum ApiCode {
            $($variant,)*
            Other(String),
        }

        impl ApiCode {
            /// Every named code, in the order of ORCHESTRATION.md §1.8.
            pub const KNOWN: &'static [ApiCode] = &[$(ApiCode::$variant,)*];

            /// The code as it appears on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ApiCode::$variant => $code,)*
                    ApiCode::Other(s) => s,
                }
            }

            /// Parse a wire code; unknown codes are kept as [`ApiCode::Other`].
            pub fn parse(code: &str) -> ApiCode {
                match code {
                    $($code => ApiCode::$variant,)*
                    other => ApiCode::Other(other.to_owned()),
                }
            }
        }
    };
}

api_codes! {
    AuthRequired => "AUTH_REQUIRED",
    AuthInvalid => "AUTH_INVALID",
    AgentAuthRequired => "AGENT_AUTH_REQUIRED",
    AgentAuthInvalid => "AGENT_AUTH_INVALID",
    AgentAuthExpired => "AGENT_AUTH_EXPIRED",
    ValidationError => "VALIDATION_ERROR",
    NotFound => "NOT_FOUND",
    MachineNotActive => "MACHINE_NOT_ACTIVE",
    MachineNotActivated => "MACHINE_NOT_ACTIVATED",
    MachineIdentityExists => "MACHINE_IDENTITY_EXISTS",
    MachineIdentityImmutable => "MACHINE_IDENTITY_IMMUTABLE",
    MachineIdentityProofRequired => "MACHINE_IDENTITY_PROOF_REQUIRED",
    MachineIdentityProofInvalid => "MACHINE_IDENTITY_PROOF_INVALID",
    MachineIdentityProofExpired => "MACHINE_IDENTITY_PROOF_EXPIRED",
    PeaqosIdentityUnavailable => "PEAQOS_IDENTITY_UNAVAILABLE",
    AgentPairingProofRequired => "AGENT_PAIRING_PROOF_REQUIRED",
    AgentPairingProofInvalid => "AGENT_PAIRING_PROOF_INVALID",
    AgentPairingProofExpired => "AGENT_PAIRING_PROOF_EXPIRED",
    AgentPairingUnavailable => "AGENT_PAIRING_UNAVAILABLE",
    AgentPairingRequired => "AGENT_PAIRING_REQUIRED",
    AgentPairingInactive => "AGENT_PAIRING_INACTIVE",
    AgentPolicyDenied => "AGENT_POLICY_DENIED",
    AgentSpendLimitExceeded => "AGENT_SPEND_LIMIT_EXCEEDED",
    AgentDailyLimitExceeded => "AGENT_DAILY_LIMIT_EXCEEDED",
    QuoteExpired => "QUOTE_EXPIRED",
    OrderClosed => "ORDER_CLOSED",
    OrderNotDelivered => "ORDER_NOT_DELIVERED",
    ExecutionUnsupported => "EXECUTION_UNSUPPORTED",
    PaymentRequired => "PAYMENT_REQUIRED",
    PaymentRpcRequired => "PAYMENT_RPC_REQUIRED",
    PaymentRpcError => "PAYMENT_RPC_ERROR",
    PaymentNotMined => "PAYMENT_NOT_MINED",
    PaymentTxFailed => "PAYMENT_TX_FAILED",
    PaymentTransferNotFound => "PAYMENT_TRANSFER_NOT_FOUND",
    StreamDeliveryNotReady => "STREAM_DELIVERY_NOT_READY",
    IotReplayUnavailable => "IOT_REPLAY_UNAVAILABLE",
    Onem2mCommandConflict => "ONEM2M_COMMAND_CONFLICT",
    Onem2mActionRejected => "ONEM2M_ACTION_REJECTED",
    Onem2mActionTimeout => "ONEM2M_ACTION_TIMEOUT",
    Onem2mSubmissionUnknown => "ONEM2M_SUBMISSION_UNKNOWN",
    Onem2mCseUnavailable => "ONEM2M_CSE_UNAVAILABLE",
    Onem2mProtocolError => "ONEM2M_PROTOCOL_ERROR",
    Onem2mTimeout => "ONEM2M_TIMEOUT",
    BadResponse => "BAD_RESPONSE",
    InvalidResponseShape => "INVALID_RESPONSE_SHAPE",
}

impl std::fmt::Display for ApiCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Failure of a Machine Markets operation.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// The server answered with an error, or with something that is not a valid answer.
    /// `status` is the HTTP status (0 for `INVALID_RESPONSE_SHAPE`, as in the SDK).
    #[error("{op}: orchestration API error {code} (HTTP {status}): {message}")]
    Api { op: &'static str, code: ApiCode, status: u16, message: String, details: Option<Box<Value>> },
    /// No answer: connection refused/reset, DNS, TLS, or a timeout.
    #[error("{op}: request to {url} failed{}: {reason}", if *.timeout { " (timeout)" } else { "" })]
    Network { op: &'static str, url: String, reason: String, timeout: bool },
    /// Bad configuration (URL, secret file), detected before any request.
    #[error("market config {field}: {message}")]
    Config { field: &'static str, message: String },
    /// A value given to the client is invalid, detected before any request.
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    /// Durable state could not be written or read.
    #[error(transparent)]
    Fs(#[from] peaqos_base::fsio::FsError),
    /// A state file exists but is not what this crate writes.
    #[error("market state {}: {message}", path.display())]
    State { path: PathBuf, message: String },
    /// A step hook asked to stop (tests use it to simulate a crash between steps).
    #[error("stopped after step {0}")]
    Interrupted(&'static str),
    /// Onboarding needs the on-chain machine id, and it is not known yet.
    #[error("the on-chain machine id is not known yet: configure it or activate the machine first")]
    MachineIdUnknown,
    /// The chain could not be read or written (a payment check, a sale's revenue event): the
    /// chain client's code (`CHAIN_UNREACHABLE`, `BAD_CHAIN_ANSWER`, `VALIDATION_ERROR`, …).
    #[error("chain {code}: {message}")]
    Chain { code: String, message: String },
    /// The node itself refused (a delegation limit, a budget, a cancel after payment), before
    /// anything was signed or sent; `code` is the server's code for the same case where one exists.
    #[error("{code}: {message}")]
    Refused { code: &'static str, field: String, message: String },
}

pub type Result<T, E = MarketError> = std::result::Result<T, E>;

impl MarketError {
    /// The orchestration code of an API error.
    pub fn code(&self) -> Option<&ApiCode> {
        match self {
            MarketError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A code for callers that report errors as text (ROS responses, diagnostics): the API code,
    /// else `NETWORK_ERROR`, `CONFIG_ERROR`, `VALIDATION_ERROR`, `IO_ERROR`, `STATE_ERROR`,
    /// `INTERRUPTED` or `MACHINE_ID_UNKNOWN`.
    pub fn error_code(&self) -> &str {
        match self {
            MarketError::Api { code, .. } => code.as_str(),
            MarketError::Network { .. } => "NETWORK_ERROR",
            MarketError::Config { .. } => "CONFIG_ERROR",
            MarketError::Validation { .. } => "VALIDATION_ERROR",
            MarketError::Fs(_) => "IO_ERROR",
            MarketError::State { .. } => "STATE_ERROR",
            MarketError::Interrupted(_) => "INTERRUPTED",
            MarketError::MachineIdUnknown => "MACHINE_ID_UNKNOWN",
            MarketError::Chain { code, .. } => code,
            MarketError::Refused { code, .. } => code,
        }
    }

    /// The setting or field an error is about, when it names one.
    pub fn field(&self) -> &str {
        match self {
            MarketError::Config { field, .. } => field,
            MarketError::Validation { field, .. } => field,
            MarketError::Refused { field, .. } => field,
            _ => "",
        }
    }

    /// True for an API error with this code.
    pub fn is(&self, code: &ApiCode) -> bool {
        self.code() == Some(code)
    }

    /// True when trying again later may succeed: no answer, HTTP 5xx/429/408, a garbage answer, or
    /// `PEAQOS_IDENTITY_UNAVAILABLE`. Auth, validation and conflict errors are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            MarketError::Network { .. } => true,
            MarketError::Chain { code, .. } => code == "CHAIN_UNREACHABLE" || code == "BAD_CHAIN_ANSWER",
            MarketError::Api { code, status, .. } => {
                *status >= 500
                    || *status == 429
                    || *status == 408
                    || matches!(code, ApiCode::BadResponse | ApiCode::InvalidResponseShape)
                    || *code == ApiCode::PeaqosIdentityUnavailable
            }
            _ => false,
        }
    }

    pub(crate) fn api(op: &'static str, code: ApiCode, status: u16, message: impl Into<String>) -> MarketError {
        MarketError::Api { op, code, status, message: message.into(), details: None }
    }

    pub(crate) fn shape(op: &'static str, message: impl Into<String>) -> MarketError {
        MarketError::api(op, ApiCode::InvalidResponseShape, 0, format!("invalid response: {}", message.into()))
    }

    pub(crate) fn bad_chain_answer(message: String) -> MarketError {
        MarketError::Chain { code: "BAD_CHAIN_ANSWER".into(), message }
    }

    pub(crate) fn from_chain(e: peaqos_chain::ChainError) -> MarketError {
        MarketError::Chain { code: e.code().to_string(), message: e.to_string() }
    }

    pub(crate) fn validation(field: impl Into<String>, message: impl Into<String>) -> MarketError {
        MarketError::Validation { field: field.into(), message: message.into() }
    }
}

/// Key-name fragments whose values are replaced by `[REDACTED]` in server `details` (the SDK's
/// `_sanitize_body` list).
const SECRET_KEY_PARTS: &[&str] = &["token", "key", "secret", "password", "credential", "auth"];

/// `value` with every object member whose lower-cased key contains a secret-looking fragment
/// replaced by `"[REDACTED]"`, recursively.
pub fn redact_details(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    if SECRET_KEY_PARTS.iter().any(|p| lower.contains(p)) {
                        (k, Value::String("[REDACTED]".into()))
                    } else {
                        (k, redact_details(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact_details).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_pass_through() {
        assert_eq!(ApiCode::KNOWN.len(), 45);
        for c in ApiCode::KNOWN {
            assert_eq!(&ApiCode::parse(c.as_str()), c);
        }
        assert_eq!(ApiCode::parse("SOMETHING_NEW"), ApiCode::Other("SOMETHING_NEW".into()));
    }

    #[test]
    fn details_redaction_is_recursive() {
        let v = serde_json::json!({"agentToken": "s3", "machineId": "mach_1", "nested": [{"apiKey": "k"}]});
        let r = redact_details(v);
        assert_eq!(r["agentToken"], "[REDACTED]");
        assert_eq!(r["machineId"], "mach_1");
        assert_eq!(r["nested"][0]["apiKey"], "[REDACTED]");
    }
}
