//! Durable event state under `<data_dir>/events/` (directories 0700):
//!
//! ```text
//! state.json             rule checkpoints (engine::Checkpoint by rule name)
//! raw/<data hash>.json   raw_data bytes of each event; keccak256(file) = on-chain dataHash
//! pending/<id>.json      produced, not yet in the chain outbox
//! submitted/<id>.json    handed to the outbox: intent id, then final state
//! dropped/<id>.json      refused for good (e.g. over the value cap), with the reason
//! inflight.json          ids + calldata hash of a batch being handed to the outbox
//! counters.json          per-rule counters for ~/status
//! pruned.json            per-rule counts of submitted records removed by retention, and the
//!                        ids of the last removal batch (so a recount never loses or doubles them)
//! ```
//!
//! Retention ([`EventStore::prune_submitted`]): a `submitted/` record whose transaction was
//! included, whose file was last written more than an age bound ago, and whose window lies
//! entirely at or before its rule's *stored* checkpoint (so a replay can never produce that
//! event again) is removed, with its raw data file unless another record refers to it. Its
//! counts move to `pruned.json` first.
//!
//! Every file is written as `<file>.tmp`, fsync'ed, renamed, and its directory fsync'ed. An
//! event is persisted (raw data first, then the pending record) before its checkpoint moves
//! past it; [`EventStore::persist`] refuses an id already pending, submitted or dropped, so a
//! window replayed after a crash is never submitted twice.

use std::collections::HashMap;
use std::fs;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{Checkpoint, EventOut};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("event store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("event store {path}: corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

/// A produced event waiting for the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingRecord {
    /// Wall-clock milliseconds when produced (age limit of coalescing; order).
    pub produced_ms: u64,
    pub event: EventOut,
}

/// An event handed to the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmittedRecord {
    pub event: EventOut,
    pub machine_id: String,
    /// The timestamp sent (clamped to the chain's latest block time).
    pub timestamp: i64,
    pub intent_id: String,
    /// submitted | included | failed | conflicting
    pub state: String,
    pub code: String,
}

/// A batch being handed to the outbox (for reconciliation after a crash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inflight {
    pub ids: Vec<String>,
    pub machine_id: String,
    pub timestamps: Vec<i64>,
    /// keccak256 of the batchAll calldata, hex.
    pub calldata_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DroppedRecord {
    event: EventOut,
    reason: String,
}

pub struct EventStore {
    dir: PathBuf,
}

/// Counts of one rule's pruned `submitted/` records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrunedCounts {
    pub submitted: u64,
    pub included: u64,
}

/// `pruned.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrunedTally {
    /// By rule name.
    pub rules: std::collections::BTreeMap<String, PrunedCounts>,
    /// Ids of the last batch: counted in `rules` already, their files may still exist (a crash
    /// during the removal); a recount skips them and the next pass finishes their removal.
    pub last_batch: Vec<String>,
}

/// Durable writes of the event store: the one helper every crate uses ([`peaqos_base::fsio`]).
pub use peaqos_base::fsio::{sync_dir, write_atomic};

impl From<peaqos_base::fsio::FsError> for StoreError {
    fn from(e: peaqos_base::fsio::FsError) -> Self {
        StoreError::Io { path: e.path, source: e.source }
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, StoreError> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| StoreError::Corrupt { path: path.to_owned(), reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Io { path: path.to_owned(), source: e }),
    }
}

fn remove_if_exists(p: &Path) -> Result<(), StoreError> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::Io { path: p.to_owned(), source: e }),
    }
}

fn list_json<T: for<'de> Deserialize<'de>>(dir: &Path) -> Result<Vec<T>, StoreError> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            if let Some(r) = read_json(&p)? {
                v.push(r);
            }
        }
    }
    Ok(v)
}

impl EventStore {
    pub fn open(data_dir: &Path) -> Result<EventStore, StoreError> {
        let dir = peaqos_base::layout::events_dir(data_dir);
        for sub in ["", "raw", "pending", "submitted", "dropped"] {
            let d = dir.join(sub);
            fs::DirBuilder::new().recursive(true).mode(0o700).create(&d).map_err(io(&d))?;
        }
        Ok(EventStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn load_checkpoints(&self) -> Result<HashMap<String, Checkpoint>, StoreError> {
        Ok(read_json(&self.dir.join("state.json"))?.unwrap_or_default())
    }

    pub fn save_checkpoints(&self, cps: &HashMap<String, Checkpoint>) -> Result<(), StoreError> {
        let b = serde_json::to_vec(cps)
            .map_err(|e| StoreError::Corrupt { path: self.dir.join("state.json"), reason: e.to_string() })?;
        Ok(write_atomic(&self.dir.join("state.json"), &b)?)
    }

    fn file(&self, sub: &str, id: &str) -> PathBuf {
        self.dir.join(sub).join(format!("{id}.json"))
    }

    /// Was this event id produced before (pending, submitted or dropped)?
    pub fn known(&self, id: &str) -> bool {
        ["pending", "submitted", "dropped"].iter().any(|s| self.file(s, id).exists())
    }

    /// Raw data file of a data hash (`0x…`).
    pub fn raw_path(&self, data_hash: &str) -> PathBuf {
        self.dir.join("raw").join(format!("{data_hash}.json"))
    }

    /// Persist a produced event (raw data, then the pending record). `Ok(false)`: already known.
    pub fn persist(&self, ev: &EventOut, raw: &[u8], produced_ms: u64) -> Result<bool, StoreError> {
        if self.known(&ev.id) {
            return Ok(false);
        }
        let rp = self.raw_path(&ev.data_hash);
        if !rp.exists() {
            write_atomic(&rp, raw)?;
        }
        let rec = PendingRecord { produced_ms, event: ev.clone() };
        let b =
            serde_json::to_vec(&rec).map_err(|e| StoreError::Corrupt { path: rp.clone(), reason: e.to_string() })?;
        write_atomic(&self.file("pending", &ev.id), &b)?;
        Ok(true)
    }

    /// Pending events, oldest first.
    pub fn pending(&self) -> Result<Vec<PendingRecord>, StoreError> {
        let mut v: Vec<PendingRecord> = list_json(&self.dir.join("pending"))?;
        v.sort_by(|a, b| (a.produced_ms, &a.event.id).cmp(&(b.produced_ms, &b.event.id)));
        Ok(v)
    }

    /// Record events as handed to the outbox under `intent_id`, and remove them from pending.
    pub fn mark_submitted(&self, recs: &[SubmittedRecord]) -> Result<(), StoreError> {
        for r in recs {
            self.save_submitted(r)?;
        }
        for r in recs {
            let p = self.file("pending", &r.event.id);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::Io { path: p, source: e }),
            }
        }
        Ok(sync_dir(&self.dir.join("pending"))?)
    }

    pub fn save_submitted(&self, r: &SubmittedRecord) -> Result<(), StoreError> {
        let p = self.file("submitted", &r.event.id);
        let b = serde_json::to_vec(r).map_err(|e| StoreError::Corrupt { path: p.clone(), reason: e.to_string() })?;
        Ok(write_atomic(&p, &b)?)
    }

    /// One submitted record by event id.
    pub fn submitted_record(&self, id: &str) -> Result<Option<SubmittedRecord>, StoreError> {
        read_json(&self.file("submitted", id))
    }

    pub fn submitted(&self) -> Result<Vec<SubmittedRecord>, StoreError> {
        list_json(&self.dir.join("submitted"))
    }

    /// Refuse a pending event for good, keeping it (and why) for audit.
    pub fn drop_pending(&self, ev: &EventOut, reason: &str) -> Result<(), StoreError> {
        let p = self.file("dropped", &ev.id);
        let b = serde_json::to_vec(&DroppedRecord { event: ev.clone(), reason: reason.to_owned() })
            .map_err(|e| StoreError::Corrupt { path: p.clone(), reason: e.to_string() })?;
        write_atomic(&p, &b)?;
        let pp = self.file("pending", &ev.id);
        let _ = fs::remove_file(&pp);
        Ok(sync_dir(&self.dir.join("pending"))?)
    }

    /// Counts of the records removed by retention.
    pub fn pruned_tally(&self) -> Result<PrunedTally, StoreError> {
        Ok(read_json(&self.dir.join("pruned.json"))?.unwrap_or_default())
    }

    /// Remove `submitted/` records of included transactions last written more than `max_age`
    /// before `now` whose window is at or before their rule's stored checkpoint (see the module
    /// documentation). Returns how many went. `max_age` zero: nothing is removed.
    pub fn prune_submitted(&self, max_age: std::time::Duration, now: std::time::SystemTime) -> Result<u64, StoreError> {
        if max_age.is_zero() {
            return Ok(0);
        }
        let sub = self.dir.join("submitted");
        let mut tally = self.pruned_tally()?;
        // Finish a batch a crash interrupted (already counted).
        for id in std::mem::take(&mut tally.last_batch) {
            remove_if_exists(&self.file("submitted", &id))?;
        }
        let cps = self.load_checkpoints()?;
        let mut batch: Vec<SubmittedRecord> = Vec::new();
        for e in fs::read_dir(&sub).map_err(io(&sub))? {
            let e = e.map_err(io(&sub))?;
            let p = e.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let old = e
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > max_age);
            if !old {
                continue;
            }
            let Some(r) = read_json::<SubmittedRecord>(&p)? else { continue };
            let behind_checkpoint =
                cps.get(&r.event.rule).and_then(|c| c.consumed_upto).is_some_and(|c| c >= r.event.last_seq);
            if r.state == "included" && behind_checkpoint {
                batch.push(r);
            }
        }
        if batch.is_empty() {
            return Ok(0);
        }
        for r in &batch {
            let c = tally.rules.entry(r.event.rule.clone()).or_default();
            c.submitted += 1;
            c.included += 1;
        }
        tally.last_batch = batch.iter().map(|r| r.event.id.clone()).collect();
        let b = serde_json::to_vec(&tally)
            .map_err(|e| StoreError::Corrupt { path: self.dir.join("pruned.json"), reason: e.to_string() })?;
        write_atomic(&self.dir.join("pruned.json"), &b)?;
        for r in &batch {
            remove_if_exists(&self.file("submitted", &r.event.id))?;
        }
        sync_dir(&sub)?;
        // Raw data nobody refers to any more.
        let mut live: std::collections::HashSet<String> = std::collections::HashSet::new();
        for r in self.submitted()? {
            live.insert(r.event.data_hash);
        }
        for r in self.pending()? {
            live.insert(r.event.data_hash);
        }
        for r in list_json::<DroppedRecord>(&self.dir.join("dropped"))? {
            live.insert(r.event.data_hash);
        }
        for r in &batch {
            if !live.contains(&r.event.data_hash) {
                remove_if_exists(&self.raw_path(&r.event.data_hash))?;
                live.insert(r.event.data_hash.clone());
            }
        }
        sync_dir(&self.dir.join("raw"))?;
        tracing::info!(
            removed = batch.len(),
            "event retention: included events' records removed (counted in pruned.json)"
        );
        Ok(batch.len() as u64)
    }

    pub fn inflight(&self) -> Result<Option<Inflight>, StoreError> {
        read_json(&self.dir.join("inflight.json"))
    }

    pub fn set_inflight(&self, i: Option<&Inflight>) -> Result<(), StoreError> {
        let p = self.dir.join("inflight.json");
        match i {
            Some(i) => Ok(write_atomic(&p, &serde_json::to_vec(i).unwrap_or_default())?),
            None => match fs::remove_file(&p) {
                Ok(()) => Ok(sync_dir(&self.dir)?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StoreError::Io { path: p, source: e }),
            },
        }
    }
}
