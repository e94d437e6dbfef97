//! The field paths of a message type, as the node lists them from the installed type, and the
//! one check that a dot path a rule names exists there (field rules and event rules both use it).
//!
//! Paths address fields by name through **nested messages only**: `location`,
//! `header.frame_id`, `pose.pose.position.x`. Arrays of every kind (fixed, bounded, unbounded;
//! of numbers, strings or messages) and `uint8[]`/`byte[]` are **leaves**: a path names the whole
//! array (every element, an empty array included), never an element or a field inside the
//! elements (`status.message` of a `DiagnosticArray` is refused: `status` is an array). A path
//! that names a nested message governs the whole message. Every field of a ROS message is present
//! in every message, so a path the check accepts applies to every message of the topic.

use std::collections::BTreeMap;

/// What a field path of a message type holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Integers of every width, `char`, `octet`.
    Integer,
    /// `float32`, `float64`.
    Float,
    /// `bool`.
    Bool,
    /// `string`, `wstring`.
    Text,
    /// `uint8[]`/`byte[]` (base64 in packages), arrays, sequences, `long double`.
    Other,
    /// A nested message (not a value itself).
    Message,
}

impl FieldKind {
    /// An integer or a float.
    pub fn numeric(self) -> bool {
        matches!(self, FieldKind::Integer | FieldKind::Float)
    }
    /// A number, string or bool.
    pub fn scalar(self) -> bool {
        matches!(self, FieldKind::Integer | FieldKind::Float | FieldKind::Bool | FieldKind::Text)
    }
    /// "an integer", "a float", ...
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Integer => "an integer",
            FieldKind::Float => "a float",
            FieldKind::Bool => "a bool",
            FieldKind::Text => "a string",
            FieldKind::Other => "an array/bytes field",
            FieldKind::Message => "a nested message",
        }
    }
}

/// Every dot path of a message type (nested messages included) → its kind.
pub type FieldCatalog = BTreeMap<String, FieldKind>;

/// The kind of `path` in `catalog`, or why no message of `msg_type` has it: the path goes
/// through an array (arrays are leaves) or through a plain value, or the field does not exist
/// (with the top-level fields listed).
pub fn lookup(catalog: &FieldCatalog, msg_type: &str, path: &str) -> Result<FieldKind, String> {
    if let Some(k) = catalog.get(path) {
        return Ok(*k);
    }
    let mut prefix = String::new();
    for seg in path.split('.') {
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(seg);
        match catalog.get(&prefix) {
            None => break,
            Some(FieldKind::Message) => continue,
            Some(FieldKind::Other) => {
                return Err(format!(
                    "field {path:?} goes through {prefix:?}, an array; arrays are leaves: a rule can only name the whole array {prefix:?}"
                ))
            }
            Some(k) => return Err(format!("field {path:?} goes through {prefix:?}, which is {}, not a nested message", k.name())),
        }
    }
    let top: Vec<&str> = catalog.keys().filter(|k| !k.contains('.')).map(String::as_str).collect();
    Err(format!("field {path:?} does not exist in {msg_type} (its fields: {})", top.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag() -> FieldCatalog {
        [("header", FieldKind::Message), ("header.frame_id", FieldKind::Text), ("status", FieldKind::Other)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    #[test]
    fn lookup_explains() {
        let c = diag();
        assert_eq!(lookup(&c, "t", "header.frame_id"), Ok(FieldKind::Text));
        assert_eq!(lookup(&c, "t", "status"), Ok(FieldKind::Other));
        assert!(lookup(&c, "t", "status.message").unwrap_err().contains("an array"));
        assert!(lookup(&c, "t", "header.frame_id.x").unwrap_err().contains("a string, not a nested message"));
        let e = lookup(&c, "t", "headr").unwrap_err();
        assert!(e.contains("does not exist in t") && e.contains("header, status"), "{e}");
        assert!(lookup(&c, "t", "header.nope").unwrap_err().contains("does not exist"));
    }
}
