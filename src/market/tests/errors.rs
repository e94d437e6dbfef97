//! Every server error code, every kind of garbage answer and every network failure maps to a
//! typed error naming what was wrong; no secret shows in any error or Debug output.
mod common;

use std::time::Duration;

use common::{Server, API_KEY};
use peaqos_market::wire::{HeartbeatEndpoint, HeartbeatRequest};
use peaqos_market::{ApiCode, ClientConfig, MarketError, OrchestrationClient, Secret};
use serde_json::{json, Value};

const MACHINE_PATH: &str = "/api/v1/machines/mach_x";

fn machine(overrides: Value) -> Value {
    let mut m = json!({
        "id": "mach_x", "displayName": "r", "ownerId": "o", "machineType": "robot", "runtimeProfile": "ros2",
        "status": "active", "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
        "identityRef": "did:peaq:1"
    });
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            m.as_object_mut().unwrap().remove(k);
        } else {
            m[k] = v.clone();
        }
    }
    m
}

#[tokio::test]
async fn every_server_error_code_is_mapped() {
    let srv = Server::start(&[]);
    let client = srv.client();
    let mut codes: Vec<ApiCode> = ApiCode::KNOWN.to_vec();
    codes.push(ApiCode::Other("A_CODE_FROM_THE_FUTURE".into()));
    for (i, code) in codes.iter().enumerate() {
        let status = [400, 401, 403, 404, 409, 410, 422, 429, 500, 503][i % 10];
        srv.fault(json!({"method": "GET", "path": MACHINE_PATH, "status": status,
            "json": {"error": {"code": code.as_str(), "message": format!("m{i}"), "details": {"n": i}}, "extra": true}}));
        let e = client.get_machine("mach_x").await.unwrap_err();
        match &e {
            MarketError::Api { code: c, status: s, message, details, op } => {
                assert_eq!((c, *s, message.as_str(), *op), (code, status, format!("m{i}").as_str(), "get machine"));
                assert_eq!(details.as_ref().unwrap()["n"], i);
            }
            other => panic!("{code}: {other:?}"),
        }
        assert!(e.to_string().contains(code.as_str()), "{e}");
        let garbage = matches!(code, ApiCode::BadResponse | ApiCode::InvalidResponseShape);
        let retryable = status >= 500 || status == 429 || garbage || *code == ApiCode::PeaqosIdentityUnavailable;
        assert_eq!(e.is_retryable(), retryable, "{code} {status}");
    }
    // the real server's own auth errors
    let e = srv.client_with(None).get_machine("mach_x").await.unwrap_err();
    assert!(e.is(&ApiCode::AuthRequired), "{e}");
    let e = srv.client_with(Some("wrong")).get_machine("mach_x").await.unwrap_err();
    assert!(e.is(&ApiCode::AuthInvalid), "{e}");
    assert!(client.get_machine("mach_x").await.unwrap_err().is(&ApiCode::NotFound));
}

#[tokio::test]
async fn garbage_answers_are_bad_response_or_invalid_shape_naming_the_field() {
    let srv = Server::start(&[]);
    let client = srv.client();
    // (fault, expected code, expected status, text the message must contain)
    let cases: Vec<(Value, ApiCode, u16, &str)> = vec![
        (json!({"status": 200, "body": "not json"}), ApiCode::BadResponse, 200, "non-JSON"),
        (json!({"status": 200, "body": ""}), ApiCode::BadResponse, 200, "empty"),
        (json!({"status": 502, "body": "<html>bad gateway</html>"}), ApiCode::BadResponse, 502, "non-JSON"),
        (json!({"status": 400, "json": {"error": "flat"}}), ApiCode::BadResponse, 400, "envelope"),
        (json!({"status": 404, "json": {"error": {"code": 7, "message": "m"}}}), ApiCode::BadResponse, 404, "envelope"),
        (json!({"status": 200, "json": [1, 2]}), ApiCode::InvalidResponseShape, 0, "JSON object"),
        (json!({"status": 200, "json": {"items": []}}), ApiCode::InvalidResponseShape, 0, "response.item"),
        (json!({"status": 200, "json": {"item": null}}), ApiCode::InvalidResponseShape, 0, "item"),
        (
            json!({"status": 200, "json": {"item": machine(json!({"status": null}))}}),
            ApiCode::InvalidResponseShape,
            0,
            "status",
        ),
        (
            json!({"status": 200, "json": {"item": machine(json!({"status": "flying"}))}}),
            ApiCode::InvalidResponseShape,
            0,
            "item.status",
        ),
        (
            json!({"status": 200, "json": {"item": machine(json!({"ownerId": 5}))}}),
            ApiCode::InvalidResponseShape,
            0,
            "item.ownerId",
        ),
        (
            json!({"status": 200, "json": {"item": machine(json!({"labels": {"a": 1}}))}}),
            ApiCode::InvalidResponseShape,
            0,
            "item.labels",
        ),
        (
            json!({"status": 200, "json": {"item": machine(json!({"identityRef": "did:peaq:0x12"}))}}),
            ApiCode::InvalidResponseShape,
            0,
            "item.identityRef",
        ),
        (
            json!({"status": 200, "json": {"item": machine(json!({"id": ""}))}}),
            ApiCode::InvalidResponseShape,
            0,
            "item.id",
        ),
        (
            json!({"status": 200, "json": {"item": machine(json!({"identityProof": {"method": "eip191"}}))}}),
            ApiCode::InvalidResponseShape,
            0,
            "item.identityProof",
        ),
    ];
    for (fault, code, status, text) in cases {
        let mut f = fault.clone();
        f["method"] = json!("GET");
        f["path"] = json!(MACHINE_PATH);
        srv.fault(f);
        match client.get_machine("mach_x").await {
            Err(MarketError::Api { code: c, status: s, message, .. }) => {
                assert_eq!((&c, s), (&code, status), "{fault}: {message}");
                assert!(message.contains(text), "{fault}: {message:?} should mention {text:?}");
            }
            other => panic!("{fault}: {other:?}"),
        }
    }
    // tolerant where the SDK is: unknown fields, null lists
    let extra = machine(json!({"somethingNew": {"x": 1}, "capabilities": null, "policyIds": null}));
    srv.fault(json!({"method": "GET", "path": MACHINE_PATH, "status": 200, "json": {"item": extra}}));
    assert!(client.get_machine("mach_x").await.unwrap().capabilities.is_empty());
}

#[tokio::test]
async fn challenges_lists_and_huge_bodies_are_checked_like_the_sdk_does() {
    let srv = Server::start(&[]);
    let client = srv.client();
    // identity challenges: the SDK's strict checks
    let ch = json!({"challengeId": "mic_1", "identityRef": "did:peaq:1", "message": "m", "expiresAt": "t",
                    "verificationMethod": "eip191", "controllerAddresses": ["0x1"]});
    for (field, bad, text) in [
        ("controllerAddresses", json!([]), "item.controllerAddresses"),
        ("verificationMethod", json!("eip712"), "item.verificationMethod"),
        ("identityRef", json!("peaqos:machine:1"), "item.identityRef"),
        ("challengeId", json!(""), "item.challengeId"),
    ] {
        let mut c = ch.clone();
        c[field] = bad;
        srv.fault(json!({"method": "POST", "path": "/api/v1/machine-identity/challenges", "status": 201, "json": {"item": c}}));
        let e = client.create_identity_challenge("did:peaq:1").await.unwrap_err();
        assert!(e.is(&ApiCode::InvalidResponseShape) && e.to_string().contains(text), "{field}: {e}");
    }
    // lists: items must be an array, nextCursor a string or null
    for (body, text) in
        [(json!({"items": {}}), "response.items"), (json!({"items": [], "nextCursor": 3}), "nextCursor")]
    {
        srv.fault(json!({"method": "GET", "path": "/api/v1/machines", "status": 200, "json": body}));
        let e = client.list_machines(None, None).await.unwrap_err();
        assert!(e.is(&ApiCode::InvalidResponseShape) && e.to_string().contains(text), "{e}");
    }
    srv.fault(json!({"method": "GET", "path": "/api/v1/machines", "status": 200,
                     "json": {"items": [machine(json!({})), machine(json!({"status": 1}))]}}));
    let e = client.list_machines(None, None).await.unwrap_err();
    assert!(e.to_string().contains("items[1].status"), "{e}");
    // a huge body is refused, not buffered without end
    srv.fault(json!({"method": "GET", "path": MACHINE_PATH, "status": 200, "body": "x".repeat(5 << 20)}));
    assert!(client.get_machine("mach_x").await.unwrap_err().is(&ApiCode::BadResponse));
}

#[tokio::test]
async fn no_answer_is_a_retryable_network_error_naming_the_url() {
    let srv = Server::start(&[]);
    srv.fault(json!({"method": "GET", "path": MACHINE_PATH, "drop": true}));
    let e = srv.client().get_machine("mach_x").await.unwrap_err();
    assert!(matches!(&e, MarketError::Network { timeout: false, .. }) && e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains(&format!("{}{MACHINE_PATH}", srv.url)), "{e}");

    let mut cfg = ClientConfig::new(&srv.url, Some(Secret::new(API_KEY)));
    cfg.read_timeout = Duration::from_millis(300);
    srv.fault(json!({"method": "GET", "path": MACHINE_PATH, "delaySeconds": 1.5, "json": {}}));
    let e = OrchestrationClient::new(cfg).unwrap().get_machine("mach_x").await.unwrap_err();
    assert!(matches!(&e, MarketError::Network { timeout: true, .. }), "{e:?}");
    assert!(e.to_string().contains("timeout"), "{e}");

    let down = format!("http://user:pw@127.0.0.1:{}", peaqos_testkit::free_port());
    let client = OrchestrationClient::new(ClientConfig::new(&down, Some(Secret::new(API_KEY)))).unwrap();
    let e = client.health().await.unwrap_err();
    assert!(matches!(&e, MarketError::Network { .. }) && e.is_retryable(), "{e:?}");
    assert!(!e.to_string().contains("pw") && !format!("{e:?}").contains("pw"), "{e}");
}

#[tokio::test]
async fn secrets_never_show_in_errors_or_debug() {
    let srv = Server::start(&[]);
    let client = srv.client();
    let token = "agent-token-never-logged";
    // the server echoes a secret in details: redacted before it reaches the caller
    srv.fault(json!({"method": "POST", "path": "/api/v1/machine-agents/heartbeat", "status": 401,
        "json": {"error": {"code": "AGENT_AUTH_INVALID", "message": "no", "details": {"agentToken": token, "apiKey": API_KEY}}}}));
    let req = HeartbeatRequest {
        machine_id: "mach_x".into(),
        agent_id: "agt_x".into(),
        agent_token: Secret::new(token),
        endpoints: vec![HeartbeatEndpoint {
            auth_token: Some(Secret::new(token)),
            ..HeartbeatEndpoint::new("qvac", "http://127.0.0.1:1")
        }],
        lease_ttl_seconds: None,
    };
    let e = client.heartbeat(&req).await.unwrap_err();
    assert!(e.is(&ApiCode::AgentAuthInvalid));
    let e2 = srv.client_with(Some("wrong-key-also-secret")).get_machine("mach_x").await.unwrap_err();
    for shown in [format!("{e}"), format!("{e:?}"), format!("{req:?}"), format!("{client:?}"), format!("{e2} {e2:?}")] {
        for secret in [token, API_KEY, "wrong-key-also-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
    // the heartbeat went out without x-api-key, the token only in the body
    let hb = &srv.requests("POST", "/api/v1/machine-agents/heartbeat")[0];
    assert!(hb["headers"].get("x-api-key").is_none(), "{hb}");
    assert!(hb["body"].as_str().unwrap().contains(token));
}

#[tokio::test]
async fn bad_input_is_refused_before_any_request() {
    let srv = Server::start(&[]);
    let client = srv.client();
    for id in ["", "a/b", "../x"] {
        let e = client.get_machine(id).await.unwrap_err();
        assert!(matches!(&e, MarketError::Validation { field, .. } if field == "machineId"), "{e}");
    }
    let e = client.create_identity_challenge("did:peaq:0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A").await.unwrap_err();
    assert!(e.to_string().contains("identityRef"), "{e}");
    let e = client.list_machines(Some(501), None).await.unwrap_err();
    assert!(e.to_string().contains("limit"), "{e}");
    assert!(srv.state()["requests"].as_array().unwrap().is_empty());
    client.health().await.unwrap();
}
