//! Encoding and validation against the SDK-computed vectors in `test/fixtures/sdk/vectors/`
//! (provenance in `test/fixtures/sdk/PROVENANCE.md`).

use alloy::primitives::{hex, Address, Bytes, U256};
use peaqos_chain::encoding::{self, MachineDidAttributes};
use peaqos_chain::validation::{self, Currency, MachineIdInput, SubmitEventParams, ValueInput};
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../test/fixtures/sdk/vectors");

fn load(name: &str) -> Option<Value> {
    let p = std::path::Path::new(DIR).join(name);
    let s = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (the SDK vectors are part of the repository)", p.display()));
    Some(serde_json::from_str(&s).expect("vector JSON parses"))
}

fn hexs(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn num(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn params_from(p: &Value) -> SubmitEventParams {
    SubmitEventParams {
        machine_id: MachineIdInput(U256::from(1u8)),
        event_type: num(&p["eventType"]).parse().unwrap(),
        value: ValueInput::parse(&num(&p["value"])),
        timestamp: num(&p["timestamp"]).parse().unwrap(),
        raw_data: p["raw_data_hex"].as_str().map(|h| hex::decode(h).unwrap()),
        trust_level: num(&p["trustLevel"]).parse().unwrap(),
        source_chain_id: num(&p["sourceChainId"]).parse().unwrap(),
        source_tx_hash: {
            let h = p["sourceTxHash"].as_str().unwrap();
            if h.trim_start_matches("0x").chars().all(|c| c == '0') {
                None
            } else {
                Some(h.to_string())
            }
        },
        metadata: hexs(&p["metadata_hex"]),
        currency: Currency::Code(p["currency"].as_str().unwrap().to_string()),
    }
}

#[test]
fn data_hash_vectors() {
    let Some(v) = load("v2_events_activation.json") else {
        return;
    };
    for c in v["compute_data_hash"].as_array().unwrap() {
        let input = hexs(&c["input_hex"]);
        let got = validation::data_hash(Some(&input));
        assert_eq!(format!("{got:#x}"), c["keccak256"].as_str().unwrap());
    }
    assert_eq!(validation::data_hash(None), alloy::primitives::B256::ZERO);
}

#[test]
fn submit_event_and_batch_calldata() {
    let Some(v) = load("v2_events_activation.json") else {
        return;
    };
    let mut events = vec![];
    for c in v["submitEvent_calldata"].as_array().unwrap() {
        let mut params = params_from(&c["params"]);
        params.machine_id =
            MachineIdInput::from_decimal("machine_id", c["params"]["machineId"].as_str().unwrap()).unwrap();
        let e = validation::resolve_single(&params).unwrap();
        assert_eq!(format!("{:#x}", e.data_hash), c["params"]["dataHash"].as_str().unwrap());
        let got = encoding::submit_event(&e);
        assert_eq!(format!("{got}"), c["calldata"].as_str().unwrap(), "{}", c["label"]);
        events.push(e);
    }
    let reg: Address = v["submitEvent_calldata"][0]["to"].as_str().unwrap().parse().unwrap();
    let batch = encoding::batch_submit_events(reg, &events[..2]);
    assert_eq!(format!("{batch}"), v["batchAll_calldata"]["calldata"].as_str().unwrap());
}

#[test]
fn activate_machine_calldata_and_id() {
    use peaqos_chain::bindings::{DIDDocument, ServiceEndpoint, VerificationMethod};
    let Some(v) = load("v2_events_activation.json") else {
        return;
    };
    let a = &v["activateMachine"];
    let d = &a["did_document_arg"];
    let vm = &d["verificationMethods"][0];
    let se = &d["serviceEndpoints"][0];
    let args = encoding::ActivateArgs {
        doc: DIDDocument {
            id: d["id"].as_str().unwrap().into(),
            controller: d["controller"].as_str().unwrap().parse().unwrap(),
            verificationMethods: vec![VerificationMethod {
                id: vm["id"].as_str().unwrap().into(),
                methodType: vm["methodType"].as_str().unwrap().into(),
                controller: vm["controller"].as_str().unwrap().parse().unwrap(),
                publicKeyMultibase: vm["publicKeyMultibase"].as_str().unwrap().into(),
            }],
            authentication: vec![U256::from(d["authentication"][0].as_u64().unwrap())],
            serviceEndpoints: vec![ServiceEndpoint {
                id: se["id"].as_str().unwrap().into(),
                serviceType: se["serviceType"].as_str().unwrap().into(),
                serviceEndpoint: se["serviceEndpoint"].as_str().unwrap().into(),
            }],
        },
        machine_type: a["machineType"].as_str().unwrap().into(),
        credential_subject: hexs(&a["credentialSubject_hex"]),
        manufacturer: a["manufacturer"].as_str().unwrap().parse().unwrap(),
        tier: a["tier"].as_u64().unwrap() as u8,
    };
    assert_eq!(format!("{}", encoding::activate_machine(&args)), a["calldata"].as_str().unwrap());
    let id = encoding::compute_machine_id(&args.machine_type, &args.credential_subject);
    assert_eq!(format!("{id:#066x}"), a["machineId_hex"].as_str().unwrap());
}

#[test]
fn legacy_calldata() {
    let Some(v) = load("v1_legacy.json") else {
        return;
    };
    let machine: Address = v["machine"].as_str().unwrap().parse().unwrap();
    let operator: Address = v["operator"].as_str().unwrap().parse().unwrap();
    let cd = &v["calldata"];
    let find = |prefix: &str| -> String {
        cd.as_object().unwrap().iter().find(|(k, _)| k.starts_with(prefix)).unwrap().1.as_str().unwrap().to_string()
    };
    assert_eq!(format!("{}", encoding::register()), find("IdentityRegistry.register()"));
    assert_eq!(format!("{}", encoding::register_for(machine)), find("IdentityRegistry.registerFor("));
    assert_eq!(format!("{}", encoding::machine_id_of_owner(machine)), find("IdentityRegistry.machineIdOfOwner("));
    assert_eq!(format!("{}", encoding::mint(U256::from(42), machine)), find("MachineNFT.mint("));
    assert_eq!(format!("{}", encoding::token_id_of(U256::from(42))), find("MachineNFT.tokenIdOf("));
    assert_eq!(format!("{}", encoding::read_attribute(machine, "machineId")), find("DID.readAttribute("));

    let m = &v["machine_did_attributes"];
    let attrs = m["attributes"].as_array().unwrap();
    let did: Address = v["addresses_used"]["did"].as_str().unwrap().parse().unwrap();
    let input = MachineDidAttributes {
        machine_id: U256::from(42),
        nft_token_id: U256::from(41),
        operator: Some(operator),
        documentation_url: attrs[3]["value"].as_str().unwrap().into(),
        data_api: attrs[4]["value"].as_str().unwrap().into(),
        data_visibility: attrs[5]["value"].as_str().unwrap().into(),
    };
    let pairs = input.pairs().unwrap();
    for (i, a) in attrs.iter().enumerate() {
        assert_eq!(pairs[i].0, a["name"].as_str().unwrap());
        assert_eq!(pairs[i].1, a["value"].as_str().unwrap());
        assert_eq!(
            format!("{}", encoding::add_attribute(machine, pairs[i].0, &pairs[i].1)),
            a["addAttribute_calldata"].as_str().unwrap()
        );
    }
    assert_eq!(
        format!("{}", encoding::did_attributes_batch(did, machine, &pairs)),
        m["batchAll_calldata"].as_str().unwrap()
    );

    let p = &v["proxy_did_attributes"];
    let pairs = encoding::proxy_did_pairs(U256::from(10), &[U256::from(42), U256::from(43), U256::from(44)]).unwrap();
    for (i, a) in p["attributes"].as_array().unwrap().iter().enumerate() {
        assert_eq!(pairs[i].1, a["value"].as_str().unwrap());
        assert_eq!(
            format!("{}", encoding::add_attribute(operator, pairs[i].0, &pairs[i].1)),
            a["addAttribute_calldata"].as_str().unwrap()
        );
    }
    let _ = Bytes::new();
}

#[test]
fn validation_outcomes_match_sdk() {
    let Some(v) = load("v2_events_activation.json") else {
        return;
    };
    let base = || SubmitEventParams {
        machine_id: MachineIdInput(U256::from(42)),
        event_type: 0,
        value: ValueInput::from_u128(123),
        timestamp: 1_735_000_000,
        raw_data: Some(b"sensor:ok".to_vec()),
        trust_level: 0,
        source_chain_id: 3338,
        source_tx_hash: None,
        metadata: vec![],
        currency: Currency::Code("USD".into()),
    };
    let cases: Vec<(&str, SubmitEventParams)> = vec![
        ("currency lowercase 'usd'", SubmitEventParams { currency: Currency::Code("usd".into()), ..base() }),
        ("currency 'US' too short", SubmitEventParams { currency: Currency::Code("US".into()), ..base() }),
        ("activity with currency USD", SubmitEventParams { event_type: 1, ..base() }),
        ("trust 1 without source_tx_hash", SubmitEventParams { trust_level: 1, ..base() }),
        ("source_chain_id 9990 (agung) not in SUPPORTED_CHAINS", SubmitEventParams { source_chain_id: 9990, ..base() }),
        ("value float", SubmitEventParams { value: ValueInput::parse("1.5"), ..base() }),
        ("raw_data empty bytes", SubmitEventParams { raw_data: Some(vec![]), ..base() }),
        ("machine_id 0", SubmitEventParams { machine_id: MachineIdInput(U256::ZERO), ..base() }),
        ("currency None", SubmitEventParams { currency: Currency::Null, ..base() }),
        ("timestamp far future (no client check)", SubmitEventParams { timestamp: 4_102_444_800, ..base() }),
    ];
    let expected = v["validate_submit_event_params"].as_array().unwrap();
    assert_eq!(expected.len(), cases.len());
    for (exp, (label, params)) in expected.iter().zip(cases) {
        assert_eq!(exp["case"].as_str().unwrap(), label);
        let got = validation::validate(&params);
        match exp["error"].as_str() {
            None => assert!(got.is_ok(), "{label}: {got:?}"),
            Some("TypeError") => {
                let e = got.unwrap_err();
                assert_eq!(e.code(), "TYPE_ERROR", "{label}");
                assert_eq!(e.field(), "value");
                assert_eq!(e.to_string(), exp["message"].as_str().unwrap(), "{label}");
            }
            Some(_) => {
                let e = got.unwrap_err();
                let peaqos_chain::ChainError::Validation { field, constraint, message } = &e else {
                    panic!("{label}: {e:?}")
                };
                assert_eq!(field, exp["field"].as_str().unwrap(), "{label}");
                assert_eq!(constraint, exp["constraint"].as_str().unwrap(), "{label}");
                assert_eq!(message, exp["message"].as_str().unwrap(), "{label}");
            }
        }
    }
}

/// Gen-1 smart accounts: the calldata SDK 0.11.2 sent for `get_smart_account_address` and
/// `deploy_smart_account` (recorded by `test/chain/sdk011_vectors.py`).
#[test]
fn smart_account_calldata_equals_sdk_0_11_2() {
    let v = load("v1_smart_account_bridge.json").unwrap();
    assert_eq!(v["sdk"], "peaq-os-sdk 0.11.2");
    let cases = v["smart_account"].as_array().unwrap();
    assert!(cases.len() >= 2);
    for c in cases {
        let a = |k: &str| c[k].as_str().unwrap().parse::<Address>().unwrap();
        let salt: U256 = c["salt"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            encoding::create_account(a("owner"), a("machine"), salt),
            Bytes::from(hexs(&c["createAccount_calldata"]))
        );
        assert_eq!(
            encoding::get_account_address(a("owner"), a("machine"), salt),
            Bytes::from(hexs(&c["getAddress_calldata"]))
        );
    }
}

/// Gen-1 bridge: the calldata SDK 0.11.2 `bridge_nft` sent (peaq → Base) for the approval
/// pre-flight, the quote and the send (recorded by `test/chain/sdk011_vectors.py`).
#[test]
fn bridge_calldata_equals_sdk_0_11_2() {
    let v = load("v1_smart_account_bridge.json").unwrap();
    let cases = v["bridge"].as_array().unwrap();
    assert!(cases.len() >= 2);
    for c in cases {
        let a = |k: &str| c[k].as_str().unwrap().parse::<Address>().unwrap();
        let token: U256 = c["token_id"].as_str().unwrap().parse().unwrap();
        let options = hexs(&c["extra_options"]);
        let p = encoding::bridge_send_param(c["dst_eid"].as_u64().unwrap() as u32, a("recipient"), token, &options);
        assert_eq!(encoding::get_approved(token), Bytes::from(hexs(&c["getApproved_calldata"])));
        assert_eq!(encoding::approve_nft(a("adapter"), token), Bytes::from(hexs(&c["approve_calldata"])));
        assert_eq!(encoding::quote_send(&p), Bytes::from(hexs(&c["quoteSend_calldata"])));
        let fee: U256 = c["send_value"].as_str().unwrap().parse().unwrap();
        assert_eq!(encoding::send_nft(&p, fee, a("machine")), Bytes::from(hexs(&c["send_calldata"])));
    }
}
