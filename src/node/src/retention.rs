//! The node's retention parameters (`retention.*`, read-only) and the shared registry of the
//! package log's consumers. What may be deleted, and when, is decided in the ROS-free crates:
//! `peaqos_core::retention` (package log segments), `peaqos_stream::retention` (local chunk
//! ciphertexts, grants), `peaqos_events::store` (`submitted/` records).
use std::sync::Arc;
use std::time::Duration;

use peaqos_core::retention::{LogConsumers, LogRetention, DEFAULT_LOG_MAX_AGE, DEFAULT_LOG_MAX_BYTES};
use peaqos_stream::retention::{
    ChunkRetention, LocalOnly, DEFAULT_CHUNKS_MAX_AGE, DEFAULT_CHUNKS_MAX_BYTES, DEFAULT_GRANTS_MAX_AGE,
};
use rclrs::ParameterRange;

use crate::params::{param_err, Params};
use crate::StartError;

/// Consumer name of the chunk stream in [`LogConsumers`].
pub const STREAM_CONSUMER: &str = "stream";
/// Consumer name of the event rules in [`LogConsumers`].
pub const EVENTS_CONSUMER: &str = "events";

/// Default age of an included event's `submitted/` record: 7 days.
pub const DEFAULT_EVENTS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Everything retention needs, read once at start.
#[derive(Debug, Clone)]
pub struct Retention {
    pub log: LogRetention,
    /// Package log segment size: the unit retention deletes.
    pub segment_max_bytes: u64,
    pub chunks: ChunkRetention,
    pub grants_max_age: Duration,
    pub events_max_age: Duration,
    /// How often each retention pass runs.
    pub interval: Duration,
    /// The package log's consumers and their durable positions.
    pub consumers: Arc<LogConsumers>,
}

impl Retention {
    pub fn declare(params: &Params) -> Result<Retention, StartError> {
        let d = &params.declared;
        let bytes = |name: &str, default: u64, description: &str| -> Result<u64, StartError> {
            let range = ParameterRange { lower: Some(0), upper: Some(i64::MAX), step: None };
            let v: i64 = d.read_only_in(name, default as i64, description, range)?;
            u64::try_from(v).map_err(|_| param_err(name, "must be at least 0"))
        };
        let secs = |name: &str, default: Duration, description: &str| -> Result<Duration, StartError> {
            let range = ParameterRange { lower: Some(0.0), upper: Some(1e10), step: None };
            let v: f64 = d.read_only_in(name, default.as_secs_f64(), description, range)?;
            peaqos_core::duration::seconds(v, true).map_err(|e| param_err(name, e))
        };
        let log = LogRetention {
            max_bytes: bytes(
                "retention.log_max_bytes",
                DEFAULT_LOG_MAX_BYTES,
                "Per topic: keep about this many bytes of package log; older segments are deleted once the chunk stream and the event rules have durably consumed them (never before). 0 = no byte bound.",
            )?,
            max_age: secs(
                "retention.log_max_age",
                DEFAULT_LOG_MAX_AGE,
                "Seconds: package log segments last written longer ago are deleted once every consumer has passed them. 0 = no age bound.",
            )?,
            max_total_bytes: bytes(
                "retention.log_total_max_bytes",
                0,
                "All topics together: keep about this many bytes of package log; the oldest segments every consumer has passed go first, across topics. 0 = no total bound (the per-topic bound and disk.min_free_bytes still apply).",
            )?,
        };
        let segment_max_bytes = bytes(
            "retention.log_segment_max_bytes",
            peaqos_core::package_log::DEFAULT_SEGMENT_MAX_BYTES,
            "Package log segment size (a new segment starts beyond it); retention deletes whole segments, so the log keeps up to about one segment more than retention.log_max_bytes. At least 65536.",
        )?;
        if segment_max_bytes < 65_536 {
            return Err(param_err("retention.log_segment_max_bytes", "must be at least 65536"));
        }
        let chunks = ChunkRetention {
            max_bytes: bytes(
                "retention.chunks_max_bytes",
                DEFAULT_CHUNKS_MAX_BYTES,
                "Per streamed topic: keep about this many bytes of local chunk ciphertexts among those stored at every destination; a chain whose destinations include plain `local` (the chain directory) is never pruned. 0 = no byte bound.",
            )?,
            max_age: secs(
                "retention.chunks_max_age",
                DEFAULT_CHUNKS_MAX_AGE,
                "Seconds: local ciphertexts of chunks sealed longer ago and stored at every destination are deleted (envelopes stay). 0 = no age bound.",
            )?,
            local_only: {
                let name = "retention.chunks_local_only";
                let v: Arc<str> = d.read_only(
                    name,
                    Arc::from("keep"),
                    "Chains whose destinations include plain `local` (the chain directory is the stored copy): keep = never delete their ciphertexts; delete_oldest = apply retention.chunks_max_bytes/max_age to them too, deleting the oldest ciphertexts for good (envelopes stay, the chain of chunk ids still verifies).",
                )?;
                LocalOnly::parse(&v)
                    .ok_or_else(|| param_err(name, format!("must be keep or delete_oldest, got {v:?}")))?
            },
        };
        let grants_max_age = secs(
            "retention.grants_max_age",
            DEFAULT_GRANTS_MAX_AGE,
            "Seconds: buyer access files under <data_dir>/stream/grants older than this are deleted. 0 = kept.",
        )?;
        let events_max_age = secs(
            "retention.events_max_age",
            DEFAULT_EVENTS_MAX_AGE,
            "Seconds: events/submitted records of included transactions older than this (and behind their rule's checkpoint) are deleted, their counts kept. 0 = kept.",
        )?;
        let interval = secs(
            "retention.interval",
            Duration::from_secs(5),
            "Seconds between retention passes (package log, chunks, grants, event records).",
        )?;
        if interval.is_zero() {
            return Err(param_err("retention.interval", "must be above 0"));
        }
        Ok(Retention {
            log,
            segment_max_bytes,
            chunks,
            grants_max_age,
            events_max_age,
            interval,
            consumers: Arc::new(LogConsumers::new()),
        })
    }
}

/// The chunk stream of `topic` reads the package log: it holds the log until it reports.
pub fn register_stream(consumers: &LogConsumers, topic: &str) {
    consumers.register(topic, STREAM_CONSUMER);
}

/// Report how far `feed`'s chain has durably consumed the package log: its newest *sealed*
/// package (the open chunk may still be rebuilt from the log).
pub fn report_stream(consumers: &LogConsumers, feed: &peaqos_stream::feed::TopicFeed) {
    consumers.advance(feed.writer().topic(), STREAM_CONSUMER, feed.sealed_upto());
}

/// The event rules read the package log of each topic with rules.
pub fn register_events<'a>(consumers: &LogConsumers, topics: impl IntoIterator<Item = &'a String>) {
    for t in topics {
        consumers.register(t, EVENTS_CONSUMER);
    }
}

/// Report the event rules' durable positions (after a flush).
pub fn report_events(consumers: &LogConsumers, processor: &peaqos_events::processor::Processor) {
    for (topic, upto) in processor.log_positions() {
        consumers.advance(&topic, EVENTS_CONSUMER, upto);
    }
}
