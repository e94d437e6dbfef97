//! Metadata templates: `{"order":"${order_id}","n":${$count}}` → bytes of at most
//! [`crate::rules::MAX_METADATA_SIZE`].
//!
//! `${path}` is a field of the window's last package payload; `${$rule}`, `${$topic}`,
//! `${$count}`, `${$first_seq}`, `${$last_seq}` describe the event; `$$` is a literal `$`.
//! Strings are inserted with JSON string escaping (without the quotes), numbers and bools as
//! their JSON text, so a JSON template stays JSON.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
    Rule,
    Topic,
    Count,
    FirstSeq,
    LastSeq,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Why a template cannot be parsed or filled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("a `$` must start a placeholder `${{...}}` (write `$$` for a literal `$`)")]
    BareDollar,
    #[error("unclosed `${{`")]
    Unclosed,
    #[error("unknown placeholder ${{{name}}} (known: $rule, $topic, $count, $first_seq, $last_seq)")]
    UnknownPlaceholder { name: String },
    #[error("empty placeholder `${{}}`")]
    EmptyPlaceholder,
    /// The payload has no scalar at the field path `field`.
    #[error("{field} is missing")]
    FieldMissing { field: String },
}

/// What fills the `$` placeholders.
pub struct EventFacts<'a> {
    pub rule: &'a str,
    pub topic: &'a str,
    pub count: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

fn escape_into(s: &str, out: &mut String) {
    peaqos_base::json::push_str(s, peaqos_base::json::NonAscii::Keep, false, out);
}

impl Template {
    pub fn parse(t: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = t;
        while let Some(i) = rest.find('$') {
            text.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('$') {
                text.push('$');
                rest = r;
                continue;
            }
            let Some(r) = rest.strip_prefix('{') else {
                return Err(TemplateError::BareDollar);
            };
            let end = r.find('}').ok_or(TemplateError::Unclosed)?;
            let name = &r[..end];
            rest = &r[end + 1..];
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(match name {
                "$rule" => Part::Rule,
                "$topic" => Part::Topic,
                "$count" => Part::Count,
                "$first_seq" => Part::FirstSeq,
                "$last_seq" => Part::LastSeq,
                n if n.starts_with('$') => return Err(TemplateError::UnknownPlaceholder { name: n.to_owned() }),
                "" => return Err(TemplateError::EmptyPlaceholder),
                n => Part::Field(n.to_owned()),
            });
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    /// Field paths the template reads.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f.as_str()),
            _ => None,
        })
    }

    /// Bytes of the template without its placeholders.
    pub fn static_len(&self) -> usize {
        self.parts.iter().map(|p| if let Part::Text(t) = p { t.len() } else { 0 }).sum()
    }

    /// Fill the template; a field missing from the payload (or not a scalar) is an error naming it.
    pub fn render(&self, payload: &Map<String, Value>, facts: &EventFacts) -> Result<Vec<u8>, TemplateError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Rule => escape_into(facts.rule, &mut out),
                Part::Topic => escape_into(facts.topic, &mut out),
                Part::Count => out.push_str(&facts.count.to_string()),
                Part::FirstSeq => out.push_str(&facts.first_seq.to_string()),
                Part::LastSeq => out.push_str(&facts.last_seq.to_string()),
                Part::Field(f) => {
                    let mut v = None;
                    for (i, seg) in f.split('.').enumerate() {
                        v = if i == 0 {
                            payload.get(seg)
                        } else {
                            v.and_then(Value::as_object).and_then(|o| o.get(seg))
                        };
                    }
                    match v {
                        Some(Value::String(s)) => escape_into(s, &mut out),
                        Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&v.to_string()),
                        _ => return Err(TemplateError::FieldMissing { field: f.clone() }),
                    }
                }
            }
        }
        Ok(out.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_json_safely() {
        let t = Template::parse(r#"{"order":"${order.id}","n":${$count},"r":"${$rule}","p":"$$5"}"#).unwrap();
        let payload = json!({"order": {"id": "A\"1"}}).as_object().unwrap().clone();
        let facts = EventFacts { rule: "fare", topic: "/t", count: 3, first_seq: 1, last_seq: 3 };
        let out = String::from_utf8(t.render(&payload, &facts).unwrap()).unwrap();
        assert_eq!(out, r#"{"order":"A\"1","n":3,"r":"fare","p":"$5"}"#);
        serde_json::from_str::<Value>(&out).unwrap();
        assert_eq!(t.fields().collect::<Vec<_>>(), vec!["order.id"]);
    }

    #[test]
    fn bad_templates() {
        assert!(Template::parse("a $ b").is_err());
        assert!(Template::parse("${x").is_err());
        assert!(Template::parse("${$nope}").is_err());
        assert_eq!(
            Template::parse("${$nope}").unwrap_err().to_string(),
            "unknown placeholder ${$nope} (known: $rule, $topic, $count, $first_seq, $last_seq)"
        );
        assert_eq!(
            Template::parse("a $ b").unwrap_err().to_string(),
            "a `$` must start a placeholder `${...}` (write `$$` for a literal `$`)"
        );
        assert!(Template::parse("${}").is_err());
        let t = Template::parse("${missing}").unwrap();
        let facts = EventFacts { rule: "r", topic: "/t", count: 1, first_seq: 0, last_seq: 0 };
        assert_eq!(t.render(&Map::new(), &facts), Err(TemplateError::FieldMissing { field: "missing".into() }));
    }
}
