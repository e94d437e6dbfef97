//! Random cases computed by the real SDK (peaq-os-sdk 0.12.1 in /work/main/.venv) via
//! tests/sdk_oracle/random_cases.py: submitEvent / batchAll / activateMachine calldata, the
//! off-chain machine id, and validation outcomes (field, constraint, message) must be identical.
//! Skips with a note when the venv is absent. `PEAQOS_SDK_CASES` sets the count (default 200).

use std::process::Command;

use alloy::primitives::{hex, Address, U256};
use peaqos_chain::bindings::{DIDDocument, ServiceEndpoint, VerificationMethod};
use peaqos_chain::encoding;
use peaqos_chain::validation::{self, Currency, MachineIdInput, SubmitEventParams, ValueInput};
use peaqos_chain::ChainError;
use serde_json::Value;

fn oracle(seed: u64, count: usize) -> Option<Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = peaqos_testkit::sdk_python();
    let out = Command::new(py)
        .arg(root.join("tests/sdk_oracle/random_cases.py"))
        .arg(seed.to_string())
        .arg(count.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "oracle failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

fn params(p: &Value) -> SubmitEventParams {
    let value = if p.get("value_type").map(s) == Some("int") || p.get("value_type").is_none() {
        ValueInput::parse(s(&p["value"]))
    } else {
        ValueInput::NotInt { type_name: s(&p["value_type"]).to_string() }
    };
    SubmitEventParams {
        machine_id: MachineIdInput::from_decimal("machine_id", s(&p["machine_id"])).unwrap(),
        event_type: p["event_type"].as_i64().unwrap(),
        value,
        timestamp: p["timestamp"].as_i64().unwrap(),
        raw_data: p["raw_data"].as_str().map(|h| hex::decode(h).unwrap()),
        trust_level: p["trust_level"].as_i64().unwrap(),
        source_chain_id: p["source_chain_id"].as_i64().unwrap() as i128,
        source_tx_hash: p["source_tx_hash"].as_str().map(str::to_string),
        metadata: hex::decode(s(&p["metadata"])).unwrap(),
        currency: match &p["currency"] {
            Value::Null => Currency::Null,
            Value::String(c) if c == "<__OMITTED__>" => Currency::Omitted,
            Value::String(c) => Currency::Code(c.clone()),
            other => panic!("currency {other}"),
        },
    }
}

#[test]
fn matches_sdk_on_random_cases() {
    let count: usize = std::env::var("PEAQOS_SDK_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let Some(o) = oracle(seed, count) else { return };
    eprintln!("SDK oracle seed {seed}, {count} cases");

    let mut events = vec![];
    for c in o["submit"].as_array().unwrap() {
        let e = validation::resolve_single(&params(c)).unwrap_or_else(|e| panic!("seed {seed}: {c}: {e}"));
        assert_eq!(format!("{:#x}", e.data_hash), s(&c["data_hash"]), "seed {seed}");
        assert_eq!(format!("{}", encoding::submit_event(&e)), s(&c["calldata"]), "seed {seed}: {c}");
        events.push(e);
    }
    let b = &o["batch"];
    let picked: Vec<_> =
        b["indices"].as_array().unwrap().iter().map(|i| events[i.as_u64().unwrap() as usize].clone()).collect();
    let reg: Address = s(&b["registry"]).parse().unwrap();
    assert_eq!(format!("{}", encoding::batch_submit_events(reg, &picked)), s(&b["calldata"]), "seed {seed}");

    for c in o["activate"].as_array().unwrap() {
        let d = &c["doc"];
        let doc = DIDDocument {
            id: String::new(),
            controller: s(&d["controller"]).parse().unwrap(),
            verificationMethods: d["verificationMethods"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| VerificationMethod {
                    id: s(&v["id"]).into(),
                    methodType: s(&v["methodType"]).into(),
                    controller: s(&v["controller"]).parse().unwrap(),
                    publicKeyMultibase: s(&v["publicKeyMultibase"]).into(),
                })
                .collect(),
            authentication: d["authentication"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| U256::from(a.as_u64().unwrap()))
                .collect(),
            serviceEndpoints: d["serviceEndpoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| ServiceEndpoint {
                    id: s(&v["id"]).into(),
                    serviceType: s(&v["serviceType"]).into(),
                    serviceEndpoint: s(&v["serviceEndpoint"]).into(),
                })
                .collect(),
        };
        let args = encoding::ActivateArgs {
            doc,
            machine_type: s(&c["machine_type"]).into(),
            credential_subject: hex::decode(s(&c["credential_subject"])).unwrap(),
            manufacturer: s(&c["manufacturer"]).parse().unwrap(),
            tier: c["tier"].as_u64().unwrap() as u8,
        };
        assert_eq!(format!("{}", encoding::activate_machine(&args)), s(&c["calldata"]), "seed {seed}");
        assert_eq!(
            encoding::compute_machine_id(&args.machine_type, &args.credential_subject).to_string(),
            s(&c["machine_id"]),
            "seed {seed}"
        );
    }

    for c in o["validate"].as_array().unwrap() {
        let got = validation::validate(&params(c));
        let exp = &c["outcome"];
        match (exp["ok"].as_bool().unwrap(), got) {
            (true, Ok(())) => {}
            (false, Err(ChainError::Validation { field, constraint, message })) => {
                assert_eq!(s(&exp["error"]), "ValidationError", "seed {seed}: {c}");
                assert_eq!(
                    (field.as_str(), constraint.as_str(), message.as_str()),
                    (s(&exp["field"]), s(&exp["constraint"]), s(&exp["message"])),
                    "seed {seed}: {c}"
                );
            }
            (false, Err(ChainError::Type { message, .. })) => {
                assert_eq!(s(&exp["error"]), "TypeError", "seed {seed}: {c}");
                assert_eq!(message, s(&exp["message"]), "seed {seed}: {c}");
            }
            (_, got) => panic!("seed {seed}: {c}: got {got:?}"),
        }
    }
}
