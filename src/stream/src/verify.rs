//! Verification of a topic directory written by [`crate::writer::ChunkWriter`] (the
//! `peaqos-stream verify` command).
//!
//! Checks, per chunk in index order, reporting the first failure with the chunk and the check:
//! the SDK's `verify_chunk_chain` checks (index sequence from 0 — a missing, replayed or
//! reordered chunk breaks it —, `previous_chunk_id` linkage, ciphertext hash `hash_mismatch`,
//! `chunk_id`, signature identity and Ed25519 `invalid_signature`), then: `schema_version`,
//! algorithm names, the nonce length, one signing key for the whole chain (and, if given, the
//! expected machine key), the `<index>.meta.json` chunk id, and that `head.json` names the last
//! chunk.

use std::path::Path;

use crate::chain::{verify_chain_stored_elsewhere, ChainVerification};
use crate::envelope::{Chunk, CHUNK_CIPHER, CHUNK_SCHEMA_VERSION, KEY_WRAP_ALGORITHM, SIGNATURE_ALGORITHM};
use crate::error::{Result, StreamError};
use crate::store;

/// Outcome of [`verify_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirReport {
    /// Number of sealed chunks verified.
    pub chunks: usize,
    /// `chunk_id` of the last chunk.
    pub last_chunk_id: Option<String>,
    /// Ed25519 key that signed the chain (hex).
    pub signer_public_key_hex: Option<String>,
    /// Chunks whose ciphertext is no longer local (deleted by retention after it was stored at
    /// every destination; the envelope names it in `storageRef`): their links, ids and
    /// signatures were checked, the ciphertext hash was not.
    pub stored_elsewhere: usize,
}

/// Verify every sealed chunk of a topic directory. `expected_signer_hex`: the machine's Ed25519
/// public key if known. Errors are [`StreamError::Chain`] naming the index and the failed check.
pub fn verify_dir(dir: &Path, expected_signer_hex: Option<&str>) -> Result<DirReport> {
    let chain = dir.display().to_string();
    let fail = |index: u64, reason: String| StreamError::Chain { chain: chain.clone(), index, reason };
    let indices = store::sealed_indices(dir)?;
    let mut chunks: Vec<Chunk> = Vec::with_capacity(indices.len());
    for &i in &indices {
        chunks.push(store::load_chunk(dir, i)?);
    }
    if chunks.is_empty() {
        return Ok(DirReport { chunks: 0, last_chunk_id: None, signer_public_key_hex: None, stored_elsewhere: 0 });
    }
    // Missing files are detected by the index sequence check; a file whose envelope index differs
    // from its file name is a replayed/renamed chunk.
    for (pos, (&i, c)) in indices.iter().zip(&chunks).enumerate() {
        if c.index != i {
            return Err(fail(
                i,
                format!("file {i}.json holds chunk index {} (replayed or renamed chunk, position {pos})", c.index),
            ));
        }
    }
    // A ciphertext deleted by retention: its envelope has a storageRef and it is not the newest
    // chunk (retention never deletes that one).
    let newest = chunks.last().map(|c| c.index);
    let elsewhere =
        |c: &Chunk| c.storage_ref.is_some() && Some(c.index) != newest && !store::chunk_paths(dir, c.index).1.exists();
    let stored_elsewhere = chunks.iter().filter(|c| elsewhere(c)).count();
    let v: ChainVerification = verify_chain_stored_elsewhere(
        &chunks,
        0,
        None,
        |i| std::fs::read(store::chunk_paths(dir, i).1).ok(),
        elsewhere,
    );
    if !v.valid {
        let pos = v.failed_at_index.unwrap_or(0);
        let idx = chunks.get(pos).map_or(pos as u64, |c| c.index);
        let id = chunks.get(pos).map_or(String::new(), |c| c.chunk_id.clone());
        let reason = v.reason.unwrap_or_default();
        let what = match reason.as_str() {
            crate::chain::reasons::NOT_SEQUENTIAL => {
                format!("{reason}: expected index {pos} (chunk missing, replayed or reordered)")
            }
            _ => reason,
        };
        return Err(fail(idx, format!("chunk {id}: {what}")));
    }
    let signer = expected_signer_hex
        .map(|s| s.trim_start_matches("0x").to_ascii_lowercase())
        .unwrap_or_else(|| chunks[0].signature.public_key_hex.to_ascii_lowercase());
    for c in &chunks {
        let f = |check: &str| fail(c.index, format!("chunk {}: {check}", c.chunk_id));
        if c.schema_version != CHUNK_SCHEMA_VERSION {
            return Err(f("schema_version is not peaq.stream.chunks.v1"));
        }
        if c.encryption.algorithm != CHUNK_CIPHER || c.signature.algorithm != SIGNATURE_ALGORITHM {
            return Err(f("unsupported encryption or signature algorithm"));
        }
        if c.encryption.nonce.len() != 48 || hex::decode(&c.encryption.nonce).is_err() {
            return Err(f("encryption.nonce is not 24 bytes of hex"));
        }
        if c.encryption.key_recipients.iter().any(|r| r.algorithm != KEY_WRAP_ALGORITHM) {
            return Err(f("key recipient with unsupported algorithm"));
        }
        if c.signature.public_key_hex.to_ascii_lowercase() != signer {
            return Err(f("signed by another key than the chain's machine key (wrong signature key)"));
        }
        let meta_path = store::chunk_paths(dir, c.index).2;
        if meta_path.exists() {
            let m = store::load_meta(dir, c.index)?;
            if m.chunk_id != c.chunk_id || m.index != c.index {
                return Err(f("meta.json chunk id/index differs from the envelope"));
            }
        }
    }
    let last = chunks.last().map(|c| c.chunk_id.clone());
    if let Some(h) = store::load_head(dir)? {
        let lc = chunks.last().map(|c| (c.index, c.chunk_id.as_str()));
        if Some((h.last_index, h.last_chunk_id.as_str())) != lc {
            return Err(fail(
                h.last_index,
                "head.json does not name the last sealed chunk (chunk removed or head stale)".into(),
            ));
        }
    }
    Ok(DirReport { chunks: chunks.len(), last_chunk_id: last, signer_public_key_hex: Some(signer), stored_elsewhere })
}
