//! Chunk and grant retention: a local ciphertext goes only once every destination stored it,
//! oldest first, over the bound, never the newest chunk, never on a chain whose directory is
//! the stored copy; what is kept still verifies, and pruned chunks stay grantable and fetchable
//! from their destination.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use peaqos_stream::chain::verify_chain_from;
use peaqos_stream::keys::MachineStreamKeys;
use peaqos_stream::retention::{prune_grants, prune_local_chunks, ChunkRetention, LocalOnly};
use peaqos_stream::storage::{destination, upload_pending_slot, Destination, DestinationConfig};
use peaqos_stream::store;
use peaqos_stream::writer::{ChunkPolicy, ChunkWriter, Recipients};

const SECRET: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// A chain of `n` sealed chunks (two packages each, ~2 KB of plaintext per chunk).
fn chain(data: &Path, n: u64) -> PathBuf {
    let k = MachineStreamKeys::from_secret_hex(SECRET).unwrap();
    let did = k.default_did();
    let policy = ChunkPolicy { max_bytes: 1 << 20, max_messages: 2, max_age: Duration::from_secs(60) };
    let (mut w, _) =
        ChunkWriter::open(data, "/cam", policy, &k, &did, &format!("{did}#keys-1"), &Recipients::default()).unwrap();
    for i in 0..n * 2 {
        w.append(format!("{{\"sequenceNumber\":{i},\"blob\":\"{}\"}}", "x".repeat(1000)).as_bytes()).unwrap();
    }
    w.dir().to_path_buf()
}

fn bins(dir: &Path) -> Vec<u64> {
    store::sealed_indices(dir).unwrap().into_iter().filter(|&i| store::chunk_paths(dir, i).1.exists()).collect()
}

fn local_copy(root: &Path) -> Box<dyn Destination> {
    destination(&DestinationConfig::Local { dir: Some(root.to_owned()) })
}

fn down_walrus() -> Box<dyn Destination> {
    destination(&DestinationConfig::Walrus {
        publisher_url: "http://127.0.0.1:9".into(),
        aggregator_url: "http://127.0.0.1:9".into(),
        epochs: 1,
        permanent: None,
        publisher_token: None,
        timeout_secs: 1,
    })
}

#[test]
fn uploaded_chunks_go_oldest_first_and_the_chain_still_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = chain(&tmp.path().join("stream"), 10);
    let remote = tmp.path().join("remote");
    let dests = vec![local_copy(&remote)];
    let bound = ChunkRetention { max_bytes: 1, max_age: Duration::ZERO, local_only: LocalOnly::Keep };
    // Nothing uploaded yet: nothing goes.
    let r = prune_local_chunks(&dir, &dests, &bound, SystemTime::now()).unwrap();
    assert_eq!(r.removed_chunks, 0);
    assert!(r.held_for_upload);
    // Upload the first 6 of 10.
    let up = upload_pending_slot(&dir, dests[0].as_ref(), 6, 0).unwrap();
    assert_eq!(up.stored.len(), 6);
    let r = prune_local_chunks(&dir, &dests, &bound, SystemTime::now()).unwrap();
    assert_eq!(r.removed_chunks, 6, "{r:?}");
    assert!(r.held_for_upload);
    assert_eq!(bins(&dir), (6..10).collect::<Vec<_>>());
    // Everything uploaded: all but the newest go.
    upload_pending_slot(&dir, dests[0].as_ref(), 100, 0).unwrap();
    let r = prune_local_chunks(&dir, &dests, &bound, SystemTime::now()).unwrap();
    assert_eq!(r.removed_chunks, 3);
    assert_eq!(bins(&dir), vec![9], "the newest chunk stays (the feed resumes from it)");
    // Envelopes stay: the whole chain verifies with the ciphertexts fetched from storageRef.
    let chunks: Vec<_> = (0..10).map(|i| store::load_chunk(&dir, i).unwrap()).collect();
    let v = verify_chain_from(&chunks, 0, None, |i| {
        let r = chunks[i as usize].storage_ref.clone()?;
        dests[0].get(&r).ok()
    });
    assert!(v.valid, "{v:?}");
    // `peaqos-stream verify` (verify_dir) accepts the chunks stored elsewhere, says how many,
    // and still checks their links, ids and signatures.
    let r = peaqos_stream::verify::verify_dir(&dir, None).unwrap();
    assert_eq!((r.chunks, r.stored_elsewhere), (10, 9));
    // A dataset can still be sealed over pruned chunks (it commits to chunk ids).
    let k = MachineStreamKeys::from_secret_hex(SECRET).unwrap();
    let sign = |m: &[u8]| k.eip191_sign(m);
    let m = peaqos_stream::dataset::build_dataset(&tmp.path().join("stream"), "/cam", 0, 5, &k.default_did(), 1, &sign)
        .unwrap();
    assert_eq!(m.chunk_ids.len(), 6);
    let mut c3: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("3.json")).unwrap()).unwrap();
    c3["encryptedDataHash"] = serde_json::Value::String(format!("0x{}", "ab".repeat(32)));
    std::fs::write(dir.join("3.json"), serde_json::to_vec(&c3).unwrap()).unwrap();
    assert!(peaqos_stream::verify::verify_dir(&dir, None).is_err(), "a forged envelope of a pruned chunk");
}

#[test]
fn bytes_bound_keeps_the_newest_within_it_and_age_bound_takes_old_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = chain(&tmp.path().join("stream"), 8);
    let dests = vec![local_copy(&tmp.path().join("remote"))];
    upload_pending_slot(&dir, dests[0].as_ref(), 100, 0).unwrap();
    let one = std::fs::metadata(store::chunk_paths(&dir, 0).1).unwrap().len();
    let bound = ChunkRetention { max_bytes: one * 3 + 64, max_age: Duration::ZERO, local_only: LocalOnly::Keep };
    let r = prune_local_chunks(&dir, &dests, &bound, SystemTime::now()).unwrap();
    assert!(r.kept_bytes <= one * 3 + 64, "{r:?}");
    assert_eq!(bins(&dir), vec![5, 6, 7]);
    let bound = ChunkRetention { max_bytes: 0, max_age: Duration::from_secs(60), local_only: LocalOnly::Keep };
    let r = prune_local_chunks(&dir, &dests, &bound, SystemTime::now()).unwrap();
    assert_eq!(r.removed_chunks, 0, "none is a minute old");
    let r = prune_local_chunks(&dir, &dests, &bound, SystemTime::now() + Duration::from_secs(120)).unwrap();
    assert_eq!(r.removed_chunks, 2);
    assert_eq!(bins(&dir), vec![7]);
}

#[test]
fn every_destination_must_have_it_and_the_chain_dir_as_destination_is_never_pruned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = chain(&tmp.path().join("stream"), 5);
    let bound = ChunkRetention { max_bytes: 1, max_age: Duration::ZERO, local_only: LocalOnly::Keep };
    // A second destination that is down: nothing is stored everywhere, nothing goes.
    let dests = vec![local_copy(&tmp.path().join("remote")), down_walrus()];
    upload_pending_slot(&dir, dests[0].as_ref(), 100, 0).unwrap();
    let up = upload_pending_slot(&dir, dests[1].as_ref(), 100, 1).unwrap();
    assert!(up.failed.is_some());
    let r = prune_local_chunks(&dir, &dests, &bound, SystemTime::now()).unwrap();
    assert_eq!(r.removed_chunks, 0);
    assert!(r.held_for_upload);
    assert_eq!(bins(&dir).len(), 5);
    // The default destination (`local` without `dir`) is the chain directory: never pruned.
    let dests = vec![destination(&DestinationConfig::Local { dir: None })];
    let dir2 = chain(&tmp.path().join("stream2"), 5);
    upload_pending_slot(&dir2, dests[0].as_ref(), 100, 0).unwrap();
    let r = prune_local_chunks(&dir2, &dests, &bound, SystemTime::now()).unwrap();
    assert!(r.local_only);
    assert_eq!(r.removed_chunks, 0);
    assert_eq!(bins(&dir2).len(), 5);
    // Unless the policy says so: then the oldest go for good, the newest and every envelope stay,
    // and the chain of chunk ids still verifies from the first chunk.
    let delete = ChunkRetention { local_only: LocalOnly::DeleteOldest, ..bound };
    let r = prune_local_chunks(&dir2, &dests, &delete, SystemTime::now()).unwrap();
    assert_eq!(r.removed_chunks, 4);
    assert_eq!(bins(&dir2), vec![4]);
    let v = peaqos_stream::verify::verify_dir(&dir2, None).unwrap();
    assert_eq!((v.chunks, v.stored_elsewhere), (5, 4));
    // It still waits for every other destination.
    let dir3 = chain(&tmp.path().join("stream3"), 5);
    let dests = vec![destination(&DestinationConfig::Local { dir: None }), down_walrus()];
    upload_pending_slot(&dir3, dests[0].as_ref(), 100, 0).unwrap();
    let r = prune_local_chunks(&dir3, &dests, &delete, SystemTime::now()).unwrap();
    assert_eq!(r.removed_chunks, 0);
    assert!(r.held_for_upload);
    assert_eq!(LocalOnly::parse("delete_oldest"), Some(LocalOnly::DeleteOldest));
    assert_eq!(LocalOnly::parse("sometimes"), None);
}

#[test]
fn old_grant_directories_go() {
    let tmp = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let now_ms = store::unix_ms(now);
    let g = tmp.path().join("grants");
    let old = g.join("aa").join((now_ms - 3_600_000).to_string());
    let new = g.join("aa").join(now_ms.to_string());
    let lone = g.join("bb").join((now_ms - 7_200_000).to_string());
    for d in [&old, &new, &lone] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("x-1.json"), b"{}").unwrap();
    }
    assert_eq!(prune_grants(tmp.path(), Duration::ZERO, now).unwrap(), 0, "0 = off");
    assert_eq!(prune_grants(tmp.path(), Duration::from_secs(1800), now).unwrap(), 2);
    assert!(!old.exists() && new.exists());
    assert!(!g.join("bb").exists(), "an emptied buyer directory goes too");
}
