//! Outbox exactly-once tests against a bare anvil (fresh per test, 127.0.0.1, stopped at the end)
//! with counter stand-ins at the gen-2 EventRegistry and Batch precompile addresses:
//! the EventRegistry counter counts calls, the Batch counter adds len(to) per batchAll, so the
//! counters equal the number of events that reached the chain. Skips if no anvil binary is found.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use alloy::primitives::{address, Address, U256};
use common::*;
use peaqos_chain::config::BATCH_PRECOMPILE;
use peaqos_chain::outbox::IntentState;
use peaqos_chain::validation::{Currency, MachineIdInput, SubmitEventParams, ValueInput};
use peaqos_chain::ChainClient;

const SIGNER0: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");

fn ev(i: u64) -> SubmitEventParams {
    SubmitEventParams {
        machine_id: MachineIdInput(U256::from(42)),
        event_type: 1,
        value: ValueInput::from_u128(i as u128),
        timestamp: 1_735_000_000 + i as i64,
        raw_data: Some(format!("reading {i}").into_bytes()),
        trust_level: 0,
        source_chain_id: 0,
        source_tx_hash: None,
        metadata: br#"{"k":1}"#.to_vec(),
        currency: Currency::Omitted,
    }
}

/// A test's chain: a fresh anvil with the counter stand-ins, its URL, the client's store
/// directory and the file anvil keeps its chain in across a stop (used with `keep_state`;
/// `_state_dir` holds it). Destructured by each test.
struct TestChain {
    anvil: Anvil,
    url: String,
    dir: tempfile::TempDir,
    state: PathBuf,
    _state_dir: tempfile::TempDir,
}

impl TestChain {
    /// `no_mining`: transactions wait in the pool until a test mines; `keep_state`: anvil dumps
    /// its chain to `state` when stopped (and a restart on the same port loads it).
    async fn start(no_mining: bool, keep_state: bool) -> Option<TestChain> {
        let state_dir = tempfile::tempdir().unwrap();
        let state = state_dir.path().join("anvil-state.json");
        let anvil = Anvil::spawn(&peaqos_testkit::anvil(), free_port(), keep_state.then_some(&*state), no_mining);
        install_counters(&anvil.url()).await;
        let dir = tempfile::tempdir().unwrap();
        Some(TestChain { url: anvil.url(), anvil, dir, state, _state_dir: state_dir })
    }
}

/// A chain client on `url` with its store in `dir`, signing with anvil's key #0.
fn client_at(url: &str, dir: &Path) -> ChainClient {
    ChainClient::start(config(url, dir).resolve_with(|_| None).unwrap(), vec![signer(KEY0)]).unwrap()
}

async fn wait_until(client: &ChainClient, pred: impl Fn(&ChainClient) -> bool, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !pred(client) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in {secs}s: {:?}",
            client.outbox().pending()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_and_batch_exactly_once() {
    let Some(TestChain { anvil, dir, .. }) = TestChain::start(false, false).await else {
        return;
    };
    let cfg = config(&anvil.url(), dir.path()).resolve_with(|_| None).unwrap();
    let client = ChainClient::start(cfg, vec![signer(KEY0)]).unwrap();
    let mut status = client.subscribe_status();
    let r = client.submit_event(&ev(1)).await.unwrap();
    assert!(r.block_number > 0 && r.gas_used > 0);
    assert_eq!(r.data_hash, alloy::primitives::keccak256(b"reading 1"));
    let mut items: Vec<_> = (2..5).map(ev).collect();
    for i in items.iter_mut() {
        i.currency = Currency::Code(String::new());
    }
    let b = client.batch_submit_events(&items).await.unwrap();
    assert_eq!(b.data_hashes.len(), 3);
    assert_eq!(storage0(&anvil.url(), REGISTRY).await, U256::from(1));
    assert_eq!(storage0(&anvil.url(), BATCH_PRECOMPILE).await, U256::from(3));
    assert_eq!(nonce_of(&anvil.url(), SIGNER0).await, 2);
    // status stream: queued → signed → broadcast → included for the first intent
    let mut seen = vec![];
    while let Ok(s) = status.try_recv() {
        if s.intent_id == r.intent_id {
            seen.push(s.state);
        }
    }
    assert_eq!(seen, vec![IntentState::Queued, IntentState::Signed, IntentState::Broadcast, IntentState::Included]);
    // batch items need an explicit currency
    let err = client.batch_submit_events(&[ev(9)]).await.unwrap_err();
    assert_eq!(err.field(), "currency");
    // journal: pending then confirmed, same hash
    let log = std::fs::read_to_string(dir.path().join("peaqos.log")).unwrap();
    let h = format!("{:#x}", r.tx_hash);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&h)).collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].contains(r#""status": "pending""#) && lines[1].contains(r#""status": "confirmed""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_before_store_or_send() {
    let Some(TestChain { anvil, dir, .. }) = TestChain::start(false, false).await else {
        return;
    };
    let mut c = config(&anvil.url(), dir.path());
    c.limits.rate_limit_max_events = 2;
    c.limits.rate_limit_window_seconds = 3600;
    c.limits.max_value_per_tx = 1000;
    let client = ChainClient::start(c.resolve_with(|_| None).unwrap(), vec![signer(KEY0)]).unwrap();
    client.submit_event(&ev(1)).await.unwrap();
    let mut big = ev(2);
    big.value = ValueInput::from_u128(1001);
    let e = client.submit_event(&big).await.unwrap_err();
    assert_eq!((e.code(), e.field()), ("VALUE_CAP_EXCEEDED", "value"));
    client.submit_event(&ev(3)).await.unwrap();
    let e = client.submit_event(&ev(4)).await.unwrap_err();
    assert_eq!(e.code(), "RATE_LIMITED");
    assert_eq!(e.to_string(), "Machine 42: 2/2 events in 3600s");
    let mut other = ev(5);
    other.machine_id = MachineIdInput(U256::from(43));
    client.submit_event(&other).await.unwrap();
    // refused ones were never stored nor sent
    assert_eq!(nonce_of(&anvil.url(), SIGNER0).await, 3);
    assert_eq!(std::fs::read_dir(dir.path().join("chain/done")).unwrap().count(), 3);
    assert_eq!(std::fs::read_dir(dir.path().join("chain/intents")).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_is_decoded_before_signing() {
    let Some(TestChain { anvil, dir, .. }) = TestChain::start(false, false).await else {
        return;
    };
    // EventRegistry that always reverts NotOwnerOrController() (0xfce354b2)
    set_code(&anvil.url(), REGISTRY, "0x63fce354b260e01b60005260046000fd").await;
    let client = client_at(&anvil.url(), dir.path());
    let e = client.submit_event(&ev(1)).await.unwrap_err();
    assert_eq!(e.code(), "NOT_OWNER_OR_CONTROLLER");
    assert_eq!(e.to_string(), "Caller is neither the owner nor the DID controller of machine 42");
    assert_eq!(nonce_of(&anvil.url(), SIGNER0).await, 0);
    // a later good transaction uses nonce 0 (nothing was consumed)
    set_code(&anvil.url(), REGISTRY, COUNTER_CODE).await;
    client.submit_event(&ev(2)).await.unwrap();
    assert_eq!(nonce_of(&anvil.url(), SIGNER0).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_down_then_anvil_restarted_with_state() {
    let Some(TestChain { mut anvil, url, dir, state, _state_dir }) = TestChain::start(false, true).await else {
        return;
    };
    // two URLs: the first is never up, fallback order is exercised on every call
    let dead = "http://127.0.0.1:1".to_string(); // nothing listens on port 1
    let mut c = config(&url, dir.path());
    c.rpc_urls = vec![dead, url.clone()];
    let client = ChainClient::start(c.resolve_with(|_| None).unwrap(), vec![signer(KEY0)]).unwrap();
    for i in 0..3 {
        client.submit_event(&ev(i)).await.unwrap();
    }
    anvil.stop(); // SIGTERM: anvil dumps its state
    let mut ids = vec![];
    for i in 3..6 {
        ids.push(client.enqueue_event(&ev(i)).unwrap().0);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let pend = client.outbox().pending();
    assert_eq!(pend.len(), 3);
    assert!(pend.iter().all(|i| i.state == IntentState::Queued), "{pend:?}");
    assert_eq!(std::fs::read_dir(dir.path().join("chain/intents")).unwrap().count(), 3);
    let w = client.outbox().wait(&ids[0], Duration::from_millis(200)).await.unwrap_err();
    assert_eq!(w.code(), "RECEIPT_AWAIT_FAILED");
    assert!(w.to_string().contains("stays queued"), "{w}");
    let _anvil2 = Anvil::spawn(&anvil.bin, anvil.port, Some(&state), false);
    wait_until(&client, |c| c.outbox().pending().is_empty(), 30).await;
    for id in &ids {
        assert_eq!(client.outbox().get(id).unwrap().state, IntentState::Included);
    }
    assert_eq!(nonce_of(&url, SIGNER0).await, 6);
    assert_eq!(storage0(&url, REGISTRY).await, U256::from(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_lost_rebroadcasts_same_raw_transaction() {
    let Some(TestChain { mut anvil, url, dir, state, _state_dir }) = TestChain::start(true, true).await else {
        return;
    };
    let client = client_at(&url, dir.path());
    let ids: Vec<String> = (0..2).map(|i| client.enqueue_event(&ev(i)).unwrap().0).collect();
    wait_until(&client, |c| c.outbox().pending().iter().all(|i| i.state == IntentState::Broadcast), 20).await;
    let hashes: Vec<_> = ids.iter().map(|id| client.outbox().get(id).unwrap().attempts[0].tx_hash).collect();
    anvil.stop(); // the pool (holding both transactions) is lost; chain state is kept
    let _anvil2 = Anvil::spawn(&anvil.bin, anvil.port, Some(&state), false);
    wait_until(&client, |c| c.outbox().pending().is_empty(), 30).await;
    for (id, h) in ids.iter().zip(&hashes) {
        let i = client.outbox().get(id).unwrap();
        assert_eq!(i.state, IntentState::Included);
        assert_eq!(i.attempts.len(), 1, "same raw transaction, no replacement");
        assert_eq!(i.receipt.unwrap().tx_hash, *h);
    }
    assert_eq!(nonce_of(&url, SIGNER0).await, 2);
    assert_eq!(storage0(&url, REGISTRY).await, U256::from(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_consumed_elsewhere_is_signed_again_never_resent() {
    let Some(TestChain { anvil: _anvil, url, dir, .. }) = TestChain::start(true, false).await else {
        return;
    };
    {
        let client = client_at(&url, dir.path());
        client.enqueue_event(&ev(0)).unwrap();
        wait_until(&client, |c| c.outbox().pending().iter().all(|i| i.state == IntentState::Broadcast), 20).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // old worker exits, lock released
                                                           // Drop the pooled tx and consume nonce 0 with another transaction from the same key.
    rpc_value(&url, "anvil_dropAllTransactions", serde_json::json!([])).await;
    rpc_value(&url, "anvil_setNonce", serde_json::json!([SIGNER0, "0x1"])).await;
    rpc_value(&url, "evm_mine", serde_json::json!([])).await;
    // The stored transaction can never be included now: the same call is signed again at nonce
    // 1 (the old bytes are not re-sent), and it takes effect once.
    let client = client_at(&url, dir.path());
    wait_until(
        &client,
        |c| c.outbox().pending().iter().all(|i| i.state == IntentState::Broadcast && i.nonce == Some(1)),
        20,
    )
    .await;
    let i = client.outbox().pending()[0].clone();
    assert_eq!(i.attempts.len(), 1);
    assert!(i.journal["superseded"]["nonce"] == serde_json::json!(0), "{:?}", i.journal);
    rpc_value(&url, "evm_mine", serde_json::json!([])).await;
    wait_until(&client, |c| c.outbox().pending().is_empty(), 20).await;
    assert_eq!(client.outbox().get(&i.id).unwrap().state, IntentState::Included);
    assert_eq!(storage0(&url, REGISTRY).await, U256::from(1));
}

/// Child half of the abort tests: runs only when re-executed by the parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_abort_process() {
    let (Ok(url), Ok(dir)) = (std::env::var("PEAQOS_TEST_CHILD_RPC"), std::env::var("PEAQOS_TEST_CHILD_DIR")) else {
        return;
    };
    let client = client_at(&url, Path::new(&dir));
    client.enqueue_event(&ev(7)).unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    panic!("fault injection did not abort");
}

/// Run `child_abort_process` with `fault`; returns its one stored intent record.
fn run_aborting_child(fault: &str, url: &str, dir: &Path) -> peaqos_chain::outbox::Intent {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_abort_process", "--nocapture", "--test-threads=1"])
        .env("PEAQOS_CHAIN_FAULT", fault)
        .env("PEAQOS_TEST_CHILD_RPC", url)
        .env("PEAQOS_TEST_CHILD_DIR", dir)
        .status()
        .unwrap();
    assert!(!status.success(), "child must have aborted");
    let files: Vec<_> = std::fs::read_dir(dir.join("chain/intents")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1);
    serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap()
}

async fn abort_then_restart(fault: &str, expect_state: IntentState) {
    let Some(TestChain { anvil: _anvil, url, dir, .. }) = TestChain::start(false, false).await else {
        return;
    };
    // The stored record is in the state the child died in.
    let rec = run_aborting_child(fault, &url, dir.path());
    assert_eq!(rec.state, expect_state);
    let stored_hash = rec.attempts[0].tx_hash;
    let log = std::fs::read_to_string(dir.path().join("peaqos.log")).unwrap();
    assert!(log.contains(&format!("{stored_hash:#x}")), "pending hash journaled before the crash");
    // Restart in this process: reconcile ⇒ included exactly once, same hash.
    let client = client_at(&url, dir.path());
    let o = client.outbox().wait(&rec.id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(o.tx_hash, stored_hash);
    assert_eq!(nonce_of(&url, SIGNER0).await, 1);
    assert_eq!(storage0(&url, REGISTRY).await, U256::from(1));
    // one more event goes out at the next nonce
    client.submit_event(&ev(8)).await.unwrap();
    assert_eq!(nonce_of(&url, SIGNER0).await, 2);
    assert_eq!(storage0(&url, REGISTRY).await, U256::from(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_after_sign_then_restart_exactly_once() {
    abort_then_restart("abort_after_sign", IntentState::Signed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_after_broadcast_then_restart_exactly_once() {
    abort_then_restart("abort_after_broadcast", IntentState::Broadcast).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_material_in_journal_store_or_errors() {
    let Some(TestChain { anvil, dir, .. }) = TestChain::start(false, false).await else {
        return;
    };
    let client = client_at(&anvil.url(), dir.path());
    client.submit_event(&ev(1)).await.unwrap();
    let mut errors = vec![];
    errors.push(client.submit_event(&SubmitEventParams { trust_level: 1, ..ev(2) }).await.unwrap_err().to_string());
    set_code(&anvil.url(), REGISTRY, "0x63fce354b260e01b60005260046000fd").await;
    errors.push(client.submit_event(&ev(3)).await.unwrap_err().to_string());
    let mut all = errors.join("\n");
    for e in walk(dir.path()) {
        all.push_str(&String::from_utf8_lossy(&std::fs::read(e).unwrap()));
    }
    assert!(!all.to_lowercase().contains(KEY0), "key material leaked");
    assert!(all.contains("peaqos") || all.contains("submit_event"));
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walk(&e));
        } else {
            out.push(e);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_for_fees_is_replaced_at_same_nonce() {
    let Some(TestChain { anvil: _anvil, url, dir, .. }) = TestChain::start(true, false).await else {
        return;
    };
    let client = client_at(&url, dir.path());
    let (id, _) = client.enqueue_event(&ev(0)).unwrap();
    wait_until(&client, |c| c.outbox().pending().iter().all(|i| i.state == IntentState::Broadcast), 20).await;
    let first = client.outbox().get(&id).unwrap().attempts[0].clone();
    // The pool drops it and the base fee jumps far above its max fee.
    rpc_value(&url, "anvil_dropAllTransactions", serde_json::json!([])).await;
    rpc_value(&url, "anvil_setNextBlockBaseFeePerGas", serde_json::json!(["0x174876e800"])).await; // 100 gwei
    rpc_value(&url, "evm_setAutomine", serde_json::json!([true])).await;
    let o = client.outbox().wait(&id, Duration::from_secs(20)).await.unwrap();
    let rec = client.outbox().get(&id).unwrap();
    assert!(rec.attempts.len() >= 2, "replacement attempt stored: {rec:?}");
    assert_eq!(o.tx_hash, rec.attempts.last().unwrap().tx_hash);
    assert_ne!(o.tx_hash, first.tx_hash);
    assert!(rec.attempts.last().unwrap().max_fee_per_gas >= 100_000_000_000);
    assert_eq!(rec.nonce, Some(0));
    assert_eq!(nonce_of(&url, SIGNER0).await, 1);
    assert_eq!(storage0(&url, REGISTRY).await, U256::from(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_intent_gives_its_rate_slot_back() {
    let Some(TestChain { anvil, dir, .. }) = TestChain::start(false, false).await else {
        return;
    };
    set_code(&anvil.url(), REGISTRY, "0x63fce354b260e01b60005260046000fd").await;
    let mut c = config(&anvil.url(), dir.path());
    c.limits.rate_limit_max_events = 1;
    c.limits.rate_limit_window_seconds = 3600;
    let client = ChainClient::start(c.resolve_with(|_| None).unwrap(), vec![signer(KEY0)]).unwrap();
    // fire-and-forget path: the failure is observed on the status stream, the slot released
    let (id, _) = client.enqueue_event(&ev(1)).unwrap();
    assert_eq!(client.outbox().wait(&id, Duration::from_secs(10)).await.unwrap_err().code(), "NOT_OWNER_OR_CONTROLLER");
    tokio::time::sleep(Duration::from_millis(100)).await;
    set_code(&anvil.url(), REGISTRY, COUNTER_CODE).await;
    client.submit_event(&ev(2)).await.unwrap();
    assert_eq!(client.submit_event(&ev(3)).await.unwrap_err().code(), "RATE_LIMITED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverted_on_chain_after_submission_is_failed_with_receipt() {
    let Some(TestChain { anvil: _anvil, url, dir, .. }) = TestChain::start(true, false).await else {
        return;
    };
    let client = client_at(&url, dir.path());
    let (id, _) = client.enqueue_event(&ev(0)).unwrap();
    wait_until(&client, |c| c.outbox().pending().iter().all(|i| i.state == IntentState::Broadcast), 20).await;
    // state changes between estimation and inclusion: the registry now reverts
    set_code(&url, REGISTRY, "0x63fce354b260e01b60005260046000fd").await;
    rpc_value(&url, "evm_mine", serde_json::json!([])).await;
    let e = client.outbox().wait(&id, Duration::from_secs(20)).await.unwrap_err();
    assert!(["NOT_OWNER_OR_CONTROLLER", "TX_REVERTED"].contains(&e.code()), "{e:?}");
    let rec = client.outbox().get(&id).unwrap();
    assert_eq!(rec.state, IntentState::Failed);
    assert!(!rec.receipt.as_ref().unwrap().success);
    assert_eq!(nonce_of(&url, SIGNER0).await, 1, "a reverted tx still consumed its nonce");
    let log = std::fs::read_to_string(dir.path().join("peaqos.log")).unwrap();
    assert!(log.lines().last().unwrap().contains(r#""status": "failed""#), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_client_on_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let _a = client_at(&url, dir.path());
    let e =
        ChainClient::start(config(&url, dir.path()).resolve_with(|_| None).unwrap(), vec![signer(KEY0)]).unwrap_err();
    assert_eq!(e.code(), "STORE_LOCKED");
    assert!(e.field().ends_with("outbox.lock"));
}

/// Batch stand-in that reverts `NotOwnerOrController()` for a batchAll of more than 5 subcalls
/// and otherwise adds len(to) to slot 0.
const BATCH_AT_MOST_5_CODE: &str = "0x600435600401358060051060165760005401600055005b63fce354b260e01b60005260046000fd";

fn batch(first: u64, n: u64) -> Vec<SubmitEventParams> {
    (first..first + n)
        .map(|i| {
            let mut e = ev(i);
            e.currency = Currency::Code(String::new());
            e
        })
        .collect()
}

/// Stop anvil (keeping its state), enqueue `batches` while the RPC is down, bring anvil back:
/// the worker finds them all queued at once. Returns the intent ids and the new anvil.
async fn queue_while_down(
    anvil: &mut Anvil,
    state: &Path,
    client: &ChainClient,
    batches: &[Vec<SubmitEventParams>],
) -> (Vec<String>, Anvil) {
    anvil.stop();
    let ids: Vec<String> = batches.iter().map(|b| client.enqueue_batch(b).unwrap().0).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(client.outbox().pending().iter().all(|i| i.state == IntentState::Queued));
    let back = Anvil::spawn(&anvil.bin, anvil.port, Some(state), false);
    (ids, back)
}

fn done_records(dir: &Path) -> Vec<peaqos_chain::outbox::Intent> {
    std::fs::read_dir(dir.join("chain/done"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_batches_share_one_transaction() {
    let Some(TestChain { mut anvil, url, dir, state, _state_dir }) = TestChain::start(false, true).await else {
        return;
    };
    let client = client_at(&url, dir.path());
    let (ids, _anvil2) =
        queue_while_down(&mut anvil, &state, &client, &[batch(0, 2), batch(10, 3), batch(20, 4)]).await;
    let mut hashes = vec![];
    for id in &ids {
        let o = client.outbox().wait(id, Duration::from_secs(30)).await.unwrap();
        hashes.push(o.tx_hash);
    }
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    assert_eq!(nonce_of(&url, SIGNER0).await, 1, "one transaction");
    assert_eq!(storage0(&url, BATCH_PRECOMPILE).await, U256::from(9));
    let carriers: Vec<_> = done_records(dir.path()).into_iter().filter(|i| !i.members.is_empty()).collect();
    assert_eq!(carriers.len(), 1);
    assert_eq!(carriers[0].members, ids);
    assert_eq!(carriers[0].journal["event_count"], 9);
    // members are final with the carrier's receipt, and say so in the journal
    for id in &ids {
        let m = client.outbox().get(id).unwrap();
        assert_eq!(m.state, IntentState::Included);
        assert_eq!(m.merged_into.as_deref(), Some(carriers[0].id.as_str()));
    }
    let log = std::fs::read_to_string(dir.path().join("peaqos.log")).unwrap();
    assert_eq!(log.matches(r#""status": "confirmed""#).count(), 4, "{log}");
    // with merging off, the same three batches are three transactions
    let dir2 = tempfile::tempdir().unwrap();
    drop(client);
    let mut c2 = config(&url, dir2.path());
    c2.merge_max_events = 0;
    let client2 = ChainClient::start(c2.resolve_with(|_| None).unwrap(), vec![signer(KEY0)]).unwrap();
    for b in [batch(30, 2), batch(40, 2), batch(50, 2)] {
        client2.batch_submit_events(&b).await.unwrap();
    }
    assert_eq!(nonce_of(&url, SIGNER0).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_merge_is_split_and_only_the_bad_batch_fails() {
    let Some(TestChain { mut anvil, url, dir, state, _state_dir }) = TestChain::start(false, true).await else {
        return;
    };
    set_code(&url, BATCH_PRECOMPILE, BATCH_AT_MOST_5_CODE).await;
    let client = client_at(&url, dir.path());
    // 2 + 3 + 7 subcalls: the merged 12 reverts; alone, the 7 reverts and the others pass
    let (ids, _anvil2) =
        queue_while_down(&mut anvil, &state, &client, &[batch(0, 2), batch(10, 3), batch(20, 7)]).await;
    let a = client.outbox().wait(&ids[0], Duration::from_secs(30)).await.unwrap();
    let b = client.outbox().wait(&ids[1], Duration::from_secs(30)).await.unwrap();
    assert_ne!(a.tx_hash, b.tx_hash);
    let c = client.outbox().wait(&ids[2], Duration::from_secs(30)).await.unwrap_err();
    assert_eq!(c.code(), "NOT_OWNER_OR_CONTROLLER");
    assert_eq!(storage0(&url, BATCH_PRECOMPILE).await, U256::from(5));
    assert_eq!(nonce_of(&url, SIGNER0).await, 2, "the refused merge consumed no nonce");
    let carrier = done_records(dir.path()).into_iter().find(|i| !i.members.is_empty()).expect("carrier record");
    assert_eq!(carrier.state, IntentState::Failed);
    assert_eq!(carrier.members, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_merge_abort_process() {
    let (Ok(url), Ok(dead), Ok(dir)) = (
        std::env::var("PEAQOS_TEST_CHILD_RPC"),
        std::env::var("PEAQOS_TEST_CHILD_DEAD_RPC"),
        std::env::var("PEAQOS_TEST_CHILD_DIR"),
    ) else {
        return;
    };
    // Queue two batches while no RPC answers, then restart on the live RPC: the first tick
    // merges them and the fault aborts right after the carrier is stored.
    {
        let client = client_at(&dead, Path::new(&dir));
        client.enqueue_batch(&batch(0, 2)).unwrap();
        client.enqueue_batch(&batch(10, 3)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // the old worker lets go of the store
    let _client = client_at(&url, Path::new(&dir));
    tokio::time::sleep(Duration::from_secs(30)).await;
    panic!("fault injection did not abort");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_after_merge_then_restart_sends_each_batch_once() {
    let Some(TestChain { anvil: _anvil, url, dir, .. }) = TestChain::start(false, false).await else {
        return;
    };
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_merge_abort_process", "--nocapture", "--test-threads=1"])
        .env("PEAQOS_CHAIN_FAULT", "abort_after_merge")
        .env("PEAQOS_TEST_CHILD_RPC", &url)
        .env(
            // Port 1: nothing listens there, and unlike a "free" port no anvil of a test
            // running in parallel can take it in the meantime.
            "PEAQOS_TEST_CHILD_DEAD_RPC",
            "http://127.0.0.1:1",
        )
        .env("PEAQOS_TEST_CHILD_DIR", dir.path())
        .status()
        .unwrap();
    assert!(!status.success(), "child must have aborted");
    let stored: Vec<peaqos_chain::outbox::Intent> = std::fs::read_dir(dir.path().join("chain/intents"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    assert_eq!(stored.len(), 3, "two members and their carrier");
    let carrier = stored.iter().find(|i| !i.members.is_empty()).unwrap().clone();
    assert!(
        stored.iter().filter(|i| i.members.is_empty()).all(|i| i.state == IntentState::Queued),
        "members were not marked before the abort"
    );
    assert_eq!(nonce_of(&url, SIGNER0).await, 0);
    let client = client_at(&url, dir.path());
    for id in &carrier.members {
        let o = client.outbox().wait(id, Duration::from_secs(20)).await.unwrap();
        assert_eq!(o.intent_id, *id);
    }
    assert_eq!(nonce_of(&url, SIGNER0).await, 1, "the carrier only");
    assert_eq!(storage0(&url, BATCH_PRECOMPILE).await, U256::from(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_chain_started_afresh_does_not_strand_the_nonce() {
    let Some(TestChain { mut anvil, url, dir, .. }) = TestChain::start(false, false).await else {
        return;
    };
    {
        let client = client_at(&url, dir.path());
        for i in 0..3 {
            client.submit_event(&ev(i)).await.unwrap();
        }
    }
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(format!("chain/nonces/{SIGNER0:#x}.json"))).unwrap())
            .unwrap();
    assert_eq!(stored["next_nonce"], 3);
    assert!(stored["genesis"].as_str().is_some_and(|g| g.len() == 66), "{stored}");
    // A new dev chain on the same URL: nonce 0 again, another genesis block.
    anvil.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await; // new genesis time; old worker gone
    let fresh = Anvil::spawn(&anvil.bin, anvil.port, None, false);
    install_counters(&url).await;
    let client = client_at(&url, dir.path());
    let r = client.submit_event(&ev(9)).await.unwrap();
    assert!(r.block_number > 0);
    assert_eq!(nonce_of(&url, SIGNER0).await, 1);
    drop(fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rebroadcast_waits_says_why_and_is_never_resigned() {
    let Some(TestChain { anvil: _anvil, url, dir, .. }) = TestChain::start(false, false).await else {
        return;
    };
    let rec = run_aborting_child("abort_after_sign", &url, dir.path());
    let stored_hash = rec.attempts[0].tx_hash;
    // The signer can no longer pay: the node refuses the stored transaction.
    rpc_value(&url, "anvil_setBalance", serde_json::json!([SIGNER0, "0x0"])).await;
    let client = client_at(&url, dir.path());
    let mut status = client.subscribe_status();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let s = tokio::time::timeout_at(deadline, status.recv()).await.expect("a REBROADCAST_REFUSED status").unwrap();
        if s.intent_id == rec.id && s.code == "REBROADCAST_REFUSED" {
            break s;
        }
    };
    assert_eq!(refused.state, IntentState::Signed);
    assert!(refused.message.to_ascii_lowercase().contains("insufficient funds"), "{refused:?}");
    let now = client.outbox().get(&rec.id).unwrap();
    assert_eq!(now.attempts.len(), 1, "never re-signed");
    assert_eq!(now.error.unwrap().code, "REBROADCAST_REFUSED");
    assert_eq!(nonce_of(&url, SIGNER0).await, 0);
    // Funds back: the same stored transaction goes through, and the refusal is cleared.
    rpc_value(&url, "anvil_setBalance", serde_json::json!([SIGNER0, "0x3635c9adc5dea00000"])).await;
    let o = client.outbox().wait(&rec.id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(o.tx_hash, stored_hash);
    let done = client.outbox().get(&rec.id).unwrap();
    assert!(done.error.is_none() && done.attempts.len() == 1);
    assert_eq!(storage0(&url, REGISTRY).await, U256::from(1));
}

/// A chain whose blocks hold little gas: a batch too big for a block fails by name before any
/// nonce is taken, a merge of batches that fit alone but not together is split, and a batch
/// whose headroom would not fit is sent with the block's limit when its exact need fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_larger_than_a_block_fails_by_name_and_a_merge_is_split() {
    let bin = peaqos_testkit::anvil();
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("anvil-state.json");
    let small = ["--gas-limit", "400000"];
    let mut anvil = Anvil::spawn_with(&bin, free_port(), Some(&state), false, &small);
    install_counters(&anvil.url()).await;
    let url = anvil.url();
    let dir = tempfile::tempdir().unwrap();
    let client = client_at(&url, dir.path());
    let err = client.batch_submit_events(&batch(0, 60)).await.unwrap_err();
    assert_eq!(err.code(), "GAS_LIMIT_EXCEEDS_BLOCK", "{err}");
    assert!(err.to_string().contains("400000"), "{err}");
    assert_eq!(nonce_of(&url, SIGNER0).await, 0, "nothing was sent");
    // three batches that fit one by one, queued during an outage: the merge does not fit
    anvil.stop();
    let ids: Vec<String> =
        [batch(100, 15), batch(200, 15), batch(300, 15)].iter().map(|b| client.enqueue_batch(b).unwrap().0).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _back = Anvil::spawn_with(&bin, anvil.port, Some(&state), false, &small);
    let mut hashes = vec![];
    for id in &ids {
        let o = client.outbox().wait(id, Duration::from_secs(30)).await;
        hashes.push(o.unwrap_or_else(|e| panic!("{id}: {e}")).tx_hash);
    }
    assert_eq!(storage0(&url, BATCH_PRECOMPILE).await, U256::from(45));
    let carrier = done_records(dir.path()).into_iter().find(|i| !i.members.is_empty()).expect("a merge was tried");
    assert_eq!(carrier.state, IntentState::Failed);
    assert_eq!(carrier.error.as_ref().unwrap().code, "GAS_LIMIT_EXCEEDS_BLOCK");
    assert_eq!(nonce_of(&url, SIGNER0).await, 3, "each batch on its own");
    // 30 events use about 280k gas: the usual headroom would ask for more than the block's
    // 400k, the simulation ran it within a block's gas, so the limit is capped at the block's
    // and the batch goes in: one simulation, no eth_estimateGas search on top (a client of its
    // own behind a proxy that counts the calls)
    let rec = RpcRecorder::start(&url).await;
    let dir = tempfile::tempdir().unwrap();
    let client = client_at(&rec.url, dir.path());
    let r = client.batch_submit_events(&batch(500, 30)).await.unwrap();
    let i = client.outbox().get(&r.intent_id).unwrap();
    assert_eq!(i.gas_limit, Some(400_000));
    assert_eq!(rec.count("eth_simulateV1"), 1);
    assert_eq!(rec.count("eth_estimateGas"), 0);
    assert!(i.receipt.unwrap().gas_used > 250_000);
    assert_eq!(storage0(&url, BATCH_PRECOMPILE).await, U256::from(75));
}

/// A signed intent whose nonce another transaction of the same key consumed before ours was
/// broadcast (a second wallet on the same key, a chain that answered with a stale count): ours
/// can never be included, so after a restart the call is signed again at a fresh nonce and
/// included exactly once; the superseded hash is kept in the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_taken_by_another_transaction_is_signed_again_once() {
    let Some(TestChain { anvil: _anvil, url, dir, .. }) = TestChain::start(false, false).await else {
        return;
    };
    let rec = run_aborting_child("abort_after_sign", &url, dir.path());
    assert_eq!((rec.state, rec.nonce), (IntentState::Signed, Some(0)));
    let superseded = rec.attempts[0].tx_hash;
    // Another transaction of the same key takes nonce 0.
    rpc_value(&url, "anvil_impersonateAccount", serde_json::json!([SIGNER0])).await;
    rpc_value(
        &url,
        "eth_sendTransaction",
        serde_json::json!([{"from": SIGNER0, "to": "0x000000000000000000000000000000000000dEaD", "value": "0x1"}]),
    )
    .await;
    assert_eq!(nonce_of(&url, SIGNER0).await, 1);
    let client = client_at(&url, dir.path());
    let o = client.outbox().wait(&rec.id, Duration::from_secs(30)).await.unwrap();
    assert_ne!(o.tx_hash, superseded);
    assert_eq!(storage0(&url, REGISTRY).await, U256::from(1), "the call took effect exactly once");
    assert_eq!(nonce_of(&url, SIGNER0).await, 2);
    let done = client.outbox().get(&rec.id).unwrap();
    assert_eq!(done.state, IntentState::Included);
    assert_eq!(done.nonce, Some(1));
    assert_eq!(done.journal["superseded"]["tx_hashes"][0], serde_json::json!(format!("{superseded:#x}")));
}
