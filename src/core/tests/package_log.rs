//! Package log: group commit, torn tail recovery, sequence continuation after reopen,
//! segment rotation, and a `kill -9` of a writer process mid-write.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use peaqos_core::keys::MachineKey;
use peaqos_core::package::{build_signed_package_json, verify_package_json};
use peaqos_core::package_log::{
    iter_topic, iter_topic_from, last_logged_sequence, topic_dir_name, LogError, LogOptions, PackageLog,
};
use serde_json::{json, Map, Value};

const SK: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

fn pkg(key: &MachineKey, seq: u64, filler: usize) -> String {
    let mut payload = Map::new();
    payload.insert("n".into(), json!(seq));
    payload.insert("blob".into(), Value::String("x".repeat(filler)));
    build_signed_package_json(key.did(), key, "2026-01-01T00:00:00Z", "1.0.0", seq, payload).unwrap().json
}

fn seqs(dir: &Path, topic: &str) -> Vec<u64> {
    iter_topic(dir, topic)
        .unwrap()
        .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap()["sequenceNumber"].as_u64().unwrap())
        .collect()
}

#[test]
fn append_commit_reopen_continue() {
    let key = MachineKey::from_hex(SK).unwrap();
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = PackageLog::open(dir.path(), LogOptions::default()).unwrap();
        assert_eq!(log.next_sequence("/a"), 0);
        for s in 0..5 {
            log.append("/a", s, &pkg(&key, s, 10)).unwrap();
        }
        log.append("/b/c", 0, &pkg(&key, 0, 10)).unwrap();
        assert_eq!(log.last_sequence("/a"), None, "not committed yet");
        assert!(matches!(log.append("/a", 9, &pkg(&key, 9, 1)), Err(LogError::Sequence { expected: 5, got: 9, .. })));
        assert!(matches!(log.append("/a", 5, "{\n}"), Err(LogError::Newline { .. })));
        log.commit().unwrap();
        assert_eq!(log.last_sequence("/a"), Some(4));
        assert_eq!(log.next_sequence("/b/c"), 1);
    }
    let mut log = PackageLog::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(log.topics(), vec!["/a".to_owned(), "/b/c".to_owned()]);
    assert_eq!(log.last_sequence("/a"), Some(4));
    assert_eq!(log.next_sequence("/a"), 5);
    log.append("/a", 5, &pkg(&key, 5, 10)).unwrap();
    log.commit().unwrap();
    assert_eq!(seqs(dir.path(), "/a"), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(seqs(dir.path(), "/b/c"), vec![0]);
    for l in iter_topic(dir.path(), "/a").unwrap() {
        assert_eq!(verify_package_json(&l.unwrap()).unwrap(), key.address());
    }
    let tdir = dir.path().join("packages").join(topic_dir_name("/b/c"));
    assert_eq!(fs::read_to_string(tdir.join("topic")).unwrap(), "/b/c\n");
    assert_eq!(topic_dir_name("/b/c"), "b.c");
    assert_ne!(topic_dir_name("/a.b"), topic_dir_name("/a/b"));
}

#[test]
fn torn_tail_truncated() {
    let key = MachineKey::from_hex(SK).unwrap();
    for garbage in ["{\"did\":\"did:peaq:0x", "not json at all\n", "{\"sequenceNumber\":\n", "\n"] {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = PackageLog::open(dir.path(), LogOptions::default()).unwrap();
            for s in 0..3 {
                log.append("/t", s, &pkg(&key, s, 10)).unwrap();
            }
            log.commit().unwrap();
        }
        let seg = dir.path().join("packages/t/seg-00000000000000000000.jsonl");
        let good_len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new().append(true).open(&seg).unwrap().write_all(garbage.as_bytes()).unwrap();
        let mut log = PackageLog::open(dir.path(), LogOptions::default()).unwrap();
        assert_eq!(fs::metadata(&seg).unwrap().len(), good_len, "garbage {garbage:?}");
        assert_eq!(log.next_sequence("/t"), 3);
        log.append("/t", 3, &pkg(&key, 3, 10)).unwrap();
        log.commit().unwrap();
        assert_eq!(seqs(dir.path(), "/t"), vec![0, 1, 2, 3]);
    }
}

#[test]
fn segments_rotate() {
    let key = MachineKey::from_hex(SK).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions { segment_max_bytes: 2000 };
    {
        let mut log = PackageLog::open(dir.path(), opts).unwrap();
        for s in 0..20 {
            log.append("/r", s, &pkg(&key, s, 300)).unwrap();
            if s % 3 == 2 {
                log.commit().unwrap();
            }
        }
        log.commit().unwrap();
    }
    let n = fs::read_dir(dir.path().join("packages/r")).unwrap().count() - 1;
    assert!(n >= 5, "{n} segments");
    let mut log = PackageLog::open(dir.path(), opts).unwrap();
    assert_eq!(log.next_sequence("/r"), 20);
    log.append("/r", 20, &pkg(&key, 20, 300)).unwrap();
    log.commit().unwrap();
    assert_eq!(seqs(dir.path(), "/r"), (0..=20).collect::<Vec<_>>());
}

#[test]
fn readers_from_a_sequence_skip_segments_and_torn_tails() {
    let key = MachineKey::from_hex(SK).unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(last_logged_sequence(dir.path(), "/r").unwrap(), None);
    assert_eq!(iter_topic_from(dir.path(), "/r", 0).unwrap().count(), 0);
    {
        let mut log = PackageLog::open(dir.path(), LogOptions { segment_max_bytes: 2000 }).unwrap();
        for s in 0..20 {
            log.append("/r", s, &pkg(&key, s, 300)).unwrap();
            log.commit().unwrap();
        }
    }
    let got: Vec<u64> = iter_topic_from(dir.path(), "/r", 13).unwrap().map(|r| r.unwrap().0).collect();
    assert_eq!(got, (13..20).collect::<Vec<_>>());
    assert_eq!(last_logged_sequence(dir.path(), "/r").unwrap(), Some(19));
    // A write in progress (or cut short by a crash): neither reader sees it.
    let seg = fs::read_dir(dir.path().join("packages/r"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .max()
        .unwrap();
    OpenOptions::new().append(true).open(&seg).unwrap().write_all(b"{\"sequenceNumber\":20,\"did").unwrap();
    assert_eq!(last_logged_sequence(dir.path(), "/r").unwrap(), Some(19));
    assert_eq!(iter_topic_from(dir.path(), "/r", 19).unwrap().map(|r| r.unwrap().0).collect::<Vec<_>>(), vec![19]);
}

/// Child side of `kill_9_mid_write` (the same test, run again by it with `PEAQOS_LOG_CHILD_DIR`):
/// appends and commits forever, printing `ACK <seq>` after each successful commit.
fn child_writer_process(dir: &str) -> ! {
    let key = MachineKey::from_hex(SK).unwrap();
    let mut log = PackageLog::open(Path::new(&dir), LogOptions { segment_max_bytes: 1 << 20 }).unwrap();
    let mut seq = log.next_sequence("/k");
    let out = std::io::stdout();
    loop {
        // Batches of 1–4 packages of up to ~200 KB so kills land inside writes.
        let n = 1 + seq % 4;
        let first = seq;
        for _ in 0..n {
            log.append("/k", seq, &pkg(&key, seq, ((seq * 7919) % 200_000) as usize)).unwrap();
            seq += 1;
        }
        log.commit().unwrap();
        let mut o = out.lock();
        writeln!(o, "ACK {first} {}", seq - 1).unwrap();
        o.flush().unwrap();
    }
}

#[test]
fn kill_9_mid_write() {
    if let Ok(dir) = std::env::var("PEAQOS_LOG_CHILD_DIR") {
        child_writer_process(&dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Option<u64> = None;
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .args(["kill_9_mid_write", "--exact", "--nocapture", "--test-threads=1"])
            .env("PEAQOS_LOG_CHILD_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let mut acks_this_round = 0;
        while reader.read_line(&mut line).unwrap() > 0 {
            if let Some(rest) = line.trim().strip_prefix("ACK ") {
                let last: u64 = rest.split(' ').nth(1).unwrap().parse().unwrap();
                acked = Some(last);
                acks_this_round += 1;
                if acks_this_round == 40 + round * 17 {
                    child.kill().unwrap(); // SIGKILL
                }
            }
            line.clear();
        }
        child.wait().unwrap();
        assert!(acks_this_round >= 40, "child produced {acks_this_round} acks");
        // Every acknowledged package is readable and valid after recovery.
        let log = PackageLog::open(dir.path(), LogOptions::default()).unwrap();
        let last = log.last_sequence("/k").unwrap();
        let acked_last = acked.unwrap();
        assert!(last >= acked_last, "lost acknowledged packages: on disk {last}, acked {acked_last}");
        let lines: Vec<String> = iter_topic(dir.path(), "/k").unwrap().map(|l| l.unwrap()).collect();
        assert_eq!(lines.len() as u64, last + 1);
        for (i, l) in lines.iter().enumerate() {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["sequenceNumber"].as_u64().unwrap(), i as u64);
        }
        for l in lines.iter().rev().take(5) {
            verify_package_json(l).unwrap();
        }
    }
}
