//! The buyer against the local orchestrator (`test/market/orchestrator.py --rpc-url`, which checks
//! every payment proof on the chain) and the local test chain (`test/chain/harness.py serve --token
//! <peaq USDT>`: anvil and a test ERC-20 at peaq's USDT address): an order is searched, paid once
//! with a real ERC-20 transfer, proven and executed; the limits refuse before anything is signed;
//! cancel is honoured before payment only; confirm and dispute move the payment; escrow rails lock
//! and release; an orchestrator that answers 503 makes the order wait, not fail.
mod common;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use common::{key, profile, Server};
use peaqos_chain::config::{ChainConfig, Generation, Network};
use peaqos_chain::ChainClient;
use peaqos_market::buyer::{
    Buyer, BuyerConfig, BuyerParts, DelegationPolicy, OrderDesk, OrderGoal, OrderResult, OrderState, PairingConfig,
};
use peaqos_market::onboard::onboard;
use peaqos_market::state::MarketStore;
use peaqos_testkit::ChainHarness;
use serde_json::{json, Value};

const USDT: &str = "0xf4d9235269a96aadafc9adae454a0618ebe37949";

struct Fixture {
    _h: ChainHarness,
    srv: Server,
    chain: ChainClient,
    dir: tempfile::TempDir,
    payee: String,
    escrow: String,
}

fn chain_client(h: &ChainHarness, dir: &std::path::Path) -> ChainClient {
    let mut c = ChainConfig::new(Network::Peaq, Generation::Economics2, dir);
    c.rpc_urls = vec![h.url()];
    c.poll_interval_ms = 50;
    c.receipt_timeout_ms = 20_000;
    let signer: PrivateKeySigner = h.key(3).parse().unwrap();
    ChainClient::start(c.resolve_with(|_| None).unwrap(), vec![signer]).unwrap()
}

async fn fixture() -> Fixture {
    let h = ChainHarness::spawn_with(&["--token", USDT]);
    let srv = Server::start(&["--rpc-url", &h.url()]);
    let dir = tempfile::tempdir().unwrap();
    let store = MarketStore::open(dir.path()).unwrap();
    onboard(&srv.client(), &store, &key(), "42", &profile(), None).await.unwrap();
    let chain = chain_client(&h, &dir.path().join("chain"));
    let (payee, escrow) = (h.address(5), h.address(6));
    Fixture { _h: h, srv, chain, dir, payee, escrow }
}

fn policy(per_tx: Option<&str>, daily: Option<&str>) -> DelegationPolicy {
    DelegationPolicy {
        per_transaction_limit: per_tx.map(Into::into),
        daily_spend_limit: daily.map(Into::into),
        currency: "USDT".into(),
        ..Default::default()
    }
}

fn config(policy: DelegationPolicy) -> BuyerConfig {
    BuyerConfig {
        pairing: PairingConfig {
            agent_provider: "peaqos-node".into(),
            agent_role: "buyer".into(),
            description: None,
            policy,
            renew_before: Duration::from_secs(60),
        },
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_millis(500),
        max_open_orders: 100,
        retention: Duration::from_secs(86_400),
        payment_wait: Duration::from_secs(5),
        concurrency: 8,
    }
}

impl Fixture {
    fn buyer(&self, policy: DelegationPolicy) -> Buyer {
        self.buyer_with(config(policy))
    }

    fn buyer_with(&self, cfg: BuyerConfig) -> Buyer {
        let parts = BuyerParts {
            client: self.srv.client(),
            market: MarketStore::open(self.dir.path()).unwrap(),
            chain: self.chain.clone(),
            agent: Arc::new(key()),
        };
        Buyer::start(parts, self.dir.path(), cfg, tokio::runtime::Handle::current()).unwrap()
    }

    fn seed(&self, id: &str, extra: Value) {
        let mut body = json!({"id": id, "serviceType": "inference", "operation": "classify", "price": 1.5,
            "currency": "USDT", "token": "USDT", "tokenAddress": USDT, "payeeAddress": self.payee,
            "chain": "peaq", "result": {"label": "cat", "service": id}});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = self.srv.control("POST", "market/services", body);
        assert!(r.get("item").is_some(), "seeding {id}: {r}");
    }

    async fn balance(&self, who: &str) -> U256 {
        self.chain.erc20_balance(USDT.parse().unwrap(), who.parse::<Address>().unwrap()).await.unwrap()
    }

    /// Requests of any endpoint whose path contains `part` (the server's general request log).
    fn count(&self, method: &str, part: &str) -> usize {
        let st = self.srv.state();
        st["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["method"] == method && r["path"].as_str().unwrap_or("").contains(part))
            .count()
    }

    /// Requests of this method and path the server logged.
    fn logged(&self, method: &str, path_part: &str) -> Vec<Value> {
        let v = self.srv.control("GET", "market/requests", Value::Null);
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["method"] == method && r["path"].as_str().unwrap_or("").contains(path_part))
            .cloned()
            .collect()
    }
}

/// For the inputs of `test/fixtures/sdk/market_order_vectors.json` (made by peaq-os-sdk 0.12.1),
/// the node's proof body and ERC-20 calldata are the SDK's.
#[test]
fn proof_body_and_transfer_calldata_are_the_sdks() {
    use peaqos_market::buyer::pay;
    let path = peaqos_testkit::fixture("sdk/market_order_vectors.json");
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let i = &v["inputs"];
    let s = |k: &str| i[k].as_str().unwrap().to_string();
    let payment: peaqos_market::wire::MarketPayment = serde_json::from_value(json!({
        "id": "pay", "orderId": s("order_id"), "status": "intent_created", "amount": 1.5, "currency": s("token"),
        "rail": {"type": "wallet", "chain": s("chain"), "token": s("token"), "tokenAddress": s("token_address"),
                 "payeeAddress": s("payee_address"), "metadata": {"tokenDecimals": i["token_decimals"]}}}))
    .unwrap();
    let mut rec = peaqos_market::buyer::OrderRecord::new("ord-0000000000000001".into(), OrderGoal::default(), "t");
    rec.quote_amount = Some(s("amount"));
    let plan = pay::plan(&payment, &rec, 3338, &s("payer_address"), "2026-12-06").unwrap();
    let body = serde_json::to_string(&pay::proof(&plan, &s("transaction_hash"))).unwrap();
    let sdk = &v["payment_proof_request"]["body"];
    assert_eq!(&serde_json::from_str::<Value>(&body).unwrap(), sdk);
    // same keys in the same order as the SDK's body text
    let keys = |t: &str| {
        t.split('"')
            .skip(1)
            .step_by(2)
            .filter(|k| k.chars().next().is_some_and(char::is_alphabetic))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let order: Vec<String> = keys(&body).into_iter().filter(|k| sdk.get(k).is_some()).collect();
    let sdk_order: Vec<String> = keys(v["payment_proof_request"]["body_text"].as_str().unwrap())
        .into_iter()
        .filter(|k| sdk.get(k).is_some())
        .collect();
    assert_eq!(order, sdk_order);
    let t = pay::transfer(&plan).unwrap();
    let data = peaqos_chain::client::erc20_transfer_calldata(t.to, t.amount);
    let hex: String = data.iter().map(|x| format!("{x:02x}")).collect();
    assert_eq!(format!("0x{hex}"), v["erc20_transfer"]["data"].as_str().unwrap());
    assert_eq!(t.token.unwrap(), s("token_address").parse::<Address>().unwrap());
    assert_eq!(v["erc20_transfer"]["value"], 0);
}

fn goal(service_id: &str) -> OrderGoal {
    OrderGoal {
        service_type: "inference".into(),
        service_id: service_id.into(),
        operation: "classify".into(),
        input_json: r#"{"image":"frame-1"}"#.into(),
        ..Default::default()
    }
}

/// The order's result, once it ended; every feedback step seen on the way.
async fn finish(b: &Buyer, key: &str) -> (OrderResult, Vec<String>) {
    let mut rx = b.watch(key).expect("order known");
    let mut steps = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let p = rx.borrow_and_update().clone();
            steps = p.trail.iter().map(|(s, _)| s.as_str().to_string()).collect();
            if let Some(r) = p.result {
                return r;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("order {key} did not end; record: {:?}", b.record(key)));
    (end, steps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_searched_paid_once_proven_and_executed() {
    let f = fixture().await;
    f.seed("svc_cls", json!({}));
    let b = f.buyer(policy(Some("2"), Some("10")));
    let (payer, before) = (f.chain.signer_address().to_checksum(None), f.balance(&f.payee).await);
    let key = b.place(goal("")).unwrap();
    let (r, steps) = finish(&b, &key).await;
    assert!(r.success, "{r:?}");
    assert_eq!((r.state.as_str(), r.amount.as_str(), r.currency.as_str()), ("executed", "1.5", "USDT"));
    let outcome: Value = serde_json::from_str(&r.outcome_json).unwrap();
    assert_eq!(outcome["status"], "completed");
    assert_eq!(outcome["result"]["label"], "cat");
    assert!(serde_json::from_str::<Value>(&r.run_json).unwrap().is_object());
    for s in ["searched", "quoted", "ordered", "payment_intent", "paid", "proof_accepted", "executing"] {
        assert!(steps.iter().any(|x| x == s), "step {s} missing from {steps:?}");
    }
    assert_eq!(f.balance(&f.payee).await - before, U256::from(1_500_000u64), "paid exactly the quote, once");
    // the proof is the SDK's EVM transfer shape, checked by the server on chain
    let proofs = f.logged("POST", "/payment-proof");
    assert_eq!(proofs.len(), 1);
    let body = &proofs[0]["json"];
    assert_eq!(body["verificationMode"], "rpc");
    assert_eq!(body["transactionHash"], r.payment_reference.as_str());
    assert_eq!(body["payerAddress"], payer.as_str());
    assert_eq!((body["amount"].as_str(), body["rawAmount"].as_str()), (Some("1.5"), Some("1500000")));

    // the same client key answers the same order; confirm moves the payment on
    let again = b.place(OrderGoal { client_key: "k1".into(), ..goal("") }).unwrap();
    assert_eq!(b.place(OrderGoal { client_key: "k1".into(), ..goal("") }).unwrap(), again);
    finish(&b, &again).await;
    let c = b.confirm(&key).await.unwrap();
    assert_eq!(c.state, OrderState::Confirmed);
    assert_eq!(c.payment_status.as_deref(), Some("release_pending"));
    assert_eq!(b.confirm(&key).await.unwrap().state, OrderState::Confirmed, "idempotent");
    let d = b.dispute(&again, "wrong label", r#"{"expected":"dog"}"#).await.unwrap();
    assert_eq!((d.state, d.payment_status.as_deref()), (OrderState::Disputed, Some("frozen")));
    // the agent token never shows in a record, a log line or Debug
    let rec = serde_json::to_string(&b.record(&key)).unwrap();
    let token = std::fs::read_to_string(f.dir.path().join("market/pairing_token")).unwrap();
    assert!(!rec.contains(&token) && !format!("{b:?}").contains(&token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_before_anything_is_signed_and_cancel_only_before_payment() {
    let f = fixture().await;
    f.seed("svc_cls", json!({}));
    f.seed("svc_big", json!({"price": 3, "serviceType": "mapping", "operation": "map"}));
    let b = f.buyer(policy(Some("2"), Some("2")));
    let before = f.balance(&f.payee).await;
    // over the per-transaction limit
    let big =
        b.place(OrderGoal { service_type: "mapping".into(), operation: "map".into(), ..Default::default() }).unwrap();
    let (r, _) = finish(&b, &big).await;
    assert_eq!(
        (r.success, r.error_code.as_str(), r.state.as_str()),
        (false, "AGENT_SPEND_LIMIT_EXCEEDED", "failed"),
        "{r:?}"
    );
    // one order fits the daily limit of 2; the second (1.5 + 1.5 > 2) is refused
    let first = b.place(goal("svc_cls")).unwrap();
    assert!(finish(&b, &first).await.0.success);
    let second = b.place(goal("svc_cls")).unwrap();
    let (r, _) = finish(&b, &second).await;
    assert_eq!(r.error_code, "AGENT_DAILY_LIMIT_EXCEEDED", "{r:?}");
    assert!(r.payment_reference.is_empty());
    assert_eq!(f.balance(&f.payee).await - before, U256::from(1_500_000u64), "only the first order paid");
    assert_eq!(f.logged("POST", "/payment-intent").len(), 1, "refused before even asking for an intent");
    // over the caller's budget
    let b2 = b.place(OrderGoal { budget: "1".into(), ..goal("svc_cls") }).unwrap();
    assert_eq!(finish(&b, &b2).await.0.error_code, "BUDGET_EXCEEDED");
    // a bad goal names its field
    let e = b.place(OrderGoal { input_json: "[1]".into(), ..goal("") }).unwrap_err();
    assert_eq!(e.field(), "input_json");
    // cancel before payment: honoured (the orchestrator is down, so the order waits at the search)
    f.srv.control("POST", "market/down", json!({"down": true}));
    let c = b.place(goal("svc_cls")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.cancel(&c).unwrap();
    let (r, _) = finish(&b, &c).await;
    assert_eq!((r.state.as_str(), r.error_code.as_str()), ("cancelled", "CANCELLED"));
    f.srv.control("POST", "market/down", json!({"down": false}));
    b.cancel(&first).unwrap(); // an ended order: a no-op
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_escrow_and_a_flaky_orchestrator() {
    let f = fixture().await;
    f.seed("svc_handoff", json!({"executionMode": "handoff", "serviceType": "charging", "operation": "reserve-slot"}));
    f.seed(
        "svc_escrow",
        json!({"railType": "onchain-escrow", "escrowAddress": f.escrow, "serviceType": "maps", "operation": "tile"}),
    );
    let b = f.buyer(policy(None, None));
    let h = b
        .place(OrderGoal { service_type: "charging".into(), operation: "reserve-slot".into(), ..Default::default() })
        .unwrap();
    let (r, _) = finish(&b, &h).await;
    assert_eq!((r.success, r.state.as_str()), (true, "handoff"), "{r:?}");
    let handoff: Value = serde_json::from_str(&r.handoff_json).unwrap();
    assert!(handoff["url"].as_str().unwrap().starts_with("https://"));
    // escrow: the transfer goes to the escrow contract, then escrow-lock; confirm releases
    let before = f.balance(&f.escrow).await;
    let e = b.place(OrderGoal { service_type: "maps".into(), operation: "tile".into(), ..Default::default() }).unwrap();
    let (r, _) = finish(&b, &e).await;
    assert!(r.success, "{r:?}");
    assert_eq!(f.balance(&f.escrow).await - before, U256::from(1_500_000u64));
    assert_eq!(f.logged("POST", "/payment/escrow-lock").len(), 1);
    let c = b.confirm(&e).await.unwrap();
    assert_eq!(c.payment_status.as_deref(), Some("released"));
    // escrow and a dispute: frozen, then refunded out of the escrow
    let e2 =
        b.place(OrderGoal { service_type: "maps".into(), operation: "tile".into(), ..Default::default() }).unwrap();
    assert!(finish(&b, &e2).await.0.success);
    let d = b.dispute(&e2, "tile missing", "").await.unwrap();
    assert_eq!((d.state, d.payment_status.as_deref()), (OrderState::Disputed, Some("refunded")));
    assert_eq!(f.logged("POST", "/payment/refund").len(), 1);
    // the orchestrator runs the next executes but answers 503 (the answer is lost): the order waits,
    // re-sends, and gets the saved execution: one run
    f.srv.control(
        "POST",
        "market/faults",
        json!({"path": "/api/v1/market/orders/*/execute", "status": 503, "times": 3, "after": true}),
    );
    let w = b
        .place(OrderGoal { service_type: "charging".into(), operation: "reserve-slot".into(), ..Default::default() })
        .unwrap();
    let (r, _) = finish(&b, &w).await;
    assert!(r.success, "{r:?}");
    let runs = f.srv.control("GET", "market/runs", Value::Null);
    assert_eq!(runs["runs"][&r.order_id], 1, "{runs}");
    // the proof is refused with 503 for a while: the order waits paid; a cancel now is refused
    f.srv.control(
        "POST",
        "market/faults",
        json!({"path": "/api/v1/market/orders/*/payment/escrow-lock", "status": 503, "times": 5}),
    );
    let p = b.place(OrderGoal { service_type: "maps".into(), operation: "tile".into(), ..Default::default() }).unwrap();
    let paid = tokio::time::timeout(Duration::from_secs(30), async {
        while b.record(&p).unwrap().state != OrderState::Paid {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(paid.is_ok(), "never paid: {:?}", b.record(&p));
    let e = b.cancel(&p).unwrap_err();
    assert_eq!((e.error_code(), e.field()), ("PAYMENT_SENT", "order_key"));
    let (r, _) = finish(&b, &p).await;
    assert!(r.success, "{r:?}");
    assert_eq!(f.logged("POST", "/payment/escrow-lock").len(), 3 + 5, "re-submitted until accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_is_renewed_when_it_ends_before_it_ends_and_after_a_policy_change() {
    let f = fixture().await;
    f.seed("svc_free", json!({"price": 0, "serviceType": "time", "operation": "now"}));
    let free = || OrderGoal { service_type: "time".into(), operation: "now".into(), ..Default::default() };
    let b = f.buyer(policy(None, None));
    let (r, _) = finish(&b, &b.place(free()).unwrap()).await;
    assert!(r.success && r.payment_reference.is_empty(), "a free service is not paid: {r:?}");
    assert_eq!((f.count("POST", "/agent-pairings/challenges"), f.count("POST", "/sessions")), (1, 0));
    // the server's clock passes the session's end: the token is refused, a new session is opened
    f.srv.advance_clock(3601.0);
    let (r, _) = finish(&b, &b.place(free()).unwrap()).await;
    assert!(r.success, "{r:?}");
    assert_eq!(f.count("POST", "/sessions"), 1);
    // a session with less than `renew_before` left is renewed before it is used
    drop(b);
    let mut cfg = config(policy(None, None));
    cfg.pairing.renew_before = Duration::from_secs(4 * 3600); // longer than is left (the server clock runs 1 h ahead)
    let b = f.buyer_with(cfg);
    let (r, _) = finish(&b, &b.place(free()).unwrap()).await;
    assert!(r.success, "{r:?}");
    assert!(f.count("POST", "/sessions") >= 2, "renewed ahead of its end");
    // another delegation policy (a restart with new parameters): PATCH, then a new session
    drop(b);
    let sessions = f.count("POST", "/sessions");
    let b = f.buyer(policy(Some("5"), None));
    let (r, _) = finish(&b, &b.place(free()).unwrap()).await;
    assert!(r.success, "{r:?}");
    assert_eq!(f.count("PATCH", "/agent-pairings/"), 1);
    assert_eq!(f.count("POST", "/sessions"), sessions + 1);
    assert_eq!(
        f.count("POST", "/agent-pairings/challenges"),
        1 + f.count("POST", "/sessions"),
        "one pairing, then only sessions"
    );
}
