//! The Data Event Map: the YAML policy file that says which topics become signed packages
//! and which field rules apply.
//!
//! ```yaml
//! schema_version: 1                 # required, must be 1
//! package_schema_version: "1.0.0"  # optional, default "1.0.0": schemaVersion written into packages
//! topics:                           # required, at least one
//!   - topic: /battery_state         # required, absolute ROS 2 topic name
//!     type: sensor_msgs/msg/BatteryState   # required, pkg/msg/Type
//!     qos: sensor_data              # optional (default system_default): sensor_data | reliable |
//!                                   #   system_default | {reliability: reliable|best_effort,
//!                                   #   durability: volatile|transient_local, depth: N}
//!     queue_size: 1000              # optional (default 1000): bounded queue callback → packaging
//!     queue_max_bytes: 67108864     # optional (default: the node's pipeline.topic_max_queued_bytes):
//!                                   #   the same queue bounded in (estimated) message bytes
//!     fields:                       # optional: ordered, first match wins (SDK semantics)
//!       - {path: serial_number, action: anonymize, strategy: hash}   # hash | generalize | redact
//!       - {path: location, action: encrypt}
//!       - {path: cell_voltage, action: exclude}
//!     default_action: include       # optional: include | exclude | encrypt (default include)
//! ```
//!
//! The file must be a regular file of at most [`MAX_POLICY_BYTES`]; flow nesting (`[`/`{`) is
//! bounded by [`MAX_FLOW_DEPTH`]; YAML tags (`!foo`, `!!str`) are refused; strings must be written as
//! strings (`path: 5`, `package_schema_version: null` are errors, not "5" / "null").
//! Unknown keys are errors. Every error reads `<file>: <path>: <reason>`, where `<path>` is
//! like `topics[0].fields[1].action` and the reason carries the line/column when known.
//! Semantic checks: `schema_version` is 1, at least one topic, topic and type syntax, no
//! duplicate topics, `strategy` present iff `action: anonymize`, non-empty field paths without
//! empty segments, `queue_size` in 1..=[`MAX_QUEUE_SIZE`], `queue_max_bytes` at least
//! [`MIN_QUEUE_MAX_BYTES`], `depth` in 1..=[`MAX_QOS_DEPTH`],
//! topic names of at most [`MAX_TOPIC_LEN`] characters (rmw's limit), a non-blank
//! `package_schema_version` of printable characters. Field rule paths are checked against the
//! installed message type by [`DataEventMap::check_field_paths`] (see [`crate::catalog`]).

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::catalog::FieldCatalog;
use crate::field_rules::{Action, FieldRule, Strategy, TopicRules};

/// Default `queue_size` of a topic.
pub const DEFAULT_QUEUE_SIZE: usize = 1000;
/// Largest `queue_size`.
pub const MAX_QUEUE_SIZE: usize = 1_000_000;
/// Smallest `queue_max_bytes` of a topic (one small message must always fit).
pub const MIN_QUEUE_MAX_BYTES: u64 = 4096;
/// Largest `qos.depth` (DDS keeps this many samples per reader; rmw fails far above).
pub const MAX_QOS_DEPTH: usize = 100_000;
/// Longest topic name: rmw's `RMW_TOPIC_MAX_NAME_LENGTH` (255 − 8 reserved for prefixes).
pub const MAX_TOPIC_LEN: usize = 247;
/// Largest policy file read.
pub const MAX_POLICY_BYTES: u64 = 1 << 20;
/// Deepest `[`/`{` nesting accepted (checked before the YAML parser sees the text).
pub const MAX_FLOW_DEPTH: usize = 32;
/// Longest `package_schema_version` and field rule path.
pub const MAX_NAME_LEN: usize = 256;

/// A policy file error: `<file>: <path>: <reason>`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {path}: {reason}", file.display())]
pub struct PolicyError {
    /// The policy file.
    pub file: PathBuf,
    /// Path of the offending value, e.g. `topics[0].fields[1].action` (`<root>` for the file).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// The whole Data Event Map.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataEventMap {
    /// Format version of this file (1).
    pub schema_version: u32,
    /// `schemaVersion` written into every package.
    #[serde(default = "default_package_schema_version", deserialize_with = "strict_string")]
    pub package_schema_version: String,
    /// Topics to package.
    pub topics: Vec<TopicPolicy>,
}

fn default_package_schema_version() -> String {
    "1.0.0".to_owned()
}

fn default_queue_size() -> usize {
    DEFAULT_QUEUE_SIZE
}

/// One topic's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicPolicy {
    /// Absolute topic name.
    #[serde(deserialize_with = "strict_string")]
    pub topic: String,
    /// Message type `pkg/msg/Type`.
    #[serde(rename = "type", deserialize_with = "strict_string")]
    pub msg_type: String,
    /// Subscription QoS.
    #[serde(default)]
    pub qos: Qos,
    /// Bounded queue length between the callback and packaging.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// The same queue bounded in estimated message bytes; `None`: the node's default.
    #[serde(default, deserialize_with = "present")]
    pub queue_max_bytes: Option<u64>,
    /// Ordered field rules.
    #[serde(default)]
    pub fields: Vec<FieldRuleSpec>,
    /// Action for fields no rule governs.
    #[serde(default, deserialize_with = "present")]
    pub default_action: Option<Action>,
    /// Encrypted chunk stream of this topic's packages (`peaqos_stream`); the node checks and
    /// interprets this block, naming `topics[i].stream.<key>` in its errors. Absent: no stream.
    #[serde(default)]
    pub stream: Option<serde_yaml_ng::Value>,
    /// Event rules: how this topic's messages become peaqOS events. Checked and interpreted by
    /// the event rule engine, naming `topics[i].events[j].<key>` in its errors.
    #[serde(default)]
    pub events: Vec<serde_yaml_ng::Value>,
}

impl TopicPolicy {
    /// The field rules in the form `field_rules::apply` takes.
    pub fn field_rules(&self) -> TopicRules {
        TopicRules {
            rules: self
                .fields
                .iter()
                .map(|f| FieldRule { path: f.path.clone(), action: f.action, strategy: f.strategy })
                .collect(),
            default_action: self.default_action.unwrap_or(Action::Include),
        }
    }
}

/// One field rule as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRuleSpec {
    /// Dot path.
    #[serde(deserialize_with = "strict_string")]
    pub path: String,
    /// Action.
    pub action: Action,
    /// Anonymize strategy (iff action is anonymize).
    #[serde(default)]
    pub strategy: Option<Strategy>,
}

/// An optional key that, when written, has a value (`default_action: null` is an error, not
/// the default).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A string written as a YAML string: a number, bool or null where text is expected is an error
/// (serde_yaml_ng would otherwise turn `5` / `null` into "5" / "null").
fn strict_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<String, E> {
            Ok(s.to_owned())
        }
    }
    d.deserialize_any(V)
}

/// QoS reliability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reliability {
    /// Reliable.
    Reliable,
    /// Best effort.
    BestEffort,
}

/// QoS durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Volatile.
    Volatile,
    /// Transient local.
    TransientLocal,
}

/// An explicit QoS profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QosProfile {
    /// Reliability.
    pub reliability: Reliability,
    /// Durability.
    pub durability: Durability,
    /// History depth (keep last N).
    pub depth: usize,
}

/// Subscription QoS: a named preset or an explicit profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Qos {
    /// `rmw_qos_profile_sensor_data` (best effort, volatile, depth 5).
    SensorData,
    /// Reliable, volatile, depth 10.
    Reliable,
    /// `rmw_qos_profile_default` (reliable, volatile, depth 10).
    #[default]
    SystemDefault,
    /// Explicit.
    Custom(QosProfile),
}

impl<'de> Deserialize<'de> for Qos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Qos;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("sensor_data, reliable, system_default or {reliability, durability, depth}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Qos, E> {
                match s {
                    "sensor_data" => Ok(Qos::SensorData),
                    "reliable" => Ok(Qos::Reliable),
                    "system_default" => Ok(Qos::SystemDefault),
                    other => Err(E::unknown_variant(other, &["sensor_data", "reliable", "system_default"])),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Qos, A::Error> {
                QosProfile::deserialize(de::value::MapAccessDeserializer::new(map)).map(Qos::Custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl DataEventMap {
    /// Parse and check YAML text; `file` is used in error messages only.
    pub fn from_yaml_str(text: &str, file: &Path) -> Result<DataEventMap, PolicyError> {
        prescan(text).map_err(|reason| PolicyError { file: file.to_owned(), path: "<root>".to_owned(), reason })?;
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let map: DataEventMap = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let mut reason = inner.to_string();
            // serde_yaml_ng prefixes its own (less precise) path; ours is reported separately.
            if let Some((head, rest)) = reason.split_once(": ") {
                if !head.contains(' ') {
                    reason = rest.to_owned();
                }
            }
            if let Some(loc) = inner.location() {
                let suffix = format!(" at line {} column {}", loc.line(), loc.column());
                if !reason.contains(&suffix) {
                    reason.push_str(&suffix);
                }
            }
            // Key paths and reasons may quote keys as written in the file: one bounded line.
            let path = if path == "." { "<root>".to_owned() } else { crate::text::one_line(&path, 200) };
            PolicyError { file: file.to_owned(), path, reason: crate::text::one_line(&reason, 500) }
        })?;
        map.check(file)?;
        Ok(map)
    }

    fn check(&self, file: &Path) -> Result<(), PolicyError> {
        let err = |path: String, reason: String| PolicyError { file: file.to_owned(), path, reason };
        if self.schema_version != 1 {
            return Err(err(
                "schema_version".into(),
                format!("unsupported version {}, expected 1", self.schema_version),
            ));
        }
        if self.package_schema_version.trim().is_empty() {
            return Err(err("package_schema_version".into(), "must not be blank".into()));
        }
        if self.package_schema_version.len() > MAX_NAME_LEN || self.package_schema_version.chars().any(char::is_control)
        {
            return Err(err(
                "package_schema_version".into(),
                format!("must be at most {MAX_NAME_LEN} bytes of printable characters"),
            ));
        }
        if self.topics.is_empty() {
            return Err(err("topics".into(), "at least one topic is required".into()));
        }
        for (i, t) in self.topics.iter().enumerate() {
            check_topic(i, t, &self.topics[..i]).map_err(|(path, reason)| err(path, reason))?;
            for (k, f) in t.fields.iter().enumerate() {
                check_field_rule(f).map_err(|(key, reason)| err(format!("topics[{i}].fields[{k}].{key}"), reason))?;
            }
        }
        Ok(())
    }
}

/// One topic's own keys (`topics[i]`: name, no duplicate among `earlier`, type, queue and QoS
/// bounds, default action); errors as (key path, reason).
fn check_topic(i: usize, t: &TopicPolicy, earlier: &[TopicPolicy]) -> Result<(), (String, String)> {
    if let Err(reason) = check_topic_name(&t.topic) {
        return Err((
            format!("topics[{i}].topic"),
            format!("invalid topic name {}: {reason}", crate::text::quoted(&t.topic)),
        ));
    }
    if let Some(j) = earlier.iter().position(|o| o.topic == t.topic) {
        return Err((
            format!("topics[{i}].topic"),
            format!("duplicate topic {} (also topics[{j}])", crate::text::quoted(&t.topic)),
        ));
    }
    if let Err(reason) = check_type_name(&t.msg_type) {
        return Err((
            format!("topics[{i}].type"),
            format!("invalid message type {}: {reason}", crate::text::quoted(&t.msg_type)),
        ));
    }
    if !(1..=MAX_QUEUE_SIZE).contains(&t.queue_size) {
        return Err((format!("topics[{i}].queue_size"), format!("must be at least 1 and at most {MAX_QUEUE_SIZE}")));
    }
    if t.queue_max_bytes.is_some_and(|b| b < MIN_QUEUE_MAX_BYTES) {
        return Err((format!("topics[{i}].queue_max_bytes"), format!("must be at least {MIN_QUEUE_MAX_BYTES}")));
    }
    if let Qos::Custom(p) = t.qos {
        if !(1..=MAX_QOS_DEPTH).contains(&p.depth) {
            return Err((format!("topics[{i}].qos.depth"), format!("must be at least 1 and at most {MAX_QOS_DEPTH}")));
        }
    }
    if t.default_action == Some(Action::Anonymize) {
        return Err((
            format!("topics[{i}].default_action"),
            "anonymize cannot be a default action (it needs a strategy); use include, exclude or encrypt".into(),
        ));
    }
    Ok(())
}

/// One field rule (`topics[i].fields[k]`): a dot path of ROS field names, and a strategy iff
/// the action is anonymize; errors as (key, reason).
fn check_field_rule(f: &FieldRuleSpec) -> Result<(), (&'static str, String)> {
    if f.path.is_empty() {
        return Err(("path", "must not be empty".into()));
    }
    if f.path.len() > MAX_NAME_LEN {
        return Err(("path", format!("longer than {MAX_NAME_LEN} bytes")));
    }
    if f.path.split('.').any(str::is_empty) {
        return Err((
            "path",
            format!("{} has an empty segment (dot paths like gps.latitude)", crate::text::quoted(&f.path)),
        ));
    }
    if let Some(seg) = f.path.split('.').find(|s| !is_field_name(s)) {
        return Err((
            "path",
            format!(
                "segment {} is not a ROS field name (letters, digits and '_', starting with a letter)",
                crate::text::quoted(seg)
            ),
        ));
    }
    match (f.action, f.strategy) {
        (Action::Anonymize, None) => {
            Err(("strategy", "required when action is anonymize (hash, generalize or redact)".into()))
        }
        (a, Some(_)) if a != Action::Anonymize => Err(("strategy", "only allowed when action is anonymize".into())),
        _ => Ok(()),
    }
}

impl DataEventMap {
    /// Check every field rule's path against its topic's message type (`catalogs`: topic name →
    /// the type's field paths, listed by the node from the installed type). A rule that can never
    /// match is an error naming the file, the rule's key path, the topic and the rule.
    pub fn check_field_paths(&self, file: &Path, catalogs: &HashMap<String, FieldCatalog>) -> Result<(), PolicyError> {
        for (i, t) in self.topics.iter().enumerate() {
            for (k, f) in t.fields.iter().enumerate() {
                let err = |reason: String| PolicyError {
                    file: file.to_owned(),
                    path: format!("topics[{i}].fields[{k}].path"),
                    reason: format!(
                        "topic {}: rule {{path: {}, action: {}}}: {reason}",
                        t.topic,
                        f.path,
                        f.action.as_str()
                    ),
                };
                let catalog =
                    catalogs.get(&t.topic).ok_or_else(|| err(format!("the fields of {} are not known", t.msg_type)))?;
                crate::catalog::lookup(catalog, &t.msg_type, &f.path)
                    .map_err(|reason| err(format!("{reason}; the rule could never apply")))?;
            }
        }
        Ok(())
    }
}

/// Load and check a Data Event Map file: a regular file (a FIFO or device would block or never
/// end) of at most [`MAX_POLICY_BYTES`].
pub fn load(path: &Path) -> Result<DataEventMap, PolicyError> {
    let text = read_bounded(path).map_err(|reason| PolicyError {
        file: path.to_owned(),
        path: "<root>".to_owned(),
        reason,
    })?;
    DataEventMap::from_yaml_str(&text, path)
}

fn read_bounded(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("cannot read: not a regular file".into());
    }
    // O_NONBLOCK: should the path be swapped for a FIFO after the check, open must not block.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    if !f.metadata().map_err(|e| format!("cannot read: {e}"))?.is_file() {
        return Err("cannot read: not a regular file".into());
    }
    let mut bytes = Vec::new();
    f.take(MAX_POLICY_BYTES + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        return Err(format!("larger than {MAX_POLICY_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))
}

/// `O_NONBLOCK` on Linux (all architectures the node builds for).
const O_NONBLOCK: i32 = 0o4000;

/// Check the text before the YAML parser sees it: `[`/`{` nesting is bounded (deep nesting
/// costs the parser seconds before its own recursion limit) and no value carries a YAML tag
/// (`!foo x`, `!!binary x`: the parser would apply or drop them silently). Quoted scalars and
/// comments are skipped; a `!` inside a plain scalar (`a: hi !x`) is text, not a tag.
fn prescan(text: &str) -> Result<(), String> {
    let (mut depth, mut quote, mut comment) = (0usize, None::<u8>, false);
    let (mut line, mut col, mut prev, mut at_value) = (1usize, 0usize, b'\n', true);
    for b in text.bytes() {
        col += 1;
        match (quote, b) {
            (_, b'\n') => {
                (comment, line, col, at_value) = (false, line + 1, 0, true);
            }
            _ if comment => {}
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'#') if prev.is_ascii_whitespace() => comment = true,
            (None, b'!') if at_value => {
                return Err(format!("YAML tags are not allowed (plain values only) at line {line} column {col}"))
            }
            (None, b'\'' | b'"') if at_value => quote = Some(b),
            (None, b'[' | b'{') => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(format!("nesting deeper than {MAX_FLOW_DEPTH} levels at line {line} column {col}"));
                }
            }
            (None, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        // A value may start after indentation, `: `, `- `, `? `, `[`, `{`, `,`, `---`.
        at_value = match b {
            b' ' | b'\t' => at_value || matches!(prev, b':' | b'-' | b'?' | b','),
            b'[' | b'{' | b',' => true,
            b'\n' => true,
            _ => false,
        };
        prev = b;
    }
    Ok(())
}

/// A ROS message field name: a letter, then letters, digits and '_'.
fn is_field_name(s: &str) -> bool {
    s.bytes().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Absolute ROS 2 topic name rules (rmw `validate_full_topic_name`).
pub fn check_topic_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_TOPIC_LEN {
        return Err(format!("longer than {MAX_TOPIC_LEN} characters (rmw's limit)"));
    }
    if !name.starts_with('/') {
        return Err("must be absolute (start with '/')".into());
    }
    if name.len() == 1 {
        return Err("must have at least one token after '/'".into());
    }
    if name.ends_with('/') {
        return Err("must not end with '/'".into());
    }
    for token in name[1..].split('/') {
        if token.is_empty() {
            return Err("must not contain '//'".into());
        }
        if !token.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return Err(format!("token {token:?} may only contain letters, digits and '_'"));
        }
        if token.as_bytes()[0].is_ascii_digit() {
            return Err(format!("token {token:?} must not start with a digit"));
        }
    }
    Ok(())
}

/// `pkg/msg/Type` message type rules.
pub fn check_type_name(name: &str) -> Result<(), String> {
    let parts: Vec<&str> = name.split('/').collect();
    let [pkg, kind, ty] = parts[..] else {
        return Err("expected pkg/msg/Type".into());
    };
    if kind != "msg" {
        return Err(format!("middle part must be 'msg', got {kind:?}"));
    }
    let pkg_ok = pkg.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
        && pkg.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    if !pkg_ok {
        return Err(format!("package {pkg:?} must be lowercase letters, digits and '_', starting with a letter"));
    }
    let ty_ok =
        ty.bytes().next().is_some_and(|c| c.is_ascii_uppercase()) && ty.bytes().all(|c| c.is_ascii_alphanumeric());
    if !ty_ok {
        return Err(format!("type {ty:?} must be CamelCase letters and digits"));
    }
    Ok(())
}
