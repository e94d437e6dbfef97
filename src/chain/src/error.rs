//! The one error type of this crate, shaped for the ROS service responses.
//!
//! Every variant maps to a stable `code()` (the SDK's codes where the SDK has one: `VALIDATION_ERROR`
//! carries the SDK `ValidationError` field/constraint/message, `TYPE_ERROR` is the SDK's value
//! `TypeError`, revert codes come from [`crate::revert`], MCR codes from [`crate::mcr`]) and a
//! `field()` naming the input concerned (empty when none). Messages never contain key material:
//! signers appear only as addresses, RPC URLs are reduced to scheme+host by [`redact_url`].

use thiserror::Error;

/// Errors of the chain client. `code()`/`field()`/`to_string()` fill the node's
/// `success/error_code/error_field/message` response fields.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ChainError {
    /// SDK `ValidationError(field, constraint, message)`.
    #[error("{message}")]
    Validation {
        field: String,
        constraint: String,
        message: String,
    },
    /// SDK `TypeError` of the value type guard (field `value`).
    #[error("{message}")]
    Type { field: String, message: String },
    /// SDK `ValueCapExceeded(value, cap)`: refused before anything was stored or sent.
    #[error("Value {value} exceeds cap {cap}")]
    ValueCapExceeded { value: String, cap: String },
    /// SDK `RateLimitExceeded(machine_id, count, max_events, window_seconds)`: refused before anything was stored or sent.
    #[error("Machine {machine_id}: {count}/{max_events} events in {window_seconds}s")]
    RateLimited {
        machine_id: String,
        count: u64,
        max_events: u64,
        window_seconds: u64,
    },
    /// Configuration problem (`CONFIG_INVALID`, `DEPLOYMENT_UNAVAILABLE`, `DEPLOYMENT_UNKNOWN`).
    #[error("{message}")]
    Config {
        code: String,
        field: String,
        message: String,
    },
    /// A contract revert decoded by [`crate::revert`] (code = SDK code or Solidity error name).
    #[error("{message}")]
    Revert {
        code: String,
        message: String,
        data: String,
    },
    /// Transport/RPC failure (`RPC_UNAVAILABLE`, `RPC_ERROR`, `RPC_RATE_LIMITED`, `BAD_RPC_RESPONSE`).
    #[error("{message}")]
    Rpc { code: String, message: String },
    /// Outcome of a submitted transaction (`TX_REVERTED`, `RECEIPT_AWAIT_FAILED`, `NONCE_CONFLICT`,
    /// `REGISTERED_EVENT_MISSING`, ...). `intent_id`/`tx_hash` let the caller follow up.
    #[error("{message}")]
    Tx {
        code: String,
        message: String,
        intent_id: String,
        tx_hash: String,
    },
    /// Gen-2 activation step failure (SDK `ActivationError.code`).
    #[error("{message}")]
    Activation {
        code: String,
        field: String,
        message: String,
    },
    /// Durable store problem (`STORE_IO`, `STORE_CORRUPT`, `STORE_LOCKED`), names the path.
    #[error("{message}")]
    Store {
        code: String,
        path: String,
        message: String,
    },
    /// MCR API error (SDK `ApiError.code`).
    #[error("{message}")]
    Api {
        code: String,
        status: u16,
        message: String,
    },
}

impl ChainError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            ChainError::Validation { .. } => "VALIDATION_ERROR",
            ChainError::Type { .. } => "TYPE_ERROR",
            ChainError::ValueCapExceeded { .. } => "VALUE_CAP_EXCEEDED",
            ChainError::RateLimited { .. } => "RATE_LIMITED",
            ChainError::Config { code, .. }
            | ChainError::Revert { code, .. }
            | ChainError::Rpc { code, .. }
            | ChainError::Tx { code, .. }
            | ChainError::Activation { code, .. }
            | ChainError::Store { code, .. }
            | ChainError::Api { code, .. } => code,
        }
    }

    /// Input field concerned, empty when none.
    pub fn field(&self) -> &str {
        match self {
            ChainError::Validation { field, .. }
            | ChainError::Type { field, .. }
            | ChainError::Config { field, .. }
            | ChainError::Activation { field, .. } => field,
            ChainError::ValueCapExceeded { .. } => "value",
            ChainError::RateLimited { .. } => "machine_id",
            ChainError::Store { path, .. } => path,
            _ => "",
        }
    }

    /// SDK-style validation error.
    pub fn validation(field: &str, constraint: &str, message: impl Into<String>) -> Self {
        ChainError::Validation {
            field: field.into(),
            constraint: constraint.into(),
            message: message.into(),
        }
    }

    pub(crate) fn config(code: &str, field: &str, message: impl Into<String>) -> Self {
        ChainError::Config {
            code: code.into(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn rpc(code: &str, message: impl Into<String>) -> Self {
        ChainError::Rpc {
            code: code.into(),
            message: message.into(),
        }
    }

    pub(crate) fn activation(code: &str, field: &str, message: impl Into<String>) -> Self {
        ChainError::Activation {
            code: code.into(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn store(
        code: &str,
        path: &std::path::Path,
        message: impl std::fmt::Display,
    ) -> Self {
        let p = path.display().to_string();
        ChainError::Store {
            code: code.into(),
            message: format!("{p}: {message}"),
            path: p,
        }
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
        assert_eq!(
            redact_url("https://user:pw@rpc.example.com/v1/SECRETKEY?x=1"),
            "https://rpc.example.com"
        );
        assert_eq!(redact_url("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
        assert_eq!(redact_url("nonsense"), "<invalid url>");
    }

    #[test]
    fn codes_and_fields() {
        let e = ChainError::validation(
            "currency",
            "must be \"\"",
            "activity events require an empty currency string",
        );
        assert_eq!(e.code(), "VALIDATION_ERROR");
        assert_eq!(e.field(), "currency");
        let e = ChainError::RateLimited {
            machine_id: "42".into(),
            count: 2,
            max_events: 2,
            window_seconds: 60,
        };
        assert_eq!(e.code(), "RATE_LIMITED");
        assert_eq!(e.to_string(), "Machine 42: 2/2 events in 60s");
    }
}
