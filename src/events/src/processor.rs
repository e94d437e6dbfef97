//! Engine + store + counters: what the node's event thread runs.
//!
//! [`Processor::open`] loads the checkpoints, starts new rules at the end of the existing
//! package log, and replays every topic's log after its checkpoint so windows that were open
//! at the last stop are rebuilt (and events produced but not persisted before a crash are
//! produced again, with the same ids). [`Processor::handle`] persists each produced event
//! before [`Processor::flush`] moves the checkpoints past it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::counters::Counters;
use crate::engine::{Engine, Outcome};
use crate::rules::Rule;
use crate::store::{EventStore, StoreError};

pub struct Processor {
    engine: Engine,
    store: Arc<EventStore>,
    counters: Arc<Counters>,
    data_dir: PathBuf,
    out: Vec<Outcome>,
    /// Events persisted since the last flush.
    pub new_events: usize,
    /// An event could not be persisted: checkpoints stay where they are until restart.
    frozen: bool,
    /// The stored checkpoints equal the engine's (the last flush saved them, or nothing changed).
    durable: bool,
    /// Newest sequence number handled, per topic (replay included).
    handled: std::collections::HashMap<String, u64>,
    /// Reads streamed packages the log holds as references (`peaqos_core::payload`).
    resolver: Option<Arc<dyn peaqos_core::payload::PayloadResolver>>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] crate::log_reader::ReadError),
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Processor {
    pub fn open(
        data_dir: &Path,
        rules: Vec<Rule>,
        store: Arc<EventStore>,
        counters: Arc<Counters>,
    ) -> Result<Processor, OpenError> {
        Processor::open_with_resolver(data_dir, rules, store, counters, None)
    }

    /// [`open`](Self::open) for a log whose streamed topics hold references to their chunks:
    /// `resolver` reads those packages back.
    pub fn open_with_resolver(
        data_dir: &Path,
        rules: Vec<Rule>,
        store: Arc<EventStore>,
        counters: Arc<Counters>,
        resolver: Option<Arc<dyn peaqos_core::payload::PayloadResolver>>,
    ) -> Result<Processor, OpenError> {
        let cps = store.load_checkpoints()?;
        let mut engine = Engine::new(rules, &cps);
        let topics: Vec<String> = engine.topics().map(str::to_owned).collect();
        let mut handled = std::collections::HashMap::new();
        for t in &topics {
            let last = crate::log_reader::last_sequence(data_dir, t)?;
            engine.start_fresh_rules_after(t, last);
            // The replay below covers the log up to here: live hand-overs continue after it.
            if let Some(l) = last {
                handled.insert(t.clone(), l);
            }
        }
        let mut p = Processor {
            engine,
            store,
            counters,
            data_dir: data_dir.to_owned(),
            out: Vec::new(),
            new_events: 0,
            frozen: false,
            durable: false,
            handled,
            resolver,
        };
        p.replay()?;
        Ok(p)
    }

    fn replay(&mut self) -> Result<(), OpenError> {
        let topics: Vec<String> = self.engine.topics().map(str::to_owned).collect();
        for t in topics {
            let Some(from) = self.engine.replay_from(&t) else { continue };
            // Streamed: a long backlog is never held in memory (open windows keep their packages).
            let dir = self.data_dir.clone();
            let resolver = self.resolver.clone();
            let n = crate::log_reader::for_each_from(&dir, &t, from, resolver.as_deref(), |seq, line| {
                self.handle(&t, seq, line)
            })?;
            if n > 0 {
                tracing::info!("events: replayed {n} package(s) of {t} from #{from}");
            }
        }
        self.flush();
        Ok(())
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// True after a [`flush`](Self::flush) that left the stored checkpoints equal to the
    /// engine's: only then may [`Processor::log_positions`] go to the package log's retention.
    pub fn checkpoints_durable(&self) -> bool {
        self.durable && !self.frozen
    }

    /// Per topic with rules: every package up to this sequence number may leave the package log
    /// (`None`: none yet); `None` for every topic while the checkpoints are not durable.
    pub fn log_positions(&self) -> Vec<(String, Option<u64>)> {
        let durable = self.checkpoints_durable();
        let mut v: Vec<(String, Option<u64>)> = self
            .engine
            .topics()
            .map(|t| (t.to_owned(), if durable { self.engine.log_needed_after(t) } else { None }))
            .collect();
        v.sort();
        v
    }

    /// Evaluate the next durable package of `topic` as handed over live: one already handled
    /// (read from the log after a dropped hand-over) is skipped; a gap before it (hand-overs
    /// dropped for the byte bound) is filled from the package log first. Returns how many
    /// packages were read from the log.
    pub fn handle_next(
        &mut self,
        topic: &str,
        seq: u64,
        package_json: &str,
    ) -> Result<u64, crate::log_reader::ReadError> {
        let handled = self.handled.get(topic).copied();
        if handled.is_some_and(|h| seq <= h) {
            return Ok(0);
        }
        let expected = handled.map_or(0, |h| h + 1);
        let mut filled = 0;
        if seq > expected {
            filled = self.catch_up(topic)?;
            if self.handled.get(topic).is_some_and(|&h| seq <= h) {
                return Ok(filled);
            }
        }
        self.handle(topic, seq, package_json);
        Ok(filled)
    }

    /// Evaluate every package of `topic` in the log after the newest one handled (after
    /// hand-overs were dropped and nothing newer arrived to reveal the gap).
    pub fn catch_up(&mut self, topic: &str) -> Result<u64, crate::log_reader::ReadError> {
        let from = self.handled.get(topic).map_or(0, |h| h + 1);
        let dir = self.data_dir.clone();
        let resolver = self.resolver.clone();
        crate::log_reader::for_each_from(&dir, topic, from, resolver.as_deref(), |seq, line| {
            self.handle(topic, seq, line)
        })
    }

    /// Evaluate one durable package.
    pub fn handle(&mut self, topic: &str, seq: u64, package_json: &str) {
        let h = self.handled.entry(topic.to_owned()).or_insert(seq);
        *h = (*h).max(seq);
        let mut out = std::mem::take(&mut self.out);
        self.engine.on_package(topic, seq, package_json, &mut out);
        self.apply(&mut out);
        self.out = out;
        self.counters.mark_counted(topic, seq);
    }

    /// Close quiet time windows.
    pub fn tick(&mut self, now_secs: i64) {
        let mut out = std::mem::take(&mut self.out);
        self.engine.tick(now_secs, &mut out);
        self.apply(&mut out);
        self.out = out;
    }

    fn apply(&mut self, out: &mut Vec<Outcome>) {
        for o in out.drain(..) {
            match o {
                Outcome::Event(ev, raw) => match self.store.persist(&ev, &raw, now_ms()) {
                    Ok(true) => {
                        self.new_events += 1;
                        self.counters.update(&ev.rule, |c| c.produced += 1);
                        tracing::info!(rule = %ev.rule, id = %ev.id, value = %ev.value, "event produced");
                    }
                    Ok(false) => tracing::debug!(id = %ev.id, "event already produced (replay)"),
                    Err(e) => {
                        // Not persisted: the checkpoints must not move past it any more; the
                        // replay at the next start produces it again (same id).
                        tracing::error!("events: cannot persist {} (checkpoints frozen until restart): {e}", ev.id);
                        self.frozen = true;
                    }
                },
                // Skips, deferrals and resets of packages counted before a restart are not
                // counted again when the package log is replayed.
                Outcome::Skip(s) => {
                    let r = &self.engine.rules()[s.rule];
                    if !self.counters.counted(&r.topic, s.seq) {
                        tracing::warn!(rule = %r.name, reason = s.reason, seq = s.seq, "event skipped: {}", s.detail);
                        self.counters.skip(&r.name, s.reason);
                    }
                }
                Outcome::Deferred { rule, seq } => {
                    let r = &self.engine.rules()[rule];
                    if !self.counters.counted(&r.topic, seq) {
                        self.counters.update(&r.name, |c| c.deferred += 1);
                    }
                }
                Outcome::CounterReset { rule, seq } => {
                    let r = &self.engine.rules()[rule];
                    if !self.counters.counted(&r.topic, seq) {
                        tracing::info!(rule = %r.name, seq, "counter reset: counting its new value from 0");
                        self.counters.update(&r.name, |c| c.resets += 1);
                    }
                }
            }
        }
    }

    /// Make the checkpoints durable (after the events they cover) and save the counters.
    pub fn flush(&mut self) {
        if self.frozen {
            self.durable = false;
            self.counters.save();
            return;
        }
        if let Some(cps) = self.engine.take_checkpoints() {
            match self.store.save_checkpoints(&cps) {
                Ok(()) => self.durable = true,
                Err(e) => {
                    // Replay covers it: the next start re-evaluates from the older checkpoint.
                    tracing::warn!("events: checkpoint not saved: {e}");
                    self.durable = false;
                }
            }
        } else if !self.durable {
            // Nothing changed since a failed save: still not durable until a save succeeds.
            self.durable = self.store.save_checkpoints(&self.engine.checkpoints()).is_ok();
        }
        self.counters.save();
        self.new_events = 0;
    }
}
