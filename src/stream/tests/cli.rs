//! End-to-end tests of the `peaqos-stream` binary.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use peaqos_stream::crypto::x25519_public;
use peaqos_stream::keys::MachineStreamKeys;
use peaqos_stream::writer::{ChunkPolicy, ChunkWriter, Recipients};

const SECRET: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peaqos-stream")).args(args).env("PEAQOS_PRIVATE_KEY", SECRET).output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn fails(o: &Output, code: i32, needle: &str) {
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "stderr: {e}");
    assert!(e.contains(needle), "stderr {e:?} should contain {needle:?}");
}

/// `peaqos-stream grant` of `range` of `/cam/info` under `data` to `buyer_pk`, then `extra`.
fn grant(data: &str, buyer_pk: &str, range: &str, extra: &[&str]) -> Output {
    let mut args = vec!["grant", "--data-dir", data, "--topic", "/cam/info", "--buyer-pk", buyer_pk, "--range", range];
    args.extend_from_slice(extra);
    cli(&args)
}

/// One chain of 18 packages in chunks of 4, checked through the CLI in three steps: grant and
/// decrypt, dataset and proofs, tampering and usage errors (the last step damages the chain).
#[test]
fn grant_decrypt_dataset_prove_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let k = MachineStreamKeys::from_secret_hex(SECRET).unwrap();
    let did = k.default_did();
    let policy = ChunkPolicy { max_bytes: 1 << 20, max_messages: 4, max_age: Duration::from_secs(60) };
    let (mut w, _) =
        ChunkWriter::open(&data, "/cam/info", policy, &k, &did, &format!("{did}#keys-1"), &Recipients::default())
            .unwrap();
    let lines: Vec<String> = (0..18).map(|i| format!("{{\"sequenceNumber\":{i}}}")).collect();
    for l in &lines {
        w.append(l.as_bytes()).unwrap();
    }
    w.close_now().unwrap();
    let tdir = w.dir().to_path_buf();
    drop(w);

    let v = ok(&cli(&["verify", data.to_str().unwrap(), "--signer-pk", &hex::encode(k.ed25519_public)]));
    assert!(v.contains("\"chunks\": 5"), "{v}");
    grant_then_decrypt(tmp.path(), &data, &tdir, &lines);
    dataset_then_prove(tmp.path(), &data);
    tamper_and_misuse(&data, &tdir);
}

/// Grant chunks 1..3 to a buyer and decrypt them with the buyer key; refusals of another key,
/// low-order buyer keys and a range beyond the chain.
fn grant_then_decrypt(tmp: &Path, data: &Path, tdir: &Path, lines: &[String]) {
    let (data_s, tdir_s) = (data.to_str().unwrap(), tdir.to_str().unwrap());
    let buyer_sk = [0x42u8; 32];
    let skf = tmp.join("buyer.key");
    std::fs::write(&skf, format!("0x{}\n", hex::encode(buyer_sk))).unwrap();
    let gout = tmp.join("grants");
    ok(&grant(data_s, &hex::encode(x25519_public(&buyer_sk)), "1..3", &["--out", gout.to_str().unwrap()]));
    let gfile = gout.join(format!("{}-1.json", hex::encode(x25519_public(&buyer_sk))));
    assert!(gfile.exists());
    let pt =
        ok(&cli(&["decrypt", "--grant", gfile.to_str().unwrap(), "--secret-key-file", skf.to_str().unwrap(), tdir_s]));
    assert_eq!(pt.lines().collect::<Vec<_>>(), lines[4..16].iter().map(String::as_str).collect::<Vec<_>>());
    // grant for another key
    let other = tmp.join("other.key");
    std::fs::write(&other, hex::encode([7u8; 32])).unwrap();
    fails(
        &cli(&["decrypt", "--grant", gfile.to_str().unwrap(), "--secret-key-file", other.to_str().unwrap(), tdir_s]),
        1,
        "grant is for another key",
    );
    // low-order buyer keys (their shared secret is all-zero: anyone could open the grant)
    for low in [
        "00".repeat(32),
        format!("01{}", "00".repeat(31)),
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800".to_string(),
        format!("ec{}7f", "ff".repeat(30)),
    ] {
        fails(&grant(data_s, &low, "1..3", &[]), 1, "--buyer-pk");
        fails(&grant(data_s, &low, "1..3", &[]), 1, "low-order");
    }
    // range beyond the chain
    fails(&grant(data_s, &"11".repeat(32), "3..9", &[]), 1, "not found");
}

/// A dataset over chunks 0..4, a proof for chunk 2; a tampered proof and dataset are refused.
fn dataset_then_prove(tmp: &Path, data: &Path) {
    let ds = tmp.join("ds.json");
    ok(&cli(&[
        "dataset",
        "--data-dir",
        data.to_str().unwrap(),
        "--topic",
        "/cam/info",
        "--range",
        "0..4",
        "--out",
        ds.to_str().unwrap(),
    ]));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&ds).unwrap()).unwrap();
    let c2 = m["chunkIds"][2].as_str().unwrap().to_string();
    let proof = tmp.join("proof.json");
    ok(&cli(&["prove", "--dataset", ds.to_str().unwrap(), "--chunk", &c2, "--out", proof.to_str().unwrap()]));
    let r = ok(&cli(&["verify-proof", "--proof", proof.to_str().unwrap(), "--dataset", ds.to_str().unwrap()]));
    assert!(r.contains("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"), "{r}");
    // tampered proof / dataset
    let mut p: serde_json::Value = serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    p["leafIndex"] = 3.into();
    let bad = tmp.join("bad-proof.json");
    std::fs::write(&bad, serde_json::to_vec(&p).unwrap()).unwrap();
    fails(&cli(&["verify-proof", "--proof", bad.to_str().unwrap()]), 1, "audit path does not lead to merkleRoot");
    let mut md = m.clone();
    md["topic"] = "/other".into();
    let badds = tmp.join("bad-ds.json");
    std::fs::write(&badds, serde_json::to_vec(&md).unwrap()).unwrap();
    fails(
        &cli(&["verify-proof", "--proof", proof.to_str().unwrap(), "--dataset", badds.to_str().unwrap()]),
        1,
        "signature",
    );
}

/// A tampered chunk: verify names the chunk and the check; usage errors exit with 2.
fn tamper_and_misuse(data: &Path, tdir: &Path) {
    let tdir_s = tdir.to_str().unwrap();
    let mut b = std::fs::read(tdir.join("3.bin")).unwrap();
    b[1] ^= 4;
    std::fs::write(tdir.join("3.bin"), b).unwrap();
    fails(&cli(&["verify", tdir_s]), 1, "chunk index 3");
    fails(&cli(&["verify", tdir_s]), 1, "hash_mismatch");
    // usage errors
    // (clap's wording since the command line moved to clap: the old loop said "missing --topic"
    // and "unknown command")
    fails(&cli(&["grant", "--data-dir", data.to_str().unwrap()]), 2, "required arguments were not provided");
    fails(&cli(&["grant", "--data-dir", data.to_str().unwrap()]), 2, "--topic <T>");
    fails(&cli(&["frobnicate"]), 2, "unrecognized subcommand 'frobnicate'");
    fails(
        &cli(&[
            "grant",
            "--data-dir",
            data.to_str().unwrap(),
            "--topic",
            "/cam/info",
            "--buyer-pk",
            "aa",
            "--range",
            "9..1",
        ]),
        2,
        "--range",
    );
    fails(&cli(&["verify", tdir_s, "--no-such-option"]), 2, "unexpected argument '--no-such-option'");
}

/// A chain in the node's layout, `<data_dir>/stream/<topic dir>`, of `n` packages in chunks of 4.
fn node_layout_chain(data_dir: &Path, topic: &str, n: usize) -> std::path::PathBuf {
    let k = MachineStreamKeys::from_secret_hex(SECRET).unwrap();
    let did = k.default_did();
    let policy = ChunkPolicy { max_bytes: 1 << 20, max_messages: 4, max_age: Duration::from_secs(60) };
    let root = peaqos_base::layout::stream_dir(data_dir);
    let (mut w, _) =
        ChunkWriter::open(&root, topic, policy, &k, &did, &format!("{did}#keys-1"), &Recipients::default()).unwrap();
    for i in 0..n {
        w.append(format!("{{\"sequenceNumber\":{i}}}").as_bytes()).unwrap();
    }
    w.close_now().unwrap();
    w.dir().to_path_buf()
}

#[test]
fn data_dir_is_the_nodes_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    node_layout_chain(&data, "/robot/odom", 10);
    let data_s = data.to_str().unwrap();
    // verify and grant take the node's data_dir ...
    let v = ok(&cli(&["verify", data_s]));
    assert!(v.contains("\"chunks\": 3"), "{v}");
    let buyer = hex::encode(x25519_public(&[0x42u8; 32]));
    let gout = tmp.path().join("g");
    let g = ok(&cli(&[
        "grant",
        "--data-dir",
        data_s,
        "--topic",
        "/robot/odom",
        "--buyer-pk",
        &buyer,
        "--range",
        "0..2",
        "--out",
        gout.to_str().unwrap(),
    ]));
    assert!(g.contains("\"entries\": 3"), "{g}");
    // ... and still <data_dir>/stream, the form they took before
    let stream = data.join("stream");
    let v = ok(&cli(&["verify", stream.to_str().unwrap()]));
    assert!(v.contains("\"chunks\": 3"), "{v}");
    ok(&cli(&[
        "grant",
        "--data-dir",
        stream.to_str().unwrap(),
        "--topic",
        "/robot/odom",
        "--buyer-pk",
        &buyer,
        "--range",
        "0..0",
        "--out",
        gout.to_str().unwrap(),
    ]));
    // append into the node's data_dir extends the node's chain
    let out = Command::new(env!("CARGO_BIN_EXE_peaqos-stream"))
        .args(["append", "--data-dir", data_s, "--topic", "/robot/odom", "--max-messages", "4"])
        .env("PEAQOS_PRIVATE_KEY", SECRET)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(ok(&out).contains(&format!("{}", stream.join("robot.odom").display())));
    // a topic without a chain names where it looked and what --data-dir means
    fails(
        &cli(&["grant", "--data-dir", data_s, "--topic", "/nope", "--buyer-pk", &buyer, "--range", "0..0"]),
        1,
        "stream/nope does not exist (--data-dir is the node's data_dir",
    );
    fails(&cli(&["verify", tmp.path().to_str().unwrap()]), 1, "no chunk chain found (give the node's data_dir");
}

#[test]
fn help_is_plain_text() {
    let h = ok(&cli(&["--help"]));
    assert!(h.contains("peaqos-stream grant --data-dir D"), "{h}");
    assert!(h.contains("the node's data_dir"), "{h}");
    assert!(!h.contains("```") && !h.contains("//!"), "{h}");
}

#[test]
fn every_command_has_plain_help_version_and_completions() {
    for c in [
        "verify",
        "decrypt",
        "export",
        "grant",
        "dataset",
        "prove",
        "verify-proof",
        "keys",
        "append",
        "upload",
        "completions",
    ] {
        let h = ok(&cli(&[c, "--help"]));
        assert!(h.contains(&format!("Usage: peaqos-stream {c}")), "{c}: {h}");
        assert!(!h.contains("```") && !h.contains("//!") && !h.contains("/// "), "{c}: {h}");
    }
    let h = ok(&cli(&["grant", "--help"]));
    assert!(h.contains("--data-dir <D>") && h.contains("The node's data_dir"), "{h}");
    let v = ok(&cli(&["--version"]));
    assert_eq!(v.trim(), format!("peaqos-stream {}", env!("CARGO_PKG_VERSION")));
    for shell in ["bash", "zsh", "fish"] {
        let c = ok(&cli(&["completions", shell]));
        assert!(c.contains("verify-proof") && c.contains("secret-key-file"), "{shell}");
    }
    fails(&cli(&["completions", "tcsh"]), 2, "invalid value 'tcsh'");
}

#[test]
fn keys_prints_public_keys_only() {
    let out = ok(&cli(&["keys"]));
    assert!(out.contains("x25519PublicKeyHex"));
    assert!(!out.contains(&SECRET[2..]));
}
