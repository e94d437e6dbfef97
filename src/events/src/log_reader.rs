//! Reading a topic's package log (`<data_dir>/packages/<topic dir>/seg-<first seq>.jsonl`,
//! layout of `peaqos_core::package_log`) from a sequence number on, skipping whole segments
//! that end before it. A torn last line (no newline) is not returned.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use peaqos_core::package_log::topic_dir_name;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("package log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("package log {path}: line without a sequenceNumber: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Deserialize)]
struct SeqOnly {
    #[serde(rename = "sequenceNumber")]
    sequence_number: u64,
}

fn segments(data_dir: &Path, topic: &str) -> Result<Vec<(u64, PathBuf)>, ReadError> {
    let dir = data_dir.join("packages").join(topic_dir_name(topic));
    let rd = match std::fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ReadError::Io { path: dir, source: e }),
    };
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(|source| ReadError::Io { path: dir.clone(), source })?;
        let name = e.file_name();
        let Some(first) = name.to_str().and_then(|n| n.strip_prefix("seg-")?.strip_suffix(".jsonl")?.parse::<u64>().ok()) else {
            continue;
        };
        v.push((first, e.path()));
    }
    v.sort();
    Ok(v)
}

/// Call `f(seq, line)` for every complete package line of `topic` with `seq >= from`, in order.
pub fn for_each_from(data_dir: &Path, topic: &str, from: u64, mut f: impl FnMut(u64, &str)) -> Result<u64, ReadError> {
    let segs = segments(data_dir, topic)?;
    let mut n = 0;
    for (k, (_, path)) in segs.iter().enumerate() {
        if segs.get(k + 1).is_some_and(|(next_first, _)| *next_first <= from) {
            continue; // this segment ends before `from`
        }
        let file = File::open(path).map_err(|source| ReadError::Io { path: path.clone(), source })?;
        let mut r = BufReader::new(file);
        let mut line = String::new();
        loop {
            line.clear();
            let got = r.read_line(&mut line).map_err(|source| ReadError::Io { path: path.clone(), source })?;
            if got == 0 || !line.ends_with('\n') {
                break;
            }
            let text = line.trim_end_matches('\n');
            let seq = serde_json::from_str::<SeqOnly>(text)
                .map_err(|e| ReadError::Corrupt { path: path.clone(), reason: e.to_string() })?
                .sequence_number;
            if seq >= from {
                f(seq, text);
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Sequence number of the last complete package of `topic`, if any.
pub fn last_sequence(data_dir: &Path, topic: &str) -> Result<Option<u64>, ReadError> {
    let segs = segments(data_dir, topic)?;
    for (first, _) in segs.iter().rev() {
        let mut last = None;
        for_each_from(data_dir, topic, *first, |s, _| last = Some(s))?;
        if last.is_some() {
            return Ok(last);
        }
    }
    Ok(None)
}
