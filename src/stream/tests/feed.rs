//! TopicFeed against the real core package log: replay at open, duplicates skipped, gaps
//! filled from the log, a crash between log and chain loses nothing and doubles nothing.

use std::path::Path;
use std::time::Duration;

use peaqos_core::package_log::{LogOptions, PackageLog};
use peaqos_stream::chain::decrypt_chunk;
use peaqos_stream::envelope::RecipientType;
use peaqos_stream::feed::{line_sequence, TopicFeed};
use peaqos_stream::keys::MachineStreamKeys;
use peaqos_stream::store;
use peaqos_stream::writer::{ChunkPolicy, Recipients};

const SECRET: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const TOPIC: &str = "/robot/imu";

fn line(seq: u64) -> String {
    format!("{{\"payload\":{{\"x\":{seq}}},\"sequenceNumber\":{seq}}}")
}

fn log_packages(data: &Path, seqs: std::ops::Range<u64>) {
    let mut log = PackageLog::open(data, LogOptions { segment_max_bytes: 200 }).unwrap();
    for s in seqs {
        log.append(TOPIC, s, &line(s)).unwrap();
    }
    log.commit().unwrap();
}

fn open(data: &Path, keys: &MachineStreamKeys) -> (TopicFeed, peaqos_stream::feed::FeedOpened) {
    let did = keys.default_did();
    let policy = ChunkPolicy { max_bytes: 1 << 20, max_messages: 4, max_age: Duration::from_secs(3600) };
    TopicFeed::open(
        &data.join("stream"),
        data,
        TOPIC,
        policy,
        keys,
        &did,
        &format!("{did}#stream-ed25519"),
        &Recipients::default(),
        true,
    )
    .unwrap()
}

/// Every package sequence in the chain, in order (decrypting with the machine's key).
fn chain_sequences(data: &Path, keys: &MachineStreamKeys) -> Vec<u64> {
    let dir = store::topic_dir(&data.join("stream"), TOPIC).unwrap();
    let mut out = Vec::new();
    for i in store::sealed_indices(&dir).unwrap() {
        let c = store::load_chunk(&dir, i).unwrap();
        let e = c.recipient(RecipientType::Machine).unwrap();
        let pt =
            decrypt_chunk(&c, e, keys.x25519_secret(), &store::read(&store::chunk_paths(&dir, i).1).unwrap()).unwrap();
        for l in pt.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            assert_eq!(std::str::from_utf8(l).unwrap(), line(line_sequence(l, "t").unwrap()));
            out.push(line_sequence(l, "t").unwrap());
        }
    }
    out
}

#[test]
fn nothing_lost_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let keys = MachineStreamKeys::from_secret_hex(SECRET).unwrap();

    // Packages logged before the stream ever ran are replayed at open.
    log_packages(data, 0..10);
    let (mut f, o) = open(data, &keys);
    assert_eq!(o.replayed, 10);
    assert_eq!(o.sealed.len(), 2);
    assert_eq!(f.last_sequence(), Some(9));

    // Live hand-over of packages already replayed: skipped.
    for s in 5..10 {
        assert!(f.push(s, line(s).as_bytes()).unwrap().is_empty());
    }
    assert_eq!(f.duplicates, 5);

    // A dropped hand-over (10, 11 never pushed) is filled from the log.
    log_packages(data, 10..13);
    f.push(12, line(12).as_bytes()).unwrap();
    assert_eq!(f.gap_filled, 2);
    f.sync().unwrap();
    // The open chunk (12) is never written a second time: the package log holds it.
    let tdir = store::topic_dir(&data.join("stream"), TOPIC).unwrap();
    assert!(!tdir.join(store::OPEN_FILE).exists());
    // Crash: the writer is dropped with an open chunk.
    drop(f);

    // Logged but never handed over before the crash.
    log_packages(data, 13..15);
    let (mut f, o) = open(data, &keys);
    assert!(o.recovery.is_clean(), "{:?}", o.recovery);
    assert_eq!(o.replayed, 3, "the open chunk's 12 and the never handed over 13, 14, from the log");
    assert_eq!(f.last_sequence(), Some(14));
    // The tap delivers 13, 14 again after restart: duplicates.
    f.push(13, line(13).as_bytes()).unwrap();
    f.push(14, line(14).as_bytes()).unwrap();
    assert_eq!(f.duplicates, 2);
    log_packages(data, 15..16);
    f.push(15, line(15).as_bytes()).unwrap(); // the live hand-over, no gap
    f.sync().unwrap();
    f.close_now().unwrap();
    drop(f);

    let (f, o) = open(data, &keys);
    assert_eq!(o.replayed, 0);
    assert_eq!(f.last_sequence(), Some(15));
    assert_eq!(chain_sequences(data, &keys), (0..16).collect::<Vec<_>>());
    let rep = peaqos_stream::verify::verify_dir(&store::topic_dir(&data.join("stream"), TOPIC).unwrap(), None).unwrap();
    assert_eq!(rep.chunks, 4, "12..=15 in one chunk: the open chunk was rebuilt from the log, not sealed short");
}

#[test]
fn a_reset_package_log_is_refused_not_silently_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let keys = MachineStreamKeys::from_secret_hex(SECRET).unwrap();
    log_packages(data, 0..6);
    let (mut f, _) = open(data, &keys);
    f.close_now().unwrap();
    drop(f);
    std::fs::remove_dir_all(data.join("packages")).unwrap();
    log_packages(data, 0..2);
    let did = keys.default_did();
    let policy = ChunkPolicy { max_bytes: 1 << 20, max_messages: 4, max_age: Duration::from_secs(3600) };
    let e = TopicFeed::open(&data.join("stream"), data, TOPIC, policy, &keys, &did, "k", &Recipients::default(), true)
        .unwrap_err();
    assert!(e.to_string().contains("does not hold package 5"), "{e}");
}

#[test]
fn without_backfill_a_new_chain_starts_at_the_log_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let keys = MachineStreamKeys::from_secret_hex(SECRET).unwrap();
    log_packages(data, 0..7);
    let did = keys.default_did();
    let policy = ChunkPolicy { max_bytes: 1 << 20, max_messages: 4, max_age: Duration::from_secs(3600) };
    let open = || {
        TopicFeed::open(&data.join("stream"), data, TOPIC, policy, &keys, &did, "k", &Recipients::default(), false)
            .unwrap()
    };
    let (f, o) = open();
    assert_eq!((o.replayed, f.last_sequence()), (0, Some(6)));
    drop(f);
    // Logged while the node was down, after the stream was configured: replayed.
    log_packages(data, 7..9);
    let (mut f, o) = open();
    assert_eq!((o.replayed, f.last_sequence()), (2, Some(8)));
    f.close_now().unwrap();
    drop(f);
    assert_eq!(chain_sequences(data, &keys), vec![7, 8]);
}

/// The feed reports only what is in a sealed chunk as consumed; the package log's retention
/// deleting up to that position leaves the feed able to reopen, and a log pruned past the chain
/// (the stream was not configured meanwhile) is continued, not refused as a reset log.
#[test]
fn sealed_position_is_safe_for_log_retention() {
    use peaqos_core::retention::{Consumed, LogRetention};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let keys = MachineStreamKeys::from_secret_hex(SECRET).unwrap();
    {
        // One commit per package: several segments.
        let mut log = PackageLog::open(data, LogOptions { segment_max_bytes: 200 }).unwrap();
        for s in 0..10 {
            log.append(TOPIC, s, &line(s)).unwrap();
            log.commit().unwrap();
        }
    }
    let (mut feed, _) = open(data, &keys);
    // 10 packages, chunks of 4: 0..=7 sealed, 8 and 9 in the open chunk.
    assert_eq!(feed.last_sequence(), Some(9));
    assert_eq!(feed.sealed_upto(), Some(7));
    feed.sync().unwrap();
    drop(feed);
    let bound = LogRetention { max_bytes: 1, max_age: Duration::ZERO, max_total_bytes: 0 };
    let mut log = PackageLog::open(data, LogOptions { segment_max_bytes: 200 }).unwrap();
    log.prune(TOPIC, &bound, Consumed::UpTo(7), std::time::SystemTime::now()).unwrap();
    let first = peaqos_core::package_log::first_logged_sequence(data, TOPIC).unwrap().unwrap();
    assert!(first > 0 && first <= 7, "first kept {first}");
    for s in 10..13 {
        log.append(TOPIC, s, &line(s)).unwrap();
    }
    log.commit().unwrap();
    // Reopen: the open chunk is sealed by recovery, 10..12 are replayed; nothing lost, nothing twice.
    let (mut feed, _) = open(data, &keys);
    assert_eq!(feed.last_sequence(), Some(12));
    feed.close_now().unwrap();
    assert_eq!(feed.sealed_upto(), Some(12));
    assert_eq!(chain_sequences(data, &keys), (0..13).collect::<Vec<_>>());
    drop(feed);
    // The log moves on without the stream and retention prunes past the chain's end.
    for s in 13..40 {
        log.append(TOPIC, s, &line(s)).unwrap();
        log.commit().unwrap();
    }
    log.prune(TOPIC, &bound, Consumed::NoConsumer, std::time::SystemTime::now()).unwrap();
    let first = peaqos_core::package_log::first_logged_sequence(data, TOPIC).unwrap().unwrap();
    assert!(first > 13, "first kept {first}");
    let (mut feed, _) = open(data, &keys);
    assert_eq!(feed.last_sequence(), Some(39));
    feed.close_now().unwrap();
    let seqs = chain_sequences(data, &keys);
    let want: Vec<u64> = (0..13).chain(first..40).collect();
    assert_eq!(seqs, want);
}

/// A seal that fails for lack of space keeps the open chunk (in memory: nothing was written
/// twice) and is retried; nothing is lost or doubled. The stream directory is on a small tmpfs
/// this test mounts (root or CAP_SYS_ADMIN: it fails without, never skips).
#[test]
fn a_seal_on_a_full_disk_keeps_the_open_chunk_and_retries() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let fs = data.join("stream");
    std::fs::create_dir_all(&fs).unwrap();
    let out = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&fs).output();
    let out = out.expect("run mount");
    assert!(
        out.status.success(),
        "this test needs root or CAP_SYS_ADMIN to mount a tmpfs: mount said {:?}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(fs.clone());
    let keys = MachineStreamKeys::from_secret_hex(SECRET).unwrap();
    log_packages(data, 0..4);
    let (mut f, _) = {
        let did = keys.default_did();
        let policy = ChunkPolicy { max_bytes: 1 << 20, max_messages: 4, max_age: Duration::from_secs(3600) };
        let r =
            TopicFeed::open(&fs, data, TOPIC, policy, &keys, &did, &format!("{did}#s"), &Recipients::default(), true);
        r.unwrap()
    };
    assert_eq!(f.sealed_upto(), Some(3), "0..=3 replayed and sealed at open");
    log_packages(data, 4..9);
    // Fill the file system.
    let mut filler = std::fs::File::create(fs.join("filler")).unwrap();
    for block in [65_536usize, 512, 1] {
        while filler.write_all(&vec![0u8; block]).is_ok() {}
    }
    drop(filler);
    for s in 4..8 {
        assert!(f.push(s, line(s).as_bytes()).unwrap().is_empty(), "nothing can be sealed on a full disk");
    }
    assert_eq!(f.writer().open_messages(), 4, "the full chunk stays open");
    assert_eq!(f.sealed_upto(), Some(3), "retention must keep 4..7 in the package log");
    std::fs::remove_file(fs.join("filler")).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let sealed = f.push(8, line(8).as_bytes()).unwrap();
    assert_eq!(sealed.len(), 1, "retried once space is back");
    assert_eq!(f.sealed_upto(), Some(8));
    drop(f);
    let dir = store::topic_dir(&fs, TOPIC).unwrap();
    let mut seqs = Vec::new();
    for i in store::sealed_indices(&dir).unwrap() {
        let c = store::load_chunk(&dir, i).unwrap();
        let e = c.recipient(RecipientType::Machine).unwrap();
        let pt =
            decrypt_chunk(&c, e, keys.x25519_secret(), &store::read(&store::chunk_paths(&dir, i).1).unwrap()).unwrap();
        seqs.extend(pt.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| line_sequence(l, "t").unwrap()));
    }
    assert_eq!(seqs, (0..9).collect::<Vec<_>>());
}
