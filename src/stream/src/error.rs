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
