//! Benchmarks (ignored by default): `cargo test -p peaqos_chain --test bench_anvil -- --ignored --nocapture`.
//! Bare anvil (automine) with counter stand-ins; every transaction goes through the durable
//! outbox (fsync per state change) and the JSON-RPC client.

mod common;

use std::time::{Duration, Instant};

use alloy::primitives::{address, Address, U256};
use common::*;
use peaqos_chain::config::BATCH_PRECOMPILE;
use peaqos_chain::validation::{Currency, MachineIdInput, SubmitEventParams, ValueInput};
use peaqos_chain::ChainClient;

const REGISTRY: Address = address!("A1e7F1d7B24dAb55Dc92491e6d9B89F6E925Ad1e");

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
#[ignore]
async fn bench_latency_and_batch_throughput() {
    let Some(bin) = find_anvil() else { return };
    let anvil = Anvil::spawn(&bin, free_port(), None, false);
    let url = anvil.url();
    set_code(&url, REGISTRY, COUNTER_CODE).await;
    set_code(&url, BATCH_PRECOMPILE, BATCH_COUNTER_CODE).await;
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
        println!("BENCH batch_submit_events size {size}: {:.0} events/s ({batches} batches in {secs:.2}s)", (size * batches) as f64 / secs);
    }

    // concurrent single submits (outbox pipelines nonces)
    let k = 50;
    let t = Instant::now();
    let mut hs = vec![];
    for i in 0..k {
        let c = client.clone();
        hs.push(tokio::spawn(async move {
            c.submit_event(&ev(10_000 + i)).await.unwrap()
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    println!(
        "BENCH {k} concurrent submit_event: {:.0} events/s",
        k as f64 / t.elapsed().as_secs_f64()
    );
    assert_eq!(storage0(&url, REGISTRY).await, U256::from(n + k));
}
