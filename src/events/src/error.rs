//! The codes of `peaqos_events`'s errors, each spelled once; every error type of the crate says
//! its code through `error_code()` / `code()`.
use crate::log_reader::ReadError;
use crate::processor::OpenError;
use crate::rules::RuleError;
use crate::store::StoreError;

/// A code of this crate's errors.
#[derive(Debug, Clone, Copy)]
pub enum ErrorCode {
    /// No machine id to submit for: neither `chain.machine_id` nor one `~/activate` persisted.
    MachineIdUnknown,
    /// A rule of the Data Event Map cannot be loaded.
    RuleInvalid,
    /// The event store could not be read, written or synced.
    StoreIo,
    /// The event store holds a record it cannot parse.
    StoreCorrupt,
    /// The package log could not be read.
    LogRead,
    /// The chain client's code (its own mapping to the SDK's strings).
    Chain(peaqos_chain::error::ErrorCode),
}

impl ErrorCode {
    /// The code's string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MachineIdUnknown => "MACHINE_ID_UNKNOWN",
            ErrorCode::RuleInvalid => "RULE_INVALID",
            ErrorCode::StoreIo => "STORE_IO",
            ErrorCode::StoreCorrupt => "STORE_CORRUPT",
            ErrorCode::LogRead => "LOG_READ",
            ErrorCode::Chain(c) => c.as_str(),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RuleError {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::RuleInvalid
    }
}

impl StoreError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            StoreError::Io { .. } => ErrorCode::StoreIo,
            StoreError::Corrupt { .. } => ErrorCode::StoreCorrupt,
        }
    }
}

impl ReadError {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::LogRead
    }
}

impl OpenError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            OpenError::Store(e) => e.error_code(),
            OpenError::Log(e) => e.error_code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let e = StoreError::Corrupt { path: "x".into(), reason: "bad".into() };
        assert_eq!(e.error_code().as_str(), "STORE_CORRUPT");
        assert_eq!(OpenError::from(e).error_code().to_string(), "STORE_CORRUPT");
        assert_eq!(ErrorCode::Chain(peaqos_chain::error::ErrorCode::RateLimited).as_str(), "RATE_LIMITED");
    }
}
