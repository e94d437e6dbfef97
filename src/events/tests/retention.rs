//! Retention of `submitted/`: only included events, past the age bound, whose window is behind
//! the rule's stored checkpoint (a replay can never produce them again) are removed; their
//! counts move to `pruned.json` first; raw data goes when nothing refers to it.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use peaqos_events::engine::{Checkpoint, EventOut};
use peaqos_events::store::{EventStore, SubmittedRecord};

fn ev(id: &str, rule: &str, last_seq: u64, hash: &str) -> EventOut {
    EventOut {
        id: id.into(),
        rule: rule.into(),
        topic: "/odom".into(),
        event_type: 1,
        value: "1".into(),
        currency: String::new(),
        timestamp: 1,
        data_hash: hash.into(),
        trust_level: 0,
        source_chain_id: 0,
        source_tx_hash: None,
        metadata: String::new(),
        first_seq: last_seq,
        last_seq,
        count: 1,
    }
}

fn rec(e: EventOut, state: &str) -> SubmittedRecord {
    SubmittedRecord {
        event: e,
        machine_id: "1".into(),
        timestamp: 1,
        intent_id: "i".into(),
        state: state.into(),
        code: String::new(),
    }
}

#[test]
fn only_included_old_and_checkpointed_records_go() {
    let dir = tempfile::tempdir().unwrap();
    let st = EventStore::open(dir.path()).unwrap();
    let h = |n: u8| format!("0x{}", format!("{n:02x}").repeat(32));
    let events = [
        (ev("a-1-1", "a", 1, &h(1)), "included"),
        (ev("a-2-2", "a", 2, &h(2)), "included"),
        (ev("a-9-9", "a", 9, &h(3)), "included"), // behind no checkpoint (checkpoint at 5)
        (ev("a-3-3", "a", 3, &h(4)), "submitted"), // not final
        (ev("b-1-1", "b", 1, &h(1)), "included"), // rule b has no checkpoint; shares a's raw hash
    ];
    for (e, state) in &events {
        assert!(st.persist(e, b"raw", 0).unwrap());
        st.mark_submitted(&[rec(e.clone(), state)]).unwrap();
    }
    st.save_checkpoints(&HashMap::from([(
        "a".to_string(),
        Checkpoint { consumed_upto: Some(5), ..Default::default() },
    )]))
    .unwrap();
    assert_eq!(st.prune_submitted(Duration::ZERO, SystemTime::now()).unwrap(), 0, "0 = off");
    assert_eq!(st.prune_submitted(Duration::from_secs(3600), SystemTime::now()).unwrap(), 0, "too young");
    let later = SystemTime::now() + Duration::from_secs(7200);
    assert_eq!(st.prune_submitted(Duration::from_secs(3600), later).unwrap(), 2);
    let left: Vec<String> = {
        let mut v: Vec<String> = st.submitted().unwrap().into_iter().map(|r| r.event.id).collect();
        v.sort();
        v
    };
    assert_eq!(left, vec!["a-3-3", "a-9-9", "b-1-1"]);
    assert!(!st.known("a-1-1") && st.known("a-9-9"));
    let tally = st.pruned_tally().unwrap();
    assert_eq!((tally.rules["a"].submitted, tally.rules["a"].included), (2, 2));
    assert!(st.raw_path(&h(1)).exists(), "b-1-1 still refers to it");
    assert!(!st.raw_path(&h(2)).exists());
    assert!(st.raw_path(&h(3)).exists());
    // A crash after pruned.json was written but before the files went: the next pass removes
    // them without counting them twice.
    std::fs::write(
        st.dir().join("pruned.json"),
        serde_json::to_vec(
            &serde_json::json!({"rules": {"a": {"submitted": 3, "included": 3}}, "last_batch": ["a-3-3"]}),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(st.prune_submitted(Duration::from_secs(3600), later).unwrap(), 0);
    assert!(!st.known("a-3-3"));
    let tally = st.pruned_tally().unwrap();
    assert_eq!(tally.rules["a"].submitted, 3);
}
