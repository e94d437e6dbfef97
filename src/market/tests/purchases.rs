//! The purchase state machine against the local orchestrator: nothing granted before payment,
//! grants for exactly the purchased chunks (the buyer decrypts them, and only them), refusals for
//! foreign listings and low-order buyer keys, and a stop after every step finished by a rerun.
mod common;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

use common::{key, profile, Server};
use peaqos_market::agent::{ensure_enrolled, AgentCredentials, EnrollConfig};
use peaqos_market::onboard::onboard;
use peaqos_market::purchases::{Desk, PurchaseState, PurchaseStore};
use peaqos_market::seller::Listing;
use peaqos_market::state::MarketStore;
use peaqos_market::OrchestrationClient;
use peaqos_stream::envelope::BuyerAccessEntry;
use peaqos_stream::keys::MachineStreamKeys;
use peaqos_stream::writer::{ChunkPolicy, ChunkWriter, Recipients};
use serde_json::{json, Value};

const TOPIC: &str = "/cam";
const LISTING: &str = "lst_cam";
const BUYER_SK: [u8; 32] = [7; 32];

fn stream_keys() -> MachineStreamKeys {
    MachineStreamKeys::from_secp256k1_secret(&[0x11; 32]).unwrap()
}

/// Three sealed chunks of TOPIC (one package line each); their ids.
fn seal_chunks(data_dir: &Path) -> Vec<String> {
    let k = stream_keys();
    let did = k.default_did();
    let policy = ChunkPolicy { max_messages: 1, ..Default::default() };
    let (mut w, _) =
        ChunkWriter::open(data_dir, TOPIC, policy, &k, &did, &format!("{did}#stream-ed25519"), &Recipients::default())
            .unwrap();
    (0..3).map(|i| w.append(format!("{{\"n\":{i}}}\n").as_bytes()).unwrap().unwrap().chunk.chunk_id).collect()
}

struct Fixture {
    srv: Server,
    client: OrchestrationClient,
    creds: AgentCredentials,
    dir: tempfile::TempDir,
    chunk_ids: Vec<String>,
    listings: BTreeMap<String, Listing>,
}

async fn fixture() -> Fixture {
    let srv = Server::start(&[]);
    let client = srv.client();
    let dir = tempfile::tempdir().unwrap();
    let store = MarketStore::open(dir.path()).unwrap();
    let m = onboard(&client, &store, &key(), "42", &profile(), None).await.unwrap();
    let cfg = EnrollConfig { label: "peaqos-node".into(), allowed_provider_keys: vec![] };
    let creds = ensure_enrolled(&client, &store, &m.id, &cfg, None).await.unwrap();
    let sale = peaqos_stream::topic_config::TopicStreamConfig::from_value(&json!({"sale": {
        "price": "0.1", "currency": "USDC", "listing_id": LISTING,
        "payment_rails": [{"type": "x402", "chain": "base", "token": "USDC"}]}}))
    .unwrap();
    let l = peaqos_market::offers::listing(TOPIC, sale.sale.as_ref().unwrap(), "local").unwrap();
    client.update_listing(&m.id, &l.listing_id, &l.update).await.unwrap();
    let chunk_ids = seal_chunks(dir.path());
    let listings = [(LISTING.to_string(), l)].into();
    Fixture { srv, client, creds, dir, chunk_ids, listings }
}

impl Fixture {
    fn purchase(&self, buyer_pk: &str, selection: Value) -> String {
        let mut body = json!({"machineId": self.creds.machine_id, "listingId": LISTING, "buyerPublicKeyHex": buyer_pk});
        if !selection.is_null() {
            body["selection"] = selection;
        }
        self.srv.control("POST", "purchases", body)["item"]["id"].as_str().unwrap().to_string()
    }

    fn pay(&self, id: &str) {
        self.srv.control("POST", &format!("purchases/{id}/pay"), json!({}));
    }

    fn server_purchase(&self, id: &str) -> Value {
        self.srv.state()["purchases"].as_array().unwrap().iter().find(|p| p["id"] == id).unwrap().clone()
    }

    async fn advance(&self, id: &str, hook: Option<peaqos_market::purchases::PurchaseHook<'_>>) -> PurchaseState {
        let store = PurchaseStore::open(self.dir.path()).unwrap();
        let keys = stream_keys();
        let desk = Desk {
            client: &self.client,
            store: &store,
            stream_dir: self.dir.path(),
            keys: &keys,
            creds: &self.creds,
            listings: &self.listings,
            chain: None,
            http: None,
        };
        match desk.advance(id, hook).await {
            Ok(s) => s,
            Err(peaqos_market::MarketError::Interrupted(_)) => PurchaseState::Refused, // the caller checks the store
            Err(e) => panic!("advance {id}: {e}"),
        }
    }

    /// What the buyer decrypts with the access the server holds: (chunk index, plaintext).
    fn buyer_decrypts(&self, id: &str) -> Vec<(u64, String)> {
        let access = self.server_purchase(id)["access"].clone();
        let entries: Vec<BuyerAccessEntry> = serde_json::from_value(access).unwrap();
        let dir = peaqos_stream::store::topic_dir(self.dir.path(), TOPIC).unwrap();
        peaqos_stream::grant::decrypt_with_grants(&dir, &entries, &BUYER_SK)
            .unwrap()
            .into_iter()
            .map(|(i, pt)| (i, String::from_utf8(pt.to_vec()).unwrap()))
            .collect()
    }
}

fn buyer_pk() -> String {
    hex::encode(peaqos_stream::crypto::x25519_public(&BUYER_SK))
}

#[tokio::test]
async fn nothing_before_payment_then_exactly_the_purchased_chunks() {
    let f = fixture().await;
    let id = f.purchase(&buyer_pk(), json!({"chunkIds": [f.chunk_ids[0], f.chunk_ids[2]]}));
    assert_eq!(f.advance(&id, None).await, PurchaseState::Quoted);
    assert_eq!(f.advance(&id, None).await, PurchaseState::Quoted, "still unpaid");
    let p = f.server_purchase(&id);
    assert!(p["access"].is_null() && p["prepareCount"] == 0, "nothing granted before payment: {p}");
    // the quote: exactly the selected chunks, price × 2
    assert_eq!(p["events"][0]["type"], "seller.ready");
    assert_eq!(
        p["events"][0]["payload"],
        json!({"chunkIds": [f.chunk_ids[0], f.chunk_ids[2]], "amount": "0.2", "currency": "USDC"})
    );

    f.pay(&id);
    assert_eq!(f.advance(&id, None).await, PurchaseState::Recorded);
    let p = f.server_purchase(&id);
    assert_eq!(p["prepareCount"], 1);
    assert_eq!(p["events"][1]["type"], "delivery.completed");
    assert_eq!(p["events"][1]["actor"]["agentId"], json!(f.creds.agent_id));
    let got = f.buyer_decrypts(&id);
    assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 2]);
    assert!(got[0].1.contains("\"n\":0") && got[1].1.contains("\"n\":2"));
    let rec = PurchaseStore::open(f.dir.path()).unwrap().load(&id).unwrap().unwrap();
    assert_eq!((rec.state, rec.chunk_ids.len()), (PurchaseState::Recorded, 2));
    assert!(rec.payment_reference.is_some() && rec.delivery_session_id.is_some());
    // a rerun of a recorded purchase sends nothing
    let before = f.srv.state()["requests"].as_array().unwrap().len();
    assert_eq!(f.advance(&id, None).await, PurchaseState::Recorded);
    assert_eq!(f.srv.state()["requests"].as_array().unwrap().len(), before);
    // no token in the purchase record
    let text = std::fs::read_to_string(PurchaseStore::open(f.dir.path()).unwrap().dir().join(format!("{id}.json")));
    assert!(!text.unwrap().contains(f.creds.token.expose()));

    // no selection: every chunk sealed when the purchase was seen
    let all = f.purchase(&buyer_pk(), Value::Null);
    f.pay(&all);
    assert_eq!(f.advance(&all, None).await, PurchaseState::Recorded);
    assert_eq!(f.buyer_decrypts(&all).len(), 3);
}

#[tokio::test]
async fn refusals_grant_nothing() {
    let f = fixture().await;
    let low_order = "00".repeat(32);
    let unknown_chunk = f.purchase(&buyer_pk(), json!({"chunkIds": ["0x".to_string() + &"ee".repeat(32)]}));
    let bad_key = f.purchase(&low_order, Value::Null);
    let other_topic = f.purchase(&buyer_pk(), json!({"topic": "/other"}));
    for id in [&unknown_chunk, &bad_key, &other_topic] {
        f.pay(id);
        assert_eq!(f.advance(id, None).await, PurchaseState::Refused, "{id}");
        assert_eq!(f.server_purchase(id)["prepareCount"], 0);
        let rec = PurchaseStore::open(f.dir.path()).unwrap().load(id).unwrap().unwrap();
        assert!(rec.refusal.is_some());
    }
    // a purchase of a listing this node does not serve
    let mut other = f.listings.clone();
    other.clear();
    let store = PurchaseStore::open(f.dir.path()).unwrap();
    let keys = stream_keys();
    let desk = Desk {
        client: &f.client,
        store: &store,
        stream_dir: f.dir.path(),
        keys: &keys,
        creds: &f.creds,
        listings: &other,
        chain: None,
        http: None,
    };
    let id = f.purchase(&buyer_pk(), Value::Null);
    f.pay(&id);
    assert_eq!(desk.advance(&id, None).await.unwrap(), PurchaseState::Refused);
    assert_eq!(f.server_purchase(&id)["prepareCount"], 0);
}

#[tokio::test]
async fn a_stop_after_any_step_is_finished_by_a_rerun() {
    let f = fixture().await;
    for at in ["seen", "quoted", "paid", "prepare-access accepted", "access_prepared", "delivered", "recorded"] {
        let id = f.purchase(&buyer_pk(), json!({"chunkIds": [f.chunk_ids[1]]}));
        f.pay(&id);
        let mut stop = |s: &str| if s == at { ControlFlow::Break(()) } else { ControlFlow::Continue(()) };
        f.advance(&id, Some(&mut stop)).await;
        let stored = PurchaseStore::open(f.dir.path()).unwrap().load(&id).unwrap().map(|r| r.state);
        assert!(stored.is_some(), "stopped at {at}");
        assert_eq!(f.advance(&id, None).await, PurchaseState::Recorded, "stopped at {at}");
        let p = f.server_purchase(&id);
        let prepared = p["prepareCount"].as_u64().unwrap();
        let expect = if at == "prepare-access accepted" { 2 } else { 1 };
        assert_eq!(prepared, expect, "stopped at {at}: prepare-access repeated only when its answer was not stored");
        assert_eq!(f.buyer_decrypts(&id).iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1], "stopped at {at}");
    }
}

#[tokio::test]
async fn a_kill_9_at_any_step_is_finished_by_a_rerun() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let f = fixture().await;
    let child = peaqos_testkit::example_bin("market_purchase_child");
    for at in ["seen", "quoted", "paid", "prepare-access accepted", "access_prepared", "delivered", "recorded"] {
        let id = f.purchase(&buyer_pk(), json!({"chunkIds": [f.chunk_ids[2]]}));
        f.pay(&id);
        let mut p = Command::new(&child)
            .args([&f.srv.url, f.dir.path().to_str().unwrap(), &id, LISTING, TOPIC, at])
            .env("PEAQOS_API_KEY", common::API_KEY)
            .env("PEAQOS_PRIVATE_KEY", "11".repeat(32))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(p.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), format!("paused {at}"));
        p.kill().unwrap(); // SIGKILL
        p.wait().unwrap();

        assert_eq!(f.advance(&id, None).await, PurchaseState::Recorded, "killed at {at}");
        let sp = f.server_purchase(&id);
        let expect = if at == "prepare-access accepted" { 2 } else { 1 };
        assert_eq!(sp["prepareCount"].as_u64().unwrap(), expect, "killed at {at}");
        let kinds: Vec<&str> = sp["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["seller.ready", "delivery.completed"], "killed at {at}: one quote, one delivery");
        assert_eq!(f.buyer_decrypts(&id).iter().map(|(i, _)| *i).collect::<Vec<_>>(), [2], "killed at {at}");
        let leftovers: Vec<_> = std::fs::read_dir(PurchaseStore::open(f.dir.path()).unwrap().dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "killed at {at}: {leftovers:?}");
    }
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<peaqos_market::control::Signal>) -> peaqos_market::control::Signal {
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await;
    r.expect("a signal within 10 s").expect("socket task alive")
}

#[tokio::test]
async fn the_control_socket_signals_purchases_and_reconnects() {
    use peaqos_market::control::{run, socket_url, Signal};
    assert_eq!(socket_url("https://h:8/x/", "mach_1").unwrap(), "wss://h:8/x/api/v1/machines/mach_1/control-socket");
    let f = fixture().await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let policy = peaqos_market::agent::HeartbeatPolicy {
        backoff_base: std::time::Duration::from_millis(100),
        backoff_max: std::time::Duration::from_millis(400),
        ..Default::default()
    };
    let task = tokio::spawn(run(f.srv.url.clone(), f.creds.clone(), policy, tx, stop_rx));
    assert_eq!(next(&mut rx).await, Signal::Connected);
    let req = f.srv.state()["requests"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r["path"].as_str().unwrap().ends_with("/control-socket"))
        .cloned()
        .unwrap();
    assert_eq!(req["headers"]["x-machine-agent-id"], json!(f.creds.agent_id));
    assert!(req["headers"].get("x-api-key").is_none() && !req["path"].as_str().unwrap().contains('?'));
    let id = f.purchase(&buyer_pk(), Value::Null);
    assert_eq!(next(&mut rx).await, Signal::Purchase { kind: "purchase.created".into(), purchase_id: id.clone() });
    f.pay(&id);
    assert_eq!(
        next(&mut rx).await,
        Signal::Purchase { kind: "purchase.payment_proof.recorded".into(), purchase_id: id.clone() }
    );
    // the server drops the socket and refuses the next attempt: disconnected, then connected again
    f.srv.fault(json!({"method": "WS", "times": 1}));
    f.srv.control("POST", "sockets/drop", json!({}));
    assert!(matches!(next(&mut rx).await, Signal::Disconnected(_)));
    assert!(matches!(next(&mut rx).await, Signal::Disconnected(_)), "the refused attempt");
    assert_eq!(next(&mut rx).await, Signal::Connected);
    // the server counts a connect once its handshake is done, which may be just after ours
    let mut connects = f.srv.state()["socketConnects"].clone();
    for _ in 0..100 {
        if connects == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        connects = f.srv.state()["socketConnects"].clone();
    }
    assert_eq!(connects, 2);
    stop.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), task).await.unwrap().unwrap().unwrap();
}
