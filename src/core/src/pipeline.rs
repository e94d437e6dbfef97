//! The packaging pipeline between the node's subscription callbacks and the package log.
//!
//! ```text
//! callback ──try_submit──▶ [bounded queue per topic] ──▶ worker thread:
//!     drain a batch (≤ batch_max, waiting ≤ batch_max_wait for more)
//!     per message: field rules → timestamp (header stamp, else receive time)
//!                  → next sequence → EIP-191 sign → append to the log
//!     one fdatasync per batch (PackageLog::commit)
//!     sink(batch of Published)        ← only after the batch is on disk
//! ```
//!
//! `try_submit` never blocks on I/O or signing: it takes a short mutex, and returns `false`
//! when the topic's queue is full (counted in `dropped`).
//!
//! **Bounded by bytes as well as count.** Each message's in-memory size is estimated
//! ([`RawMessage::approx_bytes`]) and reserved from its topic's bound (`queue_max_bytes`) and
//! the pipeline's total (`max_queued_bytes`) until its batch has been written and published, so
//! the messages queued *and* being packaged never exceed the total; a message that does not fit
//! is dropped and counted (`dropped_for_bytes`, `dropped_bytes`). A batch stops growing at
//! `batch_max_bytes`, so few large messages are signed and held per group commit. Large buffers are
//! mapped on their own ([`crate::memory::map_large_allocations`]) so a burst does not stay resident.
//!
//! **Refusing while the disk is full.** When a commit fails for lack of space (ENOSPC/EDQUOT),
//! or free space on the log's file system is under `min_free_bytes`, the pipeline refuses new
//! messages (counted drops, [`Pipeline::refusing`] says why) and rechecks free space every
//! `disk_check_interval`; it accepts again by itself once space is back above the floor. What
//! was acknowledged stays intact: a failed commit is rolled back to the last complete line. A message whose rules or signing
//! fail is counted in `errors` and logged with its topic and field; the worker never panics
//! on input. If a commit fails, that batch is counted in `errors`, nothing of it is
//! published, and its sequence numbers are reused by the next batch (the log stays gap-free).
//!
//! **Written once** ([`crate::payload`]): with a payload store ([`Pipeline::start_with_store`]),
//! a stored topic's package is written by the store (a streamed topic's chunk ciphertext) and the
//! log gets a small reference line; the group commit syncs the store before the log, and a batch
//! the log did not take is cut from the store again ([`PayloadStore::settle`]).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};

use crate::field_rules::{self, FieldCipher, TopicRules};
use crate::keys::{FieldKey, MachineKey};
use crate::package::build_signed_package_json;
use crate::package_log::{LogError, LogOptions, PackageLog};
use crate::payload::{self, PayloadStore};
use crate::policy::DataEventMap;
use crate::retention::{LogConsumers, LogRetention};
use crate::value::{iso8601_utc, Timestamp};

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Data directory (the log lives in `<data_dir>/packages/`).
    pub data_dir: PathBuf,
    /// Most messages per batch (one fdatasync per batch).
    pub batch_max: usize,
    /// How long the worker waits for a batch to fill once it has a message (0 = never).
    pub batch_max_wait: Duration,
    /// Segment size of the log.
    pub segment_max_bytes: u64,
    /// Most estimated message bytes queued or being packaged, all topics together.
    pub max_queued_bytes: u64,
    /// Per-topic byte bound for topics whose policy sets no `queue_max_bytes`.
    pub topic_max_queued_bytes: u64,
    /// A batch stops growing once its messages reach this many estimated bytes (≥ 1 message).
    pub batch_max_bytes: u64,
    /// Refuse new messages while the log's file system has fewer free bytes (0 = no floor).
    pub min_free_bytes: u64,
    /// How often free space is checked (and a full disk retried).
    pub disk_check_interval: Duration,
    /// Retention bounds of every topic's package log ([`crate::retention`]).
    pub retention: LogRetention,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// The log's consumers and their durable positions: segments they have not passed stay.
    pub consumers: Arc<LogConsumers>,
}

impl PipelineConfig {
    /// Defaults: batch of ≤ 256 messages and ≤ 8 MiB, no extra wait, 16 MiB segments,
    /// [`DEFAULT_MAX_QUEUED_BYTES`] in total, [`DEFAULT_TOPIC_MAX_QUEUED_BYTES`] per topic,
    /// [`DEFAULT_MIN_FREE_BYTES`] free space floor checked every second.
    pub fn new(data_dir: PathBuf) -> PipelineConfig {
        PipelineConfig {
            data_dir,
            batch_max: 256,
            batch_max_wait: Duration::ZERO,
            segment_max_bytes: crate::package_log::DEFAULT_SEGMENT_MAX_BYTES,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            topic_max_queued_bytes: DEFAULT_TOPIC_MAX_QUEUED_BYTES,
            batch_max_bytes: DEFAULT_BATCH_MAX_BYTES,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            disk_check_interval: Duration::from_secs(1),
            retention: LogRetention::default(),
            retention_interval: Duration::from_secs(5),
            consumers: Arc::new(LogConsumers::new()),
        }
    }
}

/// Default bound of all queued message bytes: 128 MiB.
pub const DEFAULT_MAX_QUEUED_BYTES: u64 = 128 << 20;
/// Default per-topic byte bound: 64 MiB.
pub const DEFAULT_TOPIC_MAX_QUEUED_BYTES: u64 = 64 << 20;
/// Default byte cap of one batch: 8 MiB (a batch's packages are held twice until its commit).
pub const DEFAULT_BATCH_MAX_BYTES: u64 = 8 << 20;
/// Default free-space floor: 64 MiB.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 << 20;

/// Pipeline start errors.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The log could not be opened.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Bad configuration.
    #[error("pipeline config: {0}")]
    Config(String),
    /// The worker thread could not be started.
    #[error("pipeline: cannot start worker thread: {0}")]
    Thread(std::io::Error),
}

/// One incoming message as the node hands it over.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Top-level fields (see `value` for the conversions).
    pub fields: Map<String, Value>,
    /// `header.stamp` when the message has one.
    pub stamp: Option<Timestamp>,
    /// When the callback received it.
    pub received: SystemTime,
}

/// Heap bytes one JSON value costs beyond its own slot (a fixed guess per node).
const VALUE_BYTES: u64 = std::mem::size_of::<Value>() as u64;
/// Bookkeeping per object entry (map node, key header) beyond the key's bytes.
const ENTRY_BYTES: u64 = 48;

fn value_bytes(v: &Value) -> u64 {
    VALUE_BYTES
        + match v {
            Value::String(s) => s.capacity() as u64,
            Value::Array(xs) => {
                xs.iter().map(value_bytes).sum::<u64>() + (xs.capacity() - xs.len()) as u64 * VALUE_BYTES
            }
            Value::Object(m) => map_bytes(m),
            _ => 0,
        }
}

fn map_bytes(m: &Map<String, Value>) -> u64 {
    m.iter().map(|(k, v)| ENTRY_BYTES + k.capacity() as u64 + value_bytes(v)).sum()
}

impl RawMessage {
    /// Estimated heap bytes of this message (strings, arrays and maps walked once): what the
    /// byte bounds count.
    pub fn approx_bytes(&self) -> u64 {
        std::mem::size_of::<RawMessage>() as u64 + map_bytes(&self.fields)
    }
}

/// A package that is on disk, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Topic it came from.
    pub topic: Arc<str>,
    /// Its sequence number.
    pub sequence_number: u64,
    /// Its canonical wire JSON.
    pub package_json: String,
}

/// Counters of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStats {
    /// Topic.
    pub topic: String,
    /// Messages accepted by `try_submit`.
    pub received: u64,
    /// Packages durably logged (and handed to the sink).
    pub packaged: u64,
    /// Messages refused: queue full (by count or bytes), refusing (disk full) or shutting down.
    pub dropped: u64,
    /// Of `dropped`, those refused because a byte bound was reached.
    pub dropped_for_bytes: u64,
    /// Estimated bytes of every dropped message.
    pub dropped_bytes: u64,
    /// Messages currently queued.
    pub queue_depth: usize,
    /// Estimated bytes queued or being packaged now.
    pub queued_bytes: u64,
    /// Last logged sequence number.
    pub last_sequence: Option<u64>,
    /// Messages that failed rules/signing/logging.
    pub errors: u64,
    /// Package log segments deleted by retention since start, and their bytes.
    pub retention_removed_segments: u64,
    pub retention_removed_bytes: u64,
    /// Bytes of the topic's package log after the last retention pass.
    pub log_bytes: u64,
}

const NO_SEQ: u64 = u64::MAX;

struct TopicShared {
    topic: Arc<str>,
    queue: Mutex<VecDeque<(RawMessage, u64)>>,
    capacity: usize,
    max_bytes: u64,
    /// Reserved bytes: queued plus in the worker's current batch.
    queued_bytes: AtomicU64,
    received: AtomicU64,
    packaged: AtomicU64,
    dropped: AtomicU64,
    dropped_for_bytes: AtomicU64,
    dropped_bytes: AtomicU64,
    errors: AtomicU64,
    last_sequence: AtomicU64,
    retention_removed_segments: AtomicU64,
    retention_removed_bytes: AtomicU64,
    log_bytes: AtomicU64,
}

struct Shared {
    topics: Vec<TopicShared>,
    /// Messages queued in total (the worker's wake-up condition). Signed: a submitter
    /// increments it after pushing, so the worker may briefly see it below zero.
    pending: Mutex<isize>,
    wake: Condvar,
    shutdown: AtomicBool,
    /// Reserved bytes of all topics, and their bound.
    queued_bytes: AtomicU64,
    max_queued_bytes: u64,
    /// Why new messages are refused now (`None`: accepting); `refusing` mirrors it for the
    /// callbacks' lock-free check.
    refusing: AtomicBool,
    refusing_reason: Mutex<Option<String>>,
}

impl Shared {
    /// Reserve `n` bytes of the total; false if that would exceed the bound.
    fn reserve(&self, n: u64) -> bool {
        self.queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                cur.checked_add(n).filter(|&next| next <= self.max_queued_bytes)
            })
            .is_ok()
    }

    fn release(&self, topic: usize, n: u64) {
        self.topics[topic].queued_bytes.fetch_sub(n, Ordering::AcqRel);
        self.queued_bytes.fetch_sub(n, Ordering::AcqRel);
    }

    fn set_refusing(&self, reason: Option<String>) {
        let mut r = lock(&self.refusing_reason);
        let was = r.is_some();
        match (&reason, was) {
            (Some(why), false) => tracing::error!("refusing new messages (counted as dropped): {why}"),
            (None, true) => tracing::info!("accepting messages again: free space is back"),
            _ => {}
        }
        self.refusing.store(reason.is_some(), Ordering::SeqCst);
        *r = reason;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data inconsistent (plain
    // queue/counter updates), so recover from poisoning.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Handle for one topic's callback: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Submitter {
    shared: Arc<Shared>,
    index: usize,
}

impl Submitter {
    /// Queue a message; `false` when the topic's queue is full by count or bytes, the total
    /// byte bound is reached, the pipeline refuses messages (disk full) or is shutting down —
    /// each counted as dropped.
    pub fn try_submit(&self, msg: RawMessage) -> bool {
        let t = &self.shared.topics[self.index];
        let n = msg.approx_bytes();
        let refuse = |for_bytes: bool| {
            t.dropped.fetch_add(1, Ordering::Relaxed);
            t.dropped_bytes.fetch_add(n, Ordering::Relaxed);
            if for_bytes {
                t.dropped_for_bytes.fetch_add(1, Ordering::Relaxed);
            }
            false
        };
        if self.shared.shutdown.load(Ordering::Relaxed) || self.shared.refusing.load(Ordering::Relaxed) {
            return refuse(false);
        }
        {
            let mut q = lock(&t.queue);
            if q.len() >= t.capacity {
                drop(q);
                return refuse(false);
            }
            // The topic's bytes only grow under its queue lock, so check-then-add is exact.
            if t.queued_bytes.load(Ordering::Acquire).saturating_add(n) > t.max_bytes || !self.shared.reserve(n) {
                drop(q);
                return refuse(true);
            }
            t.queued_bytes.fetch_add(n, Ordering::AcqRel);
            q.push_back((msg, n));
        }
        t.received.fetch_add(1, Ordering::Relaxed);
        let mut p = lock(&self.shared.pending);
        *p += 1;
        if *p == 1 {
            self.shared.wake.notify_one();
        }
        true
    }

    /// The topic this submitter feeds.
    pub fn topic(&self) -> &str {
        &self.shared.topics[self.index].topic
    }
}

/// The running pipeline.
pub struct Pipeline {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    address: String,
    did: String,
}

struct Worker {
    shared: Arc<Shared>,
    key: MachineKey,
    cipher: FieldCipher,
    rules: Vec<TopicRules>,
    schema_version: String,
    log: PackageLog,
    sink: Box<dyn FnMut(Vec<Published>) + Send>,
    batch_max: usize,
    batch_max_wait: Duration,
    batch_max_bytes: u64,
    min_free_bytes: u64,
    disk_check_interval: Duration,
    /// The last commit failed for lack of space: refuse until free space is back.
    disk_full: bool,
    /// Bytes of the batch whose commit found the disk full.
    failed_batch_bytes: u64,
    last_disk_check: Option<Instant>,
    retention: LogRetention,
    retention_interval: Duration,
    consumers: Arc<LogConsumers>,
    last_retention: Option<Instant>,
    /// Where stored topics' packages go ([`crate::payload`]).
    store: Option<Box<dyn PayloadStore>>,
}

impl Pipeline {
    /// Open the log, recover sequence numbers and start the worker thread.
    pub fn start(
        cfg: PipelineConfig,
        key: MachineKey,
        field_key: FieldKey,
        map: &DataEventMap,
        sink: Box<dyn FnMut(Vec<Published>) + Send>,
    ) -> Result<Pipeline, PipelineError> {
        Pipeline::start_with_store(cfg, key, field_key, map, sink, None)
    }

    /// [`start`](Self::start) with a payload store: the packages of the topics it
    /// [stores](PayloadStore::stores) are written there and the log holds references
    /// ([`crate::payload`]). The store must already agree with the log (recovered against it).
    pub fn start_with_store(
        cfg: PipelineConfig,
        key: MachineKey,
        field_key: FieldKey,
        map: &DataEventMap,
        sink: Box<dyn FnMut(Vec<Published>) + Send>,
        store: Option<Box<dyn PayloadStore>>,
    ) -> Result<Pipeline, PipelineError> {
        if cfg.batch_max == 0 {
            return Err(PipelineError::Config("batch_max must be at least 1".into()));
        }
        if cfg.max_queued_bytes == 0 || cfg.topic_max_queued_bytes == 0 || cfg.batch_max_bytes == 0 {
            return Err(PipelineError::Config("byte bounds must be at least 1".into()));
        }
        let log = PackageLog::open(&cfg.data_dir, LogOptions { segment_max_bytes: cfg.segment_max_bytes })?;
        let topics = map
            .topics
            .iter()
            .map(|t| TopicShared {
                topic: Arc::from(t.topic.as_str()),
                queue: Mutex::new(VecDeque::new()),
                capacity: t.queue_size.max(1),
                max_bytes: t.queue_max_bytes.unwrap_or(cfg.topic_max_queued_bytes),
                queued_bytes: AtomicU64::new(0),
                received: AtomicU64::new(0),
                packaged: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                dropped_for_bytes: AtomicU64::new(0),
                dropped_bytes: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                last_sequence: AtomicU64::new(log.last_sequence(&t.topic).unwrap_or(NO_SEQ)),
                retention_removed_segments: AtomicU64::new(0),
                retention_removed_bytes: AtomicU64::new(0),
                log_bytes: AtomicU64::new(0),
            })
            .collect();
        let shared = Arc::new(Shared {
            topics,
            pending: Mutex::new(0),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
            queued_bytes: AtomicU64::new(0),
            max_queued_bytes: cfg.max_queued_bytes,
            refusing: AtomicBool::new(false),
            refusing_reason: Mutex::new(None),
        });
        let address = key.address().to_owned();
        let did = key.did().to_owned();
        let worker = Worker {
            shared: shared.clone(),
            cipher: FieldCipher::new(&field_key),
            key,
            rules: map.topics.iter().map(|t| t.field_rules()).collect(),
            schema_version: map.package_schema_version.clone(),
            log,
            sink,
            batch_max: cfg.batch_max,
            batch_max_wait: cfg.batch_max_wait,
            batch_max_bytes: cfg.batch_max_bytes,
            min_free_bytes: cfg.min_free_bytes,
            disk_check_interval: cfg.disk_check_interval,
            disk_full: false,
            failed_batch_bytes: 0,
            last_disk_check: None,
            retention: cfg.retention,
            retention_interval: cfg.retention_interval,
            consumers: cfg.consumers.clone(),
            last_retention: None,
            store,
        };
        let handle = std::thread::Builder::new()
            .name("peaqos-packager".into())
            .spawn(move || worker.run())
            .map_err(PipelineError::Thread)?;
        tracing::info!(did = %did, topics = map.topics.len(), "packaging pipeline started");
        Ok(Pipeline { shared, worker: Some(handle), address, did })
    }

    /// Submitter for `topics[topic_index]` of the Data Event Map; `None` if out of range.
    pub fn submitter(&self, topic_index: usize) -> Option<Submitter> {
        (topic_index < self.shared.topics.len()).then(|| Submitter { shared: self.shared.clone(), index: topic_index })
    }

    /// Counters per topic, in Data Event Map order.
    pub fn stats(&self) -> Vec<TopicStats> {
        self.shared
            .topics
            .iter()
            .map(|t| {
                let last = t.last_sequence.load(Ordering::Relaxed);
                TopicStats {
                    topic: t.topic.to_string(),
                    received: t.received.load(Ordering::Relaxed),
                    packaged: t.packaged.load(Ordering::Relaxed),
                    dropped: t.dropped.load(Ordering::Relaxed),
                    dropped_for_bytes: t.dropped_for_bytes.load(Ordering::Relaxed),
                    dropped_bytes: t.dropped_bytes.load(Ordering::Relaxed),
                    queue_depth: lock(&t.queue).len(),
                    queued_bytes: t.queued_bytes.load(Ordering::Relaxed),
                    last_sequence: (last != NO_SEQ).then_some(last),
                    errors: t.errors.load(Ordering::Relaxed),
                    retention_removed_segments: t.retention_removed_segments.load(Ordering::Relaxed),
                    retention_removed_bytes: t.retention_removed_bytes.load(Ordering::Relaxed),
                    log_bytes: t.log_bytes.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Estimated bytes queued or being packaged, all topics, and their bound.
    pub fn queued_bytes(&self) -> (u64, u64) {
        (self.shared.queued_bytes.load(Ordering::Relaxed), self.shared.max_queued_bytes)
    }

    /// Why new messages are refused now (disk full or under the free-space floor); `None` while
    /// accepting.
    pub fn refusing(&self) -> Option<String> {
        lock(&self.shared.refusing_reason).clone()
    }

    /// Signer address (EIP-55).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Signer DID.
    pub fn did(&self) -> &str {
        &self.did
    }

    /// Stop accepting, package and flush everything queued, stop the worker. Blocks until
    /// the sink has returned for the last batch.
    pub fn shutdown(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _p = lock(&self.shared.pending);
            self.shared.wake.notify_all();
        }
        if let Some(h) = self.worker.take() {
            if h.join().is_err() {
                tracing::error!("packaging worker panicked");
            }
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Item {
    topic: usize,
    msg: RawMessage,
    bytes: u64,
}

impl Worker {
    fn run(mut self) {
        let mut batch: Vec<Item> = Vec::with_capacity(self.batch_max);
        let mut rr = 0usize;
        loop {
            // Wait for work or shutdown; look at the disk every `disk_check_interval` meanwhile.
            {
                let mut p = lock(&self.shared.pending);
                while *p <= 0 && !self.shared.shutdown.load(Ordering::SeqCst) {
                    drop(p);
                    self.check_disk();
                    p = lock(&self.shared.pending);
                    if *p > 0 || self.shared.shutdown.load(Ordering::SeqCst) {
                        break;
                    }
                    p = self
                        .shared
                        .wake
                        .wait_timeout(p, self.disk_check_interval)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
                if *p <= 0 {
                    break; // shutdown with nothing queued
                }
            }
            self.check_disk();
            let deadline = Instant::now() + self.batch_max_wait;
            loop {
                self.drain(&mut batch, &mut rr);
                if batch.len() >= self.batch_max || self.batch_max_wait.is_zero() {
                    break;
                }
                let now = Instant::now();
                if now >= deadline || self.shared.shutdown.load(Ordering::SeqCst) {
                    break;
                }
                let p = lock(&self.shared.pending);
                if *p <= 0 {
                    let _ = self.shared.wake.wait_timeout(p, deadline - now);
                }
            }
            if !batch.is_empty() {
                self.process(&mut batch);
            }
        }
        // Shutdown: package whatever is still queued (including messages whose submitter had
        // not yet counted them when the worker last looked).
        loop {
            self.drain(&mut batch, &mut rr);
            if batch.is_empty() {
                break;
            }
            self.process(&mut batch);
        }
        tracing::info!("packaging worker stopped");
    }

    /// Every `disk_check_interval`: refuse new messages while free space is under the floor or
    /// the last commit found the disk full; accept again once free space is above the floor.
    fn check_disk(&mut self) {
        self.apply_retention();
        if self.last_disk_check.is_some_and(|t| t.elapsed() < self.disk_check_interval) {
            return;
        }
        self.last_disk_check = Some(Instant::now());
        if self.min_free_bytes == 0 && !self.disk_full {
            return;
        }
        let free = match peaqos_base::fsio::free_bytes(self.log.root()) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the free space of the package log's file system");
                return;
            }
        };
        // After ENOSPC, wait for at least the floor and room for the batch that failed.
        let floor = if self.disk_full { self.min_free_bytes.max(self.failed_batch_bytes) } else { self.min_free_bytes };
        if free < floor {
            let why = if self.disk_full {
                format!("disk full: the package log's file system has {free} bytes free, waiting for {floor}")
            } else {
                format!("free space {free} bytes is under disk.min_free_bytes ({floor})")
            };
            self.shared.set_refusing(Some(why));
        } else {
            self.disk_full = false;
            self.shared.set_refusing(None);
        }
    }

    /// Every `retention_interval`: delete the package log segments retention allows (see
    /// [`crate::retention`]); before the free-space check, so what it frees counts at once.
    fn apply_retention(&mut self) {
        if self.retention.is_off() || self.last_retention.is_some_and(|t| t.elapsed() < self.retention_interval) {
            return;
        }
        self.last_retention = Some(Instant::now());
        let now = SystemTime::now();
        for t in &self.shared.topics {
            let consumed = self.consumers.consumed(&t.topic);
            match self.log.prune(&t.topic, &self.retention, consumed, now) {
                Ok(r) => {
                    t.retention_removed_segments.fetch_add(r.removed_segments, Ordering::Relaxed);
                    t.retention_removed_bytes.fetch_add(r.removed_bytes, Ordering::Relaxed);
                    t.log_bytes.store(r.kept_bytes, Ordering::Relaxed);
                    if r.held_for_consumers {
                        tracing::debug!(topic = %t.topic, ?consumed, bytes = r.kept_bytes, "package log over its retention bound, kept for a consumer");
                    }
                }
                Err(e) => tracing::warn!(topic = %t.topic, error = %e, "package log retention failed"),
            }
        }
        if self.retention.max_total_bytes > 0 {
            let consumers = &self.consumers;
            match self.log.prune_total(self.retention.max_total_bytes, &|topic| consumers.consumed(topic)) {
                Ok((reports, _)) => {
                    for (topic, r) in reports {
                        if let Some(t) = self.shared.topics.iter().find(|t| *t.topic == *topic) {
                            t.retention_removed_segments.fetch_add(r.removed_segments, Ordering::Relaxed);
                            t.retention_removed_bytes.fetch_add(r.removed_bytes, Ordering::Relaxed);
                            t.log_bytes
                                .fetch_sub(r.removed_bytes.min(t.log_bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "package log retention (total bound) failed"),
            }
        }
    }

    /// Move up to `batch_max - batch.len()` messages (and about `batch_max_bytes`) from the
    /// queues, round robin.
    fn drain(&mut self, batch: &mut Vec<Item>, rr: &mut usize) {
        let n = self.shared.topics.len();
        let mut taken = 0usize;
        let mut progress = true;
        let mut bytes: u64 = batch.iter().map(|i| i.bytes).sum();
        while batch.len() < self.batch_max && bytes < self.batch_max_bytes && progress {
            progress = false;
            for k in 0..n {
                let i = (*rr + k) % n;
                let t = &self.shared.topics[i];
                let mut q = lock(&t.queue);
                let room = self.batch_max - batch.len();
                // Take a fair share per pass so one busy topic cannot starve the others.
                let share = (room / n).max(1).min(room);
                for _ in 0..share {
                    if bytes >= self.batch_max_bytes {
                        break;
                    }
                    match q.pop_front() {
                        Some((msg, b)) => {
                            batch.push(Item { topic: i, msg, bytes: b });
                            bytes += b;
                            taken += 1;
                            progress = true;
                        }
                        None => break,
                    }
                }
                if batch.len() >= self.batch_max || bytes >= self.batch_max_bytes {
                    break;
                }
            }
        }
        *rr = (*rr + 1) % n.max(1);
        if taken > 0 {
            let mut p = lock(&self.shared.pending);
            *p -= taken as isize;
        }
    }

    fn process(&mut self, batch: &mut Vec<Item>) {
        let mut out: Vec<Published> = Vec::with_capacity(batch.len());
        let mut largest = 0;
        // The batch's bytes stay reserved until it is written and published.
        let reserved: Vec<(usize, u64)> = batch.iter().map(|i| (i.topic, i.bytes)).collect();
        for item in batch.drain(..) {
            let t = &self.shared.topics[item.topic];
            let topic = t.topic.clone();
            let seq = self.log.next_sequence(&topic);
            let payload = match field_rules::apply(&item.msg.fields, &self.rules[item.topic], &self.cipher) {
                Ok(p) => p,
                Err(e) => {
                    t.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(topic = %topic, error = %e, "message dropped: field rules failed");
                    continue;
                }
            };
            let ts = item.msg.stamp.unwrap_or_else(|| Timestamp::from_system_time(item.msg.received));
            let signed = match build_signed_package_json(
                self.key.did(),
                &self.key,
                &iso8601_utc(ts),
                &self.schema_version,
                seq,
                payload,
            ) {
                Ok(s) => s,
                Err(e) => {
                    t.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(topic = %topic, error = %e, "message dropped: signing failed");
                    continue;
                }
            };
            let stored = self.store.as_ref().is_some_and(|s| s.stores(&topic));
            let ref_line;
            let log_line = match self.store.as_mut() {
                Some(store) if stored => match store.append(&topic, seq, &signed.json) {
                    Ok(r) => {
                        ref_line = payload::ref_line(seq, &r);
                        &ref_line
                    }
                    Err(e) => {
                        // The store cut the failed write off: the sequence number is reused.
                        t.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(topic = %topic, error = %e, "message dropped: payload store append failed");
                        if e.disk_full {
                            self.note_disk_full(format!("disk full: {e}"), signed.json.len() as u64 + 1);
                        }
                        continue;
                    }
                },
                _ => &signed.json,
            };
            if let Err(e) = self.log.append(&topic, seq, log_line) {
                t.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic = %topic, error = %e, "message dropped: log append failed");
                if stored {
                    // The store holds lines the log does not: drop the topic's part of the batch
                    // from both, so the store and the log stay one sequence.
                    self.log.discard_pending(&topic);
                    if let Some(store) = self.store.as_mut() {
                        store.settle(&topic, false);
                    }
                    let before = out.len();
                    out.retain(|p| p.topic != topic);
                    t.errors.fetch_add((before - out.len()) as u64, Ordering::Relaxed);
                }
                continue;
            }
            largest = largest.max(signed.json.len());
            let commit_now = stored && self.store.as_ref().is_some_and(|s| s.commit_due(&topic));
            out.push(Published { topic, sequence_number: seq, package_json: signed.json });
            if commit_now {
                // The store's chunk is full: commit so it can be sealed before it grows further.
                self.publish(std::mem::take(&mut out));
            }
        }
        self.publish(out);
        // The batch's messages, packages and their conversions are freed by now.
        for (topic, n) in reserved {
            self.shared.release(topic, n);
        }
        crate::memory::release_after_large(largest);
    }

    /// A write found the disk full: refuse new messages until `bytes` (and the floor) are free.
    fn note_disk_full(&mut self, why: String, bytes: u64) {
        self.disk_full = true;
        self.failed_batch_bytes = bytes;
        self.last_disk_check = None;
        self.shared.set_refusing(Some(why));
    }

    fn publish(&mut self, mut out: Vec<Published>) {
        if out.is_empty() {
            return;
        }
        // The stored topics of the batch and their newest sequence: their payloads are made
        // durable before the references (store sync, then the log's commit).
        let mut stored: Vec<(Arc<str>, u64)> = Vec::new();
        if let Some(store) = self.store.as_ref() {
            for p in &out {
                match stored.iter_mut().find(|(t, _)| *t == p.topic) {
                    Some(e) => e.1 = e.1.max(p.sequence_number),
                    None if store.stores(&p.topic) => stored.push((p.topic.clone(), p.sequence_number)),
                    None => {}
                }
            }
        }
        let mut failed = false;
        if let (Some(store), false) = (self.store.as_mut(), stored.is_empty()) {
            if let Err(e) = store.sync() {
                tracing::error!(error = %e, "payload store not durable: the stored topics' part of the batch is not published");
                for (t, _) in &stored {
                    self.log.discard_pending(t);
                }
                failed = true;
                if e.disk_full {
                    let bytes = out.iter().map(|p| p.package_json.len() as u64 + 1).sum();
                    self.note_disk_full(format!("disk full: {e}"), bytes);
                }
            }
        }
        let commit = self.log.commit();
        if let Some(store) = self.store.as_mut() {
            for (t, last) in &stored {
                let committed = self.log.last_sequence(t).is_some_and(|s| s >= *last);
                store.settle(t, committed);
            }
        }
        if let Err(e) = &commit {
            tracing::error!(error = %e, packages = out.len(), "batch not durable, not published");
            if e.is_disk_full() {
                let bytes = out.iter().map(|p| p.package_json.len() as u64 + 1).sum();
                self.note_disk_full(format!("disk full: {e}"), bytes);
            }
            failed = true;
        }
        if failed {
            // The log discarded the failing topics' pending lines; count those as errors
            // and publish what did get committed.
            let mut kept = Vec::with_capacity(out.len());
            for p in out {
                let committed = self.log.last_sequence(&p.topic).is_some_and(|s| s >= p.sequence_number);
                if committed {
                    kept.push(p);
                } else if let Some(t) = self.shared.topics.iter().find(|t| t.topic == p.topic) {
                    t.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            out = kept;
        }
        for p in &out {
            if let Some(t) = self.shared.topics.iter().find(|t| t.topic == p.topic) {
                t.packaged.fetch_add(1, Ordering::Relaxed);
                t.last_sequence.store(p.sequence_number, Ordering::Relaxed);
            }
        }
        if !out.is_empty() {
            // A panicking sink must not take the worker (and every later package) down.
            let sink = &mut self.sink;
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || sink(out))).is_err() {
                tracing::error!("package sink panicked; the batch is on disk but was not fully published");
            }
        }
    }
}
