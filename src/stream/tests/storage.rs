//! Storage destinations and the durable upload queue: Walrus against a local HTTP server that
//! speaks the publisher/aggregator shapes (and can be "down"), S3 against a real S3-compatible
//! server (`moto_server` from the `moto[server]` PyPI package; the test fails saying how to install it if absent),
//! SigV4 signatures against botocore, and the local directory destination.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peaqos_stream::keys::MachineStreamKeys;
use peaqos_stream::storage::{
    destination, sigv4_sign, upload_pending, upload_until, DestinationConfig, Secret, SigV4Request,
};
use peaqos_stream::store;
use peaqos_stream::verify::verify_dir;
use peaqos_stream::writer::{ChunkPolicy, ChunkWriter, Recipients};

const SECRET: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

fn chain(data: &Path, n: u64) -> (ChunkWriter, PathBuf) {
    let k = MachineStreamKeys::from_secret_hex(SECRET).unwrap();
    let did = k.default_did();
    let policy = ChunkPolicy { max_bytes: 1 << 20, max_messages: 2, max_age: Duration::from_secs(60) };
    let (mut w, _) =
        ChunkWriter::open(data, "/lidar/points", policy, &k, &did, &format!("{did}#keys-1"), &Recipients::default())
            .unwrap();
    for i in 0..n * 2 {
        w.append(format!("{{\"sequenceNumber\":{i}}}").as_bytes()).unwrap();
    }
    let d = w.dir().to_path_buf();
    (w, d)
}

/// Minimal Walrus publisher + aggregator.
struct Walrus {
    url: String,
    down: Arc<AtomicBool>,
    puts: Arc<Mutex<Vec<String>>>,
}

fn read_request(s: &mut TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut first = String::new();
    r.read_line(&mut first).ok()?;
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some((method, target, body))
}

fn respond(s: &mut TcpStream, code: u16, body: &[u8]) {
    let _ = write!(s, "HTTP/1.1 {code} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
    let _ = s.write_all(body);
}

fn start_walrus() -> Walrus {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let down = Arc::new(AtomicBool::new(false));
    let puts = Arc::new(Mutex::new(Vec::new()));
    let (d2, p2) = (down.clone(), puts.clone());
    std::thread::spawn(move || {
        let mut blobs: HashMap<String, Vec<u8>> = HashMap::new();
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let Some((m, t, body)) = read_request(&mut s) else { continue };
            if d2.load(Ordering::SeqCst) {
                respond(&mut s, 503, b"publisher unavailable");
                continue;
            }
            if m == "PUT" && t.starts_with("/v1/blobs?epochs=") {
                let id = hex::encode(&peaqos_stream::crypto::sha256(&body)[..16]);
                p2.lock().unwrap().push(t.clone());
                let resp = if blobs.contains_key(&id) {
                    serde_json::json!({"alreadyCertified": {"blobId": id, "endEpoch": 10}})
                } else {
                    blobs.insert(id.clone(), body);
                    serde_json::json!({"newlyCreated": {"blobObject": {"blobId": id, "id": "0x1"}, "cost": 1}})
                };
                respond(&mut s, 200, resp.to_string().as_bytes());
            } else if let (true, Some(id)) = (m == "GET", t.strip_prefix("/v1/blobs/")) {
                match blobs.get(id) {
                    Some(b) => respond(&mut s, 200, b),
                    None => respond(&mut s, 404, b"not found"),
                }
            } else {
                respond(&mut s, 400, b"bad request");
            }
        }
    });
    Walrus { url, down, puts }
}

#[test]
fn walrus_down_delays_never_loses_then_stores_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut w, d) = chain(tmp.path(), 3);
    let wal = start_walrus();
    let dest = destination(&DestinationConfig::Walrus {
        publisher_url: wal.url.clone(),
        aggregator_url: wal.url.clone(),
        epochs: 3,
        permanent: None,
        publisher_token: Some(Secret("tok".into())),
        timeout_secs: 5,
    });
    wal.down.store(true, Ordering::SeqCst);
    let r = upload_pending(&d, dest.as_ref(), 100).unwrap();
    assert!(r.stored.is_empty());
    let (idx, err) = r.failed.unwrap();
    assert_eq!(idx, 0);
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(r.pending, 3);
    assert!(store::load_chunk(&d, 0).unwrap().storage_ref.is_none());
    wal.down.store(false, Ordering::SeqCst);
    let r = upload_pending(&d, dest.as_ref(), 2).unwrap();
    assert_eq!(r.stored.len(), 2);
    assert_eq!(r.pending, 1);
    let r = upload_pending(&d, dest.as_ref(), 100).unwrap();
    assert_eq!(r.stored.iter().map(|s| s.0).collect::<Vec<_>>(), vec![2]);
    assert!(wal.puts.lock().unwrap().iter().all(|t| t == "/v1/blobs?epochs=3"));
    for i in 0..3 {
        let c = store::load_chunk(&d, i).unwrap();
        let r = c.storage_ref.clone().unwrap();
        assert!(r.starts_with("walrus://"));
        assert_eq!(dest.get(&r).unwrap(), std::fs::read(store::chunk_paths(&d, i).1).unwrap());
    }
    // storage_ref set after sealing keeps the chain valid; a new chunk continues the queue.
    verify_dir(&d, None).unwrap();
    w.append(b"{\"x\":1}").unwrap();
    w.append(b"{\"x\":2}").unwrap().unwrap();
    let r = upload_pending(&d, dest.as_ref(), 100).unwrap();
    assert_eq!(r.stored.iter().map(|s| s.0).collect::<Vec<_>>(), vec![3]);
    assert!(upload_pending(&d, dest.as_ref(), 100).unwrap().stored.is_empty());
    // a Walrus reference that does not exist is an error naming the destination
    assert!(dest.get("walrus://nope").unwrap_err().to_string().contains("walrus"));
}

#[test]
fn local_destination_copy_and_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let (_w, d) = chain(tmp.path(), 2);
    let copy = tmp.path().join("copies");
    let dest = destination(&DestinationConfig::Local { dir: Some(copy.clone()) });
    let r = upload_pending(&d, dest.as_ref(), 10).unwrap();
    assert_eq!(r.stored.len(), 2);
    for (i, sref) in &r.stored {
        assert!(sref.starts_with("file://"));
        assert_eq!(dest.get(sref).unwrap(), std::fs::read(store::chunk_paths(&d, *i).1).unwrap());
    }
    let tmp2 = tempfile::tempdir().unwrap();
    let (_w2, d2) = chain(tmp2.path(), 1);
    let r = upload_pending(&d2, destination(&DestinationConfig::default()).as_ref(), 10).unwrap();
    assert!(r.stored[0].1.ends_with("/0.bin"));
}

#[test]
fn upload_until_stops_at_the_deadline_or_a_failure_and_says_what_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let (_w, d) = chain(tmp.path(), 3);
    let dest = destination(&DestinationConfig::Local { dir: Some(tmp.path().join("copies")) });
    // a deadline already passed: nothing is tried, everything is reported as left
    let r = upload_until(&d, dest.as_ref(), 0, std::time::Instant::now()).unwrap();
    assert!(r.stored.is_empty() && r.failed.is_none());
    assert_eq!(r.pending, 3);
    // time enough: every chunk is stored, nothing is left
    let r = upload_until(&d, dest.as_ref(), 0, std::time::Instant::now() + Duration::from_secs(60)).unwrap();
    assert_eq!(r.stored.iter().map(|s| s.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(r.pending, 0);
    assert!(store::load_chunk(&d, 2).unwrap().storage_ref.is_some());
    // a destination that is down: one failure ends the attempt, the rest is left queued
    let wal = start_walrus();
    wal.down.store(true, Ordering::SeqCst);
    let down = destination(&DestinationConfig::Walrus {
        publisher_url: wal.url.clone(),
        aggregator_url: wal.url.clone(),
        epochs: 1,
        permanent: None,
        publisher_token: None,
        timeout_secs: 5,
    });
    let t0 = std::time::Instant::now();
    let r = upload_until(&d, down.as_ref(), 1, t0 + Duration::from_secs(60)).unwrap();
    assert_eq!((r.stored.len(), r.pending, r.failed.map(|f| f.0)), (0, 3, Some(0)));
    assert!(t0.elapsed() < Duration::from_secs(30), "gave up at the failure, not at the deadline");
}

use peaqos_testkit::sdk_python as python;

#[test]
fn sigv4_matches_botocore() {
    let py = python();
    let body = b"chunk ciphertext \x00\x01";
    let (auth, _) = sigv4_sign(
        &SigV4Request {
            method: "PUT",
            path: "/bucket/pre%20fix/topic.x/chunk-3.bin",
            host: "127.0.0.1:9000",
            body,
            unix_time: 1_764_033_600,
        },
        "eu-central-1",
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
    );
    let script = r#"
import sys, hashlib
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
body = b"chunk ciphertext \x00\x01"
req = AWSRequest(method="PUT", url="http://127.0.0.1:9000/bucket/pre%20fix/topic.x/chunk-3.bin", data=body)
req.context["timestamp"] = "20251125T012000Z"
req.headers["X-Amz-Date"] = "20251125T012000Z"
req.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
a = S3SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "s3", "eu-central-1")
cr = a.canonical_request(req)
sts = a.string_to_sign(req, cr)
sig = a.signature(sts, req)
print(sig)
"#;
    let out = Command::new(py).arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "botocore (installed with moto[server], see scripts/test) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sig = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(auth.ends_with(&format!("Signature={sig}")), "ours {auth} vs botocore {sig}");
    assert!(auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date"));
}

struct Moto(Child);
impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn s3_against_moto_server() {
    let moto = peaqos_testkit::moto_server();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _srv = Moto(
        Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut up = false;
    let http = peaqos_http::blocking_client(Duration::from_secs(2)).unwrap();
    for _ in 0..100 {
        if http.put(format!("{endpoint}/chunks")).send().is_ok_and(|r| r.status().is_success()) {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(up, "moto_server did not start");
    let tmp = tempfile::tempdir().unwrap();
    let (_w, d) = chain(tmp.path(), 3);
    let cfg: DestinationConfig = serde_json::from_value(serde_json::json!({
        "kind": "s3", "endpoint": endpoint, "bucket": "chunks", "prefix": "peaq-stream",
        "access_key_id": "testing", "secret_access_key": "testing"
    }))
    .unwrap();
    let dest = destination(&cfg);
    let r = upload_pending(&d, dest.as_ref(), 100).unwrap();
    assert!(r.failed.is_none(), "{:?}", r.failed);
    assert_eq!(r.stored.len(), 3);
    assert_eq!(r.stored[1].1, "s3://chunks/peaq-stream/lidar.points/chunk-1.bin");
    for (i, sref) in &r.stored {
        assert_eq!(dest.get(sref).unwrap(), std::fs::read(store::chunk_paths(&d, *i).1).unwrap());
        assert_eq!(store::load_chunk(&d, *i).unwrap().storage_ref.as_deref(), Some(sref.as_str()));
    }
    // a missing bucket is a storage error, chunk stays queued
    let tmp2 = tempfile::tempdir().unwrap();
    let (_w2, d2) = chain(tmp2.path(), 1);
    let bad: DestinationConfig = serde_json::from_value(serde_json::json!({
        "kind": "s3", "endpoint": format!("http://127.0.0.1:{port}"), "bucket": "nobucket",
        "access_key_id": "testing", "secret_access_key": "testing"
    }))
    .unwrap();
    let r = upload_pending(&d2, destination(&bad).as_ref(), 10).unwrap();
    assert!(r.failed.unwrap().1.to_string().contains("s3://nobucket"));
    assert!(store::load_chunk(&d2, 0).unwrap().storage_ref.is_none());
    // unknown config fields are rejected
    assert!(serde_json::from_value::<DestinationConfig>(serde_json::json!({"kind":"local","dri":"x"})).is_err());
}
