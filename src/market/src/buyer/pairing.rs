//! The buyer's agent pairing (ORCHESTRATION.md §3.5, §5 "Robot as buyer"): challenge → EIP-191
//! proof by the agent key → pairing with the delegation policy → a session token, stored 0600 and
//! never logged. [`Pairing::session`] returns a live token: the stored one while its session has
//! more than `renew_before` left and the policy is unchanged; otherwise it updates the policy
//! (`PATCH`) and opens a new session (a fresh challenge signed again), or pairs anew when the
//! server no longer knows the pairing.
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use peaqos_core::keys::MachineKey;
use tokio::sync::Mutex;

use super::policy::DelegationPolicy;
use crate::client::OrchestrationClient;
use crate::error::{ApiCode, MarketError, Result};
use crate::onboard::sign_challenge;
use crate::secret::Secret;
use crate::state::{MarketStore, PairingRecord};
use crate::wire;

/// How the agent presents itself.
#[derive(Debug, Clone)]
pub struct PairingConfig {
    pub agent_provider: String,
    pub agent_role: String,
    pub description: Option<String>,
    pub policy: DelegationPolicy,
    /// Open a new session when the current one has less than this left.
    pub renew_before: Duration,
}

/// A live session: what agent-auth calls need.
#[derive(Debug, Clone)]
pub struct Session {
    pub machine_id: String,
    pub pairing_id: String,
    pub token: Secret,
}

/// The pairing of one machine record's buyer agent, shared by every order.
#[derive(Clone)]
pub struct Pairing {
    client: OrchestrationClient,
    store: MarketStore,
    agent: Arc<MachineKey>,
    cfg: PairingConfig,
    /// One pairing step at a time (two orders must not both open a session).
    lock: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Pairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pairing").field("agent", &self.agent.address()).finish_non_exhaustive()
    }
}

fn expires(p: &PairingRecord) -> Option<DateTime<Utc>> {
    p.session_expires_at.as_deref().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

impl Pairing {
    pub fn new(client: OrchestrationClient, store: MarketStore, agent: Arc<MachineKey>, cfg: PairingConfig) -> Pairing {
        Pairing { client, store, agent, cfg, lock: Arc::new(Mutex::new(())) }
    }

    /// The agent's address (checksummed).
    pub fn agent_address(&self) -> &str {
        self.agent.address()
    }

    /// A live session for machine record `machine_id` (`mach_…`), pairing or renewing as needed.
    pub async fn session(&self, machine_id: &str) -> Result<Session> {
        let _one = self.lock.lock().await;
        let fingerprint = self.cfg.policy.fingerprint();
        let stored = self.store.load_pairing()?;
        let Some((rec, token)) = stored
            .filter(|(r, _)| r.machine_id == machine_id && r.agent_address.eq_ignore_ascii_case(self.agent.address()))
        else {
            return self.pair(machine_id, &fingerprint).await;
        };
        let renew_at = expires(&rec).map(|t| t - chrono::Duration::from_std(self.cfg.renew_before).unwrap_or_default());
        let fresh = renew_at.is_none_or(|t| Utc::now() < t);
        if fresh && rec.policy_fingerprint == fingerprint {
            return Ok(Session { machine_id: rec.machine_id, pairing_id: rec.pairing_id, token });
        }
        match self.renew(&rec, &fingerprint).await {
            Err(e) if e.is(&ApiCode::NotFound) || e.is(&ApiCode::AgentPairingInactive) => {
                tracing::warn!(pairing = %rec.pairing_id, code = e.error_code(), "market: pairing gone; pairing anew");
                self.store.clear_pairing()?;
                self.pair(machine_id, &fingerprint).await
            }
            other => other,
        }
    }

    /// The stored token was refused (`AGENT_AUTH_EXPIRED`, `AUTH_INVALID`): open a new session
    /// next time.
    pub fn expire(&self) -> Result<()> {
        if let Some((mut rec, token)) = self.store.load_pairing()? {
            rec.session_expires_at = Some(Utc::now().to_rfc3339());
            self.store.save_pairing(rec, &token)?;
        }
        Ok(())
    }

    async fn proof(&self, machine_id: &str) -> Result<wire::AgentProof> {
        let req = wire::PairingChallengeRequest {
            agent_address: self.agent.address().to_string(),
            agent_provider: self.cfg.agent_provider.clone(),
            agent_role: self.cfg.agent_role.clone(),
        };
        let ch = self.client.pairing_challenge(machine_id, &req).await?;
        if !ch.agent_address.eq_ignore_ascii_case(self.agent.address()) || ch.machine_id != machine_id {
            return Err(MarketError::shape(
                "create agent pairing challenge",
                "the challenge is for another agent or machine; not signing it",
            ));
        }
        Ok(wire::AgentProof { challenge_id: ch.challenge_id, signature: sign_challenge(&self.agent, &ch.message) })
    }

    async fn pair(&self, machine_id: &str, fingerprint: &str) -> Result<Session> {
        let req = wire::CreatePairingRequest {
            agent_address: self.agent.address().to_string(),
            agent_provider: self.cfg.agent_provider.clone(),
            agent_role: self.cfg.agent_role.clone(),
            agent_proof: self.proof(machine_id).await?,
            description: self.cfg.description.clone(),
            delegation_policy: self.cfg.policy.to_wire(),
        };
        let (p, token) = self.client.create_pairing(machine_id, &req).await?;
        self.keep(machine_id, p, token, fingerprint)
    }

    async fn renew(&self, rec: &PairingRecord, fingerprint: &str) -> Result<Session> {
        if rec.policy_fingerprint != fingerprint {
            let req = wire::UpdatePairingRequest { delegation_policy: self.cfg.policy.to_wire() };
            self.client.update_pairing(&rec.machine_id, &rec.pairing_id, &req).await?;
            tracing::info!(pairing = %rec.pairing_id, "market: delegation policy updated; opening a new session");
        }
        let req = wire::PairingSessionRequest { agent_proof: self.proof(&rec.machine_id).await? };
        let (p, token) = self.client.pairing_session(&rec.machine_id, &rec.pairing_id, &req).await?;
        self.keep(&rec.machine_id, p, token, fingerprint)
    }

    fn keep(&self, machine_id: &str, p: wire::AgentPairing, token: Secret, fingerprint: &str) -> Result<Session> {
        let rec = PairingRecord {
            version: 0,
            machine_id: machine_id.to_string(),
            pairing_id: p.id.clone(),
            agent_address: self.agent.address().to_string(),
            session_expires_at: p.session_expires_at,
            policy_fingerprint: fingerprint.to_string(),
        };
        self.store.save_pairing(rec, &token)?;
        tracing::info!(pairing = %p.id, status = %p.status, "market: agent paired (session stored, 0600)");
        Ok(Session { machine_id: machine_id.to_string(), pairing_id: p.id, token })
    }
}
