//! Event rules on the node: the Data Event Map's `topics[i].events` → `peaqos_events`.
//!
//! At start: the rules are loaded and checked against them (a bad rule stops the node with
//! `<file>: topics[i].events[j].<key>: rule "<name>": <reason>`; the field paths come from
//! [`crate::catalog`]), the event store is opened and
//! the package log replayed after the rules' checkpoints. The tap hands each durable batch to the
//! events thread (never blocks); the thread evaluates, persists events, moves checkpoints and
//! wakes the submit loop, which runs on the chain client's tokio runtime.
//!
//! Parameters: `chain.machine_id` (decimal; empty = the id `~/activate` persisted),
//! `events.batch_max` (events per batchAll, default 50), `events.max_age` (seconds an event
//! waits to be coalesced, default 2.0).
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use peaqos_core::pipeline::Published;
use peaqos_core::policy::{DataEventMap, PolicyError};
use peaqos_events::counters::Counters;
use peaqos_events::processor::Processor;
use peaqos_events::rules::FieldCatalog;
use peaqos_events::store::EventStore;
use peaqos_events::submit::{current_machine_id, machine_id_file, SubmitConfig, Submitter};
use ros_env::peaqos_node::msg::EventRuleStatus;
use tokio::sync::watch;

use crate::chain::ChainServices;
use crate::params::{param_err, Params};
use crate::StartError;

type Tap = Box<dyn FnMut(&[Published]) + Send>;
type Batch = Vec<(Arc<str>, u64, String)>;

/// Default of `events.queue_max_bytes`: the packaging thread → events thread hand-over.
const DEFAULT_QUEUE_MAX_BYTES: i64 = 16 << 20;

/// The hand-over's bytes in flight and its counted drops (`~/status`, `/diagnostics`).
#[derive(Default)]
pub struct HandOver {
    pub queued_bytes: AtomicUsize,
    pub max_bytes: AtomicUsize,
    pub dropped: AtomicU64,
    pub dropped_bytes: AtomicU64,
}

static HAND_OVER: OnceLock<Arc<HandOver>> = OnceLock::new();

/// The events hand-over's counters (`None` without event rules).
pub fn hand_over() -> Option<&'static Arc<HandOver>> {
    HAND_OVER.get()
}

/// Rules (name, topic, event type) and their counters, for `~/status`.
struct StatusView {
    rules: Vec<(String, String, &'static str)>,
    counters: Arc<Counters>,
    machine_id: Option<String>,
    machine_id_file: PathBuf,
}

static STATUS: OnceLock<StatusView> = OnceLock::new();

/// The events part of `~/status` (empty without event rules).
pub fn status() -> (Vec<EventRuleStatus>, String) {
    let Some(v) = STATUS.get() else { return (Vec::new(), String::new()) };
    let snap = v.counters.snapshot();
    let rules = v
        .rules
        .iter()
        .map(|(name, topic, ty)| {
            let c = snap.get(name).cloned().unwrap_or_default();
            EventRuleStatus {
                rule: name.clone(),
                topic: topic.clone(),
                event_type: (*ty).to_owned(),
                produced: c.produced,
                submitted: c.submitted,
                included: c.included,
                failed: c.failed,
                pending: c.pending,
                held_reason: c.held_reason,
                resets: c.resets,
                deferred: c.deferred,
                skip_reasons: c.skipped.keys().cloned().collect(),
                skip_counts: c.skipped.values().copied().collect(),
            }
        })
        .collect();
    let mid = current_machine_id(v.machine_id.as_deref(), &v.machine_id_file).unwrap_or_default();
    (rules, mid)
}

/// The running event subsystem.
pub struct EventsSubsystem {
    tap: Option<Tap>,
    tx: Option<mpsc::Sender<Option<Batch>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    submit: Option<(tokio::runtime::Handle, tokio::task::JoinHandle<()>)>,
}

/// Load the rules and start the subsystem (`None` when the policy has no event rules).
/// `machine_id`: the `chain.machine_id` parameter ([`crate::chain::declare_machine_id`]).
pub fn start(
    params: &Params,
    map: &DataEventMap,
    chain: Option<&ChainServices>,
    machine_id: &str,
    catalogs: &HashMap<String, FieldCatalog>,
    retention: &crate::retention::Retention,
) -> Result<Option<EventsSubsystem>, StartError> {
    let machine_id = machine_id.to_owned();
    let batch_max =
        params.declared.read_only::<i64>("events.batch_max", 50, "Events coalesced into one batchAll (1..512).")?;
    let max_age = params.declared.read_only::<f64>(
        "events.max_age",
        2.0,
        "Seconds a produced event waits to be coalesced with others before its batch is sent.",
    )?;
    if !(1..=512).contains(&batch_max) {
        return Err(param_err("events.batch_max", format!("must be 1..512, got {batch_max}")));
    }
    let max_age = peaqos_core::duration::seconds(max_age, true).map_err(|e| param_err("events.max_age", e))?;
    let queue_max_bytes = params.declared.read_only_in::<i64>(
        "events.queue_max_bytes",
        DEFAULT_QUEUE_MAX_BYTES,
        "Most package bytes handed from the packaging thread to the event rules and not yet evaluated; beyond it a hand-over is dropped and counted (the rules then read those packages back from the package log: nothing is lost).",
        rclrs::ParameterRange { lower: Some(65_536), upper: Some(i64::MAX), step: None },
    )?;
    let queue_max_bytes =
        usize::try_from(queue_max_bytes).map_err(|_| param_err("events.queue_max_bytes", "out of range"))?;
    if map.topics.iter().all(|t| t.events.is_empty()) {
        return Ok(None);
    }
    let file = if params.policy_file.is_empty() {
        PathBuf::from("<embedded default policy>")
    } else {
        PathBuf::from(&params.policy_file)
    };
    let rules = peaqos_events::load_rules(map, &file, catalogs).map_err(|e| {
        StartError::Policy(PolicyError {
            file: e.file,
            path: e.path,
            reason: format!("rule {:?}: {}", e.rule, e.reason),
        })
    })?;
    let store = Arc::new(EventStore::open(&params.data_dir).map_err(|e| param_err("data_dir", e))?);
    let names: Vec<String> = rules.iter().map(|r| r.name.clone()).collect();
    let counters = Arc::new(Counters::load(store.dir().join("counters.json"), &names));
    let _ = STATUS.set(StatusView {
        rules: rules
            .iter()
            .map(|r| (r.name.clone(), r.topic.clone(), if r.event_type.code() == 0 { "revenue" } else { "activity" }))
            .collect(),
        counters: Arc::clone(&counters),
        machine_id: (!machine_id.is_empty()).then(|| machine_id.clone()),
        machine_id_file: machine_id_file(&params.data_dir),
    });
    let n_rules = rules.len();
    let topics: Vec<String> = rules.iter().map(|r| r.topic.clone()).collect();
    crate::retention::register_events(&retention.consumers, &topics);
    let mut processor = Processor::open(&params.data_dir, rules, Arc::clone(&store), Arc::clone(&counters))
        .map_err(|e| param_err("data_dir", format!("events: {e}")))?;

    let (stop, stop_rx) = watch::channel(false);
    let mut waker = None;
    let submit = match chain {
        Some(c) => {
            let s = Submitter::new(
                c.client().clone(),
                Arc::clone(&store),
                Arc::clone(&counters),
                SubmitConfig {
                    batch_max: batch_max as usize,
                    max_age,
                    machine_id: (!machine_id.is_empty()).then_some(machine_id),
                    machine_id_file: machine_id_file(&params.data_dir),
                    retry: Duration::from_millis(500),
                },
            );
            waker = Some(s.waker());
            let h = c.runtime();
            let task = h.spawn(s.run(stop_rx));
            Some((h, task))
        }
        None => {
            tracing::warn!("events: the chain client is disabled; events are produced and kept pending");
            None
        }
    };

    const DISABLED: &str = "chain client disabled (chain.enabled = false)";
    let held_store = (waker.is_none()).then(|| (Arc::clone(&store), Arc::clone(&counters)));
    if let Some((st, c)) = &held_store {
        peaqos_events::submit::report_held(st, c, DISABLED);
    }
    // `None` asks the thread to flush and stop.
    let (tx, rx) = mpsc::channel::<Option<Batch>>();
    let hand = Arc::new(HandOver { max_bytes: AtomicUsize::new(queue_max_bytes), ..HandOver::default() });
    let _ = HAND_OVER.set(Arc::clone(&hand));
    let (thread_hand, topics_caught) = (Arc::clone(&hand), topics.clone());
    let mut caught_up_to = 0u64;
    let consumers = Arc::clone(&retention.consumers);
    crate::retention::report_events(&consumers, &processor);
    let (events_max_age, retention_interval) = (retention.events_max_age, retention.interval);
    let mut last_prune = std::time::Instant::now();
    let prune_store = Arc::clone(&store);
    let thread = std::thread::Builder::new()
        .name("peaqos-events".into())
        .spawn(move || {
            loop {
                let mut stopping = false;
                let take = |batch: &Batch, processor: &mut Processor| {
                    for (topic, seq, json) in batch {
                        thread_hand.queued_bytes.fetch_sub(json.len(), Ordering::Relaxed);
                        if let Err(e) = processor.handle_next(topic, *seq, json) {
                            tracing::error!("events: reading {topic} from the package log failed: {e}");
                        }
                    }
                };
                // Dropped hand-overs waiting to be read back from the log: look again soon.
                let behind = thread_hand.dropped.load(Ordering::Relaxed) > caught_up_to;
                match rx.recv_timeout(Duration::from_millis(if behind { 50 } else { 500 })) {
                    Ok(Some(batch)) => {
                        take(&batch, &mut processor);
                        // Drain what queued meanwhile before the (fsync'ing) flush.
                        while let Ok(more) = rx.try_recv() {
                            match more {
                                Some(more) => take(&more, &mut processor),
                                None => stopping = true,
                            }
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => stopping = true,
                }
                // Dropped hand-overs with nothing newer arriving: read them back from the log
                // (every drop counted before this read is in the log: the tap runs after commit).
                let dropped = thread_hand.dropped.load(Ordering::Relaxed);
                if dropped > caught_up_to && thread_hand.queued_bytes.load(Ordering::Relaxed) == 0 {
                    caught_up_to = dropped;
                    for t in &topics_caught {
                        if let Err(e) = processor.catch_up(t) {
                            tracing::error!("events: reading {t} from the package log failed: {e}");
                        }
                    }
                }
                if stopping {
                    processor.flush();
                    return;
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                processor.tick(now);
                let new = processor.new_events;
                processor.flush();
                crate::retention::report_events(&consumers, &processor);
                if last_prune.elapsed() >= retention_interval {
                    last_prune = std::time::Instant::now();
                    if let Err(e) = prune_store.prune_submitted(events_max_age, std::time::SystemTime::now()) {
                        tracing::warn!("events: retention of submitted records failed: {e}");
                    }
                }
                if new > 0 {
                    if let Some(w) = &waker {
                        w.notify_one();
                    }
                    if let Some((st, c)) = &held_store {
                        peaqos_events::submit::report_held(st, c, DISABLED);
                    }
                }
            }
        })
        .map_err(|e| param_err("events", format!("cannot start the events thread: {e}")))?;

    let tap_tx = tx.clone();
    // Bounded by bytes, never blocks the packaging thread: a hand-over over the bound is dropped
    // and counted; the events thread reads it back from the package log.
    let mut last_warn: Option<std::time::Instant> = None;
    let tap: Tap = Box::new(move |batch: &[Published]| {
        let mut v: Batch = Vec::new();
        for p in batch.iter().filter(|p| topics.iter().any(|t| **t == *p.topic)) {
            let n = p.package_json.len();
            if hand.queued_bytes.load(Ordering::Relaxed) + n > queue_max_bytes {
                hand.dropped.fetch_add(1, Ordering::Relaxed);
                hand.dropped_bytes.fetch_add(n as u64, Ordering::Relaxed);
                if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    last_warn = Some(std::time::Instant::now());
                    tracing::warn!(
                        "events: hand-over over events.queue_max_bytes ({queue_max_bytes}): {} dropped so far, read back from the package log",
                        hand.dropped.load(Ordering::Relaxed)
                    );
                }
                continue;
            }
            hand.queued_bytes.fetch_add(n, Ordering::Relaxed);
            v.push((Arc::clone(&p.topic), p.sequence_number, p.package_json.clone()));
        }
        if !v.is_empty() {
            let _ = tap_tx.send(Some(v));
        }
    });
    tracing::info!("events: {n_rules} rule(s) loaded");
    Ok(Some(EventsSubsystem { tap: Some(tap), tx: Some(tx), thread: Some(thread), stop, submit }))
}

impl EventsSubsystem {
    /// The package tap (taken once, for `main.rs`'s tap list).
    pub fn take_tap(&mut self) -> Option<Tap> {
        self.tap.take()
    }

    /// After the pipeline has shut down: evaluate what the tap handed over, flush, stop the
    /// submit loop (pending events stay on disk for the next start).
    pub fn shutdown(mut self) {
        drop(self.tap.take());
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(None);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.stop.send(true);
        if let Some((h, task)) = self.submit.take() {
            peaqos_events::submit::join_with_timeout(&h, task, Duration::from_secs(5));
        }
    }
}
