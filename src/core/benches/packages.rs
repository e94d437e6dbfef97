//! Packages per second on one thread: a sensor_msgs/BatteryState-sized message (16 fields
//! incl. two float arrays and strings) through field rules (one encrypt, one anonymize/hash),
//! canonical JSON and EIP-191 signing. Same message and rules as
//! `scripts/bench_sdk_packages.py` (the SDK side). Run: `cargo bench -p peaqos_core`.

use std::hint::black_box;
use std::time::Instant;

use peaqos_core::field_rules::{self, Action, FieldCipher, FieldRule, Strategy, TopicRules};
use peaqos_core::keys::{FieldKey, MachineKey};
use peaqos_core::package::build_signed_package_json;
use peaqos_core::value::{self, iso8601_utc, Timestamp};
use serde_json::{json, Map, Value};

fn battery_state() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "header".into(),
        json!({"stamp": {"sec": 1_735_000_000, "nanosec": 123_456_789}, "frame_id": "base_link"}),
    );
    m.insert("voltage".into(), value::float32(12.6));
    m.insert("temperature".into(), value::float32(31.5));
    m.insert("current".into(), value::float32(-1.25));
    m.insert("charge".into(), value::float32(4.2));
    m.insert("capacity".into(), value::float32(5.0));
    m.insert("design_capacity".into(), value::float32(5.2));
    m.insert("percentage".into(), value::float32(0.81));
    m.insert("power_supply_status".into(), json!(2));
    m.insert("power_supply_health".into(), json!(1));
    m.insert("power_supply_technology".into(), json!(2));
    m.insert("present".into(), json!(true));
    m.insert(
        "cell_voltage".into(),
        Value::Array([3.15f32, 3.16, 3.13, 3.15].iter().map(|&v| value::float32(v)).collect()),
    );
    m.insert(
        "cell_temperature".into(),
        Value::Array([30.5f32, 31.0, 31.5, 30.0].iter().map(|&v| value::float32(v)).collect()),
    );
    m.insert("location".into(), json!("warehouse-7/bay-12"));
    m.insert("serial_number".into(), json!("BAT-2026-000123"));
    m
}

fn main() {
    let key = MachineKey::from_hex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80").unwrap();
    let cipher = FieldCipher::new(&FieldKey::from_bytes([0x11; 32]));
    let rules = TopicRules {
        rules: vec![
            FieldRule { path: "location".into(), action: Action::Encrypt, strategy: None },
            FieldRule { path: "serial_number".into(), action: Action::Anonymize, strategy: Some(Strategy::Hash) },
        ],
        default_action: Action::Include,
    };
    let msg = battery_state();
    let ts = iso8601_utc(Timestamp { sec: 1_767_225_600, nanosec: 0 });
    let run = |n: u64| {
        let start = Instant::now();
        let mut bytes = 0usize;
        for seq in 0..n {
            let payload = field_rules::apply(black_box(&msg), &rules, &cipher).unwrap();
            let p = build_signed_package_json(key.did(), &key, &ts, "1.0.0", seq, payload).unwrap();
            bytes += black_box(p.json).len();
        }
        (start.elapsed(), bytes / n as usize)
    };
    run(2000); // warm-up
    let n = 30_000;
    let (el, size) = run(n);
    let rate = n as f64 / el.as_secs_f64();
    println!(
        "peaqos_core: {n} packages in {:.3} s = {rate:.0} packages/s on one thread ({size} bytes each)",
        el.as_secs_f64()
    );

    // Breakdown (µs per package): field rules alone, canonical JSON alone, signing alone.
    let per = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    let payload = field_rules::apply(&msg, &rules, &cipher).unwrap();
    let t_rules = per(&mut || {
        black_box(field_rules::apply(black_box(&msg), &rules, &cipher).unwrap());
    });
    let mut buf = Vec::with_capacity(2048);
    let t_canon = per(&mut || {
        buf.clear();
        peaqos_core::canonical_json::write_canonical_map(black_box(&payload), &mut buf).unwrap();
    });
    let t_sign = per(&mut || {
        black_box(key.sign_eip191(black_box(&buf)));
    });
    println!("  breakdown: field rules {t_rules:.1} µs, canonical JSON {t_canon:.1} µs, EIP-191 sign {t_sign:.1} µs");
}
