//! Field rules: exactly the SDK's `apply_field_rules` (`peaq_os_sdk/stream/field_rules.py`,
//! SDK 0.12.1, SPEC §5.2).
//!
//! * Rules are ordered; the *governing* rule of a dot path (`gps.latitude`) is the first rule
//!   whose `path` equals it or is a strict ancestor (`gps`).
//! * Top-level keys whose value is `null` bypass all rules and stay `null`.
//! * A non-empty object is acted on as one unit only when every leaf below it has the same
//!   governing rule as the object itself; otherwise the engine descends into its children.
//!   Arrays and empty objects are leaves.
//! * Unmatched paths get `default_action` (default `include`).
//! * `exclude` deletes the path; `encrypt` replaces the value by
//!   `{"__encrypted": true, "ciphertext": base64(iv12 ‖ ct ‖ tag16), "algorithm": "AES-256-GCM"}`
//!   (plaintext = canonical JSON of the value, random 12-byte IV per field, no AAD);
//!   `anonymize` replaces it by `{"__anonymized": true, "value": …, "strategy": …}` with
//!   `hash` = `"0x" + sha256(canonical JSON)`, `redact` = `"[REDACTED]"`, and `generalize`:
//!   numbers → decade bucket `"40-50"` (`0` → `"0-1"`), strings of ≤1 character → `"*"`,
//!   ≤4 → `"***"`, else first two characters + `***` + last character; booleans and null
//!   → `"***"`; arrays and objects element-wise.
//! * Writes go through dot paths exactly like the SDK's `set_field_at_path` /
//!   `delete_field_at_path` (intermediate non-objects are replaced by objects on write).
//!
//! Known divergence: keys that themselves contain `.` are ambiguous in the SDK (the path
//! `a.b` addresses both `{"a.b": …}` and `{"a": {"b": …}}`); the outcome can then depend on
//! key iteration order, which is Python insertion order in the SDK and serde_json map order
//! here. ROS field names never contain dots.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::canonical_json::{self, CanonicalError};
use crate::keys::FieldKey;

/// What a rule does to the values it governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Keep as is.
    Include,
    /// Remove.
    Exclude,
    /// AES-256-GCM encrypt with the field key.
    Encrypt,
    /// Replace by an anonymized form (needs a strategy).
    Anonymize,
}

impl Action {
    /// The policy file's name of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Include => "include",
            Action::Exclude => "exclude",
            Action::Encrypt => "encrypt",
            Action::Anonymize => "anonymize",
        }
    }
}

/// How `anonymize` transforms a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// `0x` + sha256 of the canonical JSON.
    Hash,
    /// Buckets/masks (see module doc).
    Generalize,
    /// `[REDACTED]`.
    Redact,
}

impl Strategy {
    /// The SDK's name of the strategy.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Hash => "hash",
            Strategy::Generalize => "generalize",
            Strategy::Redact => "redact",
        }
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRule {
    /// Dot path (`gps.latitude`).
    pub path: String,
    /// Action.
    pub action: Action,
    /// Required iff `action` is `Anonymize`.
    pub strategy: Option<Strategy>,
}

/// The ordered rules of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRules {
    /// Ordered rules, first match wins.
    pub rules: Vec<FieldRule>,
    /// Action for paths no rule governs.
    pub default_action: Action,
}

impl Default for TopicRules {
    fn default() -> Self {
        TopicRules { rules: Vec::new(), default_action: Action::Include }
    }
}

/// Field rule errors; each names the field path concerned.
#[derive(Debug, thiserror::Error)]
pub enum FieldRuleError {
    /// Anonymize without strategy (e.g. `default_action: anonymize`).
    #[error("field {path}: anonymize_strategy is required when action is anonymize")]
    MissingStrategy {
        /// Field path.
        path: String,
    },
    /// Canonical serialisation failed.
    #[error("field {path}: {source}")]
    Canonical {
        /// Field path.
        path: String,
        /// Cause.
        source: CanonicalError,
    },
    /// Encryption failed.
    #[error("field {path}: encryption failed: {reason}")]
    Encrypt {
        /// Field path.
        path: String,
        /// Cause.
        reason: String,
    },
    /// A number too small to bucket (the SDK raises OverflowError here).
    #[error("field {path}: cannot generalize number {value:e}")]
    Generalize {
        /// Field path.
        path: String,
        /// The number.
        value: f64,
    },
}

/// Where encryption IVs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IvSource {
    /// Fresh random 12 bytes per field (production).
    Random,
    /// Always the same IV (tests reproducing SDK vectors only; never in production).
    Fixed([u8; 12]),
}

/// AES-256-GCM for `encrypt` rules.
pub struct FieldCipher {
    cipher: Aes256Gcm,
    iv: IvSource,
}

impl std::fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldCipher").field("key", &"[REDACTED]").field("iv", &self.iv).finish()
    }
}

impl FieldCipher {
    /// A cipher with random IVs.
    pub fn new(key: &FieldKey) -> FieldCipher {
        Self::with_iv_source(key, IvSource::Random)
    }

    /// A cipher with the given IV source.
    pub fn with_iv_source(key: &FieldKey, iv: IvSource) -> FieldCipher {
        FieldCipher { cipher: Aes256Gcm::new(key.bytes().into()), iv }
    }

    /// `base64(iv ‖ ct ‖ tag)` of `plaintext`.
    pub fn seal(&self, plaintext: &[u8]) -> Result<String, String> {
        let iv = match self.iv {
            IvSource::Fixed(iv) => iv,
            IvSource::Random => {
                let mut iv = [0u8; 12];
                getrandom::getrandom(&mut iv).map_err(|e| format!("random source: {e}"))?;
                iv
            }
        };
        let ct = self.cipher.encrypt(&Nonce::from(iv), plaintext).map_err(|e| e.to_string())?;
        let mut packed = Vec::with_capacity(12 + ct.len());
        packed.extend_from_slice(&iv);
        packed.extend_from_slice(&ct);
        Ok(crate::b64::encode(&packed))
    }

    /// Decrypt `base64(iv ‖ ct ‖ tag)`; `None` when malformed or not authentic.
    pub fn open(&self, ciphertext_b64: &str) -> Option<Vec<u8>> {
        let packed = crate::b64::decode(ciphertext_b64)?;
        if packed.len() < 28 {
            return None;
        }
        let mut iv = [0u8; 12];
        iv.copy_from_slice(&packed[..12]);
        self.cipher.decrypt(&Nonce::from(iv), &packed[12..]).ok()
    }
}

/// Apply `rules` to a message's top-level `fields` (the SDK's `apply_field_rules`).
pub fn apply(
    fields: &Map<String, Value>,
    rules: &TopicRules,
    cipher: &FieldCipher,
) -> Result<Map<String, Value>, FieldRuleError> {
    let mut output = fields.clone();
    if rules.rules.is_empty() && rules.default_action == Action::Include {
        return Ok(output);
    }
    let mut path = String::with_capacity(64);
    for (k, v) in fields {
        if v.is_null() {
            continue;
        }
        path.clear();
        path.push_str(k);
        process_node(&mut output, &mut path, v, rules, cipher)?;
    }
    Ok(output)
}

fn governing(rules: &[FieldRule], path: &str) -> Option<usize> {
    rules.iter().position(|r| {
        path.len() >= r.path.len()
            && path.as_bytes().starts_with(r.path.as_bytes())
            && (path.len() == r.path.len() || path.as_bytes()[r.path.len()] == b'.')
    })
}

fn process_node(
    output: &mut Map<String, Value>,
    path: &mut String,
    value: &Value,
    rules: &TopicRules,
    cipher: &FieldCipher,
) -> Result<(), FieldRuleError> {
    let rule = governing(&rules.rules, path);
    if let Value::Object(obj) = value {
        if !obj.is_empty() && !subtree_uniform(obj, path, &rules.rules, rule) {
            let len = path.len();
            for (k, child) in obj {
                path.push('.');
                path.push_str(k);
                process_node(output, path, child, rules, cipher)?;
                path.truncate(len);
            }
            return Ok(());
        }
    }
    let (action, strategy) = match rule {
        Some(i) => (rules.rules[i].action, rules.rules[i].strategy),
        None => (rules.default_action, None),
    };
    match action {
        Action::Include => Ok(()),
        Action::Exclude => {
            delete_field_at_path(output, path);
            Ok(())
        }
        Action::Encrypt => {
            let replacement = encrypt_value(value, cipher, path)?;
            set_field_at_path(output, path, replacement);
            Ok(())
        }
        Action::Anonymize => {
            let Some(strategy) = strategy else {
                return Err(FieldRuleError::MissingStrategy { path: path.clone() });
            };
            let replacement = anonymize_value(value, strategy, path)?;
            set_field_at_path(output, path, replacement);
            Ok(())
        }
    }
}

fn subtree_uniform(obj: &Map<String, Value>, path: &mut String, rules: &[FieldRule], root: Option<usize>) -> bool {
    let len = path.len();
    for (k, child) in obj {
        path.push('.');
        path.push_str(k);
        let ok = match child {
            Value::Object(m) if !m.is_empty() => subtree_uniform(m, path, rules, root),
            _ => governing(rules, path) == root,
        };
        path.truncate(len);
        if !ok {
            return false;
        }
    }
    true
}

/// The SDK's `set_field_at_path`: write through dot segments, replacing missing or non-object
/// intermediates by new objects.
fn set_field_at_path(root: &mut Map<String, Value>, path: &str, value: Value) {
    if path.is_empty() {
        return;
    }
    let mut segments = path.split('.').peekable();
    let mut current = root;
    while let Some(seg) = segments.next() {
        if segments.peek().is_none() {
            current.insert(seg.to_owned(), value);
            return;
        }
        let slot = current.entry(seg.to_owned()).or_insert(Value::Null);
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        current = match slot {
            Value::Object(m) => m,
            _ => return,
        };
    }
}

/// The SDK's `delete_field_at_path`: remove only when the whole path exists through objects.
fn delete_field_at_path(root: &mut Map<String, Value>, path: &str) {
    if path.is_empty() {
        return;
    }
    let mut segments = path.split('.').peekable();
    let mut current = root;
    while let Some(seg) = segments.next() {
        if segments.peek().is_none() {
            current.remove(seg);
            return;
        }
        current = match current.get_mut(seg) {
            Some(Value::Object(m)) => m,
            _ => return,
        };
    }
}

fn encrypt_value(value: &Value, cipher: &FieldCipher, path: &str) -> Result<Value, FieldRuleError> {
    let mut plaintext = Vec::with_capacity(64);
    canonical_json::write_canonical(value, &mut plaintext)
        .map_err(|source| FieldRuleError::Canonical { path: path.to_owned(), source })?;
    let ct = cipher.seal(&plaintext).map_err(|reason| FieldRuleError::Encrypt { path: path.to_owned(), reason })?;
    let mut m = Map::new();
    m.insert("__encrypted".to_owned(), Value::Bool(true));
    m.insert("ciphertext".to_owned(), Value::String(ct));
    m.insert("algorithm".to_owned(), Value::String("AES-256-GCM".to_owned()));
    Ok(Value::Object(m))
}

/// `{"__anonymized": true, "value": …, "strategy": …}` of `value`.
pub fn anonymize_value(value: &Value, strategy: Strategy, path: &str) -> Result<Value, FieldRuleError> {
    let v = match strategy {
        Strategy::Hash => {
            let mut buf = Vec::with_capacity(64);
            canonical_json::write_canonical(value, &mut buf)
                .map_err(|source| FieldRuleError::Canonical { path: path.to_owned(), source })?;
            Value::String(format!("0x{}", hex::encode(Sha256::digest(&buf))))
        }
        Strategy::Generalize => generalize(value, path)?,
        Strategy::Redact => Value::String("[REDACTED]".to_owned()),
    };
    let mut m = Map::new();
    m.insert("__anonymized".to_owned(), Value::Bool(true));
    m.insert("value".to_owned(), v);
    m.insert("strategy".to_owned(), Value::String(strategy.as_str().to_owned()));
    Ok(Value::Object(m))
}

fn generalize(value: &Value, path: &str) -> Result<Value, FieldRuleError> {
    Ok(match value {
        Value::Bool(_) | Value::Null => Value::String("***".to_owned()),
        Value::Number(n) => {
            // Python: float(value) (ints round to nearest, as `as f64` does).
            let f = if let Some(u) = n.as_u64() {
                u as f64
            } else if let Some(i) = n.as_i64() {
                i as f64
            } else {
                n.as_f64().unwrap_or(f64::NAN)
            };
            if !f.is_finite() {
                Value::String("***".to_owned())
            } else {
                Value::String(
                    bucket_number(f).ok_or_else(|| FieldRuleError::Generalize { path: path.to_owned(), value: f })?,
                )
            }
        }
        Value::String(s) => {
            let n = s.chars().count();
            Value::String(if n <= 1 {
                "*".to_owned()
            } else if n <= 4 {
                "***".to_owned()
            } else {
                let first2: String = s.chars().take(2).collect();
                let last = s.chars().next_back().unwrap_or_default();
                format!("{first2}***{last}")
            })
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| generalize(x, path)).collect::<Result<_, _>>()?),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                out.insert(k.clone(), generalize(x, path)?);
            }
            Value::Object(out)
        }
    })
}

/// Correctly rounded `float(int("<q>e<e>"))`, i.e. Python's `float(q * 10**e)` for `e >= 0`.
fn scaled(q: f64, e: i32) -> f64 {
    format!("{q:.0}e{e}").parse::<f64>().unwrap_or(f64::NAN)
}

/// The SDK's `_bucket_number` (decade bucket); `None` where the SDK raises.
fn bucket_number(value: f64) -> Option<String> {
    if value == 0.0 {
        return Some("0-1".to_owned());
    }
    let exponent = value.abs().log10().floor();
    if !exponent.is_finite() {
        return None;
    }
    let e = exponent as i32;
    let (lower, upper) = if e >= 0 {
        // Python: step = 10**e is an int; value / step converts it to the nearest float;
        // floor(...) is an int q and lower = q * 10**e, upper = (q+1) * 10**e exactly, then
        // converted to float when formatted.
        let step = scaled(1.0, e);
        let q = (value / step).floor();
        if !q.is_finite() {
            return None;
        }
        (scaled(q, e), scaled(q + 1.0, e))
    } else {
        // Python: 10**e with e < 0 is float pow (libm, as here); all float arithmetic.
        let step = 10f64.powf(f64::from(e));
        let q = (value / step).floor();
        if !q.is_finite() {
            return None;
        }
        let lower = q * step;
        (lower, lower + step)
    };
    Some(format!("{}-{}", fmt10(lower), fmt10(upper)))
}

/// Python `format(n, ".10f").rstrip("0").rstrip(".") or "0"`.
fn fmt10(n: f64) -> String {
    let s = format!("{n:.10}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".to_owned()
    } else if s == "-0" {
        // Python prints "-0.0000000000" → "-0" too.
        s.to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        assert_eq!(bucket_number(47.3769).unwrap(), "40-50");
        assert_eq!(bucket_number(1234.0).unwrap(), "1000-2000");
        assert_eq!(bucket_number(0.0).unwrap(), "0-1");
        assert_eq!(bucket_number(-47.0).unwrap(), "-50--40");
        assert_eq!(bucket_number(0.0123).unwrap(), "0.01-0.02");
    }
}
