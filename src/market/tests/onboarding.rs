//! Onboarding against the local orchestrator: idempotent, resumable after a stop at every step,
//! expired challenges re-requested, existing records found instead of duplicated.
mod common;

use std::ops::ControlFlow;

use common::{key, profile, Server};
use peaqos_market::onboard::{onboard, Step, MAX_CHALLENGES};
use peaqos_market::state::MarketStore;
use peaqos_market::wire::MachineStatus;
use peaqos_market::{ApiCode, MarketError};
use serde_json::json;

#[tokio::test]
async fn registers_activates_and_a_rerun_changes_nothing() {
    let srv = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store = MarketStore::open(dir.path()).unwrap();
    let (client, key) = (srv.client(), key());
    let m = onboard(&client, &store, &key, "42", &profile(), None).await.unwrap();
    assert!(m.id.starts_with("mach_") && m.status == MachineStatus::Active);
    assert_eq!(m.identity_ref.as_deref(), Some("did:peaq:42"));
    assert_eq!(store.load_machine().unwrap().unwrap().machine_id.as_deref(), Some(m.id.as_str()));

    let again = onboard(&client, &store, &key, "42", &profile(), None).await.unwrap();
    assert_eq!(again.id, m.id);
    assert_eq!(srv.requests("POST", "/api/v1/machines").len(), 1);
    assert_eq!(srv.requests("POST", "/api/v1/machine-identity/challenges").len(), 1);
    assert_eq!(srv.live_machines("did:peaq:42").len(), 1);

    // What went over the wire: platform auth, JSON only with a body, camelCase keys.
    let post = &srv.requests("POST", "/api/v1/machines")[0];
    assert_eq!(post["headers"]["x-api-key"], common::API_KEY);
    assert_eq!(post["headers"]["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(post["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["identityRef"], "did:peaq:42");
    assert!(body["identityProof"]["signature"].as_str().unwrap().starts_with("0x"));
    assert_eq!(body["labels"], json!({"site": "lab"}));
    let get = &srv.requests("GET", &format!("/api/v1/machines/{}", m.id))[0];
    assert!(get["headers"].get("content-type").is_none());
}

#[tokio::test]
async fn a_stop_after_any_step_is_finished_by_a_rerun_without_duplicates() {
    let srv = Server::start(&[]);
    let client = srv.client();
    let steps = [Step::ChallengeIssued, Step::MachineCreated, Step::MachineStored, Step::Activated];
    for (i, stop_at) in steps.into_iter().enumerate() {
        let machine_id = (100 + i).to_string();
        let dir = tempfile::tempdir().unwrap();
        let store = MarketStore::open(dir.path()).unwrap();
        let mut hook = |s: Step| if s == stop_at { ControlFlow::Break(()) } else { ControlFlow::Continue(()) };
        let e = onboard(&client, &store, &key(), &machine_id, &profile(), Some(&mut hook)).await.unwrap_err();
        assert!(matches!(e, MarketError::Interrupted(n) if n == stop_at.name()), "{e}");
        // "restart": a new store handle over the same directory
        let store = MarketStore::open(dir.path()).unwrap();
        let m = onboard(&client, &store, &key(), &machine_id, &profile(), None).await.unwrap();
        assert_eq!(m.status, MachineStatus::Active, "stopped at {stop_at:?}");
        let live = srv.live_machines(&format!("did:peaq:{machine_id}"));
        assert_eq!(live.len(), 1, "stopped at {stop_at:?}: {live:?}");
        assert_eq!(live[0]["id"], m.id.as_str());
    }
}

#[tokio::test]
async fn an_expired_challenge_is_requested_again() {
    let srv = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store = MarketStore::open(dir.path()).unwrap();
    let mut first = true;
    let mut hook = |s: Step| {
        if s == Step::ChallengeIssued && std::mem::take(&mut first) {
            srv.advance_clock(301.0); // the challenge (TTL 300 s) expires before it is used
        }
        ControlFlow::Continue(())
    };
    let m = onboard(&srv.client(), &store, &key(), "7", &profile(), Some(&mut hook)).await.unwrap();
    assert_eq!(m.status, MachineStatus::Active);
    assert_eq!(srv.requests("POST", "/api/v1/machine-identity/challenges").len(), 2);
    assert_eq!(srv.live_machines("did:peaq:7").len(), 1);
}

#[tokio::test]
async fn activation_gets_a_fresh_proof_when_the_server_asks_for_one() {
    let srv = Server::start(&[]);
    srv.config(json!({"activationNeedsFreshProof": true}));
    let dir = tempfile::tempdir().unwrap();
    let store = MarketStore::open(dir.path()).unwrap();
    let m = onboard(&srv.client(), &store, &key(), "8", &profile(), None).await.unwrap();
    assert_eq!(m.status, MachineStatus::Active);
    let patches = srv.requests("PATCH", &format!("/api/v1/machines/{}", m.id));
    assert_eq!(patches.len(), 2);
    assert!(patches[1]["body"].as_str().unwrap().contains("identityProof"));
    assert_eq!(srv.requests("POST", "/api/v1/machine-identity/challenges").len(), 2);
}

#[tokio::test]
async fn challenges_that_always_expire_end_in_a_clear_error() {
    let srv = Server::start(&["--challenge-ttl", "-1"]);
    let dir = tempfile::tempdir().unwrap();
    let store = MarketStore::open(dir.path()).unwrap();
    let e = onboard(&srv.client(), &store, &key(), "7", &profile(), None).await.unwrap_err();
    assert!(e.is(&ApiCode::MachineIdentityProofExpired), "{e}");
    assert!(!e.is_retryable());
    assert_eq!(srv.requests("POST", "/api/v1/machine-identity/challenges").len(), MAX_CHALLENGES);
}

#[tokio::test]
async fn an_existing_record_is_found_not_duplicated() {
    let srv = Server::start(&[]);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let client = srv.client();
    let first = onboard(&client, &MarketStore::open(a.path()).unwrap(), &key(), "9", &profile(), None).await.unwrap();
    // A data dir that lost its state (or a crash before the id was stored): MACHINE_IDENTITY_EXISTS.
    let store_b = MarketStore::open(b.path()).unwrap();
    let second = onboard(&client, &store_b, &key(), "9", &profile(), None).await.unwrap();
    assert_eq!(second.id, first.id);
    assert_eq!(store_b.load_machine().unwrap().unwrap().machine_id.as_deref(), Some(first.id.as_str()));
    assert_eq!(srv.live_machines("did:peaq:9").len(), 1);
    assert_eq!(srv.requests("POST", "/api/v1/machines").len(), 2); // the second answered 409
}

#[tokio::test]
async fn a_stored_id_the_server_no_longer_has_is_registered_again() {
    let srv = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store = MarketStore::open(dir.path()).unwrap();
    store.save_machine("did:peaq:11", Some("mach_gone")).unwrap();
    let m = onboard(&srv.client(), &store, &key(), "11", &profile(), None).await.unwrap();
    assert_ne!(m.id, "mach_gone");
    assert_eq!(store.load_machine().unwrap().unwrap().machine_id.as_deref(), Some(m.id.as_str()));
    // archived on the server: registered again as a new record
    srv.client()
        .update_machine(
            &m.id,
            &peaqos_market::wire::UpdateMachineRequest { status: Some(MachineStatus::Archived), ..Default::default() },
        )
        .await
        .unwrap();
    let again = onboard(&srv.client(), &store, &key(), "11", &profile(), None).await.unwrap();
    assert_ne!(again.id, m.id);
    assert_eq!(srv.live_machines("did:peaq:11").len(), 1);
}

#[tokio::test]
async fn a_key_that_is_not_a_controller_signs_nothing() {
    let srv = Server::start(&["--controller", "5=0x000000000000000000000000000000000000dEaD"]);
    let dir = tempfile::tempdir().unwrap();
    let store = MarketStore::open(dir.path()).unwrap();
    let e = onboard(&srv.client(), &store, &key(), "5", &profile(), None).await.unwrap_err();
    assert!(matches!(&e, MarketError::Validation { field, .. } if field == "controllerAddresses"), "{e}");
    assert!(e.to_string().contains(key().address()));
    assert!(srv.requests("POST", "/api/v1/machines").is_empty());
    // an identity nobody controls: the server's PEAQOS_IDENTITY_UNAVAILABLE, retryable
    let e = onboard(&srv.client(), &store, &key(), "6", &profile(), None).await.unwrap_err();
    assert!(e.is(&ApiCode::PeaqosIdentityUnavailable) && e.is_retryable(), "{e}");
}

#[tokio::test]
async fn a_data_dir_of_another_identity_or_a_bad_id_is_refused() {
    let srv = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store = MarketStore::open(dir.path()).unwrap();
    store.save_machine("did:peaq:1", Some("mach_1")).unwrap();
    let e = onboard(&srv.client(), &store, &key(), "2", &profile(), None).await.unwrap_err();
    assert!(e.to_string().contains("machine.json") && e.to_string().contains("did:peaq:1"), "{e}");
    let e = onboard(&srv.client(), &store, &key(), "02", &profile(), None).await.unwrap_err();
    assert!(e.to_string().contains("machine_id"), "{e}");
    assert!(srv.state()["requests"].as_array().unwrap().is_empty());
}
