//! Crash-safe, append-only log of signed packages under `<data_dir>/packages/`.
//!
//! Layout:
//! ```text
//! <data_dir>/packages/
//!   <topic dir>/                       one per topic; name = topic without the leading '/',
//!                                      '/' → '.', bytes outside [A-Za-z0-9_] as %XX
//!     topic                            the real topic name and a newline
//!     seg-00000000000000000000.jsonl   segment files, named by the first sequence number
//!     seg-00000000000000004711.jsonl   they hold (20 digits, so names sort numerically)
//! ```
//! Each segment line is one package's canonical wire JSON (`DataPackage::to_json`) and `\n`.
//! A new segment starts when the current one would exceed `segment_max_bytes`.
//!
//! Durability (group commit): `append` only buffers; `commit` writes each topic's buffered
//! lines with one `write` and then `fdatasync`s every touched segment; a package counts as
//! acknowledged only once `commit` has returned `Ok`. A failed write is rolled back by
//! truncating the segment to its last committed length.
//!
//! Recovery at `open`: for each topic the last segment is scanned from its end; a torn last
//! line (no trailing `\n`, or not parseable JSON, i.e. never acknowledged) is truncated, and
//! `last_sequence` is taken from the last complete line so numbering continues (the first
//! package of a topic has sequence 0). Only one process may own a data directory at a time.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;

use crate::retention::{Consumed, LogRetention, PruneReport};

/// Default maximum segment size.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Package log errors; each names the file or topic concerned.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O failure.
    #[error("package log {path}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// A topic directory's `topic` file does not match its directory name.
    #[error("package log {path}: {reason}")]
    Corrupt {
        /// File or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A sequence number out of order for the topic.
    #[error("package log topic {topic}: sequence {got} appended, expected {expected}")]
    Sequence {
        /// Topic.
        topic: String,
        /// Expected next sequence.
        expected: u64,
        /// Given sequence.
        got: u64,
    },
    /// A package JSON containing a newline (would break the line format).
    #[error("package log topic {topic}: package JSON contains a newline")]
    Newline {
        /// Topic.
        topic: String,
    },
}

/// A reference line whose payload could not be read back ([`resolve_line`]).
#[derive(Debug, thiserror::Error)]
#[error("package log topic {topic}: package {sequence}: {reason}")]
pub struct UnresolvedPayload {
    /// Topic.
    pub topic: String,
    /// Sequence number of the reference line.
    pub sequence: u64,
    /// Why.
    pub reason: String,
}

/// A log line as its readers want it: a package line as it is, a reference line
/// ([`crate::payload`]) resolved to the package's canonical line through `resolver`.
pub fn resolve_line(
    topic: &str,
    sequence: u64,
    line: String,
    resolver: Option<&dyn crate::payload::PayloadResolver>,
) -> Result<String, UnresolvedPayload> {
    if !crate::payload::is_ref_line(&line) {
        return Ok(line);
    }
    let fail = |reason: String| UnresolvedPayload { topic: topic.to_owned(), sequence, reason };
    let Some((_, r)) = crate::payload::parse_ref_line(&line) else {
        return Err(fail("malformed payload reference line".into()));
    };
    let Some(resolver) = resolver else {
        return Err(fail(format!("the package is stored in chunk {} and no payload store can read it here", r.chunk)));
    };
    resolver.resolve(topic, &r).map_err(|e| fail(e.to_string()))
}

impl LogError {
    /// True when an I/O failure was for lack of space (ENOSPC) or quota (EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        match self {
            LogError::Io { source, .. } => peaqos_base::fsio::io_is_disk_full(source),
            _ => false,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_owned(), source }
}

/// Directory name of a topic: the one encoding, shared with the chunk stream.
pub use peaqos_base::layout::topic_dir_name;

fn segment_name(first_seq: u64) -> String {
    format!("seg-{first_seq:020}.jsonl")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_prefix("seg-")?.strip_suffix(".jsonl")?.parse().ok()
}

/// Sorted `(first_seq, path)` of a topic directory's segments.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut segs = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        if let Some(first) = e.file_name().to_str().and_then(parse_segment_name) {
            segs.push((first, e.path()));
        }
    }
    segs.sort();
    Ok(segs)
}

#[derive(Deserialize)]
struct SeqOnly {
    #[serde(rename = "sequenceNumber")]
    sequence_number: u64,
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    peaqos_base::fsio::sync_dir(dir).map_err(|e| LogError::Io { path: e.path, source: e.source })
}

/// Options of the log.
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// Start a new segment when the current one would grow beyond this many bytes.
    pub segment_max_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES }
    }
}

struct TopicLog {
    dir: PathBuf,
    /// Current segment (None until the first write of a new topic).
    file: Option<(File, PathBuf)>,
    /// Committed length of the current segment.
    seg_len: u64,
    /// Last committed sequence.
    last_sequence: Option<u64>,
    /// Lines appended but not yet committed.
    pending: Vec<u8>,
    pending_first: Option<u64>,
    pending_last: Option<u64>,
}

impl TopicLog {
    fn next_sequence(&self) -> u64 {
        match self.pending_last.or(self.last_sequence) {
            Some(s) => s.wrapping_add(1),
            None => 0,
        }
    }
}

/// The package log of one data directory.
pub struct PackageLog {
    root: PathBuf,
    opts: LogOptions,
    topics: HashMap<String, TopicLog>,
}

impl PackageLog {
    /// Open (creating `<data_dir>/packages/`) and recover every existing topic.
    pub fn open(data_dir: &Path, opts: LogOptions) -> Result<PackageLog, LogError> {
        let root = data_dir.join("packages");
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        let mut log = PackageLog { root: root.clone(), opts, topics: HashMap::new() };
        for e in fs::read_dir(&root).map_err(io_err(&root))? {
            let e = e.map_err(io_err(&root))?;
            let dir = e.path();
            if !dir.is_dir() {
                continue;
            }
            let tf = dir.join("topic");
            let topic = match fs::read_to_string(&tf) {
                Ok(t) => t.trim_end_matches('\n').to_owned(),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    tracing::warn!(dir = %dir.display(), "package log: directory without a topic file, ignored");
                    continue;
                }
                Err(err) => return Err(LogError::Io { path: tf, source: err }),
            };
            if e.file_name().to_str() != Some(topic_dir_name(&topic).as_str()) {
                return Err(LogError::Corrupt {
                    path: tf,
                    reason: format!("topic {topic:?} does not belong in this directory"),
                });
            }
            let t = recover_topic(&dir)?;
            if let Some(s) = t.last_sequence {
                tracing::info!(topic = %topic, last_sequence = s, "package log recovered");
            }
            log.topics.insert(topic, t);
        }
        Ok(log)
    }

    /// The `packages/` directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Topics present in the log.
    pub fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.topics.keys().cloned().collect();
        t.sort();
        t
    }

    /// Last committed sequence of a topic.
    pub fn last_sequence(&self, topic: &str) -> Option<u64> {
        self.topics.get(topic).and_then(|t| t.last_sequence)
    }

    /// The sequence the next `append` for `topic` must carry (0 for a new topic).
    pub fn next_sequence(&self, topic: &str) -> u64 {
        self.topics.get(topic).map_or(0, TopicLog::next_sequence)
    }

    fn topic_mut(&mut self, topic: &str) -> Result<&mut TopicLog, LogError> {
        if !self.topics.contains_key(topic) {
            let dir = self.root.join(topic_dir_name(topic));
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let tf = dir.join("topic");
            let mut f = File::create(&tf).map_err(io_err(&tf))?;
            f.write_all(format!("{topic}\n").as_bytes()).map_err(io_err(&tf))?;
            f.sync_all().map_err(io_err(&tf))?;
            sync_dir(&dir)?;
            sync_dir(&self.root)?;
            self.topics.insert(
                topic.to_owned(),
                TopicLog {
                    dir,
                    file: None,
                    seg_len: 0,
                    last_sequence: None,
                    pending: Vec::new(),
                    pending_first: None,
                    pending_last: None,
                },
            );
        }
        match self.topics.get_mut(topic) {
            Some(t) => Ok(t),
            None => Err(LogError::Corrupt { path: self.root.clone(), reason: format!("topic {topic} vanished") }),
        }
    }

    /// Buffer one package (its wire JSON) for `topic`; `seq` must be `next_sequence(topic)`.
    /// Nothing is durable before `commit`.
    pub fn append(&mut self, topic: &str, seq: u64, package_json: &str) -> Result<(), LogError> {
        if package_json.contains('\n') {
            return Err(LogError::Newline { topic: topic.to_owned() });
        }
        let t = self.topic_mut(topic)?;
        let expected = t.next_sequence();
        if seq != expected {
            return Err(LogError::Sequence { topic: topic.to_owned(), expected, got: seq });
        }
        t.pending.extend_from_slice(package_json.as_bytes());
        t.pending.push(b'\n');
        t.pending_first.get_or_insert(seq);
        t.pending_last = Some(seq);
        Ok(())
    }

    /// Forget `topic`'s buffered packages (not committed, never acknowledged): its next sequence
    /// is the committed one's successor again.
    pub fn discard_pending(&mut self, topic: &str) {
        if let Some(t) = self.topics.get_mut(topic) {
            t.pending.clear();
            t.pending_first = None;
            t.pending_last = None;
        }
    }

    /// Write all buffered packages and `fdatasync` each touched segment. On error the
    /// buffered packages of the failing topic are discarded (not acknowledged) and that
    /// topic's segment is truncated back to its committed length.
    pub fn commit(&mut self) -> Result<(), LogError> {
        let max = self.opts.segment_max_bytes;
        let mut first_err = None;
        for (topic, t) in &mut self.topics {
            if t.pending.is_empty() {
                continue;
            }
            if let Err(e) = commit_topic(t, max) {
                tracing::error!(topic = %topic, error = %e, "package log commit failed");
                t.pending.clear();
                t.pending_first = None;
                t.pending_last = None;
                if first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl PackageLog {
    /// Apply retention to `topic`'s log (see [`crate::retention`]): delete its oldest segments,
    /// never the one being written, while the log is over `bound.max_bytes` or a segment's last
    /// write is older than `bound.max_age` at `now`, and only segments every consumer has
    /// passed (`consumed`). Deletion stops at the first segment that must stay, so what is kept
    /// is always a contiguous tail of the log. Each deletion is logged.
    pub fn prune(
        &mut self,
        topic: &str,
        bound: &LogRetention,
        consumed: Consumed,
        now: SystemTime,
    ) -> Result<PruneReport, LogError> {
        let mut rep = PruneReport::default();
        let Some(t) = self.topics.get(topic) else { return Ok(rep) };
        let segs = list_segments(&t.dir)?;
        let mut sized = Vec::with_capacity(segs.len());
        for (first, path) in segs {
            let m = fs::metadata(&path).map_err(io_err(&path))?;
            sized.push((first, path, m.len(), m.modified().ok()));
        }
        let mut total: u64 = sized.iter().map(|s| s.2).sum();
        let mut removed_any = false;
        // The last segment is the one being written: never a candidate.
        for i in 0..sized.len().saturating_sub(1) {
            let (first, path, len, mtime) = &sized[i];
            let next_first = sized[i + 1].0;
            let over_bytes = bound.max_bytes > 0 && total > bound.max_bytes;
            let too_old = !bound.max_age.is_zero()
                && mtime.and_then(|m| now.duration_since(m).ok()).is_some_and(|age| age > bound.max_age);
            if !over_bytes && !too_old {
                break;
            }
            if !consumed.allows_segment_before(next_first) {
                rep.held_for_consumers = over_bytes;
                break;
            }
            fs::remove_file(path).map_err(io_err(path))?;
            removed_any = true;
            total -= len;
            rep.removed_segments += 1;
            rep.removed_bytes += len;
            tracing::info!(
                topic,
                segment = %path.display(),
                first_sequence = first,
                last_sequence = next_first.saturating_sub(1),
                bytes = len,
                reason = if over_bytes { "bytes" } else { "age" },
                "package log retention: segment deleted"
            );
        }
        if removed_any {
            sync_dir(&t.dir)?;
        }
        rep.kept_bytes = total;
        Ok(rep)
    }
}

/// A segment as retention sees it: first sequence, path, length, last write.
type SegmentInfo = (u64, PathBuf, u64, Option<SystemTime>);

impl PackageLog {
    /// Apply a bound on all topics' logs together: while they hold more than `max_total`
    /// bytes, delete the segment last written longest ago among each topic's oldest deletable
    /// one (never a topic's segment being written, only segments every consumer of the topic
    /// has passed — `consumed(topic)` — and each topic's log stays a contiguous tail). Returns
    /// the segments and bytes removed per topic, and the bytes left in all.
    pub fn prune_total(
        &mut self,
        max_total: u64,
        consumed: &dyn Fn(&str) -> Consumed,
    ) -> Result<(Vec<(String, PruneReport)>, u64), LogError> {
        // Per topic: its deletable segments, oldest first (first, path, len, mtime).
        let mut cands: Vec<(String, std::collections::VecDeque<SegmentInfo>)> = Vec::new();
        let mut total: u64 = 0;
        for (topic, t) in &self.topics {
            let segs = list_segments(&t.dir)?;
            let mut sized = Vec::with_capacity(segs.len());
            for (first, path) in segs {
                let m = fs::metadata(&path).map_err(io_err(&path))?;
                total += m.len();
                sized.push((first, path, m.len(), m.modified().ok()));
            }
            let c = consumed(topic);
            let n = sized.len().saturating_sub(1);
            let mut q = std::collections::VecDeque::new();
            for i in 0..n {
                if !c.allows_segment_before(sized[i + 1].0) {
                    break;
                }
                q.push_back(sized[i].clone());
            }
            cands.push((topic.clone(), q));
        }
        let mut reports: Vec<(String, PruneReport)> =
            cands.iter().map(|(t, _)| (t.clone(), PruneReport::default())).collect();
        let mut touched = vec![false; cands.len()];
        while max_total > 0 && total > max_total {
            // The oldest candidate across topics (a missing time sorts first).
            let pick = cands
                .iter()
                .enumerate()
                .filter_map(|(i, (_, q))| q.front().map(|s| (s.3, i)))
                .min_by_key(|(m, _)| *m)
                .map(|(_, i)| i);
            let Some(i) = pick else { break };
            let Some((first, path, len, _)) = cands[i].1.pop_front() else { break };
            fs::remove_file(&path).map_err(io_err(&path))?;
            touched[i] = true;
            total -= len;
            reports[i].1.removed_segments += 1;
            reports[i].1.removed_bytes += len;
            tracing::info!(
                topic = %cands[i].0,
                segment = %path.display(),
                first_sequence = first,
                bytes = len,
                reason = "total bytes",
                "package log retention: segment deleted"
            );
        }
        if total > max_total && max_total > 0 {
            for r in &mut reports {
                r.1.held_for_consumers = true;
            }
        }
        for (i, (topic, _)) in cands.iter().enumerate() {
            if touched[i] {
                if let Some(t) = self.topics.get(topic) {
                    sync_dir(&t.dir)?;
                }
            }
        }
        Ok((reports, total))
    }
}

fn commit_topic(t: &mut TopicLog, max: u64) -> Result<(), LogError> {
    let first = t.pending_first.unwrap_or(0);
    let need_new = match &t.file {
        None => true,
        Some(_) => t.seg_len > 0 && t.seg_len + t.pending.len() as u64 > max,
    };
    if need_new {
        let path = t.dir.join(segment_name(first));
        let f = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
        let len = f.metadata().map_err(io_err(&path))?.len();
        sync_dir(&t.dir)?;
        t.file = Some((f, path));
        t.seg_len = len;
    }
    let Some((f, path)) = t.file.as_mut() else {
        return Err(LogError::Corrupt { path: t.dir.clone(), reason: "no open segment".into() });
    };
    let res = f.write_all(&t.pending).and_then(|()| f.sync_data());
    if let Err(e) = res {
        // Roll back a partial write so the next commit does not append after a torn line.
        let _ = f.set_len(t.seg_len);
        return Err(LogError::Io { path: path.clone(), source: e });
    }
    t.seg_len += t.pending.len() as u64;
    t.last_sequence = t.pending_last;
    t.pending.clear();
    t.pending_first = None;
    t.pending_last = None;
    Ok(())
}

/// Recover one topic directory: truncate a torn tail, find the last sequence.
fn recover_topic(dir: &Path) -> Result<TopicLog, LogError> {
    let segs = list_segments(dir)?;
    let mut last_sequence = None;
    let mut current = None;
    for (i, (_first, path)) in segs.iter().enumerate().rev() {
        let mut f = OpenOptions::new().read(true).append(true).open(path).map_err(io_err(path))?;
        let good_len = truncate_torn_tail(&mut f, path)?;
        let last = last_line_sequence(&mut f, path, good_len)?;
        if i == segs.len() - 1 {
            current = Some((f, path.clone(), good_len));
        }
        if let Some(s) = last {
            last_sequence = Some(s);
            break;
        }
    }
    let (file, seg_len) = match current {
        Some((f, p, len)) => (Some((f, p)), len),
        None => (None, 0),
    };
    Ok(TopicLog {
        dir: dir.to_owned(),
        file,
        seg_len,
        last_sequence,
        pending: Vec::new(),
        pending_first: None,
        pending_last: None,
    })
}

/// Truncate everything after the last complete, parseable line; returns the new length.
fn truncate_torn_tail(f: &mut File, path: &Path) -> Result<u64, LogError> {
    let len = f.metadata().map_err(io_err(path))?.len();
    let mut end = len;
    while end > 0 {
        // The data kept must end with a '\n' and its last line must parse.
        let Some(nl) = find_last_newline_before(f, path, end)? else {
            end = 0;
            break;
        };
        let start = find_last_newline_before(f, path, nl)?.map_or(0, |q| q + 1);
        let mut buf = vec![0u8; (nl - start) as usize];
        f.seek(SeekFrom::Start(start)).map_err(io_err(path))?;
        f.read_exact(&mut buf).map_err(io_err(path))?;
        if serde_json::from_slice::<SeqOnly>(&buf).is_ok() {
            end = nl + 1;
            break;
        }
        end = start;
    }
    if end != len {
        tracing::warn!(file = %path.display(), dropped_bytes = len - end, "package log: truncating torn tail");
        f.set_len(end).map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
    }
    Ok(end)
}

/// Position of the last `\n` in `[0, end)`.
fn find_last_newline_before(f: &mut File, path: &Path, end: u64) -> Result<Option<u64>, LogError> {
    const BLOCK: u64 = 64 * 1024;
    let mut hi = end;
    let mut buf = vec![0u8; BLOCK as usize];
    while hi > 0 {
        let lo = hi.saturating_sub(BLOCK);
        let n = (hi - lo) as usize;
        f.seek(SeekFrom::Start(lo)).map_err(io_err(path))?;
        f.read_exact(&mut buf[..n]).map_err(io_err(path))?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(Some(lo + i as u64));
        }
        hi = lo;
    }
    Ok(None)
}

/// Sequence number of the last line of a (torn-tail-free) segment of length `len`.
fn last_line_sequence(f: &mut File, path: &Path, len: u64) -> Result<Option<u64>, LogError> {
    if len == 0 {
        return Ok(None);
    }
    let prev = find_last_newline_before(f, path, len - 1)?;
    let start = prev.map_or(0, |p| p + 1);
    let mut buf = vec![0u8; (len - 1 - start) as usize];
    f.seek(SeekFrom::Start(start)).map_err(io_err(path))?;
    f.read_exact(&mut buf).map_err(io_err(path))?;
    match serde_json::from_slice::<SeqOnly>(&buf) {
        Ok(s) => Ok(Some(s.sequence_number)),
        Err(e) => Err(LogError::Corrupt { path: path.to_owned(), reason: format!("last line: {e}") }),
    }
}

/// `(sequence number, line)` of every complete package line of `topic` with a sequence number
/// of at least `from`, oldest first. Segments that end before `from` are not read. A torn last
/// line (a write in progress, or one a crash cut short) is not returned. This is the one reader
/// of the log's layout for the subsystems that replay it (stream, event rules).
pub fn iter_topic_from(data_dir: &Path, topic: &str, from: u64) -> Result<SequencedLines, LogError> {
    let dir = data_dir.join("packages").join(topic_dir_name(topic));
    let segs = if dir.exists() { list_segments(&dir)? } else { Vec::new() };
    // The last segment that starts at or below `from` holds it; earlier ones end before it.
    let start = segs.iter().rposition(|(first, _)| *first <= from).unwrap_or(0);
    let paths = segs.into_iter().skip(start).map(|(_, p)| p).collect();
    Ok(SequencedLines { lines: TopicIter { segs: paths, current: None }, from })
}

/// Iterator of [`iter_topic_from`].
pub struct SequencedLines {
    lines: TopicIter,
    from: u64,
}

impl Iterator for SequencedLines {
    type Item = Result<(u64, String), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = match self.lines.next()? {
                Ok(l) => l,
                Err(e) => return Some(Err(e)),
            };
            match serde_json::from_str::<SeqOnly>(&line) {
                Ok(s) if s.sequence_number < self.from => continue,
                Ok(s) => return Some(Ok((s.sequence_number, line))),
                Err(e) => {
                    let path = self.lines.current.as_ref().map(|(_, p)| p.clone()).unwrap_or_default();
                    return Some(Err(LogError::Corrupt {
                        path,
                        reason: format!("line without a sequenceNumber: {e}"),
                    }));
                }
            }
        }
    }
}

/// Sequence number of the last complete package line of `topic`, without opening the log for
/// writing (a torn tail is skipped, not truncated).
pub fn last_logged_sequence(data_dir: &Path, topic: &str) -> Result<Option<u64>, LogError> {
    let dir = data_dir.join("packages").join(topic_dir_name(topic));
    if !dir.exists() {
        return Ok(None);
    }
    for (_, path) in list_segments(&dir)?.iter().rev() {
        let mut f = File::open(path).map_err(io_err(path))?;
        let len = f.metadata().map_err(io_err(path))?.len();
        // End of the last complete line: everything after its `\n` is a torn tail.
        let Some(nl) = find_last_newline_before(&mut f, path, len)? else { continue };
        if let Some(seq) = last_line_sequence(&mut f, path, nl + 1)? {
            return Ok(Some(seq));
        }
    }
    Ok(None)
}

/// First sequence number still in `topic`'s log (the first segment's name), `None` for an empty
/// or absent log. Above 0 once retention has deleted the oldest segments.
pub fn first_logged_sequence(data_dir: &Path, topic: &str) -> Result<Option<u64>, LogError> {
    let dir = data_dir.join("packages").join(topic_dir_name(topic));
    if !dir.exists() {
        return Ok(None);
    }
    Ok(list_segments(&dir)?.first().map(|(first, _)| *first))
}

/// All package lines of a topic, oldest first (for tools and tests).
pub fn iter_topic(data_dir: &Path, topic: &str) -> Result<TopicIter, LogError> {
    let dir = data_dir.join("packages").join(topic_dir_name(topic));
    let segs = if dir.exists() { list_segments(&dir)? } else { Vec::new() };
    Ok(TopicIter { segs: segs.into_iter().map(|(_, p)| p).collect(), current: None })
}

/// Iterator over a topic's package lines.
pub struct TopicIter {
    segs: std::collections::VecDeque<PathBuf>,
    current: Option<(BufReader<File>, PathBuf)>,
}

impl Iterator for TopicIter {
    type Item = Result<String, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let path = self.segs.pop_front()?;
                match File::open(&path) {
                    Ok(f) => self.current = Some((BufReader::new(f), path)),
                    // Deleted by retention since it was listed: every consumer was past it.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Some(Err(LogError::Io { path, source: e })),
                }
            }
            let (r, path) = self.current.as_mut()?;
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) => self.current = None,
                Ok(_) => {
                    if !line.ends_with('\n') {
                        // Torn tail of a log that is being written or was not recovered yet.
                        self.current = None;
                        continue;
                    }
                    line.pop();
                    return Some(Ok(line));
                }
                Err(e) => {
                    let path = path.clone();
                    self.current = None;
                    return Some(Err(LogError::Io { path, source: e }));
                }
            }
        }
    }
}
