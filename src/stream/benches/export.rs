//! MCAP export throughput against decrypt-only throughput, same stream, same run, one core.
//!
//! Run: `taskset -c 1 cargo bench -p peaqos_stream --bench export` (EXPORT_BENCH_MB, default
//! 1024: the stream's plaintext size; EXPORT_BENCH_DIR: where the stream and the MCAP file go,
//! default the system temp directory; both are deleted at the end).
//!
//! The stream: `sensor_msgs/Image`-like signed packages (256 KiB of pseudo-random pixels,
//! base64, as the node writes them), 4 MiB chunks, written with the crate's ChunkWriter.
//! decrypt-only = for every chunk: read `<n>.bin`, the SDK's `decrypt_chunk` (unwrap, key
//! commitment, AEAD, plaintext hash). export = `export_mcap` (every envelope check, ciphertext
//! hash, decrypt, every package's EIP-191 signature, JSON → MCAP with zstd, fsync, rename).
//! Figures are MB/s of plaintext (10^6 bytes).

use std::time::{Duration, Instant};

use peaqos_core::keys::MachineKey;
use peaqos_core::package::build_signed_package_json;
use peaqos_core::value::{iso8601_utc, Timestamp};
use peaqos_stream::chain::decrypt_chunk;
use peaqos_stream::envelope::RecipientType;
use peaqos_stream::export::{export_mcap, CiphertextSource, ExportOptions, NoProgress};
use peaqos_stream::keys::MachineStreamKeys;
use peaqos_stream::store;
use peaqos_stream::writer::{ChunkPolicy, ChunkWriter, Recipients};

const SECRET: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

fn main() {
    let mb: u64 = std::env::var("EXPORT_BENCH_MB").ok().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let base = std::env::var("EXPORT_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| std::env::temp_dir());
    let root = base.join(format!("peaqos-export-bench-{}", std::process::id()));
    let keys = MachineStreamKeys::from_secret_hex(SECRET).expect("keys");
    let mk = MachineKey::from_hex(SECRET).expect("key");
    let did = keys.default_did();
    let policy = ChunkPolicy { max_bytes: 4 << 20, max_messages: 1_000_000, max_age: Duration::from_secs(3600) };
    let (mut w, _) = ChunkWriter::open(&root, "/camera/image_raw", policy, &keys, &did, "k#1", &Recipients::default())
        .expect("open");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut pixels = vec![0u8; 256 * 1024];
    let t = Instant::now();
    let mut written = 0u64;
    let mut seq = 0u64;
    while written < mb * 1_000_000 {
        for b in pixels.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = (x >> 24) as u8;
        }
        let ts = Timestamp { sec: 1_767_225_600 + (seq / 30) as i64, nanosec: ((seq % 30) * 33_333_333) as u32 };
        let payload = serde_json::json!({
            "header": {"stamp": {"sec": ts.sec, "nanosec": ts.nanosec}, "frame_id": "cam"},
            "height": 256, "width": 1024, "encoding": "mono8", "is_bigendian": 0, "step": 1024,
            "data": peaqos_core::base64_encode(&pixels),
        });
        let serde_json::Value::Object(p) = payload else { unreachable!() };
        let line = build_signed_package_json(mk.did(), &mk, &iso8601_utc(ts), "1.0.0", seq, p).expect("sign").json;
        written += line.len() as u64 + 1;
        w.append(line.as_bytes()).expect("append");
        seq += 1;
    }
    w.close_now().expect("close");
    let dir = w.dir().to_path_buf();
    drop(w);
    let chunks = store::sealed_indices(&dir).expect("list");
    println!(
        "stream: {seq} packages, {:.1} MB plaintext in {} chunks (written in {:.1} s)",
        written as f64 / 1e6,
        chunks.len(),
        t.elapsed().as_secs_f64()
    );

    // decrypt-only
    let t = Instant::now();
    let mut pt_bytes = 0u64;
    for &i in &chunks {
        let c = store::load_chunk(&dir, i).expect("chunk");
        let ct = store::read(&store::chunk_paths(&dir, i).1).expect("read");
        let e = c.recipient(RecipientType::Machine).expect("machine entry");
        let pt = decrypt_chunk(&c, e, keys.x25519_secret(), &ct).expect("decrypt");
        pt_bytes += pt.len() as u64;
        std::hint::black_box(&pt);
    }
    let dec = t.elapsed().as_secs_f64();
    let dec_mbs = pt_bytes as f64 / 1e6 / dec;
    println!("decrypt-only: {:.1} MB in {dec:.2} s = {dec_mbs:.1} MB/s", pt_bytes as f64 / 1e6);

    // export
    let out = root.join("bench.mcap");
    let o = ExportOptions {
        topic_dirs: vec![dir.clone()],
        secret_key: keys.x25519_secret(),
        grants: &[],
        source: CiphertextSource::Local,
        dataset: None,
        signer_public_key_hex: None,
        ros_types: Default::default(),
        allow_unverified: false,
        compress: true,
        ros2msg_share_dirs: None,
    };
    let t = Instant::now();
    let r = export_mcap(&o, &out, &mut NoProgress).expect("export");
    let exp = t.elapsed().as_secs_f64();
    let exp_mbs = r.plaintext_bytes as f64 / 1e6 / exp;
    println!(
        "export: {} messages, {:.1} MB plaintext → {:.1} MB MCAP in {exp:.2} s = {exp_mbs:.1} MB/s ({:.0} % of decrypt-only)",
        r.messages,
        r.plaintext_bytes as f64 / 1e6,
        r.output_bytes as f64 / 1e6,
        100.0 * exp_mbs / dec_mbs
    );
    let _ = std::fs::remove_dir_all(&root);
}
