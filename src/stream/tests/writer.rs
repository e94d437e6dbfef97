//! ChunkWriter: policies, restart continuation, recovery cases, tampering detection and a real
//! `kill -9` crash loop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use peaqos_stream::chain::decrypt_chunk;
use peaqos_stream::envelope::RecipientType;
use peaqos_stream::keys::MachineStreamKeys;
use peaqos_stream::store::{self, CloseReason};
use peaqos_stream::verify::verify_dir;
use peaqos_stream::writer::{ChunkPolicy, ChunkWriter, Recipients, RecoveryAction};

const SECRET: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const TOPIC: &str = "/sensor/gps";

fn keys() -> MachineStreamKeys {
    MachineStreamKeys::from_secret_hex(SECRET).unwrap()
}

fn open(dir: &Path, policy: ChunkPolicy) -> (ChunkWriter, peaqos_stream::writer::RecoveryReport) {
    let k = keys();
    let did = k.default_did();
    ChunkWriter::open(dir, TOPIC, policy, &k, &did, &format!("{did}#stream-ed25519"), &Recipients::default()).unwrap()
}

fn line(i: u64) -> Vec<u8> {
    format!("{{\"did\":\"did:peaq:0x00\",\"payload\":{{\"n\":{i}}},\"sequenceNumber\":{i}}}").into_bytes()
}

/// All lines of the sealed chunks (decrypted with the machine key) followed by the open chunk.
fn all_lines(tdir: &Path) -> Vec<String> {
    let k = keys();
    let mut out = Vec::new();
    for i in store::sealed_indices(tdir).unwrap() {
        let c = store::load_chunk(tdir, i).unwrap();
        let ct = std::fs::read(store::chunk_paths(tdir, i).1).unwrap();
        let pt = decrypt_chunk(&c, c.recipient(RecipientType::Machine).unwrap(), k.x25519_secret(), &ct).unwrap();
        out.extend(std::str::from_utf8(&pt).unwrap().lines().map(str::to_string));
    }
    if let Ok(b) = std::fs::read(tdir.join(store::OPEN_FILE)) {
        let s = String::from_utf8_lossy(&b);
        out.extend(s.split_inclusive('\n').skip(1).filter(|l| l.ends_with('\n')).map(|l| l.trim_end().to_string()));
    }
    out
}

#[test]
fn seals_by_messages_bytes_age_and_continues_across_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = ChunkPolicy { max_bytes: 400, max_messages: 3, max_age: Duration::from_secs(5) };
    let (mut w, rep) = open(tmp.path(), policy);
    assert!(rep.is_clean());
    let t0 = SystemTime::now();
    assert!(w.append_at(&line(0), t0).unwrap().is_none());
    assert!(w.append_at(&line(1), t0).unwrap().is_none());
    let s = w.append_at(&line(2), t0).unwrap().expect("sealed by max_messages");
    assert_eq!(s.meta.close_reason, CloseReason::MaxMessages);
    assert_eq!(s.chunk.index, 0);
    assert!(s.chunk.previous_chunk_id.is_none());
    let m = s.manifest_json().unwrap();
    assert!(m.starts_with("{\"schemaVersion\":\"peaq.stream.chunks.v1\",\"chunkId\""), "{m}");
    assert_eq!(peaqos_stream::envelope::Chunk::from_json_bytes(m.as_bytes(), "m").unwrap(), s.chunk);
    // age
    w.append_at(&line(3), t0).unwrap();
    assert!(w.poll(t0 + Duration::from_secs(4)).unwrap().is_none());
    let s1 = w.poll(t0 + Duration::from_secs(5)).unwrap().expect("sealed by age");
    assert_eq!(s1.meta.close_reason, CloseReason::MaxAge);
    assert_eq!(s1.chunk.previous_chunk_id.as_deref(), Some(s.chunk.chunk_id.as_str()));
    // bytes: one big line
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(500));
    let s2 = w.append(big.as_bytes()).unwrap().expect("sealed by bytes");
    assert_eq!(s2.meta.close_reason, CloseReason::MaxBytes);
    w.append(&line(5)).unwrap();
    w.sync().unwrap();
    drop(w);
    // restart: open chunk from the previous run is sealed by recovery, chain continues.
    let (mut w, rep) = open(tmp.path(), policy);
    assert_eq!(rep.next_index, 4);
    assert!(matches!(
        rep.actions[..],
        [RecoveryAction::SealedOpenChunk { index: 3, messages: 1, dropped_partial_bytes: 0 }]
    ));
    let rs = rep.sealed.unwrap();
    assert_eq!(rs.chunk.previous_chunk_id.as_deref(), Some(s2.chunk.chunk_id.as_str()));
    w.append(&line(6)).unwrap();
    let s4 = w.close_now().unwrap().unwrap();
    assert_eq!(s4.chunk.index, 4);
    assert!(w.close_now().unwrap().is_none());
    let k = keys();
    let r = verify_dir(w.dir(), Some(&hex::encode(k.ed25519_public))).unwrap();
    assert_eq!(r.chunks, 5);
    let lines = all_lines(w.dir());
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[6].as_bytes(), line(6).as_slice());
    // bad input is an error, not a panic
    assert!(w.append(b"a\nb").is_err());
    assert!(w.append(b"").is_err());
    assert!(w.append(&[0xff, 0xfe]).is_err());
}

#[test]
fn recovery_cases() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = ChunkPolicy { max_bytes: 1 << 20, max_messages: 2, max_age: Duration::from_secs(60) };
    let (mut w, _) = open(tmp.path(), policy);
    let tdir = w.dir().to_path_buf();
    w.append(&line(0)).unwrap();
    w.append(&line(1)).unwrap().unwrap();
    let head_after_0 = std::fs::read(tdir.join("head.json")).unwrap();
    w.append(&line(2)).unwrap();
    let c1 = w.append(&line(3)).unwrap().unwrap();
    w.append(&line(4)).unwrap();
    w.sync().unwrap();
    drop(w);
    // (a) head not updated after chunk 1 was sealed + torn trailing line in open chunk.
    std::fs::write(tdir.join("head.json"), &head_after_0).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(tdir.join(store::OPEN_FILE)).unwrap();
    std::io::Write::write_all(&mut f, b"{\"torn").unwrap();
    drop(f);
    // (b) stale tmp file
    std::fs::write(tdir.join("9.bin.tmp"), b"x").unwrap();
    let (w, rep) = open(tmp.path(), policy);
    assert!(rep.actions.iter().any(|a| matches!(a, RecoveryAction::RemovedTempFile { .. })));
    assert!(rep.actions.iter().any(
        |a| matches!(a, RecoveryAction::AdoptedSealedChunk { index: 1, chunk_id } if *chunk_id == c1.chunk.chunk_id)
    ));
    assert!(rep
        .actions
        .iter()
        .any(|a| matches!(a, RecoveryAction::SealedOpenChunk { index: 2, messages: 1, dropped_partial_bytes: 6 })));
    assert_eq!(rep.next_index, 3);
    verify_dir(&tdir, None).unwrap();
    assert_eq!(all_lines(&tdir).len(), 5);
    drop(w);
    // (c) torn seal: .bin of the next index without envelope; (d) open file of an already sealed chunk.
    std::fs::write(tdir.join("3.bin"), b"partial").unwrap();
    let sealed2 = std::fs::read(tdir.join("2.json")).unwrap();
    let _ = sealed2;
    let hdr =
        format!("{{\"openChunk\":\"peaqos.stream.open.v1\",\"topic\":\"{TOPIC}\",\"index\":2,\"firstAppendMs\":1}}\n");
    std::fs::write(tdir.join(store::OPEN_FILE), format!("{hdr}{}\n", String::from_utf8(line(4)).unwrap())).unwrap();
    let (_w, rep) = open(tmp.path(), policy);
    assert!(rep.actions.iter().any(|a| matches!(a, RecoveryAction::RemovedTornSeal { index: 3, .. })));
    assert!(rep.actions.iter().any(|a| matches!(a, RecoveryAction::RemovedAlreadySealedOpenChunk { index: 2 })));
    assert!(!tdir.join("3.bin").exists());
    // (e) header-only open file is discarded.
    drop(_w);
    std::fs::write(tdir.join(store::OPEN_FILE), hdr.replace("\"index\":2", "\"index\":3")).unwrap();
    let (_w, rep) = open(tmp.path(), policy);
    assert!(rep.actions.iter().any(|a| matches!(a, RecoveryAction::DiscardedOpenChunk { .. })));
    verify_dir(&tdir, None).unwrap();
}

#[test]
fn tampering_is_detected_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = ChunkPolicy { max_bytes: 1 << 20, max_messages: 1, max_age: Duration::from_secs(60) };
    let (mut w, _) = open(tmp.path(), policy);
    for i in 0..4 {
        w.append(&line(i)).unwrap().unwrap();
    }
    let d = w.dir().to_path_buf();
    drop(w);
    let expect_err = |d: &Path, needle: &str| {
        let e = verify_dir(d, None).unwrap_err().to_string();
        assert!(e.contains(needle), "{e} should mention {needle}");
    };
    let copy = |name: &str| {
        let t = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), t.path().join(e.file_name())).unwrap();
        }
        let _ = name;
        t
    };
    // flipped ciphertext bit
    let t = copy("flip");
    let mut b = std::fs::read(t.path().join("1.bin")).unwrap();
    b[3] ^= 1;
    std::fs::write(t.path().join("1.bin"), b).unwrap();
    expect_err(t.path(), "hash_mismatch");
    // missing chunk
    let t = copy("missing");
    std::fs::remove_file(t.path().join("2.json")).unwrap();
    expect_err(t.path(), "not sequential");
    // reordered chunks (swap 1 and 2)
    let t = copy("reorder");
    for ext in ["json", "bin", "meta.json"] {
        std::fs::rename(t.path().join(format!("1.{ext}")), t.path().join(format!("x.{ext}"))).unwrap();
        std::fs::rename(t.path().join(format!("2.{ext}")), t.path().join(format!("1.{ext}"))).unwrap();
        std::fs::rename(t.path().join(format!("x.{ext}")), t.path().join(format!("2.{ext}"))).unwrap();
    }
    expect_err(t.path(), "replayed or renamed");
    // replayed chunk (1 copied over as 3)
    let t = copy("replay");
    std::fs::copy(t.path().join("1.json"), t.path().join("3.json")).unwrap();
    std::fs::copy(t.path().join("1.bin"), t.path().join("3.bin")).unwrap();
    expect_err(t.path(), "replayed");
    // wrong signature
    let t = copy("sig");
    let p = t.path().join("2.json");
    let s = std::fs::read_to_string(&p).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&s).unwrap();
    let sig = v["signature"]["value"].as_str().unwrap().to_string();
    let flipped = format!("{}{}", if &sig[..1] == "0" { "1" } else { "0" }, &sig[1..]);
    v["signature"]["value"] = flipped.into();
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    expect_err(t.path(), "invalid_signature");
    // different machine key
    let e = verify_dir(&d, Some(&"11".repeat(32))).unwrap_err().to_string();
    assert!(e.contains("another key"), "{e}");
}

/// Child side of the crash test (the same test, run again by it with `PEAQOS_STREAM_CRASH_DIR`):
/// append + sync in a loop, printing `ack <n>` after each sync.
fn crash_child(dir: &str) -> ! {
    let start: u64 = std::env::var("PEAQOS_STREAM_CRASH_START").unwrap().parse().unwrap();
    let policy = ChunkPolicy { max_bytes: 2000, max_messages: 7, max_age: Duration::from_secs(60) };
    let (mut w, _) = open(Path::new(&dir), policy);
    let mut n = start;
    loop {
        w.append(&line(n)).unwrap();
        if n % 3 == 0 {
            w.sync().unwrap();
            println!("ack {n}");
        }
        n += 1;
    }
}

#[test]
fn kill_9_loses_no_acknowledged_line() {
    if let Ok(dir) = std::env::var("PEAQOS_STREAM_CRASH_DIR") {
        crash_child(&dir);
    }
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut next = 0u64;
    let mut acked = 0u64;
    let mut repaired = 0;
    for round in 0..5 {
        let mut child = Command::new(&exe)
            .args(["--exact", "kill_9_loses_no_acknowledged_line", "--nocapture", "--test-threads=1"])
            .env("PEAQOS_STREAM_CRASH_DIR", tmp.path())
            .env("PEAQOS_STREAM_CRASH_START", next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut seen = 0;
        for l in out.lines() {
            let l = l.unwrap();
            if let Some(n) = l.strip_prefix("ack ") {
                acked = n.parse().unwrap();
                seen += 1;
                if seen >= 40 + round * 13 {
                    break;
                }
            }
        }
        // SIGKILL
        unsafe_kill(child.id());
        let _ = child.wait();
        let (w, rep) =
            open(tmp.path(), ChunkPolicy { max_bytes: 2000, max_messages: 7, max_age: Duration::from_secs(60) });
        let tdir = w.dir().to_path_buf();
        drop(w);
        repaired += usize::from(!rep.is_clean());
        verify_dir(&tdir, None).unwrap_or_else(|e| panic!("round {round}: {e}; recovery {rep:?}"));
        let lines = all_lines(&tdir);
        let nums: Vec<u64> = lines
            .iter()
            .map(|l| l.split("\"sequenceNumber\":").nth(1).unwrap().trim_end_matches('}').parse().unwrap())
            .collect();
        // every acknowledged line is present, in order, without duplicates
        for n in 0..=acked {
            assert!(nums.contains(&n), "round {round}: acknowledged line {n} lost (recovery {rep:?})");
        }
        assert!(nums.windows(2).all(|w| w[0] < w[1]), "round {round}: order/duplicates broken");
        next = nums.last().copied().unwrap_or(0) + 1;
    }
    assert!(repaired > 0, "no round needed recovery; the test did not exercise it");
}

fn unsafe_kill(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

#[test]
fn grant_by_time_range_and_range_parsing() {
    use peaqos_stream::grant::{decrypt_with_grants, grant, GrantRange};
    let tmp = tempfile::tempdir().unwrap();
    let policy = ChunkPolicy { max_bytes: 1 << 20, max_messages: 2, max_age: Duration::from_secs(60) };
    let (mut w, _) = open(tmp.path(), policy);
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    // chunk k holds messages at t0 + 10k s and t0 + 10k + 1 s
    for k in 0..4u64 {
        w.append_at(&line(2 * k), t0 + Duration::from_secs(10 * k)).unwrap();
        w.append_at(&line(2 * k + 1), t0 + Duration::from_secs(10 * k + 1)).unwrap().unwrap();
    }
    let ms = |s: u64| 1_700_000_000_000 + s * 1000;
    let k = keys();
    let buyer = [9u8; 32];
    let range = GrantRange::TimeMs { from: ms(11), to: ms(20) };
    let g = grant(tmp.path(), TOPIC, &range, &k, &peaqos_stream::crypto::x25519_public(&buyer), "buyer-1").unwrap();
    let pts = decrypt_with_grants(w.dir(), &g, &buyer).unwrap();
    assert_eq!(pts.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(GrantRange::parse("t:5..9").unwrap(), GrantRange::TimeMs { from: 5, to: 9 });
    assert_eq!(GrantRange::parse("3").unwrap(), GrantRange::Indices { first: 3, last: 3 });
    assert_eq!(GrantRange::parse("2..=4").unwrap(), GrantRange::Indices { first: 2, last: 4 });
    assert!(GrantRange::parse("4..2").is_err());
    assert!(GrantRange::parse("x").is_err());
}
