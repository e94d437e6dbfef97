//! The crash-safe package log: every signed package, on disk before it is published.
//!
//! Layout under `<data_dir>/packages/`:
//! ```text
//! <slug>/topic                       the topic name, as given in the policy
//! <slug>/<first sequence, 20 digits>.jsonl   segments of packages, one package_json per line
//! ```
//! `<slug>` is the topic with every character outside `[A-Za-z0-9_-]` replaced by `_`, plus
//! `-` and 8 hex digits of the topic's FNV-1a hash, so distinct topics never share a directory.
//! Lines are appended in batches; a batch is acknowledged (published) only after
//! `fdatasync`. A segment is closed at [`SEGMENT_MAX_BYTES`] and a new one started.
//!
//! At open, the last segment's torn tail (an unterminated line left by a crash mid-write) is
//! truncated away, and the last complete line gives the topic's last sequence number, so
//! numbering continues across restarts.
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Size at which a segment is closed.
pub const SEGMENT_MAX_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("package log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("package log {path}: line {line} is not a package: {reason}")]
    Corrupt { path: PathBuf, line: usize, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_owned(), source }
}

/// Directory name for a topic.
pub fn topic_slug(topic: &str) -> String {
    let clean: String = topic
        .trim_start_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    format!("{clean}-{}", digest_hex8(topic.as_bytes()))
}

/// FNV-1a (32 bit) in hex: stable and dependency-free, only used to keep directory names of
/// topics that differ in punctuation apart.
fn digest_hex8(data: &[u8]) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// The append side of one topic's log.
pub struct TopicLog {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    len: u64,
    last_sequence: Option<u64>,
    pending: Vec<u8>,
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.jsonl")
}

fn segments(dir: &Path) -> Result<Vec<PathBuf>, LogError> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    v.sort();
    Ok(v)
}

fn sequence_of(line: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(line).ok()?.get("sequenceNumber")?.as_u64()
}

fn fsync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

impl TopicLog {
    /// Open (or create) the log of `topic` under `root` (`<data_dir>/packages`), recovering
    /// from a torn tail.
    pub fn open(root: &Path, topic: &str) -> Result<TopicLog, LogError> {
        let dir = root.join(topic_slug(topic));
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let name_file = dir.join("topic");
        if !name_file.exists() {
            fs::write(&name_file, topic).map_err(io_err(&name_file))?;
            fsync_dir(&dir)?;
        }
        let mut last_sequence = None;
        let segs = segments(&dir)?;
        // Recover from the newest segment backwards (it may be empty after truncation).
        for seg in segs.iter().rev() {
            let mut bytes = fs::read(seg).map_err(io_err(seg))?;
            let keep = bytes.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
            if keep < bytes.len() {
                tracing::warn!(
                    "package log {}: truncating {} bytes of a write cut short by a crash",
                    seg.display(),
                    bytes.len() - keep
                );
                let f = OpenOptions::new().write(true).open(seg).map_err(io_err(seg))?;
                f.set_len(keep as u64).map_err(io_err(seg))?;
                f.sync_all().map_err(io_err(seg))?;
                bytes.truncate(keep);
            }
            if let Some(last) = bytes[..keep.saturating_sub(1)].split(|b| *b == b'\n').next_back() {
                if !last.is_empty() {
                    let line = String::from_utf8_lossy(last);
                    last_sequence = Some(sequence_of(&line).ok_or_else(|| LogError::Corrupt {
                        path: seg.clone(),
                        line: bytes.iter().filter(|b| **b == b'\n').count(),
                        reason: "no sequenceNumber".into(),
                    })?);
                    break;
                }
            }
        }
        let path = match segs.last() {
            Some(p) => p.clone(),
            None => dir.join(segment_name(0)),
        };
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        Ok(TopicLog { dir, file, path, len, last_sequence, pending: Vec::new() })
    }

    /// Sequence number of the last package on disk (or queued in this batch).
    pub fn last_sequence(&self) -> Option<u64> {
        self.last_sequence
    }

    /// Queue one package line for the next [`commit`](Self::commit).
    pub fn push(&mut self, sequence: u64, package_json: &str) {
        self.pending.extend_from_slice(package_json.as_bytes());
        self.pending.push(b'\n');
        self.last_sequence = Some(sequence);
    }

    /// Write the queued lines and `fdatasync` them. Returns once they are durable.
    pub fn commit(&mut self, next_first_sequence: u64) -> Result<(), LogError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.len > 0 && self.len + self.pending.len() as u64 > SEGMENT_MAX_BYTES {
            let path = self.dir.join(segment_name(next_first_sequence));
            self.file = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
            fsync_dir(&self.dir)?;
            self.path = path;
            self.len = 0;
        }
        self.file.write_all(&self.pending).map_err(io_err(&self.path))?;
        self.file.sync_data().map_err(io_err(&self.path))?;
        self.len += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }
}

/// Every package line of one topic, oldest first.
pub fn read_topic(root: &Path, topic: &str) -> Result<Vec<String>, LogError> {
    let dir = root.join(topic_slug(topic));
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for seg in segments(&dir)? {
        let f = File::open(&seg).map_err(io_err(&seg))?;
        for line in BufReader::new(f).lines() {
            let line = line.map_err(io_err(&seg))?;
            if !line.is_empty() {
                out.push(line);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(seq: u64) -> String {
        format!("{{\"sequenceNumber\":{seq},\"x\":1}}")
    }

    #[test]
    fn sequence_continues_and_torn_tail_is_cut() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = TopicLog::open(tmp.path(), "/a/b").unwrap();
        assert_eq!(log.last_sequence(), None);
        for s in 0..3 {
            log.push(s, &pkg(s));
        }
        log.commit(3).unwrap();
        drop(log);
        // a crash in the middle of the next write
        let seg = segments(&tmp.path().join(topic_slug("/a/b"))).unwrap().pop().unwrap();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"{\"sequenceNumber\":3,\"x").unwrap();
        drop(f);
        let mut log = TopicLog::open(tmp.path(), "/a/b").unwrap();
        assert_eq!(log.last_sequence(), Some(2));
        log.push(3, &pkg(3));
        log.commit(4).unwrap();
        let lines = read_topic(tmp.path(), "/a/b").unwrap();
        assert_eq!(lines, (0..4).map(pkg).collect::<Vec<_>>());
    }

    #[test]
    fn slugs_separate_similar_topics() {
        assert_ne!(topic_slug("/a/b"), topic_slug("/a_b"));
        assert!(topic_slug("/battery_state").starts_with("battery_state-"));
    }
}
