//! The hand-over to the chain client's outbox after a crash: a batch that reached the outbox is
//! recorded under its intent, never enqueued again; one that did not stays pending. Real
//! `ChainClient` and outbox on disk; the RPC is unreachable (nothing needs the chain here).

use std::sync::Arc;
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use peaqos_chain::validation::MachineIdInput;
use peaqos_chain::{ChainClient, ChainConfig, Generation, Network};
use peaqos_events::counters::Counters;
use peaqos_events::engine::EventOut;
use peaqos_events::store::{EventStore, Inflight};
use peaqos_events::submit::{calldata_hash, event_params, SubmitConfig, Submitter};
use tokio::sync::watch;

const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

fn event(id: &str, raw: &[u8]) -> EventOut {
    EventOut {
        id: id.into(),
        rule: "fare".into(),
        topic: "/fare".into(),
        event_type: 0,
        value: "1229".into(),
        currency: "EUR".into(),
        timestamp: 1_767_225_610,
        data_hash: format!("{:#x}", peaqos_chain::validation::data_hash(Some(raw))),
        trust_level: 0,
        source_chain_id: 0,
        source_tx_hash: None,
        metadata: String::new(),
        first_seq: 0,
        last_seq: 0,
        count: 1,
    }
}

fn setup(dir: &std::path::Path) -> (ChainClient, Arc<EventStore>, Arc<Counters>) {
    let mut cfg = ChainConfig::new(Network::Peaq, Generation::Economics2, dir.to_path_buf());
    cfg.rpc_urls = vec!["http://127.0.0.1:9".into()];
    let key: PrivateKeySigner = KEY.parse().unwrap();
    let client = ChainClient::start(cfg.resolve().unwrap(), vec![key]).unwrap();
    let store = Arc::new(EventStore::open(dir).unwrap());
    let counters = Arc::new(Counters::load(store.dir().join("counters.json"), &["fare".to_string()]));
    (client, store, counters)
}

async fn run_briefly(client: &ChainClient, store: &Arc<EventStore>, counters: &Arc<Counters>) {
    let s = Submitter::new(
        client.clone(),
        Arc::clone(store),
        Arc::clone(counters),
        SubmitConfig {
            batch_max: 50,
            max_age: Duration::from_secs(3600),
            machine_id: Some("42".into()),
            machine_id_file: store.dir().join("nope"),
            retry: Duration::from_millis(50),
        },
    );
    let (tx, rx) = watch::channel(false);
    let h = tokio::spawn(s.run(rx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(true).unwrap();
    h.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_already_in_the_outbox_is_recorded_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let (client, store, counters) = setup(dir.path());
    let raw = b"{\"package\":1}".to_vec();
    let ev = event("fare-0-0", &raw);
    assert!(store.persist(&ev, &raw, 1).unwrap());
    // The crash: inflight.json written, the outbox took the batch, the node died before
    // moving the event to submitted/.
    let mid = MachineIdInput::from_decimal("machine_id", "42").unwrap();
    let items = vec![event_params(&ev, mid, ev.timestamp - 5, raw.clone())];
    let hash = calldata_hash(&client, &items).unwrap();
    store
        .set_inflight(Some(&Inflight {
            ids: vec![ev.id.clone()],
            machine_id: "42".into(),
            timestamps: vec![ev.timestamp - 5],
            calldata_hash: hash,
        }))
        .unwrap();
    let (intent, _) = client.enqueue_batch(&items).unwrap();

    run_briefly(&client, &store, &counters).await;

    assert!(store.pending().unwrap().is_empty());
    let sub = store.submitted().unwrap();
    assert_eq!(sub.len(), 1);
    assert_eq!(
        (sub[0].intent_id.as_str(), sub[0].timestamp, sub[0].machine_id.as_str()),
        (intent.as_str(), ev.timestamp - 5, "42")
    );
    assert_eq!(client.outbox().pending().len(), 1, "nothing enqueued a second time");
    assert!(store.inflight().unwrap().is_none());
    assert_eq!(counters.snapshot()["fare"].submitted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_never_reached_the_outbox_stays_pending() {
    let dir = tempfile::tempdir().unwrap();
    let (client, store, counters) = setup(dir.path());
    let raw = b"{\"package\":2}".to_vec();
    let ev = event("fare-1-1", &raw);
    assert!(store.persist(&ev, &raw, 1).unwrap());
    store
        .set_inflight(Some(&Inflight {
            ids: vec![ev.id.clone()],
            machine_id: "42".into(),
            timestamps: vec![1],
            calldata_hash: "0x00".into(),
        }))
        .unwrap();

    run_briefly(&client, &store, &counters).await;

    assert_eq!(store.pending().unwrap().len(), 1, "kept for the next attempt");
    assert!(store.submitted().unwrap().is_empty());
    assert!(client.outbox().pending().is_empty());
    assert!(store.inflight().unwrap().is_none());
    // the chain is unreachable: held, with the reason
    let c = &counters.snapshot()["fare"];
    assert_eq!(c.submitted, 0);
}
