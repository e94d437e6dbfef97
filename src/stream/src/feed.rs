//! [`TopicFeed`]: one topic's chunk chain fed from the core's package log — *nothing lost,
//! nothing twice* between the package log and the chunk chain.
//!
//! The package log (`peaqos_core::package_log`) is the source of truth: a package is
//! acknowledged once it is fsynced there, and only then handed to the stream (the node's tap).
//! The hand-over is not atomic with the chunk append (a crash can fall between the two, and the
//! node's channel to the stream thread may drop under memory pressure), so the chain is kept a
//! gap-free, duplicate-free prefix of the log by sequence number:
//!
//! * The feed knows `last_sequence`, the `sequenceNumber` of the newest package in the chain.
//!   At open it is read from the chain itself: [`ChunkWriter::open`] first seals whatever a
//!   previous run left in `open.jsonl` (recovery), then the last sealed chunk is decrypted with
//!   the machine's own X25519 key entry and the `sequenceNumber` of its last line is taken.
//! * The open chunk is kept in memory only ([`ChunkWriter::set_log_backed`]): every streamed
//!   byte is written once to the package log and once in its sealed chunk, not a third time to
//!   `open.jsonl`. The log keeps each package until a sealed chunk holds it (the feed reports
//!   [`TopicFeed::sealed_upto`] to the log's retention), so after a crash the open chunk's
//!   packages are replayed from the log like any others.
//! * At open, every package of the topic in the log with a sequence above `last_sequence` is
//!   appended (replay) and group-committed — packages that were logged but never reached the
//!   chain before a crash.
//! * [`TopicFeed::push`] of sequence `s`: `s <= last_sequence` is a duplicate (already in the
//!   chain through replay) and skipped; `s > last_sequence + 1` means packages were missed (a
//!   dropped hand-over): they are read from the log first. So the chain holds every logged
//!   package exactly once, in sequence order.
//! * The chain's newest package must still be in the log; if it is not, the log was reset
//!   (numbering restarted) and [`TopicFeed::open`] refuses, naming both directories, instead
//!   of skipping the new packages as already streamed.
//!   Unless retention deleted it: the package log keeps the segment holding the newest
//!   *sealed* package ([`TopicFeed::sealed_upto`], what the feed reports to the log's
//!   retention), so this happens only if the stream was not configured while retention ran;
//!   then the log's first package is above it and the chain continues (logged).
//!
//! **Written once** ([`TopicFeed::open_stored`], what the node runs): the packaging thread
//! writes each package of the topic straight into the open chunk as ciphertext
//! ([`crate::open_chunk`], through [`crate::payload_store::ChainStore`], the package log's
//! payload store) and the log holds a reference to it; the chain's open chunk is then durable
//! itself, so the feed's retention position is its newest package, sealed or not. At open, the
//! open chunk is reopened and cut to what the log acknowledged (a line the log does not hold was
//! never acknowledged); the log's package lines after it (logged before the stream was
//! configured, or by an older version) are replayed into the chain as before.
//!
//! Reading the log uses its documented layout (`<data_dir>/packages/<topic dir>/seg-<first
//! sequence, 20 digits>.jsonl`, one package per line) and starts at the segment holding
//! `last_sequence + 1`; a torn last line (being written) is never read.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;
use tracing::{info, warn};

use crate::chain::decrypt_chunk;
use crate::error::{Result, StreamError};
use crate::keys::MachineStreamKeys;
use crate::store;
use crate::writer::{ChunkPolicy, ChunkWriter, Recipients, RecoveryReport, SealedChunk};

#[derive(Deserialize)]
struct SeqOnly {
    #[serde(rename = "sequenceNumber")]
    sequence_number: u64,
}

/// `sequenceNumber` of one package line.
pub fn line_sequence(line: &[u8], what: &str) -> Result<u64> {
    serde_json::from_slice::<SeqOnly>(line)
        .map(|s| s.sequence_number)
        .map_err(|e| StreamError::json(what.to_string(), e))
}

/// Directory of a topic in the core's package log.
pub fn package_log_dir(package_data_dir: &Path, topic: &str) -> PathBuf {
    peaqos_base::layout::packages_dir(package_data_dir).join(peaqos_base::layout::topic_dir_name(topic))
}

fn log_err(e: peaqos_core::package_log::LogError) -> StreamError {
    StreamError::Invalid { field: "package log".into(), reason: e.to_string() }
}

/// Call `f(sequence, line)` for every complete package line of `topic` in the package log with
/// `after < sequence < before` (`after = None`: from the first), in log order. Reads through
/// `peaqos_core::package_log`, the owner of the log's layout.
pub fn replay_log(
    package_data_dir: &Path,
    topic: &str,
    after: Option<u64>,
    before: Option<u64>,
    f: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<u64> {
    let from = after.map_or(0, |a| a + 1);
    let mut n = 0;
    for item in peaqos_core::package_log::iter_topic_from(package_data_dir, topic, from).map_err(log_err)? {
        let (seq, line) = item.map_err(log_err)?;
        if before.is_some_and(|b| seq >= b) {
            break;
        }
        f(seq, line.as_bytes())?;
        n += 1;
    }
    Ok(n)
}

/// Sequence number the package log of `topic` will give its next package (0 for an empty log).
pub fn log_next_sequence(package_data_dir: &Path, topic: &str) -> Result<u64> {
    Ok(peaqos_core::package_log::last_logged_sequence(package_data_dir, topic).map_err(log_err)?.map_or(0, |s| s + 1))
}

/// `origin.json` of a chain: the first package sequence it streams (written when the chain is
/// created; 0 with `backfill`, else where the package log stood).
#[derive(Debug, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Origin {
    schema: String,
    topic: String,
    from_sequence: u64,
}
const ORIGIN_FILE: &str = "origin.json";

/// Sequence number of the newest package in the sealed chain of `w` (decrypting its last chunk
/// with the machine's key entry), `None` for an empty chain.
pub fn chain_last_sequence(w: &ChunkWriter, keys: &MachineStreamKeys) -> Result<Option<u64>> {
    let Some(last) = w.next_index().checked_sub(1) else { return Ok(None) };
    let c = store::load_chunk(w.dir(), last)?;
    let entry = c.machine_recipient(&keys.x25519_public).ok_or_else(|| {
        StreamError::check(&c.chunk_id, "resume", "last chunk has no key entry for this machine's X25519 key")
    })?;
    let ct = store::read(&store::chunk_paths(w.dir(), last).1)?;
    let pt = decrypt_chunk(&c, entry, keys.x25519_secret(), &ct)?;
    let body = pt.strip_suffix(b"\n").unwrap_or(&pt);
    let line = body.rsplit(|&b| b == b'\n').next().unwrap_or(body);
    line_sequence(line, &format!("last package of chunk {}", c.chunk_id)).map(Some)
}

/// What [`TopicFeed::open`] did.
#[derive(Debug)]
pub struct FeedOpened {
    pub recovery: RecoveryReport,
    /// Packages replayed from the package log.
    pub replayed: u64,
    /// Every chunk sealed while opening (recovery first, then by replay).
    pub sealed: Vec<SealedChunk>,
}

/// One topic's chain fed by sequence-numbered package lines.
pub struct TopicFeed {
    writer: ChunkWriter,
    package_data_dir: PathBuf,
    last_sequence: Option<u64>,
    /// Newest sequence number in a *sealed* chunk (or before the chain's origin): what the
    /// package log's retention may consider consumed.
    sealed_upto: Option<u64>,
    /// Packages skipped as already in the chain.
    pub duplicates: u64,
    /// Packages read from the log to fill gaps after open.
    pub gap_filled: u64,
    /// Written once (see the module doc): the packaging thread appends through
    /// [`append_stored`](Self::append_stored).
    direct: bool,
    /// Written once: the newest package the log acknowledged (the last settled commit).
    acked: Option<u64>,
    /// Chunks sealed by an append, handed out at the next settle.
    pending_sealed: Vec<SealedChunk>,
}

impl std::fmt::Debug for TopicFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicFeed")
            .field("writer", &self.writer)
            .field("last_sequence", &self.last_sequence)
            .finish_non_exhaustive()
    }
}

impl TopicFeed {
    /// Open the chain of `topic` under `stream_dir` (recovery), find where it ends, and replay
    /// the package log of `package_data_dir` from there. A new chain starts at the log's first
    /// package with `backfill`, else at the log's next package (history logged before the
    /// stream was configured is not streamed); that start is kept in `origin.json`.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        stream_dir: &Path,
        package_data_dir: &Path,
        topic: &str,
        policy: ChunkPolicy,
        keys: &MachineStreamKeys,
        machine_did: &str,
        key_id: &str,
        recipients: &Recipients,
        backfill: bool,
    ) -> Result<(TopicFeed, FeedOpened)> {
        Self::open_mode(
            stream_dir,
            package_data_dir,
            topic,
            policy,
            keys,
            machine_did,
            key_id,
            recipients,
            backfill,
            false,
        )
    }

    /// [`open`](Self::open) for a topic whose packages the packaging thread writes into the chain
    /// itself (see the module doc, "written once"): the open chunk is written as ciphertext and
    /// reopened, cut to what the package log acknowledged.
    #[allow(clippy::too_many_arguments)]
    pub fn open_stored(
        stream_dir: &Path,
        package_data_dir: &Path,
        topic: &str,
        policy: ChunkPolicy,
        keys: &MachineStreamKeys,
        machine_did: &str,
        key_id: &str,
        recipients: &Recipients,
        backfill: bool,
    ) -> Result<(TopicFeed, FeedOpened)> {
        Self::open_mode(
            stream_dir,
            package_data_dir,
            topic,
            policy,
            keys,
            machine_did,
            key_id,
            recipients,
            backfill,
            true,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn open_mode(
        stream_dir: &Path,
        package_data_dir: &Path,
        topic: &str,
        policy: ChunkPolicy,
        keys: &MachineStreamKeys,
        machine_did: &str,
        key_id: &str,
        recipients: &Recipients,
        backfill: bool,
        direct: bool,
    ) -> Result<(TopicFeed, FeedOpened)> {
        let (mut writer, mut recovery) =
            ChunkWriter::open(stream_dir, topic, policy, keys, machine_did, key_id, recipients)?;
        let mut open_last = None;
        if direct {
            // Keep the open chunk's lines the log acknowledged: a line above the log's newest
            // package was written but its commit never finished (never acknowledged).
            let log_last = log_next_sequence(package_data_dir, topic)?.checked_sub(1);
            let mut keep =
                |line: &[u8]| line_sequence(line, "open chunk line").is_ok_and(|s| log_last.is_some_and(|l| s <= l));
            if let Some((action, r)) = writer.enable_direct(keys, &mut keep)? {
                recovery.actions.push(action);
                if let Some(l) = r.last_line {
                    let s = line_sequence(&l, "open chunk's last line")?;
                    writer.note_last_sequence(s);
                    open_last = Some(s);
                }
            }
        } else {
            // The package log keeps every package not yet sealed (the feed's retention position
            // is its newest sealed package): the open chunk need not be written a second time.
            writer.set_log_backed(true);
        }
        let last_sequence = match open_last {
            Some(s) => Some(s),
            None => chain_last_sequence(&writer, keys)?,
        };
        // The chain is a prefix of the log, so the log holds the chain's newest package. If it
        // does not, the log was reset (numbering restarted): new packages would be skipped as
        // already streamed, so refuse to start rather than lose them silently.
        if let Some(last) = last_sequence {
            let found = replay_log(package_data_dir, topic, last.checked_sub(1), Some(last + 1), &mut |_, _| Ok(()))?;
            let pruned = peaqos_core::package_log::first_logged_sequence(package_data_dir, topic)
                .map_err(log_err)?
                .is_some_and(|first| first > last);
            if found == 0 && pruned {
                // Retention deleted it (the chain had consumed it); the log continues after it.
                warn!(topic, last, "stream: the chain's newest package is no longer in the package log (retention)");
            } else if found == 0 {
                return Err(StreamError::invalid(
                    package_log_dir(package_data_dir, topic).display().to_string(),
                    format!(
                        "the package log does not hold package {last}, the newest one in the chunk chain {}: \
                         the package log was reset; move the chain aside to start a new one",
                        writer.dir().display()
                    ),
                ));
            }
        }
        let origin_path = writer.dir().join(ORIGIN_FILE);
        let origin: Origin = if origin_path.exists() {
            store::load_json(&origin_path)?
        } else {
            let from_sequence = match last_sequence {
                Some(_) => 0, // a chain from before origin files: it started at its first package
                None if backfill => 0,
                None => log_next_sequence(package_data_dir, topic)?,
            };
            let o = Origin { schema: "peaqos.stream.origin.v1".into(), topic: topic.into(), from_sequence };
            store::write_atomic(&origin_path, &store::to_json_bytes(&o, "stream origin")?)?;
            if from_sequence > 0 {
                info!(topic, from_sequence, "stream: new chain starts at the package log's end (backfill: false)");
            }
            o
        };
        // An empty chain continues from its origin.
        let last_sequence = last_sequence.or(origin.from_sequence.checked_sub(1));
        let mut feed = TopicFeed {
            writer,
            package_data_dir: package_data_dir.to_owned(),
            last_sequence,
            sealed_upto: last_sequence,
            duplicates: 0,
            gap_filled: 0,
            direct,
            acked: last_sequence,
            pending_sealed: Vec::new(),
        };
        let mut sealed: Vec<SealedChunk> = recovery.sealed.iter().cloned().collect();
        // A full disk must not stop the node from starting: what is not replayed now is filled
        // from the package log by the next hand-over (push) or catch_up once space returns.
        let replayed = match feed.fill(None, &mut sealed).and_then(|n| feed.writer.sync().map(|_| n)) {
            Ok(n) => n,
            Err(e) if e.is_disk_full() => {
                warn!(topic, last_sequence = ?feed.last_sequence, "stream: disk full while replaying the package log; the rest follows when space returns");
                0
            }
            Err(e) => return Err(e),
        };
        if replayed > 0 {
            info!(topic, replayed, last_sequence = ?feed.last_sequence, "stream: replayed packages from the package log");
        }
        if direct {
            // What replay appended is synced (or, on a full disk, filled in later).
            feed.writer.checkpoint();
            feed.acked = feed.last_sequence;
        }
        Ok((feed, FeedOpened { recovery, replayed, sealed }))
    }

    /// Append log packages after `last_sequence` and below `before`.
    fn fill(&mut self, before: Option<u64>, sealed: &mut Vec<SealedChunk>) -> Result<u64> {
        self.fill_sealing(before, sealed, true)
    }

    /// [`fill`](Self::fill); `seal: false` never seals (written once, inside a group commit whose
    /// lines are not acknowledged yet: the settle seals).
    fn fill_sealing(&mut self, before: Option<u64>, sealed: &mut Vec<SealedChunk>, seal: bool) -> Result<u64> {
        let (dir, topic) = (self.package_data_dir.clone(), self.writer.topic().to_owned());
        let after = self.last_sequence;
        let writer = &mut self.writer;
        let (last, sealed_upto) = (&mut self.last_sequence, &mut self.sealed_upto);
        replay_log(&dir, &topic, after, before, &mut |seq, line| {
            if std::str::from_utf8(line).is_ok_and(peaqos_core::payload::is_ref_line) {
                // A reference is only ever logged after its chunk line was durable: the chain
                // holds every one up to its newest package, so this one was lost.
                return Err(StreamError::Chain {
                    chain: writer.dir().display().to_string(),
                    index: writer.next_index(),
                    reason: format!(
                        "the package log refers package {seq} to the chunk chain, which ends before it; \
                         the chain was moved or damaged"
                    ),
                });
            }
            writer.note_last_sequence(seq);
            if !seal {
                writer.append_direct(line, SystemTime::now())?;
            } else if let Some(s) = writer.append(line)? {
                sealed.push(s);
                *sealed_upto = Some(seq);
            }
            *last = Some(seq);
            Ok(())
        })
    }

    /// Append package `sequence` (its canonical line). Returns chunks sealed by it (and by a gap
    /// fill before it). Not durable until [`sync`](Self::sync).
    pub fn push(&mut self, sequence: u64, line: &[u8]) -> Result<Vec<SealedChunk>> {
        let mut sealed = Vec::new();
        if self.last_sequence.is_some_and(|l| sequence <= l) {
            self.duplicates += 1;
            return Ok(sealed);
        }
        let expected = self.last_sequence.map_or(0, |l| l + 1);
        if sequence > expected {
            let n = self.fill(Some(sequence), &mut sealed)?;
            self.gap_filled += n;
            if n > 0 {
                info!(topic = %self.writer.topic(), filled = n, "stream: filled a gap from the package log");
            }
            if self.last_sequence.map_or(0, |l| l + 1) != sequence && self.last_sequence.is_some() {
                warn!(topic = %self.writer.topic(), sequence, last = ?self.last_sequence, "stream: packages missing from the package log");
            }
        }
        self.writer.note_last_sequence(sequence);
        if let Some(s) = self.writer.append(line)? {
            sealed.push(s);
            self.sealed_upto = Some(sequence);
        }
        self.last_sequence = Some(sequence);
        Ok(sealed)
    }

    /// Append every log package after `last_sequence` (after hand-overs were dropped and no
    /// newer package arrived to reveal the gap). Returns the chunks sealed.
    pub fn catch_up(&mut self) -> Result<Vec<SealedChunk>> {
        let mut sealed = Vec::new();
        self.gap_filled += self.fill(None, &mut sealed)?;
        Ok(sealed)
    }

    /// Group commit.
    pub fn sync(&mut self) -> Result<()> {
        self.writer.sync()
    }

    /// Age-based sealing.
    pub fn poll(&mut self, now: SystemTime) -> Result<Option<SealedChunk>> {
        if self.unsettled() {
            return Ok(None);
        }
        let s = self.writer.poll(now)?;
        if s.is_some() {
            self.sealed_upto = self.last_sequence;
        }
        Ok(s)
    }

    /// Seal the open chunk now.
    pub fn close_now(&mut self) -> Result<Option<SealedChunk>> {
        if self.unsettled() {
            return Ok(None);
        }
        let s = self.writer.close_now()?;
        if s.is_some() {
            self.sealed_upto = self.last_sequence;
        }
        Ok(s)
    }

    /// Newest sequence number in a sealed chunk (every package up to it is in the chain for
    /// good, whatever happens to the open chunk): the position the package log's retention may
    /// delete up to. `None` while nothing is sealed.
    pub fn sealed_upto(&self) -> Option<u64> {
        if self.direct {
            // The open chunk is durable itself: every acknowledged package is consumed.
            return self.acked.max(self.sealed_upto);
        }
        self.sealed_upto
    }

    /// Written once: packages appended whose group commit has not settled yet. A seal must wait
    /// for it (a sealed chunk can no longer be cut if the package log does not take them).
    fn unsettled(&self) -> bool {
        self.direct && self.last_sequence != self.acked
    }

    /// Written once: append package `sequence` (the next one) to the open chunk as ciphertext;
    /// returns where it is. Durable after [`sync`](Self::sync); kept or cut by
    /// [`settle`](Self::settle).
    pub fn append_stored(&mut self, sequence: u64, line: &[u8]) -> Result<peaqos_core::payload::PayloadRef> {
        if !self.direct {
            return Err(StreamError::invalid("stream feed", "append_stored on a feed not opened with open_stored"));
        }
        if self.writer.open_messages() > 0 && !self.writer.is_direct_open() {
            // A previous run's open.jsonl chunk, kept open on a full disk: sealed first.
            if let Some(s) = self.writer.close_now()? {
                self.pending_sealed.push(s);
            }
        }
        if sequence > self.last_sequence.map_or(0, |l| l + 1) {
            // Logged but not in the chain yet (a replay at open cut short by a full disk): read
            // from the log first, in this same group commit.
            let mut sealed = Vec::new();
            let n = self.fill_sealing(Some(sequence), &mut sealed, false)?;
            self.gap_filled += n;
            if n > 0 {
                info!(topic = %self.writer.topic(), filled = n, "stream: filled a gap from the package log");
            }
        }
        let expected = self.last_sequence.map_or(0, |l| l + 1);
        if sequence != expected {
            return Err(StreamError::invalid(
                "package sequence",
                format!("package {sequence} handed to the chain of {}, which expects {expected}", self.writer.topic()),
            ));
        }
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let (chunk, offset, digest) = self.writer.append_direct(line, SystemTime::now())?;
        self.writer.note_last_sequence(sequence);
        self.last_sequence = Some(sequence);
        Ok(peaqos_core::payload::PayloadRef {
            chunk,
            offset,
            length: line.len() as u64,
            sha256: format!("0x{}", hex::encode(digest)),
        })
    }

    /// Written once, after the package log's commit: `committed` keeps what was appended since
    /// the last settle (and seals the chunk if it is full), else cuts it off again. Returns the
    /// chunks sealed (also one sealed before an append, [`append_stored`](Self::append_stored)).
    pub fn settle(&mut self, committed: bool) -> Result<Vec<SealedChunk>> {
        let mut sealed = std::mem::take(&mut self.pending_sealed);
        if !committed {
            self.last_sequence = self.acked;
            self.writer.rollback()?;
            return Ok(sealed);
        }
        self.writer.checkpoint();
        self.acked = self.last_sequence;
        match self.writer.seal_due() {
            Ok(Some(s)) => {
                self.sealed_upto = self.last_sequence;
                sealed.push(s);
            }
            Ok(None) => {}
            Err(e) => {
                warn!(topic = %self.writer.topic(), error = %e, "sealing a full chunk failed; the chunk stays open, retried in 1 s")
            }
        }
        Ok(sealed)
    }

    /// The plaintext line `r` refers to, if it is in the open chunk.
    pub fn read_open(&self, r: &peaqos_core::payload::PayloadRef) -> Option<Result<Vec<u8>>> {
        self.writer.read_open(r.chunk, r.offset, r.length).map(|x| x.map(|z| z.to_vec()))
    }

    /// The chain writer.
    pub fn writer(&self) -> &ChunkWriter {
        &self.writer
    }

    /// Newest sequence number in the chain (sealed or open).
    pub fn last_sequence(&self) -> Option<u64> {
        self.last_sequence
    }
}
