//! Error type of the stream crate.
//!
//! Every variant names the field, file, chunk or check concerned. No variant ever carries key
//! material (secret keys, chunk keys, plaintext): only public identifiers, paths and reasons.

use std::path::PathBuf;

/// Errors of `peaqos_stream`.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A value (hex string, key, JSON field) is malformed.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },

    /// A cryptographic check failed for one chunk (commitment, AEAD tag, plaintext hash,
    /// sealed box, signature).
    #[error("chunk {chunk}: {check} failed: {reason}")]
    Check { chunk: String, check: &'static str, reason: String },

    /// A chunk chain failed verification.
    #[error("chain {chain}: chunk index {index}: {reason}")]
    Chain { chain: String, index: u64, reason: String },

    /// A file could not be read, written or synced.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON file or document could not be parsed.
    #[error("parse {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// Something expected (chunk, recipient entry, file) is not there.
    #[error("not found: {0}")]
    NotFound(String),

    /// A storage destination failed (the chunk stays queued).
    #[error("storage {destination}: {reason}")]
    Storage { destination: String, reason: String },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, StreamError>;

impl StreamError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        StreamError::Invalid { field: field.into(), reason: reason.into() }
    }
    pub(crate) fn check(chunk: impl Into<String>, check: &'static str, reason: impl Into<String>) -> Self {
        StreamError::Check { chunk: chunk.into(), check, reason: reason.into() }
    }
    /// True when the cause is a full disk (ENOSPC) or quota (EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StreamError::Io { source, .. } if matches!(source.raw_os_error(), Some(28) | Some(122)))
    }
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StreamError::Io { op, path: path.into(), source }
    }
    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        StreamError::Json { what: what.into(), source }
    }
}

/// The codes the stream's service answers carry (`error_code`), each spelled once: those of a
/// [`StreamError`] ([`StreamError::error_code`]) and the refusals of the node's stream services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A request field or a value is malformed or out of range.
    InvalidArgument,
    /// A chunk, dataset or file the request names is not there.
    NotFound,
    /// A chunk or chain failed a check.
    ChainInvalid,
    /// A file could not be read, written or synced.
    IoError,
    /// A JSON file or document could not be parsed.
    InvalidJson,
    /// A storage destination failed.
    StorageError,
    /// The topic has no `stream:` block.
    UnknownTopic,
    /// Anchoring was asked for without a chain client.
    ChainDisabled,
}

impl ErrorCode {
    /// The string in `error_code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::ChainInvalid => "CHAIN_INVALID",
            ErrorCode::IoError => "IO_ERROR",
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::StorageError => "STORAGE_ERROR",
            ErrorCode::UnknownTopic => "UNKNOWN_TOPIC",
            ErrorCode::ChainDisabled => "CHAIN_DISABLED",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StreamError {
    /// This error's code.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            StreamError::Invalid { .. } => ErrorCode::InvalidArgument,
            StreamError::NotFound(_) => ErrorCode::NotFound,
            StreamError::Check { .. } | StreamError::Chain { .. } => ErrorCode::ChainInvalid,
            StreamError::Io { .. } => ErrorCode::IoError,
            StreamError::Json { .. } => ErrorCode::InvalidJson,
            StreamError::Storage { .. } => ErrorCode::StorageError,
        }
    }

    /// This error's code as the string in `error_code`.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// The request field this error is about (only [`StreamError::Invalid`] names one; empty
    /// otherwise).
    pub fn field(&self) -> &str {
        match self {
            StreamError::Invalid { field, .. } => field,
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_fields() {
        let e = StreamError::invalid("buyer_public_key_hex", "not 32 bytes");
        assert_eq!((e.code(), e.field()), ("INVALID_ARGUMENT", "buyer_public_key_hex"));
        let e = StreamError::NotFound("chunk 3".into());
        assert_eq!((e.code(), e.field()), ("NOT_FOUND", ""));
        let e = StreamError::check("c1", "aead", "tag mismatch");
        assert_eq!(e.error_code(), ErrorCode::ChainInvalid);
        assert_eq!(ErrorCode::UnknownTopic.to_string(), "UNKNOWN_TOPIC");
    }
}
