//! Messages per second through event evaluation on one thread: a policy with 10 rules over 5
//! topics (per-message revenue with a condition, N-message sums/means, a counter increase,
//! time windows, count, min/max, a metadata template), fed real signed packages the way the
//! node's tap does (`Engine::on_package` on each package's JSON). Events produced are counted,
//! not persisted (the store's fsyncs are per event, not per message).
//! Run: `cargo bench -p peaqos_events` (prints msg/s).

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use peaqos_core::keys::MachineKey;
use peaqos_core::package::build_signed_package_json;
use peaqos_core::policy::DataEventMap;
use peaqos_events::engine::{Engine, Outcome};
use peaqos_events::rules::load_rules;
use serde_json::json;

const POLICY: &str = r#"
schema_version: 1
topics:
  - topic: /orders/completed
    type: example/msg/Order
    events:
      - {name: fare, event_type: revenue, value: {field: fare}, scale: 100, rounding: half_even, currency: EUR, condition: {field: status, op: eq, value: delivered}, metadata: '{"order":"${order_id}"}'}
      - {name: orders, event_type: activity, value: count, window: {messages: 100}}
  - topic: /odom
    type: nav_msgs/msg/Odometry
    events:
      - {name: distance, event_type: activity, value: {sum: twist.twist.linear.x}, scale: 1000, rounding: down, window: {messages: 1000}}
      - {name: speed, event_type: activity, value: {mean: twist.twist.linear.x}, scale: 1000, rounding: half_up, window: {seconds: 60}}
  - topic: /battery_state
    type: sensor_msgs/msg/BatteryState
    events:
      - {name: energy, event_type: activity, value: {increase: charge}, scale: 1000, rounding: down, window: {messages: 500}}
      - {name: low_batt, event_type: activity, value: count, condition: {field: percentage, op: lt, value: 0.05}}
  - topic: /odometer
    type: std_msgs/msg/UInt64
    events:
      - {name: odometer, event_type: activity, value: {increase: data}, scale: 1, rounding: down, window: {seconds: 3600}}
      - {name: odo_max, event_type: activity, value: {max: data}, scale: 1, rounding: down, window: {messages: 1000}}
  - topic: /tasks
    type: example/msg/Task
    events:
      - {name: task_rev, event_type: revenue, value: {sum: price}, scale: 100, rounding: half_even, currency: USD, window: {messages: 50}}
      - {name: task_min, event_type: activity, value: {min: duration}, scale: 1, rounding: down, window: {messages: 200}}
"#;

fn main() {
    let map = DataEventMap::from_yaml_str(POLICY, Path::new("bench.yaml")).unwrap();
    let rules = load_rules(&map, Path::new("bench.yaml"), &HashMap::new()).unwrap();
    assert_eq!(rules.len(), 10);
    let key = MachineKey::from_hex("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap();
    let topics = ["/orders/completed", "/odom", "/battery_state", "/odometer", "/tasks"];
    // 1000 distinct packages per topic, cycled.
    let n = 1000u64;
    let mut pk: Vec<(usize, u64, String)> = Vec::new();
    for i in 0..n {
        let ts = format!("2026-01-01T{:02}:{:02}:{:02}.5Z", (i / 3600) % 24, (i / 60) % 60, i % 60);
        let payloads = [
            json!({"order_id": format!("A-{i}"), "fare": 12.5 + (i % 7) as f64, "status": if i % 3 == 0 {"cancelled"} else {"delivered"}, "customer": "c-17"}),
            json!({"header": {"stamp": {"sec": 1_767_225_600 + i, "nanosec": 5}, "frame_id": "odom"}, "child_frame_id": "base_link",
                   "pose": {"pose": {"position": {"x": 1.5, "y": 2.5, "z": 0.0}, "orientation": {"x": 0.0, "y": 0.0, "z": 0.1, "w": 0.99}}},
                   "twist": {"twist": {"linear": {"x": 0.8 + (i % 5) as f64 * 0.01, "y": 0.0, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": 0.05}}}}),
            json!({"voltage": 12.6, "current": -1.25, "charge": 4.2 - (i % 100) as f64 * 0.001, "percentage": 0.81, "power_supply_status": 2, "present": true}),
            json!({"data": 1_000_000 + i * 3}),
            json!({"task_id": i, "price": 3.99, "duration": 40 + i % 13}),
        ];
        for (t, p) in payloads.into_iter().enumerate() {
            let json = build_signed_package_json(key.did(), &key, &ts, "1.0.0", i, p.as_object().unwrap().clone())
                .unwrap()
                .json;
            pk.push((t, i, json));
        }
    }
    let total: u64 = 2_000_000;
    let mut engine = Engine::new(rules, &HashMap::new());
    let mut out = Vec::new();
    let mut events = 0u64;
    let start = Instant::now();
    let mut seq_base = 0u64;
    let mut k = 0u64;
    while k < total {
        for (t, i, json) in &pk {
            // Sequence numbers keep increasing across cycles (the engine ignores replays).
            engine.on_package(topics[*t], seq_base + i, black_box(json), &mut out);
            events += out.iter().filter(|o| matches!(o, Outcome::Event(..))).count() as u64;
            out.clear();
            k += 1;
        }
        seq_base += n;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "event evaluation: {k} messages (5 topics, 10 rules) in {secs:.2} s = {:.0} msg/s on one thread; {events} events",
        k as f64 / secs
    );
}
