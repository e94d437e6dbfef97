//! Package log retention: segments go oldest first, only over a bound, never the segment being
//! written, never one a consumer has not passed (nor the one holding its position); readers
//! keep working from the first kept package.

use std::path::Path;
use std::time::{Duration, SystemTime};

use peaqos_core::keys::MachineKey;
use peaqos_core::package::build_signed_package_json;
use peaqos_core::package_log::{first_logged_sequence, iter_topic_from, last_logged_sequence, LogOptions, PackageLog};
use peaqos_core::retention::{Consumed, LogConsumers, LogRetention};
use serde_json::{json, Map, Value};

const SK: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const T: &str = "/cam";

fn pkg(key: &MachineKey, seq: u64) -> String {
    let mut payload = Map::new();
    payload.insert("n".into(), json!(seq));
    payload.insert("blob".into(), Value::String("x".repeat(400)));
    build_signed_package_json(key.did(), key, "2026-01-01T00:00:00Z", "1.0.0", seq, payload).unwrap().json
}

/// A log of `n` packages, one commit each, segments of about two packages.
fn log_with(dir: &Path, n: u64) -> PackageLog {
    let key = MachineKey::from_hex(SK).unwrap();
    let mut log = PackageLog::open(dir, LogOptions { segment_max_bytes: 1500 }).unwrap();
    for s in 0..n {
        log.append(T, s, &pkg(&key, s)).unwrap();
        log.commit().unwrap();
    }
    log
}

fn segments(dir: &Path) -> Vec<String> {
    let d = dir.join("packages").join("cam");
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("seg-"))
        .collect();
    v.sort();
    v
}

fn log_bytes(dir: &Path) -> u64 {
    let d = dir.join("packages").join("cam");
    std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn seqs_from(dir: &Path, from: u64) -> Vec<u64> {
    iter_topic_from(dir, T, from).unwrap().map(|r| r.unwrap().0).collect()
}

#[test]
fn bytes_bound_without_consumer_keeps_a_contiguous_tail_and_the_current_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_with(dir.path(), 20);
    let before = segments(dir.path());
    assert!(before.len() >= 8, "{before:?}");
    let total = log_bytes(dir.path());
    let bound = LogRetention { max_bytes: total / 3, max_age: Duration::ZERO, max_total_bytes: 0 };
    let r = log.prune(T, &bound, Consumed::NoConsumer, SystemTime::now()).unwrap();
    assert!(r.removed_segments > 0);
    assert!(log_bytes(dir.path()) <= total / 3, "kept {} > {}", log_bytes(dir.path()), total / 3);
    assert_eq!(r.kept_bytes, log_bytes(dir.path()));
    let after = segments(dir.path());
    assert_eq!(after.last(), before.last(), "the segment being written stays");
    assert_eq!(&before[before.len() - after.len()..], &after[..], "the oldest go first");
    // Readers start at the first kept package; numbering continues.
    let first = first_logged_sequence(dir.path(), T).unwrap().unwrap();
    assert!(first > 0);
    assert_eq!(seqs_from(dir.path(), 0), (first..20).collect::<Vec<_>>());
    assert_eq!(last_logged_sequence(dir.path(), T).unwrap(), Some(19));
    let key = MachineKey::from_hex(SK).unwrap();
    log.append(T, 20, &pkg(&key, 20)).unwrap();
    log.commit().unwrap();
    drop(log);
    let log = PackageLog::open(dir.path(), LogOptions { segment_max_bytes: 1500 }).unwrap();
    assert_eq!(log.next_sequence(T), 21);
}

#[test]
fn a_bound_of_one_byte_still_keeps_the_current_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_with(dir.path(), 10);
    let bound = LogRetention { max_bytes: 1, max_age: Duration::ZERO, max_total_bytes: 0 };
    log.prune(T, &bound, Consumed::NoConsumer, SystemTime::now()).unwrap();
    assert_eq!(segments(dir.path()).len(), 1);
    assert_eq!(last_logged_sequence(dir.path(), T).unwrap(), Some(9));
}

#[test]
fn nothing_unconsumed_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_with(dir.path(), 20);
    let bound = LogRetention { max_bytes: 1, max_age: Duration::ZERO, max_total_bytes: 0 };
    let consumers = LogConsumers::new();
    consumers.register(T, "stream");
    consumers.register(T, "events");
    // A registered consumer that has not reported blocks every deletion.
    assert_eq!(consumers.consumed(T), Consumed::Nothing);
    let r = log.prune(T, &bound, consumers.consumed(T), SystemTime::now()).unwrap();
    assert_eq!(r.removed_segments, 0);
    assert!(r.held_for_consumers);
    consumers.advance(T, "stream", Some(15));
    assert_eq!(consumers.consumed(T), Consumed::Nothing, "events has not reported");
    consumers.advance(T, "events", Some(7));
    assert_eq!(consumers.consumed(T), Consumed::UpTo(7), "the slowest consumer decides");
    consumers.advance(T, "events", Some(3));
    assert_eq!(consumers.consumed(T), Consumed::UpTo(7), "a position never moves back");
    log.prune(T, &bound, consumers.consumed(T), SystemTime::now()).unwrap();
    // Package 7 (the slowest consumer's last) and everything after it are still there.
    let first = first_logged_sequence(dir.path(), T).unwrap().unwrap();
    assert!(first <= 7 && first > 0, "first kept {first}");
    assert_eq!(seqs_from(dir.path(), 7).first(), Some(&7));
    consumers.advance(T, "events", Some(19));
    log.prune(T, &bound, consumers.consumed(T), SystemTime::now()).unwrap();
    let first = first_logged_sequence(dir.path(), T).unwrap().unwrap();
    assert!(first <= 15, "the stream's package 15 stays (first kept {first})");
    assert_eq!(seqs_from(dir.path(), 15).first(), Some(&15));
}

#[test]
fn age_bound_deletes_only_old_consumed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_with(dir.path(), 12);
    let n = segments(dir.path()).len();
    let bound = LogRetention { max_bytes: 0, max_age: Duration::from_secs(3600), max_total_bytes: 0 };
    let r = log.prune(T, &bound, Consumed::NoConsumer, SystemTime::now()).unwrap();
    assert_eq!(r.removed_segments, 0, "nothing is an hour old yet");
    let later = SystemTime::now() + Duration::from_secs(7200);
    let r = log.prune(T, &bound, Consumed::UpTo(5), later).unwrap();
    assert!(r.removed_segments > 0);
    assert!(!r.held_for_consumers, "not over a byte bound");
    assert_eq!(seqs_from(dir.path(), 5).first(), Some(&5));
    let r = log.prune(T, &bound, Consumed::NoConsumer, later).unwrap();
    assert_eq!(segments(dir.path()).len(), 1, "{n} segments, every old one gone but the current: {r:?}");
    assert!(LogRetention { max_bytes: 0, max_age: Duration::ZERO, max_total_bytes: 0 }.is_off());
}

#[test]
fn total_bound_across_topics_takes_the_oldest_consumed_segments_first() {
    let dir = tempfile::tempdir().unwrap();
    let key = MachineKey::from_hex(SK).unwrap();
    let mut log = PackageLog::open(dir.path(), LogOptions { segment_max_bytes: 1500 }).unwrap();
    // /cam first (older segments), then /imu.
    for (topic, n) in [(T, 12u64), ("/imu", 12)] {
        for s in 0..n {
            log.append(topic, s, &pkg(&key, s)).unwrap();
            log.commit().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let bytes_of = |t: &str| -> u64 {
        let d = dir.path().join("packages").join(&t[1..]);
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    let (cam0, imu0) = (bytes_of(T), bytes_of("/imu"));
    // /imu's consumer has passed nothing: only /cam's segments may go.
    let consumers = LogConsumers::new();
    consumers.register("/imu", "stream");
    let bound = cam0 / 2 + imu0;
    let (reports, total) = log.prune_total(bound, &|t| consumers.consumed(t)).unwrap();
    assert!(total <= bound, "{total} > {bound}");
    assert_eq!(bytes_of("/imu"), imu0, "unconsumed: kept");
    assert!(bytes_of(T) < cam0);
    let cam = reports.iter().find(|(t, _)| t == T).unwrap();
    assert!(cam.1.removed_segments > 0);
    // Over a bound nothing may satisfy: /cam keeps its current segment, /imu everything.
    let (_, total) = log.prune_total(1, &|t| consumers.consumed(t)).unwrap();
    assert_eq!(total, bytes_of(T) + imu0);
    assert_eq!(segments(dir.path()).len(), 1);
    assert_eq!(first_logged_sequence(dir.path(), "/imu").unwrap(), Some(0));
    // Once /imu's consumer is past them, its old segments go too.
    consumers.advance("/imu", "stream", Some(11));
    let (_, total) = log.prune_total(1, &|t| consumers.consumed(t)).unwrap();
    assert!(total < bytes_of(T) + imu0);
    assert_eq!(last_logged_sequence(dir.path(), "/imu").unwrap(), Some(11));
    assert_eq!(seqs_from(dir.path(), 11).first(), Some(&11), "the consumer's last package stays");
}
