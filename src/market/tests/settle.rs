//! The seller's own check of a payment and the sale's revenue event, against the local test chain
//! (`test/chain/harness.py serve --token <peaq USDT>`: anvil, the peaqOS stand-ins, a test
//! ERC-20 at peaq's USDT address): a payment counts only when mined, final, successful, to our
//! `pay_to`, in our token and at least the quote; a sale's revenue event is enqueued once per
//! purchase, also across a restart and after a crash between its two durable writes.
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{address, keccak256, Address, U256};
use alloy::signers::local::PrivateKeySigner;
use peaqos_chain::bindings::{ServiceEndpoint, VerificationMethod};
use peaqos_chain::client::ActivateParams;
use peaqos_chain::config::{ChainConfig, Generation, Network};
use peaqos_chain::ChainClient;
use peaqos_market::settle::{receipt, PaymentCheck, SaleChain, SaleRecord, TransferTerms};
use peaqos_testkit::ChainHarness;
use serde_json::{json, Value};

const USDT: &str = "0xf4d9235269a96aadafc9adae454a0618ebe37949";

async fn rpc(url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let v: Value = reqwest::Client::new().post(url).json(&body).send().await.unwrap().json().await.unwrap();
    assert!(v.get("error").is_none(), "{method}: {v}");
    v["result"].clone()
}

/// `eth_sendTransaction` from an anvil dev account (unlocked); the hash, once mined.
async fn send(url: &str, from: &str, to: &str, data: &str, value: u128, gas: Option<u64>) -> String {
    let mut tx = json!({"from": from, "to": to, "data": data, "value": format!("{value:#x}")});
    if let Some(g) = gas {
        tx["gas"] = json!(format!("{g:#x}"));
    }
    let h = rpc(url, "eth_sendTransaction", json!([tx])).await.as_str().unwrap().to_string();
    for _ in 0..200 {
        if !rpc(url, "eth_getTransactionReceipt", json!([h])).await.is_null() {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{h} not mined");
}

fn transfer_call(to: &str, amount: u128) -> String {
    format!("0xa9059cbb{:0>64}{:064x}", to.trim_start_matches("0x").to_ascii_lowercase(), amount)
}

fn client(h: &ChainHarness, dir: &std::path::Path) -> ChainClient {
    let mut c = ChainConfig::new(Network::Peaq, Generation::Economics2, dir);
    c.rpc_urls = vec![h.url()];
    c.poll_interval_ms = 50;
    c.receipt_timeout_ms = 20_000;
    let signer: PrivateKeySigner = h.key(0).parse().unwrap();
    ChainClient::start(c.resolve_with(|_| None).unwrap(), vec![signer]).unwrap()
}

fn sale_chain(client: ChainClient, confirmations: u64, machine_id: Option<String>) -> SaleChain {
    SaleChain { client, confirmations, machine_id: Arc::new(move || machine_id.clone()) }
}

fn usdt_rail(pay_to: &str) -> TransferTerms {
    TransferTerms {
        chain: "peaq".into(),
        token: "USDT".into(),
        pay_to: pay_to.into(),
        token_address: Some(USDT.into()),
        token_decimals: 6,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_counts_only_when_final_to_us_in_our_token_and_enough() {
    let h = ChainHarness::spawn_with(&["--token", USDT]);
    let url = h.url();
    let dir = tempfile::tempdir().unwrap();
    let chain = sale_chain(client(&h, dir.path()), 3, None);
    let (buyer, payee, other) = (h.address(3), h.address(5), h.address(6));
    assert!(chain.reads("peaq") && chain.reads("eip155:3338") && !chain.reads("base") && !chain.reads("agung"));

    let tx = send(&url, &buyer, USDT, &transfer_call(&payee, 500_000), 0, None).await;
    let rail = usdt_rail(&payee);
    let pending = chain.check_payment(&rail, &tx, 500_000).await.unwrap();
    assert!(matches!(&pending, PaymentCheck::Pending(m) if m.contains("1 of 3 confirmations")), "{pending:?}");
    rpc(&url, "anvil_mine", json!(["0x2"])).await;
    match chain.check_payment(&rail, &tx, 500_000).await.unwrap() {
        PaymentCheck::Confirmed { payer, .. } => assert_eq!(payer, buyer.to_ascii_lowercase()),
        c => panic!("a final transfer of the quote to us: {c:?}"),
    }
    let mismatch = |c: PaymentCheck, want: &str| match c {
        PaymentCheck::Mismatch(m) => assert!(m.contains(want), "{m:?} lacks {want:?}"),
        c => panic!("expected a mismatch ({want}), got {c:?}"),
    };
    mismatch(chain.check_payment(&rail, &tx, 500_001).await.unwrap(), "500001 are due");
    mismatch(chain.check_payment(&usdt_rail(&other), &tx, 1).await.unwrap(), "no Transfer");
    let peaq_token =
        TransferTerms { token_address: Some("0x0000000000000000000000000000000000000809".into()), ..usdt_rail(&payee) };
    mismatch(chain.check_payment(&peaq_token, &tx, 1).await.unwrap(), "no Transfer");
    mismatch(chain.check_payment(&rail, "0x12", 1).await.unwrap(), "not a transaction hash");
    // a transfer above the balance, forced into a block: it failed, so it pays nothing
    let failed = send(&url, &buyer, USDT, &transfer_call(&payee, u128::MAX), 0, Some(200_000)).await;
    rpc(&url, "anvil_mine", json!(["0x3"])).await;
    mismatch(chain.check_payment(&rail, &failed, 1).await.unwrap(), "failed");
    // never mined: not yet (the purchase waits, nothing is granted)
    let unknown = format!("0x{}", "ab".repeat(32));
    assert!(matches!(chain.check_payment(&rail, &unknown, 1).await.unwrap(), PaymentCheck::Pending(_)));
    // a native transfer rail: the transaction's value
    let native = TransferTerms { token: "PEAQ".into(), token_address: None, token_decimals: 18, ..usdt_rail(&payee) };
    let paid = send(&url, &buyer, &payee, "0x", 10u128.pow(18), None).await;
    rpc(&url, "anvil_mine", json!(["0x3"])).await;
    assert!(matches!(
        chain.check_payment(&native, &paid, 10u128.pow(18)).await.unwrap(),
        PaymentCheck::Confirmed { .. }
    ));
    mismatch(chain.check_payment(&native, &paid, 10u128.pow(18) + 1).await.unwrap(), "are due");
    mismatch(chain.check_payment(&native, &tx, 1).await.unwrap(), "not a transfer to");
}

async fn activate(c: &ChainClient, controller: Address) -> U256 {
    let p = ActivateParams {
        controller,
        verification_methods: vec![VerificationMethod {
            id: "#key-1".into(),
            methodType: "EcdsaSecp256k1RecoveryMethod2020".into(),
            controller: c.signer_address(),
            publicKeyMultibase: "zTest".into(),
        }],
        authentication: vec![U256::ZERO],
        service_endpoints: vec![ServiceEndpoint {
            id: "#data".into(),
            serviceType: "DataAPI".into(),
            serviceEndpoint: "https://api.example.com/robot-001".into(),
        }],
        machine_type: "robot".into(),
        credential_subject: br#"{"serial":"SALE-1"}"#.to_vec(),
        manufacturer: address!("3333333333333333333333333333333333333333"),
        tier: 0,
        expected_machine_id: None,
        max_net_peaq_amount: None,
    };
    c.activate(&p).await.unwrap().machine_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_revenue_event_per_sale_across_restarts_and_crashes() {
    let h = ChainHarness::spawn();
    let dir = tempfile::tempdir().unwrap();
    let c = client(&h, dir.path());
    let mid = activate(&c, h.address(1).parse().unwrap()).await;
    let chain = sale_chain(c.clone(), 1, Some(mid.to_string()));
    let tx = format!("0x{}", "cd".repeat(32));
    let body = receipt(
        "pur_1",
        "lst_1",
        "/cam",
        "mach_1",
        "buyer-1",
        &["c1".into()],
        "0.5",
        "USDT",
        Some("transfer"),
        Some(&tx),
    );
    let sale = SaleRecord {
        purchase_id: "pur_1",
        receipt: &body,
        value_minor: 50,
        currency: "USDT",
        verified_payment: Some(&tx),
    };
    let first = chain.record_sale(&sale).await.unwrap();
    assert_eq!(chain.record_sale(&sale).await.unwrap(), first, "a repeat finds the first");
    let outcome = c.outbox().wait(&first, Duration::from_secs(30)).await.unwrap();
    drop((chain, c));

    // a restarted node (new client on the same data dir) still finds it; the old worker lets go
    // of the outbox lock within its poll
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let c2 = client(&h, dir.path());
    let chain2 = sale_chain(c2.clone(), 1, Some(mid.to_string()));
    assert_eq!(chain2.record_sale(&sale).await.unwrap(), first);
    assert_eq!(c2.event_count(mid).await.unwrap(), U256::from(1), "one event on chain");
    assert!(outcome.receipt.block_number > 0);

    // a crash after the key record was written but before the intent was: nothing was sent, so
    // the key is free again and the next call stores (and sends) the event
    let key = "market-sale:pur_2";
    let key_file = dir.path().join("chain/keys").join(format!("{}.json", hex::encode(keccak256(key.as_bytes()))));
    std::fs::write(&key_file, json!({"key": key, "id": "000000009999-deadbeef", "committed": false}).to_string())
        .unwrap();
    let body2 = receipt("pur_2", "lst_1", "/cam", "mach_1", "buyer-1", &["c2".into()], "0.5", "USDT", None, None);
    let sale2 =
        SaleRecord { purchase_id: "pur_2", receipt: &body2, value_minor: 50, currency: "USDT", verified_payment: None };
    let second = chain2.record_sale(&sale2).await.unwrap();
    assert_ne!(second, "000000009999-deadbeef");
    c2.outbox().wait(&second, Duration::from_secs(30)).await.unwrap();
    assert_eq!(chain2.record_sale(&sale2).await.unwrap(), second);
    assert_eq!(c2.event_count(mid).await.unwrap(), U256::from(2), "one event per sale");
}
