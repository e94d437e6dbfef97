//! StreamSet: config parsing, multi-topic appends, restart, upload, grant_access, seal_dataset.

use std::time::{Duration, SystemTime};

use peaqos_stream::dataset::{verify_dataset, verify_proof};
use peaqos_stream::grant::{decrypt_with_grants, GrantRange};
use peaqos_stream::keys::MachineStreamKeys;
use peaqos_stream::store;
use peaqos_stream::streams::{StreamConfig, StreamSet};
use peaqos_stream::verify::verify_dir;

const SECRET: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

fn cfg(dir: &std::path::Path) -> StreamConfig {
    serde_json::from_value(serde_json::json!({
        "data_dir": dir,
        "policy": {"max_bytes": 100000, "max_messages": 3, "max_age": 2.5},
        "owner_public_key_hex": hex::encode(peaqos_stream::crypto::x25519_public(&[1u8; 32])),
        "destination": {"kind": "local"}
    }))
    .unwrap()
}

#[test]
fn stream_set_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(serde_json::from_value::<StreamConfig>(serde_json::json!({"data_dir": "/x", "polcy": {}})).is_err());
    let partial: StreamConfig =
        serde_json::from_value(serde_json::json!({"data_dir": "/x", "policy": {"max_messages": 5}})).unwrap();
    assert_eq!((partial.policy.max_messages, partial.policy.max_bytes), (5, 1 << 20));
    let keys = MachineStreamKeys::from_secret_hex(SECRET).unwrap();
    let did = keys.default_did();
    let mut s = StreamSet::new(cfg(tmp.path()), keys, &did).unwrap();
    let mut sealed = Vec::new();
    for i in 0..7 {
        sealed.extend(s.append("/a", format!("{{\"a\":{i}}}").as_bytes()).unwrap());
        sealed.extend(s.append("/b/c", format!("{{\"b\":{i}}}").as_bytes()).unwrap());
    }
    s.sync().unwrap();
    assert_eq!(sealed.len(), 4);
    assert!(s.poll(SystemTime::now()).unwrap().is_empty());
    assert_eq!(s.poll(SystemTime::now() + Duration::from_secs(3)).unwrap().len(), 2);
    s.append("/a", b"{\"a\":7}").unwrap();
    s.sync().unwrap();
    drop(s);
    // restart: the open chunk of /a is sealed by recovery and handed back by the first append
    let keys = MachineStreamKeys::from_secret_hex(SECRET).unwrap();
    let mut s = StreamSet::new(cfg(tmp.path()), keys, &did).unwrap();
    let out = s.append("/a", b"{\"a\":8}").unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].chunk.index, 3);
    assert_eq!(s.close_all().unwrap().len(), 1);
    s.open_topic("/b/c").unwrap();
    let up = s.upload(100).unwrap();
    assert_eq!(up.iter().map(|(_, r)| r.stored.len()).sum::<usize>(), 8);
    let adir = store::topic_dir(tmp.path(), "/a").unwrap();
    assert_eq!(verify_dir(&adir, None).unwrap().chunks, 5);
    // grant_access
    let buyer = [5u8; 32];
    let (paths, files) = s
        .grant_access(
            "/a",
            &GrantRange::parse("1..3").unwrap(),
            &hex::encode(peaqos_stream::crypto::x25519_public(&buyer)),
            "buyer-7",
            &tmp.path().join("g"),
        )
        .unwrap();
    assert_eq!(paths.len(), 1);
    let pts = decrypt_with_grants(&adir, &files[0].entries, &buyer).unwrap();
    let text: String = pts.iter().map(|(_, p)| String::from_utf8(p.to_vec()).unwrap()).collect();
    assert_eq!(text, "{\"a\":3}\n{\"a\":4}\n{\"a\":5}\n{\"a\":6}\n{\"a\":7}\n");
    // seal_dataset with an external signer callback
    let signer_keys = MachineStreamKeys::from_secret_hex(SECRET).unwrap();
    let signer = move |m: &[u8]| signer_keys.eip191_sign(m);
    let (p, m) = s.seal_dataset("/a", 0, 4, &signer).unwrap();
    assert!(p.ends_with("datasets/0-4.json"));
    assert_eq!(verify_dataset(&m).unwrap(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    let proof = m.prove(&m.chunk_ids[4]).unwrap();
    verify_proof(&proof, Some(&m.merkle_root)).unwrap();
    // a dataset signed by another key does not verify for this DID
    let other = MachineStreamKeys::from_secret_hex(&"22".repeat(32)).unwrap();
    let bad_signer = move |m: &[u8]| other.eip191_sign(m);
    let (_, bad) = s.seal_dataset("/a", 0, 1, &bad_signer).unwrap();
    assert!(verify_dataset(&bad).unwrap_err().to_string().contains("machine DID"));
    // a range past the chain is refused
    assert!(s
        .seal_dataset("/a", 3, 9, &|m: &[u8]| MachineStreamKeys::from_secret_hex(SECRET)?.eip191_sign(m))
        .is_err());
}
