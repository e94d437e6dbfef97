//! Retention of local chunk copies and buyer grant files.
//!
//! **Chunks.** A sealed chunk's ciphertext `<index>.bin` is the bulk of a chain on disk. It is
//! deleted locally only when
//! * the topic has destinations and none of them is the chain directory itself (`local` without
//!   `dir` means "the local copy is the stored copy": such a chain is pruned only with
//!   [`LocalOnly::DeleteOldest`], and then its oldest ciphertexts are gone for good), and every
//!   destination's durable upload cursor is past the chunk (a confirmed upload everywhere), and
//! * the topic's local ciphertexts are over [`ChunkRetention::max_bytes`] (oldest first) or the
//!   chunk was sealed more than [`ChunkRetention::max_age`] ago, and
//! * it is not the newest sealed chunk (the feed decrypts it at start to resume).
//!
//! The envelope `<index>.json` (with its `storageRef`), `<index>.meta.json` and
//! `<index>.refs.json` stay: a few hundred bytes per chunk that keep the chain of chunk ids
//! verifiable locally, let grants be made for the chunk (a grant re-wraps the key from the
//! envelope; the buyer fetches the ciphertext from `storageRef`), seal datasets over it (they
//! commit to chunk ids) and tell where the data is; [`crate::verify::verify_dir`] reports such
//! chunks as stored elsewhere.
//!
//! **Grants.** Buyer access files under `<stream dir>/grants/<buyer key>/<ms>/` are copies of
//! what the `~/grant_access` service returned; a grant directory older than
//! `grants_max_age` is deleted.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use tracing::info;

use crate::error::{Result, StreamError};
use crate::storage::{slot_next_index, Destination};
use crate::store;

/// Default local ciphertext bytes kept per topic once uploaded: 1 GiB.
pub const DEFAULT_CHUNKS_MAX_BYTES: u64 = 1 << 30;
/// Default age after which an uploaded chunk's local ciphertext goes: 1 day.
pub const DEFAULT_CHUNKS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Default age of a grant directory: 30 days.
pub const DEFAULT_GRANTS_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// What happens to a chain whose chain directory is one of its destinations (plain `local`):
/// there the local ciphertext is the stored copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LocalOnly {
    /// Never delete its ciphertexts (the default).
    #[default]
    Keep,
    /// Apply the bounds to it too: the oldest ciphertexts go for good (once every other
    /// destination has them); the envelopes stay, so the chain of chunk ids still verifies.
    DeleteOldest,
}

impl LocalOnly {
    /// `keep` or `delete_oldest`.
    pub fn parse(s: &str) -> Option<LocalOnly> {
        match s {
            "keep" => Some(LocalOnly::Keep),
            "delete_oldest" => Some(LocalOnly::DeleteOldest),
            _ => None,
        }
    }
}

/// Bounds of one topic's local chunk ciphertexts (0 / zero duration: that bound is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRetention {
    pub max_bytes: u64,
    pub max_age: Duration,
    pub local_only: LocalOnly,
}

impl Default for ChunkRetention {
    fn default() -> Self {
        ChunkRetention {
            max_bytes: DEFAULT_CHUNKS_MAX_BYTES,
            max_age: DEFAULT_CHUNKS_MAX_AGE,
            local_only: LocalOnly::Keep,
        }
    }
}

/// What one pass of [`prune_local_chunks`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkPruneReport {
    /// Local ciphertexts deleted, and their bytes.
    pub removed_chunks: u64,
    pub removed_bytes: u64,
    /// Local ciphertext bytes left.
    pub kept_bytes: u64,
    /// Over the bound, but the oldest candidate is not stored at every destination yet.
    pub held_for_upload: bool,
    /// The chain directory is a destination (its ciphertexts are the stored copy).
    pub local_only: bool,
    /// Over the bound, but the oldest candidate holds packages the package log's consumers
    /// still read back from it ([`prune_local_chunks_held`]).
    pub held_for_log: bool,
}

fn file_len(p: &Path) -> Option<u64> {
    fs::metadata(p).ok().map(|m| m.len())
}

/// Apply chunk retention to one topic directory whose destinations are `dests` (slot order, as
/// the upload queues use them). See the module documentation for what may go.
pub fn prune_local_chunks(
    topic_dir: &Path,
    dests: &[Box<dyn Destination>],
    bound: &ChunkRetention,
    now: SystemTime,
) -> Result<ChunkPruneReport> {
    prune_local_chunks_held(topic_dir, dests, bound, now, None)
}

/// [`prune_local_chunks`], also keeping every chunk holding a package at or after
/// `log_needs_from`: a streamed topic written once has its packages' bytes only in the chunks,
/// and the package log's consumers (the event rules) read them back from there until they have
/// passed them (`ChunkMeta::last_sequence`; a chunk without one predates references).
pub fn prune_local_chunks_held(
    topic_dir: &Path,
    dests: &[Box<dyn Destination>],
    bound: &ChunkRetention,
    now: SystemTime,
    log_needs_from: Option<u64>,
) -> Result<ChunkPruneReport> {
    let mut rep = ChunkPruneReport::default();
    if !topic_dir.exists() {
        return Ok(rep);
    }
    let indices = store::sealed_indices(topic_dir)?;
    let sizes: Vec<(u64, Option<u64>)> =
        indices.iter().map(|&i| (i, file_len(&store::chunk_paths(topic_dir, i).1))).collect();
    let mut total: u64 = sizes.iter().filter_map(|(_, l)| *l).sum();
    rep.kept_bytes = total;
    rep.local_only = dests.is_empty() || dests.iter().any(|d| d.is_chain_dir());
    let keep = rep.local_only && (dests.is_empty() || bound.local_only == LocalOnly::Keep);
    if keep || (bound.max_bytes == 0 && bound.max_age.is_zero()) {
        return Ok(rep);
    }
    // Every chunk below this is stored at every destination (confirmed: the cursor moves only
    // after a successful upload).
    let mut stored_below = u64::MAX;
    for slot in 0..dests.len() {
        stored_below = stored_below.min(slot_next_index(topic_dir, slot)?);
    }
    let now_ms = store::unix_ms(now);
    let mut removed_any = false;
    // The newest sealed chunk is never a candidate.
    for &(i, len) in sizes.iter().take(sizes.len().saturating_sub(1)) {
        let Some(len) = len else { continue }; // already pruned
        let over_bytes = bound.max_bytes > 0 && total > bound.max_bytes;
        let too_old = !bound.max_age.is_zero()
            && store::load_meta(topic_dir, i)
                .ok()
                .is_some_and(|m| now_ms.saturating_sub(m.sealed_at_ms) > bound.max_age.as_millis() as u64);
        if !over_bytes && !too_old {
            break;
        }
        if i >= stored_below {
            rep.held_for_upload = true;
            break;
        }
        if let Some(from) = log_needs_from {
            let last = store::load_meta(topic_dir, i).ok().and_then(|m| m.last_sequence);
            if last.is_some_and(|l| l >= from) {
                rep.held_for_log = true;
                break;
            }
        }
        let bin = store::chunk_paths(topic_dir, i).1;
        fs::remove_file(&bin).map_err(|e| StreamError::io("remove", &bin, e))?;
        removed_any = true;
        total -= len;
        rep.removed_chunks += 1;
        rep.removed_bytes += len;
        let reason = if over_bytes { "bytes" } else { "age" };
        if rep.local_only {
            info!(chunk = %bin.display(), index = i, bytes = len, reason, "chunk retention: ciphertext deleted for good (chunks_local_only: delete_oldest; the envelope stays)");
        } else {
            info!(chunk = %bin.display(), index = i, bytes = len, reason, "chunk retention: local ciphertext deleted (stored at every destination)");
        }
    }
    if removed_any {
        store::sync_dir(topic_dir)?;
    }
    rep.kept_bytes = total;
    Ok(rep)
}

/// Delete grant directories `<stream dir>/grants/<buyer>/<ms>/` older than `max_age` at `now`
/// (and a buyer directory left empty). Returns how many grant directories went.
pub fn prune_grants(stream_dir: &Path, max_age: Duration, now: SystemTime) -> Result<u64> {
    let root = stream_dir.join("grants");
    if max_age.is_zero() || !root.exists() {
        return Ok(0);
    }
    let cutoff = store::unix_ms(now).saturating_sub(max_age.as_millis() as u64);
    let mut removed = 0;
    let list = |d: &Path| -> Result<Vec<fs::DirEntry>> {
        fs::read_dir(d)
            .map_err(|e| StreamError::io("list", d, e))?
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| StreamError::io("list", d, e))
    };
    for buyer in list(&root)? {
        let bdir = buyer.path();
        if !bdir.is_dir() {
            continue;
        }
        let mut left = 0;
        for g in list(&bdir)? {
            let ms = g.file_name().to_str().and_then(|n| n.parse::<u64>().ok());
            match ms {
                Some(ms) if ms < cutoff && g.path().is_dir() => {
                    let p = g.path();
                    fs::remove_dir_all(&p).map_err(|e| StreamError::io("remove", &p, e))?;
                    info!(grant = %p.display(), "grant retention: grant files deleted (older than grants_max_age)");
                    removed += 1;
                }
                _ => left += 1,
            }
        }
        if left == 0 {
            fs::remove_dir(&bdir).map_err(|e| StreamError::io("remove", &bdir, e))?;
        } else if removed > 0 {
            store::sync_dir(&bdir)?;
        }
    }
    if removed > 0 {
        store::sync_dir(&root)?;
    }
    Ok(removed)
}
