//! [`ChunkWriter`]: one topic's crash-safe chunk chain.
//!
//! The node feeds every signed package line of a topic into [`ChunkWriter::append`]. The line is
//! appended to the durable open-chunk file `open.jsonl` (see [`crate::store`] for the layout);
//! [`ChunkWriter::sync`] fsyncs it — the caller's group commit: a message is *acknowledged* once
//! `sync` returned after its `append`, and an acknowledged message is never lost (it is in
//! `open.jsonl` or in a sealed chunk). A chunk is sealed as soon as it holds `max_messages`
//! lines or at least `max_bytes` plaintext bytes (so it can exceed `max_bytes` by one line), by
//! [`ChunkWriter::poll`] when its first line is older than `max_age`, or by
//! [`ChunkWriter::close_now`].
//!
//! Sealing (see [`crate::chain::seal_chunk`]) writes `<index>.bin`, `<index>.meta.json`, then
//! `<index>.json` (each tmp + fsync + rename), fsyncs the directory, writes `head.json`
//! atomically and finally removes `open.jsonl`.
//!
//! **Key custody**: chunk keys are never stored in plaintext. Every chunk key is wrapped (sealed
//! box) to the machine's own X25519 key as the `machine` recipient of the envelope
//! (`recipient_id` `machine-1`); [`crate::grant`] unwraps that entry to re-wrap for buyers.
//! Recipients, in the SDK's order: owner (`owner-1`, optional), operator (`operator-1`,
//! optional), machine (`machine-1`, always).
//!
//! **Recovery** at [`ChunkWriter::open`]:
//! 1. stale `*.tmp` files are removed (a seal that did not reach its rename);
//! 2. envelopes past the head (`<last+1>.json`, sealed before a crash but before `head.json` was
//!    updated) are checked (index, link, ciphertext hash) and adopted;
//! 3. a `.bin`/`.meta.json` of the next index without its envelope (torn seal) is removed;
//! 4. `open.jsonl`: if its header index is already sealed (crash after the head update, before
//!    the removal) and its content hashes to that chunk's `plaintext_hash`, it is removed; if it
//!    holds complete lines for the next index, they are sealed now (a trailing partial line —
//!    never acknowledged — is dropped and reported); with no complete line it is discarded;
//!    anything else is kept aside as `open.jsonl.orphan-<ms>` and reported.
//!
//! Every decision is in the returned [`RecoveryReport`].
//!
//! **Written as it grows** ([`ChunkWriter::enable_direct`], what the node does): the open chunk
//! is `<index>.bin` encrypted line by line plus `<index>.key.json` ([`crate::open_chunk`]);
//! [`ChunkWriter::append_direct`] never seals (the caller seals with
//! [`ChunkWriter::seal_due`] once the lines are acknowledged); sealing appends the tag and
//! writes `<index>.meta.json` and `<index>.json`, then removes the key file. Recovery keeps such
//! a `.bin` (step 3) and `enable_direct` reopens it, cut to the lines the caller accepts.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use crate::chain::{envelope_for, seal_chunk, ChunkRandom, ChunkSigner, OsRandom, RecipientSpec};
use crate::crypto;
use crate::envelope::{Chunk, RecipientType};
use crate::error::{Result, StreamError};
use crate::keys::MachineStreamKeys;
use crate::open_chunk::{self, OpenChunkFile, RecoveredOpen};
use crate::store::{self, ChunkMeta, CloseReason, Head, HEAD_FILE, HEAD_SCHEMA, META_SCHEMA, OPEN_FILE};

/// When to close a chunk.
/// Missing fields take the defaults (1 MiB, 10 000 messages, 60 s); `max_age` is in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChunkPolicy {
    /// Seal once the plaintext reaches this many bytes.
    pub max_bytes: usize,
    /// Seal once the chunk holds this many messages.
    pub max_messages: usize,
    /// Seal (via `poll`) once the first message is this old.
    #[serde(with = "secs")]
    pub max_age: Duration,
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

impl Default for ChunkPolicy {
    fn default() -> Self {
        Self { max_bytes: 1024 * 1024, max_messages: 10_000, max_age: Duration::from_secs(60) }
    }
}

/// Owner / operator X25519 public keys (both optional; the machine is always a recipient).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients {
    pub owner: Option<[u8; 32]>,
    pub operator: Option<[u8; 32]>,
}

impl Recipients {
    /// Recipient list in SDK order, the machine last.
    pub fn specs(&self, machine_x25519: [u8; 32]) -> Vec<RecipientSpec> {
        let mut v = Vec::new();
        if let Some(pk) = self.owner {
            v.push(RecipientSpec {
                recipient_id: "owner-1".into(),
                recipient_type: RecipientType::Owner,
                public_key: pk,
            });
        }
        if let Some(pk) = self.operator {
            v.push(RecipientSpec {
                recipient_id: "operator-1".into(),
                recipient_type: RecipientType::Operator,
                public_key: pk,
            });
        }
        v.push(RecipientSpec {
            recipient_id: "machine-1".into(),
            recipient_type: RecipientType::Machine,
            public_key: machine_x25519,
        });
        v
    }
}

/// A chunk that was just sealed (what the node publishes as the manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedChunk {
    pub topic: String,
    pub chunk: Chunk,
    pub meta: ChunkMeta,
    /// `<index>.json`.
    pub envelope_path: PathBuf,
    /// `<index>.bin`.
    pub ciphertext_path: PathBuf,
}

impl SealedChunk {
    /// The chunk envelope as compact camelCase JSON (the SDK CLI / P2P wire form) — what the
    /// node publishes as the sealed-chunk manifest.
    pub fn manifest_json(&self) -> Result<String> {
        serde_json::to_string(&self.chunk.to_wire_json()?).map_err(|e| StreamError::json("chunk manifest", e))
    }
}

/// What recovery did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RecoveryAction {
    /// A stale temp file was removed.
    RemovedTempFile { path: PathBuf },
    /// A chunk sealed before the crash but missing from the head was adopted.
    AdoptedSealedChunk { index: u64, chunk_id: String },
    /// A torn seal's files (no envelope) were removed.
    RemovedTornSeal { index: u64, paths: Vec<PathBuf> },
    /// The open chunk of the previous run was sealed.
    SealedOpenChunk { index: u64, messages: u64, dropped_partial_bytes: u64 },
    /// The open chunk was discarded.
    DiscardedOpenChunk { reason: String, dropped_partial_bytes: u64 },
    /// The open chunk file was already sealed and was removed.
    RemovedAlreadySealedOpenChunk { index: u64 },
    /// An inconsistent open chunk file was kept aside.
    KeptOrphanOpenChunk { path: PathBuf, reason: String },
    /// The disk was full when the open chunk was to be sealed: it stays open (appends continue,
    /// the seal is retried later); nothing was lost.
    KeptOpenChunkDiskFull { index: u64, messages: u64 },
    /// The open chunk written as ciphertext (`<index>.bin` + `<index>.key.json`) was reopened;
    /// `cut_bytes` (a torn or unacknowledged tail, or the tag of an unfinished seal) were cut off.
    ReopenedOpenCiphertext { index: u64, messages: u64, cut_bytes: u64 },
    /// The key file of a chunk already sealed was removed (the envelope holds the key).
    RemovedStaleKeyFile { index: u64 },
}

/// Result of the recovery scan at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub topic: String,
    pub dir: PathBuf,
    /// Index the next sealed chunk will get.
    pub next_index: u64,
    /// `chunk_id` of the last sealed chunk.
    pub last_chunk_id: Option<String>,
    pub actions: Vec<RecoveryAction>,
    /// The chunk sealed during recovery (to publish).
    pub sealed: Option<SealedChunk>,
}

impl RecoveryReport {
    /// True if nothing had to be repaired.
    pub fn is_clean(&self) -> bool {
        self.actions.is_empty()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OpenHeader {
    open_chunk: String,
    topic: String,
    index: u64,
    first_append_ms: u64,
}
const OPEN_SCHEMA: &str = "peaqos.stream.open.v1";

struct OpenChunk {
    /// `open.jsonl`; `None` for a log-backed writer (see [`ChunkWriter::set_log_backed`]).
    file: Option<File>,
    /// Length of the header line (the file is `header_len + buf.len()` bytes).
    header_len: u64,
    buf: Vec<u8>,
    messages: u64,
    first_append: SystemTime,
    last_append: SystemTime,
    dirty: bool,
}

/// Crash-safe, restart-continuing chunk chain writer for one topic.
pub struct ChunkWriter {
    dir: PathBuf,
    topic: String,
    policy: ChunkPolicy,
    signer: ChunkSigner,
    recipients: Vec<RecipientSpec>,
    rng: Box<dyn ChunkRandom>,
    next_index: u64,
    last_chunk_id: Option<String>,
    open: Option<OpenChunk>,
    dir_needs_sync: bool,
    /// The open chunk lives in memory only (see [`ChunkWriter::set_log_backed`]).
    log_backed: bool,
    /// After a failed seal (a full disk) the next try waits until then.
    seal_retry_at: Option<std::time::Instant>,
    /// The machine's X25519 key pair when the open chunk is written as ciphertext
    /// ([`ChunkWriter::enable_direct`]).
    direct: Option<([u8; 32], Zeroizing<[u8; 32]>)>,
    /// The open chunk written as ciphertext.
    direct_open: Option<OpenChunkFile>,
    /// Sequence number of the open chunk's last package, when told ([`ChunkWriter::note_last_sequence`]).
    open_last_sequence: Option<u64>,
}

impl std::fmt::Debug for ChunkWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkWriter")
            .field("dir", &self.dir)
            .field("topic", &self.topic)
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

impl ChunkWriter {
    /// Open (or create) the chain of `topic` under `data_dir`, run recovery, and return the
    /// writer and what recovery did. `machine_did` / `key_id` go into every chunk signature.
    pub fn open(
        data_dir: &Path,
        topic: &str,
        policy: ChunkPolicy,
        keys: &MachineStreamKeys,
        machine_did: &str,
        key_id: &str,
        recipients: &Recipients,
    ) -> Result<(ChunkWriter, RecoveryReport)> {
        Self::open_with_random(data_dir, topic, policy, keys, machine_did, key_id, recipients, Box::new(OsRandom))
    }

    /// [`open`](Self::open) with an injected randomness source (tests).
    #[allow(clippy::too_many_arguments)]
    pub fn open_with_random(
        data_dir: &Path,
        topic: &str,
        policy: ChunkPolicy,
        keys: &MachineStreamKeys,
        machine_did: &str,
        key_id: &str,
        recipients: &Recipients,
        rng: Box<dyn ChunkRandom>,
    ) -> Result<(ChunkWriter, RecoveryReport)> {
        if policy.max_bytes == 0 || policy.max_messages == 0 {
            return Err(StreamError::invalid("chunk policy", "max_bytes and max_messages must be > 0"));
        }
        let dir = store::topic_dir(data_dir, topic)?;
        fs::create_dir_all(&dir).map_err(|e| StreamError::io("create directory", &dir, e))?;
        let mut w = ChunkWriter {
            dir,
            topic: topic.to_string(),
            policy,
            signer: keys.signer(machine_did, key_id)?,
            recipients: recipients.specs(keys.x25519_public),
            rng,
            next_index: 0,
            last_chunk_id: None,
            open: None,
            dir_needs_sync: false,
            log_backed: false,
            seal_retry_at: None,
            direct: None,
            direct_open: None,
            open_last_sequence: None,
        };
        let report = w.recover()?;
        Ok((w, report))
    }

    /// Topic of this writer.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// Directory of this topic's chain.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Index of the next chunk to be sealed.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }
    /// `chunk_id` of the last sealed chunk.
    pub fn last_chunk_id(&self) -> Option<&str> {
        self.last_chunk_id.as_deref()
    }
    /// Keep the open chunk in memory only, never in `open.jsonl`, from the next chunk on: for a
    /// writer fed from a durable log that keeps every package not yet in a sealed chunk (the
    /// node's [`crate::feed::TopicFeed`], whose retention position is the newest *sealed*
    /// package). A crash then loses nothing: the next start replays the open chunk's packages
    /// from the log. This saves writing every streamed byte a second time (`open.jsonl`) before
    /// the sealed chunk; `sync` has nothing to make durable. An open chunk adopted by recovery
    /// (a previous run's `open.jsonl` kept open on a full disk) keeps its file.
    pub fn set_log_backed(&mut self, on: bool) {
        self.log_backed = on;
    }

    /// Messages in the open chunk.
    pub fn open_messages(&self) -> u64 {
        self.open.as_ref().map_or(0, |o| o.messages) + self.direct_open.as_ref().map_or(0, OpenChunkFile::messages)
    }

    /// Indices below the next one that still have a key file (sealed: the envelope holds it).
    fn stale_key_files(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(|e| StreamError::io("list", &self.dir, e))? {
            let e = e.map_err(|e| StreamError::io("list", &self.dir, e))?;
            let name = e.file_name();
            let Some(i) = name.to_str().and_then(|n| n.strip_suffix(".key.json")).and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if i < self.next_index {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// Write the open chunk as ciphertext from now on (see [`crate::open_chunk`]): each line is
    /// encrypted into `<index>.bin` as it is appended, the tag appended at seal, so a line is
    /// written to disk once. `keys` must be the machine keys the chain was opened with. Reopens
    /// the open chunk a previous run left: its complete lines are kept from the start while
    /// `keep(line)` accepts them (the node keeps what the package log acknowledged); the rest is
    /// cut off. A previous run's `open.jsonl` chunk still open (a full disk at recovery) stays
    /// the open chunk until it is sealed.
    pub fn enable_direct(
        &mut self,
        keys: &MachineStreamKeys,
        keep: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<Option<(RecoveryAction, RecoveredOpen)>> {
        self.direct = Some((keys.x25519_public, Zeroizing::new(*keys.x25519_secret())));
        if !open_chunk::key_path(&self.dir, self.next_index).exists() {
            return Ok(None);
        }
        let (f, r) = OpenChunkFile::recover(&self.dir, self.next_index, keys.x25519_secret(), keep)?;
        if r.cut_bytes > 0 {
            warn!(topic = %self.topic, index = self.next_index, cut_bytes = r.cut_bytes, "recovery: cut the unacknowledged tail of the open chunk");
        }
        let action = RecoveryAction::ReopenedOpenCiphertext {
            index: self.next_index,
            messages: r.messages,
            cut_bytes: r.cut_bytes,
        };
        info!(topic = %self.topic, ?action, "open chunk reopened");
        self.direct_open = Some(f);
        Ok(Some((action, r)))
    }

    /// The sequence number of the package just appended (kept in the sealed chunk's metadata,
    /// for chunk retention).
    pub fn note_last_sequence(&mut self, sequence: u64) {
        self.open_last_sequence = Some(sequence);
    }

    /// True when the open chunk (if any) is written as ciphertext.
    pub fn is_direct_open(&self) -> bool {
        self.open.is_none()
    }

    /// True once [`enable_direct`](Self::enable_direct) was called.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Append one line to the open chunk written as ciphertext (a chunk opened first if none is):
    /// returns `(chunk index, offset, sha256(line))` of the line in the chunk's plaintext. Never
    /// seals (see [`seal_due`](Self::seal_due)); durable after [`sync`](Self::sync).
    pub fn append_direct(&mut self, package_line: &[u8], now: SystemTime) -> Result<(u64, u64, [u8; 32])> {
        let line = check_line(package_line)?;
        let Some((pk, _)) = &self.direct else {
            return Err(StreamError::invalid("chunk writer", "append_direct before enable_direct"));
        };
        if self.open.is_some() {
            return Err(StreamError::invalid("chunk writer", "a previous run's open chunk is still to be sealed"));
        }
        if self.direct_open.is_none() {
            let pk = *pk;
            let f = OpenChunkFile::create(&self.dir, &self.topic, self.next_index, &pk, self.rng.as_mut(), now)?;
            self.direct_open = Some(f);
        }
        let o = self.direct_open.as_mut().ok_or_else(|| StreamError::NotFound("open chunk".into()))?;
        let (off, digest) = o.append(line, now)?;
        Ok((o.index(), off, digest))
    }

    /// Remember the open chunk's current end (the lines appended so far are acknowledged).
    pub fn checkpoint(&mut self) {
        if let Some(o) = &mut self.direct_open {
            o.checkpoint();
        }
    }

    /// Cut the open chunk back to the last [`checkpoint`](Self::checkpoint).
    pub fn rollback(&mut self) -> Result<()> {
        match &mut self.direct_open {
            Some(o) => o.rollback(),
            None => Ok(()),
        }
    }

    /// True when the open chunk written as ciphertext is full by size or count.
    pub fn open_full(&self) -> bool {
        self.direct_open
            .as_ref()
            .is_some_and(|o| o.messages() >= self.policy.max_messages as u64 || o.len() >= self.policy.max_bytes as u64)
    }

    /// Seal the open chunk if it is full by size or count (after a group commit).
    pub fn seal_due(&mut self) -> Result<Option<SealedChunk>> {
        let reason = match &self.direct_open {
            Some(o) if o.messages() >= self.policy.max_messages as u64 => CloseReason::MaxMessages,
            Some(o) if o.len() >= self.policy.max_bytes as u64 => CloseReason::MaxBytes,
            _ => return Ok(None),
        };
        if self.seal_retry_at.is_some_and(|t| std::time::Instant::now() < t) {
            return Ok(None);
        }
        self.seal_direct(reason).map(Some)
    }

    /// The plaintext `offset..offset + length` of the open chunk `index`; `None` if `index` is not
    /// the open chunk.
    pub fn read_open(&self, index: u64, offset: u64, length: u64) -> Option<Result<Zeroizing<Vec<u8>>>> {
        self.direct_open.as_ref().filter(|o| o.index() == index).map(|o| o.read(offset, length))
    }

    fn seal_direct(&mut self, reason: CloseReason) -> Result<SealedChunk> {
        let res = self.try_seal_direct(reason);
        if res.is_err() {
            if let Some(o) = &mut self.direct_open {
                let _ = o.unfinish();
            }
            self.seal_retry_at = Some(std::time::Instant::now() + Duration::from_secs(1));
        } else {
            self.seal_retry_at = None;
        }
        res
    }

    fn try_seal_direct(&mut self, reason: CloseReason) -> Result<SealedChunk> {
        let index = self.next_index;
        let o = self.direct_open.as_mut().ok_or_else(|| StreamError::NotFound("open chunk".into()))?;
        let fin = o.finish()?;
        let (key, nonce) = o.key_nonce();
        let encrypted_data_hash = format!("0x{}", hex::encode(fin.encrypted_data_hash));
        let chunk = envelope_for(
            key,
            nonce,
            &encrypted_data_hash,
            &fin.plaintext_hash,
            index,
            self.last_chunk_id.as_deref(),
            &self.signer,
            &self.recipients,
            self.rng.as_mut(),
        )?;
        let meta = ChunkMeta {
            schema: META_SCHEMA.into(),
            topic: self.topic.clone(),
            index,
            chunk_id: chunk.chunk_id.clone(),
            messages: o.messages(),
            plaintext_bytes: fin.ciphertext_len,
            first_append_ms: store::unix_ms(o.first_append()),
            last_append_ms: store::unix_ms(o.last_append()),
            sealed_at_ms: store::unix_ms(SystemTime::now()),
            close_reason: reason,
            last_sequence: self.open_last_sequence,
        };
        let messages = meta.messages;
        let (j, b, m) = store::chunk_paths(&self.dir, index);
        let mut batch = store::AtomicBatch::new(&self.dir);
        batch.write(&m, &store::to_json_bytes(&meta, "chunk meta")?)?;
        batch.write(&j, &store::to_json_bytes(&chunk.to_wire_json()?, "chunk envelope")?)?;
        batch.commit()?;
        // Sealed: the envelope holds the key now (a leftover key file is removed at the next open).
        self.direct_open = None;
        self.open_last_sequence = None;
        self.last_chunk_id = Some(chunk.chunk_id.clone());
        self.next_index = index + 1;
        let kp = open_chunk::key_path(&self.dir, index);
        if let Err(e) = fs::remove_file(&kp) {
            warn!(topic = %self.topic, index, error = %e, "cannot remove the sealed chunk's key file; removed at the next start");
        }
        self.write_head()?;
        info!(topic = %self.topic, index, chunk_id = %chunk.chunk_id, messages, reason = ?reason, "chunk sealed");
        Ok(SealedChunk { topic: self.topic.clone(), chunk, meta, envelope_path: j, ciphertext_path: b })
    }

    fn recover(&mut self) -> Result<RecoveryReport> {
        let mut actions = Vec::new();
        // 1. temp files.
        let rd = fs::read_dir(&self.dir).map_err(|e| StreamError::io("list", &self.dir, e))?;
        for e in rd {
            let e = e.map_err(|e| StreamError::io("list", &self.dir, e))?;
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let p = e.path();
                fs::remove_file(&p).map_err(|e| StreamError::io("remove", &p, e))?;
                actions.push(RecoveryAction::RemovedTempFile { path: p });
            }
        }
        // 2. head + adopt sealed chunks past it.
        let head = store::load_head(&self.dir)?;
        if let Some(h) = &head {
            if h.topic != self.topic {
                return Err(StreamError::invalid(
                    self.dir.join(HEAD_FILE).display().to_string(),
                    format!("head belongs to topic {:?}, not {:?}", h.topic, self.topic),
                ));
            }
            self.next_index = h.last_index + 1;
            self.last_chunk_id = Some(h.last_chunk_id.clone());
        }
        let mut adopted = false;
        loop {
            let (j, b, _) = store::chunk_paths(&self.dir, self.next_index);
            if !j.exists() {
                break;
            }
            let c = store::load_chunk(&self.dir, self.next_index)?;
            let ct = store::read(&b)?;
            if c.index != self.next_index
                || c.previous_chunk_id != self.last_chunk_id
                || c.encrypted_data_hash != crypto::hash_hex0x(&ct)
            {
                return Err(StreamError::Chain {
                    chain: self.dir.display().to_string(),
                    index: self.next_index,
                    reason: "sealed chunk past the head does not link to the head or its ciphertext hash differs"
                        .into(),
                });
            }
            warn!(topic = %self.topic, index = c.index, "recovery: adopting chunk sealed before crash");
            actions.push(RecoveryAction::AdoptedSealedChunk { index: c.index, chunk_id: c.chunk_id.clone() });
            self.last_chunk_id = Some(c.chunk_id);
            self.next_index += 1;
            adopted = true;
        }
        if adopted {
            self.write_head()?;
        }
        // 3. torn seal of next index (an open chunk written as ciphertext keeps its `.bin`: it
        // has a key file, see `enable_direct`); key files of sealed chunks.
        let (_, b, m) = store::chunk_paths(&self.dir, self.next_index);
        let open_ct = open_chunk::key_path(&self.dir, self.next_index).exists();
        let torn: Vec<PathBuf> = [b, m]
            .into_iter()
            .filter(|p| p.exists() && !(open_ct && p.extension().is_some_and(|e| e == "bin")))
            .collect();
        if !torn.is_empty() {
            for p in &torn {
                fs::remove_file(p).map_err(|e| StreamError::io("remove", p, e))?;
            }
            store::sync_dir(&self.dir)?;
            actions.push(RecoveryAction::RemovedTornSeal { index: self.next_index, paths: torn });
        }
        for index in self.stale_key_files()? {
            let p = open_chunk::key_path(&self.dir, index);
            fs::remove_file(&p).map_err(|e| StreamError::io("remove", &p, e))?;
            store::sync_dir(&self.dir)?;
            actions.push(RecoveryAction::RemovedStaleKeyFile { index });
        }
        // 4. open chunk.
        let mut sealed = None;
        let open_path = self.dir.join(OPEN_FILE);
        if open_path.exists() {
            let bytes = store::read(&open_path)?;
            sealed = self.recover_open(&open_path, &bytes, &mut actions)?;
        }
        let report = RecoveryReport {
            topic: self.topic.clone(),
            dir: self.dir.clone(),
            next_index: self.next_index,
            last_chunk_id: self.last_chunk_id.clone(),
            actions,
            sealed,
        };
        if report.is_clean() {
            debug!(topic = %self.topic, next_index = self.next_index, "chunk chain opened");
        } else {
            info!(topic = %self.topic, next_index = self.next_index, actions = ?report.actions, "chunk chain recovered");
        }
        Ok(report)
    }

    fn recover_open(
        &mut self,
        path: &Path,
        bytes: &[u8],
        actions: &mut Vec<RecoveryAction>,
    ) -> Result<Option<SealedChunk>> {
        let Some(hdr_end) = bytes.iter().position(|&b| b == b'\n') else {
            self.remove_open(path)?;
            actions.push(RecoveryAction::DiscardedOpenChunk {
                reason: "open chunk header incomplete (no message was ever appended)".into(),
                dropped_partial_bytes: bytes.len() as u64,
            });
            return Ok(None);
        };
        let header: OpenHeader = match serde_json::from_slice(&bytes[..hdr_end]) {
            Ok(h) => h,
            Err(e) => return self.orphan(path, format!("unreadable open chunk header: {e}"), actions).map(|_| None),
        };
        if header.open_chunk != OPEN_SCHEMA || header.topic != self.topic {
            return self.orphan(path, "open chunk header of another schema or topic".into(), actions).map(|_| None);
        }
        let body = &bytes[hdr_end + 1..];
        let complete = body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let partial = (body.len() - complete) as u64;
        let lines = &body[..complete];
        if header.index < self.next_index {
            let c = store::load_chunk(&self.dir, header.index)?;
            if c.plaintext_hash == crypto::hash_hex0x(lines) {
                self.remove_open(path)?;
                actions.push(RecoveryAction::RemovedAlreadySealedOpenChunk { index: header.index });
                return Ok(None);
            }
            return self
                .orphan(path, format!("open chunk for index {} differs from the sealed chunk", header.index), actions)
                .map(|_| None);
        }
        if header.index > self.next_index {
            return self
                .orphan(
                    path,
                    format!("open chunk index {} is ahead of the chain (next {})", header.index, self.next_index),
                    actions,
                )
                .map(|_| None);
        }
        let messages = lines.iter().filter(|&&b| b == b'\n').count() as u64;
        if messages == 0 {
            self.remove_open(path)?;
            actions.push(RecoveryAction::DiscardedOpenChunk {
                reason: "open chunk holds no complete message".into(),
                dropped_partial_bytes: partial,
            });
            return Ok(None);
        }
        let first = SystemTime::UNIX_EPOCH + Duration::from_millis(header.first_append_ms);
        let last = fs::metadata(path).and_then(|m| m.modified()).unwrap_or(first);
        let s = match self.seal(lines, messages, first, last, CloseReason::Recovery) {
            Ok(s) => s,
            Err(e) if e.is_disk_full() => {
                // Starting on a full disk must not fail: keep the open chunk open as it is.
                self.adopt_open(path, (hdr_end + 1) as u64, lines, messages, first, last)?;
                warn!(topic = %self.topic, index = self.next_index, "recovery: disk full; the open chunk stays open and is sealed later");
                actions.push(RecoveryAction::KeptOpenChunkDiskFull { index: self.next_index, messages });
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        self.remove_open(path)?;
        if partial > 0 {
            warn!(topic = %self.topic, partial, "recovery: dropped a torn, unacknowledged trailing line");
        }
        actions.push(RecoveryAction::SealedOpenChunk {
            index: s.chunk.index,
            messages,
            dropped_partial_bytes: partial,
        });
        Ok(Some(s))
    }

    /// Continue the open chunk of the previous run: its complete lines are the buffer, a torn
    /// trailing line is cut off (which needs no space).
    fn adopt_open(
        &mut self,
        path: &Path,
        header_len: u64,
        lines: &[u8],
        messages: u64,
        first: SystemTime,
        last: SystemTime,
    ) -> Result<()> {
        let mut file = OpenOptions::new().write(true).open(path).map_err(|e| StreamError::io("open", path, e))?;
        let len = header_len + lines.len() as u64;
        file.set_len(len).map_err(|e| StreamError::io("truncate", path, e))?;
        file.seek(std::io::SeekFrom::Start(len)).map_err(|e| StreamError::io("seek", path, e))?;
        self.open = Some(OpenChunk {
            file: Some(file),
            header_len,
            buf: lines.to_vec(),
            messages,
            first_append: first,
            last_append: last,
            dirty: false,
        });
        Ok(())
    }

    fn orphan(&mut self, path: &Path, reason: String, actions: &mut Vec<RecoveryAction>) -> Result<()> {
        let dest = self.dir.join(format!("{OPEN_FILE}.orphan-{}", store::unix_ms(SystemTime::now())));
        fs::rename(path, &dest).map_err(|e| StreamError::io("rename", path, e))?;
        store::sync_dir(&self.dir)?;
        warn!(topic = %self.topic, path = %dest.display(), %reason, "recovery: kept open chunk aside");
        actions.push(RecoveryAction::KeptOrphanOpenChunk { path: dest, reason });
        Ok(())
    }

    fn remove_open(&mut self, path: &Path) -> Result<()> {
        fs::remove_file(path).map_err(|e| StreamError::io("remove", path, e))?;
        Ok(store::sync_dir(&self.dir)?)
    }

    fn write_head(&self) -> Result<()> {
        let Some(id) = &self.last_chunk_id else { return Ok(()) };
        let head = Head {
            schema: HEAD_SCHEMA.into(),
            topic: self.topic.clone(),
            last_index: self.next_index - 1,
            last_chunk_id: id.clone(),
        };
        Ok(store::write_atomic(&self.dir.join(HEAD_FILE), &store::to_json_bytes(&head, "head")?)?)
    }

    /// Append one signed package line (canonical JSON, no embedded `\n`; one trailing `\n` is
    /// accepted and ignored). Returns the chunk sealed because this line filled it.
    pub fn append(&mut self, package_line: &[u8]) -> Result<Option<SealedChunk>> {
        self.append_at(package_line, SystemTime::now())
    }

    /// [`append`](Self::append) with an explicit clock.
    pub fn append_at(&mut self, package_line: &[u8], now: SystemTime) -> Result<Option<SealedChunk>> {
        let line = check_line(package_line)?;
        if self.direct.is_some() && self.open.is_none() {
            self.append_direct(line, now)?;
            // The line is in the open chunk whatever happens to the seal (retried later).
            return match self.seal_due() {
                Ok(s) => Ok(s),
                Err(e) => {
                    warn!(topic = %self.topic, error = %e, "sealing a full chunk failed; the chunk stays open, retried in 1 s");
                    Ok(None)
                }
            };
        }
        if self.open.is_none() {
            self.start_open(now)?;
        }
        let path = self.dir.join(OPEN_FILE);
        let o = self.open.as_mut().ok_or_else(|| StreamError::NotFound("open chunk".into()))?;
        let start = o.buf.len();
        o.buf.extend_from_slice(line);
        o.buf.push(b'\n');
        if let Some(file) = o.file.as_mut() {
            if let Err(e) = file.write_all(&o.buf[start..]) {
                // A short write (disk full) must not leave a partial line for the next one to follow.
                o.buf.truncate(start);
                let good = o.header_len + o.buf.len() as u64;
                let _ = file.set_len(good).and_then(|_| file.seek(std::io::SeekFrom::Start(good)));
                return Err(StreamError::io("append", &path, e));
            }
        }
        o.messages += 1;
        o.last_append = now;
        o.dirty = true;
        let reason = if o.messages >= self.policy.max_messages as u64 {
            Some(CloseReason::MaxMessages)
        } else if o.buf.len() >= self.policy.max_bytes {
            Some(CloseReason::MaxBytes)
        } else {
            None
        };
        match reason {
            Some(_) if self.seal_retry_at.is_some_and(|t| std::time::Instant::now() < t) => Ok(None),
            // The line is in the open chunk whatever happens to the seal: a failed seal (a full
            // disk) is logged and retried later, the append itself succeeded.
            Some(r) => match self.seal_open(r) {
                Ok(s) => Ok(Some(s)),
                Err(e) => {
                    warn!(topic = %self.topic, error = %e, "sealing a full chunk failed; the chunk stays open, retried in 1 s");
                    Ok(None)
                }
            },
            None => Ok(None),
        }
    }

    fn start_open(&mut self, now: SystemTime) -> Result<()> {
        if self.log_backed {
            self.open = Some(OpenChunk {
                file: None,
                header_len: 0,
                buf: Vec::new(),
                messages: 0,
                first_append: now,
                last_append: now,
                dirty: false,
            });
            return Ok(());
        }
        let path = self.dir.join(OPEN_FILE);
        let header = OpenHeader {
            open_chunk: OPEN_SCHEMA.into(),
            topic: self.topic.clone(),
            index: self.next_index,
            first_append_ms: store::unix_ms(now),
        };
        let mut h = serde_json::to_vec(&header).map_err(|e| StreamError::json("open chunk header", e))?;
        h.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|e| StreamError::io("create", &path, e))?;
        file.write_all(&h).map_err(|e| StreamError::io("write", &path, e))?;
        self.dir_needs_sync = true;
        self.open = Some(OpenChunk {
            file: Some(file),
            header_len: h.len() as u64,
            buf: Vec::new(),
            messages: 0,
            first_append: now,
            last_append: now,
            dirty: true,
        });
        Ok(())
    }

    /// Make every appended line durable (fsync of the open chunk file, and of the directory
    /// after the file was created). Call after a group of appends; lines are acknowledged
    /// once this returns.
    pub fn sync(&mut self) -> Result<()> {
        if let Some(o) = &mut self.direct_open {
            o.sync()?;
        }
        if let Some(o) = &mut self.open {
            if let (true, Some(file)) = (o.dirty, o.file.as_mut()) {
                let path = self.dir.join(OPEN_FILE);
                file.sync_data().map_err(|e| StreamError::io("fsync", &path, e))?;
            }
            o.dirty = false;
        }
        if self.dir_needs_sync {
            store::sync_dir(&self.dir)?;
            self.dir_needs_sync = false;
        }
        Ok(())
    }

    /// Seal the open chunk if its first line is at least `max_age` old at `now`.
    pub fn poll(&mut self, now: SystemTime) -> Result<Option<SealedChunk>> {
        if self.open.is_none() {
            let due = match &self.direct_open {
                Some(o) if o.messages() > 0 => {
                    now.duration_since(o.first_append()).unwrap_or_default() >= self.policy.max_age
                }
                _ => false,
            } && self.seal_retry_at.is_none_or(|t| std::time::Instant::now() >= t);
            return if due { self.seal_direct(CloseReason::MaxAge).map(Some) } else { Ok(None) };
        }
        let due = match &self.open {
            Some(o) if o.messages > 0 => now.duration_since(o.first_append).unwrap_or_default() >= self.policy.max_age,
            _ => false,
        } && self.seal_retry_at.is_none_or(|t| std::time::Instant::now() >= t);
        if due {
            self.seal_open(CloseReason::MaxAge).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Seal the open chunk now (shutdown, explicit flush). `None` if it is empty.
    pub fn close_now(&mut self) -> Result<Option<SealedChunk>> {
        match &self.open {
            Some(o) if o.messages > 0 => self.seal_open(CloseReason::CloseNow).map(Some),
            _ => match &self.direct_open {
                Some(o) if o.messages() > 0 => self.seal_direct(CloseReason::CloseNow).map(Some),
                _ => Ok(None),
            },
        }
    }

    fn seal_open(&mut self, reason: CloseReason) -> Result<SealedChunk> {
        let mut o = self.open.take().ok_or_else(|| StreamError::NotFound("open chunk".into()))?;
        let mut buf = std::mem::take(&mut o.buf);
        let s = match self.seal(&buf, o.messages, o.first_append, o.last_append, reason) {
            Ok(s) => s,
            Err(e) => {
                // Not sealed (a full disk): the chunk stays open as it was, sealing is retried by
                // the next append or poll after a second. Nothing appended is dropped.
                o.buf = buf;
                self.open = Some(o);
                self.seal_retry_at = Some(std::time::Instant::now() + Duration::from_secs(1));
                return Err(e);
            }
        };
        self.seal_retry_at = None;
        zeroize::Zeroize::zeroize(&mut buf);
        let had_file = o.file.is_some();
        drop(o);
        if had_file {
            let path = self.dir.join(OPEN_FILE);
            self.remove_open(&path)?;
        }
        self.dir_needs_sync = false;
        Ok(s)
    }

    fn seal(
        &mut self,
        plaintext: &[u8],
        messages: u64,
        first: SystemTime,
        last: SystemTime,
        reason: CloseReason,
    ) -> Result<SealedChunk> {
        let index = self.next_index;
        let (chunk, ct) = seal_chunk(
            plaintext,
            index,
            self.last_chunk_id.as_deref(),
            &self.signer,
            &self.recipients,
            self.rng.as_mut(),
        )?;
        let meta = ChunkMeta {
            schema: META_SCHEMA.into(),
            topic: self.topic.clone(),
            index,
            chunk_id: chunk.chunk_id.clone(),
            messages,
            plaintext_bytes: plaintext.len() as u64,
            first_append_ms: store::unix_ms(first),
            last_append_ms: store::unix_ms(last),
            sealed_at_ms: store::unix_ms(SystemTime::now()),
            close_reason: reason,
            last_sequence: self.open_last_sequence.take(),
        };
        let (j, b, m) = store::chunk_paths(&self.dir, index);
        let mut batch = store::AtomicBatch::new(&self.dir);
        batch.write(&b, &ct)?;
        batch.write(&m, &store::to_json_bytes(&meta, "chunk meta")?)?;
        batch.write(&j, &store::to_json_bytes(&chunk.to_wire_json()?, "chunk envelope")?)?;
        batch.commit()?;
        self.last_chunk_id = Some(chunk.chunk_id.clone());
        self.next_index = index + 1;
        self.write_head()?;
        info!(topic = %self.topic, index, chunk_id = %chunk.chunk_id, messages, reason = ?reason, "chunk sealed");
        Ok(SealedChunk { topic: self.topic.clone(), chunk, meta, envelope_path: j, ciphertext_path: b })
    }
}

/// One package line: without its optional trailing `\n`, non-empty, no newline inside, UTF-8.
fn check_line(package_line: &[u8]) -> Result<&[u8]> {
    let line = package_line.strip_suffix(b"\n").unwrap_or(package_line);
    if line.is_empty() {
        return Err(StreamError::invalid("package_line", "empty line"));
    }
    if line.contains(&b'\n') {
        return Err(StreamError::invalid("package_line", "contains a newline; expected one canonical JSON line"));
    }
    if std::str::from_utf8(line).is_err() {
        return Err(StreamError::invalid("package_line", "not UTF-8"));
    }
    Ok(line)
}
