//! Sealing throughput (hash + XChaCha20-Poly1305 + Ed25519 + 3 sealed boxes + chunk id) for
//! 1 MiB chunks on one core. Run: `cargo bench -p peaqos_stream --bench seal`.
//! Compare with `openssl speed -evp chacha20-poly1305 -seconds 3` (single process).
//!
//! Measured 2026-11-25 on the shared 2-core build machine (AVX-512, SHA-NI), load ≈ 2.3 (README has
//! a second run of 2026-11-30):
//! seal 548 MB/s; XChaCha20-Poly1305 alone 2540 MB/s; SHA-256 1800 MB/s; openssl
//! chacha20-poly1305 (16 KiB) 3765 MB/s → seal/openssl = 15 %, AEAD/openssl = 67 %.
//! The chunk format mandates two SHA-256 passes (plaintext_hash, encrypted_data_hash) besides
//! the AEAD, so even with openssl's own primitives sealing is bounded by
//! 1 / (2/1800 + 1/3765) ≈ 730 MB/s ≈ 19 % of the AEAD-only figure.

use std::time::{Duration, Instant};

use peaqos_stream::chain::{seal_chunk, ChunkSigner, OsRandom, RecipientSpec};
use peaqos_stream::crypto::{self, x25519_public};
use peaqos_stream::envelope::RecipientType;

fn main() {
    let signer =
        ChunkSigner::new([5u8; 32], "did:peaq:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "k#1").expect("signer");
    let recipients: Vec<RecipientSpec> =
        [(RecipientType::Owner, 1u8), (RecipientType::Operator, 2), (RecipientType::Machine, 3)]
            .iter()
            .map(|(t, b)| RecipientSpec {
                recipient_id: format!("{t:?}-1").to_lowercase(),
                recipient_type: *t,
                public_key: x25519_public(&[*b; 32]),
            })
            .collect();
    let pt: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut rng = OsRandom;
    let mut prev: Option<String> = None;
    // warm-up
    for i in 0..3 {
        let (c, _) = seal_chunk(&pt, i, prev.as_deref(), &signer, &recipients, &mut rng).expect("seal");
        prev = Some(c.chunk_id);
    }
    let budget = Duration::from_secs(std::env::var("SEAL_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5));
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        let (c, ct) = seal_chunk(&pt, n, prev.as_deref(), &signer, &recipients, &mut rng).expect("seal");
        std::hint::black_box(&ct);
        prev = Some(c.chunk_id);
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let seal_mbs = n as f64 / secs; // MiB/s
                                    // encryption alone, for reference
    let start = Instant::now();
    let mut m = 0u64;
    while start.elapsed() < budget / 2 {
        std::hint::black_box(crypto::xchacha_encrypt(&[7u8; 32], &[9u8; 24], &pt).expect("encrypt"));
        m += 1;
    }
    let enc_mbs = m as f64 / start.elapsed().as_secs_f64();
    let mut hash_rates = Vec::new();
    for (name, f) in [("ring", crypto::sha256 as fn(&[u8]) -> [u8; 32]), ("sha2", crypto::sha256_portable)] {
        let start = Instant::now();
        let mut k = 0u64;
        while start.elapsed() < budget / 4 {
            std::hint::black_box(f(&pt));
            k += 1;
        }
        hash_rates.push(format!("{name} {:.1} MB/s", k as f64 * 1.048576 / start.elapsed().as_secs_f64()));
    }
    println!("sha256 1 MiB: {}", hash_rates.join(", "));
    println!("seal (sha256 x2 + xchacha20-poly1305 + ed25519 + 3 sealed boxes), 1 MiB chunks: {seal_mbs:.1} MiB/s ({:.1} MB/s), {n} chunks in {secs:.2} s", seal_mbs * 1.048576);
    // ChunkWriter append path: 200-byte lines, group commit (sync) every 100 lines, 1 MiB chunks.
    let dir = std::env::temp_dir().join(format!("peaqos-stream-bench-{}", std::process::id()));
    let keys = peaqos_stream::keys::MachineStreamKeys::from_secp256k1_secret(&[7u8; 32]).expect("keys");
    let did = keys.default_did();
    let policy = peaqos_stream::writer::ChunkPolicy {
        max_bytes: 1 << 20,
        max_messages: 1_000_000,
        max_age: Duration::from_secs(3600),
    };
    let (mut w, _) =
        peaqos_stream::writer::ChunkWriter::open(&dir, "/bench", policy, &keys, &did, "k#1", &Default::default())
            .expect("open");
    let line = format!("{{\"payload\":\"{}\"}}", "x".repeat(186));
    let start = Instant::now();
    let mut lines = 0u64;
    while start.elapsed() < budget {
        for _ in 0..100 {
            w.append(line.as_bytes()).expect("append");
        }
        w.sync().expect("sync");
        lines += 100;
    }
    let lps = lines as f64 / start.elapsed().as_secs_f64();
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "ChunkWriter append (200 B lines, sync every 100, seal every 1 MiB): {lps:.0} lines/s ({:.1} MB/s)",
        lps * 200.0 / 1e6
    );
    println!("xchacha20-poly1305 encrypt only, 1 MiB: {enc_mbs:.1} MiB/s ({:.1} MB/s)", enc_mbs * 1.048576);
}
