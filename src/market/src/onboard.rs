//! Machine record onboarding (ORCHESTRATION.md §5): identity challenge for
//! `did:peaq:<decimal machine id>` → EIP-191 signature of the server's `message` with the machine
//! key → `POST /machines` with the proof → `PATCH {"status":"active"}`.
//!
//! Idempotent and resumable: the `mach_…` id is stored durably as soon as the server returns it,
//! and a rerun continues from what the server and the store say. A rerun after a crash at any
//! point finishes without a duplicate record: `MACHINE_IDENTITY_EXISTS` means the record was made
//! (the crash came before it was stored) and it is found by its `identityRef`; an expired or
//! refused-as-expired challenge is requested again (up to [`MAX_CHALLENGES`] times per run).
use std::collections::BTreeMap;
use std::ops::ControlFlow;

use peaqos_core::keys::MachineKey;

use crate::client::OrchestrationClient;
use crate::error::{ApiCode, MarketError, Result};
use crate::state::MarketStore;
use crate::wire::{self, CreateMachineRequest, IdentityProofInput, Machine, MachineStatus, UpdateMachineRequest};

/// Challenges requested per run before giving up on `MACHINE_IDENTITY_PROOF_EXPIRED`.
pub const MAX_CHALLENGES: usize = 3;

/// What the machine record says about the robot (from the `market` parameters).
#[derive(Debug, Clone, Default)]
pub struct MachineProfile {
    pub display_name: String,
    pub owner_id: String,
    pub machine_type: String,
    pub runtime_profile: String,
    pub capabilities: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// Points of the flow a [`StepHook`] sees. Each fires right after the server accepted the step and
/// **before** it is stored locally: stopping there is the worst moment for a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A challenge was issued (not yet signed or used).
    ChallengeIssued,
    /// `POST /machines` succeeded; the id is not stored yet.
    MachineCreated,
    /// The id is stored; the record is still `draft`.
    MachineStored,
    /// `PATCH status=active` succeeded.
    Activated,
    /// Enrollment succeeded; the agent token is not stored yet.
    AgentEnrolled,
    /// Agent id and token are stored.
    AgentStored,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::ChallengeIssued => "challenge issued",
            Step::MachineCreated => "machine created",
            Step::MachineStored => "machine stored",
            Step::Activated => "activated",
            Step::AgentEnrolled => "agent enrolled",
            Step::AgentStored => "agent stored",
        }
    }
}

/// Observer of the flow's steps (progress logging; tests stop the flow to simulate a crash).
pub type StepHook<'a> = &'a mut (dyn FnMut(Step) -> ControlFlow<()> + Send);

pub(crate) fn step(hook: &mut Option<StepHook<'_>>, s: Step) -> Result<()> {
    tracing::debug!(step = s.name(), "market onboarding step");
    match hook.as_mut().map(|h| h(s)) {
        Some(ControlFlow::Break(())) => Err(MarketError::Interrupted(s.name())),
        _ => Ok(()),
    }
}

/// Sign `message` (EIP-191 personal_sign) with the machine key: `0x` + hex(r ‖ s ‖ v).
pub fn sign_challenge(key: &MachineKey, message: &str) -> String {
    format!("0x{}", hex::encode(key.sign_eip191(message.as_bytes())))
}

/// Make sure the machine record of `machine_id` (decimal on-chain id) exists and is active; return it.
pub async fn onboard(
    client: &OrchestrationClient,
    store: &MarketStore,
    key: &MachineKey,
    machine_id: &str,
    profile: &MachineProfile,
    mut hook: Option<StepHook<'_>>,
) -> Result<Machine> {
    let identity_ref = wire::machine_did(machine_id)?;
    let mut challenges = 0;
    loop {
        let stored = store.load_machine()?;
        if let Some(r) = &stored {
            if r.identity_ref != identity_ref {
                return Err(MarketError::State {
                    path: store.dir().join("machine.json"),
                    message: format!("belongs to {}, not {identity_ref}; use another data_dir", r.identity_ref),
                });
            }
        }
        if let Some(mach) = stored.and_then(|r| r.machine_id) {
            let m = match client.get_machine(&mach).await {
                Ok(m) => m,
                Err(e) if e.is(&ApiCode::NotFound) => {
                    tracing::warn!(machine = %mach, "stored machine record is gone on the server; registering again");
                    store.save_machine(&identity_ref, None)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if m.identity_ref.as_deref() != Some(identity_ref.as_str()) {
                return Err(MarketError::shape("get machine", format!("item.identityRef is not {identity_ref}")));
            }
            return match m.status {
                MachineStatus::Draft => activate(client, key, &identity_ref, &m.id, &mut hook, &mut challenges).await,
                MachineStatus::Archived => {
                    tracing::warn!(machine = %m.id, "stored machine record is archived; registering again");
                    store.save_machine(&identity_ref, None)?;
                    continue;
                }
                MachineStatus::Active | MachineStatus::Degraded | MachineStatus::Blocked => Ok(m),
            };
        }
        // No record known here: register one (or find the one a crash left unrecorded).
        let proof = prove(client, key, &identity_ref, &mut hook, &mut challenges).await?;
        let req = CreateMachineRequest {
            display_name: profile.display_name.clone(),
            owner_id: profile.owner_id.clone(),
            machine_type: profile.machine_type.clone(),
            runtime_profile: profile.runtime_profile.clone(),
            identity_ref: identity_ref.clone(),
            identity_proof: proof,
            capabilities: (!profile.capabilities.is_empty()).then(|| profile.capabilities.clone()),
            labels: (!profile.labels.is_empty()).then(|| profile.labels.clone()),
            policy_ids: None,
            skill_keys: None,
        };
        let id = match client.create_machine(&req).await {
            Ok(m) => {
                if m.identity_ref.as_deref() != Some(identity_ref.as_str()) {
                    return Err(MarketError::shape(
                        "create machine",
                        format!("item.identityRef is not {identity_ref}"),
                    ));
                }
                tracing::info!(machine = %m.id, identity = %identity_ref, "machine record created");
                step(&mut hook, Step::MachineCreated)?;
                m.id
            }
            Err(e) if e.is(&ApiCode::MachineIdentityProofExpired) && challenges < MAX_CHALLENGES => {
                tracing::warn!("identity challenge expired before use; requesting a new one");
                continue;
            }
            Err(e) if e.is(&ApiCode::MachineIdentityExists) => find_existing(client, &identity_ref).await?,
            Err(e) => return Err(e),
        };
        store.save_machine(&identity_ref, Some(&id))?;
        step(&mut hook, Step::MachineStored)?;
    }
}

/// A fresh identity proof: challenge, check we are a controller, sign.
async fn prove(
    client: &OrchestrationClient,
    key: &MachineKey,
    identity_ref: &str,
    hook: &mut Option<StepHook<'_>>,
    challenges: &mut usize,
) -> Result<IdentityProofInput> {
    *challenges += 1;
    let ch = client.create_identity_challenge(identity_ref).await?;
    if ch.identity_ref != identity_ref {
        return Err(MarketError::shape("create identity challenge", format!("item.identityRef is not {identity_ref}")));
    }
    if !ch.controller_addresses.iter().any(|a| a.eq_ignore_ascii_case(key.address())) {
        return Err(MarketError::validation(
            "controllerAddresses",
            format!(
                "the machine key {} is not a controller of {identity_ref} (controllers: {})",
                key.address(),
                ch.controller_addresses.join(", ")
            ),
        ));
    }
    step(hook, Step::ChallengeIssued)?;
    Ok(IdentityProofInput { challenge_id: ch.challenge_id.clone(), signature: sign_challenge(key, &ch.message) })
}

/// `PATCH status=active`; when the server wants a fresh proof, give it one.
async fn activate(
    client: &OrchestrationClient,
    key: &MachineKey,
    identity_ref: &str,
    mach: &str,
    hook: &mut Option<StepHook<'_>>,
    challenges: &mut usize,
) -> Result<Machine> {
    let mut req = UpdateMachineRequest { status: Some(MachineStatus::Active), ..Default::default() };
    let m = loop {
        match client.update_machine(mach, &req).await {
            Ok(m) => break m,
            Err(e)
                if (e.is(&ApiCode::MachineIdentityProofRequired) || e.is(&ApiCode::MachineIdentityProofExpired))
                    && *challenges < MAX_CHALLENGES =>
            {
                req.identity_proof = Some(prove(client, key, identity_ref, hook, challenges).await?);
            }
            Err(e) => return Err(e),
        }
    };
    tracing::info!(machine = %m.id, status = ?m.status, "machine record activated");
    step(hook, Step::Activated)?;
    Ok(m)
}

/// The live (not archived) record of `identity_ref`, after `MACHINE_IDENTITY_EXISTS`.
async fn find_existing(client: &OrchestrationClient, identity_ref: &str) -> Result<String> {
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let page = client.list_machines(Some(500), cursor.as_deref()).await?;
        if let Some(m) = page
            .items
            .iter()
            .find(|m| m.identity_ref.as_deref() == Some(identity_ref) && m.status != MachineStatus::Archived)
        {
            tracing::info!(machine = %m.id, identity = %identity_ref, "machine record already registered; resuming it");
            return Ok(m.id.clone());
        }
        match page.next_cursor {
            Some(c) if Some(&c) != cursor.as_ref() => cursor = Some(c),
            _ => break,
        }
    }
    Err(MarketError::api(
        "create machine",
        ApiCode::MachineIdentityExists,
        409,
        format!("{identity_ref} is registered but no listed machine carries it (another platform account?)"),
    ))
}
