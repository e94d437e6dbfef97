//! Chunk and grant retention on the upload thread (the one that moves upload cursors), at most
//! once per `retention.interval`; what may go is decided by `peaqos_stream::retention`.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use peaqos_core::retention::{Consumed, LogConsumers};
use peaqos_stream::retention::{prune_grants, prune_local_chunks_held, ChunkRetention};

use super::status::TopicCounters;
use super::upload::UploadTopic;
use crate::retention::Retention;

/// The upload thread's retention pass.
pub(super) struct ChunkPruner {
    bound: ChunkRetention,
    grants_max_age: Duration,
    interval: Duration,
    stream_dir: PathBuf,
    counters: Arc<TopicCounters>,
    last: Option<Instant>,
    /// The package log's consumers: a chunk whose packages the log still refers a consumer to
    /// (written once) keeps its ciphertext.
    consumers: Arc<LogConsumers>,
}

impl ChunkPruner {
    pub(super) fn new(r: &Retention, stream_dir: &Path, counters: Arc<TopicCounters>) -> ChunkPruner {
        ChunkPruner {
            bound: r.chunks,
            grants_max_age: r.grants_max_age,
            interval: r.interval,
            stream_dir: stream_dir.to_owned(),
            counters,
            last: None,
            consumers: Arc::clone(&r.consumers),
        }
    }

    /// One pass over every streamed topic and the grants (rate-limited).
    pub(super) fn run(&mut self, topics: &[UploadTopic]) {
        if self.last.is_some_and(|t| t.elapsed() < self.interval) {
            return;
        }
        self.last = Some(Instant::now());
        let now = SystemTime::now();
        for (t, (topic, dir, dests)) in topics.iter().enumerate() {
            let log_needs_from = match self.consumers.consumed(topic) {
                Consumed::NoConsumer => None,
                Consumed::Nothing => Some(0),
                Consumed::UpTo(s) => Some(s.saturating_add(1)),
            };
            match prune_local_chunks_held(dir, dests, &self.bound, now, log_needs_from) {
                Ok(r) => {
                    if let Ok(mut c) = self.counters.lock() {
                        let c = &mut c[t].1;
                        c.chunks_pruned += r.removed_chunks;
                        c.chunks_pruned_bytes += r.removed_bytes;
                        c.local_chunk_bytes = r.kept_bytes;
                    }
                }
                Err(e) => tracing::warn!("stream {topic}: chunk retention failed: {e}"),
            }
        }
        if let Err(e) = prune_grants(&self.stream_dir, self.grants_max_age, now) {
            tracing::warn!("stream: grant retention failed: {e}");
        }
    }
}
