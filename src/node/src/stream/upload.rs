//! The upload thread: every destination's durable upload queue, retried with backoff; the
//! manifests of stored chunks republished; a last try at a clean stop.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use peaqos_stream::storage::{destination, upload_pending_slot, upload_until, Destination};
use peaqos_stream::store;
use rclrs::Publisher;
use ros_env::peaqos_node::msg::ChunkManifest;

use super::config::{stream_err, TopicSpec};
use super::retention::ChunkPruner;
use super::status::TopicCounters;
use crate::StartError;

const UPLOAD_RETRY: Duration = Duration::from_secs(1);

/// One streamed topic's upload queues: topic, topic directory, destinations (slot order).
pub(super) type UploadTopic = (String, PathBuf, Vec<Box<dyn Destination>>);

/// The running upload thread.
pub(super) struct UploadThread {
    pub(super) thread: JoinHandle<()>,
    /// Wakes the thread (a chunk was sealed).
    pub(super) wake: Sender<()>,
    /// The thread says here that its last uploads at stop are done.
    pub(super) done: Receiver<()>,
}

/// Start the upload thread: [`upload_loop`] until `stop`, then [`upload_at_stop`] for up to
/// `shutdown_upload_timeout`.
pub(super) fn spawn(
    specs: &[TopicSpec],
    stream_dir: &Path,
    stop: &Arc<AtomicBool>,
    counters: &Arc<TopicCounters>,
    publisher: &Publisher<ChunkManifest>,
    shutdown_upload_timeout: Duration,
    mut pruner: ChunkPruner,
) -> Result<UploadThread, StartError> {
    let (wake, upload_rx) = mpsc::channel::<()>();
    let uploads: Vec<UploadTopic> = specs
        .iter()
        .map(|s| {
            let dir = store::topic_dir(stream_dir, &s.topic).map_err(|e| stream_err(&s.topic, e))?;
            Ok((s.topic.clone(), dir, s.cfg.destinations.iter().map(destination).collect()))
        })
        .collect::<Result<_, StartError>>()?;
    let (done_tx, done) = mpsc::channel::<()>();
    let (stop, counters, pubr) = (Arc::clone(stop), Arc::clone(counters), publisher.clone());
    let thread = std::thread::Builder::new()
        .name("peaqos-upload".into())
        .spawn(move || {
            upload_loop(&uploads, upload_rx, &stop, counters, &pubr, &mut pruner);
            upload_at_stop(&uploads, &pubr, shutdown_upload_timeout);
            let _ = done_tx.send(());
        })
        .map_err(|e| stream_err("upload thread", e))?;
    Ok(UploadThread { thread, wake, done })
}

fn upload_loop(
    topics: &[UploadTopic],
    wake: Receiver<()>,
    stop: &AtomicBool,
    counters: Arc<TopicCounters>,
    publisher: &Publisher<ChunkManifest>,
    pruner: &mut ChunkPruner,
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
