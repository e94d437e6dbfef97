//! The local delivery endpoint (optional): buyers download the ciphertexts of exactly the chunks
//! they bought straight from the robot over HTTP, with a bearer token and HTTP Range.
//!
//! ```text
//! GET|HEAD /purchases/{id}                       {purchaseId, chunks: [{chunkId, index, size, url, envelopeUrl}]}
//! GET|HEAD /purchases/{id}/chunks/{chunkId}      the ciphertext (Range: bytes=a-b | a- | -n → 206)
//! GET|HEAD /purchases/{id}/chunks/{chunkId}/envelope   the chunk envelope (JSON)
//! ```
//!
//! Every request carries `Authorization: Bearer <token>`. The token of a purchase is derived,
//! never stored: HMAC-SHA256 of the purchase id under a key derived from the machine key, so a
//! repeated prepare-access hands over the same token and the endpoint checks it by recomputing
//! it (constant time). It is valid while the purchase record is at `access_prepared` or later
//! and until the expiry stored in it; it opens only that purchase's chunks. The buyer gets it
//! through the orchestrator as the delivery's `connect.url`
//! (`<public url>/purchases/<id>#bearer=<token>`; the fragment is never sent in a request).
//! The chunk keys still come only through the buyer-access grants: the endpoint serves
//! ciphertext. Answers: 401 (no or wrong token), 403 (a chunk not bought), 404 (no such
//! purchase, or not yet prepared), 410 (expired, or the local copy was removed by retention:
//! the envelope's `storageRef` has it), 416 (an unsatisfiable range); never a panic.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT_RANGES, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::purchases::{PurchaseRecord, PurchaseState, PurchaseStore};

/// Transport id of this delivery (the capability and the listings' delivery option).
pub const TRANSPORT_ID: &str = "peaqos-http";
/// `connect.type` handed to the buyer.
pub const CONNECT_TYPE: &str = "peaqos-http-url";
/// Connections served at once; further ones wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 16;

/// What the transport offers.
pub const FEATURES: [&str; 4] = ["chunks.v1", "buyer-access.v1", "http-range", "bearer-token"];

/// The endpoint's settings.
#[derive(Clone)]
pub struct HttpDelivery {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The base URL buyers reach it at (no trailing slash).
    pub public_url: String,
    /// How long a purchase's token is valid after its access was prepared.
    pub token_ttl: Duration,
    /// The token key (derived from the machine key; never stored).
    pub token_key: Arc<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for HttpDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpDelivery").field("listen", &self.listen).field("public_url", &self.public_url).finish()
    }
}

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

/// Unix ms as RFC 3339 with milliseconds.
pub fn rfc3339_ms(ms: u64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or_default();
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl HttpDelivery {
    /// The bearer token of purchase `id` (hex HMAC-SHA256).
    pub fn token(&self, purchase_id: &str) -> Zeroizing<String> {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.token_key[..]).expect("any key length");
        mac.update(b"peaqos-delivery-v1:");
        mac.update(purchase_id.as_bytes());
        Zeroizing::new(hex::encode(mac.finalize().into_bytes()))
    }

    pub fn expires_ms_from_now(&self) -> u64 {
        now_ms().saturating_add(u64::try_from(self.token_ttl.as_millis()).unwrap_or(u64::MAX))
    }

    /// The `connect.url` of purchase `id` (carries its token in the fragment).
    pub fn connect_url(&self, purchase_id: &str) -> String {
        format!("{}/purchases/{purchase_id}#bearer={}", self.public_url, self.token(purchase_id).as_str())
    }
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, body: impl Into<Bytes>, content_type: &str) -> Answer {
    let body: Bytes = body.into();
    let mut r = Response::new(Full::new(body.clone()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("text/plain")));
    h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    r
}

/// A refused request: its status, code and message (the answer body `{error:{code,message}}`).
#[derive(Debug, Clone, Copy)]
struct Refusal(StatusCode, &'static str, &'static str);

impl From<Refusal> for Answer {
    fn from(Refusal(status, code, message): Refusal) -> Answer {
        error(status, code, message)
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Answer {
    let body = json!({"error": {"code": code, "message": message}}).to_string();
    answer(status, body, "application/json")
}

/// A single byte range of a `len`-byte body: `Ok(None)` without a usable Range header (the whole
/// body), `Err(())` when it cannot be satisfied.
fn byte_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None); // several ranges: answered with the whole body (RFC 9110 allows it)
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| ());
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (false, false) => (num(a)?, num(b)?.min(len.saturating_sub(1))),
        (false, true) => (num(a)?, len.saturating_sub(1)),
        (true, false) => {
            let n = num(b)?;
            if n == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len.saturating_sub(1))
        }
        (true, true) => return Err(()),
    };
    if len == 0 || start >= len || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// What a request is for.
enum Target<'a> {
    Listing,
    Chunk(&'a str),
    Envelope(&'a str),
}

fn route(path: &str) -> Option<(&str, Target<'_>)> {
    let rest = path.strip_prefix("/purchases/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [id] => Some((id, Target::Listing)),
        [id, "chunks", c] => Some((id, Target::Chunk(c))),
        [id, "chunks", c, "envelope"] => Some((id, Target::Envelope(c))),
        _ => None,
    }
}

/// The server's state.
struct Server {
    cfg: HttpDelivery,
    store: PurchaseStore,
    stream_dir: PathBuf,
}

impl Server {
    /// The purchase a token opens, or the answer refusing it.
    fn authorize(&self, id: &str, auth: Option<&str>) -> Result<PurchaseRecord, Refusal> {
        let Some(given) = auth.and_then(|a| a.strip_prefix("Bearer ")) else {
            return Err(Refusal(StatusCode::UNAUTHORIZED, "AUTH_REQUIRED", "Authorization: Bearer <token> required"));
        };
        let rec = match self.store.load(id) {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return Err(Refusal(StatusCode::NOT_FOUND, "NOT_FOUND", "no such purchase")),
        };
        let want = self.cfg.token(id);
        if !constant_time_eq(given.trim().as_bytes(), want.as_bytes()) {
            return Err(Refusal(StatusCode::UNAUTHORIZED, "AUTH_INVALID", "the token does not open this purchase"));
        }
        let prepared =
            matches!(rec.state, PurchaseState::AccessPrepared | PurchaseState::Delivered | PurchaseState::Recorded);
        if !prepared {
            return Err(Refusal(StatusCode::NOT_FOUND, "STREAM_DELIVERY_NOT_READY", "access is not prepared"));
        }
        if rec.delivery_expires_ms.is_none_or(|t| now_ms() > t) {
            return Err(Refusal(StatusCode::GONE, "DELIVERY_EXPIRED", "this purchase's delivery has expired"));
        }
        Ok(rec)
    }

    fn chunk_file(&self, rec: &PurchaseRecord, chunk_id: &str, envelope: bool) -> Result<PathBuf, Refusal> {
        let pos = rec.chunk_ids.iter().position(|c| c.eq_ignore_ascii_case(chunk_id));
        let Some(index) = pos.and_then(|p| rec.chunk_indices.get(p).copied()) else {
            return Err(Refusal(
                StatusCode::FORBIDDEN,
                "AGENT_POLICY_DENIED",
                "this chunk is not part of the purchase",
            ));
        };
        let dir = peaqos_stream::store::topic_dir(&self.stream_dir, &rec.topic)
            .map_err(|_| Refusal(StatusCode::NOT_FOUND, "NOT_FOUND", "the topic has no chunk chain here"))?;
        let (json, bin, _) = peaqos_stream::store::chunk_paths(&dir, index);
        Ok(if envelope { json } else { bin })
    }

    fn listing(&self, rec: &PurchaseRecord) -> Answer {
        let dir = peaqos_stream::store::topic_dir(&self.stream_dir, &rec.topic).ok();
        let chunks: Vec<_> = rec
            .chunk_ids
            .iter()
            .zip(&rec.chunk_indices)
            .map(|(c, i)| {
                let size =
                    dir.as_ref().and_then(|d| std::fs::metadata(peaqos_stream::store::chunk_paths(d, *i).1).ok());
                let base = format!("{}/purchases/{}/chunks/{c}", self.cfg.public_url, rec.purchase_id);
                json!({"chunkId": c, "index": i, "size": size.map(|m| m.len()), "url": base,
                       "envelopeUrl": format!("{base}/envelope")})
            })
            .collect();
        let body = json!({"purchaseId": rec.purchase_id, "topic": rec.topic, "chunks": chunks}).to_string();
        answer(StatusCode::OK, body, "application/json")
    }

    async fn handle(&self, req: &Request<Incoming>) -> Answer {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "GET or HEAD");
        }
        let Some((id, target)) = route(req.uri().path()) else {
            return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such path");
        };
        let auth = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let rec = match self.authorize(id, auth) {
            Ok(r) => r,
            Err(refused) => return refused.into(),
        };
        let (chunk, envelope) = match target {
            Target::Listing => return self.listing(&rec),
            Target::Chunk(c) => (c, false),
            Target::Envelope(c) => (c, true),
        };
        let path = match self.chunk_file(&rec, chunk, envelope) {
            Ok(p) => p,
            Err(refused) => return refused.into(),
        };
        let range = req.headers().get(hyper::header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        serve_file(&path, range.as_deref(), envelope).await
    }
}

/// Equality of two byte strings without an early exit (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

async fn serve_file(path: &Path, range: Option<&str>, envelope: bool) -> Answer {
    let data = match tokio::fs::read(path).await {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return error(StatusCode::GONE, "NOT_HERE", "the local copy is gone; the envelope's storageRef has it")
        }
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "IO_ERROR", "the chunk could not be read"),
    };
    let ct = if envelope { "application/json" } else { "application/octet-stream" };
    let len = data.len() as u64;
    match byte_range(range, len) {
        Ok(None) => answer(StatusCode::OK, data, ct),
        Ok(Some((a, b))) => {
            let part = data[a as usize..=b as usize].to_vec();
            let mut r = answer(StatusCode::PARTIAL_CONTENT, part, ct);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{len}")) {
                r.headers_mut().insert(CONTENT_RANGE, v);
            }
            r
        }
        Err(()) => {
            let mut r =
                error(StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_NOT_SATISFIABLE", "the range is outside the chunk");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(CONTENT_RANGE, v);
            }
            r
        }
    }
}

/// Serve on `listener` (bound by the caller, non-blocking, so that an address in use is a start
/// error) until `shutdown` turns true.
pub async fn serve(
    cfg: HttpDelivery,
    listener: std::net::TcpListener,
    store: PurchaseStore,
    stream_dir: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tracing::info!(listen = %cfg.listen, url = %cfg.public_url, "market: local delivery endpoint listening");
    let server = Arc::new(Server { cfg, store, stream_dir });
    // Each connection reads at most one chunk into memory at a time: bounding the connections
    // bounds the endpoint's memory by bytes (MAX_CONNECTIONS × the largest chunk).
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            s = Arc::clone(&slots).acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => return Ok(()),
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "market: delivery endpoint accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let _slot = slot; // released when the connection ends
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let server = Arc::clone(&server);
                async move {
                    let mut a = server.handle(&req).await;
                    if req.method() == Method::HEAD {
                        let headers = std::mem::take(a.headers_mut());
                        let status = a.status();
                        a = Response::new(Full::new(Bytes::new()));
                        *a.status_mut() = status;
                        *a.headers_mut() = headers;
                    }
                    Ok::<_, std::convert::Infallible>(a)
                }
            });
            let io = hyper_util::rt::TokioIo::new(tcp);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "market: delivery connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(byte_range(None, 10), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-4"), 10), Ok(Some((0, 4))));
        assert_eq!(byte_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(byte_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(byte_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(byte_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(byte_range(Some("items=0-1"), 10), Ok(None));
        for bad in ["bytes=10-", "bytes=5-4", "bytes=-0", "bytes=-", "bytes=x-1", "bytes=1"] {
            assert_eq!(byte_range(Some(bad), 10), Err(()), "{bad}");
        }
        assert_eq!(byte_range(Some("bytes=0-0"), 0), Err(()));
    }

    fn record(id: &str, state: PurchaseState, expires_ms: Option<u64>) -> PurchaseRecord {
        serde_json::from_value(json!({
            "version": 1, "purchaseId": id, "listingId": "lst_1", "topic": "/cam", "buyerId": "b",
            "buyerPublicKeyHex": "22".repeat(32), "state": state, "chunkIds": ["0xaa"], "chunkIndices": [0],
            "deliveryExpiresMs": expires_ms}))
        .unwrap()
    }

    #[test]
    fn a_token_opens_its_prepared_unexpired_purchase_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = PurchaseStore::open(dir.path()).unwrap();
        let cfg = HttpDelivery {
            listen: "127.0.0.1:0".parse().unwrap(),
            public_url: "http://robot".into(),
            token_ttl: Duration::from_secs(60),
            token_key: Arc::new(Zeroizing::new([9; 32])),
        };
        let later = now_ms() + 60_000;
        store.save(&record("p_ok", PurchaseState::Delivered, Some(later))).unwrap();
        store.save(&record("p_old", PurchaseState::Recorded, Some(now_ms() - 1))).unwrap();
        store.save(&record("p_paid", PurchaseState::Paid, Some(later))).unwrap();
        let server = Server { cfg: cfg.clone(), store, stream_dir: dir.path().join("stream") };
        let bearer = |id: &str| format!("Bearer {}", cfg.token(id).as_str());
        let code = |r: Result<PurchaseRecord, Refusal>| r.map(|_| "ok").unwrap_or_else(|Refusal(_, c, _)| c);
        assert_eq!(code(server.authorize("p_ok", Some(&bearer("p_ok")))), "ok");
        assert_eq!(code(server.authorize("p_ok", Some(&bearer("p_old")))), "AUTH_INVALID");
        assert_eq!(code(server.authorize("p_ok", None)), "AUTH_REQUIRED");
        assert_eq!(code(server.authorize("p_old", Some(&bearer("p_old")))), "DELIVERY_EXPIRED");
        assert_eq!(code(server.authorize("p_paid", Some(&bearer("p_paid")))), "STREAM_DELIVERY_NOT_READY");
        assert_eq!(code(server.authorize("nope", Some(&bearer("nope")))), "NOT_FOUND");
        let rec = server.authorize("p_ok", Some(&bearer("p_ok"))).unwrap();
        assert!(matches!(server.chunk_file(&rec, "0xbb", false), Err(Refusal(StatusCode::FORBIDDEN, ..))));
        assert!(server.chunk_file(&rec, "0xAA", false).unwrap().ends_with("cam/0.bin"));
    }

    #[tokio::test]
    async fn connections_beyond_the_bound_wait_for_a_free_slot() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let cfg = HttpDelivery {
            listen: addr,
            public_url: format!("http://{addr}"),
            token_ttl: Duration::from_secs(60),
            token_key: Arc::new(Zeroizing::new([1; 32])),
        };
        let (_stop, stop_rx) = watch::channel(false);
        let store = PurchaseStore::open(dir.path()).unwrap();
        tokio::spawn(serve(cfg, listener, store, dir.path().join("stream"), stop_rx));
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap()); // each holds a slot
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ask = move || async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET /purchases/p HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
            let mut buf = Vec::new();
            c.read_to_end(&mut buf).await.map(|_| String::from_utf8_lossy(&buf).into_owned())
        };
        let waiting = tokio::spawn(ask());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished(), "a connection beyond the bound is not served while all slots are taken");
        drop(idle.pop());
        let answer = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }

    #[test]
    fn routes_and_tokens() {
        assert!(matches!(route("/purchases/p1"), Some(("p1", Target::Listing))));
        assert!(matches!(route("/purchases/p1/chunks/0xab"), Some(("p1", Target::Chunk("0xab")))));
        assert!(matches!(route("/purchases/p1/chunks/0xab/envelope"), Some(("p1", Target::Envelope("0xab")))));
        assert!(route("/purchases/p1/other").is_none() && route("/").is_none());
        let d = HttpDelivery {
            listen: "127.0.0.1:0".parse().unwrap(),
            public_url: "http://robot:8089".into(),
            token_ttl: Duration::from_secs(60),
            token_key: Arc::new(Zeroizing::new([7; 32])),
        };
        assert_eq!(d.token("p1").as_str(), d.token("p1").as_str());
        assert_ne!(d.token("p1").as_str(), d.token("p2").as_str());
        assert!(d.connect_url("p1").starts_with("http://robot:8089/purchases/p1#bearer="));
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"a", b"ab")
        );
    }
}
