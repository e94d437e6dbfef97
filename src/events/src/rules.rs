//! The event rule schema (`topics[i].events[j]` of the Data Event Map), its loading and the
//! checks that reject, at start, every rule that could never fire.
//!
//! ```yaml
//! events:
//!   - name: fare                  # required, unique in the policy, [A-Za-z0-9_-]{1,64}
//!     event_type: revenue         # revenue | activity
//!     value: {field: fare}        # {field: p} | {constant: 5} | count | {sum: p} | {min: p} |
//!                                 #   {max: p} | {last: p} | {mean: p} | {increase: p}
//!     scale: 100                  # required for field values: × scale → integer minor units, > 0
//!     rounding: half_even         # required for field values: down|up|half_up|half_down|half_even
//!     currency: EUR               # revenue: [A-Z0-9]{3,10} (required); activity: omitted or ""
//!     trust_level: 0              # 0 self-reported (default) | 1 on-chain (needs source_tx_hash_field) | 2 hardware
//!     source_chain_id: 0          # 0 (default), 3338, 1, 8453, 137, 42161, 10
//!     source_tx_hash_field: tx    # trust 1 only: a string field holding 0x + 64 hex digits
//!     window: {messages: 1}       # {messages: N} (default 1 = per message, N <= 100000) |
//!                                 #   {seconds: T} (1..=31622400, i.e. at most 366 days)
//!     min_interval: 0             # seconds between two events of this rule (default 0, <= 366 days)
//!     condition: {field: status, op: eq, value: delivered}   # eq|ne|gt|ge|lt|le
//!     metadata: '{"order":"${order_id}"}'   # ${path} and ${$rule} ${$topic} ${$count}
//!                                           # ${$first_seq} ${$last_seq}; $$ = $
//! ```
//!
//! Errors read `<file>: topics[i].events[j].<key>: rule "<name>": <reason>`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use peaqos_core::field_rules::Action;
use peaqos_core::policy::{DataEventMap, TopicPolicy};
use serde::Deserialize;

use crate::decimal::{Dec, Rounding};
use crate::metadata::Template;

/// The largest `window: {messages: N}`: a window's packages are held until it closes (its
/// `raw_data` is all of them).
pub const MAX_WINDOW_MESSAGES: u64 = 100_000;

/// The contract's `MAX_METADATA_SIZE` (defined once, by the chain client).
pub use peaqos_chain::validation::MAX_METADATA_SIZE;

/// A rule that cannot be loaded: `<file>: topics[i].events[j].<key>: rule "<name>": <reason>`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {path}: rule {rule:?}: {reason}", file.display())]
pub struct RuleError {
    pub file: PathBuf,
    pub path: String,
    pub rule: String,
    pub reason: String,
}

/// What the node knows about a field path of a topic's message type (one definition, in
/// `peaqos_core::catalog`, shared with the field rules' path check).
pub use peaqos_core::catalog::{FieldCatalog, FieldKind};

// ------------------------------------------------------------------ schema (as written)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Revenue,
    Activity,
}

impl EventType {
    /// The contract's `eventType`.
    pub fn code(self) -> u8 {
        match self {
            EventType::Revenue => 0,
            EventType::Activity => 1,
        }
    }
}

#[derive(Debug, Clone)]
enum ValueSpec {
    Field(String),
    Constant(serde_yaml_ng::Value),
    Count,
    Sum(String),
    Min(String),
    Max(String),
    Last(String),
    Mean(String),
    Increase(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowSpec {
    messages: Option<u64>,
    seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionSpec {
    field: String,
    op: Op,
    value: serde_yaml_ng::Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    event_type: EventType,
    value: serde_yaml_ng::Value,
    #[serde(default)]
    scale: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    rounding: Option<Rounding>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    trust_level: u8,
    #[serde(default)]
    source_chain_id: u64,
    #[serde(default)]
    source_tx_hash_field: Option<String>,
    #[serde(default)]
    window: Option<WindowSpec>,
    #[serde(default)]
    min_interval: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    condition: Option<ConditionSpec>,
    #[serde(default)]
    metadata: Option<String>,
}

// ------------------------------------------------------------------ compiled rules

/// A dot path, split once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    pub text: String,
    pub segments: Vec<String>,
}

impl FieldPath {
    fn new(text: &str) -> Option<FieldPath> {
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        if text.is_empty() || segments.iter().any(String::is_empty) {
            return None;
        }
        Some(FieldPath { text: text.to_owned(), segments })
    }

    /// The value at this path in a package payload.
    pub fn get<'a>(&self, payload: &'a serde_json::Map<String, serde_json::Value>) -> Option<&'a serde_json::Value> {
        let (first, rest) = self.segments.split_first()?;
        let mut v = payload.get(first)?;
        for s in rest {
            v = v.as_object()?.get(s)?;
        }
        Some(v)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where the event value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// The field of the window's last message (per message: that message's).
    Field(FieldPath),
    Constant(Dec),
    /// Messages in the window.
    Count,
    Sum(FieldPath),
    Min(FieldPath),
    Max(FieldPath),
    Last(FieldPath),
    Mean(FieldPath),
    /// Increase of a monotonic counter over the window; a drop is a reset (counts from 0).
    Increase(FieldPath),
}

impl ValueSource {
    pub fn field(&self) -> Option<&FieldPath> {
        match self {
            ValueSource::Constant(_) | ValueSource::Count => None,
            ValueSource::Field(p)
            | ValueSource::Sum(p)
            | ValueSource::Min(p)
            | ValueSource::Max(p)
            | ValueSource::Last(p)
            | ValueSource::Mean(p)
            | ValueSource::Increase(p) => Some(p),
        }
    }
}

/// When a window closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Every N messages (1 = each message).
    Messages(u64),
    /// Every T seconds of data time, aligned to multiples of T since the epoch; T is in
    /// `1..=peaqos_core::duration::MAX_SECONDS` (checked when the rule loads).
    Seconds(i64),
}

/// A condition literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Number(Dec),
    Text(String),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: FieldPath,
    pub op: Op,
    pub value: Literal,
}

/// A loaded, checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub topic: String,
    /// Index of the topic in the policy.
    pub topic_index: usize,
    pub event_type: EventType,
    pub value: ValueSource,
    pub scale: Dec,
    pub rounding: Rounding,
    pub currency: String,
    pub trust_level: u8,
    pub source_chain_id: u64,
    pub source_tx_hash_field: Option<FieldPath>,
    pub window: Window,
    /// Seconds.
    pub min_interval: Dec,
    pub condition: Option<Condition>,
    pub metadata: Option<Template>,
}

impl Rule {
    /// `raw_data` is the single package (true) or a JSON array of packages (false).
    pub fn single_package(&self) -> bool {
        self.window == Window::Messages(1)
    }
}

// ------------------------------------------------------------------ loading

struct Ctx<'a> {
    file: &'a Path,
    at: String,
    rule: String,
}

impl Ctx<'_> {
    fn err(&self, key: &str, reason: impl Into<String>) -> RuleError {
        let path = if key.is_empty() { self.at.clone() } else { format!("{}.{key}", self.at) };
        RuleError { file: self.file.to_owned(), path, rule: self.rule.clone(), reason: reason.into() }
    }
}

fn yaml_number(v: &serde_yaml_ng::Value) -> Option<Dec> {
    match v {
        serde_yaml_ng::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(Dec::from_i128(i128::from(i)))
            } else if let Some(u) = n.as_u64() {
                Some(Dec::from_i128(i128::from(u)))
            } else {
                n.as_f64().and_then(|f| Dec::from_f64(f).ok())
            }
        }
        serde_yaml_ng::Value::String(s) => Dec::parse(s),
        _ => None,
    }
}

fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The action the topic's field rules take on a leaf path (first match wins, SDK semantics).
fn field_action(t: &TopicPolicy, path: &str) -> Action {
    for r in &t.fields {
        let p = r.path.as_str();
        if path == p || (path.len() > p.len() && path.starts_with(p) && path.as_bytes()[p.len()] == b'.') {
            return r.action;
        }
    }
    t.default_action.unwrap_or(Action::Include)
}

/// Check a field a rule reads: known for the type (when the catalog is known), of the wanted
/// kind, and kept in clear by the topic's field rules.
fn check_field(
    ctx: &Ctx,
    key: &str,
    text: &str,
    topic: &TopicPolicy,
    catalog: Option<&FieldCatalog>,
    want: fn(FieldKind) -> bool,
    want_name: &str,
) -> Result<FieldPath, RuleError> {
    let p = FieldPath::new(text)
        .ok_or_else(|| ctx.err(key, format!("{text:?} is not a dot path like pose.pose.position.x")))?;
    if let Some(cat) = catalog {
        let k = peaqos_core::catalog::lookup(cat, &topic.msg_type, text)
            .map_err(|reason| ctx.err(key, format!("{reason} (the rule could never fire)")))?;
        if !want(k) {
            return Err(ctx.err(key, format!("field {text:?} is {}, the rule needs {want_name}", k.name())));
        }
    }
    let action = field_action(topic, text);
    if action != Action::Include {
        let what = match action {
            Action::Exclude => "excluded",
            Action::Encrypt => "encrypted",
            _ => "anonymized",
        };
        return Err(ctx.err(
            key,
            format!("field {text:?} is {what} by the topic's field rules, so packages never show it (the rule could never fire)"),
        ));
    }
    Ok(p)
}

fn yaml_name(v: &serde_yaml_ng::Value) -> String {
    v.get("name").and_then(|n| n.as_str()).unwrap_or("<unnamed>").to_owned()
}

/// Load and check every rule of the policy. `catalogs` maps topic names to the field paths of
/// their message types (topics without a catalog skip the unknown-path check only).
pub fn load_rules(
    map: &DataEventMap,
    file: &Path,
    catalogs: &HashMap<String, FieldCatalog>,
) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    let mut names = HashSet::new();
    for (ti, topic) in map.topics.iter().enumerate() {
        let catalog = catalogs.get(&topic.topic);
        for (j, raw) in topic.events.iter().enumerate() {
            let mut ctx = Ctx { file, at: format!("topics[{ti}].events[{j}]"), rule: yaml_name(raw) };
            let spec: RuleSpec = serde_path_to_error::deserialize(raw.clone()).map_err(|e| {
                let p = e.path().to_string();
                let inner = e.into_inner().to_string();
                ctx.err(if p == "." { "" } else { &p }, inner)
            })?;
            ctx.rule = spec.name.clone();
            let rule = compile(&ctx, spec, ti, topic, catalog)?;
            if !names.insert(rule.name.clone()) {
                return Err(ctx.err("name", "another rule of the policy has this name; names must be unique"));
            }
            rules.push(rule);
        }
    }
    Ok(rules)
}

/// `count`, or a one-key map `{field|sum|min|max|last|mean|increase: path}` / `{constant: n}`.
fn parse_value_spec(v: &serde_yaml_ng::Value) -> Result<ValueSpec, (String, String)> {
    const KINDS: &str =
        "count, {field: p}, {constant: n}, {sum: p}, {min: p}, {max: p}, {last: p}, {mean: p} or {increase: p}";
    if v.as_str() == Some("count") {
        return Ok(ValueSpec::Count);
    }
    let Some(m) = v.as_mapping().filter(|m| m.len() == 1) else {
        return Err(("value".into(), format!("must be one of {KINDS}")));
    };
    let (k, x) = m.iter().next().ok_or_else(|| ("value".to_string(), KINDS.to_string()))?;
    let k = k.as_str().unwrap_or("");
    if k == "constant" {
        return Ok(ValueSpec::Constant(x.clone()));
    }
    if k == "count" {
        return Ok(ValueSpec::Count);
    }
    let path = || {
        x.as_str()
            .map(str::to_owned)
            .ok_or_else(|| (format!("value.{k}"), "must be a field path (a string)".to_string()))
    };
    Ok(match k {
        "field" => ValueSpec::Field(path()?),
        "sum" => ValueSpec::Sum(path()?),
        "min" => ValueSpec::Min(path()?),
        "max" => ValueSpec::Max(path()?),
        "last" => ValueSpec::Last(path()?),
        "mean" => ValueSpec::Mean(path()?),
        "increase" => ValueSpec::Increase(path()?),
        other => return Err((format!("value.{other}"), format!("unknown value kind {other:?}; use {KINDS}"))),
    })
}

/// A rule's topic as its field checks see it: where errors point, the topic's field rules and
/// (when known) its message type's field catalog.
struct Fields<'a> {
    ctx: &'a Ctx<'a>,
    topic: &'a TopicPolicy,
    catalog: Option<&'a FieldCatalog>,
}

impl Fields<'_> {
    fn check(
        &self,
        key: &str,
        text: &str,
        want: fn(FieldKind) -> bool,
        want_name: &str,
    ) -> Result<FieldPath, RuleError> {
        check_field(self.ctx, key, text, self.topic, self.catalog, want, want_name)
    }
}

/// Check a rule in the order its errors are reported: name, value, scale, rounding, constant,
/// currency, trust and source chain, window, min_interval, condition, metadata.
fn compile(
    ctx: &Ctx,
    s: RuleSpec,
    ti: usize,
    topic: &TopicPolicy,
    catalog: Option<&FieldCatalog>,
) -> Result<Rule, RuleError> {
    if !valid_name(&s.name) {
        return Err(ctx.err("name", "must be 1-64 characters of [A-Za-z0-9_-]"));
    }
    let fields = Fields { ctx, topic, catalog };
    let value = compile_value(&fields, &s.value)?;
    let from_field = value.field().is_some();
    let scale = compile_scale(ctx, s.scale.as_ref(), from_field)?;
    let rounding = compile_rounding(ctx, s.rounding, from_field)?;
    if let ValueSource::Constant(c) = value {
        check_constant_units(ctx, c, scale)?;
    }
    let currency = compile_currency(ctx, s.event_type, s.currency.as_deref())?;
    let source_tx_hash_field =
        compile_source(&fields, s.trust_level, s.source_chain_id, s.source_tx_hash_field.as_deref())?;
    let window = compile_window(ctx, s.window.as_ref())?;
    let min_interval = compile_min_interval(ctx, s.min_interval.as_ref())?;
    let condition = s.condition.as_ref().map(|c| compile_condition(&fields, c)).transpose()?;
    let metadata = s.metadata.as_deref().map(|t| compile_metadata(&fields, t)).transpose()?;
    Ok(Rule {
        name: s.name,
        topic: topic.topic.clone(),
        topic_index: ti,
        event_type: s.event_type,
        value,
        scale,
        rounding,
        currency,
        trust_level: s.trust_level,
        source_chain_id: s.source_chain_id,
        source_tx_hash_field,
        window,
        min_interval,
        condition,
        metadata,
    })
}

/// `value:`: a numeric field of the topic, a count, or a constant >= 0.
fn compile_value(fields: &Fields, spec: &serde_yaml_ng::Value) -> Result<ValueSource, RuleError> {
    let ctx = fields.ctx;
    let field = |key: &str, p: &str| fields.check(key, p, |k| k.numeric(), "a number");
    let value_spec = parse_value_spec(spec).map_err(|(k, r)| ctx.err(&k, r))?;
    Ok(match &value_spec {
        ValueSpec::Field(p) => ValueSource::Field(field("value.field", p)?),
        ValueSpec::Sum(p) => ValueSource::Sum(field("value.sum", p)?),
        ValueSpec::Min(p) => ValueSource::Min(field("value.min", p)?),
        ValueSpec::Max(p) => ValueSource::Max(field("value.max", p)?),
        ValueSpec::Last(p) => ValueSource::Last(field("value.last", p)?),
        ValueSpec::Mean(p) => ValueSource::Mean(field("value.mean", p)?),
        ValueSpec::Increase(p) => ValueSource::Increase(field("value.increase", p)?),
        ValueSpec::Count => ValueSource::Count,
        ValueSpec::Constant(v) => {
            let d = yaml_number(v).ok_or_else(|| ctx.err("value.constant", "must be a finite number"))?;
            if d.is_negative() {
                return Err(ctx.err("value.constant", "must be >= 0 (event values are never negative)"));
            }
            ValueSource::Constant(d)
        }
    })
}

/// `scale:` > 0; required for a value read from a field, 1 otherwise.
fn compile_scale(ctx: &Ctx, scale: Option<&serde_yaml_ng::Value>, from_field: bool) -> Result<Dec, RuleError> {
    match scale {
        Some(v) => {
            let d = yaml_number(v).ok_or_else(|| ctx.err("scale", "must be a finite number"))?;
            if d.m <= 0 {
                return Err(
                    ctx.err("scale", format!("must be > 0, got {d} (a scale of zero or below can never give a value)"))
                );
            }
            Ok(d)
        }
        None if from_field => Err(ctx.err(
            "scale",
            "is required for a value read from a field: the factor to integer minor units (e.g. 100 for euros → cents)",
        )),
        None => Ok(Dec::from_i128(1)),
    }
}

/// `rounding:`; required for a value read from a field, half-even otherwise.
fn compile_rounding(ctx: &Ctx, rounding: Option<Rounding>, from_field: bool) -> Result<Rounding, RuleError> {
    match rounding {
        Some(r) => Ok(r),
        None if from_field => Err(
            ctx.err("rounding", "is required for a value read from a field: down, up, half_up, half_down or half_even")
        ),
        None => Ok(Rounding::HalfEven),
    }
}

/// A constant × scale must be a whole number of units that fits.
fn check_constant_units(ctx: &Ctx, c: Dec, scale: Dec) -> Result<(), RuleError> {
    let x = c.checked_mul(scale).ok_or_else(|| ctx.err("value.constant", "too large"))?;
    if x.e < 0 {
        return Err(ctx.err("value.constant", format!("{c} × scale {scale} is not a whole number of units")));
    }
    x.to_units(Dec::from_i128(1), 1, Rounding::Down).map_err(|_| ctx.err("value.constant", "too large"))?;
    Ok(())
}

/// `currency:`: required (SDK shape) for revenue, none for activity.
fn compile_currency(ctx: &Ctx, event_type: EventType, currency: Option<&str>) -> Result<String, RuleError> {
    match (event_type, currency) {
        (EventType::Revenue, None) => Err(ctx.err(
            "currency",
            "is required for revenue events (the SDK's batch submit requires it): 3-10 of [A-Z0-9], e.g. EUR",
        )),
        (EventType::Revenue, Some(c)) => {
            let ok = (3..=10).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            if !ok {
                return Err(ctx.err(
                    "currency",
                    format!("{c:?} must match ^[A-Z0-9]{{3,10}}$ (the SDK's and contract's currency shape)"),
                ));
            }
            Ok(c.to_owned())
        }
        (EventType::Activity, None | Some("")) => Ok(String::new()),
        (EventType::Activity, Some(c)) => {
            Err(ctx.err("currency", format!("activity events carry no currency; got {c:?} (omit it or use \"\")")))
        }
    }
}

/// `trust_level:`, `source_tx_hash_field:` (trust 1 only, a string field) and
/// `source_chain_id:`; returns the source transaction hash field.
fn compile_source(
    fields: &Fields,
    trust_level: u8,
    source_chain_id: u64,
    source_tx_hash_field: Option<&str>,
) -> Result<Option<FieldPath>, RuleError> {
    let ctx = fields.ctx;
    if trust_level > 2 {
        return Err(ctx.err(
            "trust_level",
            format!("must be 0 (self-reported), 1 (on-chain verifiable) or 2 (hardware-signed), got {trust_level}"),
        ));
    }
    let field = match (trust_level, source_tx_hash_field) {
        (1, Some(p)) => Some(fields.check("source_tx_hash_field", p, |k| k == FieldKind::Text, "a string")?),
        (1, None) => {
            return Err(
                ctx.err("source_tx_hash_field", "trust_level 1 needs the field holding the source transaction hash")
            )
        }
        (_, Some(_)) => {
            return Err(ctx.err("source_tx_hash_field", "only trust_level 1 events carry a source transaction hash"))
        }
        (_, None) => None,
    };
    if !peaqos_chain::validation::VALID_SOURCE_CHAIN_IDS.contains(&i128::from(source_chain_id)) {
        return Err(ctx.err(
            "source_chain_id",
            format!("{source_chain_id} is not a supported chain (0, 3338, 1, 8453, 137, 42161, 10)"),
        ));
    }
    Ok(field)
}

/// `window:`: one message by default, `{messages: N}` or `{seconds: T}`.
fn compile_window(ctx: &Ctx, window: Option<&WindowSpec>) -> Result<Window, RuleError> {
    Ok(match window {
        None => Window::Messages(1),
        Some(WindowSpec { messages: Some(n), seconds: None }) if (1..=MAX_WINDOW_MESSAGES).contains(n) => {
            Window::Messages(*n)
        }
        Some(WindowSpec { messages: Some(_), seconds: None }) => {
            return Err(ctx.err("window.messages", format!("must be 1..={MAX_WINDOW_MESSAGES}")))
        }
        Some(WindowSpec { messages: None, seconds: Some(t) }) => {
            Window::Seconds(peaqos_core::duration::whole_seconds(*t).map_err(|e| ctx.err("window.seconds", e))?)
        }
        Some(_) => return Err(ctx.err("window", "give exactly one of messages: N or seconds: T")),
    })
}

/// `min_interval:` seconds, 0 by default, at most `peaqos_core::duration::MAX_SECONDS`.
fn compile_min_interval(ctx: &Ctx, min_interval: Option<&serde_yaml_ng::Value>) -> Result<Dec, RuleError> {
    let Some(v) = min_interval else { return Ok(Dec::ZERO) };
    let d = yaml_number(v).ok_or_else(|| ctx.err("min_interval", "must be a number of seconds"))?;
    if d.is_negative()
        || d.cmp_num(Dec::from_i128(i128::from(peaqos_core::duration::MAX_SECONDS)))
            == Some(std::cmp::Ordering::Greater)
    {
        return Err(ctx.err("min_interval", format!("must be 0..={} seconds", peaqos_core::duration::MAX_SECONDS)));
    }
    Ok(d)
}

/// `condition:`: a literal, an operator that fits it and a field of the literal's kind.
fn compile_condition(fields: &Fields, c: &ConditionSpec) -> Result<Condition, RuleError> {
    let ctx = fields.ctx;
    let value = match &c.value {
        serde_yaml_ng::Value::Bool(b) => Literal::Bool(*b),
        serde_yaml_ng::Value::String(t) => Literal::Text(t.clone()),
        v @ serde_yaml_ng::Value::Number(_) => {
            Literal::Number(yaml_number(v).ok_or_else(|| ctx.err("condition.value", "must be a finite number"))?)
        }
        _ => return Err(ctx.err("condition.value", "must be a number, a string or a bool")),
    };
    let ordered = matches!(c.op, Op::Gt | Op::Ge | Op::Lt | Op::Le);
    if ordered && !matches!(value, Literal::Number(_)) {
        return Err(ctx.err("condition.op", "gt/ge/lt/le compare numbers; the value is not a number"));
    }
    let want: fn(FieldKind) -> bool = match value {
        Literal::Number(_) => |k| k.numeric(),
        Literal::Text(_) => |k| k == FieldKind::Text,
        Literal::Bool(_) => |k| k == FieldKind::Bool,
    };
    let kind_name = match value {
        Literal::Number(_) => "a number (the condition value is a number)",
        Literal::Text(_) => "a string (the condition value is a string)",
        Literal::Bool(_) => "a bool (the condition value is a bool)",
    };
    let field = fields.check("condition.field", &c.field, want, kind_name)?;
    Ok(Condition { field, op: c.op, value })
}

/// `metadata:`: a template whose fields are scalars of the topic and whose fixed text fits the
/// contract's metadata size.
fn compile_metadata(fields: &Fields, t: &str) -> Result<Template, RuleError> {
    let ctx = fields.ctx;
    let tpl = Template::parse(t).map_err(|r| ctx.err("metadata", r.to_string()))?;
    for p in tpl.fields() {
        fields.check("metadata", p, |k| k.scalar(), "a number, string or bool")?;
    }
    if tpl.static_len() > MAX_METADATA_SIZE {
        return Err(ctx.err(
            "metadata",
            format!("the template alone is {} bytes; the contract takes at most {MAX_METADATA_SIZE}", tpl.static_len()),
        ));
    }
    Ok(tpl)
}
