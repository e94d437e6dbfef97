//! MCR client against a tiny local HTTP/1.1 server (127.0.0.1, stopped with the test) that speaks
//! the documented shapes and error envelopes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use peaqos_chain::mcr::McrClient;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Routes = Arc<HashMap<String, (u16, String, u64)>>;

async fn serve(routes: Routes) -> (String, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let h = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let routes = routes.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let (status, body, delay) =
                    routes.get(&path).cloned().unwrap_or((404, r#"{"detail":"no such DID"}"#.into(), 0));
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let resp = format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (base, h)
}

fn mcr_body(did: &str) -> String {
    json!({"did": did, "machine_id": 42, "mcr_score": 87, "mcr": "AA", "bond_status": "bonded", "negative_flag": false,
           "event_count": 5, "revenue_event_count": 3, "activity_event_count": 2, "revenue_trend": "up",
           "total_revenue": 12345, "average_revenue_per_event": 4115, "last_updated": 1735000000, "mcr_degraded": false}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shapes_errors_and_correlation() {
    let big = "57896044618658097711785492504343953926634992332820282019728792003956564819975";
    let op = "did:peaq:0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
    let mut r: HashMap<String, (u16, String, u64)> = HashMap::new();
    r.insert("/mcr/did:peaq:42".into(), (200, mcr_body("did:peaq:42"), 0));
    r.insert(
        format!("/mcr/did:peaq:{big}"),
        (200, mcr_body("did:peaq:57896044618658097711785492504343953926634992332820282019728792003956564819976"), 0),
    );
    r.insert("/mcr/did:peaq:43".into(), (200, "not json".into(), 0));
    r.insert(
        "/mcr/did:peaq:44".into(),
        (
            409,
            r#"{"detail":{"code":"MACHINE_HOMED_ELSEWHERE","message":"homed on solana","home_protocol_chain_id":5}}"#
                .into(),
            0,
        ),
    );
    r.insert("/mcr/did:peaq:45".into(), (409, r#"{"detail":{"code":"OTHER"}}"#.into(), 0));
    r.insert("/mcr/did:peaq:46".into(), (503, "{}".into(), 0));
    r.insert("/mcr/did:peaq:47".into(), (502, "{}".into(), 0));
    r.insert("/mcr/did:peaq:48".into(), (400, "{}".into(), 0));
    r.insert("/mcr/did:peaq:49".into(), (403, "{}".into(), 0));
    r.insert("/mcr/did:peaq:50".into(), (418, "{}".into(), 0));
    r.insert("/mcr/did:peaq:51".into(), (200, mcr_body("did:peaq:51"), 3000));
    r.insert("/mcr/did:peaq:52".into(), (200, json!({"did": "did:peaq:52"}).to_string(), 0));
    r.insert("/machine/did:peaq:42".into(), (200, json!({"schema_version": "1.0", "name": "robot", "peaqos": {"machine_id": 42, "did": "did:peaq:42", "operator": op, "mcr": "AA", "mcr_score": 87, "bond_status": "bonded", "negative_flag": false, "event_count": 5, "data_visibility": "public", "documentation_url": "https://d"}}).to_string(), 0));
    r.insert(format!("/operator/{op}/machines"), (200, json!({"operator_did": op.to_lowercase(), "machines": [{"did": "did:peaq:42", "machine_id": 42, "mcr_score": 87, "mcr": "AA", "negative_flag": false}], "pagination": {"offset": 0, "limit": 20, "total": 1}}).to_string(), 0));
    let (base, server) = serve(Arc::new(r)).await;
    let c = McrClient::new(&base, Duration::from_millis(1000)).unwrap();

    let v = c.query_mcr("did:peaq:42").await.unwrap();
    assert_eq!(v["mcr"], "AA");
    let code = |e: peaqos_chain::ChainError| e.code().to_string();
    assert_eq!(
        code(c.query_mcr(&format!("did:peaq:{big}")).await.unwrap_err()),
        "BAD_RESPONSE",
        "off-by-one full-width id must not correlate"
    );
    assert_eq!(code(c.query_mcr("did:peaq:43").await.unwrap_err()), "BAD_RESPONSE");
    let e = c.query_mcr("did:peaq:44").await.unwrap_err();
    assert_eq!(e.code(), "MACHINE_HOMED_ELSEWHERE");
    assert!(e.to_string().contains("homed on solana"));
    assert_eq!(code(c.query_mcr("did:peaq:45").await.unwrap_err()), "CONFLICT");
    assert_eq!(code(c.query_mcr("did:peaq:46").await.unwrap_err()), "SERVICE_UNAVAILABLE");
    assert_eq!(code(c.query_mcr("did:peaq:47").await.unwrap_err()), "SERVER_ERROR");
    assert_eq!(code(c.query_mcr("did:peaq:48").await.unwrap_err()), "INVALID_REQUEST");
    assert_eq!(code(c.query_mcr("did:peaq:49").await.unwrap_err()), "UNAUTHORIZED");
    assert_eq!(code(c.query_mcr("did:peaq:50").await.unwrap_err()), "HTTP_ERROR");
    assert_eq!(code(c.query_mcr("did:peaq:404").await.unwrap_err()), "NOT_FOUND");
    assert_eq!(code(c.query_mcr("did:peaq:51").await.unwrap_err()), "TIMEOUT");
    assert_eq!(code(c.query_mcr("did:peaq:52").await.unwrap_err()), "BAD_RESPONSE");
    // DID forms
    let e = c.query_mcr("did:peaq:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266").await.unwrap_err();
    assert_eq!((e.code(), e.field()), ("VALIDATION_ERROR", "did"));
    assert_eq!(code(c.query_mcr("did:peaq:042").await.unwrap_err()), "VALIDATION_ERROR");
    assert_eq!(code(c.query_operator_machines("did:peaq:42").await.unwrap_err()), "VALIDATION_ERROR");

    assert_eq!(c.query_machine("did:peaq:42").await.unwrap()["peaqos"]["mcr"], "AA");
    let ops = c.query_operator_machines(op).await.unwrap();
    assert_eq!(ops["machines"].as_array().unwrap().len(), 1);
    server.abort();

    // nothing listening
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = McrClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2)).unwrap();
    assert_eq!(code(dead.query_mcr("did:peaq:42").await.unwrap_err()), "NETWORK_ERROR");
}
