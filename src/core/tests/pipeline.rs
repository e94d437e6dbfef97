//! The packaging pipeline end to end: submit → rules → sign → log (fsync) → sink, stats,
//! drops on full queues, errors on bad messages, sequence continuation after restart.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peaqos_core::keys::{FieldKey, MachineKey};
use peaqos_core::package::{verify_package_json, DataPackage};
use peaqos_core::package_log::iter_topic;
use peaqos_core::pipeline::{Pipeline, PipelineConfig, Published, RawMessage};
use peaqos_core::policy::DataEventMap;
use peaqos_core::value::{self, Timestamp};
use serde_json::{json, Map, Value};

const SK: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

const POLICY: &str = r#"
schema_version: 1
topics:
  - topic: /battery_state
    type: sensor_msgs/msg/BatteryState
    queue_size: 10000
    fields:
      - {path: serial_number, action: anonymize, strategy: hash}
      - {path: location, action: encrypt}
      - {path: voltage, action: anonymize, strategy: generalize}
      - {path: cell_voltage, action: exclude}
  - topic: /chatter
    type: std_msgs/msg/String
    queue_size: 3
"#;

fn map() -> DataEventMap {
    DataEventMap::from_yaml_str(POLICY, Path::new("inline.yaml")).unwrap()
}

fn msg(i: u64, stamp: Option<Timestamp>) -> RawMessage {
    let mut f = Map::new();
    f.insert("serial_number".into(), json!(format!("SN-{i}")));
    f.insert("location".into(), json!("lab 3"));
    f.insert("voltage".into(), value::float32(12.6));
    f.insert("cell_voltage".into(), json!([3.1, 3.2]));
    f.insert("percentage".into(), value::float64(i as f64 / 100.0));
    f.insert("i".into(), json!(i));
    RawMessage { fields: f, stamp, received: SystemTime::now() }
}

type Collected = Arc<Mutex<Vec<Published>>>;

fn start(dir: &Path, sink_out: Collected) -> Pipeline {
    let key = MachineKey::from_hex(SK).unwrap();
    let fk = FieldKey::from_bytes([7; 32]);
    Pipeline::start(
        PipelineConfig::new(dir.to_owned()),
        key,
        fk,
        &map(),
        Box::new(move |batch| sink_out.lock().unwrap().extend(batch)),
    )
    .unwrap()
}

#[test]
fn end_to_end_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let out: Collected = Arc::default();
    let mut p = start(dir.path(), out.clone());
    assert_eq!(p.address(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    let s = p.submitter(0).unwrap();
    assert!(p.submitter(2).is_none());
    let stamp = Timestamp { sec: 1_735_000_000, nanosec: 5 };
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    assert!(s.try_submit(msg(t * 1000 + i, if i % 2 == 0 { Some(stamp) } else { None })));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    p.shutdown();
    let got = out.lock().unwrap().clone();
    assert_eq!(got.len(), 1000);
    for (i, pub_) in got.iter().enumerate() {
        assert_eq!(&*pub_.topic, "/battery_state");
        assert_eq!(pub_.sequence_number, i as u64);
        assert_eq!(verify_package_json(&pub_.package_json).unwrap(), p.address());
    }
    let first = DataPackage::from_json(&got[0].package_json).unwrap();
    assert_eq!(first.payload["serial_number"]["strategy"], json!("hash"));
    assert_eq!(first.payload["location"]["__encrypted"], json!(true));
    assert_eq!(first.payload["voltage"]["value"], json!("10-20"));
    assert!(first.payload.get("cell_voltage").is_none());
    assert_eq!(first.schema_version, "1.0.0");
    assert_eq!(first.signing_key_id, format!("{}#keys-1", p.did()));
    let with_stamp =
        got.iter().filter(|x| x.package_json.contains("\"timestamp\":\"2024-12-24T00:26:40.000000005Z\"")).count();
    assert_eq!(with_stamp, 500);

    let st = &p.stats()[0];
    assert_eq!((st.received, st.packaged, st.dropped, st.errors, st.queue_depth), (1000, 1000, 0, 0, 0));
    assert_eq!(st.last_sequence, Some(999));
    let logged: Vec<String> = iter_topic(dir.path(), "/battery_state").unwrap().map(|l| l.unwrap()).collect();
    assert_eq!(logged, got.iter().map(|x| x.package_json.clone()).collect::<Vec<_>>());
    drop(p);

    // Restart: numbering continues.
    let out2: Collected = Arc::default();
    let p2 = start(dir.path(), out2.clone());
    assert_eq!(p2.stats()[0].last_sequence, Some(999));
    assert!(p2.submitter(0).unwrap().try_submit(msg(5, None)));
    assert!(p2.submitter(1).unwrap().try_submit(RawMessage {
        fields: json!({"data": "hi"}).as_object().unwrap().clone(),
        stamp: None,
        received: UNIX_EPOCH + Duration::from_secs(1_767_225_600),
    }));
    drop(p2); // Drop drains and flushes
    let got2 = out2.lock().unwrap().clone();
    assert_eq!(got2.len(), 2);
    let b = got2.iter().find(|x| &*x.topic == "/battery_state").unwrap();
    assert_eq!(b.sequence_number, 1000);
    let c = got2.iter().find(|x| &*x.topic == "/chatter").unwrap();
    assert_eq!(c.sequence_number, 0);
    assert!(c.package_json.contains("\"timestamp\":\"2026-01-01T00:00:00Z\""), "{}", c.package_json);
}

#[test]
fn full_queue_drops_and_bad_messages_count_as_errors() {
    let dir = tempfile::tempdir().unwrap();
    let key = MachineKey::from_hex(SK).unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (entered_tx, entered_rx) = mpsc::channel::<usize>();
    let out: Collected = Arc::default();
    let out2 = out.clone();
    let mut p = Pipeline::start(
        PipelineConfig { batch_max: 1, ..PipelineConfig::new(dir.path().to_owned()) },
        key,
        FieldKey::from_bytes([1; 32]),
        &map(),
        Box::new(move |batch| {
            entered_tx.send(batch.len()).unwrap();
            // Stall the worker until the test releases it.
            let _ = release_rx.recv();
            out2.lock().unwrap().extend(batch);
        }),
    )
    .unwrap();
    let chatter = p.submitter(1).unwrap();
    let m = || RawMessage {
        fields: json!({"data": "x"}).as_object().unwrap().clone(),
        stamp: None,
        received: SystemTime::now(),
    };
    assert!(chatter.try_submit(m()));
    // The worker is now stuck in the sink.
    entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // queue_size 3: three more fit, the rest are dropped without blocking.
    let accepted = (0..10).filter(|_| chatter.try_submit(m())).count();
    assert_eq!(accepted, 3);
    let st = &p.stats()[1];
    assert_eq!((st.received, st.dropped, st.queue_depth), (4, 7, 3));

    // A message whose rules fail (generalize of a number too small to bucket) is an error,
    // and the worker keeps going.
    let bat = p.submitter(0).unwrap();
    let mut bad = msg(1, None);
    bad.fields.insert("voltage".into(), json!(5e-324));
    assert!(bat.try_submit(bad));
    assert!(bat.try_submit(msg(2, None)));
    for _ in 0..20 {
        let _ = release_tx.send(());
    }
    drop(release_tx);
    p.shutdown();
    let st = p.stats();
    assert_eq!((st[1].packaged, st[1].errors, st[1].last_sequence), (4, 0, Some(3)));
    assert_eq!((st[0].received, st[0].packaged, st[0].errors, st[0].last_sequence), (2, 1, 1, Some(0)));
    assert_eq!(out.lock().unwrap().len(), 5);
    let got: Vec<Value> =
        iter_topic(dir.path(), "/battery_state").unwrap().map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["payload"]["i"], json!(2));
}

#[test]
fn handles_are_thread_safe_and_sink_panics_are_contained() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_traits::<peaqos_core::pipeline::Submitter>();
    assert_send_sync::<Pipeline>();

    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Mutex::new(0usize));
    let c2 = calls.clone();
    let mut p = Pipeline::start(
        PipelineConfig { batch_max: 1, ..PipelineConfig::new(dir.path().to_owned()) },
        MachineKey::from_hex(SK).unwrap(),
        FieldKey::from_bytes([1; 32]),
        &map(),
        Box::new(move |_batch| {
            *c2.lock().unwrap() += 1;
            panic!("sink failure");
        }),
    )
    .unwrap();
    let s = p.submitter(1).unwrap();
    for _ in 0..3 {
        while !s.try_submit(RawMessage { fields: Map::new(), stamp: None, received: SystemTime::now() }) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    p.shutdown();
    assert_eq!(*calls.lock().unwrap(), 3);
    assert_eq!(p.stats()[1].packaged, 3);
}

/// A stalled worker: queued plus in-flight message bytes never pass the per-topic and total
/// bounds; the overflow is counted (`dropped_for_bytes`, `dropped_bytes`) and the callback never
/// blocks; once the worker moves on, the reserved bytes are released.
#[test]
fn queues_are_bounded_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let policy = r#"
schema_version: 1
topics:
  - topic: /cam
    type: sensor_msgs/msg/Image
    queue_size: 1000
    queue_max_bytes: 3000000
  - topic: /cam2
    type: sensor_msgs/msg/Image
"#;
    let map = DataEventMap::from_yaml_str(policy, Path::new("inline.yaml")).unwrap();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let m = || RawMessage {
        fields: json!({"data": "A".repeat(1_000_000)}).as_object().unwrap().clone(),
        stamp: None,
        received: SystemTime::now(),
    };
    let size = m().approx_bytes();
    assert!((1_000_000..1_001_000).contains(&size), "estimate {size}");
    let mut p = Pipeline::start(
        PipelineConfig { batch_max: 1, max_queued_bytes: 5 * size, ..PipelineConfig::new(dir.path().to_owned()) },
        MachineKey::from_hex(SK).unwrap(),
        FieldKey::from_bytes([1; 32]),
        &map,
        Box::new(move |batch| {
            entered_tx.send(batch.len()).unwrap();
            // Bounded, so a failing assertion cannot leave the worker (and the test) hanging.
            let _ = release_rx.lock().unwrap().recv_timeout(Duration::from_secs(20));
        }),
    )
    .unwrap();
    let (cam, cam2) = (p.submitter(0).unwrap(), p.submitter(1).unwrap());
    assert!(cam.try_submit(m()));
    entered_rx.recv_timeout(Duration::from_secs(10)).unwrap(); // worker holds message 1 in its sink
                                                               // /cam: 3 MB per topic → the in-flight one plus one more fits.
    let t0 = std::time::Instant::now();
    let accepted = (0..10).filter(|_| cam.try_submit(m())).count();
    assert!(t0.elapsed() < Duration::from_secs(2), "try_submit blocked");
    assert_eq!(accepted, 1);
    // /cam2 (default 64 MiB per topic): the total of five messages leaves room for 3 more.
    let accepted2 = (0..10).filter(|_| cam2.try_submit(m())).count();
    assert_eq!(accepted2, 3);
    assert_eq!(p.queued_bytes(), (5 * size, 5 * size));
    let st = p.stats();
    assert_eq!((st[0].dropped, st[0].dropped_for_bytes, st[0].dropped_bytes), (9, 9, 9 * size));
    assert_eq!((st[1].dropped, st[1].dropped_for_bytes, st[1].queued_bytes), (7, 7, 3 * size));
    assert_eq!(st[0].queued_bytes, 2 * size);
    // A message larger than its topic's bound is never queued.
    let huge = RawMessage { fields: json!({"data": "A".repeat(3_100_000)}).as_object().unwrap().clone(), ..m() };
    assert!(!cam.try_submit(huge));
    for _ in 0..20 {
        let _ = release_tx.send(());
    }
    drop(release_tx);
    p.shutdown();
    let st = p.stats();
    assert_eq!((st[0].packaged, st[1].packaged), (2, 3));
    assert_eq!(p.queued_bytes().0, 0);
    assert_eq!((st[0].queued_bytes, st[1].queued_bytes), (0, 0));
}

/// A free-space floor above what the file system has: every message is refused (counted), the
/// reason is reported, and nothing is written.
#[test]
fn refuses_under_the_free_space_floor() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pipeline::start(
        PipelineConfig { min_free_bytes: u64::MAX, ..PipelineConfig::new(dir.path().to_owned()) },
        MachineKey::from_hex(SK).unwrap(),
        FieldKey::from_bytes([1; 32]),
        &map(),
        Box::new(|_| {}),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while p.refusing().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let why = p.refusing().expect("refusing under the floor");
    assert!(why.contains("disk.min_free_bytes"), "{why}");
    let bat = p.submitter(0).unwrap();
    assert!(!bat.try_submit(msg(1, None)));
    p.shutdown();
    let st = &p.stats()[0];
    assert_eq!((st.received, st.dropped, st.packaged), (0, 1, 0));
}
