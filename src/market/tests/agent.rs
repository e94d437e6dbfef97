//! Agent enrollment (once, token 0600, orphan revoked after a lost answer) and the lease-driven
//! heartbeat (renewal before the lease ends, backoff while the server is down, auth errors surfaced).
mod common;

use std::ops::ControlFlow;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use chrono::Utc;
use common::{key, profile, Server};
use peaqos_market::agent::{
    ensure_enrolled, reenroll, Clock, EnrollConfig, Heartbeat, HeartbeatPolicy, ManualClock, SystemClock,
};
use peaqos_market::onboard::{onboard, Step};
use peaqos_market::state::MarketStore;
use peaqos_market::wire::{EndpointHealth, HeartbeatEndpoint};
use peaqos_market::{ApiCode, MarketError, OrchestrationClient};
use serde_json::json;

fn enroll_cfg() -> EnrollConfig {
    EnrollConfig { label: "peaqos-node".into(), allowed_provider_keys: vec!["qvac".into()] }
}

async fn onboarded(srv: &Server, dir: &std::path::Path) -> (OrchestrationClient, MarketStore, String) {
    let client = srv.client();
    let store = MarketStore::open(dir).unwrap();
    let m = onboard(&client, &store, &key(), "42", &profile(), None).await.unwrap();
    (client, store, m.id)
}

fn endpoints() -> Vec<HeartbeatEndpoint> {
    vec![HeartbeatEndpoint::new("qvac", "http://127.0.0.1:8080")]
}

fn live_agents(srv: &Server) -> Vec<serde_json::Value> {
    srv.state()["agents"].as_array().unwrap().iter().filter(|a| a["status"] != "revoked").cloned().collect()
}

#[tokio::test]
async fn enrolls_once_and_keeps_the_token_0600() {
    for field in ["provisioningToken", "agentToken"] {
        let srv = Server::start(&["--enroll-token-field", field]);
        let dir = tempfile::tempdir().unwrap();
        let (client, store, mach) = onboarded(&srv, dir.path()).await;
        let creds = ensure_enrolled(&client, &store, &mach, &enroll_cfg(), None).await.unwrap();
        assert!(creds.agent_id.starts_with("agt_") && creds.machine_id == mach);
        let token_file = store.dir().join("agent_token");
        assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&token_file).unwrap(), creds.token.expose());
        assert!(!format!("{creds:?}").contains(creds.token.expose()));
        assert!(!std::fs::read_to_string(store.dir().join("agent.json")).unwrap().contains(creds.token.expose()));

        let again = ensure_enrolled(&client, &store, &mach, &enroll_cfg(), None).await.unwrap();
        assert_eq!((again.agent_id.as_str(), again.token.expose()), (creds.agent_id.as_str(), creds.token.expose()));
        assert_eq!(srv.requests("POST", &format!("/api/v1/machines/{mach}/agents/enrollment")).len(), 1, "{field}");
        assert_eq!(live_agents(&srv).len(), 1);
    }
}

#[tokio::test]
async fn a_lost_enrollment_answer_is_revoked_and_replaced() {
    let srv = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (client, store, mach) = onboarded(&srv, dir.path()).await;
    // another agent (say, enrolled by the operator under another label) must survive
    let other = client
        .enroll_agent(
            &mach,
            &peaqos_market::wire::EnrollAgentRequest { label: Some("operator".into()), ..Default::default() },
        )
        .await
        .unwrap();
    let mut stop = |s: Step| if s == Step::AgentEnrolled { ControlFlow::Break(()) } else { ControlFlow::Continue(()) };
    let e = ensure_enrolled(&client, &store, &mach, &enroll_cfg(), Some(&mut stop)).await.unwrap_err();
    assert!(matches!(e, MarketError::Interrupted("agent enrolled")), "{e}");
    assert!(store.load_agent().unwrap().is_none()); // the token never reached the disk: "kill -9" here

    let store = MarketStore::open(dir.path()).unwrap();
    let creds = ensure_enrolled(&client, &store, &mach, &enroll_cfg(), None).await.unwrap();
    let live = live_agents(&srv);
    let ids: Vec<&str> = live.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{live:?}");
    assert!(ids.contains(&creds.agent_id.as_str()) && ids.contains(&other.id.as_str()));
    assert_eq!(srv.state()["agents"].as_array().unwrap().len(), 3); // the orphan is revoked, not deleted
}

#[tokio::test]
async fn heartbeat_renews_halfway_through_the_lease_and_backs_off_while_the_server_is_down() {
    let srv = Server::start(&["--lease-ttl", "40"]);
    let dir = tempfile::tempdir().unwrap();
    let (client, store, mach) = onboarded(&srv, dir.path()).await;
    let creds = ensure_enrolled(&client, &store, &mach, &enroll_cfg(), None).await.unwrap();
    let clock = ManualClock::new(Utc::now());
    let mut hb = Heartbeat::new(creds.clone(), endpoints(), HeartbeatPolicy::default(), clock.now()).unwrap();
    assert_eq!(hb.next_due(), clock.now()); // due at once

    let rep = hb.beat(&client, clock.now()).await.unwrap();
    assert_eq!(rep.result.endpoints[0].status, EndpointHealth::Active);
    assert_eq!(rep.lease_expires_at - clock.now(), chrono::Duration::seconds(40));
    assert_eq!(hb.next_due() - clock.now(), chrono::Duration::seconds(20));
    let sent = &srv.requests("POST", "/api/v1/machine-agents/heartbeat")[0];
    assert!(sent["headers"].get("x-api-key").is_none());
    let body: serde_json::Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["endpoints"][0]["providerKey"], "qvac");
    assert_eq!(body["leaseTtlSeconds"], serde_json::Value::Null);
    assert_eq!(body["agentToken"], creds.token.expose());

    // server down: 503, garbage, dropped connections → retryable errors, backoff ~1, 2, 4, 8 s
    let path = "/api/v1/machine-agents/heartbeat";
    srv.fault(json!({"method": "POST", "path": path, "status": 503, "times": 2,
                     "json": {"error": {"code": "SERVICE_DOWN", "message": "maintenance"}}}));
    srv.fault(json!({"method": "POST", "path": path, "status": 200, "body": "<html>"}));
    srv.fault(json!({"method": "POST", "path": path, "drop": true}));
    clock.advance(Duration::from_secs(20));
    for n in 1..=4u32 {
        let e = hb.beat(&client, clock.now()).await.unwrap_err();
        assert!(e.is_retryable(), "{e}");
        let wait = (hb.next_due() - clock.now()).to_std().unwrap().as_secs_f64();
        let full = f64::from(1u32 << (n - 1));
        assert!(wait <= full && wait >= full * 0.8, "failure {n}: wait {wait}");
        assert_eq!(hb.failures(), n);
        clock.advance(Duration::from_secs_f64(wait));
    }
    // back up: the schedule returns to the lease
    hb.beat(&client, clock.now()).await.unwrap();
    assert_eq!((hb.failures(), hb.next_due() - clock.now()), (0, chrono::Duration::seconds(20)));

    // a requested TTL is sent and honoured
    let policy = HeartbeatPolicy { lease_ttl_seconds: Some(600), ..Default::default() };
    let mut long = Heartbeat::new(creds, endpoints(), policy, clock.now()).unwrap();
    long.beat(&client, clock.now()).await.unwrap();
    assert_eq!(long.next_due() - clock.now(), chrono::Duration::seconds(300)); // = max_interval
}

#[tokio::test]
async fn a_revoked_agent_stops_the_heartbeat_with_an_auth_error() {
    let srv = Server::start(&["--lease-ttl", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let (client, store, mach) = onboarded(&srv, dir.path()).await;
    let creds = ensure_enrolled(&client, &store, &mach, &enroll_cfg(), None).await.unwrap();
    // the run loop beats on its own (lease 1 s → every 0.5 s with these bounds) until shut down
    let policy = HeartbeatPolicy { min_interval: Duration::from_millis(100), ..Default::default() };
    let mut hb = Heartbeat::new(creds.clone(), endpoints(), policy, Utc::now()).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1600)).await;
        tx.send(true).unwrap();
    });
    tokio::time::timeout(Duration::from_secs(10), hb.run(&client, &SystemClock, rx)).await.unwrap().unwrap();
    stopper.await.unwrap();
    let beats = srv.requests("POST", "/api/v1/machine-agents/heartbeat").len();
    assert!((2..=6).contains(&beats), "{beats} heartbeats in 1.6 s");

    client.revoke_agent(&mach, &creds.agent_id).await.unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let e =
        tokio::time::timeout(Duration::from_secs(10), hb.run(&client, &SystemClock, rx)).await.unwrap().unwrap_err();
    assert!(e.is(&ApiCode::AgentAuthInvalid) && !e.is_retryable(), "{e}");
    assert!(!e.to_string().contains(creds.token.expose()));

    // the caller's answer: a new agent, and the heartbeat goes on with it
    let fresh = reenroll(&client, &store, &creds, &enroll_cfg()).await.unwrap();
    assert_ne!(fresh.agent_id, creds.agent_id);
    assert_eq!(store.load_agent().unwrap().unwrap().0.agent_id, fresh.agent_id);
    let mut hb = Heartbeat::new(fresh, endpoints(), HeartbeatPolicy::default(), Utc::now()).unwrap();
    hb.beat(&client, Utc::now()).await.unwrap();
    assert_eq!(live_agents(&srv).len(), 1);
}
