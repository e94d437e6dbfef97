//! Feeding the chain: the tap's hand-overs → the stream thread's loop (append, group commit,
//! catch-up from the package log, seal by size/count/age) → `~/chunks`. Written once (no tap),
//! the loop seals by age and publishes what the packaging thread sealed (`Cmd::Sealed`).
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use peaqos_core::pipeline::Published;
use peaqos_core::retention::LogConsumers;
use peaqos_stream::payload_store::{lock_feed, SharedFeed};
use peaqos_stream::writer::SealedChunk;
use rclrs::Publisher;
use ros_env::peaqos_node::msg::ChunkManifest;

use super::config::stream_err;
use super::config::TopicSpec;
use super::status::{set_error, TopicCounters};
use super::Tap;
use crate::StartError;

const TICK: Duration = Duration::from_millis(100);

pub(super) struct Item {
    pub(super) topic: usize,
    pub(super) sequence: u64,
    pub(super) line: String,
}

pub(super) enum Cmd {
    Batch(Vec<Item>),
    /// A chunk the packaging thread sealed (written once), to publish.
    Sealed(usize, Box<SealedChunk>),
    Stop,
}

pub(super) fn manifest_msg(s: &SealedChunk, event: &str) -> ChunkManifest {
    ChunkManifest {
        topic: s.topic.clone(),
        index: s.chunk.index,
        chunk_id: s.chunk.chunk_id.clone(),
        manifest_json: s.manifest_json().unwrap_or_default(),
        storage_ref: s.chunk.storage_ref.clone().unwrap_or_default(),
        event: event.into(),
    }
}

/// The tap: copy the streamed packages of a batch into the stream thread's channel, never
/// block. Beyond `queue_max_bytes` a hand-over is dropped and counted (read back later from the
/// package log).
pub(super) fn tap(
    specs: &[TopicSpec],
    tx: Sender<Cmd>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<Vec<AtomicU64>>,
    queue_max_bytes: usize,
) -> Tap {
    let index: HashMap<String, usize> = specs.iter().enumerate().map(|(i, s)| (s.topic.clone(), i)).collect();
    Box::new(move |batch: &[Published]| {
        let mut items = Vec::new();
        for p in batch {
            let Some(&t) = index.get(&*p.topic) else { continue };
            let n = p.package_json.len();
            if queued.load(Ordering::Relaxed) + n > queue_max_bytes {
                // Never lost: the stream thread reads it back from the package log.
                dropped[t].fetch_add(1, Ordering::Relaxed);
                continue;
            }
            queued.fetch_add(n, Ordering::Relaxed);
            items.push(Item { topic: t, sequence: p.sequence_number, line: p.package_json.clone() });
        }
        if !items.is_empty() {
            let _ = tx.send(Cmd::Batch(items));
        }
    })
}

/// Start the stream thread ([`StreamThread::run`]).
#[allow(clippy::too_many_arguments)] // the thread's state, each argument a different handle
pub(super) fn spawn(
    feeds: Vec<SharedFeed>,
    rx: Receiver<Cmd>,
    queued: Arc<AtomicUsize>,
    counters: Arc<TopicCounters>,
    dropped: Arc<Vec<AtomicU64>>,
    publisher: Publisher<ChunkManifest>,
    upload_tx: Sender<()>,
    consumers: Arc<LogConsumers>,
) -> Result<JoinHandle<()>, StartError> {
    let s = StreamThread {
        consumers,
        caught_up_to: vec![0u64; feeds.len()],
        feeds,
        queued,
        counters,
        dropped,
        publisher,
        upload_tx,
        last_catch_up: Instant::now(),
    };
    std::thread::Builder::new()
        .name("peaqos-stream".into())
        .spawn(move || s.run(rx))
        .map_err(|e| stream_err("stream thread", e))
}

/// The stream thread's state.
struct StreamThread {
    feeds: Vec<SharedFeed>,
    queued: Arc<AtomicUsize>,
    counters: Arc<TopicCounters>,
    dropped: Arc<Vec<AtomicU64>>,
    publisher: Publisher<ChunkManifest>,
    upload_tx: Sender<()>,
    last_catch_up: Instant,
    /// Per topic: the dropped hand-overs the last catch-up covered.
    caught_up_to: Vec<u64>,
    /// The package log's consumers: each feed reports its sealed position (retention).
    consumers: Arc<LogConsumers>,
}

/// What one turn of the loop did: the chunks it sealed (topic, chunk) and the topics it wrote.
struct Round {
    sealed: Vec<(usize, SealedChunk)>,
    dirty: Vec<bool>,
}

/// Wait up to a tick for a command, then drain what is already queued (bounded by the tap's
/// byte budget) for one group commit. Also says whether the channel is closed.
fn receive(rx: &Receiver<Cmd>) -> (Vec<Cmd>, bool) {
    let mut cmds = Vec::new();
    let mut disconnected = false;
    match rx.recv_timeout(TICK) {
        Ok(c) => cmds.push(c),
        Err(RecvTimeoutError::Timeout) => {}
        Err(RecvTimeoutError::Disconnected) => disconnected = true,
    }
    while let Ok(c) = rx.try_recv() {
        cmds.push(c);
    }
    (cmds, disconnected)
}

impl StreamThread {
    /// The stream thread: take what the tap handed over, append it, catch up dropped hand-overs
    /// from the package log, group-commit, seal what is due and publish the sealed manifests; at
    /// `Cmd::Stop` (or when the tap's channel closes) seal the open chunks and return.
    fn run(mut self, rx: Receiver<Cmd>) {
        let _ = self.upload_tx.send(());
        let mut stopping = false;
        while !stopping {
            let (cmds, disconnected) = receive(&rx);
            let mut round = Round { sealed: Vec::new(), dirty: vec![false; self.feeds.len()] };
            stopping = self.append(cmds, &mut round) || disconnected;
            self.catch_up(&mut round);
            self.commit_and_seal(stopping, &mut round);
            self.update_counters(&round.sealed);
            for f in &self.feeds {
                crate::retention::report_stream(&self.consumers, &lock_feed(f));
            }
            self.publish(&round.sealed);
        }
        tracing::info!("stream: open chunks sealed, chunk stream stopped");
    }

    /// Append every handed-over package to its topic's feed; true when a `Cmd::Stop` came.
    fn append(&mut self, cmds: Vec<Cmd>, round: &mut Round) -> bool {
        let mut stopping = false;
        for cmd in cmds {
            let items = match cmd {
                Cmd::Batch(items) => items,
                Cmd::Sealed(t, s) => {
                    round.sealed.push((t, *s));
                    continue;
                }
                Cmd::Stop => {
                    stopping = true;
                    continue;
                }
            };
            for it in items {
                self.queued.fetch_sub(it.line.len(), Ordering::Relaxed);
                let mut feed = lock_feed(&self.feeds[it.topic]);
                match feed.push(it.sequence, it.line.as_bytes()) {
                    Ok(s) => round.sealed.extend(s.into_iter().map(|s| (it.topic, s))),
                    Err(e) => {
                        tracing::error!(
                            "stream {}: appending package {} failed: {e}",
                            feed.writer().topic(),
                            it.sequence
                        );
                        set_error(&self.counters, it.topic, &e);
                    }
                }
                round.dirty[it.topic] = true;
            }
        }
        stopping
    }

    /// Dropped hand-overs with nothing newer arriving: read them back from the log (at most
    /// once a second, and only once the channel is empty).
    fn catch_up(&mut self, round: &mut Round) {
        let behind: Vec<usize> =
            (0..self.feeds.len()).filter(|&t| self.dropped[t].load(Ordering::Relaxed) > self.caught_up_to[t]).collect();
        if behind.is_empty()
            || self.last_catch_up.elapsed() < Duration::from_secs(1)
            || self.queued.load(Ordering::Relaxed) != 0
        {
            return;
        }
        self.last_catch_up = Instant::now();
        for t in behind {
            // Drops counted before this read are in the log by now (the tap runs after the
            // log's commit), so one catch-up covers them.
            self.caught_up_to[t] = self.dropped[t].load(Ordering::Relaxed);
            let caught = lock_feed(&self.feeds[t]).catch_up();
            match caught {
                Ok(s) => round.sealed.extend(s.into_iter().map(|s| (t, s))),
                Err(e) => set_error(&self.counters, t, &e),
            }
            round.dirty[t] = true;
        }
    }

    /// One `sync` per written topic (group commit), then seal what is due by age — or every
    /// open chunk when stopping.
    fn commit_and_seal(&mut self, stopping: bool, round: &mut Round) {
        let now = SystemTime::now();
        for (t, f) in self.feeds.iter().enumerate() {
            let mut f = lock_feed(f);
            if round.dirty[t] {
                if let Err(e) = f.sync() {
                    tracing::error!("stream {}: group commit failed: {e}", f.writer().topic());
                    set_error(&self.counters, t, &e);
                }
            }
            let due = if stopping { f.close_now() } else { f.poll(now) };
            match due {
                Ok(Some(s)) => round.sealed.push((t, s)),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!("stream {}: sealing failed: {e}", f.writer().topic());
                    set_error(&self.counters, t, &e);
                }
            }
        }
    }

    /// Refresh every topic's `~/status` counters.
    fn update_counters(&self, sealed: &[(usize, SealedChunk)]) {
        if let Ok(mut c) = self.counters.lock() {
            for (t, f) in self.feeds.iter().enumerate() {
                let f = lock_feed(f);
                let c = &mut c[t].1;
                c.last_chunk_index = f.writer().next_index().checked_sub(1);
                c.last_sequence = f.last_sequence();
                c.open_messages = f.writer().open_messages();
                c.replayed = c.replayed.max(f.gap_filled);
            }
            for (t, _) in sealed {
                c[*t].1.chunks_sealed += 1;
            }
        }
    }

    /// Publish the sealed chunks' manifests on `~/chunks` and wake the upload thread.
    fn publish(&self, sealed: &[(usize, SealedChunk)]) {
        if sealed.is_empty() {
            return;
        }
        for (_, s) in sealed {
            if let Err(e) = self.publisher.publish(manifest_msg(s, "sealed")) {
                tracing::warn!("publishing chunk manifest failed: {e}");
            }
        }
        let _ = self.upload_tx.send(());
    }
}
