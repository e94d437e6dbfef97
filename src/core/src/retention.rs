//! Retention of the package log: which segments may go, and who has consumed what.
//!
//! A segment of a topic's package log is deleted only when **both** hold:
//! * every consumer registered for the topic (the chunk stream, the event rules) has durably
//!   moved past it — reported through [`LogConsumers::advance`] once its position is on disk
//!   (the stream: the newest package in a *sealed* chunk; the event rules: the lowest rule
//!   checkpoint of the topic). The segment holding a consumer's position is kept too, so a
//!   consumer always finds its last package in the log at its next start;
//! * the topic's log is over a retention bound: more than [`LogRetention::max_bytes`] bytes
//!   (oldest segments go first), or the segment's last write is older than
//!   [`LogRetention::max_age`]; or all topics' logs together hold more than
//!   [`LogRetention::max_total_bytes`] (the segment last written longest ago among the topics'
//!   deletable ones goes first).
//!
//! The segment being written is never deleted. A consumer registered but not yet reporting
//! (still opening) blocks every deletion of its topic; a topic with no registered consumer is
//! bounded by the limits alone (the log is its only local copy, the bound says how much of it
//! to keep). Deletions are logged and counted ([`PruneReport`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Default `retention.log_max_bytes` per topic: 1 GiB.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 1 << 30;
/// Default `retention.log_max_age`: 7 days.
pub const DEFAULT_LOG_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Bounds of one topic's package log (0 / zero duration: that bound is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRetention {
    /// Keep at most about this many bytes of segments per topic (the segment being written and
    /// unconsumed segments are kept even beyond it).
    pub max_bytes: u64,
    /// Delete consumed segments whose last write is older than this.
    pub max_age: Duration,
    /// Keep at most about this many bytes of all topics' logs together (the oldest consumed
    /// segments across topics go first).
    pub max_total_bytes: u64,
}

impl Default for LogRetention {
    fn default() -> Self {
        LogRetention { max_bytes: DEFAULT_LOG_MAX_BYTES, max_age: DEFAULT_LOG_MAX_AGE, max_total_bytes: 0 }
    }
}

impl LogRetention {
    /// No bound at all: nothing is ever deleted.
    pub fn is_off(&self) -> bool {
        self.max_bytes == 0 && self.max_age.is_zero() && self.max_total_bytes == 0
    }
}

/// How far every consumer of a topic has durably got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    /// No consumer is registered: the bounds alone decide.
    NoConsumer,
    /// A registered consumer has not reported a position yet: delete nothing.
    Nothing,
    /// Every consumer has durably consumed every package up to this sequence number.
    UpTo(u64),
}

impl Consumed {
    /// May a segment whose packages are all below `next_first` (the first sequence of the
    /// segment after it) go? Only if every consumer is past all of it **and** the segment
    /// holding each consumer's position stays.
    pub fn allows_segment_before(self, next_first: u64) -> bool {
        match self {
            Consumed::NoConsumer => true,
            Consumed::Nothing => false,
            Consumed::UpTo(s) => next_first <= s,
        }
    }
}

/// The consumers of the package log and their durable positions, per topic; shared between the
/// consumers (which report) and the packaging thread (which deletes).
#[derive(Debug, Default)]
pub struct LogConsumers {
    topics: Mutex<HashMap<String, BTreeMap<String, Option<u64>>>>,
}

impl LogConsumers {
    /// An empty registry.
    pub fn new() -> LogConsumers {
        LogConsumers::default()
    }

    /// Register `consumer` of `topic` before it starts reading (it blocks deletions of the
    /// topic until its first [`advance`](Self::advance)). Registering again keeps its position.
    pub fn register(&self, topic: &str, consumer: &str) {
        let mut t = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        t.entry(topic.to_owned()).or_default().entry(consumer.to_owned()).or_insert(None);
    }

    /// `consumer` of `topic` has durably consumed every package up to `upto` (`None`: nothing
    /// yet). A position never moves back.
    pub fn advance(&self, topic: &str, consumer: &str, upto: Option<u64>) {
        let mut t = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = t.entry(topic.to_owned()).or_default().entry(consumer.to_owned()).or_insert(None);
        if let Some(u) = upto {
            if slot.is_none_or(|s| u > s) {
                *slot = Some(u);
            }
        }
    }

    /// The position every consumer of `topic` has passed.
    pub fn consumed(&self, topic: &str) -> Consumed {
        let t = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(cs) = t.get(topic).filter(|c| !c.is_empty()) else { return Consumed::NoConsumer };
        let mut min: Option<u64> = None;
        for pos in cs.values() {
            match pos {
                None => return Consumed::Nothing,
                Some(p) => min = Some(min.map_or(*p, |m: u64| m.min(*p))),
            }
        }
        min.map_or(Consumed::Nothing, Consumed::UpTo)
    }

    /// `(topic, consumer, position)` of every registered consumer (for `~/status`).
    pub fn positions(&self) -> Vec<(String, String, Option<u64>)> {
        let t = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> =
            t.iter().flat_map(|(topic, cs)| cs.iter().map(move |(c, p)| (topic.clone(), c.clone(), *p))).collect();
        v.sort();
        v
    }
}

/// What one retention pass over a topic removed and kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Segments deleted.
    pub removed_segments: u64,
    /// Their bytes.
    pub removed_bytes: u64,
    /// Bytes of the topic's log left.
    pub kept_bytes: u64,
    /// The log is over its byte bound but the oldest segment is not consumed yet.
    pub held_for_consumers: bool,
}
