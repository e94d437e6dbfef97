//! Data Event Map loading: good files load with the right values, each kind of bad file gives
//! an error naming the file and the field path.

use std::path::PathBuf;

use peaqos_core::field_rules::{Action, Strategy};
use peaqos_core::policy::{self, Durability, Qos, Reliability};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

#[test]
fn good_files_load() {
    let m = policy::load(&data("good_full.yaml")).unwrap();
    assert_eq!(m.schema_version, 1);
    assert_eq!(m.package_schema_version, "1.2.0");
    assert_eq!(m.topics.len(), 3);
    let t = &m.topics[0];
    assert_eq!(t.topic, "/battery_state");
    assert_eq!(t.msg_type, "sensor_msgs/msg/BatteryState");
    assert_eq!(t.qos, Qos::SensorData);
    assert_eq!(t.queue_size, 500);
    let rules = t.field_rules();
    assert_eq!(rules.rules.len(), 5);
    assert_eq!(rules.rules[0].action, Action::Anonymize);
    assert_eq!(rules.rules[0].strategy, Some(Strategy::Hash));
    assert_eq!(rules.rules[3].path, "header.frame_id");
    assert_eq!(rules.default_action, Action::Include);
    match m.topics[1].qos {
        Qos::Custom(p) => {
            assert_eq!(p.reliability, Reliability::BestEffort);
            assert_eq!(p.durability, Durability::TransientLocal);
            assert_eq!(p.depth, 20);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m.topics[1].field_rules().default_action, Action::Exclude);
    assert_eq!(m.topics[2].qos, Qos::SystemDefault);
    assert_eq!(m.topics[2].queue_size, policy::DEFAULT_QUEUE_SIZE);
    assert_eq!(m.topics[2].queue_max_bytes, None);

    let m = policy::load(&data("good_minimal.yaml")).unwrap();
    assert_eq!(m.package_schema_version, "1.0.0");
    assert!(m.topics[0].fields.is_empty());
}

#[test]
fn bad_files_name_file_and_path() {
    let cases: &[(&str, &str, &str)] = &[
        ("bad_schema_version.yaml", "schema_version", "unsupported version 2"),
        ("bad_missing_schema.yaml", "<root>", "missing field `schema_version`"),
        ("bad_no_topics.yaml", "topics", "at least one topic"),
        ("bad_duplicate_topic.yaml", "topics[1].topic", "duplicate topic \"/a\""),
        ("bad_relative_topic.yaml", "topics[0].topic", "must be absolute"),
        ("bad_topic_digit.yaml", "topics[0].topic", "must not start with a digit"),
        ("bad_bad_type.yaml", "topics[0].type", "expected pkg/msg/Type"),
        ("bad_unknown_action.yaml", "topics[0].fields[1].action", "unknown variant `shred`"),
        ("bad_missing_strategy.yaml", "topics[0].fields[1].strategy", "required when action is anonymize"),
        ("bad_stray_strategy.yaml", "topics[0].fields[0].strategy", "only allowed when action is anonymize"),
        ("bad_empty_path.yaml", "topics[0].fields[0].path", "must not be empty"),
        ("bad_empty_segment.yaml", "topics[0].fields[0].path", "empty segment"),
        ("bad_unknown_key.yaml", "topics[0].rate", "unknown field `rate`"),
        ("bad_bad_qos.yaml", "topics[0].qos", "unknown variant `fast`"),
        ("bad_bad_qos_map.yaml", "topics[0].qos.reliability", "unknown variant `sometimes`"),
        ("bad_zero_queue.yaml", "topics[0].queue_size", "at least 1"),
        ("bad_default_anonymize.yaml", "topics[0].default_action", "cannot be a default action"),
        ("bad_not_yaml.yaml", "", "line"),
    ];
    for (file, path, reason) in cases {
        let p = data(file);
        let e = policy::load(&p).expect_err(file);
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("{}: ", p.display())), "{file}: {msg}");
        if !path.is_empty() {
            assert_eq!(e.path, *path, "{file}: {msg}");
        }
        assert!(e.reason.contains(reason), "{file}: {msg}");
        eprintln!("{msg}");
    }
    let e = policy::load(&data("does_not_exist.yaml")).unwrap_err();
    assert!(e.to_string().contains("does_not_exist.yaml: <root>: cannot read"), "{e}");
}

#[test]
fn name_checks() {
    for ok in ["/a", "/a/b_c/D9", "/_x"] {
        policy::check_topic_name(ok).unwrap();
    }
    for bad in ["", "/", "a", "/a/", "//a", "/a b", "/1a", "/a/~x"] {
        assert!(policy::check_topic_name(bad).is_err(), "{bad}");
    }
    for ok in ["std_msgs/msg/String", "sensor_msgs/msg/BatteryState", "my_pkg2/msg/T1"] {
        policy::check_type_name(ok).unwrap();
    }
    for bad in ["String", "std_msgs/String", "std_msgs/srv/X", "Std/msg/X", "a/msg/lower", "a/msg/X/Y"] {
        assert!(policy::check_type_name(bad).is_err(), "{bad}");
    }
}
