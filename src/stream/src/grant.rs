//! Buyer access grants (`peaq.stream.buyer-access.v1`), as peaq-os-sdk 0.12.1
//! `stream/buyer_access.py`: a holder of a chunk key entry unwraps it, checks the key against
//! `key_commitment`, and re-wraps it (fresh sealed box) to the buyer's X25519 key. Chunk data is
//! never re-encrypted and envelopes are never modified.
//!
//! The SDK unwraps the `owner` entry with the owner's secret; the machine uses its own `machine`
//! entry (see [`crate::writer`] for key custody) — the resulting entries are identical in form.
//!
//! Files: entries are batched into files named `<buyer_public_key_hex>-<n>.json` (n 1-based),
//! each at most `max_file_size` bytes (default 500 KiB) as measured by the SDK: the length of
//! the compact JSON of the snake_case `BuyerAccessFile` (a single oversized entry still gets its
//! own file). On disk a file is the CLI wire form
//! `{"schemaVersion":"peaq.stream.buyer-access.v1","buyerPublicKeyHex":"…","entries":[{"chunkId":"0x…",
//! "buyer":{"recipientId","recipientType":"buyer","algorithm":"x25519-sealedbox","publicKeyHex",
//! "wrappedKeyHex"},"schemaVersion":"peaq.stream.buyer-access.v1"}]}`; both spellings are read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tracing::info;

use crate::chain::{decrypt_chunk, unwrap_chunk_key, wrap_key, ChunkRandom, OsRandom};
use crate::envelope::{
    BuyerAccessEntry, BuyerAccessFile, Chunk, KeyRecipient, RecipientType, BUYER_ACCESS_SCHEMA_VERSION,
};
use crate::error::{Result, StreamError};
use crate::keys::MachineStreamKeys;
use crate::store;

/// Default `recipient_id` of a buyer.
pub const DEFAULT_BUYER_RECIPIENT_ID: &str = "buyer-1";

/// Which chunks to grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantRange {
    /// Chunk indices `first..=last`.
    Indices { first: u64, last: u64 },
    /// Chunks holding messages appended between these Unix-ms times (inclusive overlap of
    /// `[first_append_ms, last_append_ms]` from `<index>.meta.json`).
    TimeMs { from: u64, to: u64 },
}

impl GrantRange {
    /// Parse `A..B` (inclusive indices), `A` (one index) or `t:FROM_MS..TO_MS`.
    pub fn parse(s: &str) -> Result<GrantRange> {
        let bad = || StreamError::invalid("range", format!("{s:?}: expected A..B, A, or t:FROM_MS..TO_MS"));
        let (time, body) = match s.strip_prefix("t:") {
            Some(b) => (true, b),
            None => (false, s),
        };
        let (a, b) = match body.split_once("..") {
            Some((a, b)) => (a.trim(), b.trim().trim_start_matches('=')),
            None => (body.trim(), body.trim()),
        };
        let a: u64 = a.parse().map_err(|_| bad())?;
        let b: u64 = b.parse().map_err(|_| bad())?;
        if b < a {
            return Err(bad());
        }
        Ok(if time { GrantRange::TimeMs { from: a, to: b } } else { GrantRange::Indices { first: a, last: b } })
    }
}

/// Re-wrap the key of `chunk` from `holder_entry` (opened with `holder_sk`) to a buyer.
pub fn create_buyer_access_entry(
    chunk: &Chunk,
    holder_entry: &KeyRecipient,
    holder_sk: &[u8; 32],
    buyer_recipient_id: &str,
    buyer_public_key: &[u8; 32],
    rng: &mut dyn ChunkRandom,
) -> Result<BuyerAccessEntry> {
    let key = unwrap_chunk_key(chunk, holder_entry, holder_sk)?;
    let buyer = wrap_key(key.as_ref(), buyer_recipient_id, RecipientType::Buyer, buyer_public_key, rng)?;
    Ok(BuyerAccessEntry { chunk_id: chunk.chunk_id.clone(), buyer, schema_version: BUYER_ACCESS_SCHEMA_VERSION.into() })
}

fn file_len(f: &BuyerAccessFile) -> Result<usize> {
    serde_json::to_vec(&f.to_snake_json()?).map(|v| v.len()).map_err(|e| StreamError::json("buyer access file", e))
}

fn make_file(buyer_hex: &str, n: usize, entries: Vec<BuyerAccessEntry>) -> BuyerAccessFile {
    BuyerAccessFile {
        schema_version: BUYER_ACCESS_SCHEMA_VERSION.into(),
        file_name: format!("{buyer_hex}-{n}.json"),
        buyer_public_key_hex: buyer_hex.into(),
        entries,
    }
}

/// The SDK's `build_buyer_access_files` batching (greedy, `≤ max_file_size`).
pub fn build_buyer_access_files(
    entries: Vec<BuyerAccessEntry>,
    buyer_public_key_hex: &str,
    max_file_size: usize,
) -> Result<Vec<BuyerAccessFile>> {
    let mut files = Vec::new();
    let mut cur: Vec<BuyerAccessEntry> = Vec::new();
    for e in entries {
        let mut next = cur.clone();
        next.push(e.clone());
        let size = file_len(&make_file(buyer_public_key_hex, files.len() + 1, next.clone()))?;
        if !cur.is_empty() && size > max_file_size {
            let n = files.len() + 1;
            files.push(make_file(buyer_public_key_hex, n, std::mem::take(&mut cur)));
            cur.push(e);
            continue;
        }
        cur = next;
    }
    if !cur.is_empty() {
        let n = files.len() + 1;
        files.push(make_file(buyer_public_key_hex, n, cur));
    }
    Ok(files)
}

/// Select the sealed chunk indices of a topic directory matching `range`.
pub fn select_indices(topic_dir: &Path, range: &GrantRange) -> Result<Vec<u64>> {
    match *range {
        GrantRange::Indices { first, last } if last < first => {
            return Err(StreamError::invalid("range", format!("{first}..{last} is empty")))
        }
        GrantRange::TimeMs { from, to } if to < from => {
            return Err(StreamError::invalid("range", format!("t:{from}..{to} is empty")))
        }
        _ => {}
    }
    let all = store::sealed_indices(topic_dir)?;
    let mut out = Vec::new();
    for i in all {
        let keep = match *range {
            GrantRange::Indices { first, last } => (first..=last).contains(&i),
            GrantRange::TimeMs { from, to } => {
                let m = store::load_meta(topic_dir, i)?;
                m.first_append_ms <= to && m.last_append_ms >= from
            }
        };
        if keep {
            out.push(i);
        }
    }
    if let GrantRange::Indices { first, last } = *range {
        // Checked: `0..=u64::MAX` holds 2^64 indices, more than any u64 count.
        if (last - first).checked_add(1) != Some(out.len() as u64) {
            return Err(StreamError::NotFound(format!(
                "chunks {first}..={last} of {} (only {} of them are sealed)",
                topic_dir.display(),
                out.len()
            )));
        }
    }
    Ok(out)
}

/// Grant a buyer access to a range of the machine's sealed chunks of `topic`, using the
/// machine's own key entry. Returns one entry per chunk, in index order.
pub fn grant(
    data_dir: &Path,
    topic: &str,
    range: &GrantRange,
    keys: &MachineStreamKeys,
    buyer_public_key: &[u8; 32],
    buyer_recipient_id: &str,
) -> Result<Vec<BuyerAccessEntry>> {
    let dir = store::topic_dir(data_dir, topic)?;
    grant_indices(&dir, &select_indices(&dir, range)?, keys, buyer_public_key, buyer_recipient_id, topic)
}

/// The indices of the sealed chunks of `topic_dir` whose ids are `chunk_ids`, in that order; an
/// id that is not a sealed chunk of the topic is [`StreamError::NotFound`] naming it.
pub fn select_chunk_ids(topic_dir: &Path, chunk_ids: &[String]) -> Result<Vec<u64>> {
    let mut by_id = HashMap::new();
    for i in store::sealed_indices(topic_dir)? {
        by_id.insert(store::load_chunk(topic_dir, i)?.chunk_id.to_ascii_lowercase(), i);
    }
    chunk_ids
        .iter()
        .map(|id| {
            by_id.get(&id.to_ascii_lowercase()).copied().ok_or_else(|| {
                StreamError::NotFound(format!("chunk {id} is not a sealed chunk of {}", topic_dir.display()))
            })
        })
        .collect()
}

/// Grant a buyer access to exactly the sealed chunks `chunk_ids` of `topic` (a purchase's
/// chunks), using the machine's own key entry. One entry per chunk, in the order given.
pub fn grant_chunk_ids(
    data_dir: &Path,
    topic: &str,
    chunk_ids: &[String],
    keys: &MachineStreamKeys,
    buyer_public_key: &[u8; 32],
    buyer_recipient_id: &str,
) -> Result<Vec<BuyerAccessEntry>> {
    let dir = store::topic_dir(data_dir, topic)?;
    grant_indices(&dir, &select_chunk_ids(&dir, chunk_ids)?, keys, buyer_public_key, buyer_recipient_id, topic)
}

/// The ids of the sealed chunks of `topic` matching `range` (index order).
pub fn chunk_ids_of(data_dir: &Path, topic: &str, range: &GrantRange) -> Result<Vec<String>> {
    let dir = store::topic_dir(data_dir, topic)?;
    select_indices(&dir, range)?.into_iter().map(|i| Ok(store::load_chunk(&dir, i)?.chunk_id)).collect()
}

fn grant_indices(
    dir: &Path,
    indices: &[u64],
    keys: &MachineStreamKeys,
    buyer_public_key: &[u8; 32],
    buyer_recipient_id: &str,
    topic: &str,
) -> Result<Vec<BuyerAccessEntry>> {
    crate::crypto::check_x25519_public(buyer_public_key, "buyer_public_key")?;
    let mut rng = OsRandom;
    let mut out = Vec::new();
    for &i in indices {
        let c = store::load_chunk(dir, i)?;
        let entry = c.machine_recipient(&keys.x25519_public).ok_or_else(|| {
            StreamError::check(&c.chunk_id, "grant", "chunk has no key entry for this machine's X25519 key")
        })?;
        out.push(create_buyer_access_entry(
            &c,
            entry,
            keys.x25519_secret(),
            buyer_recipient_id,
            buyer_public_key,
            &mut rng,
        )?);
    }
    info!(topic, chunks = out.len(), buyer = %hex::encode(buyer_public_key), "buyer access granted");
    Ok(out)
}

/// One call for the node's `~/grant_access`: [`grant`], batch with the SDK's rule
/// (`max_file_size`, default [`crate::envelope::DEFAULT_BUYER_ACCESS_FILE_SIZE`]) and write the
/// files into `out_dir`. Returns the file paths and the files.
#[allow(clippy::too_many_arguments)]
pub fn grant_to_files(
    data_dir: &Path,
    topic: &str,
    range: &GrantRange,
    keys: &MachineStreamKeys,
    buyer_public_key: &[u8; 32],
    buyer_recipient_id: &str,
    out_dir: &Path,
    max_file_size: Option<usize>,
) -> Result<(Vec<PathBuf>, Vec<BuyerAccessFile>)> {
    let entries = grant(data_dir, topic, range, keys, buyer_public_key, buyer_recipient_id)?;
    let files = build_buyer_access_files(
        entries,
        &hex::encode(buyer_public_key),
        max_file_size.unwrap_or(crate::envelope::DEFAULT_BUYER_ACCESS_FILE_SIZE),
    )?;
    let paths = write_buyer_access_files(out_dir, &files)?;
    Ok((paths, files))
}

/// Write buyer access files (wire form) into `out_dir`; returns their paths.
pub fn write_buyer_access_files(out_dir: &Path, files: &[BuyerAccessFile]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out_dir).map_err(|e| StreamError::io("create directory", out_dir, e))?;
    let mut paths = Vec::new();
    let mut batch = store::AtomicBatch::new(out_dir);
    for f in files {
        let p = out_dir.join(&f.file_name);
        batch.write(&p, &store::to_json_bytes(&f.to_wire_json()?, "buyer access file")?)?;
        paths.push(p);
    }
    batch.commit()?;
    Ok(paths)
}

/// Decrypt with buyer grants: for every entry, find the chunk in `topic_dir` by `chunk_id`,
/// check the grant is for `buyer_sk`'s key, and decrypt (SDK `decrypt_chunk`). Returns
/// `(chunk index, plaintext)` in index order.
pub fn decrypt_with_grants(
    topic_dir: &Path,
    entries: &[BuyerAccessEntry],
    buyer_sk: &[u8; 32],
) -> Result<Vec<(u64, zeroize::Zeroizing<Vec<u8>>)>> {
    decrypt_with_grants_progress(topic_dir, entries, buyer_sk, &mut |_, _| {})
}

/// [`decrypt_with_grants`], calling `progress(chunks done, plaintext bytes so far)` after each chunk.
pub fn decrypt_with_grants_progress(
    topic_dir: &Path,
    entries: &[BuyerAccessEntry],
    buyer_sk: &[u8; 32],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<(u64, zeroize::Zeroizing<Vec<u8>>)>> {
    let my_pk = hex::encode(crate::crypto::x25519_public(buyer_sk));
    let mut by_id: HashMap<String, u64> = HashMap::new();
    for i in store::sealed_indices(topic_dir)? {
        let c = store::load_chunk(topic_dir, i)?;
        by_id.insert(c.chunk_id, i);
    }
    let mut out = Vec::new();
    let mut bytes = 0u64;
    for e in entries {
        let i = *by_id.get(&e.chunk_id).ok_or_else(|| {
            StreamError::NotFound(format!("chunk {} (named by a grant) in {}", e.chunk_id, topic_dir.display()))
        })?;
        if !e.buyer.public_key_hex.trim_start_matches("0x").eq_ignore_ascii_case(&my_pk) {
            return Err(StreamError::check(
                &e.chunk_id,
                "grant recipient",
                format!("grant is for another key ({}), not for the given secret key", e.buyer.public_key_hex),
            ));
        }
        let c = store::load_chunk(topic_dir, i)?;
        let ct = store::read(&store::chunk_paths(topic_dir, i).1)?;
        out.push((i, decrypt_chunk(&c, &e.buyer, buyer_sk, &ct)?));
        bytes += out.last().map_or(0, |(_, p)| p.len() as u64);
        progress(out.len() as u64, bytes);
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out)
}

/// Read grant files (either spelling) and return their entries.
pub fn load_grant_file(path: &Path) -> Result<BuyerAccessFile> {
    let b = store::read(path)?;
    BuyerAccessFile::from_json_bytes(&b, &path.display().to_string())
}
