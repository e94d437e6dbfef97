//! peaqos_core against the real SDK (peaq-os-sdk 0.12.1 in /work/main/.venv) on generated
//! inputs: canonical JSON, field rules (fixed IV ⇒ byte-identical, random IV ⇒ decrypts),
//! package building and verification. Skipped with a note when the venv is absent.

mod common;

use common::{random_string, random_value, run_oracle, sdk_python, Rng};
use peaqos_core::canonical_json::to_canonical_string;
use peaqos_core::field_rules::{self, Action, FieldCipher, FieldRule, IvSource, Strategy, TopicRules};
use peaqos_core::keys::{FieldKey, MachineKey};
use peaqos_core::package::build_signed_package_json;
use serde_json::{json, Map, Value};

const KEY_HEX: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";
const SK: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

#[test]
fn canonical_json_matches_sdk() {
    let py = sdk_python();
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let any_key = |r: &mut Rng| random_string(r, true);
    let mut values = Vec::new();
    for i in 0..4000 {
        let v = if i < 2000 {
            // scalars, mostly floats
            match i % 4 {
                0 | 1 => Value::Number(serde_json::Number::from_f64(common::random_f64(&mut r)).unwrap()),
                2 => common::random_number(&mut r),
                _ => Value::String(random_string(&mut r, true)),
            }
        } else {
            random_value(&mut r, 4, &any_key)
        };
        values.push(v);
    }
    values.push(json!({"": [], "a": {}, "b": [[], {}], "\u{10FFFF}": "\u{0}"}));
    let inputs: Vec<String> = values.iter().map(|v| serde_json::to_string(v).unwrap()).collect();
    let res = run_oracle(&py, &json!({ "canonical": inputs }));
    let outs = res["canonical"].as_array().unwrap();
    assert_eq!(outs.len(), values.len());
    let mut failures = Vec::new();
    for (v, o) in values.iter().zip(outs) {
        let ours = to_canonical_string(v).unwrap();
        let theirs = o["ok"].as_str().unwrap_or_else(|| panic!("SDK error {o} for {v}"));
        if ours != theirs {
            failures.push(format!("input {v}\n ours   {ours}\n theirs {theirs}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches, first:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
}

fn random_rules(r: &mut Rng, fields: &Map<String, Value>) -> (TopicRules, Value) {
    // Paths drawn from the fields' own paths (so they match) plus a few that do not.
    let mut paths = Vec::new();
    fn collect(prefix: &str, v: &Value, out: &mut Vec<String>) {
        if let Value::Object(m) = v {
            for (k, c) in m {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                out.push(p.clone());
                collect(&p, c, out);
            }
        }
    }
    collect("", &Value::Object(fields.clone()), &mut paths);
    paths.push("nope".into());
    paths.push("a.nope".into());
    let mut rules = Vec::new();
    for _ in 0..r.below(6) {
        let path = paths[r.below(paths.len() as u64) as usize].clone();
        let (action, strategy) = match r.below(6) {
            0 => (Action::Include, None),
            1 => (Action::Exclude, None),
            2 => (Action::Encrypt, None),
            3 => (Action::Anonymize, Some(Strategy::Hash)),
            4 => (Action::Anonymize, Some(Strategy::Generalize)),
            _ => (Action::Anonymize, Some(Strategy::Redact)),
        };
        rules.push(FieldRule { path, action, strategy });
    }
    let default_action =
        [Action::Include, Action::Include, Action::Exclude, Action::Encrypt, Action::Anonymize][r.below(5) as usize];
    let json_rules: Vec<Value> =
        rules.iter().map(|x| json!({"path": x.path, "action": x.action, "strategy": x.strategy})).collect();
    let spec = json!({"rules": json_rules, "default_action": default_action});
    (TopicRules { rules, default_action }, spec)
}

fn random_fields(r: &mut Rng) -> Map<String, Value> {
    // Keys without dots (ROS field names never contain one; see field_rules module doc).
    let key = |r: &mut Rng| {
        let names = ["a", "b", "gps", "x", "serial", "data", "h", "é"];
        names[r.below(names.len() as u64) as usize].to_owned()
    };
    let mut m = Map::new();
    for _ in 0..(1 + r.below(6)) {
        let k = key(r);
        m.insert(k, random_value(r, 3, &key));
    }
    m
}

#[test]
fn field_rules_match_sdk() {
    let py = sdk_python();
    let mut r = Rng(12345);
    let field_key = FieldKey::from_hex(KEY_HEX).unwrap();
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for i in 0..1500u64 {
        let fields = random_fields(&mut r);
        let (rules, spec) = random_rules(&mut r, &fields);
        let iv: [u8; 12] = std::array::from_fn(|j| (i as u8).wrapping_mul(7).wrapping_add(j as u8));
        let cipher = FieldCipher::with_iv_source(&field_key, IvSource::Fixed(iv));
        let result =
            field_rules::apply(&fields, &rules, &cipher).map(|m| to_canonical_string(&Value::Object(m)).unwrap());
        ours.push((fields.clone(), result));
        let mut case = spec;
        case["fields"] = Value::Object(fields);
        case["key_hex"] = json!(KEY_HEX);
        case["iv_hex"] = json!(hex::encode(iv));
        cases.push(case);
    }
    let res = run_oracle(&py, &json!({ "field_rules": cases }));
    let outs = res["field_rules"].as_array().unwrap();
    let mut failures = Vec::new();
    let mut errors_agreed = 0;
    for ((case, (fields, mine)), theirs) in cases.iter().zip(&ours).zip(outs) {
        match (mine, theirs.get("ok").and_then(Value::as_str)) {
            (Ok(m), Some(t)) if m == t => {}
            (Err(_), None) => errors_agreed += 1,
            (m, _) => failures.push(format!(
                "fields {}\n rules {}\n ours   {:?}\n theirs {}",
                Value::Object(fields.clone()),
                json!({"rules": case["rules"], "default": case["default_action"]}),
                m,
                theirs
            )),
        }
    }
    eprintln!("{} cases, {} rejected by both", cases.len(), errors_agreed);
    assert!(
        failures.is_empty(),
        "{} mismatches, first:\n{}",
        failures.len(),
        failures[..failures.len().min(3)].join("\n")
    );
}

#[test]
fn random_iv_encryption_decrypts() {
    let field_key = FieldKey::from_hex(KEY_HEX).unwrap();
    let cipher = FieldCipher::new(&field_key);
    let fields = json!({"a": {"b": [1, 2.5, "ü"]}, "c": "x"}).as_object().unwrap().clone();
    let rules = TopicRules {
        rules: vec![FieldRule { path: "a".into(), action: Action::Encrypt, strategy: None }],
        default_action: Action::Include,
    };
    let out1 = field_rules::apply(&fields, &rules, &cipher).unwrap();
    let out2 = field_rules::apply(&fields, &rules, &cipher).unwrap();
    let ct1 = out1["a"]["ciphertext"].as_str().unwrap();
    let ct2 = out2["a"]["ciphertext"].as_str().unwrap();
    assert_ne!(ct1, ct2, "fresh IV per encryption");
    assert_eq!(out1["a"]["__encrypted"], json!(true));
    assert_eq!(out1["a"]["algorithm"], json!("AES-256-GCM"));
    assert_eq!(out1["a"].as_object().unwrap().len(), 3);
    assert_eq!(peaqos_core::base64_decode(ct1).unwrap().len(), 12 + r#"{"b":[1,2.5,"\u00fc"]}"#.len() + 16);
    assert_eq!(cipher.open(ct1).unwrap(), br#"{"b":[1,2.5,"\u00fc"]}"#);
    assert_eq!(out1["c"], json!("x"));
}

#[test]
fn packages_match_and_verify_with_sdk() {
    let py = sdk_python();
    let mut r = Rng(777);
    let key = MachineKey::from_hex(SK).unwrap();
    let field_key = FieldKey::from_hex(KEY_HEX).unwrap();
    let mut ours = Vec::new();
    let mut build_cases = Vec::new();
    for i in 0..300u64 {
        let fields = random_fields(&mut r);
        let (rules, spec) = random_rules(&mut r, &fields);
        let iv = [i as u8; 12];
        let cipher = FieldCipher::with_iv_source(&field_key, IvSource::Fixed(iv));
        let Ok(payload) = field_rules::apply(&fields, &rules, &cipher) else { continue };
        let ts = peaqos_core::value::iso8601_utc(peaqos_core::value::Timestamp {
            sec: 1_700_000_000 + i as i64,
            nanosec: (i as u32) * 1_000_003 % 1_000_000_000,
        });
        let seq = if i % 3 == 0 { u64::MAX - i } else { i };
        let signed = build_signed_package_json(key.did(), &key, &ts, "1.0.0", seq, payload).unwrap();
        ours.push(signed.json);
        let mut case = spec;
        case["fields"] = Value::Object(fields);
        case["key_hex"] = json!(KEY_HEX);
        case["iv_hex"] = json!(hex::encode(iv));
        case["private_key"] = json!(SK);
        case["did"] = json!(key.did());
        case["key_id"] = json!(key.key_id());
        case["captured_at"] = json!(ts);
        case["schema_version"] = json!("1.0.0");
        case["sequence_number"] = json!(seq);
        build_cases.push(case);
    }
    let res = run_oracle(&py, &json!({ "verify": ours, "build": build_cases }));
    for (p, v) in ours.iter().zip(res["verify"].as_array().unwrap()) {
        assert_eq!(v["valid"], json!(true), "SDK rejects {p}: {v}");
    }
    for (p, b) in ours.iter().zip(res["build"].as_array().unwrap()) {
        assert_eq!(p, b.as_str().unwrap(), "SDK builds a different package");
    }
    assert!(ours.len() > 200);
}

#[test]
fn floats_and_all_bmp_characters_match_sdk() {
    let py = sdk_python();
    let mut r = Rng(0xdead_beef_cafe_f00d);
    let mut values: Vec<Value> = Vec::new();
    for _ in 0..20_000 {
        values.push(Value::Number(serde_json::Number::from_f64(common::random_f64(&mut r)).unwrap()));
    }
    for _ in 0..5_000 {
        let f = f32::from_bits(r.next() as u32);
        if f.is_finite() {
            values.push(peaqos_core::value::float32(f));
        }
    }
    for e in -330..=310 {
        for m in [1.0, 2.5, 9.999999999999999, 1.7976931348623157] {
            if let Some(n) = serde_json::Number::from_f64(format!("{m}e{e}").parse::<f64>().unwrap()) {
                values.push(Value::Number(n));
            }
        }
    }
    let bmp: String = (0u32..0x10000).filter_map(char::from_u32).collect();
    values.push(Value::String(bmp));
    let astral: String = (0x10000u32..0x110000).step_by(97).filter_map(char::from_u32).collect();
    values.push(Value::String(astral));
    let inputs: Vec<String> = values.iter().map(|v| serde_json::to_string(v).unwrap()).collect();
    let res = run_oracle(&py, &json!({ "canonical": inputs }));
    let outs = res["canonical"].as_array().unwrap();
    assert_eq!(outs.len(), values.len());
    let mut failures = Vec::new();
    for (v, o) in values.iter().zip(outs) {
        let ours = to_canonical_string(v).unwrap();
        let theirs = o["ok"].as_str().unwrap();
        if ours != theirs {
            failures.push(format!("ours {} theirs {}", &ours[..ours.len().min(80)], &theirs[..theirs.len().min(80)]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches, first:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
}
