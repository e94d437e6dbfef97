//! The payload-store hook: a topic whose packages are kept durably elsewhere (a streamed topic's
//! chunk ciphertext, `peaqos_stream`) logs a small reference line instead of the package, so its
//! bytes are written to disk once.
//!
//! ```text
//! packaging thread, per message of a stored topic:
//!     store.append(topic, seq, package line) → PayloadRef      (written, not yet durable)
//!     log.append(topic, seq, {"payloadRef":{…},"sequenceNumber":seq})
//! group commit:  store.sync()  →  log.commit()  →  store.settle(topic, committed)
//!                (payload durable before the reference; a reference is durable before the ack)
//! ```
//!
//! A reference line is `{"payloadRef":{"chunk":i,"offset":o,"length":l,"sha256":"0x…"},
//! "sequenceNumber":n}`: the package's canonical line (without its `\n`) is `length` bytes at
//! `offset` of chunk `i`'s plaintext, and hashes to `sha256`. No package starts with
//! `{"payloadRef"` (a package's first key is `data`/`did`), so the two kinds of line never mix
//! up. Readers of the log resolve references through a [`PayloadResolver`]
//! ([`crate::package_log::resolve_line`]). `peaqos_core` only defines the hook; the node wires in
//! the stream crate's implementation.

use serde::{Deserialize, Serialize};

/// Where a package's canonical line lives in a topic's payload store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadRef {
    /// Chunk index.
    pub chunk: u64,
    /// Offset of the line in the chunk's plaintext.
    pub offset: u64,
    /// Length of the line (without its `\n`).
    pub length: u64,
    /// `"0x" + hex(sha256(line))`.
    pub sha256: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefLine {
    #[serde(rename = "payloadRef")]
    payload_ref: PayloadRef,
    #[serde(rename = "sequenceNumber")]
    sequence_number: u64,
}

const REF_PREFIX: &str = "{\"payloadRef\":";

/// The log line of a stored package.
pub fn ref_line(sequence: u64, r: &PayloadRef) -> String {
    // Serializing two plain structs cannot fail; fall back to a line readers refuse.
    serde_json::to_string(&RefLine { payload_ref: r.clone(), sequence_number: sequence }).unwrap_or_default()
}

/// True if `line` is a reference line (cheap prefix test).
pub fn is_ref_line(line: &str) -> bool {
    line.starts_with(REF_PREFIX)
}

/// `(sequence, reference)` of a reference line; `None` for a package line or a malformed one.
pub fn parse_ref_line(line: &str) -> Option<(u64, PayloadRef)> {
    if !is_ref_line(line) {
        return None;
    }
    serde_json::from_str::<RefLine>(line).ok().map(|l| (l.sequence_number, l.payload_ref))
}

/// A payload store failure.
#[derive(Debug, thiserror::Error)]
#[error("payload store: {message}")]
pub struct PayloadError {
    /// What failed, naming the topic and file.
    pub message: String,
    /// The cause is a full disk (ENOSPC/EDQUOT): the pipeline refuses new messages.
    pub disk_full: bool,
}

/// Where the packaging thread writes the packages of some topics (see the module doc).
pub trait PayloadStore: Send {
    /// Whether `topic`'s packages go to this store.
    fn stores(&self, topic: &str) -> bool;
    /// Write package `sequence`'s canonical line; it is durable after the next [`sync`](Self::sync).
    fn append(&mut self, topic: &str, sequence: u64, line: &str) -> Result<PayloadRef, PayloadError>;
    /// Make everything appended durable (before the log's commit).
    fn sync(&mut self) -> Result<(), PayloadError>;
    /// After the log's commit: `committed` says whether the topic's references of this batch are
    /// durable. If not, everything appended since the last settled commit is cut off again.
    fn settle(&mut self, topic: &str, committed: bool);
    /// True when `topic`'s store wants the batch committed now (a chunk is full and can only be
    /// sealed once its lines are acknowledged): the pipeline commits what it has and goes on
    /// with a new group.
    fn commit_due(&self, _topic: &str) -> bool {
        false
    }
}

/// Reads a stored package's line back.
pub trait PayloadResolver: Send + Sync {
    /// The canonical line `r` refers to (checked against its hash).
    fn resolve(&self, topic: &str, r: &PayloadRef) -> Result<String, PayloadError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_lines_round_trip_and_are_told_apart() {
        let r = PayloadRef { chunk: 3, offset: 1024, length: 77, sha256: format!("0x{}", "ab".repeat(32)) };
        let l = ref_line(9, &r);
        assert!(l.starts_with(REF_PREFIX) && !l.contains('\n'), "{l}");
        assert_eq!(parse_ref_line(&l), Some((9, r)));
        assert_eq!(parse_ref_line(r#"{"data":{"payloadRef":1},"sequenceNumber":1}"#), None);
        assert_eq!(parse_ref_line(r#"{"payloadRef":{"chunk":1},"sequenceNumber":1}"#), None);
    }
}
