//! The seller's life cycle, as a node runs it: onboarding (at start or on request), enrollment,
//! the lease-driven heartbeat, recovery, and a [`Snapshot`] of where it stands for health reports.
//!
//! [`Seller::run`] is the supervisor (one task): it waits for the on-chain machine id, onboards and
//! enrolls ([`Seller::onboard`], also what an explicit request calls), then heartbeats. Retryable
//! failures (no answer, 5xx) back off exponentially with jitter ([`crate::agent::backoff_delay`]);
//! an agent the server no longer accepts is re-enrolled; a machine record that is gone is
//! registered again; a non-retryable failure stops the supervisor until the next
//! [`Seller::onboard`] call. Secrets never reach the snapshot or the log.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use peaqos_core::keys::MachineKey;
use tokio::sync::{watch, Notify};

use crate::agent::{self, backoff_delay, AgentCredentials, EnrollConfig, Heartbeat, HeartbeatPolicy};
use crate::client::OrchestrationClient;
use crate::error::{ApiCode, MarketError, Result};
use crate::onboard::{self, MachineProfile};
use crate::state::MarketStore;
use crate::wire::{
    DeliveryCapabilitiesRequest, DeliveryCapabilityInput, HeartbeatEndpoint, ListingUpdate, Machine,
    RuntimeEndpointUpsert,
};

/// Purchases served at once.
pub const PURCHASES_IN_FLIGHT: usize = 8;

/// How often final purchase records are looked at for pruning.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The on-chain machine id (decimal) when known: a setting, or what activation persisted.
pub type MachineIdSource = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// What the seller does.
#[derive(Debug, Clone)]
pub struct SellerConfig {
    pub profile: MachineProfile,
    pub enroll: EnrollConfig,
    pub heartbeat: HeartbeatPolicy,
    /// What each heartbeat reports (at least one).
    pub endpoints: Vec<HeartbeatEndpoint>,
    /// Onboard without being asked, as soon as the machine id is known.
    pub onboard_at_start: bool,
    /// How often to look again for an unknown machine id.
    pub machine_id_poll: Duration,
    /// What is offered for sale (nothing when empty).
    pub offers: Offers,
    /// Serving purchases of the listings (`None`: listings only, purchases not served).
    pub sales: Option<SalesConfig>,
    /// The runtime endpoint upserted for this machine (`None`: none).
    pub runtime_endpoint: Option<RuntimeEndpointConfig>,
}

/// The node's own health as a runtime endpoint status: `active` or `degraded`.
pub type HealthSource = Arc<dyn Fn() -> &'static str + Send + Sync>;

/// The machine's runtime endpoint (`PUT /machines/{m}/runtime-endpoints/{providerKey}`),
/// upserted after the first heartbeat of an agent, whenever the node's health changes, and every
/// `refresh`; its `status` is the node's health.
#[derive(Clone)]
pub struct RuntimeEndpointConfig {
    pub provider_key: String,
    pub upsert: RuntimeEndpointUpsert,
    pub refresh: Duration,
    pub health: HealthSource,
}

impl std::fmt::Debug for RuntimeEndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeEndpointConfig")
            .field("provider_key", &self.provider_key)
            .field("upsert", &self.upsert)
            .finish_non_exhaustive()
    }
}

/// What serving purchases needs: the chunk chains and the keys that open them.
#[derive(Clone)]
pub struct SalesConfig {
    /// The node's data dir (purchases under `market/purchases/`).
    pub data_dir: std::path::PathBuf,
    /// The stream root holding the chunk chains (`<data_dir>/stream`).
    pub stream_dir: std::path::PathBuf,
    pub keys: Arc<peaqos_stream::keys::MachineStreamKeys>,
    /// How often open purchases are polled besides the control socket's notifications.
    pub poll_interval: Duration,
    /// Where payments are checked and sales recorded (`None`: the server's word on payments,
    /// no revenue events).
    pub chain: Option<crate::settle::SaleChain>,
    /// The local delivery endpoint purchases are handed over through (`None`: storage mode);
    /// served by [`crate::delivery::serve`], which the caller runs.
    pub http: Option<crate::delivery::HttpDelivery>,
    /// How long a final (recorded or refused) purchase record is kept (`None`: forever).
    pub retention: Option<Duration>,
}

impl std::fmt::Debug for SalesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesConfig").field("data_dir", &self.data_dir).finish_non_exhaustive()
    }
}

/// The stream listings and the delivery capabilities behind them, published once the agent
/// heartbeats and refreshed halfway through the capabilities' lifetime.
#[derive(Debug, Clone, Default)]
pub struct Offers {
    pub capabilities: Vec<DeliveryCapabilityInput>,
    pub resource_types: Vec<String>,
    /// How long registered capabilities stay valid (`expiresAt`).
    pub capabilities_ttl: Duration,
    pub listings: Vec<Listing>,
}

/// One topic's stream listing.
#[derive(Debug, Clone)]
pub struct Listing {
    pub listing_id: String,
    pub topic: String,
    pub update: ListingUpdate,
    /// Price, currency and the transfer rails a payment is checked against.
    pub terms: crate::settle::SaleTerms,
}

impl Offers {
    pub fn is_empty(&self) -> bool {
        self.capabilities.is_empty() && self.listings.is_empty()
    }
}

/// Where the seller stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Not onboarded and not asked to (`onboard_at_start` off, nothing stored).
    #[default]
    Idle,
    /// Onboarding is wanted but the on-chain machine id is not known yet.
    WaitingForMachineId,
    /// Onboarding or enrollment in progress.
    Onboarding,
    /// The last heartbeat succeeded.
    Online,
    /// The last attempt failed in a way that may pass; the next one is scheduled (backoff).
    Retrying,
    /// The last attempt failed in a way that will not pass by waiting; waits for a new request.
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::WaitingForMachineId => "waiting for machine id",
            Phase::Onboarding => "onboarding",
            Phase::Online => "online",
            Phase::Retrying => "retrying",
            Phase::Failed => "failed",
        }
    }
}

/// The seller's state for health reports (no secrets).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub phase: Phase,
    /// The on-chain machine id onboarding used.
    pub chain_machine_id: Option<String>,
    /// The orchestration record (`mach_…`).
    pub machine_id: Option<String>,
    pub agent_id: Option<String>,
    pub heartbeats: u64,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Consecutive failed attempts (heartbeats, or onboarding while retrying).
    pub failures: u32,
    /// When the next attempt is due while retrying.
    pub retry_at: Option<DateTime<Utc>>,
    /// Current backoff delay while retrying.
    pub backoff: Option<Duration>,
    /// The last error (code and message), cleared by a success.
    pub last_error: Option<(String, String)>,
    /// Listings configured, and published for the current agent.
    pub listings_total: usize,
    pub listings_published: usize,
    /// Until when the registered delivery capabilities are valid.
    pub capabilities_expires_at: Option<DateTime<Utc>>,
    /// The last failure to publish the offers (code and message), cleared by a success.
    pub offers_error: Option<(String, String)>,
    /// The control socket is connected.
    pub control_connected: bool,
    /// Purchases by state (`seen`, `paid`, …, `recorded`, `refused`) as last served.
    pub purchases: BTreeMap<String, u64>,
    /// The last failure serving a purchase (purchase id and message).
    pub purchase_error: Option<(String, String)>,
    /// The runtime endpoint's status as last upserted (`active`, `degraded`).
    pub runtime_endpoint_status: Option<String>,
    /// The last runtime endpoint upsert failure (code, message), cleared by a success.
    pub runtime_endpoint_error: Option<(String, String)>,
    /// Final purchase records deleted for `market.purchase_retention` since start.
    pub purchases_pruned: u64,
}

/// The result of a successful [`Seller::onboard`].
#[derive(Debug, Clone)]
pub struct Onboarded {
    pub chain_machine_id: String,
    pub machine: Machine,
    pub agent_id: String,
}

/// One robot's seller side.
pub struct Seller {
    client: OrchestrationClient,
    store: MarketStore,
    key: Arc<MachineKey>,
    cfg: SellerConfig,
    machine_id: MachineIdSource,
    /// Serialises onboarding; holds the agent the heartbeat uses.
    creds: tokio::sync::Mutex<Option<AgentCredentials>>,
    view: Mutex<Snapshot>,
    wake: Notify,
    requested: AtomicBool,
}

impl std::fmt::Debug for Seller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seller").field("client", &self.client).field("view", &self.snapshot()).finish_non_exhaustive()
    }
}

impl Seller {
    pub fn new(
        client: OrchestrationClient,
        store: MarketStore,
        key: Arc<MachineKey>,
        cfg: SellerConfig,
        machine_id: MachineIdSource,
    ) -> Result<Arc<Seller>> {
        if cfg.endpoints.is_empty() {
            return Err(MarketError::validation("endpoints", "must contain at least one entry"));
        }
        let view = Snapshot { listings_total: cfg.offers.listings.len(), ..Default::default() };
        Ok(Arc::new(Seller {
            client,
            store,
            key,
            cfg,
            machine_id,
            creds: tokio::sync::Mutex::new(None),
            view: Mutex::new(view),
            wake: Notify::new(),
            requested: AtomicBool::new(false),
        }))
    }

    pub fn snapshot(&self) -> Snapshot {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut self.view.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn fail(&self, phase: Phase, e: &MarketError, failures: u32, backoff: Option<Duration>) {
        let now = Utc::now();
        self.update(|v| {
            v.phase = phase;
            v.failures = failures;
            v.backoff = backoff;
            v.retry_at = backoff.map(|d| now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX));
            v.last_error = Some((e.error_code().to_string(), e.to_string()));
        });
    }

    /// Make sure the machine record exists and is active and an agent is enrolled (idempotent:
    /// a rerun costs one `GET /machines/{id}`). Wakes the supervisor to heartbeat with the agent.
    pub async fn onboard(&self) -> Result<Onboarded> {
        self.requested.store(true, Ordering::Relaxed);
        let r = self.ensure_ready().await;
        self.wake.notify_one();
        r
    }

    async fn ensure_ready(&self) -> Result<Onboarded> {
        let mut creds = self.creds.lock().await;
        let chain_id = (self.machine_id)().ok_or(MarketError::MachineIdUnknown)?;
        self.update(|v| {
            if v.phase != Phase::Online {
                v.phase = Phase::Onboarding;
            }
            v.chain_machine_id = Some(chain_id.clone());
        });
        let machine =
            onboard::onboard(&self.client, &self.store, &self.key, &chain_id, &self.cfg.profile, None).await?;
        let c = match creds.as_ref() {
            Some(c) if c.machine_id == machine.id => c.clone(),
            _ => agent::ensure_enrolled(&self.client, &self.store, &machine.id, &self.cfg.enroll, None).await?,
        };
        let agent_id = c.agent_id.clone();
        // Once onboarded, the supervisor keeps the seller onboarded (re-registering if need be).
        self.requested.store(true, Ordering::Relaxed);
        self.update(|v| {
            v.machine_id = Some(machine.id.clone());
            v.agent_id = Some(agent_id.clone());
        });
        *creds = Some(c);
        Ok(Onboarded { chain_machine_id: chain_id, machine, agent_id })
    }

    /// Wait `d` (forever when `None`), a wake-up, or shutdown. True unless the full wait passed.
    async fn pause(&self, d: Option<Duration>, shutdown: &mut watch::Receiver<bool>) -> bool {
        let sleep = async {
            match d {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => false,
            _ = self.wake.notified() => true,
            _ = shutdown.changed() => true,
        }
    }

    fn wants_onboarding(&self) -> bool {
        self.cfg.onboard_at_start
            || self.requested.load(Ordering::Relaxed)
            || self.store.load_agent().ok().flatten().is_some()
    }

    /// No agent yet: onboard when wanted (at start, on request, or a previous run enrolled one),
    /// backing off on retryable failures; otherwise wait.
    async fn onboard_step(&self, setup_failures: &mut u32, shutdown: &mut watch::Receiver<bool>) {
        if !self.wants_onboarding() {
            self.update(|v| v.phase = Phase::Idle);
            self.pause(None, shutdown).await;
            return;
        }
        match self.ensure_ready().await {
            Ok(o) => {
                *setup_failures = 0;
                tracing::info!(machine = %o.machine.id, agent = %o.agent_id, "market: onboarded");
            }
            Err(MarketError::MachineIdUnknown) => {
                self.update(|v| v.phase = Phase::WaitingForMachineId);
                self.pause(Some(self.cfg.machine_id_poll), shutdown).await;
            }
            Err(e) if e.is_retryable() => {
                *setup_failures = setup_failures.saturating_add(1);
                let d = backoff_delay(&self.cfg.heartbeat, *setup_failures);
                tracing::warn!(failures = *setup_failures, retry_in_ms = d.as_millis() as u64, error = %e,
                    "market onboarding failed");
                self.fail(Phase::Retrying, &e, *setup_failures, Some(d));
                self.pause(Some(d), shutdown).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "market onboarding failed; waiting for a new ~/market_onboard request");
                self.requested.store(false, Ordering::Relaxed);
                self.fail(Phase::Failed, &e, 0, None);
                self.pause(None, shutdown).await;
            }
        }
    }

    /// A heartbeat was accepted: the snapshot says online.
    fn online(&self, agent: &str, now: DateTime<Utc>, lease_expires_at: DateTime<Utc>) {
        if self.snapshot().phase != Phase::Online {
            tracing::info!(agent = %agent, lease_expires_at = %lease_expires_at.to_rfc3339(), "market: heartbeat accepted; online");
        }
        self.update(|v| {
            v.phase = Phase::Online;
            v.heartbeats += 1;
            v.last_heartbeat = Some(now);
            v.lease_expires_at = Some(lease_expires_at);
            v.failures = 0;
            v.retry_at = None;
            v.backoff = None;
            v.last_error = None;
        });
    }

    /// After an accepted heartbeat: publish the offers when due, upsert the runtime endpoint when due.
    async fn after_heartbeat(
        &self,
        agent: &str,
        offers_done: &mut Option<(String, DateTime<Utc>)>,
        runtime_done: &mut Option<(String, &'static str, DateTime<Utc>)>,
    ) {
        let due = offers_done.as_ref().is_none_or(|(a, at)| a != agent || Utc::now() >= *at);
        let creds = self.creds.lock().await.clone().filter(|c| c.agent_id == agent);
        if let Some(c) = &creds {
            if due && !self.cfg.offers.is_empty() {
                *offers_done = self.publish_offers(c).await.map(|next| (agent.to_string(), next));
            }
            self.publish_runtime_endpoint(c, runtime_done).await;
        }
    }

    /// The supervisor: runs until `shutdown` turns true (or its sender is dropped).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut hb: Option<Heartbeat> = None;
        let mut setup_failures = 0u32;
        // (agent the offers were published for, when to publish them again)
        let mut offers_done: Option<(String, DateTime<Utc>)> = None;
        // stops the control socket and purchase worker of the current agent
        let mut sales_stop: Option<watch::Sender<bool>> = None;
        // (machine, status, when) of the last runtime endpoint upsert
        let mut runtime_done: Option<(String, &'static str, DateTime<Utc>)> = None;
        loop {
            if *shutdown.borrow() || shutdown.has_changed().is_err() {
                return;
            }
            let current = self.creds.lock().await.clone();
            match (current, hb.as_ref()) {
                (Some(c), Some(h)) if h.agent_id() == c.agent_id => {}
                (Some(c), _) => {
                    if let Some(stop) = sales_stop.take() {
                        let _ = stop.send(true);
                    }
                    sales_stop = self.start_sales(&c);
                    let policy = self.cfg.heartbeat.clone();
                    match Heartbeat::new(c, self.cfg.endpoints.clone(), policy, Utc::now()) {
                        Ok(h) => hb = Some(h),
                        Err(e) => {
                            self.fail(Phase::Failed, &e, 0, None);
                            self.pause(None, &mut shutdown).await;
                            continue;
                        }
                    }
                }
                (None, _) => {
                    hb = None;
                    if let Some(stop) = sales_stop.take() {
                        let _ = stop.send(true); // no agent: no control socket, no purchases served
                    }
                    self.onboard_step(&mut setup_failures, &mut shutdown).await;
                    continue;
                }
            }
            let Some(h) = hb.as_mut() else { continue };
            let wait = (h.next_due() - Utc::now()).to_std().unwrap_or_default();
            if self.pause(Some(wait), &mut shutdown).await {
                continue; // woken: credentials may have changed, or shutdown
            }
            let now = Utc::now();
            match h.beat(&self.client, now).await {
                Ok(rep) => {
                    self.online(h.agent_id(), now, rep.lease_expires_at);
                    self.after_heartbeat(h.agent_id(), &mut offers_done, &mut runtime_done).await;
                }
                Err(e) if e.is_retryable() => {
                    let backoff = (h.next_due() - now).to_std().ok();
                    self.fail(Phase::Retrying, &e, h.failures(), backoff);
                }
                Err(e)
                    if e.is(&ApiCode::AgentAuthInvalid)
                        || e.is(&ApiCode::AgentAuthExpired)
                        || e.is(&ApiCode::AgentAuthRequired) =>
                {
                    tracing::warn!(agent = %h.agent_id(), error = %e, "market: the agent was refused; enrolling a new one");
                    self.fail(Phase::Onboarding, &e, h.failures(), None);
                    self.replace_agent(&mut shutdown).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "market heartbeat refused; waiting for a new ~/market_onboard request");
                    self.fail(Phase::Failed, &e, h.failures(), None);
                    hb = None;
                    if let Some(stop) = sales_stop.take() {
                        let _ = stop.send(true);
                    }
                    *self.creds.lock().await = None;
                    self.requested.store(false, Ordering::Relaxed);
                    self.pause(None, &mut shutdown).await;
                }
            }
        }
    }

    /// Start the control socket and the purchase worker for agent `c` (when purchases are served).
    fn start_sales(self: &Arc<Self>, c: &AgentCredentials) -> Option<watch::Sender<bool>> {
        let sales = self.cfg.sales.clone()?;
        if self.cfg.offers.listings.is_empty() {
            return None;
        }
        let (stop, stop_rx) = watch::channel(false);
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        let base = self.client.base_url().to_string();
        tokio::spawn(crate::control::run(base, c.clone(), self.cfg.heartbeat.clone(), tx, stop_rx.clone()));
        let me = Arc::clone(self);
        let creds = c.clone();
        let mut stop_rx = stop_rx;
        tokio::spawn(async move {
            let listings: BTreeMap<String, Listing> =
                me.cfg.offers.listings.iter().map(|l| (l.listing_id.clone(), l.clone())).collect();
            let store = match crate::purchases::PurchaseStore::open(&sales.data_dir) {
                Ok(s) => s,
                Err(e) => {
                    me.update(|v| v.purchase_error = Some((String::new(), e.to_string())));
                    return;
                }
            };
            let desk = crate::purchases::Desk {
                client: &me.client,
                store: &store,
                stream_dir: &sales.stream_dir,
                keys: &sales.keys,
                creds: &creds,
                listings: &listings,
                chain: sales.chain.as_ref(),
                http: sales.http.as_ref(),
            };
            // the first pass prunes at once (records kept past their retention by a stopped node)
            let mut last_prune = std::time::Instant::now() - PRUNE_EVERY;
            loop {
                use crate::control::Signal;
                // None: the poll timer (not a socket event)
                let signal: Option<Signal> = tokio::select! {
                    s = rx.recv() => match s {
                        Some(s) => Some(s),
                        None => return,
                    },
                    _ = tokio::time::sleep(sales.poll_interval) => None,
                    _ = stop_rx.changed() => return,
                };
                let mut ids: Vec<String> = match signal {
                    Some(Signal::Disconnected(_)) => {
                        me.update(|v| v.control_connected = false);
                        continue;
                    }
                    Some(Signal::Purchase { purchase_id, .. }) => vec![purchase_id],
                    Some(Signal::Connected) | None => {
                        if signal.is_some() {
                            me.update(|v| v.control_connected = true);
                        }
                        store
                            .open_purchases()
                            .map(|v| v.into_iter().map(|r| r.purchase_id).collect())
                            .unwrap_or_default()
                    }
                };
                // Notifications that queued up meanwhile join this round (each purchase once).
                while let Ok(more) = rx.try_recv() {
                    match more {
                        Signal::Purchase { purchase_id, .. } if !ids.contains(&purchase_id) => ids.push(purchase_id),
                        Signal::Disconnected(_) => me.update(|v| v.control_connected = false),
                        Signal::Connected => {
                            me.update(|v| v.control_connected = true);
                            for r in store.open_purchases().unwrap_or_default() {
                                if !ids.contains(&r.purchase_id) {
                                    ids.push(r.purchase_id);
                                }
                            }
                        }
                        Signal::Purchase { .. } => {}
                    }
                    if ids.len() >= 256 {
                        break;
                    }
                }
                // Purchases are independent (each its own record; a payment is claimed under the
                // store's lock), so several are served at once: most of a step is waiting for the
                // server or the chain.
                use futures_util::StreamExt as _;
                futures_util::stream::iter(ids)
                    .for_each_concurrent(PURCHASES_IN_FLIGHT, |id| {
                        let (desk, me) = (&desk, &me);
                        async move {
                            if let Err(e) = desk.advance(&id, None).await {
                                tracing::warn!(purchase = %id, error = %e, "market: serving a purchase failed; retried later");
                                me.update(|v| v.purchase_error = Some((id.clone(), e.to_string())));
                            }
                        }
                    })
                    .await;
                if let Some(keep) = sales.retention.filter(|_| last_prune.elapsed() >= PRUNE_EVERY) {
                    last_prune = std::time::Instant::now();
                    match store.prune_final(keep) {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(
                                pruned = n,
                                "market: final purchase records past market.purchase_retention deleted"
                            );
                            me.update(|v| v.purchases_pruned += n);
                        }
                        Err(e) => tracing::warn!(error = %e, "market: pruning purchase records failed"),
                    }
                }
                let counts = purchase_counts(&store);
                me.update(|v| v.purchases = counts);
            }
        });
        Some(stop)
    }

    /// Upsert the runtime endpoint when it is configured and due: not yet done for this machine,
    /// the node's health changed, or `refresh` passed. A failure is reported in the snapshot and
    /// retried after the next heartbeat.
    async fn publish_runtime_endpoint(
        &self,
        c: &AgentCredentials,
        done: &mut Option<(String, &'static str, DateTime<Utc>)>,
    ) {
        let Some(rt) = &self.cfg.runtime_endpoint else { return };
        let status = (rt.health)();
        let refresh = chrono::Duration::from_std(rt.refresh).unwrap_or(chrono::Duration::minutes(10));
        let due =
            done.as_ref().is_none_or(|(m, s, at)| *m != c.machine_id || *s != status || Utc::now() >= *at + refresh);
        if !due {
            return;
        }
        let mut req = rt.upsert.clone();
        req.status = Some(status.to_string());
        match self.client.upsert_runtime_endpoint(&c.machine_id, &rt.provider_key, &req).await {
            Ok(ep) => {
                tracing::info!(provider = %ep.provider_key, status, "market: runtime endpoint upserted");
                *done = Some((c.machine_id.clone(), status, Utc::now()));
                self.update(|v| {
                    v.runtime_endpoint_status = Some(status.to_string());
                    v.runtime_endpoint_error = None;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "market: upserting the runtime endpoint failed; retrying after the next heartbeat");
                self.update(|v| v.runtime_endpoint_error = Some((e.error_code().to_string(), e.to_string())));
            }
        }
    }

    /// Register the delivery capabilities and upsert every listing; on success, when to do it
    /// again (halfway through the capabilities' lifetime). A failure is reported in the snapshot
    /// and retried after the next heartbeat.
    async fn publish_offers(&self, c: &AgentCredentials) -> Option<DateTime<Utc>> {
        let offers = &self.cfg.offers;
        let ttl = chrono::Duration::from_std(offers.capabilities_ttl).unwrap_or(chrono::Duration::hours(1));
        let now = Utc::now();
        let mut published = 0;
        let r: Result<()> = async {
            if !offers.capabilities.is_empty() {
                let req = DeliveryCapabilitiesRequest {
                    agent_id: c.agent_id.clone(),
                    capabilities: offers.capabilities.clone(),
                    resource_types: (!offers.resource_types.is_empty()).then(|| offers.resource_types.clone()),
                    expires_at: Some((now + ttl).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                };
                self.client.put_delivery_capabilities(&c.machine_id, &req).await?;
                self.update(|v| v.capabilities_expires_at = Some(now + ttl));
            }
            for l in &offers.listings {
                self.client.update_listing(&c.machine_id, &l.listing_id, &l.update).await?;
                published += 1;
                self.update(|v| v.listings_published = published);
            }
            Ok(())
        }
        .await;
        match r {
            Ok(()) => {
                let was_err = self.snapshot().offers_error.is_some();
                self.update(|v| v.offers_error = None);
                if was_err || published > 0 {
                    tracing::info!(listings = published, "market: listings and delivery capabilities published");
                }
                Some(now + ttl / 2)
            }
            Err(e) => {
                tracing::warn!(error = %e, "market: publishing the listings failed; retrying after the next heartbeat");
                self.update(|v| {
                    v.listings_published = published;
                    v.offers_error = Some((e.error_code().to_string(), e.to_string()));
                });
                None
            }
        }
    }

    /// After the heartbeat's agent was refused: re-enroll; when the machine record is what is
    /// gone (or no longer active), forget the agent so the next round onboards again.
    async fn replace_agent(&self, shutdown: &mut watch::Receiver<bool>) {
        let mut creds = self.creds.lock().await;
        let Some(old) = creds.clone() else { return };
        match agent::reenroll(&self.client, &self.store, &old, &self.cfg.enroll).await {
            Ok(c) => {
                tracing::info!(agent = %c.agent_id, "market: new agent enrolled");
                self.update(|v| v.agent_id = Some(c.agent_id.clone()));
                *creds = Some(c);
            }
            Err(e) => {
                // reenroll already forgot the old agent: the next round onboards (and enrolls) again.
                *creds = None;
                let d = backoff_delay(&self.cfg.heartbeat, 1);
                self.fail(Phase::Retrying, &e, 1, Some(d));
                drop(creds);
                self.pause(Some(d), shutdown).await;
            }
        }
    }
}

/// Stored purchases by state.
fn purchase_counts(store: &crate::purchases::PurchaseStore) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(store.dir()) else { return out };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else { continue };
        if let Ok(Some(r)) = store.load(id) {
            let state = serde_json::to_value(r.state).ok().and_then(|v| v.as_str().map(str::to_string));
            *out.entry(state.unwrap_or_default()).or_insert(0) += 1;
        }
    }
    out
}
