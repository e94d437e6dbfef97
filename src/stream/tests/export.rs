//! MCAP export: chains written with the crate's ChunkWriter (real signed packages), exported,
//! read back with the mcap crate's reader; tampering stops the export naming the chunk and the
//! check; grants, datasets and S3 (a real moto server) as sources.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};

use peaqos_core::keys::MachineKey;
use peaqos_core::package::build_signed_package_json;
use peaqos_core::value::{iso8601_utc, Timestamp};
use peaqos_stream::dataset::build_dataset;
use peaqos_stream::export::{export_mcap, CiphertextSource, ExportError, ExportOptions, NoProgress, UNVERIFIED_FIELD};
use peaqos_stream::grant::{grant, GrantRange};
use peaqos_stream::keys::MachineStreamKeys;
use peaqos_stream::storage::{destination, upload_pending, DestinationConfig};
use peaqos_stream::store;
use peaqos_stream::writer::{ChunkPolicy, ChunkWriter, Recipients};

const SECRET: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const T0: i64 = 1_767_225_600;

fn keys() -> MachineStreamKeys {
    MachineStreamKeys::from_secret_hex(SECRET).unwrap()
}

/// A payload of message `i` of `topic`: an IMU-like one with `header.stamp`, or an image-like
/// one with base64 data and an encrypted field (as the field rules leave it).
fn payload(topic: &str, i: u64) -> Map<String, Value> {
    let stamp = json!({"sec": T0 + i as i64, "nanosec": 250_000_000u32});
    let v = if topic.contains("imu") {
        json!({"header": {"frame_id": "imu", "stamp": stamp}, "linear_acceleration": {"x": 0.5, "y": i, "z": 9.81}})
    } else {
        json!({"header": {"frame_id": "cam", "stamp": stamp}, "height": 2, "width": 2, "encoding": "mono8",
               "data": "AAEC/w==", "serial": {"__encrypted": true, "ciphertext": "AAAA", "algorithm": "AES-256-GCM"}})
    };
    v.as_object().unwrap().clone()
}

/// Package line `i` of `topic`, signed by the machine key; timestamp = the stamp.
fn package(topic: &str, i: u64) -> String {
    let k = MachineKey::from_hex(SECRET).unwrap();
    let ts = iso8601_utc(Timestamp { sec: T0 + i as i64, nanosec: 250_000_000 });
    build_signed_package_json(k.did(), &k, &ts, "1.0.0", i, payload(topic, i)).unwrap().json
}

/// A chain of `n` packages of `topic`, 4 per chunk; returns its directory.
fn chain(data: &Path, topic: &str, n: u64, lines: impl Fn(u64) -> String) -> PathBuf {
    let k = keys();
    let did = k.default_did();
    let policy = ChunkPolicy { max_bytes: 1 << 20, max_messages: 4, max_age: Duration::from_secs(3600) };
    let (mut w, _) =
        ChunkWriter::open(data, topic, policy, &k, &did, &format!("{did}#stream-ed25519"), &Recipients::default())
            .unwrap();
    for i in 0..n {
        w.append(lines(i).as_bytes()).unwrap();
    }
    w.close_now().unwrap();
    w.dir().to_path_buf()
}

fn opts<'a>(dirs: Vec<PathBuf>, sk: &'a [u8; 32]) -> ExportOptions<'a> {
    ExportOptions {
        topic_dirs: dirs,
        secret_key: sk,
        grants: &[],
        source: CiphertextSource::Local,
        dataset: None,
        signer_public_key_hex: None,
        ros_types: BTreeMap::new(),
        allow_unverified: false,
        compress: true,
        ros2msg_share_dirs: None,
    }
}

struct Read {
    /// topic → (sequence, log_time, publish_time, message JSON)
    messages: BTreeMap<String, Vec<(u32, u64, u64, Value)>>,
    schemas: BTreeMap<String, (String, String, String)>,
    metadata: Vec<(String, BTreeMap<String, String>)>,
}

fn read_mcap(p: &Path) -> Read {
    let buf = std::fs::read(p).unwrap();
    let mut messages: BTreeMap<String, Vec<(u32, u64, u64, Value)>> = BTreeMap::new();
    let mut schemas = BTreeMap::new();
    for m in mcap::MessageStream::new(&buf).unwrap() {
        let m = m.unwrap();
        let s = m.channel.schema.as_ref().unwrap();
        schemas
            .insert(m.channel.topic.clone(), (s.name.clone(), s.encoding.clone(), m.channel.message_encoding.clone()));
        messages.entry(m.channel.topic.clone()).or_default().push((
            m.sequence,
            m.log_time,
            m.publish_time,
            serde_json::from_slice(&m.data).unwrap(),
        ));
    }
    let summary = mcap::Summary::read(&buf).unwrap().unwrap();
    let metadata = summary
        .metadata_indexes
        .iter()
        .map(|i| {
            let m = mcap::read::metadata(&buf, i).unwrap();
            (m.name, m.metadata)
        })
        .collect();
    Read { messages, schemas, metadata }
}

fn meta<'a>(r: &'a Read, name: &str, topic: Option<&str>) -> &'a BTreeMap<String, String> {
    r.metadata
        .iter()
        .find(|(n, m)| n == name && topic.is_none_or(|t| m.get("topic").map(String::as_str) == Some(t)))
        .map(|(_, m)| m)
        .unwrap_or_else(|| panic!("no metadata record {name} {topic:?}"))
}

fn ns(i: u64) -> u64 {
    (T0 as u64 + i) * 1_000_000_000 + 250_000_000
}

#[test]
fn two_topics_round_trip_through_mcap() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("stream");
    let imu = chain(&data, "/imu/data", 10, |i| package("/imu/data", i));
    let cam = chain(&data, "/camera/image_raw", 7, |i| package("/camera/image_raw", i));
    let k = keys();
    let out = tmp.path().join("out.mcap");
    let mut o = opts(vec![imu.clone(), cam.clone()], k.x25519_secret());
    o.ros_types.insert("/camera/image_raw".into(), "sensor_msgs/msg/Image".into());
    let r = export_mcap(&o, &out, &mut NoProgress).unwrap();
    assert_eq!((r.messages, r.chunks), (17, 3 + 2));
    assert!(r.unverified.is_empty());
    let read = read_mcap(&out);
    for (topic, n) in [("/imu/data", 10u64), ("/camera/image_raw", 7)] {
        let msgs = &read.messages[topic];
        assert_eq!(msgs.len() as u64, n, "{topic}");
        for (i, (seq, log, publish, v)) in msgs.iter().enumerate() {
            let i = i as u64;
            assert_eq!(*v, Value::Object(payload(topic, i)), "{topic} message {i} = its package payload");
            assert_eq!((*seq as u64, *log, *publish), (i, ns(i), ns(i)));
        }
        let t = r.topics.iter().find(|t| t.topic == topic).unwrap();
        assert_eq!((t.first_log_time_ns, t.last_log_time_ns), (Some(ns(0)), Some(ns(n - 1))));
        let dir = if topic == "/imu/data" { &imu } else { &cam };
        let last = store::sealed_indices(dir).unwrap().last().copied().unwrap();
        let tm = meta(&read, "peaqos.topic", Some(topic));
        assert_eq!(tm["firstChunkId"], store::load_chunk(dir, 0).unwrap().chunk_id);
        assert_eq!(tm["lastChunkId"], store::load_chunk(dir, last).unwrap().chunk_id);
        assert_eq!(tm["messages"], n.to_string());
        let v = meta(&read, "peaqos.verification", Some(topic));
        assert_eq!(v.len() as u64, 1 + last + 1, "one entry per chunk: {v:?}");
        assert!(
            v.values().filter(|s| *s != topic).all(|s| s.contains("chunk signature: ok")
                && s.contains("ciphertext hash: ok")
                && !s.contains("FAILED")),
            "{v:?}"
        );
    }
    assert_eq!(read.schemas["/camera/image_raw"].0, "sensor_msgs/msg/Image");
    assert_eq!(read.schemas["/imu/data"], ("peaqos.payload".into(), "jsonschema".into(), "json".into()));
    let e = meta(&read, "peaqos.export", None);
    assert_eq!(e["machineDid"], k.default_did());
    assert_eq!(e["verified"], "true");
    assert_eq!(e["key"], "machine key entry");
    // The derived JSON Schema describes the payload.
    let buf = std::fs::read(&out).unwrap();
    let s = mcap::MessageStream::new(&buf).unwrap().next().unwrap().unwrap();
    let schema: Value = serde_json::from_slice(&s.channel.schema.as_ref().unwrap().data).unwrap();
    assert_eq!(schema["properties"]["header"]["properties"]["stamp"]["properties"]["sec"]["type"], "number");
}

#[test]
fn tampered_ciphertext_stops_the_export_naming_the_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("stream");
    let imu = chain(&data, "/imu/data", 12, |i| package("/imu/data", i));
    let bin = store::chunk_paths(&imu, 1).1;
    let mut b = std::fs::read(&bin).unwrap();
    b[3] ^= 1;
    std::fs::write(&bin, b).unwrap();
    let k = keys();
    let out = tmp.path().join("out.mcap");
    let e = export_mcap(&opts(vec![imu.clone()], k.x25519_secret()), &out, &mut NoProgress).unwrap_err();
    let id = store::load_chunk(&imu, 1).unwrap().chunk_id;
    match &e {
        ExportError::Unverified { topic, index, chunk_id, check, .. } => {
            assert_eq!((topic.as_str(), *index, chunk_id, *check), ("/imu/data", 1, &id, "ciphertext hash"))
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains(&format!("chunk 1 ({id}): ciphertext hash failed")), "{e}");
    assert!(!out.exists() && !peaqos_base::fsio::tmp_path(&out).exists(), "no file from a failed export");

    // --allow-unverified: the chunk's messages are exported, each marked; the file lists them.
    let mut o = opts(vec![imu.clone()], k.x25519_secret());
    o.allow_unverified = true;
    let e2 = export_mcap(&o, &out, &mut NoProgress);
    // The AEAD tag fails too, so the chunk cannot be decrypted: it is listed, not exported.
    let r = e2.unwrap();
    assert_eq!(r.messages, 8);
    let read = read_mcap(&out);
    let u = meta(&read, "peaqos.unverified", None);
    assert!(u.values().any(|s| s.contains("chunk 1") && s.contains("ciphertext hash failed")), "{u:?}");
    assert!(u.values().any(|s| s.contains("chunk 1") && s.contains("not exported")), "{u:?}");
    assert_eq!(meta(&read, "peaqos.export", None)["verified"], "false");
}

#[test]
fn a_forged_package_and_a_broken_link_are_named_and_marked_when_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("stream");
    // Package 5 (chunk 1) has its payload changed after signing.
    let imu = chain(&data, "/imu/data", 8, |i| {
        let l = package("/imu/data", i);
        if i == 5 {
            l.replace("\"z\":9.81", "\"z\":1.0")
        } else {
            l
        }
    });
    let k = keys();
    let out = tmp.path().join("out.mcap");
    let e = export_mcap(&opts(vec![imu.clone()], k.x25519_secret()), &out, &mut NoProgress).unwrap_err();
    assert!(
        matches!(&e, ExportError::Unverified { index: 1, check: "package signature", reason, .. } if reason.contains("sequenceNumber 5")),
        "{e}"
    );
    let mut o = opts(vec![imu.clone()], k.x25519_secret());
    o.allow_unverified = true;
    let r = export_mcap(&o, &out, &mut NoProgress).unwrap();
    assert_eq!(r.messages, 8);
    let read = read_mcap(&out);
    for (seq, _, _, v) in &read.messages["/imu/data"] {
        assert_eq!(v.get(UNVERIFIED_FIELD).is_some(), *seq == 5, "only package 5 is marked: {v}");
    }
    assert!(meta(&read, "peaqos.unverified", None).values().any(|s| s.contains("sequenceNumber 5")));

    // An envelope whose link is rewritten: the chunk id no longer derives, named before decrypting.
    let (j, _, _) = store::chunk_paths(&imu, 1);
    let mut c = store::load_chunk(&imu, 1).unwrap();
    c.previous_chunk_id = Some(format!("0x{}", "00".repeat(32)));
    store::store_chunk_envelope(&imu, &c).unwrap();
    assert!(j.exists());
    let e = export_mcap(&opts(vec![imu.clone()], k.x25519_secret()), &out, &mut NoProgress).unwrap_err();
    assert!(matches!(&e, ExportError::Unverified { index: 1, check: "chain link", .. }), "{e}");
}

#[test]
fn a_grant_exports_exactly_the_granted_chunks_and_a_dataset_records_its_root() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("stream");
    let imu = chain(&data, "/imu/data", 20, |i| package("/imu/data", i));
    let k = keys();
    let buyer_sk = [0x42u8; 32];
    let buyer_pk = peaqos_stream::crypto::x25519_public(&buyer_sk);
    let entries = grant(&data, "/imu/data", &GrantRange::Indices { first: 1, last: 2 }, &k, &buyer_pk, "b").unwrap();
    let out = tmp.path().join("grant.mcap");
    let mut o = opts(vec![imu.clone()], &buyer_sk);
    o.grants = &entries;
    let r = export_mcap(&o, &out, &mut NoProgress).unwrap();
    let read = read_mcap(&out);
    let seqs: Vec<u32> = read.messages["/imu/data"].iter().map(|m| m.0).collect();
    assert_eq!(seqs, (4..12).collect::<Vec<u32>>(), "chunks 1 and 2 hold packages 4..11");
    assert_eq!(r.chunks, 2);
    assert_eq!(meta(&read, "peaqos.export", None)["key"], "buyer grant");
    assert_eq!(meta(&read, "peaqos.topic", Some("/imu/data"))["firstChunkIndex"], "1");

    // Without a grant the buyer's key opens nothing: named, nothing written.
    let out2 = tmp.path().join("nogrant.mcap");
    let e = export_mcap(&opts(vec![imu.clone()], &buyer_sk), &out2, &mut NoProgress).unwrap_err();
    assert!(matches!(&e, ExportError::Unverified { index: 0, check: "key", .. }), "{e}");
    assert!(!out2.exists());

    // A sealed dataset of chunks 2..4.
    let signer = |m: &[u8]| k.eip191_sign(m);
    let m = build_dataset(&data, "/imu/data", 2, 4, &k.default_did(), 1, &signer).unwrap();
    let mut o = opts(vec![imu.clone()], k.x25519_secret());
    o.dataset = Some(&m);
    let out3 = tmp.path().join("dataset.mcap");
    let r = export_mcap(&o, &out3, &mut NoProgress).unwrap();
    assert_eq!((r.chunks, r.messages, r.merkle_root.as_deref()), (3, 12, Some(m.merkle_root.as_str())));
    let read = read_mcap(&out3);
    let d = meta(&read, "peaqos.dataset", None);
    assert_eq!(d["merkleRoot"], m.merkle_root);
    assert_eq!(d["chunkIds"], m.chunk_ids.join(","));
}

#[test]
fn export_from_s3_storage_references_against_moto_server() {
    let moto = peaqos_testkit::moto_server();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _srv = Kill(
        std::process::Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = peaqos_http::blocking_client(Duration::from_secs(2)).unwrap();
    let up = (0..100).any(|_| {
        let ok = http.put(format!("{endpoint}/chunks")).send().is_ok_and(|r| r.status().is_success());
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(up, "moto_server did not start");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("stream");
    let imu = chain(&data, "/imu/data", 9, |i| package("/imu/data", i));
    let cfg: DestinationConfig = serde_json::from_value(json!({
        "kind": "s3", "endpoint": endpoint, "bucket": "chunks", "prefix": "peaq-stream",
        "access_key_id": "testing", "secret_access_key": "testing"
    }))
    .unwrap();
    let r = upload_pending(&imu, destination(&cfg).as_ref(), 100).unwrap();
    assert!(r.failed.is_none() && r.stored.len() == 3, "{:?}", r.failed);
    // The ciphertexts are only in S3 now.
    for i in 0..3 {
        std::fs::remove_file(store::chunk_paths(&imu, i).1).unwrap();
    }
    let k = keys();
    let out = tmp.path().join("s3.mcap");
    let mut o = opts(vec![imu.clone()], k.x25519_secret());
    o.source = CiphertextSource::Storage(cfg.clone());
    let r = export_mcap(&o, &out, &mut NoProgress).unwrap();
    assert_eq!((r.chunks, r.messages), (3, 9));
    let read = read_mcap(&out);
    for (i, m) in read.messages["/imu/data"].iter().enumerate() {
        assert_eq!(m.3, Value::Object(payload("/imu/data", i as u64)));
    }
    // An object changed in the bucket is caught by its hash.
    let key = store::load_chunk(&imu, 2).unwrap().storage_ref.unwrap();
    let key = key.strip_prefix("s3://chunks/").unwrap().to_string();
    let dest = destination(&cfg);
    let mut ct = dest.get(&format!("s3://chunks/{key}")).unwrap();
    ct[0] ^= 0xff;
    let c = store::load_chunk(&imu, 2).unwrap();
    dest.put(&imu, &c, &ct).unwrap();
    let e = export_mcap(&o, &out, &mut NoProgress).unwrap_err();
    assert!(matches!(&e, ExportError::Unverified { index: 2, check: "ciphertext hash", .. }), "{e}");
}

#[test]
fn the_cli_exports_and_names_a_tampered_chunk_with_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let imu = chain(&peaqos_base::layout::stream_dir(&data_dir), "/imu/data", 6, |i| package("/imu/data", i));
    let k = keys();
    let skf = tmp.path().join("machine.x25519");
    std::fs::write(&skf, hex::encode(k.x25519_secret())).unwrap();
    let out = tmp.path().join("cli.mcap");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_peaqos-stream"))
            .args(["export", "--json", "--secret-key-file", skf.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .args(["--ros-type", "/imu/data=sensor_msgs/msg/Imu"])
            .args(extra)
            .arg(data_dir.to_str().unwrap())
            .output()
            .unwrap()
    };
    let o = run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["messages"], 6);
    assert_eq!(read_mcap(&out).schemas["/imu/data"].0, "sensor_msgs/msg/Imu");
    std::fs::remove_file(&out).unwrap();
    let bin = store::chunk_paths(&imu, 0).1;
    let mut b = std::fs::read(&bin).unwrap();
    b[0] ^= 1;
    std::fs::write(&bin, b).unwrap();
    let o = run(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("chunk 0 (0x") && err.contains("ciphertext hash failed"), "{err}");
    assert!(!out.exists());
    let o = run(&["--allow-unverified"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn progress_is_plain_lines_off_a_terminal_and_nothing_with_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("stream");
    let imu = chain(&data, "/imu/data", 12, |i| package("/imu/data", i));
    let k = keys();
    let skf = tmp.path().join("machine.x25519");
    std::fs::write(&skf, hex::encode(k.x25519_secret())).unwrap();
    let run = |extra: &[&str], out: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_peaqos-stream"))
            .args(extra)
            .args(["export", "--secret-key-file", skf.to_str().unwrap(), "--out"])
            .arg(tmp.path().join(out))
            .arg(&imu)
            .env("PEAQOS_STREAM_PROGRESS_MS", "0")
            .output()
            .unwrap()
    };
    // stderr is a pipe here: one plain line per chunk, then the human summary; stdout stays empty.
    let o = run(&[], "a.mcap");
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    for i in 1..=3 {
        assert!(err.contains(&format!("peaqos-stream export: {i}/3 chunks")), "{err}");
    }
    assert!(
        err.contains("exported 12 messages of 3 chunks (1 topics)") && err.contains("everything verified"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    // --quiet: nothing on stderr; --json: the summary on stdout.
    let o = run(&["--quiet", "--json"], "b.mcap");
    assert!(o.status.success() && o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["messages"].as_u64(), v["chunks"].as_u64()), (Some(12), Some(3)));
}

#[test]
fn progress_is_a_bar_on_a_terminal() {
    // util-linux `script` runs the tool on a pseudo-terminal; what the terminal showed comes back on stdout.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("stream");
    let imu = chain(&data, "/imu/data", 12, |i| package("/imu/data", i));
    let skf = tmp.path().join("machine.x25519");
    std::fs::write(&skf, hex::encode(keys().x25519_secret())).unwrap();
    let cmd = format!(
        "{} export --secret-key-file {} --out {} {}",
        env!("CARGO_BIN_EXE_peaqos-stream"),
        skf.display(),
        tmp.path().join("t.mcap").display(),
        imu.display()
    );
    let o = std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output();
    let o = o.expect("util-linux `script` (apt-get install bsdutils) runs the tool on a terminal");
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{screen}");
    assert!(screen.contains("export [00:00:0"), "a progress bar was drawn: {screen:?}");
    assert!(!screen.contains("peaqos-stream export: "), "no plain lines on a terminal: {screen:?}");
    assert!(screen.contains("exported 12 messages"), "{screen:?}");
}

#[test]
fn ros2msg_channels_carry_cdr_for_complete_payloads_and_json_for_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    for (f, t) in [
        ("builtin_interfaces/msg/Time.msg", "int32 sec\nuint32 nanosec\n"),
        ("std_msgs/msg/Header.msg", "builtin_interfaces/Time stamp\nstring frame_id\n"),
        ("geometry_msgs/msg/Vector3.msg", "float64 x\nfloat64 y\nfloat64 z\n"),
        ("t/msg/ImuLite.msg", "std_msgs/Header header\ngeometry_msgs/Vector3 linear_acceleration\n"),
        (
            "t/msg/Cam.msg",
            "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8[] data\nstring serial\n",
        ),
    ] {
        let p = share.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, t).unwrap();
    }
    let data = tmp.path().join("stream");
    let imu = chain(&data, "/imu/data", 5, |i| package("/imu/data", i));
    let cam = chain(&data, "/camera/image_raw", 3, |i| package("/camera/image_raw", i));
    let k = keys();
    let out = tmp.path().join("cdr.mcap");
    let mut o = opts(vec![imu, cam], k.x25519_secret());
    o.ros_types.insert("/imu/data".into(), "t/msg/ImuLite".into());
    o.ros_types.insert("/camera/image_raw".into(), "t/msg/Cam".into());
    o.ros2msg_share_dirs = Some(vec![share]);
    export_mcap(&o, &out, &mut NoProgress).unwrap();
    let buf = std::fs::read(&out).unwrap();
    let mut imu_n = 0;
    for m in mcap::MessageStream::new(&buf).unwrap() {
        let m = m.unwrap();
        let s = m.channel.schema.as_ref().unwrap();
        if m.channel.topic == "/imu/data" {
            assert_eq!((m.channel.message_encoding.as_str(), s.encoding.as_str()), ("cdr", "ros2msg"));
            assert!(String::from_utf8_lossy(&s.data).contains("MSG: geometry_msgs/Vector3"));
            let i = m.sequence as u64;
            // header: sec, nanosec, frame_id "imu"; then x, y, z at offset 16 (aligned to 8).
            let d = &m.data;
            assert_eq!(&d[..4], &[0, 1, 0, 0]);
            assert_eq!(i32::from_le_bytes(d[4..8].try_into().unwrap()) as i64, T0 + i as i64);
            assert_eq!(u32::from_le_bytes(d[8..12].try_into().unwrap()), 250_000_000);
            assert_eq!(&d[12..20], &[4, 0, 0, 0, b'i', b'm', b'u', 0]);
            let f = |o: usize| f64::from_le_bytes(d[o..o + 8].try_into().unwrap());
            assert_eq!((f(20), f(28), f(36)), (0.5, i as f64, 9.81));
            imu_n += 1;
        } else {
            // The camera payload's `serial` is encrypted by the rules: JSON, with the reason recorded.
            assert_eq!(m.channel.message_encoding, "json");
            assert_eq!(
                serde_json::from_slice::<Value>(&m.data).unwrap(),
                Value::Object(payload("/camera/image_raw", m.sequence as u64))
            );
        }
    }
    assert_eq!(imu_n, 5);
    let read = read_mcap_meta(&buf);
    let cam_meta = &read.iter().find(|(n, m)| n == "peaqos.topic" && m["topic"] == "/camera/image_raw").unwrap().1;
    assert_eq!((cam_meta["cdrMessages"].as_str(), cam_meta["jsonMessages"].as_str()), ("0", "3"));
    assert!(cam_meta["jsonBecause"].contains("serial"), "{cam_meta:?}");
}

fn read_mcap_meta(buf: &[u8]) -> Vec<(String, BTreeMap<String, String>)> {
    let summary = mcap::Summary::read(buf).unwrap().unwrap();
    summary
        .metadata_indexes
        .iter()
        .map(|i| {
            let m = mcap::read::metadata(buf, i).unwrap();
            (m.name, m.metadata)
        })
        .collect()
}
