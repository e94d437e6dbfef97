//! Reading a topic's package log from a sequence number on, through
//! `peaqos_core::package_log` (the owner of the log's layout): whole segments that end before it
//! are skipped, and a torn last line (no newline) is not returned.

use std::path::Path;

use peaqos_core::package_log::{iter_topic_from, last_logged_sequence, resolve_line, LogError, UnresolvedPayload};
use peaqos_core::payload::PayloadResolver;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Log(#[from] LogError),
    /// A streamed package's reference line whose payload could not be read.
    #[error(transparent)]
    Payload(#[from] UnresolvedPayload),
}

/// Call `f(seq, line)` for every complete package line of `topic` with `seq >= from`, in order;
/// a reference line (a streamed topic's package kept in its chunk) is resolved through
/// `resolver` first.
pub fn for_each_from(
    data_dir: &Path,
    topic: &str,
    from: u64,
    resolver: Option<&dyn PayloadResolver>,
    mut f: impl FnMut(u64, &str),
) -> Result<u64, ReadError> {
    let mut n = 0;
    for item in iter_topic_from(data_dir, topic, from)? {
        let (seq, line) = item?;
        let line = resolve_line(topic, seq, line, resolver)?;
        f(seq, &line);
        n += 1;
    }
    Ok(n)
}

/// Sequence number of the last complete package of `topic`, if any.
pub fn last_sequence(data_dir: &Path, topic: &str) -> Result<Option<u64>, ReadError> {
    Ok(last_logged_sequence(data_dir, topic)?)
}
