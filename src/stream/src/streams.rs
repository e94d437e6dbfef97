//! [`StreamSet`]: the per-topic [`ChunkWriter`]s of one machine behind one object, configured by
//! [`StreamConfig`] — the piece the ROS node holds. It opens writers lazily per topic, fans out
//! `sync`/`poll`/`close`, uploads pending chunks, and exposes grants and datasets.
//!
//! Config (YAML/JSON via serde, unknown keys rejected):
//! ```yaml
//! data_dir: /var/lib/peaqos/stream
//! key_id: "did:peaq:0x…#stream-ed25519"     # optional, default "<did>#stream-ed25519"
//! policy: { max_bytes: 1048576, max_messages: 10000, max_age: 60 }   # max_age in seconds
//! owner_public_key_hex: "…"                 # optional X25519 recipient
//! operator_public_key_hex: "…"              # optional X25519 recipient
//! destination: { kind: local }              # or s3 / walrus, see crate::storage
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::dataset::{build_dataset, write_dataset, DatasetManifest, Eip191Signer};
use crate::envelope::BuyerAccessFile;
use crate::error::{Result, StreamError};
use crate::grant::{grant_to_files, GrantRange};
use crate::keys::MachineStreamKeys;
use crate::storage::{destination, upload_pending, Destination, DestinationConfig, UploadReport};
use crate::store;
use crate::writer::{ChunkPolicy, ChunkWriter, Recipients, RecoveryReport, SealedChunk};

/// Stream configuration of one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub data_dir: PathBuf,
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default)]
    pub policy: ChunkPolicy,
    #[serde(default)]
    pub owner_public_key_hex: Option<String>,
    #[serde(default)]
    pub operator_public_key_hex: Option<String>,
    #[serde(default)]
    pub destination: DestinationConfig,
}

impl StreamConfig {
    /// Parsed recipients.
    pub fn recipients(&self) -> Result<Recipients> {
        let p = |v: &Option<String>, f: &str| v.as_deref().map(|h| crypto::parse_x25519_public(h, f)).transpose();
        Ok(Recipients {
            owner: p(&self.owner_public_key_hex, "owner_public_key_hex")?,
            operator: p(&self.operator_public_key_hex, "operator_public_key_hex")?,
        })
    }
}

/// All topic chains of one machine.
pub struct StreamSet {
    cfg: StreamConfig,
    keys: MachineStreamKeys,
    machine_did: String,
    key_id: String,
    recipients: Recipients,
    dest: Box<dyn Destination>,
    writers: BTreeMap<String, ChunkWriter>,
}

impl std::fmt::Debug for StreamSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSet")
            .field("data_dir", &self.cfg.data_dir)
            .field("topics", &self.writers.keys())
            .finish_non_exhaustive()
    }
}

impl StreamSet {
    /// Validate the config and create the data directory. `machine_did` goes into chunk
    /// signatures and dataset manifests.
    pub fn new(cfg: StreamConfig, keys: MachineStreamKeys, machine_did: &str) -> Result<Self> {
        let recipients = cfg.recipients()?;
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| StreamError::io("create directory", &cfg.data_dir, e))?;
        let key_id = cfg.key_id.clone().unwrap_or_else(|| format!("{machine_did}#stream-ed25519"));
        let dest = destination(&cfg.destination);
        Ok(Self { cfg, keys, machine_did: machine_did.into(), key_id, recipients, dest, writers: BTreeMap::new() })
    }

    /// The machine's stream keys (public halves for status output).
    pub fn keys(&self) -> &MachineStreamKeys {
        &self.keys
    }

    /// Open (with recovery) the writer of `topic` if not open yet. Returns the recovery report
    /// the first time, `None` afterwards.
    pub fn open_topic(&mut self, topic: &str) -> Result<Option<RecoveryReport>> {
        if self.writers.contains_key(topic) {
            return Ok(None);
        }
        let (w, rep) = ChunkWriter::open(
            &self.cfg.data_dir,
            topic,
            self.cfg.policy,
            &self.keys,
            &self.machine_did,
            &self.key_id,
            &self.recipients,
        )?;
        self.writers.insert(topic.to_string(), w);
        Ok(Some(rep))
    }

    /// Append a signed package line to `topic` (opening it if needed). Returns every chunk
    /// sealed by this call (recovery of a previous run's open chunk, then a full chunk).
    pub fn append(&mut self, topic: &str, package_line: &[u8]) -> Result<Vec<SealedChunk>> {
        let mut out = Vec::new();
        if let Some(rep) = self.open_topic(topic)? {
            out.extend(rep.sealed);
        }
        let w = self.writers.get_mut(topic).ok_or_else(|| StreamError::NotFound(format!("writer of topic {topic}")))?;
        out.extend(w.append(package_line)?);
        Ok(out)
    }

    /// Group commit of every topic.
    pub fn sync(&mut self) -> Result<()> {
        self.writers.values_mut().try_for_each(ChunkWriter::sync)
    }

    /// Age-based sealing of every topic.
    pub fn poll(&mut self, now: SystemTime) -> Result<Vec<SealedChunk>> {
        let mut out = Vec::new();
        for w in self.writers.values_mut() {
            out.extend(w.poll(now)?);
        }
        Ok(out)
    }

    /// Seal every open chunk (shutdown).
    pub fn close_all(&mut self) -> Result<Vec<SealedChunk>> {
        let mut out = Vec::new();
        for w in self.writers.values_mut() {
            out.extend(w.close_now()?);
        }
        Ok(out)
    }

    /// Upload up to `max_per_topic` pending chunks of every open topic, in order.
    pub fn upload(&mut self, max_per_topic: usize) -> Result<Vec<(String, UploadReport)>> {
        let mut out = Vec::new();
        for (t, w) in &self.writers {
            out.push((t.clone(), upload_pending(w.dir(), self.dest.as_ref(), max_per_topic)?));
        }
        Ok(out)
    }

    /// `~/grant_access`: grant `range` of `topic` to a buyer, files written into `out_dir`.
    pub fn grant_access(
        &self,
        topic: &str,
        range: &GrantRange,
        buyer_public_key_hex: &str,
        buyer_recipient_id: &str,
        out_dir: &Path,
    ) -> Result<(Vec<PathBuf>, Vec<BuyerAccessFile>)> {
        let pk = crypto::parse_x25519_public(buyer_public_key_hex, "buyer_public_key_hex")?;
        grant_to_files(&self.cfg.data_dir, topic, range, &self.keys, &pk, buyer_recipient_id, out_dir, None)
    }

    /// `~/seal_dataset`: build, sign (with `signer`, e.g. the core crate's machine signer) and
    /// store the dataset manifest of chunks `first..=last` of `topic`.
    pub fn seal_dataset(
        &self,
        topic: &str,
        first: u64,
        last: u64,
        signer: Eip191Signer<'_>,
    ) -> Result<(PathBuf, DatasetManifest)> {
        let m = build_dataset(
            &self.cfg.data_dir,
            topic,
            first,
            last,
            &self.machine_did,
            store::unix_ms(SystemTime::now()),
            signer,
        )?;
        let p = write_dataset(&self.cfg.data_dir, &m)?;
        Ok((p, m))
    }
}
