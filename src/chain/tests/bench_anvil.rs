//! Benchmarks, built only with the `bench` feature (not part of the test run):
//! `cargo test --release -p peaqos_chain --features bench --test bench_anvil -- --nocapture --test-threads=1`.
#![cfg(feature = "bench")]
//! Bare anvil (automine) with counter stand-ins; every transaction goes through the durable
//! outbox (fsync per state change) and the JSON-RPC client.

mod common;

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use common::*;
use peaqos_chain::validation::{Currency, MachineIdInput, SubmitEventParams, ValueInput};
use peaqos_chain::ChainClient;

fn ev(i: u64) -> SubmitEventParams {
    SubmitEventParams {
        machine_id: MachineIdInput(U256::from(42)),
        event_type: 0,
        value: ValueInput::from_u128(i as u128),
        timestamp: 1_735_000_000,
        raw_data: Some(i.to_be_bytes().to_vec()),
        trust_level: 0,
        source_chain_id: 3338,
        source_tx_hash: None,
        metadata: br#"{"bench":true}"#.to_vec(),
        currency: Currency::Code("USD".into()),
    }
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_latency_and_batch_throughput() {
    let bin = peaqos_testkit::anvil();
    let anvil = Anvil::spawn(&bin, free_port(), None, false);
    let url = anvil.url();
    install_counters(&url).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&url, dir.path());
    c.poll_interval_ms = 20;
    let client = ChainClient::start(c.resolve_with(|_| None).unwrap(), vec![signer(KEY0)]).unwrap();

    // latency call → receipt, sequential single submits
    let n = 100;
    let mut lat = vec![];
    for i in 0..n {
        let t = Instant::now();
        client.submit_event(&ev(i)).await.unwrap();
        lat.push(t.elapsed());
    }
    let p50 = pct(&mut lat, 0.5);
    let p99 = pct(&mut lat, 0.99);
    println!("BENCH submit_event latency (n={n}): p50 {p50:?}, p99 {p99:?}");

    // batch throughput
    for size in [10u64, 50, 100] {
        let batches = 10;
        let t = Instant::now();
        for b in 0..batches {
            let items: Vec<_> = (0..size).map(|i| ev(b * 1000 + i)).collect();
            client.batch_submit_events(&items).await.unwrap();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "BENCH batch_submit_events size {size}: {:.0} events/s ({batches} batches in {secs:.2}s)",
            (size * batches) as f64 / secs
        );
    }

    // concurrent single submits (outbox pipelines nonces)
    let k = 50;
    let t = Instant::now();
    let mut hs = vec![];
    for i in 0..k {
        let c = client.clone();
        hs.push(tokio::spawn(async move { c.submit_event(&ev(10_000 + i)).await.unwrap() }));
    }
    for h in hs {
        h.await.unwrap();
    }
    println!("BENCH {k} concurrent submit_event: {:.0} events/s", k as f64 / t.elapsed().as_secs_f64());
    assert_eq!(storage0(&url, REGISTRY).await, U256::from(n + k));
}

/// Same chain (the team harness, gen-2 stand-ins, automine), same calls: peaqos_chain vs
/// peaq-os-sdk 0.12.1. Prints both and the ratio measured in this one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_vs_sdk_on_harness() {
    use alloy::primitives::address;
    use peaqos_chain::bindings::{ServiceEndpoint, VerificationMethod};
    use peaqos_chain::client::ActivateParams;
    let h = Harness::spawn();
    let url = h.url();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&url, dir.path());
    c.poll_interval_ms = 20;
    let client = ChainClient::start(c.resolve_with(|_| None).unwrap(), vec![signer(&h.key(0))]).unwrap();
    let me = client.signer_address();
    let r = client
        .activate(&ActivateParams {
            controller: me,
            verification_methods: vec![VerificationMethod {
                id: "#k".into(),
                methodType: "X".into(),
                controller: me,
                publicKeyMultibase: "z".into(),
            }],
            authentication: vec![U256::ZERO],
            service_endpoints: vec![ServiceEndpoint {
                id: "#d".into(),
                serviceType: "DataAPI".into(),
                serviceEndpoint: "https://x".into(),
            }],
            machine_type: "bench".into(),
            credential_subject: b"bench".to_vec(),
            manufacturer: address!("3333333333333333333333333333333333333333"),
            tier: 0,
            expected_machine_id: None,
            max_net_peaq_amount: None,
        })
        .await
        .unwrap();
    let ts = latest_block_timestamp(&url).await;
    let (n_single, n_batches, size) = (30u64, 5u64, 50u64);
    let mk = |i: u64| SubmitEventParams { machine_id: MachineIdInput(r.machine_id), timestamp: ts, ..ev(i) };

    let mut lat = vec![];
    for i in 0..n_single {
        let t = Instant::now();
        client.submit_event(&mk(i)).await.unwrap();
        lat.push(t.elapsed());
    }
    let t = Instant::now();
    for bi in 0..n_batches {
        let items: Vec<_> = (0..size).map(|i| mk(bi * 1000 + i)).collect();
        client.batch_submit_events(&items).await.unwrap();
    }
    let ours_batch = t.elapsed().as_secs_f64();
    let (o50, o99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));

    let out = std::process::Command::new(peaqos_testkit::sdk_python())
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_oracle/bench_sdk.py"))
        .args([
            &url,
            &format!("0x{}", h.key(0)),
            &r.machine_id.to_string(),
            &ts.to_string(),
            &n_single.to_string(),
            &n_batches.to_string(),
            &size.to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sdk: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut slat: Vec<Duration> = sdk["single_latencies_s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Duration::from_secs_f64(v.as_f64().unwrap()))
        .collect();
    let (s50, s99) = (pct(&mut slat, 0.5), pct(&mut slat, 0.99));
    let sdk_batch = sdk["batch_seconds"].as_f64().unwrap();
    let ev_total = (n_batches * size) as f64;
    println!("BENCH harness single submit_event latency: ours p50 {o50:?} p99 {o99:?} | SDK p50 {s50:?} p99 {s99:?} | p50 ratio SDK/ours {:.1}x", s50.as_secs_f64() / o50.as_secs_f64());
    println!(
        "BENCH harness batch_submit_events {n_batches}x{size}: ours {:.0} events/s | SDK {:.0} events/s | ratio ours/SDK {:.1}x",
        ev_total / ours_batch,
        ev_total / sdk_batch,
        sdk_batch / ours_batch
    );
    assert_eq!(client.event_count(r.machine_id).await.unwrap(), U256::from(2 * (n_single + n_batches * size)));
}
