//! The pipeline's payload-store hook: a stored topic's packages go to the store, the log holds
//! references, and a store that cannot make its writes durable (a full disk) publishes nothing
//! of the batch, cuts the store back, refuses new messages, and reuses the sequence numbers.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use peaqos_core::keys::{FieldKey, MachineKey};
use peaqos_core::package_log::{iter_topic, resolve_line};
use peaqos_core::payload::{self, PayloadError, PayloadRef, PayloadResolver, PayloadStore};
use peaqos_core::pipeline::{Pipeline, PipelineConfig, Published, RawMessage};
use peaqos_core::policy::DataEventMap;
use serde_json::{json, Map};

const SK: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const POLICY: &str = "schema_version: 1\ntopics:\n  - topic: /cam\n    type: std_msgs/msg/String\n    queue_size: 1000\n  - topic: /plain\n    type: std_msgs/msg/String\n    queue_size: 1000\n";

/// An in-memory store of `/cam`: `durable` is what a sync made durable and a settle kept.
#[derive(Default)]
struct Mem {
    written: Vec<u8>,
    durable: usize,
    kept: usize,
    settles: Vec<bool>,
}

#[derive(Clone, Default)]
struct MemStore {
    mem: Arc<Mutex<Mem>>,
    fail_sync: Arc<AtomicBool>,
}

impl PayloadStore for MemStore {
    fn stores(&self, topic: &str) -> bool {
        topic == "/cam"
    }
    fn append(&mut self, _topic: &str, _sequence: u64, line: &str) -> Result<PayloadRef, PayloadError> {
        let mut m = self.mem.lock().unwrap();
        let offset = m.written.len() as u64;
        m.written.extend_from_slice(line.as_bytes());
        m.written.push(b'\n');
        Ok(PayloadRef { chunk: 0, offset, length: line.len() as u64, sha256: format!("len{}", line.len()) })
    }
    fn sync(&mut self) -> Result<(), PayloadError> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(PayloadError { message: "no space left on device".into(), disk_full: true });
        }
        let mut m = self.mem.lock().unwrap();
        m.durable = m.written.len();
        Ok(())
    }
    fn settle(&mut self, _topic: &str, committed: bool) {
        let mut m = self.mem.lock().unwrap();
        m.settles.push(committed);
        if committed {
            m.kept = m.durable;
        } else {
            let k = m.kept;
            m.written.truncate(k);
            m.durable = k;
        }
    }
}

impl PayloadResolver for MemStore {
    fn resolve(&self, _topic: &str, r: &PayloadRef) -> Result<String, PayloadError> {
        let m = self.mem.lock().unwrap();
        let (a, b) = (r.offset as usize, (r.offset + r.length) as usize);
        m.written
            .get(a..b)
            .and_then(|s| std::str::from_utf8(s).ok())
            .map(str::to_owned)
            .ok_or_else(|| PayloadError { message: "out of range".into(), disk_full: false })
    }
}

fn msg(i: u64) -> RawMessage {
    let mut f = Map::new();
    f.insert("data".into(), json!(format!("{i}:{}", "y".repeat(2000))));
    RawMessage { fields: f, stamp: None, received: SystemTime::now() }
}

fn start(dir: &Path, store: MemStore, out: Arc<Mutex<Vec<Published>>>) -> Pipeline {
    let map = DataEventMap::from_yaml_str(POLICY, Path::new("inline.yaml")).unwrap();
    let mut cfg = PipelineConfig::new(dir.to_owned());
    cfg.disk_check_interval = Duration::from_millis(50);
    cfg.min_free_bytes = 0;
    Pipeline::start_with_store(
        cfg,
        MachineKey::from_hex(SK).unwrap(),
        FieldKey::from_bytes([7; 32]),
        &map,
        Box::new(move |b| out.lock().unwrap().extend(b)),
        Some(Box::new(store)),
    )
    .unwrap()
}

fn wait(what: &str, f: impl Fn() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn stored_topics_log_references_and_a_failed_store_sync_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemStore::default();
    let out: Arc<Mutex<Vec<Published>>> = Arc::default();
    let mut p = start(dir.path(), store.clone(), out.clone());
    let (cam, plain) = (p.submitter(0).unwrap(), p.submitter(1).unwrap());
    for i in 0..5 {
        assert!(cam.try_submit(msg(i)) && plain.try_submit(msg(i)));
    }
    wait("10 packages", || out.lock().unwrap().len() == 10);

    // The disk fills: the store's sync fails. Nothing of /cam's batch is published or logged,
    // and the store is cut back. (The pipeline refuses until free space is back: here the file
    // system has room, so it accepts again at its next free-space check.)
    store.fail_sync.store(true, Ordering::SeqCst);
    assert!(cam.try_submit(msg(100)));
    wait("the failed batch counted", || p.stats()[0].errors == 1);
    assert_eq!(out.lock().unwrap().len(), 10);
    assert_eq!(store.mem.lock().unwrap().settles.last(), Some(&false));
    let kept = store.mem.lock().unwrap().written.len();
    assert_eq!(kept, store.mem.lock().unwrap().kept);

    // Space is back (the store syncs again; free space above the floor): accepted again, and the
    // failed package's sequence number is reused — the log and the store stay one sequence.
    store.fail_sync.store(false, Ordering::SeqCst);
    wait("accepting again", || p.refusing().is_none());
    assert!(cam.try_submit(msg(6)));
    wait("the next /cam package", || out.lock().unwrap().len() == 11);
    p.shutdown();

    let published = out.lock().unwrap().clone();
    let cam_pub: Vec<&Published> = published.iter().filter(|p| &*p.topic == "/cam").collect();
    assert_eq!(cam_pub.iter().map(|p| p.sequence_number).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5]);
    let raw: Vec<String> = iter_topic(dir.path(), "/cam").unwrap().map(Result::unwrap).collect();
    assert!(raw.iter().all(|l| payload::is_ref_line(l) && l.len() < 200), "{raw:?}");
    let resolved: Vec<String> =
        raw.into_iter().enumerate().map(|(i, l)| resolve_line("/cam", i as u64, l, Some(&store)).unwrap()).collect();
    assert_eq!(resolved, cam_pub.iter().map(|p| p.package_json.clone()).collect::<Vec<_>>());
    // The plain topic's log holds its packages, as before.
    let plain_log: Vec<String> = iter_topic(dir.path(), "/plain").unwrap().map(Result::unwrap).collect();
    assert_eq!(plain_log.len(), 5);
    assert!(plain_log.iter().all(|l| !payload::is_ref_line(l)));
    // A reference line with no resolver is an error naming the topic and package.
    let first = iter_topic(dir.path(), "/cam").unwrap().next().unwrap().unwrap();
    let e = resolve_line("/cam", 0, first, None).unwrap_err().to_string();
    assert!(e.contains("/cam") && e.contains("package 0"), "{e}");
}
