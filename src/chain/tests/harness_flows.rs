//! Flows against the team's test chain (`test/chain/harness.py serve`: anvil + Solidity stand-ins
//! of both generations at their real addresses). Skips with a note if the harness, the venv or
//! anvil is missing.

mod common;

use std::time::Duration;

use alloy::primitives::{address, Address, U256};
use common::*;
use peaqos_chain::bindings::{ServiceEndpoint, VerificationMethod};
use peaqos_chain::client::{ActivateParams, LegacyActivateParams};
use peaqos_chain::config::{Generation, Network};
use peaqos_chain::encoding;
use peaqos_chain::validation::{Currency, SubmitEventParams};
use peaqos_chain::ChainClient;

fn client(h: &Harness, generation: Generation, keys: &[usize], dir: &std::path::Path) -> ChainClient {
    let mut c = config(&h.url(), dir);
    c.generation = generation;
    c.network = Network::Peaq;
    let cfg = c.resolve_with(|_| None).unwrap();
    ChainClient::start(cfg, keys.iter().map(|k| signer(&h.key(*k))).collect()).unwrap()
}

// Over 100 lines: one scenario on one harness chain; each step needs the state the previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gen2_activate_submit_batch() {
    let h = Harness::spawn();
    let url = h.url();
    let dir = tempfile::tempdir().unwrap();
    let c = client(&h, Generation::Economics2, &[0], dir.path());
    let me = c.signer_address();
    let controller: Address = h.desc["accounts"][1]["address"].as_str().unwrap().parse().unwrap();
    let cs = br#"{"serial":"SN-0001"}"#.to_vec();
    let expected = encoding::compute_machine_id("robot", &cs);
    let params = ActivateParams {
        controller,
        verification_methods: vec![VerificationMethod {
            id: "#key-1".into(),
            methodType: "EcdsaSecp256k1RecoveryMethod2020".into(),
            controller: me,
            publicKeyMultibase: "zTest".into(),
        }],
        authentication: vec![U256::ZERO],
        service_endpoints: vec![ServiceEndpoint {
            id: "#data".into(),
            serviceType: "DataAPI".into(),
            serviceEndpoint: "https://api.example.com/robot-001".into(),
        }],
        machine_type: "robot".into(),
        credential_subject: cs,
        manufacturer: address!("3333333333333333333333333333333333333333"),
        tier: 0,
        expected_machine_id: Some(expected),
        max_net_peaq_amount: None,
    };
    // a configured address that InfoDesk does not register is refused in preflight
    let dir_bad = tempfile::tempdir().unwrap();
    let mut cb = config(&h.url(), dir_bad.path());
    cb.addresses.machine_bridge_adapter = Some(address!("4444444444444444444444444444444444444444"));
    let bad_client = ChainClient::start(cb.resolve_with(|_| None).unwrap(), vec![signer(&h.key(0))]).unwrap();
    let pm = bad_client.activate(&params).await.unwrap_err();
    assert_eq!((pm.code(), pm.field()), ("PEER_MISMATCH", "machine_bridge_adapter"));
    // bad auth index is refused locally
    let mut bad = params.clone();
    bad.authentication = vec![U256::from(1)];
    assert_eq!(c.activate(&bad).await.unwrap_err().field(), "authentication");
    let r = c.activate(&params).await.unwrap();
    assert_eq!(r.machine_id, expected, "on-chain computeTokenId equals the off-chain keccak");
    assert_eq!(r.bond_amount, U256::from(10u128 * 10u128.pow(18)));
    assert!(r.approval_tx_hash.is_some());
    assert_eq!(r.subscription_status, 1);
    let again = c.activate(&params).await.unwrap_err();
    assert_eq!(again.code(), "ALREADY_ACTIVATED");
    // journal: CLI 0.1.1 activate_machine record shape, pending written before confirmed
    let log = std::fs::read_to_string(dir.path().join("peaqos.log")).unwrap();
    let recs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["phase"] == "activation")
        .collect();
    assert_eq!(recs.iter().map(|v| v["status"].as_str().unwrap()).collect::<Vec<_>>(), vec!["pending", "confirmed"]);
    for k in [
        "ts",
        "step",
        "phase",
        "deployment_id",
        "chain_id",
        "machine_id",
        "signer",
        "tx_hash",
        "sender_nonce",
        "owner",
        "controller",
        "tier",
        "contract",
        "method",
        "status",
    ] {
        assert!(recs[0].get(k).is_some(), "journal record lacks {k}: {}", recs[0]);
    }
    assert_eq!(recs[0]["deployment_id"], "peaq-mainnet");
    assert_eq!(recs[0]["machine_id"], expected.to_string());
    assert_eq!(recs[1]["tx_hash"], format!("{:#x}", r.transaction_hash));

    let ts = latest_block_timestamp(&url).await;
    let e = c.submit_event(&harness_event(r.machine_id, ts)).await.unwrap();
    assert_eq!(format!("{:#x}", e.data_hash), "0xa924b78ada90bc8221efa167de474b1948bde9aab673a7951f7ab4cf1608130d");
    assert_eq!(c.event_count(r.machine_id).await.unwrap(), U256::from(1));
    let items: Vec<_> = (0..3)
        .map(|i| SubmitEventParams { currency: Currency::Code("EUR".into()), ..harness_event(r.machine_id, ts - i) })
        .collect();
    let b = c.batch_submit_events(&items).await.unwrap();
    assert_eq!(b.data_hashes.len(), 3);
    assert_eq!(c.event_count(r.machine_id).await.unwrap(), U256::from(4));

    // contract reverts come back with the SDK codes
    let fut = c.submit_event(&harness_event(r.machine_id, ts + 86_400 * 365)).await.unwrap_err();
    assert_eq!(fut.code(), "FUTURE_TIMESTAMP");
    let missing = c.submit_event(&harness_event(U256::from(777), ts)).await.unwrap_err();
    assert_eq!(missing.code(), "MACHINE_NOT_FOUND");
    assert_eq!(missing.to_string(), "Machine ID 777 does not exist on this deployment");
    // revert data of a failing subcall is forwarded by batchAll
    let mut big = harness_event(r.machine_id, ts);
    big.currency = Currency::Code("USD".into());
    big.metadata = vec![b'x'; 5000];
    let be = c.batch_submit_events(&[items[0].clone(), big]).await.unwrap_err();
    assert_eq!(be.code(), "METADATA_TOO_LARGE");
    assert_eq!(c.event_count(r.machine_id).await.unwrap(), U256::from(4));

    // a stranger is neither owner nor controller
    let dir2 = tempfile::tempdir().unwrap();
    let stranger = client(&h, Generation::Economics2, &[2], dir2.path());
    let ne = stranger.submit_event(&harness_event(r.machine_id, ts)).await.unwrap_err();
    assert_eq!(ne.code(), "NOT_OWNER_OR_CONTROLLER");
    let _ = Duration::from_secs(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gen1_legacy_activate_is_idempotent() {
    let h = Harness::spawn();
    let url = h.url();
    let dir = tempfile::tempdir().unwrap();
    // default signer #3 (machine), #4 operator
    let c = client(&h, Generation::Legacy, &[3, 4], dir.path());
    let machine: Address = h.desc["accounts"][3]["address"].as_str().unwrap().parse().unwrap();
    let operator: Address = h.desc["accounts"][4]["address"].as_str().unwrap().parse().unwrap();
    let base = LegacyActivateParams {
        machine: operator,
        operator: None,
        documentation_url: "https://docs.example.com/robot-001".into(),
        data_api: "https://api.example.com/robot-001".into(),
        data_visibility: "public".into(),
    };
    // operator self-activates first
    let op = c.activate_legacy(&base).await.unwrap();
    assert!(!op.register.skipped && !op.mint.skipped && !op.machine_did_step.skipped);
    // proxy mode for the machine
    let p = LegacyActivateParams { machine, operator: Some(operator), ..base.clone() };
    let a = c.activate_legacy(&p).await.unwrap();
    assert!(!a.register.skipped && !a.mint.skipped && !a.machine_did_step.skipped);
    assert!(!a.proxy_did_step.as_ref().unwrap().skipped);
    assert_eq!(a.machine_did, format!("did:peaq:{}", machine.to_checksum(None)));
    assert_eq!(c.token_id_of(a.machine_id).await.unwrap(), a.token_id);
    assert_eq!(c.read_did_attribute(machine, "machineId").await.unwrap(), Some(a.machine_id.to_string()));
    assert_eq!(
        c.read_did_attribute(machine, "operator").await.unwrap(),
        Some(format!("did:peaq:{}", operator.to_checksum(None)))
    );
    assert_eq!(c.read_did_attribute(operator, "machines").await.unwrap(), Some(format!("[{}]", a.machine_id)));
    assert_eq!(c.read_did_attribute(machine, "nope").await.unwrap(), None);
    // rerun: everything already on chain, nothing is sent
    let n3 = nonce_of(&url, machine).await;
    let n4 = nonce_of(&url, operator).await;
    let again = c.activate_legacy(&p).await.unwrap();
    assert!(
        again.register.skipped
            && again.mint.skipped
            && again.machine_did_step.skipped
            && again.proxy_did_step.unwrap().skipped
    );
    assert_eq!(again.machine_id, a.machine_id);
    assert_eq!((nonce_of(&url, machine).await, nonce_of(&url, operator).await), (n3, n4));
    // register again directly: skipped, same id
    assert_eq!(c.register_for(operator, machine).await.unwrap().machine_id, a.machine_id);

    // events on the gen-1 registry, signed by the machine (default signer)
    let ts = latest_block_timestamp(&url).await;
    c.submit_event(&harness_event(a.machine_id, ts)).await.unwrap();
    assert_eq!(c.event_count(a.machine_id).await.unwrap(), U256::from(1));
    let nf = c.submit_event(&harness_event(U256::from(999), ts)).await.unwrap_err();
    assert_eq!(nf.code(), "MachineNotFound");

    let log = std::fs::read_to_string(dir.path().join("peaqos.log")).unwrap();
    assert!(log.contains(r#""step": "register""#) && log.contains(r#""status": "skipped""#));
}
