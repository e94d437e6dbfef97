//! The stream's side of the package log's payload hook (`peaqos_core::payload`): a streamed
//! topic's packages are written once, as chunk ciphertext, by the packaging thread's group
//! commit, and the package log holds references to them.
//!
//! * [`ChainStore`] (a `PayloadStore`): `append` encrypts the package line into its topic's open
//!   chunk ([`TopicFeed::append_stored`]), `sync` fdatasyncs the open chunks written, `settle`
//!   keeps or cuts them after the log's commit and seals a full chunk; sealed chunks go to
//!   `on_sealed` (the node publishes the manifest and wakes the uploads).
//! * [`ChainResolver`] (a `PayloadResolver`): reads a referenced line back from the chain
//!   directory with the machine's key (the envelope's `machine-1` entry once sealed, the open
//!   chunk's key file before) and checks it against the reference's hash. It reads the files
//!   only (no lock on the writer): a reference is only logged after its bytes are durable.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use peaqos_core::payload::{PayloadError, PayloadRef, PayloadResolver, PayloadStore};

use crate::chain::unwrap_chunk_key;
use crate::crypto::{self, XCHACHA_NONCE_LEN};
use crate::error::{Result, StreamError};
use crate::feed::TopicFeed;
use crate::keys::MachineStreamKeys;
use crate::open_chunk;
use crate::store;
use crate::writer::SealedChunk;

/// A topic's feed, shared by the packaging thread (appends) and the stream thread (age seals).
pub type SharedFeed = Arc<Mutex<TopicFeed>>;

/// Lock a shared feed (a panic while holding it leaves no half-updated state worth refusing).
pub fn lock_feed(f: &SharedFeed) -> MutexGuard<'_, TopicFeed> {
    f.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn payload_err(topic: &str, e: &StreamError) -> PayloadError {
    PayloadError { message: format!("topic {topic}: {e}"), disk_full: e.is_disk_full() }
}

/// Called with `(topic, chunk)` for each chunk the packaging thread sealed.
pub type OnSealed = Box<dyn FnMut(&str, SealedChunk) + Send>;

/// The packaging thread's payload store over the streamed topics' chains.
pub struct ChainStore {
    feeds: HashMap<String, SharedFeed>,
    touched: Vec<String>,
    on_sealed: OnSealed,
}

impl ChainStore {
    /// Over `feeds` (each opened with [`TopicFeed::open_stored`]); `on_sealed(topic, chunk)` for
    /// every chunk sealed in the packaging thread.
    pub fn new(feeds: HashMap<String, SharedFeed>, on_sealed: OnSealed) -> ChainStore {
        ChainStore { feeds, touched: Vec::new(), on_sealed }
    }

    fn feed(&self, topic: &str) -> std::result::Result<&SharedFeed, PayloadError> {
        self.feeds
            .get(topic)
            .ok_or_else(|| PayloadError { message: format!("topic {topic} is not streamed"), disk_full: false })
    }
}

impl PayloadStore for ChainStore {
    fn stores(&self, topic: &str) -> bool {
        self.feeds.contains_key(topic)
    }

    fn append(&mut self, topic: &str, sequence: u64, line: &str) -> std::result::Result<PayloadRef, PayloadError> {
        let r = lock_feed(self.feed(topic)?)
            .append_stored(sequence, line.as_bytes())
            .map_err(|e| payload_err(topic, &e))?;
        if !self.touched.iter().any(|t| t == topic) {
            self.touched.push(topic.to_owned());
        }
        Ok(r)
    }

    fn sync(&mut self) -> std::result::Result<(), PayloadError> {
        for t in &self.touched {
            lock_feed(self.feed(t)?).sync().map_err(|e| payload_err(t, &e))?;
        }
        Ok(())
    }

    fn commit_due(&self, topic: &str) -> bool {
        self.feed(topic).is_ok_and(|f| lock_feed(f).writer().open_full())
    }

    fn settle(&mut self, topic: &str, committed: bool) {
        self.touched.retain(|t| t != topic);
        let Ok(f) = self.feed(topic) else { return };
        let sealed = lock_feed(f).settle(committed);
        match sealed {
            Ok(sealed) => {
                for s in sealed {
                    (self.on_sealed)(topic, s);
                }
            }
            Err(e) => {
                tracing::error!(topic, error = %e, "stream: cutting an unacknowledged tail off the open chunk failed")
            }
        }
    }
}

/// Reads referenced package lines back from the chains under a stream directory.
pub struct ChainResolver {
    stream_dir: PathBuf,
    keys: Arc<MachineStreamKeys>,
}

impl ChainResolver {
    /// Chains under `stream_dir` (`<data_dir>/stream`), the machine's keys.
    pub fn new(stream_dir: &Path, keys: Arc<MachineStreamKeys>) -> ChainResolver {
        ChainResolver { stream_dir: stream_dir.to_owned(), keys }
    }
}

impl PayloadResolver for ChainResolver {
    fn resolve(&self, topic: &str, r: &PayloadRef) -> std::result::Result<String, PayloadError> {
        let dir = store::topic_dir_name(topic).map(|d| self.stream_dir.join(d)).map_err(|e| payload_err(topic, &e))?;
        read_ref(&dir, r, &self.keys).map_err(|e| payload_err(topic, &e))
    }
}

/// The package line `r` refers to in the chain directory `dir` (sealed or open chunk), checked
/// against its hash.
pub fn read_ref(dir: &Path, r: &PayloadRef, keys: &MachineStreamKeys) -> Result<String> {
    let (j, b, _) = store::chunk_paths(dir, r.chunk);
    // Sealed chunks carry the key in their envelope; the open one in its key file (removed only
    // after the envelope is written, so one of the two is always there).
    let key_nonce = |sealed: bool| -> Result<(zeroize::Zeroizing<[u8; 32]>, [u8; XCHACHA_NONCE_LEN])> {
        if sealed {
            let c = store::load_chunk(dir, r.chunk)?;
            let entry = c.machine_recipient(&keys.x25519_public).ok_or_else(|| {
                StreamError::check(&c.chunk_id, "payload reference", "no key entry for this machine's X25519 key")
            })?;
            let key = unwrap_chunk_key(&c, entry, keys.x25519_secret())?;
            let nonce = crypto::parse_hex_n::<XCHACHA_NONCE_LEN>(&c.encryption.nonce, "encryption.nonce")?;
            Ok((key, nonce))
        } else {
            let (key, nonce, _) = open_chunk::load_open_key(dir, r.chunk, keys.x25519_secret())?;
            Ok((key, nonce))
        }
    };
    let (key, nonce) = match key_nonce(j.exists()) {
        Ok(k) => k,
        // Sealed between the two looks.
        Err(_) if j.exists() => key_nonce(true)?,
        Err(e) => return Err(e),
    };
    let file = File::open(&b).map_err(|e| {
        StreamError::io("read the ciphertext a package log reference points to (deleted by retention?)", &b, e)
    })?;
    let line = open_chunk::read_range(&file, &b, &key, &nonce, r.offset, r.length)?;
    if crypto::hash_hex0x(&line) != r.sha256 {
        return Err(StreamError::check(
            format!("{} chunk {}", dir.display(), r.chunk),
            "payload reference",
            format!("the {} bytes at {} do not hash to the reference's sha256", r.length, r.offset),
        ));
    }
    String::from_utf8(line.to_vec()).map_err(|_| StreamError::invalid("referenced package line", "not UTF-8"))
}
