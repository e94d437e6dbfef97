//! The encrypted chunk stream in the node: the Data Event Map's `stream:` blocks → one
//! [`TopicFeed`] per topic (`peaqos_stream`), fed by a package tap; `~/chunks`,
//! `~/grant_access`, `~/seal_dataset`.
//!
//! Threads:
//! * the **tap** runs on the packaging thread after each durable batch: it copies the batch's
//!   streamed packages into a channel and returns at once. The channel is accounted in bytes
//!   (`stream.queue_max_bytes`); a hand-over that would exceed it is dropped and counted — never
//!   lost, because the feed fills any gap from the package log (below).
//! * the **stream thread** appends each package line to its topic's chunk writer, group-commits
//!   (one `sync` per drained batch), seals chunks by size/count (in `append`) and age (a 100 ms
//!   tick), and publishes each sealed chunk's manifest on `~/chunks`.
//! * the **upload thread** runs the durable upload queue of every destination (retried every
//!   second; a destination that is down delays, never loses) and republishes a manifest once the
//!   first destination stored it. At a clean stop it tries what is still queued — the chunks
//!   sealed at shutdown included — for up to `stream.shutdown_upload_timeout` seconds and logs
//!   what is left for the next start.
//!
//! **Nothing lost, nothing twice** (see `peaqos_stream::feed`): the package log is the source of
//! truth and the chain a gap-free, duplicate-free prefix of it by sequence number. At start the
//! writer's recovery seals what the previous run left open (logged, manifests published), the
//! newest sequence in the chain is read back from its last chunk (decrypted with the machine's
//! own key entry), and every logged package above it is replayed into the chain before the tap's
//! first batch is taken. A package the tap hands over again is skipped; a package missing
//! between two hand-overs is read from the log. So a `kill -9` between the package log's fsync
//! and the chunk append loses nothing, and the replay appends nothing twice.
//!
//! Services read the sealed chain from disk (never the open chunk) and answer with
//! `success, error_code, error_field, message`.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use peaqos_core::keys::MachineKey;
use peaqos_core::pipeline::Published;
use peaqos_core::policy::{DataEventMap, PolicyError};
use peaqos_core::text::{one_line, quoted};
use peaqos_stream::dataset::{verify_dataset, DatasetManifest};
use peaqos_stream::feed::TopicFeed;
use peaqos_stream::grant::{grant_to_files, select_indices, GrantRange, DEFAULT_BUYER_RECIPIENT_ID};
use peaqos_stream::keys::MachineStreamKeys;
use peaqos_stream::storage::{destination, upload_pending_slot, upload_until, Destination};
use peaqos_stream::topic_config::TopicStreamConfig;
use peaqos_stream::writer::SealedChunk;
use peaqos_stream::{store, StreamError};
use rclrs::{IntoPrimitiveOptions, Node, Publisher, Service};
use ros_env::peaqos_node::msg::{ChunkManifest, StreamStatus};
use ros_env::peaqos_node::srv::{
    GrantAccess, GrantAccess_Request, GrantAccess_Response, SealDataset, SealDataset_Request, SealDataset_Response,
};

use crate::chain::ChainServices;
use crate::params::Params;
use crate::StartError;
use peaqos_chain::validation::{Currency, MachineIdInput, SubmitEventParams, ValueInput};
use peaqos_chain::{ChainClient, ChainError};
use peaqos_events::submit::{current_machine_id, machine_id_file};

/// Default byte budget of the tap → stream thread channel.
const DEFAULT_QUEUE_MAX_BYTES: i64 = 64 * 1024 * 1024;
const TICK: Duration = Duration::from_millis(100);
const UPLOAD_RETRY: Duration = Duration::from_secs(1);
/// Default of `stream.shutdown_upload_timeout`, seconds.
const DEFAULT_SHUTDOWN_UPLOAD_TIMEOUT: f64 = 10.0;
/// How long past that timeout a stop waits for an upload already under way before leaving it.
const SHUTDOWN_UPLOAD_GRACE: Duration = Duration::from_secs(2);

/// One streamed topic's upload queues: topic, topic directory, destinations (slot order).
pub(crate) type UploadTopic = (String, PathBuf, Vec<Box<dyn Destination>>);

/// A package tap as `main.rs` registers it.
pub type Tap = Box<dyn FnMut(&[Published]) + Send>;

/// Live counters of one streamed topic (for `~/status`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    /// Local ciphertexts deleted by retention (stored at every destination), and their bytes.
    pub(crate) chunks_pruned: u64,
    pub(crate) chunks_pruned_bytes: u64,
    /// Local ciphertext bytes after the last retention pass.
    pub(crate) local_chunk_bytes: u64,
    chunks_sealed: u64,
    last_chunk_index: Option<u64>,
    last_sequence: Option<u64>,
    open_messages: u64,
    upload_backlog: u64,
    replayed: u64,
    last_error: String,
}

/// One streamed topic.
pub(crate) struct TopicSpec {
    pub(crate) topic: String,
    pub(crate) cfg: TopicStreamConfig,
}

struct Item {
    topic: usize,
    sequence: u64,
    line: String,
}

enum Cmd {
    Batch(Vec<Item>),
    Stop,
}

/// What `~/status` shows of the stream.
pub struct StatusView {
    pub ed25519_public_key_hex: String,
    pub x25519_public_key_hex: String,
    counters: Arc<Mutex<Vec<(String, Counters)>>>,
    dropped: Arc<Vec<AtomicU64>>,
}

impl StatusView {
    pub fn streams(&self) -> Vec<StreamStatus> {
        let c = self.counters.lock().map(|c| c.clone()).unwrap_or_default();
        c.into_iter()
            .zip(self.dropped.iter())
            .map(|((topic, c), d)| StreamStatus {
                topic,
                chunks_sealed: c.chunks_sealed,
                last_chunk_index: c.last_chunk_index.map_or(-1, |i| i as i64),
                last_sequence: c.last_sequence.map_or(-1, |i| i as i64),
                open_messages: c.open_messages,
                upload_backlog: c.upload_backlog,
                replayed: c.replayed,
                handover_dropped: d.load(Ordering::Relaxed),
                chunks_pruned: c.chunks_pruned,
                chunks_pruned_bytes: c.chunks_pruned_bytes,
                local_chunk_bytes: c.local_chunk_bytes,
                last_error: c.last_error,
            })
            .collect()
    }
}

/// The running stream subsystem.
pub struct StreamSubsystem {
    tx: Sender<Cmd>,
    stop: Arc<AtomicBool>,
    stream_thread: Option<JoinHandle<()>>,
    upload_thread: Option<JoinHandle<()>>,
    /// The upload thread says here that its last uploads at stop are done.
    upload_done: Receiver<()>,
    shutdown_upload_timeout: Duration,
    _services: StreamServices,
    tap: Option<Tap>,
}

fn policy_err(file: &Path, path: String, reason: impl Into<String>) -> StartError {
    StartError::Policy(PolicyError { file: file.to_owned(), path, reason: reason.into() })
}

fn stream_err(what: &str, e: impl std::fmt::Display) -> StartError {
    StartError::Parameter { name: "data_dir".into(), reason: format!("stream: {what}: {e}") }
}

/// The `stream:` blocks of the policy, checked: `<file>: topics[i].stream.<key>: <reason>`.
pub(crate) fn topic_specs(map: &DataEventMap, policy_file: &Path) -> Result<Vec<TopicSpec>, StartError> {
    let mut out = Vec::new();
    for (i, t) in map.topics.iter().enumerate() {
        let Some(block) = &t.stream else { continue };
        let json = serde_json::to_value(block)
            .map_err(|e| policy_err(policy_file, format!("topics[{i}].stream"), format!("not a plain mapping: {e}")))?;
        let key_err = |e: peaqos_stream::topic_config::ConfigError| {
            let path =
                if e.key.is_empty() { format!("topics[{i}].stream") } else { format!("topics[{i}].stream.{}", e.key) };
            policy_err(policy_file, path, e.reason)
        };
        let mut cfg = TopicStreamConfig::from_value(&json).map_err(key_err)?;
        cfg.resolve_env_secrets(&|name| std::env::var(name).ok()).map_err(key_err)?;
        out.push(TopicSpec { topic: t.topic.clone(), cfg });
    }
    Ok(out)
}

fn declare_queue_max_bytes(params: &Params) -> Result<usize, StartError> {
    let v = params.declared.read_only::<i64>(
        "stream.queue_max_bytes",
        DEFAULT_QUEUE_MAX_BYTES,
        "Most package bytes waiting between the packaging thread and the chunk stream; beyond it hand-overs are dropped and later read back from the package log.",
    )?;
    usize::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| StartError::Parameter {
        name: "stream.queue_max_bytes".into(),
        reason: format!("must be > 0, got {v}"),
    })
}

fn declare_shutdown_upload_timeout(params: &Params) -> Result<Duration, StartError> {
    let name = "stream.shutdown_upload_timeout";
    let v = params.declared.read_only::<f64>(
        name,
        DEFAULT_SHUTDOWN_UPLOAD_TIMEOUT,
        "Seconds a clean stop spends uploading the chunks still queued (those sealed at shutdown included); what is left is logged and uploaded at the next start. 0 = none.",
    )?;
    Duration::try_from_secs_f64(v).map_err(|_| StartError::Parameter {
        name: name.into(),
        reason: format!("must be a number of seconds >= 0, got {v}"),
    })
}

fn manifest_msg(s: &SealedChunk, event: &str) -> ChunkManifest {
    ChunkManifest {
        topic: s.topic.clone(),
        index: s.chunk.index,
        chunk_id: s.chunk.chunk_id.clone(),
        manifest_json: s.manifest_json().unwrap_or_default(),
        storage_ref: s.chunk.storage_ref.clone().unwrap_or_default(),
        event: event.into(),
    }
}

/// Start the stream subsystem when at least one topic has a `stream:` block. Must run before
/// the package pipeline starts (the tap sees every batch). `None`: no topic is streamed.
/// `chain`: the chain client, for `~/seal_dataset`'s `anchor`; `machine_id`: `chain.machine_id`.
pub fn start(
    node: &Node,
    params: &Params,
    map: &DataEventMap,
    chain: Option<&ChainServices>,
    machine_id: &str,
    retention: &crate::retention::Retention,
) -> Result<Option<StreamSubsystem>, StartError> {
    let policy_file = if params.policy_file.is_empty() {
        PathBuf::from("<embedded default policy>")
    } else {
        PathBuf::from(&params.policy_file)
    };
    let specs = topic_specs(map, &policy_file)?;
    let queue_max_bytes = declare_queue_max_bytes(params)?;
    let shutdown_upload_timeout = declare_shutdown_upload_timeout(params)?;
    if specs.is_empty() {
        return Ok(None);
    }
    let machine_key = Arc::new(params.machine_key()?);
    let keys = Arc::new(
        MachineStreamKeys::from_secp256k1_secret(&machine_key.secret_bytes())
            .map_err(|e| stream_err("machine stream keys", e))?,
    );
    let did = machine_key.did().to_owned();
    let key_id = format!("{did}#stream-ed25519");
    let stream_dir = peaqos_base::layout::stream_dir(&params.data_dir);
    std::fs::create_dir_all(&stream_dir).map_err(|e| stream_err(&stream_dir.display().to_string(), e))?;
    tracing::info!(
        "stream: {} topic(s) into {}; machine Ed25519 {} X25519 {}",
        specs.len(),
        stream_dir.display(),
        hex::encode(keys.ed25519_public),
        hex::encode(keys.x25519_public)
    );

    let chunks_pub: Publisher<ChunkManifest> =
        node.create_publisher::<ChunkManifest>("~/chunks".reliable().transient_local().keep_last(1000))?;
    let counters =
        Arc::new(Mutex::new(specs.iter().map(|s| (s.topic.clone(), Counters::default())).collect::<Vec<_>>()));
    // Hand-overs the tap dropped, per topic (atomics: the tap never waits for a lock).
    let dropped: Arc<Vec<AtomicU64>> = Arc::new(specs.iter().map(|_| AtomicU64::new(0)).collect());

    // Open every topic now: recovery, resume point, replay from the package log. Errors stop
    // the node at start, naming the topic.
    let mut feeds = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let recipients = s.cfg.recipients().map_err(|(k, r)| policy_err(&policy_file, format!("stream.{k}"), r))?;
        crate::retention::register_stream(&retention.consumers, &s.topic);
        let (feed, opened) = TopicFeed::open(
            &stream_dir,
            &params.data_dir,
            &s.topic,
            s.cfg.chunk,
            &keys,
            &did,
            &key_id,
            &recipients,
            s.cfg.backfill,
        )
        .map_err(|e| stream_err(&format!("topic {}", s.topic), e))?;
        if !opened.recovery.is_clean() {
            tracing::warn!("stream {}: recovery at start: {:?}", s.topic, opened.recovery.actions);
        }
        for (n, sc) in opened.sealed.iter().enumerate() {
            let event = if n == 0 && opened.recovery.sealed.is_some() { "recovered" } else { "sealed" };
            let _ = chunks_pub.publish(manifest_msg(sc, event));
        }
        if let Ok(mut c) = counters.lock() {
            let c = &mut c[i].1;
            c.chunks_sealed += opened.sealed.len() as u64;
            c.replayed += opened.replayed;
            c.last_chunk_index = feed.writer().next_index().checked_sub(1);
            c.last_sequence = feed.last_sequence();
        }
        tracing::info!(
            "stream {}: chain at chunk {}, last sequence {:?}, {} replayed from the package log",
            s.topic,
            feed.writer().next_index(),
            feed.last_sequence(),
            opened.replayed
        );
        crate::retention::report_stream(&retention.consumers, &feed);
        feeds.push(feed);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Cmd>();
    let (upload_tx, upload_rx) = mpsc::channel::<()>();
    let queued = Arc::new(AtomicUsize::new(0));

    // Upload thread.
    let uploads: Vec<UploadTopic> = specs
        .iter()
        .map(|s| {
            let dir = store::topic_dir(&stream_dir, &s.topic).map_err(|e| stream_err(&s.topic, e))?;
            Ok((s.topic.clone(), dir, s.cfg.destinations.iter().map(destination).collect()))
        })
        .collect::<Result<_, StartError>>()?;
    let (upload_done_tx, upload_done) = mpsc::channel::<()>();
    let upload_thread = {
        let (stop, counters, pubr) = (Arc::clone(&stop), Arc::clone(&counters), chunks_pub.clone());
        let mut pruner = crate::retention::ChunkPruner::new(retention, &stream_dir, Arc::clone(&counters));
        std::thread::Builder::new()
            .name("peaqos-upload".into())
            .spawn(move || {
                upload_loop(&uploads, upload_rx, &stop, counters, &pubr, &mut pruner);
                upload_at_stop(&uploads, &pubr, shutdown_upload_timeout);
                let _ = upload_done_tx.send(());
            })
            .map_err(|e| stream_err("upload thread", e))?
    };

    // Stream thread.
    let stream_thread = {
        let (counters, queued, dropped) = (Arc::clone(&counters), Arc::clone(&queued), Arc::clone(&dropped));
        let consumers = Arc::clone(&retention.consumers);
        std::thread::Builder::new()
            .name("peaqos-stream".into())
            .spawn(move || stream_loop(feeds, rx, queued, counters, dropped, chunks_pub, upload_tx, consumers))
            .map_err(|e| stream_err("stream thread", e))?
    };

    // The tap: copy the streamed packages of a batch into the channel, never block.
    let index: HashMap<String, usize> = specs.iter().enumerate().map(|(i, s)| (s.topic.clone(), i)).collect();
    let (tap_tx, tap_dropped) = (tx.clone(), Arc::clone(&dropped));
    let tap: Tap = Box::new(move |batch: &[Published]| {
        let mut items = Vec::new();
        for p in batch {
            let Some(&t) = index.get(&*p.topic) else { continue };
            let n = p.package_json.len();
            if queued.load(Ordering::Relaxed) + n > queue_max_bytes {
                // Never lost: the stream thread reads it back from the package log.
                tap_dropped[t].fetch_add(1, Ordering::Relaxed);
                continue;
            }
            queued.fetch_add(n, Ordering::Relaxed);
            items.push(Item { topic: t, sequence: p.sequence_number, line: p.package_json.clone() });
        }
        if !items.is_empty() {
            let _ = tap_tx.send(Cmd::Batch(items));
        }
    });

    let anchor = chain.map(|c| Anchor {
        client: c.client().clone(),
        runtime: c.runtime(),
        machine_id: (!machine_id.is_empty()).then(|| machine_id.to_owned()),
        machine_id_file: machine_id_file(&params.data_dir),
    });
    let services = serve(node, &stream_dir, &specs, Arc::clone(&keys), machine_key, anchor, &params.services)?;
    status_view_set(StatusView {
        ed25519_public_key_hex: hex::encode(keys.ed25519_public),
        x25519_public_key_hex: hex::encode(keys.x25519_public),
        counters,
        dropped,
    });
    Ok(Some(StreamSubsystem {
        tx,
        stop,
        stream_thread: Some(stream_thread),
        upload_thread: Some(upload_thread),
        upload_done,
        shutdown_upload_timeout,
        _services: services,
        tap: Some(tap),
    }))
}

static STATUS: std::sync::OnceLock<StatusView> = std::sync::OnceLock::new();

fn status_view_set(v: StatusView) {
    let _ = STATUS.set(v);
}

/// The stream's part of `~/status` (None when no topic is streamed).
pub fn status_view() -> Option<&'static StatusView> {
    STATUS.get()
}

impl StreamSubsystem {
    /// The package tap (taken once, for `main.rs`'s tap list).
    pub fn take_tap(&mut self) -> Option<Tap> {
        self.tap.take()
    }

    /// After the pipeline has shut down (its last batches went through the tap): append what
    /// the tap handed over, seal the open chunks, let the upload thread try what is queued for
    /// `stream.shutdown_upload_timeout`, and stop it. Never waits much longer than that: an
    /// upload still under way after the grace is left to the next start (its queue is durable).
    pub fn shutdown(mut self) {
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.stream_thread.take() {
            let _ = t.join();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.upload_thread.take() {
            match self.upload_done.recv_timeout(self.shutdown_upload_timeout + SHUTDOWN_UPLOAD_GRACE) {
                Err(RecvTimeoutError::Timeout) => tracing::warn!(
                    "stream: an upload was still under way {:.1} s after the stop; it is left queued for the next start",
                    (self.shutdown_upload_timeout + SHUTDOWN_UPLOAD_GRACE).as_secs_f64()
                ),
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                    let _ = t.join();
                }
            }
        }
    }
}

fn set_error(counters: &Mutex<Vec<(String, Counters)>>, t: usize, e: &dyn std::fmt::Display) {
    if let Ok(mut c) = counters.lock() {
        c[t].1.last_error = e.to_string();
    }
}

#[allow(clippy::too_many_arguments)]
fn stream_loop(
    mut feeds: Vec<TopicFeed>,
    rx: Receiver<Cmd>,
    queued: Arc<AtomicUsize>,
    counters: Arc<Mutex<Vec<(String, Counters)>>>,
    dropped: Arc<Vec<AtomicU64>>,
    publisher: Publisher<ChunkManifest>,
    upload_tx: Sender<()>,
    consumers: Arc<peaqos_core::retention::LogConsumers>,
) {
    let mut stopping = false;
    let mut last_catch_up = Instant::now();
    let mut caught_up_to = vec![0u64; feeds.len()];
    let _ = upload_tx.send(());
    while !stopping {
        let mut cmds = Vec::new();
        match rx.recv_timeout(TICK) {
            Ok(c) => cmds.push(c),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => stopping = true,
        }
        // Drain what is already queued (bounded by the tap's byte budget) for one group commit.
        while let Ok(c) = rx.try_recv() {
            cmds.push(c);
        }
        let mut sealed: Vec<(usize, SealedChunk)> = Vec::new();
        let mut dirty = vec![false; feeds.len()];
        for cmd in cmds {
            let items = match cmd {
                Cmd::Batch(items) => items,
                Cmd::Stop => {
                    stopping = true;
                    continue;
                }
            };
            for it in items {
                queued.fetch_sub(it.line.len(), Ordering::Relaxed);
                match feeds[it.topic].push(it.sequence, it.line.as_bytes()) {
                    Ok(s) => sealed.extend(s.into_iter().map(|s| (it.topic, s))),
                    Err(e) => {
                        tracing::error!(
                            "stream {}: appending package {} failed: {e}",
                            feeds[it.topic].writer().topic(),
                            it.sequence
                        );
                        set_error(&counters, it.topic, &e);
                    }
                }
                dirty[it.topic] = true;
            }
        }
        // Dropped hand-overs with nothing newer arriving: read them back from the log.
        let behind: Vec<usize> =
            (0..feeds.len()).filter(|&t| dropped[t].load(Ordering::Relaxed) > caught_up_to[t]).collect();
        if !behind.is_empty()
            && last_catch_up.elapsed() >= Duration::from_secs(1)
            && queued.load(Ordering::Relaxed) == 0
        {
            last_catch_up = Instant::now();
            for t in behind {
                // Drops counted before this read are in the log by now (the tap runs after the
                // log's commit), so one catch-up covers them.
                caught_up_to[t] = dropped[t].load(Ordering::Relaxed);
                let f = &mut feeds[t];
                match f.catch_up() {
                    Ok(s) => sealed.extend(s.into_iter().map(|s| (t, s))),
                    Err(e) => set_error(&counters, t, &e),
                }
                dirty[t] = true;
            }
        }
        let now = SystemTime::now();
        for (t, f) in feeds.iter_mut().enumerate() {
            if dirty[t] {
                if let Err(e) = f.sync() {
                    tracing::error!("stream {}: group commit failed: {e}", f.writer().topic());
                    set_error(&counters, t, &e);
                }
            }
            let due = if stopping { f.close_now() } else { f.poll(now) };
            match due {
                Ok(Some(s)) => sealed.push((t, s)),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!("stream {}: sealing failed: {e}", f.writer().topic());
                    set_error(&counters, t, &e);
                }
            }
        }
        if let Ok(mut c) = counters.lock() {
            for (t, f) in feeds.iter().enumerate() {
                let c = &mut c[t].1;
                c.last_chunk_index = f.writer().next_index().checked_sub(1);
                c.last_sequence = f.last_sequence();
                c.open_messages = f.writer().open_messages();
                c.replayed = c.replayed.max(f.gap_filled);
            }
            for (t, _) in &sealed {
                c[*t].1.chunks_sealed += 1;
            }
        }
        for f in &feeds {
            crate::retention::report_stream(&consumers, f);
        }
        if !sealed.is_empty() {
            for (_, s) in &sealed {
                if let Err(e) = publisher.publish(manifest_msg(s, "sealed")) {
                    tracing::warn!("publishing chunk manifest failed: {e}");
                }
            }
            let _ = upload_tx.send(());
        }
    }
    tracing::info!("stream: open chunks sealed, chunk stream stopped");
}

fn upload_loop(
    topics: &[UploadTopic],
    wake: Receiver<()>,
    stop: &AtomicBool,
    counters: Arc<Mutex<Vec<(String, Counters)>>>,
    publisher: &Publisher<ChunkManifest>,
    pruner: &mut crate::retention::ChunkPruner,
) {
    // Per destination: consecutive failures and when to try again (backoff 2, 4, … 30 s).
    let mut retry: Vec<Vec<(u32, Instant)>> =
        topics.iter().map(|(_, _, d)| vec![(0, Instant::now()); d.len()]).collect();
    while !stop.load(Ordering::Relaxed) {
        let mut busy = false;
        for (t, (topic, dir, dests)) in topics.iter().enumerate() {
            let mut backlog = 0;
            let mut error = String::new();
            for (slot, d) in dests.iter().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if !dir.exists() || Instant::now() < retry[t][slot].1 {
                    continue;
                }
                let r = upload_pending_slot(dir, d.as_ref(), 8, slot);
                let failed = !matches!(&r, Ok(r) if r.failed.is_none());
                let (fails, next) = &mut retry[t][slot];
                if failed {
                    *fails = fails.saturating_add(1);
                    *next = Instant::now() + Duration::from_secs(2u64.saturating_pow(*fails).min(30));
                } else {
                    *fails = 0;
                }
                match r {
                    Ok(r) => {
                        if slot == 0 {
                            publish_stored(publisher, topic, dir, &r.stored);
                        }
                        if let Some((i, e)) = &r.failed {
                            error = format!("{}: chunk {i}: {e}", d.name());
                        }
                        backlog = backlog.max(r.pending);
                        busy |= r.failed.is_none() && r.pending > 0;
                    }
                    Err(e) => error = format!("{}: {e}", d.name()),
                }
            }
            if let Ok(mut c) = counters.lock() {
                // A destination skipped while backing off keeps its last backlog figure.
                c[t].1.upload_backlog =
                    if retry[t].iter().any(|(f, _)| *f > 0) { c[t].1.upload_backlog.max(backlog) } else { backlog };
                if !error.is_empty() {
                    c[t].1.last_error = error;
                } else if c[t].1.last_error.contains(": chunk ") {
                    c[t].1.last_error.clear();
                }
            }
        }
        pruner.run(topics);
        // Sleep until something is sealed or the retry interval passed (not while a healthy
        // destination still has a backlog).
        if !busy {
            let _ = wake.recv_timeout(UPLOAD_RETRY);
        }
        while wake.try_recv().is_ok() {}
    }
}

/// Republish the manifests of chunks the primary destination just stored (`event: stored`).
fn publish_stored(publisher: &Publisher<ChunkManifest>, topic: &str, dir: &Path, stored: &[(u64, String)]) {
    for (i, _) in stored {
        if let Ok(c) = store::load_chunk(dir, *i) {
            let msg = ChunkManifest {
                topic: topic.to_owned(),
                index: c.index,
                chunk_id: c.chunk_id.clone(),
                manifest_json: c.to_wire_json().ok().and_then(|v| serde_json::to_string(&v).ok()).unwrap_or_default(),
                storage_ref: c.storage_ref.clone().unwrap_or_default(),
                event: "stored".into(),
            };
            let _ = publisher.publish(msg);
        }
    }
}

/// At a clean stop: try every destination's queue (backoff ignored, one failure ends a
/// destination's turn) until `timeout` has passed, then log what is uploaded and what is left
/// for the next start.
fn upload_at_stop(topics: &[UploadTopic], publisher: &Publisher<ChunkManifest>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut stored = 0;
    let mut left = Vec::new();
    for (topic, dir, dests) in topics {
        if !dir.exists() {
            continue;
        }
        for (slot, d) in dests.iter().enumerate() {
            match upload_until(dir, d.as_ref(), slot, deadline) {
                Ok(r) => {
                    stored += r.stored.len();
                    if slot == 0 {
                        publish_stored(publisher, topic, dir, &r.stored);
                    }
                    if r.pending > 0 {
                        let why = match &r.failed {
                            Some((i, e)) => format!("chunk {i}: {e}"),
                            None => format!("out of time after {:.1} s", timeout.as_secs_f64()),
                        };
                        left.push(format!("{topic} to {}: {} chunk(s) ({why})", d.name(), r.pending));
                    }
                }
                Err(e) => left.push(format!("{topic} to {}: {e}", d.name())),
            }
        }
    }
    if left.is_empty() {
        tracing::info!("stream: every sealed chunk is uploaded ({stored} at shutdown)");
    } else {
        tracing::warn!("stream: {stored} chunk(s) uploaded at shutdown; left for the next start: {}", left.join("; "));
    }
}

// ---- services ---------------------------------------------------------------------------

struct SvcError {
    code: String,
    field: String,
    message: String,
}

fn svc_err(code: &'static str, field: &str, message: impl Into<String>) -> SvcError {
    SvcError { code: code.into(), field: field.into(), message: message.into() }
}

impl From<StreamError> for SvcError {
    fn from(e: StreamError) -> Self {
        let (code, field) = match &e {
            StreamError::Invalid { field, .. } => ("INVALID_ARGUMENT", field.clone()),
            StreamError::NotFound(_) => ("NOT_FOUND", String::new()),
            StreamError::Check { .. } | StreamError::Chain { .. } => ("CHAIN_INVALID", String::new()),
            StreamError::Io { .. } => ("IO_ERROR", String::new()),
            StreamError::Json { .. } => ("INVALID_JSON", String::new()),
            StreamError::Storage { .. } => ("STORAGE_ERROR", String::new()),
        };
        SvcError { code: code.into(), field, message: e.to_string() }
    }
}

/// A range that reaches past the sealed chunks names its end (`last_index`, or `to_ms` for a
/// time range); other errors keep their own field.
fn range_error(e: StreamError, time: bool) -> SvcError {
    match e {
        StreamError::NotFound(_) => svc_err("NOT_FOUND", if time { "to_ms" } else { "last_index" }, e.to_string()),
        other => other.into(),
    }
}

struct Ctx {
    stream_dir: PathBuf,
    topics: Vec<String>,
    keys: Arc<MachineStreamKeys>,
    key: Arc<MachineKey>,
    anchor: Option<Anchor>,
}

/// Anchors sealed datasets on chain through the chain client's durable outbox.
struct Anchor {
    client: ChainClient,
    runtime: tokio::runtime::Handle,
    /// `chain.machine_id`; `None` = the id `~/activate` persisted in `machine_id_file`.
    machine_id: Option<String>,
    machine_id_file: PathBuf,
}

impl Anchor {
    /// Queue an activity event (value 0) whose `raw_data` is the manifest file's bytes, so its
    /// on-chain `dataHash` is keccak256 of that file and commits to every chunk id and the
    /// Merkle root. Its timestamp is the seal time, capped at the latest block's (the registry
    /// reverts `FutureTimestamp` above it). Returns (intent id, data hash).
    fn submit(&self, m: &DatasetManifest, file: &[u8], sealed_ms: u64) -> Result<(String, String), SvcError> {
        let Some(mid) = current_machine_id(self.machine_id.as_deref(), &self.machine_id_file) else {
            return Err(svc_err(
                "MACHINE_ID_UNKNOWN",
                "anchor",
                "no machine id to anchor for: set chain.machine_id or activate the machine (~/activate) first",
            ));
        };
        let machine_id = MachineIdInput::from_decimal("machine_id", &mid).map_err(chain_err)?;
        let block_ts = self
            .runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), self.client.latest_block_time()).await })
            .unwrap_or_else(|_| Err("chain did not answer within 10 s".into()))
            .map_err(|e| svc_err("RPC_UNAVAILABLE", "anchor", format!("dataset sealed but not anchored: {e}")))?;
        let metadata = serde_json::json!({
            "kind": "peaqos.stream.dataset.v1",
            "topic": m.topic,
            "first_index": m.first_index,
            "last_index": m.last_index,
            "merkle_root": m.merkle_root,
        })
        .to_string();
        let p = SubmitEventParams {
            machine_id,
            event_type: 1,
            value: ValueInput::from_u128(0),
            timestamp: ((sealed_ms / 1000) as i64).min(block_ts),
            raw_data: Some(file.to_vec()),
            trust_level: 0,
            source_chain_id: 0,
            source_tx_hash: None,
            metadata: if metadata.len() <= peaqos_chain::validation::MAX_METADATA_SIZE {
                metadata.into_bytes()
            } else {
                Vec::new()
            },
            currency: Currency::Omitted,
        };
        let (intent, hash) = self.client.enqueue_event(&p).map_err(chain_err)?;
        Ok((intent, format!("{hash:#x}")))
    }
}

fn chain_err(e: ChainError) -> SvcError {
    let field = if e.field().is_empty() { "anchor".to_owned() } else { e.field().to_owned() };
    SvcError { code: e.code().to_owned(), field, message: e.to_string() }
}

impl Ctx {
    fn topic(&self, t: &str) -> Result<(), SvcError> {
        if self.topics.iter().any(|x| x == t) {
            Ok(())
        } else {
            Err(svc_err(
                "UNKNOWN_TOPIC",
                "topic",
                format!("topic {} is not streamed (no stream: block in the Data Event Map)", quoted(t)),
            ))
        }
    }

    fn range(&self, first: u64, last: u64, from_ms: u64, to_ms: u64) -> Result<GrantRange, SvcError> {
        if to_ms > 0 {
            if to_ms < from_ms {
                return Err(svc_err("INVALID_ARGUMENT", "to_ms", format!("to_ms {to_ms} is before from_ms {from_ms}")));
            }
            Ok(GrantRange::TimeMs { from: from_ms, to: to_ms })
        } else {
            if last < first {
                return Err(svc_err(
                    "INVALID_ARGUMENT",
                    "last_index",
                    format!("last_index {last} is before first_index {first}"),
                ));
            }
            Ok(GrantRange::Indices { first, last })
        }
    }

    fn grant(&self, r: &GrantAccess_Request) -> Result<GrantAccess_Response, SvcError> {
        self.topic(&r.topic)?;
        let pk = peaqos_stream::crypto::parse_x25519_public(&r.buyer_public_key_hex, "buyer_public_key_hex")
            .map_err(|e| svc_err("INVALID_ARGUMENT", "buyer_public_key_hex", e.to_string()))?;
        let buyer_id = if r.buyer_id.is_empty() { DEFAULT_BUYER_RECIPIENT_ID } else { r.buyer_id.as_str() };
        let dir = store::topic_dir(&self.stream_dir, &r.topic)?;
        let (range, dataset) = if r.dataset.is_empty() {
            (self.range(r.first_index, r.last_index, r.from_ms, r.to_ms)?, None)
        } else {
            let name = r.dataset.trim_end_matches(".json");
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                return Err(svc_err("INVALID_ARGUMENT", "dataset", "expected <first>-<last>"));
            }
            let p = dir.join("datasets").join(format!("{name}.json"));
            if !p.exists() {
                return Err(svc_err("NOT_FOUND", "dataset", format!("no sealed dataset {name} of {}", r.topic)));
            }
            let m: DatasetManifest = store::load_json(&p)?;
            verify_dataset(&m)?;
            (GrantRange::Indices { first: m.first_index, last: m.last_index }, Some(m))
        };
        let indices = select_indices(&dir, &range).map_err(|e| range_error(e, r.to_ms > 0))?;
        if indices.is_empty() {
            return Err(svc_err(
                "NOT_FOUND",
                if r.to_ms > 0 { "from_ms" } else { "first_index" },
                "no sealed chunk in the range",
            ));
        }
        if let Some(m) = &dataset {
            for (i, id) in indices.iter().zip(&m.chunk_ids) {
                if store::load_chunk(&dir, *i)?.chunk_id != *id {
                    return Err(svc_err(
                        "CHAIN_INVALID",
                        "dataset",
                        format!("chunk {i} differs from the dataset's chunk id"),
                    ));
                }
            }
        }
        let stamp = store::unix_ms(SystemTime::now());
        let out_dir = self.stream_dir.join("grants").join(hex::encode(pk)).join(stamp.to_string());
        let (paths, files) =
            grant_to_files(&self.stream_dir, &r.topic, &range, &self.keys, &pk, buyer_id, &out_dir, None)?;
        let json: Vec<serde_json::Value> = files.iter().map(|f| f.to_snake_json()).collect::<Result<_, _>>()?;
        Ok(GrantAccess_Response {
            success: true,
            message: format!("{} chunk(s) of {} granted in {} file(s)", indices.len(), r.topic, files.len()),
            access_files_json: serde_json::to_string(&json).unwrap_or_default(),
            files: paths.iter().map(|p| p.display().to_string()).collect(),
            chunk_indices: indices,
            ..Default::default()
        })
    }

    fn seal(&self, r: &SealDataset_Request) -> Result<SealDataset_Response, SvcError> {
        self.topic(&r.topic)?;
        let range = self.range(r.first_index, r.last_index, r.from_ms, r.to_ms)?;
        let dir = store::topic_dir(&self.stream_dir, &r.topic)?;
        let indices = select_indices(&dir, &range).map_err(|e| range_error(e, r.to_ms > 0))?;
        let (Some(&first), Some(&last)) = (indices.first(), indices.last()) else {
            return Err(svc_err(
                "NOT_FOUND",
                if r.to_ms > 0 { "from_ms" } else { "first_index" },
                "no sealed chunk in the range",
            ));
        };
        let key = Arc::clone(&self.key);
        let signer = move |m: &[u8]| -> peaqos_stream::Result<[u8; 65]> { Ok(key.sign_eip191(m)) };
        if r.anchor && self.anchor.is_none() {
            return Err(svc_err("CHAIN_DISABLED", "anchor", "anchoring needs the chain client (chain.enabled)"));
        }
        let sealed_ms = store::unix_ms(SystemTime::now());
        let m = peaqos_stream::dataset::build_dataset(
            &self.stream_dir,
            &r.topic,
            first,
            last,
            self.key.did(),
            sealed_ms,
            &signer,
        )?;
        let p = peaqos_stream::dataset::write_dataset(&self.stream_dir, &m)?;
        let mut resp = SealDataset_Response {
            success: true,
            message: format!("dataset of chunks {first}..={last} of {} sealed", r.topic),
            manifest_json: serde_json::to_string(&m).unwrap_or_default(),
            path: p.display().to_string(),
            merkle_root: m.merkle_root.clone(),
            ..Default::default()
        };
        if let (true, Some(a)) = (r.anchor, &self.anchor) {
            let file = std::fs::read(&p).map_err(|e| svc_err("IO_ERROR", "anchor", format!("{}: {e}", p.display())))?;
            match a.submit(&m, &file, sealed_ms) {
                Ok((intent, hash)) => {
                    resp.message.push_str(&format!("; anchor queued as intent {intent}"));
                    resp.anchor_intent_id = intent;
                    resp.anchor_data_hash = hash;
                }
                // The dataset stands (answer carries it); only the anchor failed.
                Err(e) => {
                    tracing::warn!(
                        "~/seal_dataset {}: anchor: {} {}: {}",
                        quoted(&r.topic),
                        e.code,
                        e.field,
                        one_line(&e.message, 300)
                    );
                    resp.success = false;
                    resp.error_code = e.code;
                    resp.error_field = e.field;
                    resp.message = format!("{}; not anchored: {}", resp.message, e.message);
                }
            }
        }
        Ok(resp)
    }
}

/// Run `f` on its own thread; the returned future resolves with its answer (or the default
/// response, marked failed by `success: false`, if the thread could not run).
fn off_executor<R, F>(ctx: Arc<Ctx>, f: F) -> impl std::future::Future<Output = R> + Send + 'static
where
    R: Default + Send + 'static,
    F: FnOnce(&Ctx) -> R + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("peaqos-stream-svc".into()).spawn(move || {
        let _ = tx.send(f(&ctx));
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start a stream service thread: {e}");
    }
    async move { rx.await.unwrap_or_default() }
}

/// `~/grant_access` and `~/seal_dataset`, each absent when switched off (`services.disabled`).
type StreamServices = (Option<Service<GrantAccess>>, Option<Service<SealDataset>>);

fn serve(
    node: &Node,
    stream_dir: &Path,
    specs: &[TopicSpec],
    keys: Arc<MachineStreamKeys>,
    key: Arc<MachineKey>,
    anchor: Option<Anchor>,
    enabled: &crate::access::Services,
) -> Result<StreamServices, StartError> {
    let ctx = Arc::new(Ctx {
        stream_dir: stream_dir.to_owned(),
        topics: specs.iter().map(|s| s.topic.clone()).collect(),
        keys,
        key,
        anchor,
    });
    // Grants and datasets read, unwrap and re-wrap whole ranges of chunks: run them on a thread
    // of their own so a large range never stalls the executor (and with it the subscriptions).
    // One service over `Ctx::$method`; a refusal is logged (topic quoted, message cut) and
    // answered with its code and the request field it names.
    macro_rules! service {
        ($name:literal, $srv:ident, $req:ident, $resp:ident, $method:ident) => {{
            let c = Arc::clone(&ctx);
            enabled
                .enabled($name)
                .then(|| {
                    node.create_async_service::<$srv, _>(
                        $name.reliable().keep_last(crate::chain::SERVICE_QUEUE_DEPTH),
                        move |r: $req| {
                            crate::ros_log::request($name);
                            off_executor(Arc::clone(&c), move |c| {
                                c.$method(&r).unwrap_or_else(|e| {
                                    tracing::warn!(
                                        "{} {}: {} {}: {}",
                                        $name,
                                        quoted(&r.topic),
                                        e.code,
                                        e.field,
                                        one_line(&e.message, 300)
                                    );
                                    $resp {
                                        success: false,
                                        error_code: e.code,
                                        error_field: e.field,
                                        message: e.message,
                                        ..Default::default()
                                    }
                                })
                            })
                        },
                    )
                })
                .transpose()?
        }};
    }
    let grant = service!("~/grant_access", GrantAccess, GrantAccess_Request, GrantAccess_Response, grant);
    let seal = service!("~/seal_dataset", SealDataset, SealDataset_Request, SealDataset_Response, seal);
    Ok((grant, seal))
}
