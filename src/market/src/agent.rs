//! Machine agent: enrolled once, then a heartbeat driven by the returned leases (§3.4, §5).
//!
//! [`ensure_enrolled`] returns the stored agent, or enrolls one and stores its one-time token
//! (0600, under the data dir) before anything else can happen. A crash between the server's answer
//! and the store loses that token; the rerun finds the orphan through the `enrolling.json` marker
//! (agents that did not exist before the request) and revokes it before enrolling again, so the
//! machine keeps exactly one live agent of this node.
//!
//! [`Heartbeat`] sends heartbeats when [`Heartbeat::next_due`] says so, against an injected
//! [`Clock`]: after a success, the next one is due at [`HeartbeatPolicy::renew_fraction`] of the
//! shortest lease (measured on the server's clock, `leaseExpiresAt - observedAt`, so clock skew does
//! not matter), clamped to `[min_interval, max_interval]`; after a retryable failure, exponential
//! backoff with jitter (`backoff_base` doubling up to `backoff_max`). Agent auth errors are not
//! retried: the token is revoked or wrong and the caller must re-enroll ([`MarketError`] says so).
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::client::OrchestrationClient;
use crate::error::{ApiCode, MarketError, Result};
use crate::onboard::{step, Step, StepHook};
use crate::secret::Secret;
use crate::state::MarketStore;
use crate::wire::{AgentStatus, EnrollAgentRequest, HeartbeatEndpoint, HeartbeatRequest, HeartbeatResult};

/// Enrollment settings.
#[derive(Debug, Clone)]
pub struct EnrollConfig {
    /// The agent's label; also how a rerun recognises this node's orphaned agent.
    pub label: String,
    pub allowed_provider_keys: Vec<String>,
}

/// An enrolled agent's credentials (the token never shows in `Debug`).
#[derive(Debug, Clone)]
pub struct AgentCredentials {
    pub machine_id: String,
    pub agent_id: String,
    pub token: Secret,
}

/// The stored agent of `machine_id` (the `mach_…` id), or a newly enrolled one.
pub async fn ensure_enrolled(
    client: &OrchestrationClient,
    store: &MarketStore,
    machine_id: &str,
    cfg: &EnrollConfig,
    mut hook: Option<StepHook<'_>>,
) -> Result<AgentCredentials> {
    if let Some((rec, token)) = store.load_agent()? {
        if rec.machine_id == machine_id {
            return Ok(AgentCredentials { machine_id: rec.machine_id, agent_id: rec.agent_id, token });
        }
        tracing::warn!(agent = %rec.agent_id, "stored agent belongs to another machine record; enrolling anew");
        store.clear_agent()?;
    }
    let agents = client.list_agents(machine_id).await?;
    if let Some(p) = store.load_pending()?.filter(|p| p.machine_id == machine_id) {
        // A previous run asked for an agent and lost its answer: revoke what it created.
        for a in agents
            .iter()
            .filter(|a| a.label == p.label && a.status != AgentStatus::Revoked && !p.known_agent_ids.contains(&a.id))
        {
            tracing::warn!(agent = %a.id, "revoking the agent of an interrupted enrollment (its token was lost)");
            match client.revoke_agent(machine_id, &a.id).await {
                Ok(()) => {}
                Err(e) if e.is(&ApiCode::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
    }
    store.save_pending(machine_id, &cfg.label, agents.iter().map(|a| a.id.clone()).collect())?;
    let req = EnrollAgentRequest {
        label: Some(cfg.label.clone()),
        allowed_provider_keys: (!cfg.allowed_provider_keys.is_empty()).then(|| cfg.allowed_provider_keys.clone()),
    };
    let agent = client.enroll_agent(machine_id, &req).await?;
    let Some(token) = agent.token().cloned() else {
        return Err(MarketError::shape(
            "enroll machine agent",
            "item.provisioningToken (or item.agentToken) is missing: the one-time agent token",
        ));
    };
    if agent.machine_id != machine_id || agent.id.is_empty() {
        return Err(MarketError::shape("enroll machine agent", "item.machineId/id do not match the enrollment"));
    }
    step(&mut hook, Step::AgentEnrolled)?;
    store.save_agent(machine_id, &agent.id, &cfg.label, &token)?;
    tracing::info!(agent = %agent.id, machine = %machine_id, "machine agent enrolled");
    step(&mut hook, Step::AgentStored)?;
    Ok(AgentCredentials { machine_id: machine_id.into(), agent_id: agent.id, token })
}

/// Replace an agent the server no longer accepts (`AGENT_AUTH_INVALID` / `AGENT_AUTH_EXPIRED`
/// from the heartbeat): revoke it (best effort), forget it, enroll a new one.
pub async fn reenroll(
    client: &OrchestrationClient,
    store: &MarketStore,
    old: &AgentCredentials,
    cfg: &EnrollConfig,
) -> Result<AgentCredentials> {
    if let Err(e) = client.revoke_agent(&old.machine_id, &old.agent_id).await {
        tracing::warn!(agent = %old.agent_id, error = %e, "could not revoke the refused agent; enrolling anyway");
    }
    store.clear_agent()?;
    ensure_enrolled(client, store, &old.machine_id, cfg, None).await
}

/// Source of the current time (tests drive a [`ManualClock`]).
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(start)))
    }

    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Heartbeat timing.
#[derive(Debug, Clone)]
pub struct HeartbeatPolicy {
    /// Lease TTL to ask for (`None`: the server's default, sent as `null`).
    pub lease_ttl_seconds: Option<u32>,
    /// Renew after this fraction of the lease (0.5: halfway to `leaseExpiresAt`).
    pub renew_fraction: f64,
    pub min_interval: Duration,
    pub max_interval: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for HeartbeatPolicy {
    fn default() -> Self {
        HeartbeatPolicy {
            lease_ttl_seconds: None,
            renew_fraction: 0.5,
            min_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(300),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// Delay before retry number `failures` (≥ 1) under `policy`: base · 2^(failures-1), capped at
/// `backoff_max`, minus up to 20 % jitter.
pub fn backoff_delay(policy: &HeartbeatPolicy, failures: u32) -> Duration {
    let exp = policy.backoff_base.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let capped = exp.min(policy.backoff_max);
    capped.mul_f64(1.0 - rand::thread_rng().gen_range(0.0..0.2))
}

/// What one heartbeat did.
#[derive(Debug, Clone)]
pub struct BeatReport {
    pub result: HeartbeatResult,
    /// The earliest lease end, on the local clock.
    pub lease_expires_at: DateTime<Utc>,
    pub next_due: DateTime<Utc>,
}

/// The heartbeat of one enrolled agent.
#[derive(Debug)]
pub struct Heartbeat {
    creds: AgentCredentials,
    endpoints: Vec<HeartbeatEndpoint>,
    policy: HeartbeatPolicy,
    next_due: DateTime<Utc>,
    failures: u32,
    lease_expires_at: Option<DateTime<Utc>>,
}

fn parse_time(field: &str, s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| MarketError::shape("machine agent heartbeat", format!("{field}: not an RFC 3339 time: {e}")))
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Heartbeat {
    /// A heartbeat due immediately (`now`). `endpoints` must not be empty (the API needs ≥ 1).
    pub fn new(
        creds: AgentCredentials,
        endpoints: Vec<HeartbeatEndpoint>,
        policy: HeartbeatPolicy,
        now: DateTime<Utc>,
    ) -> Result<Heartbeat> {
        if endpoints.is_empty() {
            return Err(MarketError::validation("endpoints", "must contain at least one entry"));
        }
        if !(policy.renew_fraction > 0.0 && policy.renew_fraction < 1.0) {
            return Err(MarketError::validation("renew_fraction", "must be between 0 and 1 (exclusive)"));
        }
        Ok(Heartbeat { creds, endpoints, policy, next_due: now, failures: 0, lease_expires_at: None })
    }

    /// When the next heartbeat should be sent.
    pub fn next_due(&self) -> DateTime<Utc> {
        self.next_due
    }

    /// Consecutive failed heartbeats.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The earliest lease end known (local clock), if any heartbeat succeeded.
    pub fn lease_expires_at(&self) -> Option<DateTime<Utc>> {
        self.lease_expires_at
    }

    /// Send one heartbeat now and schedule the next (renewal on success, backoff on a retryable error).
    pub async fn beat(&mut self, client: &OrchestrationClient, now: DateTime<Utc>) -> Result<BeatReport> {
        let req = HeartbeatRequest {
            machine_id: self.creds.machine_id.clone(),
            agent_id: self.creds.agent_id.clone(),
            agent_token: self.creds.token.clone(),
            endpoints: self.endpoints.clone(),
            lease_ttl_seconds: self.policy.lease_ttl_seconds,
        };
        match client.heartbeat(&req).await.and_then(|r| self.schedule(r, now)) {
            Ok(report) => Ok(report),
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                let delay = self.backoff(self.failures);
                self.next_due = now + chrono_dur(delay);
                tracing::warn!(failures = self.failures, retry_in_ms = delay.as_millis() as u64, error = %e,
                    "machine agent heartbeat failed");
                Err(e)
            }
        }
    }

    fn schedule(&mut self, r: HeartbeatResult, now: DateTime<Utc>) -> Result<BeatReport> {
        let observed = parse_time("item.observedAt", &r.observed_at)?;
        let mut shortest: Option<chrono::Duration> = None;
        for (i, ep) in r.endpoints.iter().enumerate() {
            let end = parse_time(&format!("item.endpoints[{i}].leaseExpiresAt"), &ep.lease_expires_at)?;
            let left = end - observed;
            shortest = Some(shortest.map_or(left, |s| s.min(left)));
        }
        let lease = shortest.ok_or_else(|| MarketError::shape("machine agent heartbeat", "item.endpoints is empty"))?;
        let lease = lease.max(chrono::Duration::zero());
        let renew = lease.to_std().unwrap_or_default().mul_f64(self.policy.renew_fraction);
        let wait = renew.clamp(self.policy.min_interval, self.policy.max_interval.max(self.policy.min_interval));
        self.failures = 0;
        self.lease_expires_at = Some(now + lease);
        self.next_due = now + chrono_dur(wait);
        Ok(BeatReport { result: r, lease_expires_at: now + lease, next_due: self.next_due })
    }

    fn backoff(&self, failures: u32) -> Duration {
        backoff_delay(&self.policy, failures)
    }

    /// The agent this heartbeat speaks for.
    pub fn agent_id(&self) -> &str {
        &self.creds.agent_id
    }

    /// Beat whenever due until `shutdown` turns true. Returns the error that needs the caller:
    /// agent auth refused (re-enroll) or a non-retryable answer; retryable failures back off.
    pub async fn run(
        &mut self,
        client: &OrchestrationClient,
        clock: &dyn Clock,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<()> {
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let wait = (self.next_due - clock.now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => continue,
            }
            if let Err(e) = self.beat(client, clock.now()).await {
                if !e.is_retryable() {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(policy: HeartbeatPolicy) -> Heartbeat {
        let creds = AgentCredentials { machine_id: "m".into(), agent_id: "a".into(), token: Secret::new("tok-x") };
        Heartbeat::new(creds, vec![HeartbeatEndpoint::new("qvac", "http://127.0.0.1:1")], policy, Utc::now()).unwrap()
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let h = hb(HeartbeatPolicy::default());
        for (n, full) in [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (40, 60.0)] {
            let d = h.backoff(n).as_secs_f64();
            assert!(d <= full && d >= full * 0.8, "failure {n}: {d}");
        }
    }

    #[test]
    fn renews_halfway_on_the_servers_clock() {
        let mut h = hb(HeartbeatPolicy::default());
        let now = Utc::now();
        let r: HeartbeatResult = serde_json::from_value(serde_json::json!({
            "machineId": "m", "agentId": "a", "leaseTtlSeconds": 60,
            "observedAt": "2030-01-01T00:00:00Z",  // server clock far from ours: only differences count
            "endpoints": [
                {"providerKey": "qvac", "endpointBaseUrl": "u", "status": "active", "leaseExpiresAt": "2030-01-01T00:01:00Z"},
                {"providerKey": "x", "endpointBaseUrl": "u", "status": "active", "leaseExpiresAt": "2030-01-01T00:00:40.000Z"}
            ]
        }))
        .unwrap();
        let rep = h.schedule(r, now).unwrap();
        assert_eq!(rep.next_due - now, chrono::Duration::seconds(20));
        assert_eq!(rep.lease_expires_at - now, chrono::Duration::seconds(40));
        assert!(!format!("{h:?}").contains("tok-x"));
    }
}
