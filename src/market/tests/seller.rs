//! The seller's supervisor: waits for the machine id, onboards on its own, heartbeats, backs off
//! while the server fails, re-enrolls a revoked agent, re-registers a record that is gone, and an
//! explicit onboarding is idempotent.
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{key, profile, Server};
use peaqos_market::agent::{EnrollConfig, HeartbeatPolicy};
use peaqos_market::seller::{Phase, Seller, SellerConfig, Snapshot};
use peaqos_market::state::MarketStore;
use peaqos_market::wire::HeartbeatEndpoint;
use serde_json::json;

fn config(onboard_at_start: bool) -> SellerConfig {
    SellerConfig {
        profile: profile(),
        enroll: EnrollConfig { label: "peaqos-node".into(), allowed_provider_keys: vec!["qvac".into()] },
        heartbeat: HeartbeatPolicy {
            min_interval: Duration::from_millis(200),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_millis(800),
            ..Default::default()
        },
        endpoints: vec![HeartbeatEndpoint::new("qvac", "http://127.0.0.1:8080")],
        onboard_at_start,
        machine_id_poll: Duration::from_millis(100),
        offers: Default::default(),
        sales: None,
        runtime_endpoint: None,
    }
}

async fn until(seller: &Seller, what: &str, f: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = seller.snapshot();
        if f(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last snapshot {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn live(srv: &Server, kind: &str) -> Vec<serde_json::Value> {
    let bad = if kind == "machines" { "archived" } else { "revoked" };
    srv.state()[kind].as_array().unwrap().iter().filter(|x| x["status"] != bad).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_the_machine_id_then_onboards_heartbeats_and_recovers() {
    let srv = Server::start(&["--lease-ttl", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let id: Arc<Mutex<Option<String>>> = Arc::default();
    let src = Arc::clone(&id);
    let seller = Seller::new(
        srv.client(),
        MarketStore::open(dir.path()).unwrap(),
        Arc::new(key()),
        config(true),
        Box::new(move || src.lock().unwrap().clone()),
    )
    .unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(Arc::clone(&seller).run(rx));

    until(&seller, "waiting", |s| s.phase == Phase::WaitingForMachineId).await;
    let e = seller.onboard().await.unwrap_err();
    assert_eq!(e.error_code(), "MACHINE_ID_UNKNOWN");
    *id.lock().unwrap() = Some("42".into());
    let s = until(&seller, "online", |s| s.phase == Phase::Online && s.heartbeats >= 2).await;
    let mach = s.machine_id.clone().unwrap();
    assert!(mach.starts_with("mach_") && s.agent_id.as_deref().unwrap().starts_with("agt_"));
    assert_eq!(s.chain_machine_id.as_deref(), Some("42"));
    assert!(s.lease_expires_at.unwrap() > s.last_heartbeat.unwrap());

    // an explicit onboarding now is idempotent: same ids, nothing created
    let o = seller.onboard().await.unwrap();
    assert_eq!((o.machine.id.as_str(), o.agent_id.as_str()), (mach.as_str(), s.agent_id.as_deref().unwrap()));
    assert_eq!((live(&srv, "machines").len(), live(&srv, "agents").len()), (1, 1));

    // the server fails the heartbeat: retrying with backoff, then back online
    let path = "/api/v1/machine-agents/heartbeat";
    srv.fault(json!({"method": "POST", "path": path, "status": 503, "times": 3,
                     "json": {"error": {"code": "SERVICE_DOWN", "message": "maintenance"}}}));
    let r = until(&seller, "retrying", |s| s.phase == Phase::Retrying && s.failures >= 2).await;
    assert!(r.backoff.is_some() && r.retry_at.is_some(), "{r:?}");
    assert_eq!(r.last_error.as_ref().unwrap().0, "SERVICE_DOWN");
    let before = r.heartbeats;
    until(&seller, "recovered", |s| s.phase == Phase::Online && s.heartbeats > before && s.last_error.is_none()).await;

    // the agent is revoked behind the node's back: a new one is enrolled, the heartbeat goes on
    let old = seller.snapshot().agent_id.unwrap();
    srv.client().revoke_agent(&mach, &old).await.unwrap();
    let s =
        until(&seller, "new agent online", |s| s.phase == Phase::Online && s.agent_id.as_deref() != Some(&old)).await;
    assert_eq!(live(&srv, "agents").len(), 1);

    // the record is archived: registered again, with a new agent
    srv.client().revoke_agent(&mach, s.agent_id.as_deref().unwrap()).await.unwrap();
    reqwest_delete(&srv, &format!("/api/v1/machines/{mach}"));
    let s =
        until(&seller, "re-registered", |s| s.phase == Phase::Online && s.machine_id.as_deref() != Some(&mach)).await;
    assert_eq!(live(&srv, "machines").len(), 1);
    assert_eq!(live(&srv, "machines")[0]["id"], s.machine_id.clone().unwrap());

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test]
async fn idle_until_asked_and_a_refusal_is_final_until_asked_again() {
    let srv = Server::start(&["--controller", "*=0x000000000000000000000000000000000000dEaD"]);
    let dir = tempfile::tempdir().unwrap();
    let seller = Seller::new(
        srv.client(),
        MarketStore::open(dir.path()).unwrap(),
        Arc::new(key()),
        config(false),
        Box::new(|| Some("7".to_string())),
    )
    .unwrap();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(Arc::clone(&seller).run(rx));
    until(&seller, "idle", |s| s.phase == Phase::Idle).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(srv.state()["challenges"], 0, "nothing is sent before a request");

    // our key is not a controller: refused before signing, named, not retried
    let e = seller.onboard().await.unwrap_err();
    assert_eq!((e.error_code(), e.field()), ("VALIDATION_ERROR", "controllerAddresses"));
    let s = until(&seller, "failed", |s| s.phase == Phase::Failed).await;
    assert_eq!(s.last_error.unwrap().0, "VALIDATION_ERROR");
    let n = srv.state()["challenges"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(srv.state()["challenges"].as_u64().unwrap(), n, "a final refusal is not retried");

    srv.control("POST", "controllers", json!({"identityRef": "*", "addresses": [key().address()]}));
    let o = seller.onboard().await.unwrap();
    assert_eq!(o.chain_machine_id, "7");
    until(&seller, "online", |s| s.phase == Phase::Online).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_one_listing_per_topic_for_sale_and_the_delivery_capabilities() {
    use peaqos_stream::topic_config::TopicStreamConfig;
    let srv = Server::start(&["--lease-ttl", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let sale = TopicStreamConfig::from_value(&json!({"sale": {"price": 0.25, "currency": "USDC", "payment_rails": [
        {"type": "x402", "chain": "base", "token": "USDC"}]}}))
    .unwrap();
    let plain = TopicStreamConfig::from_value(&json!({})).unwrap();
    let mut cfg = config(true);
    cfg.offers = peaqos_market::offers::offers([("/cam", &sale), ("/log", &plain)], Duration::from_secs(600)).unwrap();
    // the first capabilities registration fails: reported, retried after the next heartbeat
    let listing = peaqos_market::offers::default_listing_id("/cam");
    srv.fault(json!({"method": "PUT", "status": 503, "json": {"error": {"code": "SERVICE_DOWN", "message": "m"}}}));
    let seller = Seller::new(
        srv.client(),
        MarketStore::open(dir.path()).unwrap(),
        Arc::new(key()),
        cfg,
        Box::new(|| Some("42".to_string())),
    )
    .unwrap();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(Arc::clone(&seller).run(rx));
    let s = until(&seller, "offers error", |s| s.offers_error.is_some()).await;
    assert_eq!((s.offers_error.unwrap().0.as_str(), s.listings_total, s.listings_published), ("SERVICE_DOWN", 1, 0));
    let s = until(&seller, "published", |s| s.listings_published == 1 && s.offers_error.is_none()).await;
    assert!(s.capabilities_expires_at.unwrap() > chrono::Utc::now() + chrono::Duration::seconds(500));
    let state = srv.state();
    let [l] = state["listings"].as_array().unwrap().as_slice() else { panic!("{state}") };
    assert_eq!((l["id"].as_str().unwrap(), &l["machineId"]), (listing.as_str(), &json!(s.machine_id.unwrap())));
    assert_eq!(l["price"], json!({"amount": "0.25", "currency": "USDC"}));
    assert_eq!(l["paymentRails"], json!([{"type": "x402", "chain": "base", "token": "USDC"}]));
    assert_eq!(l["deliveryOptions"][0]["params"]["topic"], "/cam");
    let [caps] = state["deliveryCapabilities"].as_array().unwrap().as_slice() else { panic!("{state}") };
    assert_eq!(caps["agentId"], json!(s.agent_id.unwrap()));
    assert_eq!(caps["resourceTypes"], json!(["stream.listing"]));
    assert_eq!(caps["capabilities"][0]["transportId"], "peaqos-storage");
    // published once, not with every heartbeat
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        srv.requests(
            "PATCH",
            &format!("/api/v1/machines/{}/stream/listings/{listing}", l["machineId"].as_str().unwrap())
        )
        .len(),
        1
    );
    let mach = l["machineId"].as_str().unwrap();
    assert_eq!(srv.requests("PUT", &format!("/api/v1/machines/{mach}/delivery-capabilities")).len(), 2);
}

/// `DELETE` with the platform key (archive), outside the client under test.
fn reqwest_delete(srv: &Server, path: &str) {
    use std::io::{Read, Write};
    let addr = srv.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "DELETE {path} HTTP/1.1\r\nHost: {addr}\r\nx-api-key: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        common::API_KEY
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 204"), "{resp}");
}
