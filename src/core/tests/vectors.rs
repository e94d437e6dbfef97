//! The SDK's computed vectors (`test/fixtures/sdk/vectors/stream.json`, SPEC §8.5–8.6).

mod common;

use peaqos_core::canonical_json::to_canonical_string;
use peaqos_core::field_rules::{self, Action, FieldCipher, FieldRule, IvSource, Strategy, TopicRules};
use peaqos_core::keys::{FieldKey, MachineKey};
use peaqos_core::package::{self, build_signed_package_json, verify_package_json, PackageError};
use serde_json::{json, Value};

fn rules_from_vector(inputs: &Value) -> TopicRules {
    let rules = inputs["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| FieldRule {
            path: r["field_path"].as_str().unwrap().to_owned(),
            action: serde_json::from_value::<Action>(r["action"].clone()).unwrap(),
            strategy: serde_json::from_value::<Option<Strategy>>(r["anonymize_strategy"].clone()).unwrap(),
        })
        .collect();
    TopicRules { rules, default_action: Action::Include }
}

#[test]
fn canonical_json_vectors() {
    let v = common::vectors_file("stream.json");
    for (name, expected) in v["canonical_json"].as_object().unwrap() {
        let expected = expected.as_str().unwrap();
        let parsed: Value = serde_json::from_str(expected).unwrap();
        assert_eq!(to_canonical_string(&parsed).unwrap(), expected, "{name}");
    }
    assert_eq!(to_canonical_string(&json!({"x": 1.0, "y": 1e16, "z": 0.1})).unwrap(), r#"{"x":1.0,"y":1e+16,"z":0.1}"#);
    assert_eq!(to_canonical_string(&json!({"name": "Zürich ☃"})).unwrap(), r#"{"name":"Z\u00fcrich \u2603"}"#);
}

#[test]
fn anonymize_vectors() {
    let v = common::vectors_file("stream.json");
    for (name, expected) in v["anonymize"].as_object().unwrap() {
        let (strategy, input) = name.split_once(':').unwrap();
        let strategy: Strategy = serde_json::from_value(json!(strategy)).unwrap();
        let input: Value = serde_json::from_str(input).unwrap();
        let got = field_rules::anonymize_value(&input, strategy, "x").unwrap();
        assert_eq!(&got, expected, "{name}");
    }
}

#[test]
fn eip191_vector() {
    let k = MachineKey::from_hex("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80").unwrap();
    let sig = k.sign_eip191(b"peaqOS test vector");
    assert_eq!(
        format!("0x{}", hex::encode(sig)),
        "0x9270f53622c7e1e6cd8217c9a1c6f5f2e08974daf7cac2f5c8bd96371af9307c2e66f0db7410a242c1285f26091b94501eb5a0e173d6bf92e58be5121e21a0a71b"
    );
    assert_eq!(k.address(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
}

#[test]
fn data_package_vector() {
    let v = common::vectors_file("stream.json");
    let dp = &v["data_package"];
    let inputs = &dp["inputs"];
    let key = MachineKey::from_hex(inputs["signing_key"].as_str().unwrap()).unwrap();
    let field_key = FieldKey::from_hex(inputs["aes_key"].as_str().unwrap()).unwrap();
    let iv: [u8; 12] = std::array::from_fn(|i| i as u8 + 1);
    let cipher = FieldCipher::with_iv_source(&field_key, IvSource::Fixed(iv));
    let fields = inputs["fields"].as_object().unwrap();
    let payload = field_rules::apply(fields, &rules_from_vector(inputs), &cipher).unwrap();

    let did = inputs["did"].as_str().unwrap();
    assert_eq!(did, key.did());
    let signable = package::signable_bytes(
        did,
        inputs["captured_at"].as_str().unwrap(),
        inputs["schema_version"].as_str().unwrap(),
        inputs["sequence_number"].as_u64().unwrap(),
        &payload,
    )
    .unwrap();
    assert_eq!(String::from_utf8(signable).unwrap(), dp["signable_bytes_utf8"].as_str().unwrap());

    let signed = build_signed_package_json(
        did,
        &key,
        inputs["captured_at"].as_str().unwrap(),
        inputs["schema_version"].as_str().unwrap(),
        inputs["sequence_number"].as_u64().unwrap(),
        payload,
    )
    .unwrap();
    let expected = &dp["package"];
    assert_eq!(signed.package.signature_hex(), expected["signature"].as_str().unwrap());
    // The wire form is the camelCase canonical JSON of the vector's package.
    let wire = json!({
        "did": expected["did"], "timestamp": expected["timestamp"], "schemaVersion": expected["schema_version"],
        "sequenceNumber": expected["sequence_number"], "payload": expected["payload"],
        "signature": expected["signature"], "signingKeyId": key.key_id(),
    });
    assert_eq!(signed.json, to_canonical_string(&wire).unwrap());
    assert_eq!(signed.package.to_json().unwrap(), signed.json);
    assert_eq!(verify_package_json(&signed.json).unwrap(), key.address());

    // The decimal (gen-2) DID form fails verification as in the SDK.
    let mut bad: Value = serde_json::from_str(&signed.json).unwrap();
    bad["did"] = json!("did:peaq:42");
    match verify_package_json(&bad.to_string()) {
        Err(PackageError::BadDid(d)) => assert_eq!(d, "did:peaq:42"),
        other => panic!("expected BadDid, got {other:?}"),
    }
    // Any change of the payload breaks the signature.
    let mut tampered: Value = serde_json::from_str(&signed.json).unwrap();
    tampered["payload"]["battery"] = json!(88);
    assert!(matches!(verify_package_json(&tampered.to_string()), Err(PackageError::SignerMismatch { .. })));

    // The encrypted field decrypts back to the canonical JSON of the original value.
    let ct = signed.package.payload["operator_name"]["ciphertext"].as_str().unwrap();
    assert_eq!(cipher.open(ct).unwrap(), br#""alice""#);
}

#[test]
fn verify_with_signable_gives_the_canonical_payload_the_signature_covers() {
    let key = MachineKey::from_hex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80").unwrap();
    // A nested key named like the top-level one, non-ASCII text and floats: the slice is still the payload.
    let payload = json!({"b": {"x": 1, "schemaVersion": "no"}, "a": "é,\"schemaVersion\":", "f": 1.0});
    let Value::Object(p) = payload.clone() else { unreachable!() };
    let line = build_signed_package_json(key.did(), &key, "2026-01-01T00:00:00Z", "1.0.0", 3, p).unwrap().json;
    let pkg = package::DataPackage::from_json(&line).unwrap();
    let (signer, bytes, range) = pkg.verify_with_signable().unwrap();
    assert_eq!(signer, pkg.verify().unwrap());
    assert_eq!(bytes, pkg.signable_bytes().unwrap());
    let slice = std::str::from_utf8(&bytes[range]).unwrap();
    assert_eq!(slice, to_canonical_string(&payload).unwrap());
    assert_eq!(serde_json::from_str::<Value>(slice).unwrap(), payload);
    let forged = package::DataPackage::from_json(&line.replace("1.0.0", "1.0.1")).unwrap();
    assert!(forged.verify_with_signable().is_err());
}
