//! The encrypted chunk stream in the node: the Data Event Map's `stream:` blocks → one
//! [`TopicFeed`] per topic (`peaqos_stream`), fed by a package tap; `~/chunks`,
//! `~/grant_access`, `~/seal_dataset`.
//!
//! **Written once** (`stream.write_once`, the default; `peaqos_stream::payload_store`): the
//! packaging thread writes each streamed package straight into its topic's open chunk as
//! ciphertext, in its group commit (the chunk synced before the package log), and the package log
//! holds a small reference to it; chunks full by size or count are sealed there too (their
//! manifests handed to the stream thread). The event rules read those packages back through the
//! chain ([`StreamSubsystem::resolver`]). The tap below is then not registered; the stream thread
//! seals by age, publishes manifests and reports each feed's position (its newest acknowledged
//! package: the open chunk is durable itself). At start the open chunk is reopened and cut to
//! what the package log acknowledged. With `stream.write_once: false`, the tap path below.
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
//! writer's recovery seals an older run's `open.jsonl` (logged, manifests published; the open
//! chunk now lives in memory and is replayed from the log after a crash), the
//! newest sequence in the chain is read back from its last chunk (decrypted with the machine's
//! own key entry), and every logged package above it is replayed into the chain before the tap's
//! first batch is taken. A package the tap hands over again is skipped; a package missing
//! between two hand-overs is read from the log. So a `kill -9` between the package log's fsync
//! and the chunk append loses nothing, and the replay appends nothing twice.
//!
//! Services read the sealed chain from disk (never the open chunk) and answer with
//! `success, error_code, error_field, message`.
//!
//! Files: `config` (the `stream:` blocks and `stream.*` parameters), `feeding` (tap hand-overs →
//! the stream thread), `upload` (the upload thread), `status` (the `~/status` counters),
//! `services` (`~/grant_access`, `~/seal_dataset`; a dataset's on-chain anchor is
//! `peaqos_events::anchor`), `retention` (local chunk ciphertexts and grants, on the upload
//! thread; each feed reports its sealed position to the package log's retention).
mod config;
mod feeding;
mod retention;
mod services;
mod status;
mod upload;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use peaqos_core::keys::MachineKey;
use peaqos_core::payload::{PayloadResolver, PayloadStore};
use peaqos_core::pipeline::Published;
use peaqos_core::policy::DataEventMap;
use peaqos_events::anchor::{ChainAnchor, DatasetAnchor};
use peaqos_stream::feed::TopicFeed;
use peaqos_stream::keys::MachineStreamKeys;
use peaqos_stream::payload_store::{ChainResolver, ChainStore, SharedFeed};
use rclrs::{IntoPrimitiveOptions, Node, Publisher};
use ros_env::peaqos_node::msg::ChunkManifest;

use crate::chain::ChainServices;
use crate::params::Params;
use crate::StartError;

pub(crate) use config::topic_specs;
use config::{
    declare_queue_max_bytes, declare_shutdown_upload_timeout, declare_write_once, policy_err, stream_err, TopicSpec,
};
use feeding::{manifest_msg, Cmd};
use services::{serve, StreamServices};
pub use status::StatusView;
use status::{Counters, TopicCounters};

/// How long past `stream.shutdown_upload_timeout` a stop waits for an upload already under way before leaving it.
const SHUTDOWN_UPLOAD_GRACE: Duration = Duration::from_secs(2);

/// A package tap as `main.rs` registers it.
pub type Tap = Box<dyn FnMut(&[Published]) + Send>;

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
    /// Written once: the packaging thread's payload store (taken once, for the pipeline).
    payload_store: Option<Box<dyn PayloadStore>>,
    resolver: Option<Arc<dyn PayloadResolver>>,
    status: Arc<StatusView>,
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
    let policy_file = params.policy_file_name();
    let specs = topic_specs(map, &policy_file)?;
    let queue_max_bytes = declare_queue_max_bytes(params)?;
    let shutdown_upload_timeout = declare_shutdown_upload_timeout(params)?;
    let write_once = declare_write_once(params)?;
    if specs.is_empty() {
        return Ok(None);
    }
    let (machine_key, keys) = machine_keys(params)?;
    let stream_dir = open_stream_dir(params, &keys, specs.len())?;

    let chunks_pub: Publisher<ChunkManifest> =
        node.create_publisher::<ChunkManifest>("~/chunks".reliable().transient_local().keep_last(1000))?;
    let counters =
        Arc::new(Mutex::new(specs.iter().map(|s| (s.topic.clone(), Counters::default())).collect::<Vec<_>>()));
    // Hand-overs the tap dropped, per topic (atomics: the tap never waits for a lock).
    let dropped: Arc<Vec<AtomicU64>> = Arc::new(specs.iter().map(|_| AtomicU64::new(0)).collect());
    let feeds = open_feeds(
        &specs,
        &policy_file,
        &stream_dir,
        params,
        &keys,
        machine_key.did(),
        &counters,
        &chunks_pub,
        &retention.consumers,
        write_once,
    )?;

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Cmd>();
    let (payload_store, resolver) = if write_once {
        let index: std::collections::HashMap<String, usize> =
            specs.iter().enumerate().map(|(i, s)| (s.topic.clone(), i)).collect();
        let sealed_tx = tx.clone();
        let store = ChainStore::new(
            specs.iter().zip(&feeds).map(|(s, f)| (s.topic.clone(), Arc::clone(f))).collect(),
            Box::new(move |topic, chunk| {
                if let Some(&t) = index.get(topic) {
                    let _ = sealed_tx.send(Cmd::Sealed(t, Box::new(chunk)));
                }
            }),
        );
        let resolver: Arc<dyn PayloadResolver> = Arc::new(ChainResolver::new(&stream_dir, Arc::clone(&keys)));
        (Some(Box::new(store) as Box<dyn PayloadStore>), Some(resolver))
    } else {
        (None, None)
    };
    let queued = Arc::new(AtomicUsize::new(0));
    let pruner = retention::ChunkPruner::new(retention, &stream_dir, Arc::clone(&counters));
    let upload = upload::spawn(&specs, &stream_dir, &stop, &counters, &chunks_pub, shutdown_upload_timeout, pruner)?;
    let stream_thread = feeding::spawn(
        feeds,
        rx,
        Arc::clone(&queued),
        Arc::clone(&counters),
        Arc::clone(&dropped),
        chunks_pub,
        upload.wake,
        Arc::clone(&retention.consumers),
    )?;
    // Written once, the packaging thread writes the chunks itself: no hand-over.
    let tap = (!write_once).then(|| feeding::tap(&specs, tx.clone(), queued, Arc::clone(&dropped), queue_max_bytes));

    let anchor: Option<Box<dyn DatasetAnchor>> = chain.map(|c| {
        Box::new(ChainAnchor::new(c.client().clone(), c.runtime(), machine_id, &params.data_dir))
            as Box<dyn DatasetAnchor>
    });
    let services = serve(node, &stream_dir, &specs, Arc::clone(&keys), machine_key, anchor, &params.services)?;
    let status = Arc::new(StatusView {
        ed25519_public_key_hex: hex::encode(keys.ed25519_public),
        x25519_public_key_hex: hex::encode(keys.x25519_public),
        counters,
        dropped,
    });
    Ok(Some(StreamSubsystem {
        tx,
        stop,
        stream_thread: Some(stream_thread),
        upload_thread: Some(upload.thread),
        upload_done: upload.done,
        shutdown_upload_timeout,
        _services: services,
        tap,
        payload_store,
        resolver,
        status,
    }))
}

/// The machine's key and the stream keys derived from it.
fn machine_keys(params: &Params) -> Result<(Arc<MachineKey>, Arc<MachineStreamKeys>), StartError> {
    let machine_key = Arc::new(params.machine_key()?);
    let keys = Arc::new(
        MachineStreamKeys::from_secp256k1_secret(&machine_key.secret_bytes())
            .map_err(|e| stream_err("machine stream keys", e))?,
    );
    Ok((machine_key, keys))
}

/// The stream directory under `data_dir`, created; logged with the machine's stream keys.
fn open_stream_dir(params: &Params, keys: &MachineStreamKeys, topics: usize) -> Result<PathBuf, StartError> {
    let stream_dir = peaqos_base::layout::stream_dir(&params.data_dir);
    std::fs::create_dir_all(&stream_dir).map_err(|e| stream_err(&stream_dir.display().to_string(), e))?;
    tracing::info!(
        "stream: {} topic(s) into {}; machine Ed25519 {} X25519 {}",
        topics,
        stream_dir.display(),
        hex::encode(keys.ed25519_public),
        hex::encode(keys.x25519_public)
    );
    Ok(stream_dir)
}

/// Open every topic now: recovery (its sealed chunks' manifests published), resume point,
/// replay from the package log. Errors stop the node at start, naming the topic.
#[allow(clippy::too_many_arguments)] // the start's context, each argument a different handle
fn open_feeds(
    specs: &[TopicSpec],
    policy_file: &Path,
    stream_dir: &Path,
    params: &Params,
    keys: &MachineStreamKeys,
    did: &str,
    counters: &TopicCounters,
    chunks_pub: &Publisher<ChunkManifest>,
    consumers: &peaqos_core::retention::LogConsumers,
    write_once: bool,
) -> Result<Vec<SharedFeed>, StartError> {
    let key_id = format!("{did}#stream-ed25519");
    let mut feeds = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let recipients = s.cfg.recipients().map_err(|(k, r)| policy_err(policy_file, format!("stream.{k}"), r))?;
        crate::retention::register_stream(consumers, &s.topic);
        let open = if write_once { TopicFeed::open_stored } else { TopicFeed::open };
        let (feed, opened) =
            open(stream_dir, &params.data_dir, &s.topic, s.cfg.chunk, keys, did, &key_id, &recipients, s.cfg.backfill)
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
        crate::retention::report_stream(consumers, &feed);
        feeds.push(Arc::new(Mutex::new(feed)));
    }
    Ok(feeds)
}

impl StreamSubsystem {
    /// The package tap (taken once, for `main.rs`'s tap list).
    pub fn take_tap(&mut self) -> Option<Tap> {
        self.tap.take()
    }

    /// Written once: the payload store the pipeline writes streamed packages through (taken
    /// once, for `main.rs`); `None` with `stream.write_once: false`.
    pub fn take_payload_store(&mut self) -> Option<Box<dyn PayloadStore>> {
        self.payload_store.take()
    }

    /// Reads streamed packages back from the chain for the package log's other readers (the
    /// event rules); `None` with `stream.write_once: false`.
    pub fn resolver(&self) -> Option<Arc<dyn PayloadResolver>> {
        self.resolver.clone()
    }

    /// The stream's part of `~/status`.
    pub fn status(&self) -> Arc<StatusView> {
        Arc::clone(&self.status)
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
