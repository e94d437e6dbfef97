//! Storage destinations for sealed chunk ciphertexts and the durable upload queue.
//!
//! Destinations ([`DestinationConfig`]):
//! * `local` — a directory (default: the chain's own directory, nothing copied); reference
//!   `file://<absolute path>`.
//! * `s3` — any S3-compatible endpoint, path-style `PUT/GET {endpoint}/{bucket}/{key}` signed
//!   with AWS Signature V4 (key `{prefix}/{topic_dir}/chunk-{index}.bin`); reference
//!   `s3://{bucket}/{key}` (the SDK CLI's form).
//! * `walrus` — `PUT {publisher}/v1/blobs?epochs=N[&permanent=true|&deletable=true]` with the ciphertext as body (optional
//!   `Authorization: Bearer`), blob id from `newlyCreated.blobObject.blobId` or
//!   `alreadyCertified.blobId`; read back with `GET {aggregator}/v1/blobs/{id}`; reference
//!   `walrus://{blobId}`.
//!
//! Upload queue: sealed chunks are uploaded strictly in index order. The queue is the chain
//! itself: every envelope at or after the cursor in `upload.json`
//! (`{"schema":"peaqos.stream.upload.v1","destination":…,"nextIndex":N}`) whose `storageRef` is
//! null is pending. After a successful upload the envelope's `storageRef` is set (atomic
//! rewrite; `storage_ref` is covered by neither `chunk_id` nor the signature, as in the SDK where
//! it is set after upload) and then the cursor advances. A destination that is down makes
//! [`upload_pending`] stop at that chunk and report it; nothing is lost, the next call retries.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tracing::{info, warn};

use crate::crypto::sha256;
use crate::envelope::Chunk;
use crate::error::{Result, StreamError};
use crate::store;

/// A secret string (credentials): redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

fn default_epochs() -> u32 {
    5
}
fn default_timeout() -> u64 {
    30
}
fn default_region() -> String {
    "us-east-1".into()
}

/// Where chunk ciphertexts go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DestinationConfig {
    Local {
        /// Copy target root; `None` = keep in the chain directory.
        #[serde(default)]
        dir: Option<PathBuf>,
    },
    S3 {
        endpoint: String,
        bucket: String,
        #[serde(default)]
        prefix: String,
        #[serde(default = "default_region")]
        region: String,
        access_key_id: String,
        secret_access_key: Secret,
        #[serde(default)]
        session_token: Option<Secret>,
        #[serde(default = "default_timeout")]
        timeout_secs: u64,
    },
    Walrus {
        publisher_url: String,
        aggregator_url: String,
        #[serde(default = "default_epochs")]
        epochs: u32,
        /// `Some(true)` adds `&permanent=true`, `Some(false)` adds `&deletable=true`, `None`
        /// leaves the publisher's default.
        #[serde(default)]
        permanent: Option<bool>,
        #[serde(default)]
        publisher_token: Option<Secret>,
        #[serde(default = "default_timeout")]
        timeout_secs: u64,
    },
}

impl Default for DestinationConfig {
    fn default() -> Self {
        DestinationConfig::Local { dir: None }
    }
}

/// A storage destination.
pub trait Destination: Send {
    /// Short name for logs and errors (`local`, `s3://bucket`, `walrus`).
    fn name(&self) -> String;
    /// Store one chunk's ciphertext; returns the storage reference.
    fn put(&self, topic_dir: &Path, chunk: &Chunk, ciphertext: &[u8]) -> Result<String>;
    /// Fetch the ciphertext behind a storage reference.
    fn get(&self, storage_ref: &str) -> Result<Vec<u8>>;
    /// True when the chain directory's own `<index>.bin` *is* this destination's copy (`local`
    /// without `dir`): chunk retention never deletes what such a destination stores.
    fn is_chain_dir(&self) -> bool {
        false
    }
}

/// Instantiate a destination.
pub fn destination(cfg: &DestinationConfig) -> Box<dyn Destination> {
    match cfg {
        DestinationConfig::Local { dir } => Box::new(LocalDestination { dir: dir.clone() }),
        DestinationConfig::S3 {
            endpoint,
            bucket,
            prefix,
            region,
            access_key_id,
            secret_access_key,
            session_token,
            timeout_secs,
        } => Box::new(S3Destination {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            bucket: bucket.clone(),
            prefix: prefix.trim_matches('/').to_string(),
            region: region.clone(),
            access_key_id: access_key_id.clone(),
            secret: secret_access_key.clone(),
            session_token: session_token.clone(),
            agent: agent(*timeout_secs),
        }),
        DestinationConfig::Walrus {
            publisher_url,
            aggregator_url,
            epochs,
            permanent,
            publisher_token,
            timeout_secs,
        } => Box::new(WalrusDestination {
            publisher: publisher_url.trim_end_matches('/').to_string(),
            aggregator: aggregator_url.trim_end_matches('/').to_string(),
            epochs: *epochs,
            permanent: *permanent,
            token: publisher_token.clone(),
            agent: agent(*timeout_secs),
        }),
    }
}

/// The blocking client of the one HTTP stack (peaqos_http); a client that could not be built is
/// reported by every request that needs it.
struct Agent(std::result::Result<peaqos_http::reqwest::blocking::Client, String>);

type Request = peaqos_http::reqwest::blocking::RequestBuilder;
type Response = peaqos_http::reqwest::blocking::Response;

fn agent(timeout_secs: u64) -> Agent {
    Agent(peaqos_http::blocking_client(Duration::from_secs(timeout_secs.max(1))).map_err(|e| e.to_string()))
}

impl Agent {
    fn request(&self, dest: &str, method: &str, url: &str) -> Result<Request> {
        let c = self.0.as_ref().map_err(|e| serr(dest, format!("HTTP client: {e}")))?;
        let m = peaqos_http::reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| serr(dest, e.to_string()))?;
        Ok(c.request(m, url))
    }
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Agent")
    }
}

fn serr(dest: &str, reason: impl Into<String>) -> StreamError {
    StreamError::Storage { destination: dest.to_string(), reason: reason.into() }
}

/// Send `req`; a transport failure or a non-2xx answer (with the start of its body) is an error.
fn send(dest: &str, what: &str, req: Request) -> Result<Response> {
    let resp = req.send().map_err(|e| serr(dest, format!("{what}: {e}")))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().unwrap_or_default();
    Err(serr(dest, format!("{what}: HTTP {}: {}", status.as_u16(), body.chars().take(300).collect::<String>())))
}

fn read_body(dest: &str, resp: Response) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    resp.take(1 << 32).read_to_end(&mut v).map_err(|e| serr(dest, format!("read body: {e}")))?;
    Ok(v)
}

/// Local directory destination.
#[derive(Debug)]
pub struct LocalDestination {
    dir: Option<PathBuf>,
}

impl Destination for LocalDestination {
    fn name(&self) -> String {
        "local".into()
    }
    fn is_chain_dir(&self) -> bool {
        self.dir.is_none()
    }
    fn put(&self, topic_dir: &Path, chunk: &Chunk, ciphertext: &[u8]) -> Result<String> {
        let path = match &self.dir {
            None => store::chunk_paths(topic_dir, chunk.index).1,
            Some(root) => {
                let name = topic_dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
                let d = root.join(name);
                std::fs::create_dir_all(&d).map_err(|e| StreamError::io("create directory", &d, e))?;
                let p = d.join(format!("chunk-{}.bin", chunk.index));
                store::write_atomic(&p, ciphertext)?;
                p
            }
        };
        let abs = std::fs::canonicalize(&path).map_err(|e| StreamError::io("resolve", &path, e))?;
        Ok(format!("file://{}", abs.display()))
    }
    fn get(&self, storage_ref: &str) -> Result<Vec<u8>> {
        let p = storage_ref
            .strip_prefix("file://")
            .ok_or_else(|| serr("local", format!("not a file:// reference: {storage_ref}")))?;
        store::read(Path::new(p))
    }
}

/// Walrus publisher/aggregator destination.
pub struct WalrusDestination {
    publisher: String,
    aggregator: String,
    epochs: u32,
    permanent: Option<bool>,
    token: Option<Secret>,
    agent: Agent,
}

/// Blob id of a Walrus publisher `PUT /v1/blobs` response.
pub fn walrus_blob_id(resp: &serde_json::Value) -> Option<String> {
    resp.pointer("/newlyCreated/blobObject/blobId")
        .or_else(|| resp.pointer("/alreadyCertified/blobId"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

impl Destination for WalrusDestination {
    fn name(&self) -> String {
        "walrus".into()
    }
    fn put(&self, _topic_dir: &Path, _chunk: &Chunk, ciphertext: &[u8]) -> Result<String> {
        let mut url = format!("{}/v1/blobs?epochs={}", self.publisher, self.epochs);
        match self.permanent {
            Some(true) => url.push_str("&permanent=true"),
            Some(false) => url.push_str("&deletable=true"),
            None => {}
        }
        let mut req = self.agent.request("walrus", "PUT", &url)?.header("content-type", "application/octet-stream");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {}", t.0));
        }
        let resp = send("walrus", "PUT /v1/blobs", req.body(ciphertext.to_vec()))?;
        let body = read_body("walrus", resp)?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| serr("walrus", format!("publisher response is not JSON: {e}")))?;
        let id = walrus_blob_id(&v).ok_or_else(|| {
            serr("walrus", "publisher response has neither newlyCreated.blobObject.blobId nor alreadyCertified.blobId")
        })?;
        Ok(format!("walrus://{id}"))
    }
    fn get(&self, storage_ref: &str) -> Result<Vec<u8>> {
        let id = storage_ref
            .strip_prefix("walrus://")
            .ok_or_else(|| serr("walrus", format!("not a walrus:// reference: {storage_ref}")))?;
        let req = self.agent.request("walrus", "GET", &format!("{}/v1/blobs/{id}", self.aggregator))?;
        let resp = send("walrus", "GET /v1/blobs", req)?;
        read_body("walrus", resp)
    }
}

/// S3-compatible destination (path-style, SigV4).
pub struct S3Destination {
    endpoint: String,
    bucket: String,
    prefix: String,
    region: String,
    access_key_id: String,
    secret: Secret,
    session_token: Option<Secret>,
    agent: Agent,
}

fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => o.push(b as char),
            b'/' if keep_slash => o.push('/'),
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// `(YYYYMMDD, YYYYMMDDTHHMMSSZ)` of a Unix time.
fn amz_dates(unix: u64) -> (String, String) {
    let days = (unix / 86400) as i64;
    let secs = unix % 86400;
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let date = format!("{y:04}{m:02}{d:02}");
    let ts = format!("{date}T{:02}{:02}{:02}Z", secs / 3600, (secs / 60) % 60, secs % 60);
    (date, ts)
}

impl S3Destination {
    fn key_for(&self, topic_dir: &Path, index: u64) -> String {
        let t = topic_dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let k = format!("{t}/chunk-{index}.bin");
        if self.prefix.is_empty() {
            k
        } else {
            format!("{}/{k}", self.prefix)
        }
    }

    fn request(&self, method: &str, key: &str, body: &[u8]) -> Result<Response> {
        let path = format!("/{}/{}", uri_encode(&self.bucket, false), uri_encode(key, true));
        let url = format!("{}{}", self.endpoint, path);
        let host =
            self.endpoint.split("://").nth(1).unwrap_or(&self.endpoint).split('/').next().unwrap_or("").to_string();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let (auth, headers) = sigv4_sign(
            &SigV4Request { method, path: &path, host: &host, body, unix_time: now },
            &self.region,
            &self.access_key_id,
            &self.secret.0,
            self.session_token.as_ref().map(|t| t.0.as_str()),
        );
        let mut req = self.agent.request(&self.name(), method, &url)?.header("authorization", auth);
        for (k, v) in &headers {
            if k != "host" {
                req = req.header(k.as_str(), v.as_str());
            }
        }
        if method == "PUT" {
            req = req.body(body.to_vec());
        }
        send(&self.name(), &format!("{method} {key}"), req)
    }
}

/// One S3 request to sign.
pub struct SigV4Request<'a> {
    pub method: &'a str,
    /// URI-encoded absolute path (`/bucket/key`), no query.
    pub path: &'a str,
    /// `host[:port]`.
    pub host: &'a str,
    pub body: &'a [u8],
    pub unix_time: u64,
}

/// AWS Signature V4 for S3 (no query string, signed headers `host`, `x-amz-content-sha256`,
/// `x-amz-date`[, `x-amz-security-token`]). Returns the `Authorization` value and the headers
/// to send (including `host`).
pub fn sigv4_sign(
    r: &SigV4Request<'_>,
    region: &str,
    access_key_id: &str,
    secret: &str,
    session_token: Option<&str>,
) -> (String, Vec<(String, String)>) {
    let (date, ts) = amz_dates(r.unix_time);
    let payload = hex::encode(sha256(r.body));
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), r.host.to_string()),
        ("x-amz-content-sha256".into(), payload.clone()),
        ("x-amz-date".into(), ts.clone()),
    ];
    if let Some(t) = session_token {
        headers.push(("x-amz-security-token".into(), t.to_string()));
    }
    headers.sort();
    let canon_headers: String = headers.iter().map(|(k, v)| format!("{k}:{}\n", v.trim())).collect();
    let signed: String = headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
    let creq = format!("{}\n{}\n\n{canon_headers}\n{signed}\n{payload}", r.method, r.path);
    let scope = format!("{date}/{region}/s3/aws4_request");
    let sts = format!("AWS4-HMAC-SHA256\n{ts}\n{scope}\n{}", hex::encode(sha256(creq.as_bytes())));
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, b"s3");
    let k = hmac(&k, b"aws4_request");
    let sig = hex::encode(hmac(&k, sts.as_bytes()));
    (format!("AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders={signed}, Signature={sig}"), headers)
}

impl Destination for S3Destination {
    fn name(&self) -> String {
        format!("s3://{}", self.bucket)
    }
    fn put(&self, topic_dir: &Path, chunk: &Chunk, ciphertext: &[u8]) -> Result<String> {
        let key = self.key_for(topic_dir, chunk.index);
        self.request("PUT", &key, ciphertext)?;
        Ok(format!("s3://{}/{key}", self.bucket))
    }
    fn get(&self, storage_ref: &str) -> Result<Vec<u8>> {
        let rest = storage_ref
            .strip_prefix(&format!("s3://{}/", self.bucket))
            .ok_or_else(|| serr(&self.name(), format!("reference {storage_ref} is not in this bucket")))?;
        let resp = self.request("GET", rest, b"")?;
        read_body(&self.name(), resp)
    }
}

/// Upload cursor file name.
pub const UPLOAD_FILE: &str = "upload.json";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UploadCursor {
    schema: String,
    destination: String,
    next_index: u64,
}

/// Result of one [`upload_pending`] pass.
#[derive(Debug, Default)]
pub struct UploadReport {
    /// `(index, storage_ref)` stored in this pass.
    pub stored: Vec<(u64, String)>,
    /// The chunk that failed (it and every later chunk stay queued) and why.
    pub failed: Option<(u64, StreamError)>,
    /// Chunks still pending after this pass.
    pub pending: u64,
}

/// Upload, in index order, every sealed chunk of `topic_dir` not yet stored (at most `max`).
/// The primary destination: its reference goes into the envelope's `storageRef`.
pub fn upload_pending(topic_dir: &Path, dest: &dyn Destination, max: usize) -> Result<UploadReport> {
    upload_pending_slot(topic_dir, dest, max, 0)
}

/// Index of the next chunk destination `slot` will upload (its durable cursor): every chunk
/// below it is stored there (or was already, for the primary slot). 0 before the first upload.
pub fn slot_next_index(topic_dir: &Path, slot: usize) -> Result<u64> {
    let cpath = if slot == 0 { topic_dir.join(UPLOAD_FILE) } else { topic_dir.join(format!("upload-{slot}.json")) };
    if !cpath.exists() {
        return Ok(0);
    }
    let c: UploadCursor = store::load_json(&cpath)?;
    Ok(c.next_index)
}

/// Name of the sidecar of chunk `index` listing every destination's storage reference.
pub fn refs_path(topic_dir: &Path, index: u64) -> PathBuf {
    topic_dir.join(format!("{index}.refs.json"))
}

/// `<index>.refs.json`: `{"schema":"peaqos.stream.refs.v1","refs":{"<slot>:<destination>":"<ref>"}}`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRefs {
    pub schema: String,
    pub refs: std::collections::BTreeMap<String, String>,
}

fn record_ref(topic_dir: &Path, index: u64, slot: usize, dest: &str, r: &str) -> Result<()> {
    let p = refs_path(topic_dir, index);
    let mut refs: ChunkRefs = if p.exists() {
        store::load_json(&p)?
    } else {
        ChunkRefs { schema: "peaqos.stream.refs.v1".into(), ..Default::default() }
    };
    refs.refs.insert(format!("{slot}:{dest}"), r.to_string());
    Ok(store::write_atomic(&p, &store::to_json_bytes(&refs, "chunk storage refs")?)?)
}

/// [`upload_pending`] for destination number `slot` of a topic (several at once): slot 0 is the
/// primary (cursor `upload.json`, reference in the envelope's `storageRef`); slot `k > 0` has
/// its own cursor `upload-<k>.json`. Every slot records its reference in `<index>.refs.json`.
/// Each slot's queue is independent: a destination that is down delays only its own uploads.
pub fn upload_pending_slot(topic_dir: &Path, dest: &dyn Destination, max: usize, slot: usize) -> Result<UploadReport> {
    let cpath = if slot == 0 { topic_dir.join(UPLOAD_FILE) } else { topic_dir.join(format!("upload-{slot}.json")) };
    let mut cursor: UploadCursor = if cpath.exists() {
        store::load_json(&cpath)?
    } else {
        UploadCursor { schema: "peaqos.stream.upload.v1".into(), destination: dest.name(), next_index: 0 }
    };
    let indices: Vec<u64> = store::sealed_indices(topic_dir)?.into_iter().filter(|&i| i >= cursor.next_index).collect();
    let mut rep = UploadReport::default();
    for (n, &i) in indices.iter().enumerate() {
        if n >= max {
            rep.pending = (indices.len() - n) as u64;
            break;
        }
        let mut c = store::load_chunk(topic_dir, i)?;
        if slot > 0 || c.storage_ref.is_none() {
            let ct = store::read(&store::chunk_paths(topic_dir, i).1)?;
            match dest.put(topic_dir, &c, &ct) {
                Ok(r) => {
                    record_ref(topic_dir, i, slot, &dest.name(), &r)?;
                    if slot == 0 {
                        c.storage_ref = Some(r.clone());
                        store::store_chunk_envelope(topic_dir, &c)?;
                    }
                    info!(index = i, chunk_id = %c.chunk_id, storage_ref = %r, "chunk stored");
                    rep.stored.push((i, r));
                }
                Err(e) => {
                    warn!(index = i, chunk_id = %c.chunk_id, destination = %dest.name(), error = %e, "upload failed; chunk stays queued");
                    rep.pending = (indices.len() - n) as u64;
                    rep.failed = Some((i, e));
                    break;
                }
            }
        }
        cursor.next_index = i + 1;
        store::write_atomic(&cpath, &store::to_json_bytes(&cursor, "upload cursor")?)?;
    }
    Ok(rep)
}

/// [`upload_pending_slot`] one chunk at a time until the queue is empty, a chunk fails, or
/// `deadline` has passed (checked before each chunk, so it is overrun by at most one upload,
/// itself bounded by the destination's timeout). For a clean stop: the node tries its last
/// uploads in bounded time and reports what is left (`pending`, `failed`) for the next start.
pub fn upload_until(
    topic_dir: &Path,
    dest: &dyn Destination,
    slot: usize,
    deadline: std::time::Instant,
) -> Result<UploadReport> {
    let mut total = UploadReport::default();
    loop {
        let max = usize::from(std::time::Instant::now() < deadline);
        let r = upload_pending_slot(topic_dir, dest, max, slot)?;
        total.stored.extend(r.stored);
        total.pending = r.pending;
        total.failed = r.failed;
        // Each pass with max 1 moves the cursor past one chunk unless it failed: this ends.
        if max == 0 || total.failed.is_some() || total.pending == 0 {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn amz_date_format() {
        assert_eq!(amz_dates(0), ("19700101".into(), "19700101T000000Z".into()));
        assert_eq!(amz_dates(1_764_033_600), ("20251125".into(), "20251125T012000Z".into()));
        assert_eq!(amz_dates(951_782_400), ("20000229".into(), "20000229T000000Z".into()));
    }
    #[test]
    fn walrus_ids() {
        let a = serde_json::json!({"newlyCreated":{"blobObject":{"blobId":"abc"}}});
        let b = serde_json::json!({"alreadyCertified":{"blobId":"def"}});
        assert_eq!(walrus_blob_id(&a).as_deref(), Some("abc"));
        assert_eq!(walrus_blob_id(&b).as_deref(), Some("def"));
        assert_eq!(walrus_blob_id(&serde_json::json!({})), None);
    }
    #[test]
    fn secrets_redacted() {
        let c = DestinationConfig::S3 {
            endpoint: "http://x".into(),
            bucket: "b".into(),
            prefix: String::new(),
            region: "r".into(),
            access_key_id: "AK".into(),
            secret_access_key: Secret("supersecret".into()),
            session_token: None,
            timeout_secs: 1,
        };
        assert!(!format!("{c:?}").contains("supersecret"));
    }
}
