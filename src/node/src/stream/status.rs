//! The stream's part of `~/status`: live counters per topic and the view the status service reads.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ros_env::peaqos_node::msg::StreamStatus;

/// Live counters of one streamed topic (for `~/status`).
#[derive(Debug, Clone, Default)]
pub(super) struct Counters {
    /// Local ciphertexts deleted by retention, and their bytes.
    pub(super) chunks_pruned: u64,
    pub(super) chunks_pruned_bytes: u64,
    /// Local ciphertext bytes after the last retention pass.
    pub(super) local_chunk_bytes: u64,
    pub(super) chunks_sealed: u64,
    pub(super) last_chunk_index: Option<u64>,
    pub(super) last_sequence: Option<u64>,
    pub(super) open_messages: u64,
    pub(super) upload_backlog: u64,
    pub(super) replayed: u64,
    pub(super) last_error: String,
}

/// Each streamed topic's counters, in the order of the specs (shared by the stream and upload
/// threads and `~/status`).
pub(super) type TopicCounters = Mutex<Vec<(String, Counters)>>;

/// What `~/status` shows of the stream.
pub struct StatusView {
    pub ed25519_public_key_hex: String,
    pub x25519_public_key_hex: String,
    pub(super) counters: Arc<Mutex<Vec<(String, Counters)>>>,
    pub(super) dropped: Arc<Vec<AtomicU64>>,
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

pub(super) fn set_error(counters: &TopicCounters, t: usize, e: &dyn std::fmt::Display) {
    if let Ok(mut c) = counters.lock() {
        c[t].1.last_error = e.to_string();
    }
}
