//! Hostile Data Event Map files (issue 14): a seeded, table-driven suite. Every case must
//! answer within a bound (no hang: FIFOs, deep nesting, aliases), never panic, never accept an
//! invalid value, and every refusal names the file and a key path.
//!
//! Cases: one slot of a valid template replaced by each hostile value (slot × value table, the
//! validity of each pair decided by the slot's own rule), seeded random mutations of the template
//! text, and structural cases (file kinds, sizes, nesting, tags, aliases, encodings).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use peaqos_core::catalog::{FieldCatalog, FieldKind};
use peaqos_core::policy::{self, DataEventMap, PolicyError};

/// Seed of the random mutations: change it to explore, keep it fixed in the repository.
const SEED: u64 = 0x14_5eed;
/// Random mutations per run.
const MUTATIONS: usize = 400;
/// Longest a single file may take to load or be refused.
const BOUND: Duration = Duration::from_secs(2);

const TEMPLATE: &str = "schema_version: 1
package_schema_version: '1.0.0'
topics:
  - topic: /battery_state
    type: sensor_msgs/msg/BatteryState
    qos: {reliability: reliable, durability: volatile, depth: 10}
    queue_size: 100
    fields:
      - {path: location, action: encrypt}
      - {path: serial_number, action: anonymize, strategy: hash}
    default_action: include
";

/// Hostile YAML values, as written in the file.
const VALUES: &[&str] = &[
    "null",
    "~",
    "''",
    "' '",
    "5",
    "-1",
    "0",
    "1",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "9223372036854775807",
    "1e400",
    "-0",
    ".nan",
    "true",
    "[]",
    "{}",
    "[1, 2]",
    "{a: 1}",
    "!foo bar",
    "!!binary AAAA",
    "'/ok'",
    "'a\\nb'",
    "\"a\\nb\"",
    "\"\\u0000\"",
    "'/x/y_z'",
    "'std_msgs/msg/String'",
    "encrypt",
    "hash",
    "reliable",
    "'location'",
    "'header.frame_id'",
    "'a..b'",
    "'.a'",
    "'1.0.0'",
    "&a x",
    "*nope",
];

/// The slots of the template and the rule a value must satisfy there. (`1e400` is text: YAML's
/// float pattern matches it, but it is not a representable float, and serde_yaml_ng reads it as
/// the string "1e400" whether quoted or not.)
/// (template text of the slot, its key path, whether a value is valid there)
type Slot = (&'static str, &'static str, fn(&str) -> bool);

fn slots() -> Vec<Slot> {
    vec![
        ("schema_version: 1", "schema_version", |v| v == "1"),
        ("package_schema_version: '1.0.0'", "package_schema_version", |v| {
            matches!(
                v,
                "encrypt"
                    | "hash"
                    | "reliable"
                    | "'/ok'"
                    | "'/x/y_z'"
                    | "'std_msgs/msg/String'"
                    | "'location'"
                    | "'header.frame_id'"
                    | "'a..b'"
                    | "'.a'"
                    | "'1.0.0'"
                    | "1e400"
                    | "'a\\nb'"
                    | "&a x"
            )
        }),
        ("topic: /battery_state", "topics[0].topic", |v| matches!(v, "'/ok'" | "'/x/y_z'")),
        ("type: sensor_msgs/msg/BatteryState", "topics[0].type", |v| v == "'std_msgs/msg/String'"),
        ("qos: {reliability: reliable, durability: volatile, depth: 10}", "topics[0].qos", |v| v == "reliable"),
        ("depth: 10", "topics[0].qos.depth", |v| matches!(v, "1" | "5")),
        ("queue_size: 100", "topics[0].queue_size", |v| matches!(v, "1" | "5")),
        ("path: location", "topics[0].fields[0].path", |v| {
            matches!(v, "encrypt" | "hash" | "reliable" | "'location'" | "'header.frame_id'" | "&a x")
        }),
        ("action: encrypt", "topics[0].fields[0].action", |v| v == "encrypt"),
        ("strategy: hash", "topics[0].fields[1].strategy", |v| v == "hash"),
        ("default_action: include", "topics[0].default_action", |v| v == "encrypt"),
    ]
}

fn tmp_file(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// Load within [`BOUND`]; a refusal must name the file and a non-empty key path.
fn load_bounded(p: &Path, case: &str) -> Result<DataEventMap, PolicyError> {
    let t = Instant::now();
    let r = policy::load(p);
    assert!(t.elapsed() < BOUND, "{case}: took {:?}", t.elapsed());
    if let Err(e) = &r {
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("{}: ", p.display())), "{case}: {msg}");
        assert!(!e.path.is_empty() && !e.reason.is_empty(), "{case}: {msg}");
        assert!(!msg.contains('\n') && msg.len() < 2000, "{case}: unbounded or multi-line error: {msg:.300}");
    }
    r
}

#[test]
fn slot_values_table() {
    let dir = tempfile::tempdir().unwrap();
    let (mut accepted, mut refused) = (0, 0);
    for (slot, key, valid) in slots() {
        let (name, _) = slot.split_once(": ").unwrap();
        for v in VALUES {
            let text = TEMPLATE.replacen(slot, &format!("{name}: {v}"), 1);
            let case = format!("{key} = {v}");
            let p = tmp_file(dir.path(), "p.yaml", text.as_bytes());
            match (load_bounded(&p, &case), valid(v)) {
                (Ok(_), true) => accepted += 1,
                (Ok(m), false) => panic!("{case}: wrongly accepted: {m:?}"),
                (Err(e), true) => panic!("{case}: wrongly refused: {e}"),
                (Err(e), false) => {
                    refused += 1;
                    // The refusal names this slot's key or a key inside the value (or, for a
                    // value the YAML parser itself cannot read, the file root / enclosing key).
                    let parent = key.rsplit_once('.').map_or("", |(p, _)| p);
                    assert!(
                        e.path == key || e.path == "<root>" || e.path == parent || e.path.starts_with(key),
                        "{case}: names {:?}: {e}",
                        e.path
                    );
                }
            }
        }
    }
    eprintln!("slot table: {} cases, {accepted} accepted, {refused} refused", accepted + refused);
    assert_eq!(accepted + refused, slots().len() * VALUES.len());
}

/// xorshift64*: a tiny deterministic generator (no dependency, same sequence everywhere).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn seeded_text_mutations() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(SEED);
    let noise: &[&[u8]] = &[
        b"[",
        b"{",
        b"]",
        b"}",
        b":",
        b"- ",
        b"\n",
        b"\t",
        b"'",
        b"\"",
        b"!x ",
        b"&a ",
        b"*a",
        b"#",
        b"\0",
        b"\xff",
        b"%YAML 1.1\n",
        b"---\n",
        b"? ",
    ];
    let (mut ok, mut refused) = (0, 0);
    for i in 0..MUTATIONS {
        let mut text = TEMPLATE.as_bytes().to_vec();
        for _ in 0..=rng.below(3) {
            let at = rng.below(text.len() + 1);
            match rng.below(3) {
                0 => {
                    let n = noise[rng.below(noise.len())];
                    text.splice(at..at, n.iter().copied());
                }
                1 if at < text.len() => {
                    text.remove(at);
                }
                _ => {
                    let n = noise[rng.below(noise.len())];
                    text.splice(at..at, n.repeat(1 + rng.below(200)));
                }
            }
        }
        let p = tmp_file(dir.path(), "m.yaml", &text);
        match load_bounded(&p, &format!("mutation {i} (seed {SEED:#x})")) {
            Ok(m) => {
                // What loads must still satisfy every rule of the format.
                assert_eq!(m.schema_version, 1, "mutation {i}");
                for t in &m.topics {
                    policy::check_topic_name(&t.topic).unwrap();
                    policy::check_type_name(&t.msg_type).unwrap();
                }
                ok += 1;
            }
            Err(_) => refused += 1,
        }
    }
    eprintln!("mutations: {MUTATIONS} cases (seed {SEED:#x}), {ok} still valid, {refused} refused");
}

#[test]
fn structural_cases() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cases: Vec<(String, PathBuf, &str, &str)> = Vec::new();
    let mut add = |name: &str, body: Vec<u8>, path: &'static str, reason: &'static str| {
        let p = tmp_file(d, name, &body);
        cases.push((name.to_owned(), p, path, reason));
    };
    add("deep_flow.yaml", b"[".repeat(200_000), "<root>", "nesting deeper than 32");
    add("deep_map.yaml", format!("topics: {}", "{a: ".repeat(50_000)).into_bytes(), "<root>", "nesting deeper than 32");
    add(
        "big.yaml",
        format!("{TEMPLATE}# {}\n", "x".repeat(2 << 20)).into_bytes(),
        "<root>",
        "larger than 1048576 bytes",
    );
    add("not_utf8.yaml", b"schema_version: 1\ntopics: \xff\xfe\n".to_vec(), "<root>", "not UTF-8");
    add(
        "tag.yaml",
        TEMPLATE.replace("type: sensor", "type: !foo sensor").into_bytes(),
        "<root>",
        "YAML tags are not allowed (plain values only) at line 5 column 11",
    );
    add("tag_root.yaml", format!("!bar\n{TEMPLATE}").into_bytes(), "<root>", "YAML tags are not allowed");
    add("std_tag.yaml", TEMPLATE.replace("'1.0.0'", "!!str 1.0.0").into_bytes(), "<root>", "YAML tags are not allowed");
    add(
        "tag_in_flow.yaml",
        TEMPLATE.replace("{path: location,", "{path: !!binary bG9j,").into_bytes(),
        "<root>",
        "YAML tags are not allowed",
    );
    add(
        "long_topic.yaml",
        TEMPLATE.replace("/battery_state", &format!("/{}", "t".repeat(300_000))).into_bytes(),
        "topics[0].topic",
        "longer than 247",
    );
    add(
        "path_int.yaml",
        TEMPLATE.replace("path: location", "path: 5").into_bytes(),
        "topics[0].fields[0].path",
        "expected a string",
    );
    add(
        "psv_null.yaml",
        TEMPLATE.replace("'1.0.0'", "null").into_bytes(),
        "package_schema_version",
        "expected a string",
    );
    add("psv_int.yaml", TEMPLATE.replace("'1.0.0'", "5").into_bytes(), "package_schema_version", "expected a string");
    add(
        "psv_ctrl.yaml",
        TEMPLATE.replace("'1.0.0'", "\"1\\n[ERROR] x\"").into_bytes(),
        "package_schema_version",
        "printable",
    );
    add(
        "depth_2e32.yaml",
        TEMPLATE.replace("depth: 10", "depth: 4294967296").into_bytes(),
        "topics[0].qos.depth",
        "at most 100000",
    );
    add(
        "queue_bytes_tiny.yaml",
        TEMPLATE.replace("queue_size: 100", "queue_size: 100\n    queue_max_bytes: 100").into_bytes(),
        "topics[0].queue_max_bytes",
        "at least 4096",
    );
    add(
        "queue_huge.yaml",
        TEMPLATE.replace("queue_size: 100", "queue_size: 18446744073709551615").into_bytes(),
        "topics[0].queue_size",
        "at most 1000000",
    );
    let laughs = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n";
    add("laughs.yaml", format!("{TEMPLATE}{laughs}").into_bytes(), "", "");
    add("dup_key.yaml", format!("{TEMPLATE}schema_version: 1\n").into_bytes(), "", "duplicate");
    add("empty.yaml", Vec::new(), "<root>", "");
    for (name, p, path, reason) in &cases {
        let e = load_bounded(p, name).expect_err(name);
        if !path.is_empty() {
            assert_eq!(e.path, *path, "{name}: {e}");
        }
        assert!(e.reason.contains(reason), "{name}: {e}");
    }
    // Not regular files: refused at once (a FIFO must not block).
    let fifo = d.join("fifo.yaml");
    let st = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    for p in [fifo, d.to_path_buf(), PathBuf::from("/dev/zero")] {
        let e = load_bounded(&p, &p.display().to_string()).unwrap_err();
        assert!(e.reason.contains("not a regular file"), "{e}");
    }
    eprintln!("structural: {} cases", cases.len() + 3);
}

fn battery_catalog() -> FieldCatalog {
    let mut c = FieldCatalog::new();
    for (k, v) in [
        ("header", FieldKind::Message),
        ("header.stamp", FieldKind::Message),
        ("header.stamp.sec", FieldKind::Integer),
        ("header.stamp.nanosec", FieldKind::Integer),
        ("header.frame_id", FieldKind::Text),
        ("voltage", FieldKind::Float),
        ("cell_voltage", FieldKind::Other),
        ("location", FieldKind::Text),
        ("serial_number", FieldKind::Text),
    ] {
        c.insert(k.into(), v);
    }
    c
}

/// Field rules whose path matches nothing are start errors naming the file, the rule's key, the
/// topic and the rule (issue 14 #1); paths through nested messages and whole arrays are fine.
#[test]
fn field_rule_paths_against_the_type() {
    let file = Path::new("map.yaml");
    let cats: HashMap<String, FieldCatalog> = [("/battery_state".to_owned(), battery_catalog())].into();
    let with = |rules: &str| {
        DataEventMap::from_yaml_str(&format!("schema_version: 1\ntopics:\n  - topic: /battery_state\n    type: sensor_msgs/msg/BatteryState\n    fields: [{rules}]\n"), file).unwrap()
    };
    for good in [
        "{path: location, action: encrypt}",
        "{path: header.frame_id, action: exclude}",
        "{path: header, action: exclude}",
        "{path: cell_voltage, action: encrypt}",
        "{path: header.stamp.sec, action: exclude}",
    ] {
        with(good).check_field_paths(file, &cats).unwrap();
    }
    let bad = [
        (
            "{path: locaton, action: encrypt}",
            "topics[0].fields[0].path",
            "does not exist in sensor_msgs/msg/BatteryState",
        ),
        (
            "{path: location, action: encrypt}, {path: serial_numbr, action: exclude}",
            "topics[0].fields[1].path",
            "\"serial_numbr\" does not exist",
        ),
        ("{path: cell_voltage.first, action: exclude}", "topics[0].fields[0].path", "an array"),
        ("{path: location.x, action: exclude}", "topics[0].fields[0].path", "a string, not a nested message"),
        ("{path: header.sec, action: exclude}", "topics[0].fields[0].path", "does not exist"),
    ];
    for (rules, path, reason) in bad {
        let e = with(rules).check_field_paths(file, &cats).unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.path, path, "{msg}");
        assert!(
            msg.starts_with("map.yaml: ") && msg.contains("topic /battery_state: rule {path: ") && msg.contains(reason),
            "{msg}"
        );
    }
    let e = with("{path: location, action: encrypt}").check_field_paths(file, &HashMap::new()).unwrap_err();
    assert!(e.reason.contains("not known"), "{e}");
}
