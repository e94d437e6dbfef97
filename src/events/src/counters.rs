//! Per-rule counters for `~/status`, persisted to `<data_dir>/events/counters.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One rule's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleCounters {
    /// Events produced (persisted as pending).
    pub produced: u64,
    /// Events handed to the chain outbox.
    pub submitted: u64,
    /// Events in an included batchAll.
    pub included: u64,
    /// Events whose transaction failed on chain (reverted, nonce conflict).
    pub failed: u64,
    /// Counter resets seen by `increase` rules.
    pub resets: u64,
    /// Window closes postponed by `min_interval`.
    pub deferred: u64,
    /// Skipped messages/windows/events by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Gauge: produced events not yet in the outbox.
    #[serde(skip)]
    pub pending: u64,
    /// Gauge: why pending events are held ("" when they are not).
    #[serde(skip)]
    pub held_reason: String,
}

/// What is persisted: the counters, and per topic the last sequence number whose skips,
/// resets and deferrals were counted (so a replay after a restart does not count them again).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Persisted {
    rules: BTreeMap<String, RuleCounters>,
    counted_upto: BTreeMap<String, u64>,
}

pub struct Counters {
    path: PathBuf,
    state: Mutex<(Persisted, bool)>,
}

impl Counters {
    /// Load from `path` (missing or unreadable: start at zero, with a warning).
    pub fn load(path: PathBuf, rules: &[String]) -> Counters {
        let mut p: Persisted = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!("event counters {}: unreadable ({e}); starting from zero", path.display());
                Persisted::default()
            }),
            Err(_) => Persisted::default(),
        };
        p.rules.retain(|k, _| rules.contains(k));
        for r in rules {
            p.rules.entry(r.clone()).or_default();
        }
        Counters { path, state: Mutex::new((p, false)) }
    }

    pub fn update(&self, rule: &str, f: impl FnOnce(&mut RuleCounters)) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = s.0.rules.get_mut(rule) {
            f(c);
            s.1 = true;
        }
    }

    pub fn skip(&self, rule: &str, reason: &str) {
        self.update(rule, |c| *c.skipped.entry(reason.to_owned()).or_default() += 1);
    }

    pub fn snapshot(&self) -> BTreeMap<String, RuleCounters> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0.rules.clone()
    }

    /// Was package `seq` of `topic` already counted before a restart?
    pub fn counted(&self, topic: &str, seq: u64) -> bool {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0.counted_upto.get(topic).is_some_and(|c| seq <= *c)
    }

    /// Packages of `topic` up to `seq` have been counted.
    pub fn mark_counted(&self, topic: &str, seq: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let e = s.0.counted_upto.entry(topic.to_owned()).or_insert(seq);
        if seq > *e {
            *e = seq;
        }
        s.1 = true;
    }

    /// Write the counters if they changed.
    pub fn save(&self) {
        let bytes = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if !std::mem::take(&mut s.1) {
                return;
            }
            serde_json::to_vec(&s.0).unwrap_or_default()
        };
        if let Err(e) = crate::store::write_atomic(&self.path, &bytes) {
            tracing::warn!("event counters: {e}");
        }
    }
}
