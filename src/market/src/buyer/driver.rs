//! The buyer's driver: one task per open order walks its record from state to state
//! ([`super::steps`]), writing the record before it reports the step. Transient failures
//! (orchestrator or chain unreachable, a payment not mined yet, a full disk) make the order wait
//! with backoff; anything else ends it with a named code. On start every open order resumes
//! from its record.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peaqos_chain::ChainClient;
use peaqos_core::keys::MachineKey;
use rand::Rng;
use tokio::sync::{watch, Notify};

use super::desk::{OrderDesk, OrderGoal, OrderProgress, OrderResult, Step};
use super::pairing::{Pairing, PairingConfig};
use super::policy::DelegationPolicy;
use super::record::{is_order_key, OrderRecord, OrderState, OrderStore};
use crate::client::OrchestrationClient;
use crate::error::{ApiCode, MarketError, Result};
use crate::money::Amount;
use crate::state::MarketStore;

/// Buyer settings.
#[derive(Debug, Clone)]
pub struct BuyerConfig {
    pub pairing: PairingConfig,
    /// First wait after a transient failure; doubles up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Most orders open at once; more are refused (`ORDER_LIMIT`).
    pub max_open_orders: usize,
    /// Ended orders are forgotten after this long.
    pub retention: Duration,
    /// How long one wait for the payment's inclusion lasts before the order reports it still waits.
    pub payment_wait: Duration,
    /// Most orders doing a step (a request, a payment) at once; the others wait their turn, so a
    /// thousand open orders are a thousand records, not a thousand requests at the orchestrator.
    pub concurrency: usize,
}

/// What the buyer uses, all through their public APIs.
#[derive(Clone)]
pub struct BuyerParts {
    pub client: OrchestrationClient,
    pub market: MarketStore,
    pub chain: ChainClient,
    /// The agent key (by default the machine key).
    pub agent: Arc<MachineKey>,
}

struct Slot {
    rec: OrderRecord,
    tx: watch::Sender<OrderProgress>,
    wake: Arc<Notify>,
    /// The steps published so far ([`OrderProgress::trail`]).
    trail: Vec<(Step, String)>,
}

impl Slot {
    fn new(rec: OrderRecord) -> Slot {
        let first = progress_of(&rec);
        let trail = vec![(first.step, first.detail.clone())];
        let (tx, _) = watch::channel(OrderProgress { trail: trail.clone(), ..first });
        Slot { rec, tx, wake: Arc::new(Notify::new()), trail }
    }

    /// Publish `p`, adding its step to the trail when it is a new one.
    fn send(&mut self, mut p: OrderProgress) {
        if self.trail.last().is_none_or(|(s, _)| *s != p.step) && self.trail.len() < 32 {
            self.trail.push((p.step, p.detail.clone()));
        }
        p.trail.clone_from(&self.trail);
        self.tx.send_replace(p);
    }
}

pub(super) struct Inner {
    pub(super) client: OrchestrationClient,
    pub(super) pairing: Pairing,
    pub(super) market: MarketStore,
    pub(super) orders: OrderStore,
    pub(super) chain: ChainClient,
    pub(super) policy: DelegationPolicy,
    pub(super) cfg: BuyerConfig,
    slots: Mutex<HashMap<String, Slot>>,
    /// Limits check and the move to `Paying`, one order at a time.
    pub(super) spend: tokio::sync::Mutex<()>,
    /// One permit per order doing a step ([`BuyerConfig::concurrency`]).
    gate: tokio::sync::Semaphore,
    rt: tokio::runtime::Handle,
}

/// The buyer: an [`OrderDesk`] for the ROS layer, plus status, confirm and dispute.
#[derive(Clone)]
pub struct Buyer {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Buyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buyer").finish_non_exhaustive()
    }
}

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(super) fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// The progress a record shows.
fn progress_of(rec: &OrderRecord) -> OrderProgress {
    let detail = rec.waiting.clone().unwrap_or_else(|| match rec.state {
        OrderState::Quoted | OrderState::Ordering => format!(
            "quote {} of service {}: {} {}",
            rec.quote_id.as_deref().unwrap_or("-"),
            rec.service_id.as_deref().unwrap_or("-"),
            rec.quote_amount.as_deref().unwrap_or("(provider-defined)"),
            rec.quote_currency.as_deref().unwrap_or("")
        ),
        OrderState::PaymentDue | OrderState::Paying => rec
            .payment
            .as_ref()
            .map(|p| format!("{} {} to {} on {} ({} rail)", p.amount, p.currency, p.pay_to, p.chain, p.rail_type))
            .unwrap_or_default(),
        OrderState::Paid | OrderState::ProofAccepted => format!("payment {}", rec.tx_hash.as_deref().unwrap_or("")),
        _ => String::new(),
    });
    OrderProgress {
        order_key: rec.key.clone(),
        order_id: rec.order_id.clone().unwrap_or_default(),
        step: rec.state.step(),
        detail,
        result: rec.result.clone().filter(|_| rec.state.is_end()),
        trail: Vec::new(),
    }
}

/// The result of an order that ends with `state` (a refusal when `err` is given).
pub(super) fn result_of(rec: &OrderRecord, state: OrderState, err: Option<&MarketError>) -> OrderResult {
    let (code, field, message) = match err {
        Some(e) => (e.error_code().to_string(), e.field().to_string(), e.to_string()),
        None => (String::new(), String::new(), String::new()),
    };
    let paid = rec.payment.as_ref().filter(|_| rec.tx_hash.is_some());
    OrderResult {
        success: err.is_none(),
        error_code: code,
        error_field: field,
        message,
        order_key: rec.key.clone(),
        order_id: rec.order_id.clone().unwrap_or_default(),
        state: state.as_str().into(),
        payment_reference: rec.tx_hash.clone().unwrap_or_default(),
        amount: paid.map(|p| p.amount.clone()).unwrap_or_default(),
        currency: paid.map(|p| p.currency.clone()).unwrap_or_default(),
        ..Default::default()
    }
}

/// Errors an order waits out instead of failing on.
fn transient(e: &MarketError) -> bool {
    e.is_retryable()
        || e.is(&ApiCode::PaymentNotMined)
        || matches!(e, MarketError::Fs(_))
        || matches!(e, MarketError::Refused { code: "WAITING", .. })
}

/// The agent's session is no longer valid: open a new one and go on.
fn session_lost(e: &MarketError) -> bool {
    e.is(&ApiCode::AgentAuthExpired) || e.is(&ApiCode::AgentAuthInvalid) || e.is(&ApiCode::AuthInvalid)
}

fn validate_goal(goal: &OrderGoal) -> Result<()> {
    let v = |field: &str, m: &str| MarketError::validation(field, m);
    if goal.service_type.trim().is_empty() && goal.service_id.trim().is_empty() {
        return Err(v("service_type", "give a service type to search, or a service id"));
    }
    if goal.operation.trim().is_empty() {
        return Err(v("operation", "must not be empty"));
    }
    if !goal.input_json.trim().is_empty() {
        let parsed: serde_json::Value =
            serde_json::from_str(&goal.input_json).map_err(|e| v("input_json", &format!("not JSON: {e}")))?;
        if !parsed.is_object() {
            return Err(v("input_json", "must be a JSON object"));
        }
    }
    if !goal.budget.is_empty() {
        Amount::parse(&goal.budget, "budget").map_err(|m| v("budget", &m))?;
    }
    for (field, s) in [
        ("service_type", &goal.service_type),
        ("service_id", &goal.service_id),
        ("operation", &goal.operation),
        ("currency", &goal.currency),
    ] {
        if s.len() > 256 || s.chars().any(char::is_control) {
            return Err(v(field, "at most 256 characters, no control characters"));
        }
    }
    if goal.client_key.len() > 256 || goal.input_json.len() > 64 * 1024 {
        return Err(v(if goal.client_key.len() > 256 { "client_key" } else { "input_json" }, "too long"));
    }
    Ok(())
}

impl Buyer {
    /// Open the buyer: load every stored order, forget ended ones past retention, and resume the
    /// open ones on `rt`.
    pub fn start(
        parts: BuyerParts,
        data_dir: &std::path::Path,
        cfg: BuyerConfig,
        rt: tokio::runtime::Handle,
    ) -> Result<Buyer> {
        cfg.pairing.policy.validate()?;
        let orders = OrderStore::open(data_dir)?;
        let pairing = Pairing::new(parts.client.clone(), parts.market.clone(), parts.agent, cfg.pairing.clone());
        let inner = Arc::new(Inner {
            client: parts.client,
            pairing,
            market: parts.market,
            orders,
            chain: parts.chain,
            policy: cfg.pairing.policy.clone(),
            gate: tokio::sync::Semaphore::new(cfg.concurrency.max(1)),
            cfg,
            slots: Mutex::new(HashMap::new()),
            spend: tokio::sync::Mutex::new(()),
            rt,
        });
        let buyer = Buyer { inner };
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(buyer.inner.cfg.retention).unwrap_or_default();
        let mut resumed = 0;
        for (key, rec) in buyer.inner.orders.load_all()? {
            let old = chrono::DateTime::parse_from_rfc3339(&rec.updated_at).is_ok_and(|t| t < cutoff);
            if rec.state.is_end() && old {
                buyer.inner.orders.remove(&key)?;
                continue;
            }
            let open = !rec.state.is_end();
            buyer.insert(rec);
            if open {
                buyer.spawn(key);
                resumed += 1;
            }
        }
        if resumed > 0 {
            tracing::info!(orders = resumed, "market: resuming open orders");
        }
        Ok(buyer)
    }

    fn insert(&self, rec: OrderRecord) {
        let key = rec.key.clone();
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner()).insert(key, Slot::new(rec));
    }

    fn spawn(&self, key: String) {
        let me = self.clone();
        self.inner.rt.spawn(async move { me.run(key).await });
    }

    /// The buyer agent's address.
    pub fn agent_address(&self) -> &str {
        self.inner.pairing.agent_address()
    }

    /// The stored record of an order.
    pub fn record(&self, key: &str) -> Option<OrderRecord> {
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner()).get(key).map(|s| s.rec.clone())
    }

    /// Every order's record, by key.
    pub fn records(&self) -> Vec<OrderRecord> {
        let slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = slots.values().map(|s| s.rec.clone()).collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        v
    }

    /// Orders by state (`state=n`, sorted), and how many open ones wait on a transient failure.
    pub fn counts(&self) -> (String, usize) {
        let slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut by: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        let mut waiting = 0;
        for s in slots.values() {
            *by.entry(s.rec.state.as_str()).or_default() += 1;
            waiting += usize::from(!s.rec.state.is_end() && s.rec.waiting.is_some());
        }
        (by.iter().map(|(k, n)| format!("{k}={n}")).collect::<Vec<_>>().join(","), waiting)
    }

    /// Write `rec` (durably, first) and publish it.
    pub(super) fn update(&self, rec: OrderRecord) -> Result<()> {
        self.inner.orders.save(&rec)?;
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get_mut(&rec.key) {
            slot.send(progress_of(&rec));
            slot.rec = rec;
        }
        Ok(())
    }

    /// Publish a step that is not a state of its own (searched).
    pub(super) fn announce(&self, rec: &OrderRecord, step: Step, detail: String) {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get_mut(&rec.key) {
            slot.send(OrderProgress {
                order_key: rec.key.clone(),
                order_id: rec.order_id.clone().unwrap_or_default(),
                step,
                detail,
                result: None,
                trail: Vec::new(),
            });
        }
    }

    /// Under the slots lock: if no cancel is pending, write `rec` (whose state commits the
    /// payment). `false`: cancelled first, nothing written.
    pub(super) fn commit_payment(&self, rec: OrderRecord) -> Result<bool> {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        let Some(slot) = slots.get_mut(&rec.key) else { return Ok(false) };
        if slot.rec.cancel_requested {
            return Ok(false);
        }
        self.inner.orders.save(&rec)?;
        slot.send(progress_of(&rec));
        slot.rec = rec;
        Ok(true)
    }

    /// What this agent has committed to pay today in `currency` (failed payments excluded).
    pub(super) fn spent_today(&self, currency: &str) -> Amount {
        let day = today();
        let slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .values()
            .filter(|s| s.rec.state.payment_committed() && s.rec.state != OrderState::Cancelled)
            .filter_map(|s| s.rec.payment.as_ref())
            .filter(|p| p.day == day && !p.failed && p.currency.eq_ignore_ascii_case(currency))
            .filter_map(|p| Amount::parse(&p.amount, "amount").ok())
            .fold(Amount::ZERO, |a, b| a.checked_add(b).unwrap_or(a))
    }

    /// End the order in `state` with `err` (or success).
    fn end(&self, key: &str, state: OrderState, err: Option<&MarketError>) {
        let Some(mut rec) = self.record(key) else { return };
        let mut result = result_of(&rec, state, err);
        if let Some(prev) = &rec.result {
            // keep what a step already put there (run, outcome, handoff)
            result.run_json.clone_from(&prev.run_json);
            result.outcome_json.clone_from(&prev.outcome_json);
            result.handoff_json.clone_from(&prev.handoff_json);
        }
        rec.state = state;
        rec.result = Some(result);
        rec.waiting = None;
        rec.updated_at = now();
        if let Err(e) = self.update(rec) {
            tracing::error!(order = %key, error = %e, "market: could not store the order's end; it resumes at restart");
        }
    }

    async fn run(self, key: String) {
        let mut delay = self.inner.cfg.retry_base;
        loop {
            let Some(rec) = self.record(&key) else { return };
            if rec.state.is_end() {
                return;
            }
            if rec.cancel_requested && !rec.state.payment_committed() {
                let e = MarketError::Refused {
                    code: "CANCELLED",
                    field: String::new(),
                    message: "cancelled by the caller before payment".into(),
                };
                tracing::info!(order = %key, "market: order cancelled before payment");
                self.end(&key, OrderState::Cancelled, Some(&e));
                return;
            }
            let stepped = {
                let Ok(_turn) = self.inner.gate.acquire().await else { return };
                self.step(rec.clone()).await
            };
            match stepped {
                Ok(()) => delay = self.inner.cfg.retry_base,
                Err(e) if session_lost(&e) => {
                    tracing::info!(order = %key, code = e.error_code(), "market: agent session refused; opening a new one");
                    if let Err(e) = self.inner.pairing.expire() {
                        tracing::warn!(error = %e, "market: could not mark the session expired");
                    }
                    self.wait(&key, &rec, &e, delay).await;
                    delay = (delay * 2).min(self.inner.cfg.retry_max);
                }
                Err(e) if transient(&e) => {
                    tracing::debug!(order = %key, state = rec.state.as_str(), error = %e, "market: order waits");
                    self.wait(&key, &rec, &e, delay).await;
                    delay = (delay * 2).min(self.inner.cfg.retry_max);
                }
                Err(e) => {
                    tracing::warn!(order = %key, state = rec.state.as_str(), code = e.error_code(), error = %e, "market: order failed");
                    self.end(&key, OrderState::Failed, Some(&e));
                    return;
                }
            }
        }
    }

    /// Show why the order waits, then sleep `delay` (with jitter), or less if woken (a cancel).
    async fn wait(&self, key: &str, rec: &OrderRecord, e: &MarketError, delay: Duration) {
        let reason = format!("waiting: {e}");
        if rec.waiting.as_deref() != Some(reason.as_str()) {
            let mut r = rec.clone();
            r.waiting = Some(reason);
            let _ = self.update(r);
        }
        let wake = {
            let slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.get(key).map(|s| s.wake.clone())
        };
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        let d = delay.mul_f64(jitter);
        match wake {
            Some(w) => {
                let _ = tokio::time::timeout(d, w.notified()).await;
            }
            None => tokio::time::sleep(d).await,
        }
    }
}

impl OrderDesk for Buyer {
    fn place(&self, goal: OrderGoal) -> Result<String> {
        validate_goal(&goal)?;
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        if !goal.client_key.is_empty() {
            if let Some(s) = slots.values().find(|s| s.rec.goal.client_key == goal.client_key) {
                if s.rec.goal != goal {
                    return Err(MarketError::validation("client_key", "already used for a different goal"));
                }
                return Ok(s.rec.key.clone());
            }
        }
        let open = slots.values().filter(|s| !s.rec.state.is_end()).count();
        if open >= self.inner.cfg.max_open_orders {
            return Err(MarketError::Refused {
                code: "ORDER_LIMIT",
                field: "market.buyer.max_open_orders".into(),
                message: format!("{open} orders are open, the most allowed at once"),
            });
        }
        let key = format!("ord-{:016x}", rand::thread_rng().gen::<u64>());
        let rec = OrderRecord::new(key.clone(), goal, &now());
        self.inner.orders.save(&rec)?;
        slots.insert(key.clone(), Slot::new(rec));
        drop(slots);
        tracing::info!(order = %key, "market: order accepted");
        self.spawn(key.clone());
        Ok(key)
    }

    fn watch(&self, order_key: &str) -> Option<watch::Receiver<OrderProgress>> {
        let slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get(order_key).map(|s| s.tx.subscribe())
    }

    fn cancel(&self, order_key: &str) -> Result<()> {
        if !is_order_key(order_key) {
            return Err(MarketError::validation("order_key", "not an order key (ord-…)"));
        }
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots
            .get_mut(order_key)
            .ok_or_else(|| MarketError::validation("order_key", format!("no order {order_key}")))?;
        if slot.rec.state.is_end() {
            return Ok(());
        }
        if slot.rec.state.payment_committed() {
            return Err(MarketError::Refused {
                code: "PAYMENT_SENT",
                field: "order_key".into(),
                message: format!(
                    "order {order_key} is past its payment ({}); it can no longer be cancelled",
                    slot.rec.state.as_str()
                ),
            });
        }
        let mut rec = slot.rec.clone();
        rec.cancel_requested = true;
        self.inner.orders.save(&rec)?;
        slot.rec = rec;
        slot.wake.notify_one();
        Ok(())
    }
}
