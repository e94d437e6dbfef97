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
//!     fields:                       # optional: ordered, first match wins (SDK semantics)
//!       - {path: serial_number, action: anonymize, strategy: hash}   # hash | generalize | redact
//!       - {path: location, action: encrypt}
//!       - {path: cell_voltage, action: exclude}
//!     default_action: include       # optional: include | exclude | encrypt (default include)
//! ```
//!
//! Unknown keys are errors. Every error reads `<file>: <path>: <reason>`, where `<path>` is
//! like `topics[0].fields[1].action` and the reason carries the line/column when known.
//! Semantic checks: `schema_version` is 1, at least one topic, topic and type syntax, no
//! duplicate topics, `strategy` present iff `action: anonymize`, non-empty field paths without
//! empty segments, `queue_size`/`depth` ≥ 1, non-blank `package_schema_version`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::field_rules::{Action, FieldRule, Strategy, TopicRules};

/// Default `queue_size` of a topic.
pub const DEFAULT_QUEUE_SIZE: usize = 1000;

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
    #[serde(default = "default_package_schema_version")]
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
    pub topic: String,
    /// Message type `pkg/msg/Type`.
    #[serde(rename = "type")]
    pub msg_type: String,
    /// Subscription QoS.
    #[serde(default)]
    pub qos: Qos,
    /// Bounded queue length between the callback and packaging.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Ordered field rules.
    #[serde(default)]
    pub fields: Vec<FieldRuleSpec>,
    /// Action for fields no rule governs.
    #[serde(default)]
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
    pub path: String,
    /// Action.
    pub action: Action,
    /// Anonymize strategy (iff action is anonymize).
    #[serde(default)]
    pub strategy: Option<Strategy>,
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
            PolicyError { file: file.to_owned(), path: if path == "." { "<root>".to_owned() } else { path }, reason }
        })?;
        map.check(file)?;
        Ok(map)
    }

    fn check(&self, file: &Path) -> Result<(), PolicyError> {
        let err = |path: String, reason: String| PolicyError { file: file.to_owned(), path, reason };
        if self.schema_version != 1 {
            return Err(err("schema_version".into(), format!("unsupported version {}, expected 1", self.schema_version)));
        }
        if self.package_schema_version.trim().is_empty() {
            return Err(err("package_schema_version".into(), "must not be blank".into()));
        }
        if self.topics.is_empty() {
            return Err(err("topics".into(), "at least one topic is required".into()));
        }
        for (i, t) in self.topics.iter().enumerate() {
            if let Err(reason) = check_topic_name(&t.topic) {
                return Err(err(format!("topics[{i}].topic"), format!("invalid topic name {:?}: {reason}", t.topic)));
            }
            if let Some(j) = self.topics[..i].iter().position(|o| o.topic == t.topic) {
                return Err(err(format!("topics[{i}].topic"), format!("duplicate topic {:?} (also topics[{j}])", t.topic)));
            }
            if let Err(reason) = check_type_name(&t.msg_type) {
                return Err(err(format!("topics[{i}].type"), format!("invalid message type {:?}: {reason}", t.msg_type)));
            }
            if t.queue_size == 0 {
                return Err(err(format!("topics[{i}].queue_size"), "must be at least 1".into()));
            }
            if let Qos::Custom(p) = t.qos {
                if p.depth == 0 {
                    return Err(err(format!("topics[{i}].qos.depth"), "must be at least 1".into()));
                }
            }
            if t.default_action == Some(Action::Anonymize) {
                return Err(err(
                    format!("topics[{i}].default_action"),
                    "anonymize cannot be a default action (it needs a strategy); use include, exclude or encrypt".into(),
                ));
            }
            for (k, f) in t.fields.iter().enumerate() {
                if f.path.is_empty() {
                    return Err(err(format!("topics[{i}].fields[{k}].path"), "must not be empty".into()));
                }
                if f.path.split('.').any(str::is_empty) {
                    return Err(err(
                        format!("topics[{i}].fields[{k}].path"),
                        format!("{:?} has an empty segment (dot paths like gps.latitude)", f.path),
                    ));
                }
                match (f.action, f.strategy) {
                    (Action::Anonymize, None) => {
                        return Err(err(
                            format!("topics[{i}].fields[{k}].strategy"),
                            "required when action is anonymize (hash, generalize or redact)".into(),
                        ))
                    }
                    (a, Some(_)) if a != Action::Anonymize => {
                        return Err(err(
                            format!("topics[{i}].fields[{k}].strategy"),
                            "only allowed when action is anonymize".into(),
                        ))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Load and check a Data Event Map file.
pub fn load(path: &Path) -> Result<DataEventMap, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
        file: path.to_owned(),
        path: "<root>".to_owned(),
        reason: format!("cannot read: {e}"),
    })?;
    DataEventMap::from_yaml_str(&text, path)
}

/// Absolute ROS 2 topic name rules (rmw `validate_full_topic_name`).
pub fn check_topic_name(name: &str) -> Result<(), String> {
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
    let ty_ok = ty.bytes().next().is_some_and(|c| c.is_ascii_uppercase()) && ty.bytes().all(|c| c.is_ascii_alphanumeric());
    if !ty_ok {
        return Err(format!("type {ty:?} must be CamelCase letters and digits"));
    }
    Ok(())
}
