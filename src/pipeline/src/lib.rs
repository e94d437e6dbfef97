//! The packaging pipeline between the node's subscription callbacks and the package log.
//!
//! ```text
//! callback ──try_submit──▶ shared queue (bounded per topic) ──▶ worker thread
//!   worker: field rules → timestamp → sequence → canonical JSON → EIP-191 signature
//!           → append to the topic's log → one fdatasync per batch (group commit)
//!           → sink(batch)            (the node publishes; nothing is published before it is durable)
//! ```
//! Callbacks never block: when a topic already has `queue_size` messages waiting, the message
//! is dropped and counted for that topic. A message whose packaging fails is counted in
//! `errors` and logged with its topic; the worker carries on.
pub mod package_log;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use peaqos_core::field_rules::{self, FieldCipher, TopicRules};
use peaqos_core::keys::{FieldKey, MachineKey};
use peaqos_core::package::build_signed_package_json;
use peaqos_core::policy::DataEventMap;
use peaqos_core::value::{iso8601_utc, Timestamp};
use serde_json::{Map, Value};

use package_log::{LogError, TopicLog};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("cannot start the packaging thread: {0}")]
    Thread(std::io::Error),
}

pub struct PipelineConfig {
    /// `<data_dir>/packages` holds the package log.
    pub data_dir: PathBuf,
    /// Most packages signed and written per group commit.
    pub batch_max: usize,
    /// How long the worker waits for more messages before committing a partial batch.
    pub batch_max_wait: Duration,
}

/// A converted ROS message, as the node hands it over.
pub struct RawMessage {
    /// The message's top-level fields.
    pub fields: Map<String, Value>,
    /// `header.stamp`, when the message has a Header.
    pub stamp: Option<Timestamp>,
    /// When the subscription callback ran.
    pub received: SystemTime,
}

/// A package that is durable in the log, ready to publish.
#[derive(Debug, Clone)]
pub struct Published {
    pub topic: String,
    pub sequence_number: u64,
    pub package_json: String,
}

#[derive(Debug, Clone, Default)]
pub struct TopicStats {
    pub topic: String,
    pub received: u64,
    pub packaged: u64,
    pub dropped: u64,
    pub errors: u64,
    pub queue_depth: u64,
    pub last_sequence: Option<u64>,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    packaged: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    depth: AtomicU64,
    /// last sequence + 1; 0 = none yet
    next_sequence: AtomicU64,
}

enum Job {
    Message(usize, RawMessage),
    Flush(mpsc::SyncSender<()>),
    Stop,
}

/// Hands messages of one topic to the pipeline. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct Submitter {
    topic: usize,
    capacity: u64,
    counters: Arc<Counters>,
    tx: Sender<Job>,
}

impl Submitter {
    /// Queue a message; `false` when the topic's queue is full (counted as a drop).
    pub fn try_submit(&self, msg: RawMessage) -> bool {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        if self.counters.depth.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.counters.depth.fetch_sub(1, Ordering::AcqRel);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if self.tx.send(Job::Message(self.topic, msg)).is_err() {
            self.counters.depth.fetch_sub(1, Ordering::AcqRel);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

pub struct Pipeline {
    topics: Vec<String>,
    capacities: Vec<u64>,
    counters: Vec<Arc<Counters>>,
    tx: Sender<Job>,
    worker: Mutex<Option<JoinHandle<()>>>,
    address: String,
    did: String,
}

struct TopicState {
    name: String,
    rules: TopicRules,
    log: TopicLog,
    counters: Arc<Counters>,
}

struct Worker {
    rx: Receiver<Job>,
    topics: Vec<TopicState>,
    key: MachineKey,
    did: String,
    cipher: FieldCipher,
    schema_version: String,
    batch_max: usize,
    batch_max_wait: Duration,
    sink: Box<dyn FnMut(Vec<Published>) + Send>,
}

impl Worker {
    fn run(mut self) {
        let mut batch: Vec<(usize, RawMessage)> = Vec::with_capacity(self.batch_max);
        loop {
            let mut flush_waiters = Vec::new();
            let mut stop = false;
            match self.rx.recv() {
                Ok(Job::Message(t, m)) => batch.push((t, m)),
                Ok(Job::Flush(w)) => flush_waiters.push(w),
                Ok(Job::Stop) | Err(_) => stop = true,
            }
            // Gather a batch: what is already queued, up to batch_max, waiting briefly.
            let deadline = std::time::Instant::now() + self.batch_max_wait;
            while !stop && batch.len() < self.batch_max {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match self.rx.recv_timeout(left) {
                    Ok(Job::Message(t, m)) => batch.push((t, m)),
                    Ok(Job::Flush(w)) => flush_waiters.push(w),
                    Ok(Job::Stop) => stop = true,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => stop = true,
                }
            }
            if stop {
                // Drain everything that was accepted before the stop.
                while let Ok(job) = self.rx.try_recv() {
                    match job {
                        Job::Message(t, m) => batch.push((t, m)),
                        Job::Flush(w) => flush_waiters.push(w),
                        Job::Stop => {}
                    }
                }
            }
            self.process(std::mem::take(&mut batch));
            for w in flush_waiters {
                let _ = w.send(());
            }
            if stop {
                return;
            }
        }
    }

    fn package(&mut self, t: usize, msg: RawMessage) -> Result<Published, String> {
        let topic = &mut self.topics[t];
        let payload = field_rules::apply(&msg.fields, &topic.rules, &self.cipher).map_err(|e| e.to_string())?;
        let ts = iso8601_utc(msg.stamp.unwrap_or_else(|| Timestamp::from_system_time(msg.received)));
        let seq = topic.log.last_sequence().map_or(0, |s| s + 1);
        let package_json = build_signed_package_json(&self.did, &self.key, &ts, &self.schema_version, seq, payload)
            .map_err(|e| e.to_string())?
            .json;
        topic.log.push(seq, &package_json);
        Ok(Published { topic: topic.name.clone(), sequence_number: seq, package_json })
    }

    fn process(&mut self, batch: Vec<(usize, RawMessage)>) {
        if batch.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(batch.len());
        let mut touched = BTreeSet::new();
        for (t, msg) in batch {
            self.topics[t].counters.depth.fetch_sub(1, Ordering::AcqRel);
            match self.package(t, msg) {
                Ok(p) => {
                    touched.insert(t);
                    out.push((t, p));
                }
                Err(e) => {
                    self.topics[t].counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("topic {}: message not packaged: {e}", self.topics[t].name);
                }
            }
        }
        // Group commit: one fdatasync per touched topic, then acknowledge.
        let mut failed = BTreeSet::new();
        for t in touched {
            let topic = &mut self.topics[t];
            let next = topic.log.last_sequence().map_or(0, |s| s + 1);
            if let Err(e) = topic.log.commit(next) {
                tracing::error!("topic {}: package log write failed, packages not published: {e}", topic.name);
                failed.insert(t);
            }
        }
        let mut publish = Vec::with_capacity(out.len());
        for (t, p) in out {
            let c = &self.topics[t].counters;
            if failed.contains(&t) {
                c.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            c.packaged.fetch_add(1, Ordering::Relaxed);
            c.next_sequence.store(p.sequence_number + 1, Ordering::Relaxed);
            publish.push(p);
        }
        if !publish.is_empty() {
            (self.sink)(publish);
        }
    }
}

impl Pipeline {
    pub fn start(
        cfg: PipelineConfig,
        key: MachineKey,
        field_key: FieldKey,
        map: &DataEventMap,
        sink: Box<dyn FnMut(Vec<Published>) + Send>,
    ) -> Result<Pipeline, PipelineError> {
        let root = cfg.data_dir.join("packages");
        let (tx, rx) = mpsc::channel();
        let mut topics = Vec::new();
        let mut counters = Vec::new();
        let mut capacities = Vec::new();
        for t in &map.topics {
            let log = TopicLog::open(&root, &t.topic)?;
            let c = Arc::new(Counters::default());
            c.next_sequence.store(log.last_sequence().map_or(0, |s| s + 1), Ordering::Relaxed);
            counters.push(Arc::clone(&c));
            capacities.push(t.queue_size as u64);
            topics.push(TopicState { name: t.topic.clone(), rules: t.field_rules(), log, counters: c });
        }
        let address = key.address().to_owned();
        let did = key.did().to_owned();
        let worker = Worker {
            rx,
            topics,
            did: did.clone(),
            key,
            cipher: FieldCipher::new(&field_key),
            schema_version: map.package_schema_version.clone(),
            batch_max: cfg.batch_max.max(1),
            batch_max_wait: cfg.batch_max_wait,
            sink,
        };
        let handle = std::thread::Builder::new()
            .name("peaqos-packager".into())
            .spawn(move || worker.run())
            .map_err(PipelineError::Thread)?;
        Ok(Pipeline {
            topics: map.topics.iter().map(|t| t.topic.clone()).collect(),
            capacities,
            counters,
            tx,
            worker: Mutex::new(Some(handle)),
            address,
            did,
        })
    }

    pub fn submitter(&self, topic: usize) -> Submitter {
        Submitter {
            topic,
            capacity: self.capacities[topic],
            counters: Arc::clone(&self.counters[topic]),
            tx: self.tx.clone(),
        }
    }

    pub fn stats(&self) -> Vec<TopicStats> {
        self.topics
            .iter()
            .zip(&self.counters)
            .map(|(topic, c)| {
                let next = c.next_sequence.load(Ordering::Relaxed);
                TopicStats {
                    topic: topic.clone(),
                    received: c.received.load(Ordering::Relaxed),
                    packaged: c.packaged.load(Ordering::Relaxed),
                    dropped: c.dropped.load(Ordering::Relaxed),
                    errors: c.errors.load(Ordering::Relaxed),
                    queue_depth: c.depth.load(Ordering::Relaxed),
                    last_sequence: next.checked_sub(1),
                }
            })
            .collect()
    }

    pub fn address(&self) -> String {
        self.address.clone()
    }

    pub fn did(&self) -> String {
        self.did.clone()
    }

    /// Wait until everything submitted so far is durable and handed to the sink.
    pub fn flush(&self) {
        let (w, r) = mpsc::sync_channel(1);
        if self.tx.send(Job::Flush(w)).is_ok() {
            let _ = r.recv();
        }
    }

    /// Package and write everything accepted so far, then stop the worker.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Job::Stop);
        if let Some(h) = self.worker.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shutdown();
    }
}
