//! Engine, rules and durable state, on real signed packages (peaqos_core) and a real package log.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use peaqos_core::keys::MachineKey;
use peaqos_core::package::{build_signed_package_json, verify_package_json};
use peaqos_core::package_log::{LogOptions, PackageLog};
use peaqos_core::policy::DataEventMap;
use peaqos_events::counters::Counters;
use peaqos_events::engine::{Engine, Outcome};
use peaqos_events::processor::Processor;
use peaqos_events::rules::{load_rules, FieldCatalog, FieldKind, Rule};
use peaqos_events::store::EventStore;
use serde_json::{json, Value};

const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

fn key() -> MachineKey {
    MachineKey::from_hex(KEY).unwrap()
}

fn iso(secs: i64) -> String {
    // secs since 2026-01-01T00:00:00Z (1767225600)
    let t = secs;
    format!("2026-01-01T{:02}:{:02}:{:02}.250Z", t / 3600, (t / 60) % 60, t % 60)
}
const BASE: i64 = 1_767_225_600;

fn package(seq: u64, secs: i64, payload: Value) -> String {
    let k = key();
    build_signed_package_json(k.did(), &k, &iso(secs), "1.0.0", seq, payload.as_object().unwrap().clone()).unwrap().json
}

fn catalog() -> HashMap<String, FieldCatalog> {
    let mut fare = FieldCatalog::new();
    fare.insert("data".into(), FieldKind::Float);
    let mut odo = FieldCatalog::new();
    for (p, k) in [
        ("distance", FieldKind::Float),
        ("total", FieldKind::Integer),
        ("status", FieldKind::Text),
        ("ok", FieldKind::Bool),
        ("tx", FieldKind::Text),
        ("secret", FieldKind::Float),
        ("pose", FieldKind::Message),
        ("pose.x", FieldKind::Float),
        ("cells", FieldKind::Other),
    ] {
        odo.insert(p.into(), k);
    }
    HashMap::from([("/fare".to_string(), fare), ("/odom".to_string(), odo)])
}

fn policy(fare_rules: &str, odom_rules: &str) -> String {
    format!(
        "schema_version: 1\ntopics:\n  - topic: /fare\n    type: std_msgs/msg/Float64\n    events:\n{fare_rules}\n  - topic: /odom\n    type: nav_msgs/msg/Odometry\n    fields:\n      - {{path: secret, action: encrypt}}\n    events:\n{odom_rules}\n"
    )
}

fn load(yaml: &str) -> Result<Vec<Rule>, String> {
    let map = DataEventMap::from_yaml_str(yaml, Path::new("p.yaml")).map_err(|e| e.to_string())?;
    load_rules(&map, Path::new("p.yaml"), &catalog()).map_err(|e| e.to_string())
}

const FARE: &str =
    "      - {name: fare, event_type: revenue, value: {field: data}, scale: 100, rounding: half_even, currency: EUR}";

fn engine(fare: &str, odom: &str) -> Engine {
    Engine::new(load(&policy(fare, odom)).unwrap(), &HashMap::new())
}

fn events(out: &[Outcome]) -> Vec<(&peaqos_events::EventOut, &Vec<u8>)> {
    out.iter().filter_map(|o| if let Outcome::Event(e, r) = o { Some((&**e, r)) } else { None }).collect()
}

fn skips(out: &[Outcome]) -> Vec<&'static str> {
    out.iter().filter_map(|o| if let Outcome::Skip(s) = o { Some(s.reason) } else { None }).collect()
}

#[test]
fn per_message_fare_in_euro_cents() {
    let mut e = engine(FARE, "      []");
    let mut out = Vec::new();
    let p = package(0, 10, json!({"data": 12.29}));
    e.on_package("/fare", 0, &p, &mut out);
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    let (ev, raw) = evs[0];
    assert_eq!(ev.value, "1229");
    assert_eq!(ev.currency, "EUR");
    assert_eq!(ev.event_type, 0);
    assert_eq!(ev.timestamp, BASE + 10);
    assert_eq!(ev.id, "fare-0-0");
    assert_eq!(raw.as_slice(), p.as_bytes(), "raw data = the package's canonical JSON");
    assert_eq!(ev.data_hash, format!("0x{}", hex(&peaqos_core::keys::keccak256(raw))));
    verify_package_json(std::str::from_utf8(raw).unwrap()).unwrap();
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn window_of_n_messages_sums_and_raw_is_array_of_packages() {
    let rule = "      - {name: dist, event_type: activity, value: {sum: distance}, scale: 1000, rounding: down, window: {messages: 3}}";
    let mut e = engine("      []", rule);
    let mut out = Vec::new();
    let pk: Vec<String> =
        (0..4).map(|i| package(i, 100 + i as i64, json!({"distance": 0.1 * (i + 1) as f64}))).collect();
    for (i, p) in pk.iter().enumerate() {
        e.on_package("/odom", i as u64, p, &mut out);
    }
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    let (ev, raw) = evs[0];
    assert_eq!(ev.value, "600"); // 0.1 + 0.2 + 0.30000000000000004 → exact decimals of what the packages show
    assert_eq!(ev.currency, "");
    assert_eq!(ev.timestamp, BASE + 102);
    assert_eq!((ev.first_seq, ev.last_seq, ev.count), (0, 2, 3));
    let arr: Vec<Value> = serde_json::from_slice(raw).unwrap();
    assert_eq!(arr.len(), 3);
    assert_eq!(raw.as_slice(), format!("[{},{},{}]", pk[0], pk[1], pk[2]).as_bytes());
    for p in &arr {
        verify_package_json(&p.to_string()).unwrap();
    }
}

#[test]
fn aggregates_min_max_mean_last_count_constant() {
    let rules = "      - {name: mn, event_type: activity, value: {min: distance}, scale: 10, rounding: down, window: {messages: 4}}\n      - {name: mx, event_type: activity, value: {max: distance}, scale: 10, rounding: down, window: {messages: 4}}\n      - {name: me, event_type: activity, value: {mean: distance}, scale: 10, rounding: half_up, window: {messages: 4}}\n      - {name: la, event_type: activity, value: {last: distance}, scale: 10, rounding: down, window: {messages: 4}}\n      - {name: co, event_type: activity, value: count, window: {messages: 4}}\n      - {name: cs, event_type: activity, value: {constant: 7}, window: {messages: 4}}";
    let mut e = engine("      []", rules);
    let mut out = Vec::new();
    for (i, d) in [3.0, 1.0, 4.0, 1.5].iter().enumerate() {
        e.on_package("/odom", i as u64, &package(i as u64, i as i64, json!({"distance": d})), &mut out);
    }
    let got: HashMap<&str, &str> = events(&out).iter().map(|(e, _)| (e.rule.as_str(), e.value.as_str())).collect();
    assert_eq!(got["mn"], "10");
    assert_eq!(got["mx"], "40");
    assert_eq!(got["me"], "24"); // 9.5 / 4 = 2.375 → ×10 = 23.75 → 24
    assert_eq!(got["la"], "15");
    assert_eq!(got["co"], "4");
    assert_eq!(got["cs"], "7");
}

#[test]
fn counter_increase_handles_resets() {
    let rule = "      - {name: odo, event_type: activity, value: {increase: total}, scale: 1, rounding: down, window: {messages: 3}}";
    let mut e = engine("      []", rule);
    let mut out = Vec::new();
    // window 1: 100 (baseline), 110, 125 → 25; window 2: 130, 5 (reset), 20 → 5 + 5 + 15 = 25
    for (i, v) in [100, 110, 125, 130, 5, 20].iter().enumerate() {
        e.on_package("/odom", i as u64, &package(i as u64, i as i64, json!({"total": v})), &mut out);
    }
    let vals: Vec<&str> = events(&out).iter().map(|(e, _)| e.value.as_str()).collect();
    assert_eq!(vals, vec!["25", "25"]);
    assert_eq!(out.iter().filter(|o| matches!(o, Outcome::CounterReset { .. })).count(), 1);
}

#[test]
fn nan_negative_overflow_and_missing_are_reported_and_skipped() {
    let mut e = engine(FARE, "      - {name: dist, event_type: activity, value: {sum: distance}, scale: 1, rounding: down, window: {messages: 3}}");
    let mut out = Vec::new();
    e.on_package("/fare", 0, &package(0, 1, json!({"data": "NaN"})), &mut out);
    e.on_package("/fare", 1, &package(1, 2, json!({"data": -1.5})), &mut out);
    e.on_package("/fare", 2, &package(2, 3, json!({"data": 1e300})), &mut out);
    e.on_package("/fare", 3, &package(3, 4, json!({"other": 1})), &mut out);
    e.on_package("/fare", 4, &package(4, 5, json!({"data": "Infinity"})), &mut out);
    e.on_package("/fare", 5, &package(5, 6, json!({"data": 2.5})), &mut out);
    assert_eq!(skips(&out), vec!["not_finite", "negative", "overflow", "missing_field", "not_finite"]);
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].0.value, "250");
    // In a window a NaN sample is left out (and reported); the others still count.
    out.clear();
    for (i, d) in [json!(1.0), json!("NaN"), json!(2.0)].into_iter().enumerate() {
        e.on_package("/odom", i as u64, &package(i as u64, i as i64, json!({"distance": d})), &mut out);
    }
    assert_eq!(skips(&out), vec!["not_finite"]);
    assert_eq!(events(&out)[0].0.value, "3");
}

#[test]
fn conditions_filter_messages() {
    let rules = "      - {name: done, event_type: activity, value: count, condition: {field: status, op: eq, value: delivered}}\n      - {name: big, event_type: activity, value: {field: distance}, scale: 1, rounding: down, condition: {field: distance, op: gt, value: 5}}\n      - {name: okb, event_type: activity, value: count, condition: {field: ok, op: eq, value: true}}";
    let mut e = engine("      []", rules);
    let mut out = Vec::new();
    let msgs = [
        json!({"status": "delivered", "distance": 1.0, "ok": true}),
        json!({"status": "moving", "distance": 7.0, "ok": false}),
        json!({"status": "delivered", "distance": "NaN", "ok": false}),
    ];
    for (i, m) in msgs.into_iter().enumerate() {
        e.on_package("/odom", i as u64, &package(i as u64, i as i64, m), &mut out);
    }
    let got: Vec<(String, u64)> = events(&out).iter().map(|(e, _)| (e.rule.clone(), e.first_seq)).collect();
    assert_eq!(got, vec![("done".into(), 0), ("okb".into(), 0), ("big".into(), 1), ("done".into(), 2)]);
    assert!(skips(&out).is_empty(), "NaN fails the condition; no skip");
}

#[test]
fn time_windows_close_on_data_and_on_tick() {
    let rule = "      - {name: hourly, event_type: activity, value: {sum: distance}, scale: 1, rounding: down, window: {seconds: 60}}";
    let mut e = engine("      []", rule);
    let mut out = Vec::new();
    for (i, t) in [0i64, 30, 59, 61, 70].iter().enumerate() {
        e.on_package("/odom", i as u64, &package(i as u64, *t, json!({"distance": 1.0})), &mut out);
    }
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    assert_eq!((evs[0].0.value.as_str(), evs[0].0.count, evs[0].0.timestamp), ("3", 3, BASE + 59));
    out.clear();
    e.tick(BASE + 121, &mut out); // bucket [60,120) ends at 120, grace 2 s
    assert!(events(&out).is_empty());
    e.tick(BASE + 122, &mut out);
    let evs = events(&out);
    assert_eq!((evs[0].0.value.as_str(), evs[0].0.first_seq, evs[0].0.last_seq), ("2", 3, 4));
}

/// The longest window accepted (366 days) stays open for a burst of messages an hour apart, and
/// a tick far in the future (no overflow) closes it once.
#[test]
fn longest_window_does_not_close_early() {
    let rule = "      - {name: yearly, event_type: activity, value: count, window: {seconds: 31622400}}";
    let mut e = engine("      []", rule);
    let mut out = Vec::new();
    for i in 0..50u64 {
        e.on_package("/odom", i, &package(i, (i as i64) * 60, json!({"distance": 1.0})), &mut out);
    }
    assert!(events(&out).is_empty(), "a 366-day window closed after 50 minutes");
    e.tick(BASE + 3600, &mut out);
    assert!(events(&out).is_empty());
    e.tick(i64::MAX, &mut out);
    assert_eq!(events(&out).len(), 1);
}

#[test]
fn min_interval_defers_without_losing_aggregates() {
    let rule =
        "      - {name: d, event_type: activity, value: {sum: distance}, scale: 1, rounding: down, min_interval: 10}";
    let mut e = engine("      []", rule);
    let mut out = Vec::new();
    for (i, t) in [0i64, 3, 6, 10, 12].iter().enumerate() {
        e.on_package("/odom", i as u64, &package(i as u64, *t, json!({"distance": 1.0})), &mut out);
    }
    let evs: Vec<(String, i64)> = events(&out).iter().map(|(e, _)| (e.value.clone(), e.timestamp - BASE)).collect();
    assert_eq!(evs, vec![("1".into(), 0), ("3".into(), 10)]);
    assert_eq!(out.iter().filter(|o| matches!(o, Outcome::Deferred { .. })).count(), 3);
}

#[test]
fn metadata_template_and_trust_level_one() {
    let rule = "      - {name: paid, event_type: revenue, value: {field: distance}, scale: 1, rounding: down, currency: USDC, trust_level: 1, source_chain_id: 8453, source_tx_hash_field: tx, metadata: '{\"status\":\"${status}\",\"n\":${$count},\"rule\":\"${$rule}\"}'}";
    let mut e = engine("      []", rule);
    let mut out = Vec::new();
    let tx = format!("0x{}", "AB".repeat(32));
    e.on_package("/odom", 0, &package(0, 1, json!({"distance": 3, "status": "ok \"x\"", "tx": tx})), &mut out);
    e.on_package("/odom", 1, &package(1, 2, json!({"distance": 3, "status": "ok", "tx": "0x12"})), &mut out);
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    let ev = evs[0].0;
    assert_eq!(ev.metadata, r#"{"status":"ok \"x\"","n":1,"rule":"paid"}"#);
    assert_eq!(ev.source_tx_hash.as_deref(), Some(format!("0x{}", "ab".repeat(32)).as_str()));
    assert_eq!((ev.trust_level, ev.source_chain_id), (1, 8453));
    assert_eq!(skips(&out), vec!["bad_source_tx_hash"]);
    // A filled template over the contract's 1024 bytes is skipped, not truncated.
    let mut e = engine("      []", "      - {name: m, event_type: activity, value: count, metadata: '${status}'}");
    out.clear();
    e.on_package("/odom", 0, &package(0, 1, json!({"status": "x".repeat(1025)})), &mut out);
    assert_eq!(skips(&out), vec!["metadata_too_large"]);
}

#[test]
fn bad_rules_are_rejected_naming_rule_and_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("      - {name: a, event_type: revenue, value: {field: nope}, scale: 100, rounding: down, currency: EUR}",
         "p.yaml: topics[1].events[0].value.field: rule \"a\": field \"nope\" does not exist in nav_msgs/msg/Odometry", ""),
        ("      - {name: b, event_type: revenue, value: {field: distance}, scale: 100, rounding: down, currency: eur}",
         "p.yaml: topics[1].events[0].currency: rule \"b\": \"eur\" must match ^[A-Z0-9]{3,10}$", ""),
        ("      - {name: c, event_type: activity, value: {field: distance}, scale: 0, rounding: down}",
         "p.yaml: topics[1].events[0].scale: rule \"c\": must be > 0", ""),
        ("      - {name: d, event_type: activity, value: {sum: secret}, scale: 1, rounding: down}",
         "p.yaml: topics[1].events[0].value.sum: rule \"d\": field \"secret\" is encrypted by the topic's field rules", ""),
        ("      - {name: e, event_type: activity, value: {field: distance}}",
         "p.yaml: topics[1].events[0].scale: rule \"e\": is required", ""),
        ("      - {name: f, event_type: revenue, value: count, currency: EUR, trust_level: 1}",
         "p.yaml: topics[1].events[0].source_tx_hash_field: rule \"f\": trust_level 1 needs", ""),
        ("      - {name: g, event_type: activity, value: count, window: {messages: 0}}",
         "p.yaml: topics[1].events[0].window.messages: rule \"g\": must be 1..=100000", ""),
        // Windows too long to represent or absurd (issue 14 #3): refused when the policy loads.
        ("      - {name: g2, event_type: activity, value: count, window: {seconds: 18446744073709551615}}",
         "p.yaml: topics[1].events[0].window.seconds: rule \"g2\": must be 1..=31622400 seconds", ""),
        ("      - {name: g3, event_type: activity, value: count, window: {seconds: 9223372036854775807}}",
         "p.yaml: topics[1].events[0].window.seconds: rule \"g3\": must be 1..=31622400 seconds", ""),
        ("      - {name: g4, event_type: activity, value: count, window: {seconds: 0}}",
         "p.yaml: topics[1].events[0].window.seconds: rule \"g4\": must be 1..=31622400 seconds", ""),
        ("      - {name: g5, event_type: activity, value: count, window: {messages: 18446744073709551615}}",
         "p.yaml: topics[1].events[0].window.messages: rule \"g5\": must be 1..=100000", ""),
        ("      - {name: g6, event_type: activity, value: count, min_interval: 1e30}",
         "p.yaml: topics[1].events[0].min_interval: rule \"g6\": must be 0..=31622400 seconds", ""),
        ("      - {name: g7, event_type: activity, value: count, window: {seconds: -5}}",
         "p.yaml: topics[1].events[0].window.seconds: rule \"g7\": invalid value", ""),
        ("      - {name: h, event_type: activity, value: count, colour: red}",
         "p.yaml: topics[1].events[0].colour: rule \"h\": unknown field `colour`", ""),
        ("      - {name: i, event_type: activity, value: count, currency: EUR}",
         "p.yaml: topics[1].events[0].currency: rule \"i\": activity events carry no currency", ""),
        ("      - {name: j, event_type: activity, value: {field: status}, scale: 1, rounding: down}",
         "p.yaml: topics[1].events[0].value.field: rule \"j\": field \"status\" is a string, the rule needs a number", ""),
        ("      - {name: k, event_type: activity, value: count, condition: {field: status, op: gt, value: 3}}",
         "p.yaml: topics[1].events[0].condition.field: rule \"k\": field \"status\" is a string", ""),
        ("      - {name: l, event_type: activity, value: count, source_chain_id: 9990}",
         "p.yaml: topics[1].events[0].source_chain_id: rule \"l\": 9990 is not a supported chain", ""),
        ("      - {name: m, event_type: holiday, value: count}",
         "p.yaml: topics[1].events[0].event_type: rule \"m\": unknown variant `holiday`", ""),
        ("      - {name: n, event_type: activity, value: {field: pose}, scale: 1, rounding: down}",
         "p.yaml: topics[1].events[0].value.field: rule \"n\": field \"pose\" is a nested message", ""),
        ("      - {name: o, event_type: activity, value: count, metadata: '${cells}'}",
         "p.yaml: topics[1].events[0].metadata: rule \"o\": field \"cells\" is an array/bytes field", ""),
        ("      - {name: fare, event_type: activity, value: count}",
         "p.yaml: topics[1].events[0].name: rule \"fare\": another rule of the policy has this name", ""),
        ("      - {name: q, event_type: activity, value: {constant: 1.5}}",
         "p.yaml: topics[1].events[0].value.constant: rule \"q\": 15e-1 × scale 1 is not a whole number", ""),
    ];
    for (rule, want, _) in cases {
        let err = load(&policy(FARE, rule)).expect_err(rule);
        assert!(err.starts_with(want), "\n got: {err}\nwant: {want}");
    }
    let big = format!("      - {{name: r, event_type: activity, value: count, metadata: '{}'}}", "x".repeat(1025));
    assert!(load(&policy(FARE, &big)).unwrap_err().contains("at most 1024"));
}

fn write_log(dir: &Path, topic: &str, pk: &[(u64, String)]) {
    let mut log = PackageLog::open(dir, LogOptions::default()).unwrap();
    for (s, p) in pk {
        log.append(topic, *s, p).unwrap();
    }
    log.commit().unwrap();
}

fn names(rules: &[Rule]) -> Vec<String> {
    rules.iter().map(|r| r.name.clone()).collect()
}

#[test]
fn restart_mid_window_loses_nothing_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let yaml = policy(FARE, "      - {name: odo, event_type: activity, value: {increase: total}, scale: 1, rounding: down, window: {messages: 3}}");
    let rules = load(&yaml).unwrap();
    let store = Arc::new(EventStore::open(d).unwrap());
    let counters = Arc::new(Counters::load(store.dir().join("counters.json"), &names(&rules)));
    let pk: Vec<(u64, String)> = (0..8u64).map(|i| (i, package(i, i as i64, json!({"total": 100 + 10 * i})))).collect();

    // First run: packages 0..5 → one event (0-2: 100→120 = 20), window 3..4 open.
    let mut p = Processor::open(d, rules.clone(), Arc::clone(&store), Arc::clone(&counters)).unwrap();
    write_log(d, "/odom", &pk[..5]);
    for (s, j) in &pk[..5] {
        p.handle("/odom", *s, j);
    }
    p.flush();
    drop(p); // "crash": the open window 3..4 was never written anywhere but the package log

    // Restart: the window is rebuilt from the log; 5 closes it (120→150 = 30).
    let mut p = Processor::open(d, rules.clone(), Arc::clone(&store), Arc::clone(&counters)).unwrap();
    write_log(d, "/odom", &pk[5..6]);
    p.handle("/odom", 5, &pk[5].1);
    p.flush();
    let mut ids: Vec<(String, String)> =
        store.pending().unwrap().into_iter().map(|r| (r.event.id, r.event.value)).collect();
    ids.sort();
    assert_eq!(ids, vec![("odo-0-2".into(), "20".into()), ("odo-3-5".into(), "30".into())]);
    let raw = std::fs::read(store.raw_path(&store.pending().unwrap()[1].event.data_hash)).unwrap();
    let arr: Vec<Value> = serde_json::from_slice(&raw).unwrap();
    assert_eq!(arr.iter().map(|v| v["sequenceNumber"].as_u64().unwrap()).collect::<Vec<_>>(), vec![3, 4, 5]);

    // Crash after the event was persisted but before the checkpoint moved: replay produces
    // the same id, which the store refuses — no double.
    write_log(d, "/odom", &pk[6..8]);
    let mut p = Processor::open(d, rules.clone(), Arc::clone(&store), Arc::clone(&counters)).unwrap();
    // 6, 7 were replayed from the log (open window); simulate the tap delivering 8 … no: deliver a duplicate 7.
    p.handle("/odom", 7, &pk[7].1);
    let before = store.pending().unwrap().len();
    std::fs::remove_file(store.dir().join("state.json")).unwrap(); // lose every checkpoint …
    let cps_lost = Processor::open(d, rules.clone(), Arc::clone(&store), Arc::clone(&counters)).unwrap();
    drop(cps_lost);
    assert_eq!(
        store.pending().unwrap().len(),
        before,
        "a rule without checkpoint starts at the log end, never re-emits"
    );
    assert_eq!(counters.snapshot()["odo"].produced, 2);
}

#[test]
fn replay_reproduces_an_event_lost_before_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let yaml = policy(FARE, "      - {name: c3, event_type: activity, value: count, window: {messages: 3}}");
    let rules = load(&yaml).unwrap();
    let store = Arc::new(EventStore::open(d).unwrap());
    let counters = Arc::new(Counters::load(store.dir().join("counters.json"), &names(&rules)));
    let pk: Vec<(u64, String)> = (0..3u64).map(|i| (i, package(i, i as i64, json!({"total": i})))).collect();
    let p = Processor::open(d, rules.clone(), Arc::clone(&store), Arc::clone(&counters)).unwrap();
    drop(p); // checkpoint {consumed_upto: None} stored: the rule is known and starts at 0
    write_log(d, "/odom", &pk);
    // The node died after the packages were durable but before the tap evaluated them.
    let p = Processor::open(d, rules.clone(), Arc::clone(&store), Arc::clone(&counters)).unwrap();
    drop(p);
    let pending = store.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event.id, "c3-0-2");
    // Open again: already produced and checkpointed → nothing new.
    let p = Processor::open(d, rules, Arc::clone(&store), Arc::clone(&counters)).unwrap();
    drop(p);
    assert_eq!(store.pending().unwrap().len(), 1);
}

#[test]
fn replayed_skips_and_resets_are_not_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let yaml = policy(FARE, "      - {name: odo, event_type: activity, value: {increase: total}, scale: 1, rounding: down, window: {messages: 4}}");
    let rules = load(&yaml).unwrap();
    let store = Arc::new(EventStore::open(d).unwrap());
    let counters_path = store.dir().join("counters.json");
    let counters = Arc::new(Counters::load(counters_path.clone(), &names(&rules)));
    // 10, NaN, 5 (reset) — the window stays open across the restart.
    let pk: Vec<(u64, String)> = [json!(10), json!("NaN"), json!(5), json!(8)]
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i as u64, package(i as u64, i as i64, json!({"total": v}))))
        .collect();
    let mut p = Processor::open(d, rules.clone(), Arc::clone(&store), Arc::clone(&counters)).unwrap();
    write_log(d, "/odom", &pk[..3]);
    for (s, j) in &pk[..3] {
        p.handle("/odom", *s, j);
    }
    p.flush();
    drop(p);
    let counters = Arc::new(Counters::load(counters_path, &names(&rules)));
    let mut p = Processor::open(d, rules, Arc::clone(&store), Arc::clone(&counters)).unwrap();
    write_log(d, "/odom", &pk[3..]);
    p.handle("/odom", 3, &pk[3].1);
    p.flush();
    let c = &counters.snapshot()["odo"];
    assert_eq!((c.skipped.get("not_finite").copied(), c.resets, c.produced), (Some(1), 1, 1));
    assert_eq!(store.pending().unwrap()[0].event.value, "8"); // 10 → reset to 5 (+5) → 8 (+3)
}

/// What the event rules report to the package log's retention: everything before the oldest
/// open window (or, with none open, everything seen); packages that do not meet a rule's
/// condition never hold the log; nothing while the checkpoints are not on disk.
#[test]
fn log_position_for_retention() {
    let rules = "      - {name: dist, event_type: activity, value: {sum: distance}, scale: 1000, rounding: down, window: {messages: 3}}\n      - {name: done, event_type: activity, value: count, condition: {field: status, op: eq, value: delivered}, window: {messages: 2}}";
    let mut e = engine("      []", rules);
    let mut out = Vec::new();
    assert_eq!(e.log_needed_after("/odom"), None, "nothing seen");
    let pk = |i: u64, status: &str| package(i, i as i64, json!({"distance": 1.0, "status": status}));
    e.on_package("/odom", 0, &pk(0, "moving"), &mut out);
    assert_eq!(e.log_needed_after("/odom"), None, "window of `dist` open from 0");
    e.on_package("/odom", 1, &pk(1, "moving"), &mut out);
    e.on_package("/odom", 2, &pk(2, "moving"), &mut out);
    assert_eq!(events(&out).len(), 1);
    assert_eq!(e.log_needed_after("/odom"), Some(2), "`done` never matched: it holds nothing");
    e.on_package("/odom", 3, &pk(3, "delivered"), &mut out);
    e.on_package("/odom", 4, &pk(4, "moving"), &mut out);
    assert_eq!(e.log_needed_after("/odom"), Some(2), "both windows open from 3");
    for i in 5..9 {
        e.on_package("/odom", i, &pk(i, "moving"), &mut out);
    }
    // dist: windows 3-5 and 6-8 closed; done: window open from 3 (one of two deliveries).
    assert_eq!(e.log_needed_after("/odom"), Some(2));
    e.on_package("/odom", 9, &pk(9, "delivered"), &mut out);
    assert_eq!(e.log_needed_after("/odom"), Some(8), "`done` closed 3-9; `dist` open from 9");
    assert_eq!(e.log_needed_after("/fare"), None, "no rules on /fare here");

    // The processor hands a position out only once its checkpoints are durable.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rules = load(&policy(FARE, "      []")).unwrap();
    let store = Arc::new(EventStore::open(d).unwrap());
    let counters = Arc::new(Counters::load(store.dir().join("counters.json"), &names(&rules)));
    let mut p = Processor::open(d, rules, Arc::clone(&store), Arc::clone(&counters)).unwrap();
    assert!(p.checkpoints_durable(), "open flushes");
    let f: Vec<(u64, String)> = (0..3).map(|i| (i, package(i, i as i64, json!({"data": 1.5})))).collect();
    write_log(d, "/fare", &f);
    for (s, j) in &f {
        p.handle("/fare", *s, j);
    }
    p.flush();
    assert_eq!(p.log_positions(), vec![("/fare".to_string(), Some(2))]);
}

/// Hand-overs dropped for the byte bound lose nothing: the gap is read from the package log,
/// a package already read from there is not evaluated twice.
#[test]
fn dropped_hand_overs_are_filled_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let yaml = policy("      []", "      - {name: dist, event_type: activity, value: {sum: distance}, scale: 1, rounding: down, window: {messages: 3}}");
    let rules = load(&yaml).unwrap();
    let store = Arc::new(EventStore::open(d).unwrap());
    let counters = Arc::new(Counters::load(store.dir().join("counters.json"), &names(&rules)));
    let pk: Vec<(u64, String)> = (0..9u64).map(|i| (i, package(i, i as i64, json!({"distance": 1.0})))).collect();
    let mut p = Processor::open(d, rules, Arc::clone(&store), Arc::clone(&counters)).unwrap();
    write_log(d, "/odom", &pk);
    // Live: 0, then 1..=4 dropped, 5 arrives (gap filled from the log: 1..=8 read), then 6 and
    // 7 arrive late (already read): skipped.
    assert_eq!(p.handle_next("/odom", 0, &pk[0].1).unwrap(), 0);
    assert_eq!(p.handle_next("/odom", 5, &pk[5].1).unwrap(), 8);
    assert_eq!(p.handle_next("/odom", 6, &pk[6].1).unwrap(), 0);
    assert_eq!(p.catch_up("/odom").unwrap(), 0, "nothing newer in the log");
    p.flush();
    let mut ids: Vec<String> = store.pending().unwrap().into_iter().map(|r| r.event.id).collect();
    ids.sort();
    assert_eq!(ids, vec!["dist-0-2", "dist-3-5", "dist-6-8"]);
}
