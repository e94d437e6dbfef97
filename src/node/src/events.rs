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
//! waits to be coalesced, default 2.0), `events.queue_max_bytes` (the tap's hand-over, bounded
//! by bytes: a hand-over over it is dropped, counted, and read back from the package log).
//!
//! Retention: the rules report their durable position in the package log after each flush
//! ([`crate::retention`]) and prune `submitted/` records of included events by age.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peaqos_core::pipeline::Published;
use peaqos_core::policy::{DataEventMap, PolicyError};
use peaqos_events::counters::Counters;
use peaqos_events::processor::Processor;
use peaqos_events::rules::{FieldCatalog, Rule};
use peaqos_events::store::EventStore;
use peaqos_events::submit::{current_machine_id, machine_id_file, SubmitConfig, Submitter};
use ros_env::peaqos_node::msg::EventRuleStatus;
use tokio::sync::{watch, Notify};

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

/// Rules (name, topic, event type) and their counters, for `~/status`.
pub struct StatusView {
    rules: Vec<(String, String, &'static str)>,
    counters: Arc<Counters>,
    machine_id: Option<String>,
    machine_id_file: PathBuf,
    /// The tap's hand-over to the events thread.
    pub hand_over: Arc<HandOver>,
}

impl StatusView {
    /// The events part of `~/status`: each rule's counters and the machine id events are
    /// submitted for.
    pub fn report(&self) -> (Vec<EventRuleStatus>, String) {
        let snap = self.counters.snapshot();
        let rules = self
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
        let mid = current_machine_id(self.machine_id.as_deref(), &self.machine_id_file).unwrap_or_default();
        (rules, mid)
    }
}

/// The running event subsystem.
pub struct EventsSubsystem {
    tap: Option<Tap>,
    tx: Option<mpsc::Sender<Option<Batch>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    submit: Option<(tokio::runtime::Handle, tokio::task::JoinHandle<()>)>,
    status: Arc<StatusView>,
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
    resolver: Option<Arc<dyn peaqos_core::payload::PayloadResolver>>,
) -> Result<Option<EventsSubsystem>, StartError> {
    let (batch_max, max_age) = declare_params(params)?;
    let queue_max_bytes = declare_queue_max_bytes(params)?;
    if map.topics.iter().all(|t| t.events.is_empty()) {
        return Ok(None);
    }
    let rules = load_rules(params, map, catalogs)?;
    let store = Arc::new(EventStore::open(&params.data_dir).map_err(|e| param_err("data_dir", e))?);
    let names: Vec<String> = rules.iter().map(|r| r.name.clone()).collect();
    let counters = Arc::new(Counters::load(store.dir().join("counters.json"), &names));
    let hand_over = Arc::new(HandOver { max_bytes: AtomicUsize::new(queue_max_bytes), ..HandOver::default() });
    let status = Arc::new(StatusView {
        rules: rules
            .iter()
            .map(|r| (r.name.clone(), r.topic.clone(), if r.event_type.code() == 0 { "revenue" } else { "activity" }))
            .collect(),
        counters: Arc::clone(&counters),
        machine_id: (!machine_id.is_empty()).then(|| machine_id.to_owned()),
        machine_id_file: machine_id_file(&params.data_dir),
        hand_over: Arc::clone(&hand_over),
    });
    let n_rules = rules.len();
    let topics: Vec<String> = rules.iter().map(|r| r.topic.clone()).collect();
    crate::retention::register_events(&retention.consumers, &topics);
    let processor =
        Processor::open_with_resolver(&params.data_dir, rules, Arc::clone(&store), Arc::clone(&counters), resolver)
            .map_err(|e| param_err("data_dir", format!("events: {e}")))?;

    let (stop, stop_rx) = watch::channel(false);
    let (waker, submit) = match chain {
        Some(c) => {
            let config = SubmitConfig {
                batch_max,
                max_age,
                machine_id: (!machine_id.is_empty()).then(|| machine_id.to_owned()),
                machine_id_file: machine_id_file(&params.data_dir),
                retry: Duration::from_millis(500),
            };
            let (waker, submit) = start_submitter(c, &store, &counters, config, stop_rx);
            (Some(waker), Some(submit))
        }
        None => {
            tracing::warn!("events: the chain client is disabled; events are produced and kept pending");
            (None, None)
        }
    };
    let held_store = waker.is_none().then(|| (Arc::clone(&store), Arc::clone(&counters)));
    if let Some((st, c)) = &held_store {
        peaqos_events::submit::report_held(st, c, DISABLED);
    }
    // `None` asks the thread to flush and stop.
    let (tx, rx) = mpsc::channel::<Option<Batch>>();
    crate::retention::report_events(&retention.consumers, &processor);
    let upkeep = Upkeep {
        hand_over: Arc::clone(&hand_over),
        caught_up_to: 0,
        topics: topics.clone(),
        consumers: Arc::clone(&retention.consumers),
        store: Arc::clone(&store),
        events_max_age: retention.events_max_age,
        interval: retention.interval,
        last_prune: Instant::now(),
    };
    let thread = std::thread::Builder::new()
        .name("peaqos-events".into())
        .spawn(move || events_loop(processor, rx, waker, held_store, upkeep))
        .map_err(|e| param_err("events", format!("cannot start the events thread: {e}")))?;
    let tap = tap(topics, tx.clone(), hand_over, queue_max_bytes);
    tracing::info!("events: {n_rules} rule(s) loaded");
    Ok(Some(EventsSubsystem { tap: Some(tap), tx: Some(tx), thread: Some(thread), stop, submit, status }))
}

/// Why events are held when there is no chain client.
const DISABLED: &str = "chain client disabled (chain.enabled = false)";

/// `events.batch_max` (events per batchAll, 1..512) and `events.max_age` (seconds).
fn declare_params(params: &Params) -> Result<(usize, Duration), StartError> {
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
    Ok((batch_max as usize, max_age))
}

/// `events.queue_max_bytes`: the most package bytes handed to the events thread and not yet
/// evaluated.
fn declare_queue_max_bytes(params: &Params) -> Result<usize, StartError> {
    let v = params.declared.read_only_in::<i64>(
        "events.queue_max_bytes",
        DEFAULT_QUEUE_MAX_BYTES,
        "Most package bytes handed from the packaging thread to the event rules and not yet evaluated; beyond it a hand-over is dropped and counted (the rules then read those packages back from the package log: nothing is lost).",
        rclrs::ParameterRange { lower: Some(65_536), upper: Some(i64::MAX), step: None },
    )?;
    usize::try_from(v).map_err(|_| param_err("events.queue_max_bytes", "out of range"))
}

/// The events thread's housekeeping besides evaluation: dropped hand-overs read back from the
/// log, the rules' log position for retention, pruning of `submitted/`.
struct Upkeep {
    hand_over: Arc<HandOver>,
    /// The dropped hand-overs the last catch-up covered.
    caught_up_to: u64,
    topics: Vec<String>,
    consumers: Arc<peaqos_core::retention::LogConsumers>,
    store: Arc<EventStore>,
    events_max_age: Duration,
    interval: Duration,
    last_prune: Instant,
}

impl Upkeep {
    /// Evaluate a handed-over batch in sequence order (gaps filled from the log).
    fn take(&self, batch: &Batch, processor: &mut Processor) {
        for (topic, seq, json) in batch {
            self.hand_over.queued_bytes.fetch_sub(json.len(), Ordering::Relaxed);
            if let Err(e) = processor.handle_next(topic, *seq, json) {
                tracing::error!("events: reading {topic} from the package log failed: {e}");
            }
        }
    }

    /// Dropped hand-overs wait to be read back from the log.
    fn behind(&self) -> bool {
        self.hand_over.dropped.load(Ordering::Relaxed) > self.caught_up_to
    }

    /// Dropped hand-overs with nothing newer arriving: read them back from the log (every drop
    /// counted before this read is in the log: the tap runs after the commit).
    fn catch_up(&mut self, processor: &mut Processor) {
        let dropped = self.hand_over.dropped.load(Ordering::Relaxed);
        if dropped <= self.caught_up_to || self.hand_over.queued_bytes.load(Ordering::Relaxed) != 0 {
            return;
        }
        self.caught_up_to = dropped;
        for t in &self.topics {
            if let Err(e) = processor.catch_up(t) {
                tracing::error!("events: reading {t} from the package log failed: {e}");
            }
        }
    }

    /// After a flush: report the durable log position; prune `submitted/` now and then.
    fn after_flush(&mut self, processor: &Processor) {
        crate::retention::report_events(&self.consumers, processor);
        if self.last_prune.elapsed() >= self.interval {
            self.last_prune = Instant::now();
            if let Err(e) = self.store.prune_submitted(self.events_max_age, std::time::SystemTime::now()) {
                tracing::warn!("events: retention of submitted records failed: {e}");
            }
        }
    }
}

/// The policy's event rules, checked; a bad rule is a policy error naming the rule.
fn load_rules(
    params: &Params,
    map: &DataEventMap,
    catalogs: &HashMap<String, FieldCatalog>,
) -> Result<Vec<Rule>, StartError> {
    peaqos_events::load_rules(map, &params.policy_file_name(), catalogs).map_err(|e| {
        StartError::Policy(PolicyError {
            file: e.file,
            path: e.path,
            reason: format!("rule {:?}: {}", e.rule, e.reason),
        })
    })
}

/// The submit loop on the chain client's runtime; returns its waker and its task.
fn start_submitter(
    chain: &ChainServices,
    store: &Arc<EventStore>,
    counters: &Arc<Counters>,
    config: SubmitConfig,
    stop: watch::Receiver<bool>,
) -> (Arc<Notify>, (tokio::runtime::Handle, tokio::task::JoinHandle<()>)) {
    let s = Submitter::new(chain.client().clone(), Arc::clone(store), Arc::clone(counters), config);
    let waker = s.waker();
    let h = chain.runtime();
    let task = h.spawn(s.run(stop));
    (waker, (h, task))
}

/// The events thread: evaluate each handed-over batch (and what queued meanwhile) before one
/// flush, tick the time windows, wake the submit loop on new events (or report them held when
/// the chain client is off); at `None` or a closed channel, flush and return.
fn events_loop(
    mut processor: Processor,
    rx: mpsc::Receiver<Option<Batch>>,
    waker: Option<Arc<Notify>>,
    held_store: Option<(Arc<EventStore>, Arc<Counters>)>,
    mut upkeep: Upkeep,
) {
    loop {
        let mut stopping = false;
        // Dropped hand-overs waiting to be read back from the log: look again soon.
        let wait = Duration::from_millis(if upkeep.behind() { 50 } else { 500 });
        match rx.recv_timeout(wait) {
            Ok(Some(batch)) => {
                upkeep.take(&batch, &mut processor);
                // Drain what queued meanwhile before the (fsync'ing) flush.
                while let Ok(more) = rx.try_recv() {
                    match more {
                        Some(more) => upkeep.take(&more, &mut processor),
                        None => stopping = true,
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => stopping = true,
        }
        upkeep.catch_up(&mut processor);
        if stopping {
            processor.flush();
            return;
        }
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        processor.tick(now);
        let new = processor.new_events;
        processor.flush();
        upkeep.after_flush(&processor);
        if new > 0 {
            if let Some(w) = &waker {
                w.notify_one();
            }
            if let Some((st, c)) = &held_store {
                peaqos_events::submit::report_held(st, c, DISABLED);
            }
        }
    }
}

/// The tap: hand the packages of the rules' topics to the events thread, never block. Bounded
/// by bytes: a package over `max_bytes` in flight is dropped and counted; the events thread
/// reads it back from the package log.
fn tap(topics: Vec<String>, tx: mpsc::Sender<Option<Batch>>, hand: Arc<HandOver>, max_bytes: usize) -> Tap {
    let mut last_warn: Option<Instant> = None;
    Box::new(move |batch: &[Published]| {
        let mut v: Batch = Vec::new();
        for p in batch.iter().filter(|p| topics.iter().any(|t| **t == *p.topic)) {
            let n = p.package_json.len();
            if hand.queued_bytes.load(Ordering::Relaxed) + n > max_bytes {
                hand.dropped.fetch_add(1, Ordering::Relaxed);
                hand.dropped_bytes.fetch_add(n as u64, Ordering::Relaxed);
                if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    last_warn = Some(Instant::now());
                    tracing::warn!(
                        "events: hand-over over events.queue_max_bytes ({max_bytes}): {} dropped so far, read back from the package log",
                        hand.dropped.load(Ordering::Relaxed)
                    );
                }
                continue;
            }
            hand.queued_bytes.fetch_add(n, Ordering::Relaxed);
            v.push((Arc::clone(&p.topic), p.sequence_number, p.package_json.clone()));
        }
        if !v.is_empty() {
            let _ = tx.send(Some(v));
        }
    })
}

impl EventsSubsystem {
    /// The package tap (taken once, for `main.rs`'s tap list).
    pub fn take_tap(&mut self) -> Option<Tap> {
        self.tap.take()
    }

    /// The events part of `~/status`.
    pub fn status(&self) -> Arc<StatusView> {
        Arc::clone(&self.status)
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
