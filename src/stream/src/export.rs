//! Verified export of chunk chains to one MCAP file (`peaqos-stream export`), for Foxglove and
//! any MCAP reader.
//!
//! Input: one or more topic directories (`<data_dir>/stream/<topic dir>`: the envelopes
//! `<n>.json`; the ciphertexts either next to them as `<n>.bin` or fetched through the storage
//! references of the envelopes / `<n>.refs.json` with a [`DestinationConfig`]), and an X25519
//! secret key: a buyer's, used with its grants (only the granted chunks are exported), or a key
//! recipient's own (owner, operator, machine: the chunk's entry for that key is used).
//!
//! **Everything is verified before it is written**, and the file appears under its name only
//! when the whole export succeeded ([`peaqos_base::fsio::AtomicFile`]):
//! * every envelope of each directory (also those not exported): index sequence (the envelopes
//!   present must be consecutive), `previous_chunk_id` link (index 0 has none; a later first
//!   chunk's link to a chunk not present is reported as not checked), `chunk_id` derivation,
//!   Ed25519 signature over `encrypted_data_hash`, one signing key for the chain (or the one
//!   given), schema and algorithm names, `head.json` naming the last chunk;
//! * every exported chunk: ciphertext hash, key unwrap and key commitment, AEAD tag, plaintext
//!   hash (the SDK's `decrypt_chunk`);
//! * every package: parse, EIP-191 signature (the SDK's `verify_data_package`), package DID =
//!   the chunk's machine DID, parseable timestamp, sequence numbers increasing.
//!
//! The first failure stops the export with an [`ExportError::Unverified`] naming the topic, the
//! chunk and the check. With `allow_unverified` the export goes on: messages of a failed chunk or
//! package carry the field [`UNVERIFIED_FIELD`] (the failed check), and the metadata record
//! `peaqos.unverified` lists them; a chunk that cannot be decrypted is listed there as not
//! exported.
//!
//! Output, per topic: one channel named with the topic (from `head.json` / `<n>.meta.json`),
//! message encoding `json`, schema encoding `jsonschema` (a JSON Schema derived from the first
//! payload; schema name = the ROS type when given, else `peaqos.payload`). Each message is the
//! package's `payload` as its canonical JSON, the very bytes its signature covers (encrypted and
//! anonymized fields stay as they are; a marked message is the payload with the mark added);
//! log time = the package `timestamp`, publish time = the payload's `header.stamp` when it has
//! one (the capture time; the node takes `timestamp` from it), else `timestamp`; sequence = the
//! package `sequenceNumber` (low 32 bits). Metadata records: `peaqos.export` (machine DID, tool,
//! topics, key used), one `peaqos.topic` per topic (first/last chunk id and index, counts,
//! signer, ROS type), one `peaqos.verification` per topic (every check per chunk),
//! `peaqos.dataset` (Merkle root, signer, chunk ids) when exporting a sealed dataset, and
//! `peaqos.unverified` when anything was let through.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use peaqos_core::package::DataPackage;
use peaqos_core::value::parse_iso8601_utc;

use crate::chain::{decrypt_chunk, reasons};
use crate::crypto;
use crate::dataset::{verify_dataset, DatasetManifest};
use crate::envelope::{
    BuyerAccessEntry, Chunk, CHUNK_CIPHER, CHUNK_SCHEMA_VERSION, KEY_WRAP_ALGORITHM, SIGNATURE_ALGORITHM,
};
use crate::error::StreamError;
use crate::storage::{destination, ChunkRefs, Destination, DestinationConfig};
use crate::store;

/// Field added to a message that was let through unverified (`allow_unverified`): the failed
/// check and its reason.
pub const UNVERIFIED_FIELD: &str = "__peaqos_unverified";
/// Schema name of a topic whose ROS type was not given.
pub const DEFAULT_SCHEMA_NAME: &str = "peaqos.payload";

/// Errors of the export. Each names the topic, the chunk (index and id) and the check.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A verification failed (and `allow_unverified` was not given).
    #[error("topic {topic}: chunk {index} ({chunk_id}): {check} failed: {reason}")]
    Unverified { topic: String, index: u64, chunk_id: String, check: &'static str, reason: String },
    /// The inputs do not allow an export (no chunk, a grant naming an unknown chunk, …).
    #[error("{field}: {reason}")]
    Input { field: String, reason: String },
    /// Reading the chain or the storage failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// Writing the MCAP file failed.
    #[error("write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

fn input_err(field: impl Into<String>, reason: impl Into<String>) -> ExportError {
    ExportError::Input { field: field.into(), reason: reason.into() }
}

/// Where the ciphertexts are read from.
#[derive(Debug, Clone, Default)]
pub enum CiphertextSource {
    /// `<n>.bin` next to each envelope.
    #[default]
    Local,
    /// The storage reference of each chunk (its envelope's `storageRef`, else a matching entry
    /// of `<n>.refs.json`), fetched with this destination (its credentials and endpoint).
    Storage(DestinationConfig),
}

/// What to export and how.
pub struct ExportOptions<'a> {
    /// Topic directories (`<data_dir>/stream/<topic dir>`), one channel each.
    pub topic_dirs: Vec<PathBuf>,
    /// X25519 secret key: the buyer's (with `grants`) or a key recipient's.
    pub secret_key: &'a [u8; 32],
    /// Buyer grants; non-empty = export exactly the granted chunks.
    pub grants: &'a [BuyerAccessEntry],
    /// Where the ciphertexts are.
    pub source: CiphertextSource,
    /// A sealed dataset: export exactly its chunks, record its Merkle root.
    pub dataset: Option<&'a DatasetManifest>,
    /// Expected Ed25519 chunk signing key (hex), if known.
    pub signer_public_key_hex: Option<&'a str>,
    /// Topic → ROS type (schema name, channel metadata, `peaqos.topic`).
    pub ros_types: BTreeMap<String, String>,
    /// Export what fails verification, marked (see the module doc).
    pub allow_unverified: bool,
    /// zstd-compress the MCAP chunks.
    pub compress: bool,
    /// `Some(share directories)`: a topic whose ROS type is given gets a `ros2msg` schema and
    /// CDR messages (definitions read from `<dir>/<pkg>/msg/<Name>.msg`) for every payload that
    /// holds all its fields; the others stay JSON on a second channel of the same topic.
    pub ros2msg_share_dirs: Option<Vec<PathBuf>>,
}

/// Progress of a long export: called after each chunk.
pub trait Progress {
    /// `done` of `total` chunks, `bytes` of plaintext so far.
    fn chunk_done(&mut self, done: u64, total: u64, bytes: u64);
}

/// No progress output.
pub struct NoProgress;

impl Progress for NoProgress {
    fn chunk_done(&mut self, _: u64, _: u64, _: u64) {}
}

/// One topic's part of the export.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicReport {
    pub topic: String,
    pub dir: PathBuf,
    pub chunks: u64,
    pub messages: u64,
    pub first_chunk_id: Option<String>,
    pub last_chunk_id: Option<String>,
    pub first_chunk_index: Option<u64>,
    pub last_chunk_index: Option<u64>,
    /// Log time range (ns since the epoch).
    pub first_log_time_ns: Option<u64>,
    pub last_log_time_ns: Option<u64>,
    pub signer_public_key_hex: Option<String>,
}

/// Result of [`export_mcap`].
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportReport {
    pub output: PathBuf,
    pub machine_did: Option<String>,
    pub topics: Vec<TopicReport>,
    pub messages: u64,
    pub chunks: u64,
    /// Plaintext bytes decrypted.
    pub plaintext_bytes: u64,
    /// Ciphertext bytes read.
    pub ciphertext_bytes: u64,
    /// MCAP file size.
    pub output_bytes: u64,
    /// Failed checks let through (`allow_unverified`): "topic chunk i: check: reason".
    pub unverified: Vec<String>,
    pub merkle_root: Option<String>,
}

/// A failed check (before it becomes an error or a mark).
#[derive(Debug, Clone)]
struct Failure {
    index: u64,
    chunk_id: String,
    check: &'static str,
    reason: String,
}

/// The JSON Schema of a payload (draft 2020-12 keywords Foxglove reads: `type`, `properties`,
/// `items`).
pub fn json_schema_of(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let props: Map<String, Value> = m.iter().map(|(k, v)| (k.clone(), json_schema_of(v))).collect();
            serde_json::json!({"type": "object", "properties": props})
        }
        Value::Array(a) => match a.first() {
            Some(first) => serde_json::json!({"type": "array", "items": json_schema_of(first)}),
            None => serde_json::json!({"type": "array"}),
        },
        Value::String(_) => serde_json::json!({"type": "string"}),
        Value::Number(_) => serde_json::json!({"type": "number"}),
        Value::Bool(_) => serde_json::json!({"type": "boolean"}),
        Value::Null => serde_json::json!({}),
    }
}

/// The topic name of a chain directory: `head.json`, else the first `<n>.meta.json`.
pub fn topic_of_dir(dir: &Path) -> Result<Option<String>, StreamError> {
    if let Some(h) = store::load_head(dir)? {
        return Ok(Some(h.topic));
    }
    for i in store::sealed_indices(dir)? {
        if store::chunk_paths(dir, i).2.exists() {
            return Ok(Some(store::load_meta(dir, i)?.topic));
        }
    }
    Ok(None)
}

/// Envelope-level checks of a whole directory (no ciphertext needed): results per index.
fn check_envelopes(
    dir: &Path,
    envs: &BTreeMap<u64, Chunk>,
    signer: &str,
    notes: &mut BTreeMap<u64, Vec<String>>,
) -> Result<Vec<Failure>, StreamError> {
    let mut fails = Vec::new();
    let mut prev: Option<&Chunk> = None;
    for (&i, c) in envs {
        let f = |check: &'static str, reason: String| Failure { index: i, chunk_id: c.chunk_id.clone(), check, reason };
        let n = notes.entry(i).or_default();
        if c.index != i {
            fails.push(f("index", format!("file {i}.json holds chunk index {} (replayed or renamed chunk)", c.index)));
            prev = Some(c);
            continue;
        }
        match prev {
            None if i == 0 => {
                if c.previous_chunk_id.is_some() {
                    fails.push(f("chain link", reasons::FIRST_PREVIOUS.into()));
                } else {
                    n.push("chain link: first chunk".into());
                }
            }
            None => n.push(format!("chain link: not checked (chunk {} is not present)", i - 1)),
            Some(p) if p.index + 1 != i => {
                fails.push(f("chain link", format!("{}: chunk {} is missing", reasons::NOT_SEQUENTIAL, p.index + 1)))
            }
            Some(p) => {
                if c.previous_chunk_id.as_deref() != Some(p.chunk_id.as_str()) {
                    fails.push(f("chain link", reasons::LINK.into()));
                } else {
                    n.push(format!("chain link to chunk {}: ok", p.index));
                }
            }
        }
        if c.chunk_id != crypto::compute_chunk_id(c.previous_chunk_id.as_deref(), &c.encrypted_data_hash, c.index) {
            fails.push(f("chunk id", reasons::CHUNK_ID.into()));
        } else {
            n.push("chunk id: ok".into());
        }
        if c.signature.machine_did.trim().is_empty()
            || c.signature.key_id.trim().is_empty()
            || !crypto::verify_encrypted_data_hash_signature(
                &c.encrypted_data_hash,
                &c.signature.value,
                &c.signature.public_key_hex,
            )
        {
            fails.push(f("chunk signature", reasons::INVALID_SIGNATURE.into()));
        } else {
            n.push("chunk signature: ok".into());
        }
        if !c.signature.public_key_hex.eq_ignore_ascii_case(signer) {
            fails.push(f("chunk signature", "signed by another key than the chain's machine key".into()));
        }
        if c.schema_version != CHUNK_SCHEMA_VERSION
            || c.encryption.algorithm != CHUNK_CIPHER
            || c.signature.algorithm != SIGNATURE_ALGORITHM
            || c.encryption.key_recipients.iter().any(|r| r.algorithm != KEY_WRAP_ALGORITHM)
        {
            fails.push(f("schema", "unknown schema_version or algorithm".into()));
        }
        prev = Some(c);
    }
    if let (Some(h), Some((&li, lc))) = (store::load_head(dir)?, envs.last_key_value()) {
        if h.last_index != li || h.last_chunk_id != lc.chunk_id {
            fails.push(Failure {
                index: h.last_index,
                chunk_id: h.last_chunk_id.clone(),
                check: "head",
                reason: "head.json does not name the last chunk present (chunk removed or head stale)".into(),
            });
        }
    }
    Ok(fails)
}

/// Fetch the ciphertext of chunk `c` of `dir`.
fn ciphertext(
    dir: &Path,
    c: &Chunk,
    src: &CiphertextSource,
    dest: Option<&dyn Destination>,
) -> Result<Vec<u8>, StreamError> {
    let Some(dest) = dest else {
        return store::read(&store::chunk_paths(dir, c.index).1);
    };
    let scheme = match src {
        CiphertextSource::Storage(DestinationConfig::S3 { bucket, .. }) => format!("s3://{bucket}/"),
        CiphertextSource::Storage(DestinationConfig::Walrus { .. }) => "walrus://".into(),
        _ => "file://".into(),
    };
    let mut refs: Vec<String> = c.storage_ref.iter().cloned().collect();
    let rp = crate::storage::refs_path(dir, c.index);
    if rp.exists() {
        let r: ChunkRefs = store::load_json(&rp)?;
        refs.extend(r.refs.into_values());
    }
    let r = refs.into_iter().find(|r| r.starts_with(&scheme)).ok_or_else(|| {
        StreamError::NotFound(format!(
            "storage reference {scheme}… of chunk {} ({}) in its envelope or {}",
            c.index,
            c.chunk_id,
            rp.display()
        ))
    })?;
    dest.get(&r)
}

/// Per-topic plan: the directory, its envelopes, the chunks to export with their key entries.
struct Plan {
    dir: PathBuf,
    topic: String,
    envs: BTreeMap<u64, Chunk>,
    export: Vec<u64>,
    signer: String,
}

fn plan_topics(o: &ExportOptions<'_>) -> Result<(Vec<Plan>, HashMap<String, BuyerAccessEntry>), ExportError> {
    let mut granted: HashMap<String, BuyerAccessEntry> =
        o.grants.iter().map(|e| (e.chunk_id.to_ascii_lowercase(), e.clone())).collect();
    let dataset_ids: Option<Vec<String>> =
        o.dataset.map(|m| m.chunk_ids.iter().map(|i| i.to_ascii_lowercase()).collect());
    let mut plans = Vec::new();
    let mut seen_grants = 0usize;
    let mut seen_dataset = 0usize;
    for dir in &o.topic_dirs {
        let mut envs = BTreeMap::new();
        for i in store::sealed_indices(dir)? {
            envs.insert(i, store::load_chunk(dir, i)?);
        }
        let topic = topic_of_dir(dir)?.ok_or_else(|| {
            input_err(dir.display().to_string(), "no head.json or <n>.meta.json names the topic of this chain")
        })?;
        let export: Vec<u64> = envs
            .iter()
            .filter(|(_, c)| {
                let id = c.chunk_id.to_ascii_lowercase();
                (o.grants.is_empty() || granted.contains_key(&id))
                    && dataset_ids.as_ref().is_none_or(|d| d.contains(&id))
            })
            .map(|(&i, _)| i)
            .collect();
        seen_grants += export.iter().filter(|i| granted.contains_key(&envs[i].chunk_id.to_ascii_lowercase())).count();
        if let Some(d) = &dataset_ids {
            seen_dataset += export.iter().filter(|i| d.contains(&envs[i].chunk_id.to_ascii_lowercase())).count();
        }
        let signer = o
            .signer_public_key_hex
            .map(|s| s.trim_start_matches("0x").to_ascii_lowercase())
            .or_else(|| envs.values().next().map(|c| c.signature.public_key_hex.to_ascii_lowercase()))
            .unwrap_or_default();
        if !export.is_empty() {
            plans.push(Plan { dir: dir.clone(), topic, envs, export, signer });
        }
    }
    if !o.grants.is_empty() && seen_grants != granted.len() {
        let present: Vec<String> =
            plans.iter().flat_map(|p| p.export.iter().map(|i| p.envs[i].chunk_id.to_ascii_lowercase())).collect();
        let missing: Vec<&String> = granted.keys().filter(|k| !present.contains(k)).collect();
        return Err(input_err("grant", format!("granted chunks not found in the given directories: {missing:?}")));
    }
    if let (Some(m), Some(d)) = (o.dataset, &dataset_ids) {
        if seen_dataset != d.len() {
            return Err(input_err(
                "dataset",
                format!(
                    "the dataset of {} names {} chunks, {} of them are in the given directories (and granted)",
                    m.topic,
                    d.len(),
                    seen_dataset
                ),
            ));
        }
    }
    if plans.is_empty() {
        return Err(input_err("input", "no sealed chunk to export in the given directories"));
    }
    granted.shrink_to_fit();
    Ok((plans, granted))
}

/// A failed check: an error, or (`allow`) a line of `peaqos.unverified`.
fn record(allow: bool, topic: &str, f: Failure, unverified: &mut Vec<String>) -> Result<(), ExportError> {
    if !allow {
        return Err(ExportError::Unverified {
            topic: topic.into(),
            index: f.index,
            chunk_id: f.chunk_id,
            check: f.check,
            reason: f.reason,
        });
    }
    unverified.push(format!("{topic} chunk {} ({}): {} failed: {}", f.index, f.chunk_id, f.check, f.reason));
    Ok(())
}

/// Channel state of one topic while writing.
struct TopicOut {
    channel: Option<u16>,
    cdr_channel: Option<u16>,
    /// Why the last payload could not be CDR (kept as JSON).
    cdr_fallback: Option<String>,
    cdr_messages: u64,
    report: TopicReport,
    last_seq: Option<u64>,
}

fn mcap_err(path: &Path, e: impl std::fmt::Display) -> ExportError {
    ExportError::Write { path: path.to_path_buf(), reason: e.to_string() }
}

/// Capture time of a payload: `header.stamp` `{sec, nanosec}` in ns, if present and readable.
fn header_stamp_ns(p: &Map<String, Value>) -> Option<u64> {
    let s = p.get("header")?.get("stamp")?;
    let sec = s.get("sec")?.as_i64()?;
    let ns = s.get("nanosec")?.as_u64()?;
    u64::try_from(sec).ok()?.checked_mul(1_000_000_000)?.checked_add(ns)
}

/// Export `o.topic_dirs` into the MCAP file `out` (see the module doc).
pub fn export_mcap(
    o: &ExportOptions<'_>,
    out: &Path,
    progress: &mut dyn Progress,
) -> Result<ExportReport, ExportError> {
    let (plans, granted) = plan_topics(o)?;
    let mut unverified: Vec<String> = Vec::new();
    let mut verification: Vec<(String, BTreeMap<u64, Vec<String>>)> = Vec::new();
    let fail = |topic: &str, f: Failure, unverified: &mut Vec<String>| record(o.allow_unverified, topic, f, unverified);
    // Envelope checks of every directory first: nothing is decrypted from a broken chain.
    let mut chunk_marks: Vec<HashMap<u64, String>> = Vec::new();
    for p in &plans {
        let mut notes = BTreeMap::new();
        let fails = check_envelopes(&p.dir, &p.envs, &p.signer, &mut notes)?;
        let mut marks = HashMap::new();
        for f in fails {
            marks.entry(f.index).or_insert_with(|| format!("{}: {}", f.check, f.reason));
            notes.entry(f.index).or_default().push(format!("{}: FAILED: {}", f.check, f.reason));
            fail(&p.topic, f, &mut unverified)?;
        }
        chunk_marks.push(marks);
        verification.push((p.topic.clone(), notes));
    }
    let dataset_signer = match o.dataset {
        Some(m) => Some(verify_dataset(m).map_err(|e| input_err("dataset", e.to_string()))?),
        None => None,
    };

    let dest: Option<Box<dyn Destination>> = match &o.source {
        CiphertextSource::Local => None,
        CiphertextSource::Storage(cfg) => Some(destination(cfg)),
    };
    let my_pk = hex::encode(crypto::x25519_public(o.secret_key));
    let total: u64 = plans.iter().map(|p| p.export.len() as u64).sum();
    let mut af = peaqos_base::fsio::AtomicFile::create(out).map_err(StreamError::from)?;
    let mut report = ExportReport {
        output: out.to_path_buf(),
        machine_did: None,
        topics: Vec::new(),
        messages: 0,
        chunks: 0,
        plaintext_bytes: 0,
        ciphertext_bytes: 0,
        output_bytes: 0,
        unverified: Vec::new(),
        merkle_root: o.dataset.map(|m| m.merkle_root.clone()),
    };
    let mut key_used = String::new();
    {
        let opts = mcap::WriteOptions::new()
            .compression(if o.compress { Some(mcap::Compression::Zstd) } else { None })
            .compression_level(1)
            .profile("")
            .library(format!("peaqos-stream {}", env!("CARGO_PKG_VERSION")));
        let mut w = opts.create(BufWriter::with_capacity(1 << 20, af.file())).map_err(|e| mcap_err(out, e))?;
        let mut done = 0u64;
        let mut ros2msg = o.ros2msg_share_dirs.clone().map(crate::ros2msg::MsgLibrary::new);
        let mut cdr_counts: Vec<(u64, Option<String>)> = Vec::new();
        for (pi, p) in plans.iter().enumerate() {
            let ros_type = o.ros_types.get(&p.topic).cloned();
            let mut t = TopicOut {
                channel: None,
                cdr_channel: None,
                cdr_fallback: None,
                cdr_messages: 0,
                report: TopicReport {
                    topic: p.topic.clone(),
                    dir: p.dir.clone(),
                    chunks: 0,
                    messages: 0,
                    first_chunk_id: None,
                    last_chunk_id: None,
                    first_chunk_index: None,
                    last_chunk_index: None,
                    first_log_time_ns: None,
                    last_log_time_ns: None,
                    signer_public_key_hex: Some(p.signer.clone()),
                },
                last_seq: None,
            };
            for &i in &p.export {
                let c = &p.envs[&i];
                let notes = verification[pi].1.entry(i).or_default();
                let mut chunk_mark = chunk_marks[pi].get(&i).cloned();
                let failed = |check: &'static str, reason: String, notes: &mut Vec<String>, unv: &mut Vec<String>| {
                    notes.push(format!("{check}: FAILED: {reason}"));
                    let f = Failure { index: i, chunk_id: c.chunk_id.clone(), check, reason };
                    fail(&p.topic, f, unv)
                };
                let ct = match ciphertext(&p.dir, c, &o.source, dest.as_deref()) {
                    Ok(ct) => ct,
                    Err(e) => {
                        failed("ciphertext", format!("{e} (chunk not exported)"), notes, &mut unverified)?;
                        continue;
                    }
                };
                report.ciphertext_bytes += ct.len() as u64;
                if crypto::hash_hex0x(&ct) != c.encrypted_data_hash {
                    failed("ciphertext hash", reasons::HASH_MISMATCH.into(), notes, &mut unverified)?;
                    chunk_mark.get_or_insert_with(|| format!("ciphertext hash: {}", reasons::HASH_MISMATCH));
                } else {
                    notes.push("ciphertext hash: ok".into());
                }
                let entry = match granted.get(&c.chunk_id.to_ascii_lowercase()) {
                    Some(g) => {
                        key_used = "buyer grant".into();
                        Some(g.buyer.clone())
                    }
                    None => {
                        let r =
                            c.encryption.key_recipients.iter().find(|r| r.public_key_hex.eq_ignore_ascii_case(&my_pk));
                        if let Some(r) = r {
                            key_used = format!("{:?} key entry", r.recipient_type).to_lowercase();
                        }
                        r.cloned()
                    }
                };
                let Some(entry) = entry else {
                    let reason =
                        "no grant and no key entry of the chunk is for the given secret key (chunk not exported)";
                    failed("key", reason.into(), notes, &mut unverified)?;
                    continue;
                };
                let pt: Zeroizing<Vec<u8>> = match decrypt_chunk(c, &entry, o.secret_key, &ct) {
                    Ok(pt) => {
                        notes.push("key commitment, AEAD tag, plaintext hash: ok".into());
                        pt
                    }
                    Err(StreamError::Check { check, reason, .. }) => {
                        failed(check, format!("{reason} (chunk not exported)"), notes, &mut unverified)?;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                drop(ct);
                report.plaintext_bytes += pt.len() as u64;
                let mut pkg_ok = 0u64;
                let mut pkg_bad = 0u64;
                for (li, line) in pt.split(|&b| b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
                    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string());
                    let pkg = match text.and_then(|t| DataPackage::from_json(t).map_err(|e| e.to_string())) {
                        Ok(p) => p,
                        Err(reason) => {
                            pkg_bad += 1;
                            let reason = format!("line {}: {reason} (not exported)", li + 1);
                            failed("package", reason, notes, &mut unverified)?;
                            continue;
                        }
                    };
                    let mut errs: Vec<(&'static str, String)> = Vec::new();
                    // The canonical payload the signature covers becomes the message as it is.
                    let mut canonical: Option<(Vec<u8>, std::ops::Range<usize>)> = None;
                    match pkg.verify_with_signable() {
                        Ok((_, bytes, range)) => canonical = Some((bytes, range)),
                        Err(e) => errs.push(("package signature", e.to_string())),
                    }
                    if pkg.did != c.signature.machine_did {
                        errs.push((
                            "package DID",
                            format!("{} is not the chunk's machine DID {}", pkg.did, c.signature.machine_did),
                        ));
                    }
                    let ts = parse_iso8601_utc(&pkg.timestamp).and_then(|t| {
                        u64::try_from(t.sec).ok()?.checked_mul(1_000_000_000)?.checked_add(t.nanosec.into())
                    });
                    if ts.is_none() {
                        errs.push((
                            "package timestamp",
                            format!("{:?} is not an ISO-8601 UTC time after 1970", pkg.timestamp),
                        ));
                    }
                    if let Some(s) = t.last_seq.filter(|&s| s >= pkg.sequence_number) {
                        errs.push((
                            "sequence order",
                            format!("follows sequenceNumber {s} (replayed or reordered package)"),
                        ));
                    }
                    let mut mark = chunk_mark.clone();
                    if errs.is_empty() && mark.is_none() {
                        pkg_ok += 1;
                    } else {
                        pkg_bad += 1;
                    }
                    for (check, reason) in errs {
                        let reason = format!("package sequenceNumber {}: {reason}", pkg.sequence_number);
                        mark.get_or_insert_with(|| format!("{check}: {reason}"));
                        failed(check, reason, notes, &mut unverified)?;
                    }
                    t.last_seq = Some(pkg.sequence_number);
                    let log_time = ts.unwrap_or(0);
                    let publish_time = header_stamp_ns(&pkg.payload).unwrap_or(log_time);
                    let mut payload = pkg.payload;
                    let data = match (&mark, canonical) {
                        (None, Some((bytes, range))) => bytes.get(range).map(<[u8]>::to_vec),
                        _ => None,
                    };
                    if let Some(m) = &mark {
                        payload.insert(UNVERIFIED_FIELD.into(), Value::String(m.clone()));
                        unverified
                            .push(format!("{} sequenceNumber {}: exported marked: {m}", p.topic, pkg.sequence_number));
                    }
                    let payload = Value::Object(payload);
                    // CDR when asked for, the type is known, the message is verified and complete.
                    let mut cdr = None;
                    if let (Some(lib), Some(rt), None) = (ros2msg.as_mut(), ros_type.as_deref(), &mark) {
                        match lib.encode(rt, &payload) {
                            Ok(b) => cdr = Some(b),
                            Err(e) => t.cdr_fallback = Some(e.to_string()),
                        }
                    }
                    let cdr_ch = match (&cdr, t.cdr_channel, ros2msg.as_mut(), ros_type.as_deref()) {
                        (None, ..) => None,
                        (Some(_), Some(ch), ..) => Some(ch),
                        (Some(_), None, Some(lib), Some(rt)) => {
                            let schema = lib.schema(rt).map_err(|e| mcap_err(out, e))?;
                            let sid = w.add_schema(rt, "ros2msg", schema.as_bytes()).map_err(|e| mcap_err(out, e))?;
                            let mut meta = BTreeMap::new();
                            meta.insert("peaqos.rosType".to_string(), rt.to_string());
                            meta.insert("peaqos.machineDid".to_string(), pkg.did.clone());
                            let ch = w.add_channel(sid, &p.topic, "cdr", &meta).map_err(|e| mcap_err(out, e))?;
                            t.cdr_channel = Some(ch);
                            Some(ch)
                        }
                        _ => None,
                    };
                    let ch = match (cdr_ch, t.channel) {
                        (Some(ch), _) => ch,
                        (None, Some(ch)) => ch,
                        (None, None) => {
                            let mut schema = json_schema_of(&payload);
                            if let Value::Object(m) = &mut schema {
                                m.insert("title".into(), Value::String(p.topic.clone()));
                            }
                            let schema = serde_json::to_vec(&schema).map_err(|e| mcap_err(out, e))?;
                            let name = ros_type.as_deref().unwrap_or(DEFAULT_SCHEMA_NAME);
                            let sid = w.add_schema(name, "jsonschema", &schema).map_err(|e| mcap_err(out, e))?;
                            let mut meta = BTreeMap::new();
                            if let Some(rt) = &ros_type {
                                meta.insert("peaqos.rosType".to_string(), rt.clone());
                            }
                            meta.insert("peaqos.machineDid".to_string(), pkg.did.clone());
                            let ch = w.add_channel(sid, &p.topic, "json", &meta).map_err(|e| mcap_err(out, e))?;
                            t.channel = Some(ch);
                            ch
                        }
                    };
                    let data = match cdr {
                        Some(b) => {
                            t.cdr_messages += 1;
                            Some(b)
                        }
                        None => data,
                    };
                    if report.machine_did.is_none() {
                        report.machine_did = Some(pkg.did.clone());
                    }
                    let data = match data {
                        Some(d) => d,
                        None => serde_json::to_vec(&payload).map_err(|e| mcap_err(out, e))?,
                    };
                    let header = mcap::records::MessageHeader {
                        channel_id: ch,
                        sequence: pkg.sequence_number as u32,
                        log_time,
                        publish_time,
                    };
                    w.write_to_known_channel(&header, &data).map_err(|e| mcap_err(out, e))?;
                    t.report.messages += 1;
                    t.report.first_log_time_ns = Some(t.report.first_log_time_ns.map_or(log_time, |v| v.min(log_time)));
                    t.report.last_log_time_ns = Some(t.report.last_log_time_ns.map_or(log_time, |v| v.max(log_time)));
                }
                notes.push(format!("package signatures, DID, timestamp, order: {pkg_ok} ok, {pkg_bad} failed"));
                t.report.chunks += 1;
                t.report.first_chunk_id.get_or_insert_with(|| c.chunk_id.clone());
                t.report.first_chunk_index.get_or_insert(i);
                t.report.last_chunk_id = Some(c.chunk_id.clone());
                t.report.last_chunk_index = Some(i);
                done += 1;
                progress.chunk_done(done, total, report.plaintext_bytes);
            }
            cdr_counts.push((t.cdr_messages, t.cdr_fallback.take()));
            report.messages += t.report.messages;
            report.chunks += t.report.chunks;
            report.topics.push(t.report);
        }

        // Metadata records.
        let s = |v: &dyn ToString| v.to_string();
        let mut m = BTreeMap::new();
        m.insert("machineDid".into(), report.machine_did.clone().unwrap_or_default());
        m.insert("tool".into(), format!("peaqos-stream {}", env!("CARGO_PKG_VERSION")));
        m.insert("topics".into(), report.topics.iter().map(|t| t.topic.as_str()).collect::<Vec<_>>().join(","));
        m.insert("key".into(), key_used.clone());
        m.insert("allowUnverified".into(), s(&o.allow_unverified));
        m.insert("verified".into(), s(&unverified.is_empty()));
        w.write_metadata(&mcap::records::Metadata { name: "peaqos.export".into(), metadata: m })
            .map_err(|e| mcap_err(out, e))?;
        for ((t, (_, notes)), (cdr_n, fallback)) in report.topics.iter().zip(&verification).zip(&cdr_counts) {
            let mut m = BTreeMap::new();
            m.insert("topic".into(), t.topic.clone());
            m.insert("cdrMessages".into(), s(cdr_n));
            m.insert("jsonMessages".into(), s(&(t.messages - cdr_n)));
            if let Some(f) = fallback {
                m.insert("jsonBecause".into(), f.clone());
            }
            m.insert("rosType".into(), o.ros_types.get(&t.topic).cloned().unwrap_or_default());
            m.insert("firstChunkId".into(), t.first_chunk_id.clone().unwrap_or_default());
            m.insert("lastChunkId".into(), t.last_chunk_id.clone().unwrap_or_default());
            m.insert("firstChunkIndex".into(), t.first_chunk_index.map(|v| v.to_string()).unwrap_or_default());
            m.insert("lastChunkIndex".into(), t.last_chunk_index.map(|v| v.to_string()).unwrap_or_default());
            m.insert("chunks".into(), s(&t.chunks));
            m.insert("messages".into(), s(&t.messages));
            m.insert("chunkSignerPublicKeyHex".into(), t.signer_public_key_hex.clone().unwrap_or_default());
            w.write_metadata(&mcap::records::Metadata { name: "peaqos.topic".into(), metadata: m })
                .map_err(|e| mcap_err(out, e))?;
            let mut v = BTreeMap::new();
            v.insert("topic".into(), t.topic.clone());
            for (i, n) in notes {
                v.insert(format!("chunk {i:>10}"), n.join("; "));
            }
            w.write_metadata(&mcap::records::Metadata { name: "peaqos.verification".into(), metadata: v })
                .map_err(|e| mcap_err(out, e))?;
        }
        if let Some(d) = o.dataset {
            let mut m = BTreeMap::new();
            m.insert("topic".into(), d.topic.clone());
            m.insert("merkleRoot".into(), d.merkle_root.clone());
            m.insert("merkleAlgorithm".into(), d.merkle_algorithm.clone());
            m.insert("firstIndex".into(), s(&d.first_index));
            m.insert("lastIndex".into(), s(&d.last_index));
            m.insert("chunkIds".into(), d.chunk_ids.join(","));
            m.insert("signer".into(), dataset_signer.clone().unwrap_or_default());
            m.insert("signature".into(), "verified".into());
            w.write_metadata(&mcap::records::Metadata { name: "peaqos.dataset".into(), metadata: m })
                .map_err(|e| mcap_err(out, e))?;
        }
        if !unverified.is_empty() {
            let m: BTreeMap<String, String> =
                unverified.iter().enumerate().map(|(i, u)| (format!("{i:08}"), u.clone())).collect();
            w.write_metadata(&mcap::records::Metadata { name: "peaqos.unverified".into(), metadata: m })
                .map_err(|e| mcap_err(out, e))?;
        }
        w.finish().map_err(|e| mcap_err(out, e))?;
        let mut bw = w.into_inner();
        bw.flush().map_err(|e| mcap_err(out, e))?;
        let f = bw.into_inner().map_err(|e| mcap_err(out, e.error()))?;
        report.output_bytes = f.stream_position().map_err(|e| mcap_err(out, e))?;
    }
    af.commit().map_err(StreamError::from)?;
    report.unverified = unverified;
    Ok(report)
}
