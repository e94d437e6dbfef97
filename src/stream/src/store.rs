//! On-disk layout of one topic's chunk chain and the durable file helpers.
//!
//! ```text
//! <data_dir>/<topic_dir>/            topic_dir = topic_dir_name(topic), e.g. "/sensor/gps" → "sensor.gps"
//!   head.json          chain head: {"schema":"peaqos.stream.head.v1","topic","lastIndex","lastChunkId"}
//!   open.jsonl         the open (unsealed) chunk: one header line
//!                      {"openChunk":"peaqos.stream.open.v1","topic","index","firstAppendMs"}
//!                      followed by the signed package lines, each terminated by "\n"
//!   <index>.bin        ciphertext of a sealed chunk (ct || tag16); for the open chunk written as
//!                      ciphertext (crate::open_chunk) its ciphertext so far, without the tag
//!   <index>.key.json   the open chunk's nonce and key wrapped to the machine (removed at seal)
//!   <index>.json       its envelope (peaq.stream.chunks.v1, camelCase wire form)
//!   <index>.meta.json  local metadata (ChunkMeta): message count, times, close reason
//! ```
//!
//! Sealed files are written as `<name>.tmp` → fsync → rename → fsync(dir), so a file that exists
//! under its final name is complete. The `.bin` and `.meta.json` are renamed before the `.json`
//! envelope; an envelope therefore implies its ciphertext and metadata exist.
//!
//! **Plaintext of a chunk** (what a buyer gets after decrypting): the signed data packages of the
//! chunk, each as its canonical JSON line (the `package_json` of `peaqos_core`) followed by one
//! `\n` byte, in append order — i.e. a JSON Lines document.

use std::fs;
use std::path::{Path, PathBuf};

use peaqos_base::layout;

use serde::{Deserialize, Serialize};

use crate::envelope::Chunk;
use crate::error::{Result, StreamError};

/// Schema tag of `head.json`.
pub const HEAD_SCHEMA: &str = "peaqos.stream.head.v1";
/// Schema tag of `<index>.meta.json`.
pub const META_SCHEMA: &str = "peaqos.stream.chunk-meta.v1";
/// Name of the open chunk file.
pub const OPEN_FILE: &str = "open.jsonl";
/// Name of the head file.
pub const HEAD_FILE: &str = "head.json";

/// Directory name of a topic: the one encoding of [`peaqos_base::layout::topic_dir_name`], the
/// same as the package log's. An empty name is refused.
pub fn topic_dir_name(topic: &str) -> Result<String> {
    if topic.strip_prefix('/').unwrap_or(topic).is_empty() {
        return Err(StreamError::invalid("topic", "empty topic name"));
    }
    Ok(layout::topic_dir_name(topic))
}

/// Directory of a topic's chain. A chain kept under the name the stream used before it shared
/// the package log's encoding (`-` kept, relative names unmarked) is moved to the new name.
pub fn topic_dir(data_dir: &Path, topic: &str) -> Result<PathBuf> {
    let dir = data_dir.join(topic_dir_name(topic)?);
    let legacy = data_dir.join(layout::legacy_stream_topic_dir_name(topic));
    if legacy != dir && !dir.exists() && legacy.join(HEAD_FILE).exists() {
        fs::rename(&legacy, &dir).map_err(|e| StreamError::io("rename legacy topic directory", &legacy, e))?;
        sync_dir(data_dir)?;
        tracing::info!("moved the chunk chain of {topic:?} from {} to {}", legacy.display(), dir.display());
    }
    Ok(dir)
}

/// Chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Head {
    pub schema: String,
    pub topic: String,
    pub last_index: u64,
    pub last_chunk_id: String,
}

/// Why a chunk was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    MaxBytes,
    MaxMessages,
    MaxAge,
    CloseNow,
    Recovery,
}

/// Local metadata of a sealed chunk (not part of the SDK envelope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChunkMeta {
    pub schema: String,
    pub topic: String,
    pub index: u64,
    pub chunk_id: String,
    pub messages: u64,
    pub plaintext_bytes: u64,
    /// Unix ms of the first message appended.
    pub first_append_ms: u64,
    /// Unix ms of the last message appended.
    pub last_append_ms: u64,
    /// Unix ms of sealing.
    pub sealed_at_ms: u64,
    pub close_reason: CloseReason,
    /// Sequence number of the chunk's last package, when the writer was told it (the node's
    /// feed): chunk retention keeps what the package log's consumers still read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sequence: Option<u64>,
}

/// Paths of a sealed chunk.
pub fn chunk_paths(dir: &Path, index: u64) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join(format!("{index}.json")), dir.join(format!("{index}.bin")), dir.join(format!("{index}.meta.json")))
}

/// Durable writes: the one helper every crate uses ([`peaqos_base::fsio`]): `write_atomic`
/// syncs the directory too; `AtomicBatch` writes several files with one directory fsync.
pub use peaqos_base::fsio::{sync_dir, write_atomic, AtomicBatch};

impl From<peaqos_base::fsio::FsError> for StreamError {
    fn from(e: peaqos_base::fsio::FsError) -> Self {
        StreamError::Io { op: e.op, path: e.path, source: e.source }
    }
}

/// Read a file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| StreamError::io("read", path, e))
}

/// Serialize as pretty JSON + newline.
pub fn to_json_bytes<T: Serialize>(v: &T, what: &str) -> Result<Vec<u8>> {
    let mut b = serde_json::to_vec_pretty(v).map_err(|e| StreamError::json(what, e))?;
    b.push(b'\n');
    Ok(b)
}

/// Load and parse a JSON file.
pub fn load_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let b = read(path)?;
    serde_json::from_slice(&b).map_err(|e| StreamError::json(path.display().to_string(), e))
}

/// Load the envelope `<index>.json`.
pub fn load_chunk(dir: &Path, index: u64) -> Result<Chunk> {
    let (j, _, _) = chunk_paths(dir, index);
    let b = read(&j)?;
    Chunk::from_json_bytes(&b, &j.display().to_string())
}

/// Load `<index>.meta.json`.
pub fn load_meta(dir: &Path, index: u64) -> Result<ChunkMeta> {
    load_json(&chunk_paths(dir, index).2)
}

/// Write the envelope `<index>.json` (wire form) atomically and fsync the directory.
pub fn store_chunk_envelope(dir: &Path, chunk: &Chunk) -> Result<()> {
    let (j, _, _) = chunk_paths(dir, chunk.index);
    Ok(write_atomic(&j, &to_json_bytes(&chunk.to_wire_json()?, "chunk envelope")?)?)
}

/// Sorted indices of all sealed envelopes (`<n>.json`) in `dir`.
pub fn sealed_indices(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| StreamError::io("list", dir, e))?;
    for e in rd {
        let e = e.map_err(|e| StreamError::io("list", dir, e))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name.strip_suffix(".json") {
            if let Ok(i) = n.parse::<u64>() {
                if n == i.to_string() {
                    out.push(i);
                }
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Load the head file, if present.
pub fn load_head(dir: &Path) -> Result<Option<Head>> {
    let p = dir.join(HEAD_FILE);
    if !p.exists() {
        return Ok(None);
    }
    load_json(&p).map(Some)
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_under_the_legacy_name_moves_to_the_shared_name() {
        let d = tempfile::tempdir().unwrap();
        let legacy = d.path().join("cam-front.image");
        fs::create_dir_all(&legacy).unwrap();
        fs::write(legacy.join(HEAD_FILE), b"{}").unwrap();
        let dir = topic_dir(d.path(), "/cam-front/image").unwrap();
        assert_eq!(dir, d.path().join("cam%2Dfront.image"));
        assert!(dir.join(HEAD_FILE).exists() && !legacy.exists());
        // Idempotent: the second call finds the moved chain where it is.
        assert_eq!(topic_dir(d.path(), "/cam-front/image").unwrap(), dir);
    }

    #[test]
    fn topic_names() {
        assert_eq!(topic_dir_name("/sensor/gps").unwrap(), "sensor.gps");
        assert_eq!(topic_dir_name("/a.b").unwrap(), "a%2Eb");
        assert_ne!(topic_dir_name("/a").unwrap(), topic_dir_name("a").unwrap());
        assert_ne!(topic_dir_name("/a/b").unwrap(), topic_dir_name("/a.b").unwrap());
        assert!(topic_dir_name("/").is_err());
    }
}
