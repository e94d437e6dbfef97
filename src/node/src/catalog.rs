//! The field paths of each topic's installed message type (`peaqos_core::catalog`), listed from
//! the rclrs `DynamicMessageMetadata` structure: the field rules and the event rules are checked
//! against them at start.
use std::collections::HashMap;

use peaqos_core::catalog::{FieldCatalog, FieldKind};
use peaqos_core::policy::DataEventMap;
use rclrs::{BaseType, MessageStructure, ValueKind};

/// Every dot path of a message structure (nested messages included; arrays are leaves).
fn catalog_of(s: &MessageStructure, prefix: &str, out: &mut FieldCatalog) {
    for f in &s.fields {
        let path = if prefix.is_empty() { f.name.clone() } else { format!("{prefix}.{}", f.name) };
        let kind = match (&f.value_kind, &f.base_type) {
            (ValueKind::Simple, BaseType::Message(inner)) => {
                catalog_of(inner, &path, out);
                FieldKind::Message
            }
            (ValueKind::Simple, b) => base_kind(b),
            _ => FieldKind::Other,
        };
        out.insert(path, kind);
    }
}

fn base_kind(b: &BaseType) -> FieldKind {
    match b {
        BaseType::Float | BaseType::Double => FieldKind::Float,
        BaseType::LongDouble => FieldKind::Other,
        BaseType::Boolean => FieldKind::Bool,
        BaseType::String | BaseType::BoundedString { .. } | BaseType::WString | BaseType::BoundedWString { .. } => {
            FieldKind::Text
        }
        BaseType::Message(_) => FieldKind::Message,
        _ => FieldKind::Integer, // char, wchar, octet, (u)int8..64 map to JSON integers
    }
}

/// Topic name → field paths of its type, for every topic whose type is installed (the node
/// refuses to start on the others before it gets here).
pub fn catalogs(map: &DataEventMap) -> HashMap<String, FieldCatalog> {
    let mut m = HashMap::new();
    for t in &map.topics {
        let Ok(name) = rclrs::MessageTypeName::try_from(t.msg_type.as_str()) else {
            continue;
        };
        if let Ok(meta) = rclrs::DynamicMessageMetadata::new(name) {
            let mut c = FieldCatalog::new();
            catalog_of(meta.structure(), "", &mut c);
            m.insert(t.topic.clone(), c);
        }
    }
    m
}
