//! The submit loop: pending events → the chain client's durable outbox, coalesced.
//!
//! Rules (stated, tested end to end):
//! * **Coalescing**: pending events are sent as one `batchAll` of up to `batch_max` events once
//!   `batch_max` are pending or the oldest has waited `max_age`.
//! * **Machine id**: `chain.machine_id`, else the id `~/activate` answered (`<data_dir>/machine_id`).
//!   Without one, events stay pending (durable, counted as held), never dropped.
//! * **Timestamp**: the data's time, clamped to the latest block's timestamp read just before
//!   the batch is enqueued (the contract reverts `FutureTimestamp`). Chain unreachable: held.
//! * **Operational limits**: an event above `max_value_per_tx` can never pass: it is dropped
//!   (kept under `dropped/` with the reason) and counted as skipped `value_cap`. A batch refused
//!   with `RATE_LIMITED` is halved until it fits; a single refused event is held and retried
//!   every `retry` until the window has room — held events are never dropped.
//! * **Validation**: an event the SDK validation refuses is dropped with the SDK's field/message.
//! * **Exactly once**: before a batch is enqueued its ids, machine id, timestamps and calldata
//!   hash are written to `inflight.json`; after a crash between the outbox's durable enqueue and
//!   the move to `submitted/`, the outbox's intents (live and done) are searched for that
//!   calldata and the events are recorded under the intent found instead of being sent again.
//! * **Status**: included/failed come from the outbox's status stream (and the outbox records
//!   after a restart).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peaqos_chain::error::ErrorCode as ChainCode;
use peaqos_chain::outbox::{Intent, IntentState};
use peaqos_chain::validation::{self, Currency, MachineIdInput, SubmitEventParams, ValueInput};
use peaqos_chain::{ChainClient, ChainError};
use tokio::sync::{watch, Notify};

use crate::counters::Counters;
use crate::engine::EventOut;
use crate::processor::now_ms;
use crate::store::{EventStore, Inflight, PendingRecord, SubmittedRecord};

/// Submit loop settings.
#[derive(Debug, Clone)]
pub struct SubmitConfig {
    /// Events per `batchAll` (1..=512).
    pub batch_max: usize,
    /// Longest a produced event waits for more to coalesce with.
    pub max_age: Duration,
    /// `chain.machine_id` (canonical decimal), if set.
    pub machine_id: Option<String>,
    /// Where `~/activate` persists the machine id.
    pub machine_id_file: PathBuf,
    /// Retry period while held (no machine id, chain down, rate limited).
    pub retry: Duration,
}

/// `<data_dir>/machine_id`: the machine id a successful `~/activate` answered.
pub fn machine_id_file(data_dir: &std::path::Path) -> PathBuf {
    peaqos_base::layout::machine_id_file(data_dir)
}

/// The machine id submissions are made for, as text: `chain.machine_id` when set, else the one
/// `~/activate` persisted in `file` (`None` while there is neither).
pub fn current_machine_id(param: Option<&str>, file: &std::path::Path) -> Option<String> {
    match param {
        Some(m) => Some(m.to_owned()),
        None => std::fs::read_to_string(file).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()),
    }
}

pub struct Submitter {
    client: ChainClient,
    store: Arc<EventStore>,
    counters: Arc<Counters>,
    cfg: SubmitConfig,
    wake: Arc<Notify>,
    /// intent id → (event id, rule) of the events it carries, until terminal.
    tracked: Arc<Mutex<Tracked>>,
}

/// intent id → (event id, rule name) of the events it carries.
type Tracked = HashMap<String, Vec<(String, String)>>;

/// The SDK parameters of a produced event for `machine_id` at timestamp `ts` (clamped already).
pub fn event_params(ev: &EventOut, machine_id: MachineIdInput, ts: i64, raw: Vec<u8>) -> SubmitEventParams {
    let mut p = params(ev, machine_id, ts);
    p.raw_data = Some(raw);
    p
}

/// keccak256 of the `batchAll` calldata the client builds for `items` (matches the outbox intent's input).
pub fn calldata_hash(client: &ChainClient, items: &[SubmitEventParams]) -> Result<String, ChainError> {
    let events = validation::resolve_batch(items)?;
    let registry = client.config().event_registry()?;
    let input = peaqos_chain::encoding::batch_submit_events(registry, &events);
    Ok(format!("{:#x}", validation::data_hash(Some(&input))))
}

fn params(ev: &EventOut, machine_id: MachineIdInput, ts: i64) -> SubmitEventParams {
    SubmitEventParams {
        machine_id,
        event_type: i64::from(ev.event_type),
        value: ValueInput::parse(&ev.value),
        timestamp: ts,
        raw_data: None, // set by the caller from the raw store
        trust_level: i64::from(ev.trust_level),
        source_chain_id: i128::from(ev.source_chain_id),
        source_tx_hash: ev.source_tx_hash.clone(),
        metadata: ev.metadata.as_bytes().to_vec(),
        currency: Currency::Code(ev.currency.clone()),
    }
}

fn terminal_name(s: IntentState) -> &'static str {
    match s {
        IntentState::Included => "included",
        IntentState::Failed => "failed",
        IntentState::Conflicting => "conflicting",
        _ => "submitted",
    }
}

enum Held {
    No,
    Reason(String),
}

impl Submitter {
    pub fn new(client: ChainClient, store: Arc<EventStore>, counters: Arc<Counters>, cfg: SubmitConfig) -> Submitter {
        Submitter { client, store, counters, cfg, wake: Arc::new(Notify::new()), tracked: Arc::default() }
    }

    /// Wake the loop (new events were persisted).
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Run until `stop` turns true. Call inside the chain client's tokio runtime.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let me = Arc::new(self);
        let mut status = me.client.subscribe_status();
        me.reconcile_inflight();
        me.load_tracked();
        me.recount();
        let watcher = {
            let me = Arc::clone(&me);
            tokio::spawn(async move {
                loop {
                    match status.recv().await {
                        Ok(s) if s.state.is_terminal() => me.finalize(&s.intent_id, s.state, &s.code),
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => me.load_tracked(),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            })
        };
        loop {
            tokio::select! {
                _ = me.wake.notified() => {}
                _ = tokio::time::sleep(me.cfg.retry) => {}
                r = stop.changed() => {
                    if r.is_err() {
                        break; // the subsystem is gone
                    }
                }
            }
            if *stop.borrow() {
                break;
            }
            me.cycle().await;
            me.counters.save();
        }
        watcher.abort();
        me.counters.save();
    }

    fn machine_id(&self) -> Option<MachineIdInput> {
        let text = current_machine_id(self.cfg.machine_id.as_deref(), &self.cfg.machine_id_file)?;
        MachineIdInput::from_decimal("machine_id", &text).ok().filter(|m| !m.0.is_zero())
    }

    fn set_gauges(&self, pending: &[PendingRecord], held: &Held) {
        let mut per: BTreeMap<&str, u64> = BTreeMap::new();
        for p in pending {
            *per.entry(p.event.rule.as_str()).or_default() += 1;
        }
        for (rule, _) in self.counters.snapshot() {
            let n = per.get(rule.as_str()).copied().unwrap_or(0);
            let reason = match held {
                Held::Reason(r) if n > 0 => r.clone(),
                _ => String::new(),
            };
            self.counters.update(&rule, |c| {
                c.pending = n;
                c.held_reason = reason;
            });
        }
    }

    async fn cycle(&self) {
        let pending = match self.store.pending() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("events: {e}");
                return;
            }
        };
        self.set_gauges(&pending, &Held::No);
        let Some(oldest) = pending.first() else { return };
        let due = pending.len() >= self.cfg.batch_max
            || now_ms().saturating_sub(oldest.produced_ms) >= self.cfg.max_age.as_millis() as u64;
        if !due {
            return;
        }
        let Some(machine_id) = self.machine_id() else {
            self.set_gauges(&pending, &Held::Reason("no machine id (set chain.machine_id or call ~/activate)".into()));
            return;
        };
        let block_ts = match self.client.latest_block_time().await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!("events held: {e}");
                self.set_gauges(&pending, &Held::Reason(e));
                return;
            }
        };
        let cap = self.client.config().limits.max_value_per_tx;
        let mut ready = Vec::new();
        for p in pending {
            let over = cap > 0 && p.event.value.parse::<u128>().map_or(true, |v| v > cap);
            if over {
                tracing::warn!(rule = %p.event.rule, id = %p.event.id, "event dropped: value {} over max_value_per_tx {cap}", p.event.value);
                if self.store.drop_pending(&p.event, &format!("VALUE_CAP_EXCEEDED: {} > {cap}", p.event.value)).is_ok()
                {
                    self.counters.skip(&p.event.rule, "value_cap");
                }
                continue;
            }
            ready.push(p);
        }
        let mut rest: &[PendingRecord] = &ready;
        let mut n = self.cfg.batch_max.clamp(1, validation::MAX_BATCH_EVENTS);
        while !rest.is_empty() {
            let take = n.min(rest.len());
            match self.enqueue(&rest[..take], machine_id, block_ts) {
                Ok(()) => rest = &rest[take..],
                Err(e) if matches!(e.error_code(), ChainCode::RateLimited | ChainCode::ValueCapExceeded) => {
                    if take > 1 {
                        n = take / 2;
                        continue;
                    }
                    tracing::info!("events held: {e}");
                    let left: Vec<PendingRecord> = rest.to_vec();
                    self.set_gauges(&left, &Held::Reason(format!("{}: {e}", e.code())));
                    return;
                }
                Err(e) => {
                    tracing::warn!("events held: {}: {e}", e.code());
                    let left: Vec<PendingRecord> = rest.to_vec();
                    self.set_gauges(&left, &Held::Reason(format!("{}: {e}", e.code())));
                    return;
                }
            }
        }
        self.set_gauges(&[], &Held::No);
    }

    /// Build, validate and enqueue one batch; invalid events are dropped with the SDK's reason.
    fn enqueue(&self, recs: &[PendingRecord], machine_id: MachineIdInput, block_ts: i64) -> Result<(), ChainError> {
        let mut items = Vec::new();
        let mut kept = Vec::new();
        for r in recs {
            let ts = r.event.timestamp.min(block_ts);
            let raw = match std::fs::read(self.store.raw_path(&r.event.data_hash)) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(id = %r.event.id, "raw data missing: {e}");
                    let _ = self.store.drop_pending(&r.event, &format!("raw data missing: {e}"));
                    self.counters.skip(&r.event.rule, "raw_data_missing");
                    continue;
                }
            };
            let p = event_params(&r.event, machine_id, ts, raw);
            if let Err(e) = validation::resolve_batch_item(&p) {
                tracing::warn!(rule = %r.event.rule, id = %r.event.id, "event dropped by SDK validation: {} {}: {e}", e.code(), e.field());
                let _ = self.store.drop_pending(&r.event, &format!("{} {}: {e}", e.code(), e.field()));
                self.counters.skip(&r.event.rule, &format!("invalid_{}", e.field()));
                continue;
            }
            items.push(p);
            kept.push((r, ts));
        }
        if items.is_empty() {
            return Ok(());
        }
        let inflight = Inflight {
            ids: kept.iter().map(|(r, _)| r.event.id.clone()).collect(),
            machine_id: machine_id.0.to_string(),
            timestamps: kept.iter().map(|(_, t)| *t).collect(),
            calldata_hash: calldata_hash(&self.client, &items)?,
        };
        self.store.set_inflight(Some(&inflight)).map_err(|e| ChainError::Store {
            code: ChainCode::StoreIo,
            path: String::new(),
            message: e.to_string(),
        })?;
        let res = self.client.enqueue_batch(&items);
        match res {
            Ok((intent, _hashes)) => {
                self.record_submitted(
                    &kept.iter().map(|(r, t)| (r.event.clone(), *t)).collect::<Vec<_>>(),
                    &inflight.machine_id,
                    &intent,
                );
                let _ = self.store.set_inflight(None);
                tracing::info!(intent = %intent, events = kept.len(), "events handed to the outbox");
                Ok(())
            }
            Err(e) => {
                let _ = self.store.set_inflight(None);
                Err(e)
            }
        }
    }

    fn record_submitted(&self, evs: &[(EventOut, i64)], machine_id: &str, intent: &str) {
        let recs: Vec<SubmittedRecord> = evs
            .iter()
            .map(|(e, ts)| SubmittedRecord {
                event: e.clone(),
                machine_id: machine_id.to_owned(),
                timestamp: *ts,
                intent_id: intent.to_owned(),
                state: "submitted".into(),
                code: String::new(),
            })
            .collect();
        if let Err(e) = self.store.mark_submitted(&recs) {
            tracing::error!("events: recording intent {intent}: {e}");
        }
        for r in &recs {
            self.counters.update(&r.event.rule, |c| c.submitted += 1);
        }
        self.tracked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(intent.to_owned(), recs.iter().map(|r| (r.event.id.clone(), r.event.rule.clone())).collect());
        // The intent may already be terminal (fast chain): check its record now.
        if let Some(i) = self.client.outbox().get(intent) {
            if i.state.is_terminal() {
                let code = i.error.as_ref().map(|e| e.code.clone()).unwrap_or_default();
                self.finalize(intent, i.state, &code);
            }
        }
    }

    /// Re-track submitted-but-not-final records (start, or after the status stream lagged).
    fn load_tracked(&self) {
        let Ok(recs) = self.store.submitted() else { return };
        let mut by_intent: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for r in recs.iter().filter(|r| r.state == "submitted") {
            by_intent.entry(r.intent_id.clone()).or_default().push((r.event.id.clone(), r.event.rule.clone()));
        }
        {
            let mut t = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
            for (k, v) in &by_intent {
                t.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        for intent in by_intent.keys() {
            if let Some(i) = self.client.outbox().get(intent) {
                if i.state.is_terminal() {
                    let code = i.error.as_ref().map(|e| e.code.clone()).unwrap_or_default();
                    self.finalize(intent, i.state, &code);
                }
            }
        }
    }

    fn finalize(&self, intent: &str, state: IntentState, code: &str) {
        let Some(evs) = self.tracked.lock().unwrap_or_else(|p| p.into_inner()).remove(intent) else { return };
        for (id, rule) in evs {
            if let Ok(Some(mut r)) = self.store.submitted_record(&id) {
                if r.state != "submitted" {
                    continue;
                }
                r.state = terminal_name(state).into();
                r.code = code.to_owned();
                if let Err(e) = self.store.save_submitted(&r) {
                    tracing::warn!("events: {e}");
                }
            }
            self.counters.update(
                &rule,
                |c| {
                    if state == IntentState::Included {
                        c.included += 1
                    } else {
                        c.failed += 1
                    }
                },
            );
            if state != IntentState::Included {
                self.counters.skip(&rule, &format!("chain_{}", code.to_ascii_lowercase()));
                tracing::warn!(rule = %rule, id = %id, intent, "event not included: {code}");
            }
        }
    }

    /// The durable records are the truth. The counters file is flushed on a timer, so after a
    /// kill -9 it may lag behind them (the crash campaign saw 284 of 302 included events counted);
    /// at start `submitted`, `included` and `failed` are recounted from `submitted/`, and
    /// `produced` is at least what `submitted/` and `pending/` hold. Records removed by
    /// retention are counted from `pruned.json`.
    fn recount(&self) {
        let Ok(recs) = self.store.submitted() else { return };
        let tally = self.store.pruned_tally().unwrap_or_default();
        let mut per: HashMap<String, [u64; 4]> = HashMap::new();
        // Records removed by retention count through pruned.json.
        for (rule, c) in &tally.rules {
            let e = per.entry(rule.clone()).or_default();
            e[0] += c.submitted;
            e[1] += c.included;
        }
        for r in recs.iter().filter(|r| !tally.last_batch.contains(&r.event.id)) {
            let c = per.entry(r.event.rule.clone()).or_default();
            c[0] += 1;
            match r.state.as_str() {
                "included" => c[1] += 1,
                "failed" | "conflicting" => c[2] += 1,
                _ => {}
            }
        }
        for p in self.store.pending().unwrap_or_default() {
            per.entry(p.event.rule.clone()).or_default()[3] += 1;
        }
        for (rule, [submitted, included, failed, pending]) in per {
            self.counters.update(&rule, |c| {
                c.submitted = submitted;
                c.included = included;
                c.failed = failed;
                c.produced = c.produced.max(submitted + pending);
            });
        }
    }

    /// After a crash between the outbox's enqueue and the move to `submitted/`: find the intent
    /// that carries the in-flight batch (same calldata) and record the events under it.
    fn reconcile_inflight(&self) {
        let Ok(Some(inf)) = self.store.inflight() else { return };
        let matches = |i: &Intent| format!("{:#x}", validation::data_hash(Some(&i.input))) == inf.calldata_hash;
        let mut found: Option<String> =
            self.client.outbox().pending().iter().find(|i| matches(i)).map(|i| i.id.clone());
        if found.is_none() {
            let done = self.client.config().data_dir.join("chain").join("done");
            if let Ok(rd) = std::fs::read_dir(&done) {
                for e in rd.flatten() {
                    if let Some(i) =
                        std::fs::read(e.path()).ok().and_then(|b| serde_json::from_slice::<Intent>(&b).ok())
                    {
                        if matches(&i) {
                            found = Some(i.id.clone());
                            break;
                        }
                    }
                }
            }
        }
        match found {
            Some(intent) => {
                let pending = self.store.pending().unwrap_or_default();
                let evs: Vec<(EventOut, i64)> = inf
                    .ids
                    .iter()
                    .zip(&inf.timestamps)
                    .filter_map(|(id, ts)| pending.iter().find(|p| &p.event.id == id).map(|p| (p.event.clone(), *ts)))
                    .collect();
                tracing::info!(intent = %intent, events = evs.len(), "events: in-flight batch found in the outbox after a restart");
                self.record_submitted(&evs, &inf.machine_id, &intent);
            }
            None => tracing::info!("events: in-flight batch never reached the outbox; its events stay pending"),
        }
        let _ = self.store.set_inflight(None);
    }
}

/// Wait (from outside the runtime) up to `limit` for the submit task to end after its stop signal.
pub fn join_with_timeout(h: &tokio::runtime::Handle, task: tokio::task::JoinHandle<()>, limit: Duration) {
    let _ = h.block_on(async { tokio::time::timeout(limit, task).await });
}

/// Without a submit loop (chain client disabled): report every pending event as held for `reason`.
pub fn report_held(store: &EventStore, counters: &Counters, reason: &str) {
    let Ok(pending) = store.pending() else { return };
    let mut per: BTreeMap<String, u64> = BTreeMap::new();
    for p in &pending {
        *per.entry(p.event.rule.clone()).or_default() += 1;
    }
    for (rule, _) in counters.snapshot() {
        let n = per.get(&rule).copied().unwrap_or(0);
        counters.update(&rule, |c| {
            c.pending = n;
            c.held_reason = if n > 0 { reason.to_owned() } else { String::new() };
        });
    }
}
