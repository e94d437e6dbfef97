//! The evaluation engine: signed packages in, events and reported skips out.
//!
//! Deterministic over each topic's package sequence: the only state that must survive a
//! restart is each rule's [`Checkpoint`] (last consumed sequence number, last event time,
//! counter baseline), written when a window closes; an open window is rebuilt by replaying
//! the package log after the checkpoint (see [`crate::store`]). Event ids
//! (`<rule>-<first seq>-<last seq>`) are deterministic, so a window replayed after a crash
//! produces the same id and the store refuses it a second time.
//!
//! Windows: only messages that meet the rule's condition enter a window. `messages: N` closes
//! after N of them; `seconds: T` closes when a message of a later T-aligned bucket arrives (data
//! time) or when the wall clock passes the bucket end plus a grace ([`Engine::tick`]). A close
//! less than `min_interval` after the rule's previous event is deferred: the window stays open
//! and keeps accumulating (aggregates lose nothing; `field`/`last` take the latest value).
//! A sample that is missing, not a number, NaN/±Infinity is reported as a skip and left out;
//! a window without a valid sample closes without an event (its samples were reported).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::decimal::{ConvertError, Dec};
use crate::metadata::EventFacts;
use crate::rules::{Condition, Literal, Op, Rule, ValueSource, Window, MAX_METADATA_SIZE};

/// A produced event, before the machine id and the chain-time clamp are applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventOut {
    /// `<rule>-<first seq>-<last seq>`: unique, deterministic.
    pub id: String,
    pub rule: String,
    pub topic: String,
    pub event_type: u8,
    /// Integer minor units, as a decimal string.
    pub value: String,
    pub currency: String,
    /// Unix seconds of the data (the last package of the window), not clamped yet.
    pub timestamp: i64,
    /// Hex of keccak256(raw data); the bytes are in the raw store.
    pub data_hash: String,
    pub trust_level: u8,
    pub source_chain_id: u64,
    pub source_tx_hash: Option<String>,
    /// Metadata bytes, as UTF-8 text (templates produce text).
    pub metadata: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub count: u64,
}

/// A message or window that did not become an event, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub rule: usize,
    pub reason: &'static str,
    pub detail: String,
    pub seq: u64,
}

/// What evaluation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An event and its raw data bytes.
    Event(Box<EventOut>, Vec<u8>),
    Skip(Skip),
    /// A close postponed by `min_interval` (counted, not a loss).
    Deferred {
        rule: usize,
        seq: u64,
    },
    /// A counter went down: counted as a reset (its new value counts from 0).
    CounterReset {
        rule: usize,
        seq: u64,
    },
}

/// Durable per-rule state, written when windows close.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Every package up to this sequence number is reflected in closed windows.
    pub consumed_upto: Option<u64>,
    /// Data time of the rule's last event (for `min_interval`).
    pub last_event_ts: Option<i64>,
    /// `increase` rules: the counter's last value at `consumed_upto` (`mantissa`, `exponent`).
    pub counter_last: Option<(String, i32)>,
}

#[derive(Debug, Default)]
struct Open {
    first_seq: u64,
    last_seq: u64,
    count: u64,
    bucket: Option<i64>,
    last_ts: i64,
    packages: Vec<Arc<str>>,
    last_payload: Option<Arc<Map<String, Value>>>,
    n_valid: u64,
    sum: Dec,
    min: Option<Dec>,
    max: Option<Dec>,
    last: Option<Dec>,
    increase: Dec,
}

struct RuleState {
    cp: Checkpoint,
    /// No checkpoint was stored for this rule (new rule).
    fresh: bool,
    counter_prev: Option<Dec>,
    open: Open,
}

/// Grace after a time bucket's end before the wall clock closes it (late messages).
pub const TICK_GRACE_SECS: i64 = 2;

/// The engine over a policy's rules.
pub struct Engine {
    rules: Vec<Rule>,
    states: Vec<RuleState>,
    /// topic name → rule indexes.
    by_topic: HashMap<String, Vec<usize>>,
    dirty: bool,
    /// Newest sequence number handed to [`Engine::on_package`], per topic.
    seen: HashMap<String, u64>,
}

#[derive(Deserialize)]
struct PackageView {
    timestamp: String,
    payload: Map<String, Value>,
}

/// Unix seconds (floor) of `YYYY-MM-DDTHH:MM:SS[.f]Z`.
pub fn parse_iso_seconds(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || !s.ends_with('Z')
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d, h, mi, se) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // days from civil (H. Hinnant)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

fn sample(payload: &Map<String, Value>, path: &crate::rules::FieldPath) -> Result<Dec, (&'static str, String)> {
    match path.get(payload) {
        None | Some(Value::Null) => Err(("missing_field", format!("{path} is missing"))),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(Dec::from_i128(i128::from(u)))
            } else if let Some(i) = n.as_i64() {
                Ok(Dec::from_i128(i128::from(i)))
            } else {
                Dec::from_f64(n.as_f64().unwrap_or(f64::NAN)).map_err(|e| (e.reason(), format!("{path} = {n}")))
            }
        }
        Some(Value::String(s)) if s == "NaN" || s == "Infinity" || s == "-Infinity" => {
            Err((ConvertError::NotFinite.reason(), format!("{path} is {s}")))
        }
        Some(_) => Err(("not_a_number", format!("{path} is not a number"))),
    }
}

fn condition_met(c: &Condition, payload: &Map<String, Value>) -> bool {
    use std::cmp::Ordering::*;
    let v = c.field.get(payload);
    let ord = match (&c.value, v) {
        (Literal::Number(lit), Some(Value::Number(_))) => match sample(payload, &c.field) {
            Ok(d) => d.cmp_num(*lit),
            Err(_) => None,
        },
        (Literal::Text(lit), Some(Value::String(s))) => Some(s.as_str().cmp(lit.as_str())),
        (Literal::Bool(lit), Some(Value::Bool(b))) => Some(b.cmp(lit)),
        _ => None, // missing, NaN or another type: the condition is not met
    };
    match (c.op, ord) {
        (_, None) => false,
        (Op::Eq, Some(o)) => o == Equal,
        (Op::Ne, Some(o)) => o != Equal,
        (Op::Gt, Some(o)) => o == Greater,
        (Op::Ge, Some(o)) => o != Less,
        (Op::Lt, Some(o)) => o == Less,
        (Op::Le, Some(o)) => o != Greater,
    }
}

fn dec_of(t: &(String, i32)) -> Option<Dec> {
    Some(Dec { m: t.0.parse().ok()?, e: t.1 })
}

fn valid_tx_hash(s: &str) -> bool {
    s.len() == 66 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl Engine {
    /// An engine over `rules`, resuming from `checkpoints` (by rule name; missing = fresh).
    pub fn new(rules: Vec<Rule>, checkpoints: &HashMap<String, Checkpoint>) -> Engine {
        let mut by_topic: HashMap<String, Vec<usize>> = HashMap::new();
        let states = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                by_topic.entry(r.topic.clone()).or_default().push(i);
                let fresh = !checkpoints.contains_key(&r.name);
                let cp = checkpoints.get(&r.name).cloned().unwrap_or_default();
                let counter_prev = cp.counter_last.as_ref().and_then(dec_of);
                RuleState { cp, fresh, counter_prev, open: Open::default() }
            })
            .collect::<Vec<_>>();
        let dirty = states.iter().any(|s| s.fresh);
        Engine { rules, states, by_topic, dirty, seen: HashMap::new() }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Topics that have rules.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.by_topic.keys().map(String::as_str)
    }

    /// First sequence number of `topic` to replay from the package log after a restart.
    pub fn replay_from(&self, topic: &str) -> Option<u64> {
        let idx = self.by_topic.get(topic)?;
        idx.iter().map(|&i| self.states[i].cp.consumed_upto.map_or(0, |c| c + 1)).min()
    }

    /// Every package of `topic` up to the returned sequence number can leave the package log
    /// without changing what the rules produce: per rule, everything before its open window
    /// (or, with none open, everything seen: packages that did not meet its condition never
    /// enter a window and have no effect). `None`: a rule still needs the log from its start.
    /// Valid as a retention position only while the checkpoints are durable (see
    /// `Processor::checkpoints_durable`): a window closed after the stored checkpoint would be
    /// replayed from the log after a crash.
    pub fn log_needed_after(&self, topic: &str) -> Option<u64> {
        let idx = self.by_topic.get(topic)?;
        let seen = self.seen.get(topic).copied();
        let mut min: Option<u64> = None;
        for &i in idx {
            let st = &self.states[i];
            let p = if st.open.count > 0 { st.open.first_seq.checked_sub(1) } else { seen.max(st.cp.consumed_upto) };
            let p = p?;
            min = Some(min.map_or(p, |m| m.min(p)));
        }
        min
    }

    /// Rules without a stored checkpoint (new in the policy) start after the existing log's
    /// last package `last_seq`: history is not turned into events when a rule is added. Their
    /// checkpoint is stored at the next flush, so a restart replays what they saw since.
    pub fn start_fresh_rules_after(&mut self, topic: &str, last_seq: Option<u64>) {
        if let Some(idx) = self.by_topic.get(topic) {
            for &i in idx {
                let st = &mut self.states[i];
                if st.fresh {
                    st.fresh = false;
                    st.cp.consumed_upto = last_seq;
                    self.dirty = true;
                }
            }
        }
    }

    /// Current checkpoints by rule name, and whether they changed since the last call.
    pub fn take_checkpoints(&mut self) -> Option<HashMap<String, Checkpoint>> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some(self.checkpoints())
    }

    pub fn checkpoints(&self) -> HashMap<String, Checkpoint> {
        self.rules.iter().zip(&self.states).map(|(r, s)| (r.name.clone(), s.cp.clone())).collect()
    }

    /// Evaluate one durable package of `topic`.
    pub fn on_package(&mut self, topic: &str, seq: u64, package_json: &str, out: &mut Vec<Outcome>) {
        let Some(idx) = self.by_topic.get(topic) else { return };
        let idx = idx.clone();
        let seen = self.seen.entry(topic.to_owned()).or_insert(seq);
        *seen = (*seen).max(seq);
        let wanted = idx.iter().any(|&i| {
            let s = &self.states[i];
            s.cp.consumed_upto.is_none_or(|c| seq > c) && (s.open.count == 0 || seq > s.open.last_seq)
        });
        if !wanted {
            return;
        }
        let pkg: PackageView = match serde_json::from_str(package_json) {
            Ok(p) => p,
            Err(e) => {
                for &i in &idx {
                    out.push(Outcome::Skip(Skip {
                        rule: i,
                        reason: "bad_package",
                        detail: format!("{topic} #{seq}: {e}"),
                        seq,
                    }));
                }
                return;
            }
        };
        let Some(ts) = parse_iso_seconds(&pkg.timestamp) else {
            for &i in &idx {
                out.push(Outcome::Skip(Skip { rule: i, reason: "bad_timestamp", detail: pkg.timestamp.clone(), seq }));
            }
            return;
        };
        let payload = Arc::new(pkg.payload);
        let raw: Arc<str> = Arc::from(package_json);
        for i in idx {
            self.feed(i, seq, ts, &raw, &payload, out);
        }
    }

    fn feed(
        &mut self,
        i: usize,
        seq: u64,
        ts: i64,
        raw: &Arc<str>,
        payload: &Arc<Map<String, Value>>,
        out: &mut Vec<Outcome>,
    ) {
        let rule = &self.rules[i];
        let st = &mut self.states[i];
        if st.cp.consumed_upto.is_some_and(|c| seq <= c) || (st.open.count > 0 && seq <= st.open.last_seq) {
            return;
        }
        if let Some(c) = &rule.condition {
            if !condition_met(c, payload) {
                return;
            }
        }
        if let Window::Seconds(t) = rule.window {
            let bucket = ts.div_euclid(t);
            if st.open.count > 0 && st.open.bucket.is_some_and(|b| bucket > b) {
                Self::close(rule, i, st, out, &mut self.dirty);
            }
            if st.open.count == 0 || st.open.bucket.is_none_or(|b| bucket > b) {
                st.open.bucket = Some(bucket);
            }
        }
        // add the message
        let o = &mut st.open;
        if o.count == 0 {
            o.first_seq = seq;
        }
        o.count += 1;
        o.last_seq = seq;
        o.last_ts = o.last_ts.max(ts);
        o.packages.push(Arc::clone(raw));
        o.last_payload = Some(Arc::clone(payload));
        if let Some(path) = rule.value.field() {
            match sample(payload, path) {
                Err((reason, detail)) => out.push(Outcome::Skip(Skip { rule: i, reason, detail, seq })),
                Ok(d) => {
                    o.n_valid += 1;
                    match &rule.value {
                        ValueSource::Sum(_) | ValueSource::Mean(_) => match o.sum.checked_add(d) {
                            Some(s) => o.sum = s,
                            None => {
                                o.n_valid -= 1;
                                out.push(Outcome::Skip(Skip {
                                    rule: i,
                                    reason: "overflow",
                                    detail: format!("{path} sum"),
                                    seq,
                                }));
                            }
                        },
                        ValueSource::Min(_) => {
                            if o.min.is_none_or(|m| d.cmp_num(m) == Some(std::cmp::Ordering::Less)) {
                                o.min = Some(d)
                            }
                        }
                        ValueSource::Max(_) => {
                            if o.max.is_none_or(|m| d.cmp_num(m) == Some(std::cmp::Ordering::Greater)) {
                                o.max = Some(d)
                            }
                        }
                        ValueSource::Field(_) | ValueSource::Last(_) => o.last = Some(d),
                        ValueSource::Increase(_) => {
                            match st.counter_prev {
                                None => {}
                                Some(p) if d.cmp_num(p) != Some(std::cmp::Ordering::Less) => {
                                    if let Some(x) = d.checked_sub(p).and_then(|x| o.increase.checked_add(x)) {
                                        o.increase = x;
                                    }
                                }
                                Some(_) => {
                                    // Went down: the counter was reset; its value counts from 0.
                                    out.push(Outcome::CounterReset { rule: i, seq });
                                    if !d.is_negative() {
                                        if let Some(x) = o.increase.checked_add(d) {
                                            o.increase = x;
                                        }
                                    }
                                }
                            }
                            st.counter_prev = Some(d);
                        }
                        ValueSource::Constant(_) | ValueSource::Count => {}
                    }
                }
            }
        }
        if let Window::Messages(n) = rule.window {
            if st.open.count >= n {
                Self::close(rule, i, st, out, &mut self.dirty);
            }
        }
    }

    /// Close time windows whose bucket ended more than [`TICK_GRACE_SECS`] before `now`
    /// (unix seconds) — for topics that went quiet.
    pub fn tick(&mut self, now: i64, out: &mut Vec<Outcome>) {
        for (i, (rule, st)) in self.rules.iter().zip(self.states.iter_mut()).enumerate() {
            if let (Window::Seconds(t), Some(b)) = (rule.window, st.open.bucket) {
                // Checked: a window ending beyond i64 seconds simply has not ended.
                let end = b.checked_add(1).and_then(|x| x.checked_mul(t)).and_then(|x| x.checked_add(TICK_GRACE_SECS));
                if st.open.count > 0 && end.is_some_and(|end| end <= now) {
                    Self::close(rule, i, st, out, &mut self.dirty);
                }
            }
        }
    }

    fn close(rule: &Rule, i: usize, st: &mut RuleState, out: &mut Vec<Outcome>, dirty: &mut bool) {
        let o = &st.open;
        let ts = o.last_ts;
        if let Some(last) = st.cp.last_event_ts {
            let since = Dec::from_i128(i128::from(ts) - i128::from(last));
            if since.cmp_num(rule.min_interval) == Some(std::cmp::Ordering::Less) {
                out.push(Outcome::Deferred { rule: i, seq: st.open.last_seq });
                return;
            }
        }
        let result = Self::build(rule, o);
        let o = std::mem::take(&mut st.open);
        st.cp.consumed_upto = Some(o.last_seq);
        st.cp.counter_last = st.counter_prev.map(|d| (d.m.to_string(), d.e));
        *dirty = true;
        match result {
            Ok(None) => {}
            Ok(Some((ev, raw))) => {
                st.cp.last_event_ts = Some(ev.timestamp);
                out.push(Outcome::Event(Box::new(ev), raw));
            }
            Err((reason, detail)) => out.push(Outcome::Skip(Skip { rule: i, reason, detail, seq: o.last_seq })),
        }
    }

    #[allow(clippy::type_complexity)]
    fn build(rule: &Rule, o: &Open) -> Result<Option<(EventOut, Vec<u8>)>, (&'static str, String)> {
        let needs_sample = rule.value.field().is_some();
        if needs_sample && o.n_valid == 0 {
            return Ok(None); // every sample was reported as skipped
        }
        let conv = |d: Dec, div: u64| {
            d.to_units(rule.scale, div, rule.rounding).map_err(|e| (e.reason(), format!("{d} × {}", rule.scale)))
        };
        let value = match &rule.value {
            ValueSource::Constant(c) => conv(*c, 1)?,
            ValueSource::Count => conv(Dec::from_i128(i128::from(o.count)), 1)?,
            ValueSource::Sum(_) => conv(o.sum, 1)?,
            ValueSource::Mean(_) => conv(o.sum, o.n_valid)?,
            ValueSource::Min(_) => conv(o.min.unwrap_or(Dec::ZERO), 1)?,
            ValueSource::Max(_) => conv(o.max.unwrap_or(Dec::ZERO), 1)?,
            ValueSource::Field(_) | ValueSource::Last(_) => conv(o.last.unwrap_or(Dec::ZERO), 1)?,
            ValueSource::Increase(_) => conv(o.increase, 1)?,
        };
        if o.last_ts <= 0 {
            return Err(("bad_timestamp", format!("data time {} is not after 1970", o.last_ts)));
        }
        let empty = Map::new();
        let payload = o.last_payload.as_deref().unwrap_or(&empty);
        let source_tx_hash = match &rule.source_tx_hash_field {
            None => None,
            Some(p) => match p.get(payload) {
                Some(Value::String(s)) if valid_tx_hash(s) => Some(s.to_ascii_lowercase()),
                _ => return Err(("bad_source_tx_hash", format!("{p} is not 0x + 64 hex digits"))),
            },
        };
        let metadata = match &rule.metadata {
            None => Vec::new(),
            Some(t) => {
                let facts = EventFacts {
                    rule: &rule.name,
                    topic: &rule.topic,
                    count: o.count,
                    first_seq: o.first_seq,
                    last_seq: o.last_seq,
                };
                let m = t.render(payload, &facts).map_err(|e| ("metadata_field_missing", e.to_string()))?;
                if m.len() > MAX_METADATA_SIZE {
                    return Err(("metadata_too_large", format!("{} bytes > {MAX_METADATA_SIZE}", m.len())));
                }
                m
            }
        };
        let raw = raw_data(rule.single_package(), &o.packages);
        let data_hash = format!("{:#x}", peaqos_chain::validation::data_hash(Some(&raw)));
        Ok(Some((
            EventOut {
                id: format!("{}-{}-{}", rule.name, o.first_seq, o.last_seq),
                rule: rule.name.clone(),
                topic: rule.topic.clone(),
                event_type: rule.event_type.code(),
                value: value.to_string(),
                currency: rule.currency.clone(),
                timestamp: o.last_ts,
                data_hash,
                trust_level: rule.trust_level,
                source_chain_id: rule.source_chain_id,
                source_tx_hash,
                metadata: String::from_utf8(metadata).unwrap_or_default(),
                first_seq: o.first_seq,
                last_seq: o.last_seq,
                count: o.count,
            },
            raw,
        )))
    }
}

/// `raw_data` of an event: a per-message rule's single package, byte for byte; any other window's
/// packages as a JSON array `[p1,p2,…]` of the packages' canonical JSON in sequence order (an
/// array of canonical JSON values is itself canonical JSON).
pub fn raw_data(single: bool, packages: &[Arc<str>]) -> Vec<u8> {
    if single && packages.len() == 1 {
        return packages[0].as_bytes().to_vec();
    }
    let len: usize = packages.iter().map(|p| p.len() + 1).sum::<usize>() + 1;
    let mut v = Vec::with_capacity(len);
    v.push(b'[');
    for (k, p) in packages.iter().enumerate() {
        if k > 0 {
            v.push(b',');
        }
        v.extend_from_slice(p.as_bytes());
    }
    v.push(b']');
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_seconds() {
        assert_eq!(parse_iso_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso_seconds("2026-01-01T00:00:00.5Z"), Some(1_767_225_600));
        assert_eq!(parse_iso_seconds("2024-02-29T12:34:56.999999Z"), Some(1_709_210_096));
        assert_eq!(parse_iso_seconds("2024-02-29 12:34:56Z"), None);
        assert_eq!(parse_iso_seconds("garbage"), None);
    }
}
