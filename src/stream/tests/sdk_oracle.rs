//! Cross-checks against the real peaq-os-sdk 0.12.1 (the oracle) through
//! `test/stream/sdk_oracle.py`. Skipped with a note if `/work/main/.venv/bin/python` (or
//! `$PEAQOS_SDK_PYTHON`) is absent.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use peaqos_stream::chain::{decrypt_chunk, ChunkRandom, OsRandom};
use peaqos_stream::crypto::{sha256, x25519_public};
use peaqos_stream::envelope::{BuyerAccessEntry, KeyRecipient, RecipientType, BUYER_ACCESS_SCHEMA_VERSION};
use peaqos_stream::grant::{
    build_buyer_access_files, decrypt_with_grants, grant, load_grant_file, write_buyer_access_files, GrantRange,
};
use peaqos_stream::keys::MachineStreamKeys;
use peaqos_stream::store;
use peaqos_stream::verify::verify_dir;
use peaqos_stream::writer::{ChunkPolicy, ChunkWriter, Recipients};
use serde_json::Value;

const SECRET: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const OWNER_SK: [u8; 32] = [0x11; 32];
const OPERATOR_SK: [u8; 32] = [0x12; 32];
const BUYER_SK: [u8; 32] = [0x22; 32];

use peaqos_testkit::sdk_python as python;

fn oracle(py: &Path, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test/stream/sdk_oracle.py");
    let out = Command::new(py).arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "oracle {:?} failed: {}", args, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn sdk_accepts_our_chain_decrypts_it_and_grants_interchange() {
    let py = python();
    let tmp = tempfile::tempdir().unwrap();
    let k = MachineStreamKeys::from_secret_hex(SECRET).unwrap();
    let did = k.default_did();
    let rec = Recipients { owner: Some(x25519_public(&OWNER_SK)), operator: Some(x25519_public(&OPERATOR_SK)) };
    let policy = ChunkPolicy { max_bytes: 3000, max_messages: 5, max_age: Duration::from_secs(60) };
    let (mut w, _) =
        ChunkWriter::open(tmp.path(), "/robot/odom", policy, &k, &did, &format!("{did}#keys-1"), &rec).unwrap();
    for i in 0..23u32 {
        let l =
            format!("{{\"did\":\"{did}\",\"payload\":{{\"x\":{i},\"name\":\"Z\\u00fcrich\"}},\"sequenceNumber\":{i}}}");
        w.append(l.as_bytes()).unwrap();
    }
    w.close_now().unwrap().unwrap();
    let tdir = w.dir().to_path_buf();
    let n = store::sealed_indices(&tdir).unwrap().len();
    assert_eq!(n, 5);
    // our grant (machine entry → buyer), files in wire form
    let entries =
        grant(tmp.path(), "/robot/odom", &GrantRange::parse("0..4").unwrap(), &k, &x25519_public(&BUYER_SK), "buyer-1")
            .unwrap();
    let files = build_buyer_access_files(entries, &hex::encode(x25519_public(&BUYER_SK)), 500 * 1024).unwrap();
    assert_eq!(files.len(), 1);
    let gdir = tmp.path().join("grants");
    let paths = write_buyer_access_files(&gdir, &files).unwrap();
    let sdk_grant = tmp.path().join("sdk-grant.json");
    let r = oracle(
        &py,
        &[
            "check",
            tdir.to_str().unwrap(),
            &hex::encode(OWNER_SK),
            &hex::encode(BUYER_SK),
            paths[0].to_str().unwrap(),
            sdk_grant.to_str().unwrap(),
        ],
    );
    assert_eq!(r["verify"]["valid"], Value::Bool(true), "{r}");
    assert_eq!(r["verify"]["total_chunks"], 5);
    // plaintexts the SDK decrypted (owner and with our buyer grant) equal ours
    let mine: Vec<String> = decrypt_with_grants(&tdir, &files[0].entries, &BUYER_SK)
        .unwrap()
        .iter()
        .map(|(_, p)| hex::encode(sha256(p)))
        .collect();
    let sdk_owner: Vec<String> =
        r["owner_plaintext_sha256"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let sdk_buyer: Vec<String> =
        r["buyer_plaintext_sha256"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(mine, sdk_owner);
    assert_eq!(mine, sdk_buyer);
    // SDK-made grant (snake_case form) decrypts with ours
    let sdk_file = load_grant_file(&sdk_grant).unwrap();
    let via_sdk: Vec<String> = decrypt_with_grants(&tdir, &sdk_file.entries, &BUYER_SK)
        .unwrap()
        .iter()
        .map(|(_, p)| hex::encode(sha256(p)))
        .collect();
    assert_eq!(via_sdk, mine);
    // a grant for another key is refused and named
    let e = decrypt_with_grants(&tdir, &sdk_file.entries, &[0x33; 32]).unwrap_err().to_string();
    assert!(e.contains("grant is for another key"), "{e}");
    // a grant whose public key is altered to ours but wraps for someone else fails to open
    let mut forged = sdk_file.entries[0].clone();
    forged.buyer.public_key_hex = hex::encode(x25519_public(&[0x33; 32]));
    let e = decrypt_with_grants(&tdir, &[forged], &[0x33; 32]).unwrap_err().to_string();
    assert!(e.contains("key unwrap"), "{e}");
}

/// A chain whose chunks were written as they grew (ciphertext appended line by line, the tag at
/// seal: what the node writes for a streamed topic) is, for the SDK, a chain like any other: it
/// verifies, decrypts with the owner's key and with a buyer grant, and every byte is the same as
/// the plaintext we appended.
#[test]
fn sdk_accepts_chunks_written_as_they_grow() {
    let py = python();
    let tmp = tempfile::tempdir().unwrap();
    let k = MachineStreamKeys::from_secret_hex(SECRET).unwrap();
    let did = k.default_did();
    let rec = Recipients { owner: Some(x25519_public(&OWNER_SK)), operator: Some(x25519_public(&OPERATOR_SK)) };
    let policy = ChunkPolicy { max_bytes: 2500, max_messages: 6, max_age: Duration::from_secs(60) };
    let (mut w, _) =
        ChunkWriter::open(tmp.path(), "/robot/cam", policy, &k, &did, &format!("{did}#keys-1"), &rec).unwrap();
    assert!(w.enable_direct(&k, &mut |_| true).unwrap().is_none());
    let mut want = Vec::new();
    for i in 0..31u32 {
        let l = format!(
            "{{\"did\":\"{did}\",\"payload\":{{\"data\":\"{}\"}},\"sequenceNumber\":{i}}}",
            "QUJD".repeat(i as usize * 9)
        );
        w.append(l.as_bytes()).unwrap();
        w.sync().unwrap();
        want.push(l);
    }
    w.close_now().unwrap().unwrap();
    let tdir = w.dir().to_path_buf();
    let n = store::sealed_indices(&tdir).unwrap().len();
    assert!(n >= 6, "{n} chunks");
    assert!(!std::fs::read_dir(&tdir).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".key.json")));
    let range = format!("0..{}", n - 1);
    let entries =
        grant(tmp.path(), "/robot/cam", &GrantRange::parse(&range).unwrap(), &k, &x25519_public(&BUYER_SK), "buyer-1")
            .unwrap();
    let files = build_buyer_access_files(entries, &hex::encode(x25519_public(&BUYER_SK)), 500 * 1024).unwrap();
    let paths = write_buyer_access_files(&tmp.path().join("grants"), &files).unwrap();
    let sdk_grant = tmp.path().join("sdk-grant.json");
    let r = oracle(
        &py,
        &[
            "check",
            tdir.to_str().unwrap(),
            &hex::encode(OWNER_SK),
            &hex::encode(BUYER_SK),
            paths[0].to_str().unwrap(),
            sdk_grant.to_str().unwrap(),
        ],
    );
    assert_eq!(r["verify"]["valid"], Value::Bool(true), "{r}");
    assert_eq!(r["verify"]["total_chunks"], n);
    let mine: Vec<(u64, Vec<u8>)> = decrypt_with_grants(&tdir, &files[0].entries, &BUYER_SK)
        .unwrap()
        .into_iter()
        .map(|(i, p)| (i, p.to_vec()))
        .collect();
    let plain: String = mine.iter().map(|(_, p)| String::from_utf8(p.clone()).unwrap()).collect();
    assert_eq!(plain.lines().collect::<Vec<_>>(), want.iter().map(String::as_str).collect::<Vec<_>>());
    let sdk_owner: Vec<String> =
        r["owner_plaintext_sha256"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let sdk_buyer: Vec<String> =
        r["buyer_plaintext_sha256"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let ours: Vec<String> = mine.iter().map(|(_, p)| hex::encode(sha256(p))).collect();
    assert_eq!(ours, sdk_owner);
    assert_eq!(ours, sdk_buyer);
}

#[test]
fn we_accept_sdk_built_chains_and_grants() {
    let py = python();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("topic");
    let (owner, operator, machine, ed) = ([1u8; 32], [2u8; 32], [3u8; 32], [5u8; 32]);
    let r = oracle(
        &py,
        &[
            "build",
            d.to_str().unwrap(),
            &hex::encode(owner),
            &hex::encode(operator),
            &hex::encode(machine),
            &hex::encode(ed),
            &hex::encode(BUYER_SK),
        ],
    );
    let n = r["chunks"].as_u64().unwrap();
    assert_eq!(n, 5);
    let rep = verify_dir(&d, None).unwrap();
    assert_eq!(rep.chunks, 5);
    let plain = std::fs::read(tmp.path().join("plain.bin")).unwrap();
    let mut joined = Vec::new();
    for i in 0..n {
        let c = store::load_chunk(&d, i).unwrap();
        let ct = std::fs::read(store::chunk_paths(&d, i).1).unwrap();
        let pt = decrypt_chunk(&c, c.recipient(RecipientType::Machine).unwrap(), &machine, &ct).unwrap();
        let pt2 = decrypt_chunk(&c, c.recipient(RecipientType::Owner).unwrap(), &owner, &ct).unwrap();
        assert_eq!(pt, pt2);
        joined.extend_from_slice(&pt);
    }
    assert_eq!(joined, plain);
    assert_eq!(peaqos_stream::crypto::hash_hex0x(&plain), r["source_hash"].as_str().unwrap());
    let g = load_grant_file(&tmp.path().join("sdk-buyer-grant.json")).unwrap();
    let pts = decrypt_with_grants(&d, &g.entries, &BUYER_SK).unwrap();
    assert_eq!(pts.iter().flat_map(|(_, p)| p.iter().copied()).collect::<Vec<u8>>(), plain);
    // tamper: flip one ciphertext bit → hash_mismatch named
    let mut b = std::fs::read(d.join("2.bin")).unwrap();
    b[0] ^= 0x80;
    std::fs::write(d.join("2.bin"), b).unwrap();
    let e = verify_dir(&d, None).unwrap_err().to_string();
    assert!(e.contains("chunk index 2") && e.contains("hash_mismatch"), "{e}");
}

#[test]
fn grant_file_batching_matches_sdk() {
    let py = python();
    let buyer = hex::encode(x25519_public(&BUYER_SK));
    for (n, max) in [(10usize, 600usize), (50, 2000), (7, 1), (3, 500 * 1024)] {
        let sdk = oracle(&py, &["batching", &buyer, &n.to_string(), &max.to_string()]);
        let entries: Vec<BuyerAccessEntry> = (0..n)
            .map(|i| BuyerAccessEntry {
                chunk_id: format!("0x{i:064x}"),
                buyer: KeyRecipient {
                    recipient_id: "buyer-1".into(),
                    recipient_type: RecipientType::Buyer,
                    algorithm: "x25519-sealedbox".into(),
                    public_key_hex: buyer.clone(),
                    wrapped_key_hex: "ab".repeat(80),
                },
                schema_version: BUYER_ACCESS_SCHEMA_VERSION.into(),
            })
            .collect();
        let ours: Vec<Value> = build_buyer_access_files(entries, &buyer, max)
            .unwrap()
            .iter()
            .map(|f| serde_json::json!([f.file_name, f.entries.len()]))
            .collect();
        assert_eq!(Value::Array(ours), sdk, "n={n} max={max}");
    }
    let _ = OsRandom.fill(peaqos_stream::chain::RandomPurpose::Nonce, &mut [0u8; 4]);
}
