//! [`ChainClient`]: the async flows the ROS node maps its services onto.
//!
//! Every state-changing call goes through the durable [`Outbox`]: a flow validates, checks
//! operational limits, enqueues (durable) and then waits for the outcome up to
//! `receipt_timeout`. A timeout answers `RECEIPT_AWAIT_FAILED` with the intent id and tx hash;
//! the intent keeps being tracked and its final state appears on the status stream.
//!
//! Flows:
//! * both generations: [`ChainClient::submit_event`], [`ChainClient::batch_submit_events`] (one
//!   `batchAll`), [`ChainClient::validate_event`] (no chain access);
//! * gen 2: [`ChainClient::activate`] — SDK 0.12.1 `activate_machine` steps (SPEC §3.6);
//! * gen 1: [`ChainClient::register`], [`ChainClient::register_for`], [`ChainClient::mint_nft`],
//!   [`ChainClient::token_id_of`], [`ChainClient::write_machine_did_attributes`],
//!   [`ChainClient::write_proxy_did_attributes`], [`ChainClient::read_did_attribute`] and
//!   [`ChainClient::activate_legacy`] (CLI 0.0.5 steps register → mint → DID, each checked on
//!   chain first so a rerun finishes a half-done activation and repeats nothing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;
use tracing::info;

use crate::bindings::*;
use crate::config::{Generation, ResolvedConfig};
use crate::encoding::{self, ActivateArgs, MachineDidAttributes};
use crate::error::{ChainError, Result};
use crate::journal::Journal;
use crate::limits::{RateLimiter, Reservation};
use crate::outbox::{IntentState, Outbox, OutboxSettings, Outcome, TxRequest, TxStatus};
use crate::revert::{self, RevertScope};
use crate::rpc::{CallRequest, Rpc, RpcFailure, RpcLog};
use crate::validation::{self, SubmitEventParams, ValidEvent};

/// Result of a submitted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventReceipt {
    pub intent_id: String,
    pub tx_hash: B256,
    pub data_hash: B256,
    pub block_number: u64,
    pub gas_used: u64,
}

/// Result of a batch (one transaction for all events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReceipt {
    pub intent_id: String,
    pub tx_hash: B256,
    pub data_hashes: Vec<B256>,
    pub block_number: u64,
    pub gas_used: u64,
}

/// A state-changing step that may have been skipped because the chain already had it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// `None` when skipped.
    pub tx_hash: Option<B256>,
    pub intent_id: Option<String>,
    pub skipped: bool,
}

/// Gen-1 register result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterResult {
    pub machine_id: U256,
    pub step: StepResult,
}

/// Gen-1 mint result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintResult {
    pub token_id: U256,
    pub step: StepResult,
}

/// Gen-1 `activate` parameters (CLI 0.0.5 `peaqos activate [--for <machine> --machine-key]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyActivateParams {
    /// The machine's EVM address; its key must be configured (it signs the machine-DID batch).
    pub machine: Address,
    /// Proxy mode: the operator address (its key must be configured); `None` = self mode.
    pub operator: Option<Address>,
    pub documentation_url: String,
    pub data_api: String,
    pub data_visibility: String,
}

/// Gen-1 `activate` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyActivation {
    pub machine_id: U256,
    pub token_id: U256,
    pub machine_did: String,
    pub register: StepResult,
    pub mint: StepResult,
    pub machine_did_step: StepResult,
    pub proxy_did_step: Option<StepResult>,
}

/// Gen-2 activation parameters (SDK `ActivateMachineParams`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivateParams {
    pub controller: Address,
    pub verification_methods: Vec<VerificationMethod>,
    pub authentication: Vec<U256>,
    pub service_endpoints: Vec<ServiceEndpoint>,
    pub machine_type: String,
    pub credential_subject: Vec<u8>,
    pub manufacturer: Address,
    pub tier: u8,
    pub expected_machine_id: Option<U256>,
    pub max_net_peaq_amount: Option<U256>,
}

/// Gen-2 activation result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationResult {
    pub machine_id: U256,
    pub owner: Address,
    pub controller: Address,
    pub tier: u8,
    pub bond_amount: U256,
    pub voucher_credit_applied: U256,
    pub net_peaq_amount: U256,
    pub approval_tx_hash: Option<B256>,
    pub transaction_hash: B256,
    pub intent_id: String,
    pub chain_id: u64,
    pub subscription_status: u8,
}

struct Inner {
    cfg: ResolvedConfig,
    rpc: Arc<Rpc>,
    outbox: Outbox,
    limiter: RateLimiter,
    /// Rate-limit reservations of intents not yet terminal (released if they fail).
    reservations: Mutex<HashMap<String, Reservation>>,
    journal: Arc<Journal>,
    default_signer: Address,
}

/// Cheap-to-clone, `Send + Sync` chain client.
#[derive(Clone)]
pub struct ChainClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ChainClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainClient")
            .field("generation", &self.inner.cfg.generation)
            .field("chain_id", &self.inner.cfg.chain_id)
            .finish()
    }
}

fn read_err(what: &str, f: RpcFailure) -> ChainError {
    match f {
        RpcFailure::Transport(m) => ChainError::rpc("RPC_UNAVAILABLE", format!("{what}: {m}")),
        RpcFailure::Node { code, message, .. } => ChainError::rpc(
            "READ_FAILED",
            format!("{what}: RPC error {code}: {message}"),
        ),
    }
}

fn jnum(v: U256) -> Value {
    if v <= U256::from(u64::MAX) {
        json!(v.to::<u64>())
    } else {
        json!(v.to_string())
    }
}

fn logs_from(logs: &[RpcLog], emitter: Address, topic0: B256) -> Vec<&RpcLog> {
    logs.iter()
        .filter(|l| l.address == emitter && l.topics.first() == Some(&topic0))
        .collect()
}

impl ChainClient {
    /// Start the client (opens the outbox, spawns its worker on the current tokio runtime).
    /// The first signer is the default one (the machine key); further keys (e.g. the operator's
    /// for gen-1 proxy mode) may be given.
    pub fn start(cfg: ResolvedConfig, signers: Vec<PrivateKeySigner>) -> Result<Self> {
        let default_signer = signers.first().map(|s| s.address()).ok_or_else(|| {
            ChainError::config(
                "SIGNER_UNAVAILABLE",
                "signers",
                "at least one signing key is required",
            )
        })?;
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| ChainError::store("STORE_IO", &cfg.data_dir, e))?;
        let rpc = Arc::new(Rpc::new(cfg.rpc_urls.clone(), Duration::from_secs(10))?);
        let journal = Arc::new(Journal::new(&cfg.data_dir));
        let outbox = Outbox::start(
            &cfg.data_dir,
            rpc.clone(),
            signers,
            journal.clone(),
            OutboxSettings {
                chain_id: cfg.chain_id,
                deployment_id: cfg.deployment_id().into(),
                poll_interval: cfg.poll_interval,
                max_backoff: cfg.max_backoff,
                merge_max_subcalls: cfg.merge_max_events,
            },
        )?;
        let limiter = RateLimiter::new(cfg.limits, cfg.deployment_id());
        let mut status = outbox.subscribe();
        let inner = Arc::new(Inner {
            cfg,
            rpc,
            outbox,
            limiter,
            reservations: Mutex::new(HashMap::new()),
            journal,
            default_signer,
        });
        // Release the rate-limit slots of intents that end failed/conflicting (SDK: reservation
        // released on failure, committed on success). Missed messages only delay the release
        // until the window expires.
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            loop {
                match status.recv().await {
                    Ok(s) if s.state.is_terminal() => {
                        let Some(inner) = weak.upgrade() else { return };
                        let r = inner
                            .reservations
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&s.intent_id);
                        if let (Some(r), false) = (r, s.state == IntentState::Included) {
                            inner.limiter.release(r);
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(ChainClient { inner })
    }

    pub fn config(&self) -> &ResolvedConfig {
        &self.inner.cfg
    }
    /// Address of the default (machine) signer.
    pub fn signer_address(&self) -> Address {
        self.inner.default_signer
    }
    /// Status stream for `~/tx_status`.
    pub fn subscribe_status(&self) -> broadcast::Receiver<TxStatus> {
        self.inner.outbox.subscribe()
    }
    pub fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }
    pub fn rpc(&self) -> &Rpc {
        &self.inner.rpc
    }

    /// Timestamp of the latest block: the bound of an event's `timestamp` (the EventRegistry
    /// reverts `FutureTimestamp` above it). Errors say why in one line.
    pub async fn latest_block_time(&self) -> std::result::Result<i64, String> {
        let v = self
            .inner
            .rpc
            .request_value("eth_getBlockByNumber", json!(["latest", false]))
            .await
            .map_err(|e| format!("chain unreachable: {}", e.message()))?;
        let ts = v
            .get("timestamp")
            .and_then(|t| t.as_str())
            .ok_or("latest block without a timestamp")?;
        i64::from_str_radix(ts.trim_start_matches("0x"), 16)
            .map_err(|e| format!("block timestamp {ts:?}: {e}"))
    }

    /// MCR API client for the configured base URL (`DEPLOYMENT_UNAVAILABLE` when none, e.g.
    /// agung: "agung pairs no MCR").
    pub fn mcr(&self) -> Result<crate::mcr::McrClient> {
        let base = self.inner.cfg.mcr_api_url.as_deref().ok_or_else(|| {
            ChainError::config(
                "DEPLOYMENT_UNAVAILABLE",
                "mcr_api_url",
                format!(
                    "no MCR API URL for {} (set mcr_api_url or PEAQOS_MCR_API_URL)",
                    self.inner.cfg.network.name()
                ),
            )
        })?;
        crate::mcr::McrClient::new(base, crate::mcr::DEFAULT_TIMEOUT)
    }

    /// `eth_chainId` equals the configured chain id (`CHAIN_MISMATCH` otherwise).
    pub async fn check_chain_id(&self) -> Result<()> {
        let id = self
            .inner
            .rpc
            .chain_id()
            .await
            .map_err(|f| read_err("eth_chainId", f))?;
        if id != self.inner.cfg.chain_id {
            return Err(ChainError::activation(
                "CHAIN_MISMATCH",
                "chain_id",
                format!(
                    "RPC reports chain id {id}, configuration expects {}",
                    self.inner.cfg.chain_id
                ),
            ));
        }
        Ok(())
    }

    fn events_scope(&self) -> RevertScope {
        match self.inner.cfg.generation {
            Generation::Economics2 => RevertScope::EventsGen2,
            Generation::Legacy => RevertScope::Legacy,
        }
    }

    async fn view(&self, to: Address, data: Bytes, scope: RevertScope) -> Result<Bytes> {
        let req = CallRequest {
            from: Some(self.inner.default_signer),
            to,
            value: U256::ZERO,
            data,
        };
        match self.inner.rpc.call(&req).await {
            Ok(b) => Ok(b),
            Err(RpcFailure::Node { data: Some(d), .. }) if !d.is_empty() => {
                Err(revert::to_error(scope, &d))
            }
            Err(RpcFailure::Node { message, .. }) if message.contains("revert") => {
                let r = revert::decode_reason(scope, &message);
                Err(ChainError::Revert {
                    code: r.code,
                    message: r.message,
                    data: String::new(),
                })
            }
            Err(f) => Err(read_err("eth_call", f)),
        }
    }

    async fn view_call<C: SolCall>(
        &self,
        to: Address,
        call: C,
        scope: RevertScope,
    ) -> Result<C::Return> {
        let out = self.view(to, call.abi_encode().into(), scope).await?;
        C::abi_decode_returns(&out).map_err(|_| {
            ChainError::rpc(
                "BAD_RPC_RESPONSE",
                format!(
                    "{} at {to:#x} returned undecodable data (is the contract deployed?)",
                    C::SIGNATURE
                ),
            )
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &self,
        kind: &str,
        signer: Address,
        to: Address,
        value: U256,
        input: Bytes,
        scope: RevertScope,
        journal: Map<String, Value>,
    ) -> Result<String> {
        self.inner.outbox.enqueue(TxRequest {
            // Only the service's event batches share transactions: each is a batchAll of
            // submitEvent calls, all-or-nothing on its own.
            mergeable: kind == "batch_submit_events",
            kind: kind.into(),
            signer,
            to,
            value,
            input,
            scope,
            journal,
        })
    }

    async fn wait(&self, id: &str) -> Result<Outcome> {
        self.inner
            .outbox
            .wait(id, self.inner.cfg.receipt_timeout)
            .await
    }

    // ------------------------------------------------------------------ events

    /// `validate_event`: SDK validation of a single submit, returns the data hash
    /// (keccak256(raw_data) or zero).
    pub fn validate_event(&self, p: &SubmitEventParams) -> Result<B256> {
        validation::validate_event(p)
    }

    /// Remember a rate-limit reservation until its intent is terminal; released if it fails.
    fn track_reservation(&self, id: &str, r: Reservation) {
        if r.is_empty() {
            return;
        }
        let mut m = self
            .inner
            .reservations
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Checked under the map lock: a terminal status published before this point is visible
        // in the outbox record; one published after finds the entry (see `start`).
        match self.inner.outbox.get(id).map(|i| i.state) {
            Some(IntentState::Included) => {}
            Some(IntentState::Failed | IntentState::Conflicting) => self.inner.limiter.release(r),
            _ => {
                m.insert(id.to_string(), r);
            }
        }
    }

    /// Limits + durable enqueue of validated events as `kind` (one `submitEvent`, or `batchAll`).
    fn enqueue_events(&self, kind: &str, events: &[ValidEvent]) -> Result<String> {
        let registry = self.inner.cfg.event_registry()?;
        let reservation = self.inner.limiter.reserve(events)?;
        let mut j = Map::new();
        j.insert("step".into(), json!(kind));
        let (to, input) = if kind == "submit_event" {
            j.insert("machine_id".into(), json!(events[0].machine_id.to_string()));
            j.insert("method".into(), json!("submitEvent"));
            (registry, encoding::submit_event(&events[0]))
        } else {
            j.insert("event_count".into(), json!(events.len()));
            j.insert("method".into(), json!("batchAll"));
            (
                self.inner.cfg.batch(),
                encoding::batch_submit_events(registry, events),
            )
        };
        match self.enqueue(
            kind,
            self.inner.default_signer,
            to,
            U256::ZERO,
            input,
            self.events_scope(),
            j,
        ) {
            Ok(id) => {
                self.track_reservation(&id, reservation);
                Ok(id)
            }
            Err(err) => {
                self.inner.limiter.release(reservation);
                Err(err)
            }
        }
    }

    /// Validate, check limits and durably enqueue a single event without waiting; returns
    /// (intent id, data hash). The outcome arrives on the status stream.
    pub fn enqueue_event(&self, p: &SubmitEventParams) -> Result<(String, B256)> {
        let e = validation::resolve_single(p)?;
        let id = self.enqueue_events("submit_event", std::slice::from_ref(&e))?;
        Ok((id, e.data_hash))
    }

    /// Batch variant of [`ChainClient::enqueue_event`]; returns (intent id, data hashes).
    pub fn enqueue_batch(&self, items: &[SubmitEventParams]) -> Result<(String, Vec<B256>)> {
        let events = validation::resolve_batch(items)?;
        let id = self.enqueue_events("batch_submit_events", &events)?;
        Ok((id, events.iter().map(|e| e.data_hash).collect()))
    }

    /// `submit_event` (SDK semantics, smart currency default). Returns after inclusion.
    pub async fn submit_event(&self, p: &SubmitEventParams) -> Result<EventReceipt> {
        let e = validation::resolve_single(p)?;
        let id = self.enqueue_events("submit_event", std::slice::from_ref(&e))?;
        match self.wait(&id).await {
            Ok(o) => Ok(EventReceipt {
                intent_id: id,
                tx_hash: o.tx_hash,
                data_hash: e.data_hash,
                block_number: o.receipt.block_number,
                gas_used: o.receipt.gas_used,
            }),
            Err(err) => Err(map_event_error(err, &e)),
        }
    }

    /// `batch_submit_events`: every item validated (currency required), limits projected, one
    /// `batchAll` to the Batch precompile. Atomic.
    pub async fn batch_submit_events(&self, items: &[SubmitEventParams]) -> Result<BatchReceipt> {
        let events: Vec<ValidEvent> = validation::resolve_batch(items)?;
        if events.len() > 100 {
            tracing::warn!(
                count = events.len(),
                "batch_submit_events: batches above 100 may exceed block gas limits"
            );
        }
        let id = self.enqueue_events("batch_submit_events", &events)?;
        let o = self
            .wait(&id)
            .await
            .map_err(|e| map_batch_error(e, &events))?;
        Ok(BatchReceipt {
            intent_id: id,
            tx_hash: o.tx_hash,
            data_hashes: events.iter().map(|e| e.data_hash).collect(),
            block_number: o.receipt.block_number,
            gas_used: o.receipt.gas_used,
        })
    }

    /// `EventRegistry.getEventCount(machineId)` of the configured generation.
    pub async fn event_count(&self, machine_id: U256) -> Result<U256> {
        let registry = self.inner.cfg.event_registry()?;
        self.view_call(
            registry,
            IEventRegistry::getEventCountCall {
                machineId: machine_id,
            },
            self.events_scope(),
        )
        .await
    }

    // ------------------------------------------------------------------ gen 1

    /// `IdentityRegistry.machineIdOfOwner(addr)` (0 = not registered).
    pub async fn machine_id_of_owner(&self, owner: Address) -> Result<U256> {
        self.view_call(
            self.inner.cfg.gen1.identity_registry,
            IIdentityRegistry::machineIdOfOwnerCall { addr: owner },
            RevertScope::Legacy,
        )
        .await
    }

    async fn min_bond(&self) -> U256 {
        // GUESS (SPEC §3.2): read minBond() instead of hard-coding; the SDK sends 1e18.
        self.view_call(
            self.inner.cfg.gen1.identity_registry,
            IIdentityRegistry::minBondCall {},
            RevertScope::Legacy,
        )
        .await
        .unwrap_or(U256::from(10u128.pow(18)))
    }

    fn journal_line(&self, mut m: Map<String, Value>) {
        if let Err(e) = self.inner.journal.append(std::mem::take(&mut m)) {
            tracing::warn!(error = %e, "journal append failed");
        }
    }

    async fn register_inner(
        &self,
        signer: Address,
        target: Address,
        proxy: bool,
    ) -> Result<RegisterResult> {
        self.inner
            .cfg
            .require_generation(Generation::Legacy, "register")?;
        let mode = if proxy { "proxy" } else { "self" };
        let existing = self.machine_id_of_owner(target).await?;
        if !existing.is_zero() {
            let mut m = Map::new();
            m.insert("step".into(), json!("register"));
            m.insert("status".into(), json!("skipped"));
            m.insert("mode".into(), json!(mode));
            m.insert("address".into(), json!(target.to_checksum(None)));
            m.insert("machine_id".into(), jnum(existing));
            self.journal_line(m);
            return Ok(RegisterResult {
                machine_id: existing,
                step: StepResult {
                    tx_hash: None,
                    intent_id: None,
                    skipped: true,
                },
            });
        }
        let bond = self.min_bond().await;
        let input = if proxy {
            encoding::register_for(target)
        } else {
            encoding::register()
        };
        let mut j = Map::new();
        j.insert("step".into(), json!("register"));
        j.insert("phase".into(), json!("transaction"));
        j.insert("mode".into(), json!(mode));
        j.insert("address".into(), json!(target.to_checksum(None)));
        let id = self.enqueue(
            "register",
            signer,
            self.inner.cfg.gen1.identity_registry,
            bond,
            input,
            RevertScope::Legacy,
            j,
        )?;
        let o = match self.wait(&id).await {
            Ok(o) => o,
            Err(e) if e.code() == "AlreadyRegistered" => {
                // CLI race handling: re-read.
                let again = self.machine_id_of_owner(target).await?;
                if again.is_zero() {
                    return Err(e);
                }
                return Ok(RegisterResult {
                    machine_id: again,
                    step: StepResult {
                        tx_hash: None,
                        intent_id: Some(id),
                        skipped: true,
                    },
                });
            }
            Err(e) => return Err(e),
        };
        let topic = IIdentityRegistry::Registered::SIGNATURE_HASH;
        let logs = logs_from(
            &o.receipt.logs,
            self.inner.cfg.gen1.identity_registry,
            topic,
        );
        let Some(log) = logs.first() else {
            return Err(ChainError::Tx {
                code: "REGISTERED_EVENT_MISSING".into(),
                message: "receipt has no Registered event from the IdentityRegistry".into(),
                intent_id: id,
                tx_hash: format!("{:#x}", o.tx_hash),
            });
        };
        let machine_id = log
            .topics
            .get(1)
            .map(|t| U256::from_be_bytes(t.0))
            .unwrap_or_default();
        if machine_id.is_zero() {
            return Err(ChainError::Tx {
                code: "REGISTERED_EVENT_MALFORMED".into(),
                message: "Registered event carries no positive machineId".into(),
                intent_id: id,
                tx_hash: format!("{:#x}", o.tx_hash),
            });
        }
        info!(%machine_id, "registered");
        // CLI 0.0.5 step line (the per-transaction lines above carry "phase": "transaction").
        let mut m = Map::new();
        m.insert("step".into(), json!("register"));
        m.insert("status".into(), json!("confirmed"));
        m.insert("mode".into(), json!(mode));
        m.insert("address".into(), json!(target.to_checksum(None)));
        m.insert("machine_id".into(), jnum(machine_id));
        m.insert("tx_hash".into(), json!(format!("{:#x}", o.tx_hash)));
        self.journal_line(m);
        Ok(RegisterResult {
            machine_id,
            step: StepResult {
                tx_hash: Some(o.tx_hash),
                intent_id: Some(id),
                skipped: false,
            },
        })
    }

    /// Gen 1 `register()` by the default signer (skipped if already registered).
    pub async fn register(&self) -> Result<RegisterResult> {
        self.register_inner(self.inner.default_signer, self.inner.default_signer, false)
            .await
    }

    /// Gen 1 `registerFor(machine)` signed by `proxy` (the operator; must be a configured key).
    pub async fn register_for(&self, proxy: Address, machine: Address) -> Result<RegisterResult> {
        if machine == Address::ZERO {
            return Err(ChainError::validation(
                "machine_address",
                "non-zero address",
                "machine_address must be a non-zero address",
            ));
        }
        self.register_inner(proxy, machine, true).await
    }

    /// `MachineNFT.tokenIdOf(machineId)` (0 = not minted).
    pub async fn token_id_of(&self, machine_id: U256) -> Result<U256> {
        self.view_call(
            self.inner.cfg.gen1.machine_nft,
            IMachineNft::tokenIdOfCall {
                machineId: machine_id,
            },
            RevertScope::Legacy,
        )
        .await
    }

    /// Gen 1 `mint(machineId, recipient)` signed by `signer` (default signer when `None`); skipped
    /// when `tokenIdOf(machineId) > 0` and owned by `recipient` (`MINT_OWNER_MISMATCH` otherwise).
    pub async fn mint_nft(
        &self,
        signer: Option<Address>,
        machine_id: U256,
        recipient: Address,
    ) -> Result<MintResult> {
        self.inner
            .cfg
            .require_generation(Generation::Legacy, "mint_nft")?;
        if machine_id.is_zero() {
            return Err(ChainError::validation(
                "machine_id",
                "> 0",
                "machine_id must be a positive integer",
            ));
        }
        if recipient == Address::ZERO {
            return Err(ChainError::validation(
                "recipient",
                "non-zero address",
                "recipient must be a non-zero address",
            ));
        }
        let signer = signer.unwrap_or(self.inner.default_signer);
        let nft = self.inner.cfg.gen1.machine_nft;
        let existing = self.token_id_of(machine_id).await?;
        if !existing.is_zero() {
            let owner = self
                .view_call(
                    nft,
                    IMachineNft::ownerOfCall { tokenId: existing },
                    RevertScope::Legacy,
                )
                .await?;
            if owner != recipient {
                return Err(ChainError::Tx {
                    code: "MINT_OWNER_MISMATCH".into(),
                    message: format!("Machine NFT {existing} of machine {machine_id} is owned by {owner:#x}, not {recipient:#x}"),
                    intent_id: String::new(),
                    tx_hash: String::new(),
                });
            }
            let mut m = Map::new();
            m.insert("step".into(), json!("mint_nft"));
            m.insert("status".into(), json!("skipped"));
            m.insert("machine_id".into(), jnum(machine_id));
            m.insert("recipient".into(), json!(recipient.to_checksum(None)));
            m.insert("token_id".into(), jnum(existing));
            self.journal_line(m);
            return Ok(MintResult {
                token_id: existing,
                step: StepResult {
                    tx_hash: None,
                    intent_id: None,
                    skipped: true,
                },
            });
        }
        let mut j = Map::new();
        j.insert("step".into(), json!("mint_nft"));
        j.insert("phase".into(), json!("transaction"));
        j.insert("machine_id".into(), jnum(machine_id));
        j.insert("recipient".into(), json!(recipient.to_checksum(None)));
        let id = self.enqueue(
            "mint_nft",
            signer,
            nft,
            U256::ZERO,
            encoding::mint(machine_id, recipient),
            RevertScope::Legacy,
            j,
        )?;
        let (tx, skipped) = match self.wait(&id).await {
            Ok(o) => (Some(o.tx_hash), false),
            Err(e) if e.code() == "AlreadyMinted" => (None, true),
            Err(e) => return Err(e),
        };
        let token_id = self.token_id_of(machine_id).await?;
        let mut m = Map::new();
        m.insert("step".into(), json!("mint_nft"));
        m.insert(
            "status".into(),
            json!(if skipped { "skipped" } else { "confirmed" }),
        );
        m.insert("machine_id".into(), jnum(machine_id));
        m.insert("recipient".into(), json!(recipient.to_checksum(None)));
        m.insert("token_id".into(), jnum(token_id));
        if let Some(h) = tx {
            m.insert("tx_hash".into(), json!(format!("{h:#x}")));
        } else {
            m.insert("recovered_from".into(), json!("AlreadyMinted"));
        }
        self.journal_line(m);
        Ok(MintResult {
            token_id,
            step: StepResult {
                tx_hash: tx,
                intent_id: Some(id),
                skipped,
            },
        })
    }

    /// DID precompile `readAttribute(didAccount, name)`: `Ok(None)` when absent ("Cannot find the item").
    pub async fn read_did_attribute(
        &self,
        did_account: Address,
        name: &str,
    ) -> Result<Option<String>> {
        if name.is_empty() || name.len() > encoding::DID_MAX_NAME_BYTES || !name.is_ascii() {
            return Err(ChainError::validation(
                "name",
                "ascii, 1..64 bytes",
                "name must be 1 to 64 ASCII bytes",
            ));
        }
        let did = self.inner.cfg.gen1.did;
        match self
            .view_call(
                did,
                IDid::readAttributeCall {
                    didAccount: did_account,
                    name: name.as_bytes().to_vec().into(),
                },
                RevertScope::Legacy,
            )
            .await
        {
            Ok(a) => Ok(Some(String::from_utf8_lossy(&a.value).into_owned())),
            Err(e) if e.code() == "ATTRIBUTE_NOT_FOUND" || e.code() == "EntryNotFound" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Write the attributes of `pairs` that are not yet on chain (all of them in one atomic
    /// `batchAll`); skipped when every attribute already exists.
    async fn write_did_batch(
        &self,
        kind: &str,
        signer: Address,
        pairs: &[(&'static str, String)],
        mut j: Map<String, Value>,
    ) -> Result<StepResult> {
        self.inner
            .cfg
            .require_generation(Generation::Legacy, kind)?;
        let mut missing: Vec<(&'static str, String)> = vec![];
        for (n, v) in pairs {
            if self.read_did_attribute(signer, n).await?.is_none() {
                missing.push((n, v.clone()));
            }
        }
        if missing.is_empty() {
            j.insert("status".into(), json!("skipped"));
            j.insert("recovered_from".into(), json!("AttributeAlreadyOnChain"));
            self.journal_line(j);
            return Ok(StepResult {
                tx_hash: None,
                intent_id: None,
                skipped: true,
            });
        }
        let did = self.inner.cfg.gen1.did;
        let input = encoding::did_attributes_batch(did, signer, &missing);
        j.insert("method".into(), json!("batchAll"));
        let id = self.enqueue(
            kind,
            signer,
            self.inner.cfg.gen1.batch,
            U256::ZERO,
            input,
            RevertScope::Legacy,
            j,
        )?;
        match self.wait(&id).await {
            Ok(o) => Ok(StepResult {
                tx_hash: Some(o.tx_hash),
                intent_id: Some(id),
                skipped: false,
            }),
            Err(e) if e.code() == "ATTRIBUTE_ALREADY_EXISTS" => Ok(StepResult {
                tx_hash: None,
                intent_id: Some(id),
                skipped: true,
            }),
            Err(e) => Err(e),
        }
    }

    /// Six machine-DID attributes in one `batchAll`, didAccount = `signer` (default signer when
    /// `None`; in proxy mode the machine key). Attributes already on chain are not rewritten
    /// (`addAttribute` is add-only); skipped when all six exist.
    pub async fn write_machine_did_attributes(
        &self,
        signer: Option<Address>,
        attrs: &MachineDidAttributes,
    ) -> Result<StepResult> {
        let pairs = attrs.pairs()?;
        let signer = signer.unwrap_or(self.inner.default_signer);
        let mut j = Map::new();
        j.insert("step".into(), json!("machine_did"));
        j.insert(
            "mode".into(),
            json!(if attrs.operator.is_some() {
                "proxy"
            } else {
                "self"
            }),
        );
        j.insert("machine_id".into(), jnum(attrs.machine_id));
        j.insert("token_id".into(), jnum(attrs.nft_token_id));
        j.insert("operator_did".into(), json!(pairs[2].1));
        j.insert("machine_did_tx_count".into(), json!(6));
        self.write_did_batch("machine_did", signer, &pairs, j).await
    }

    /// Proxy DID (`machineId`, `machines` = `"[42, 43, 44]"`) signed by `signer` (the operator;
    /// default signer when `None`). Attributes already on chain are not rewritten (an operator that
    /// self-activated already has `machineId`); skipped when both exist. Adding machines to an
    /// existing `machines` list is not implemented (as in the SDK).
    pub async fn write_proxy_did_attributes(
        &self,
        signer: Option<Address>,
        proxy_machine_id: U256,
        machine_ids: &[U256],
    ) -> Result<StepResult> {
        let pairs = encoding::proxy_did_pairs(proxy_machine_id, machine_ids)?;
        let signer = signer.unwrap_or(self.inner.default_signer);
        let mut j = Map::new();
        j.insert("step".into(), json!("proxy_did"));
        j.insert("proxy_machine_id".into(), jnum(proxy_machine_id));
        j.insert(
            "machine_ids".into(),
            Value::Array(machine_ids.iter().map(|m| jnum(*m)).collect()),
        );
        j.insert("proxy_did_tx_count".into(), json!(2));
        self.write_did_batch("proxy_did", signer, &pairs, j).await
    }

    /// Gen-1 activation as CLI 0.0.5 (steps 4–6; funding is out of scope): register (or
    /// registerFor by the operator) → mint the Machine NFT to the machine → machine DID (machine
    /// key) → proxy DID (operator key, proxy mode). Each step is checked on chain first, so a
    /// rerun completes a half-done activation and repeats nothing.
    pub async fn activate_legacy(&self, p: &LegacyActivateParams) -> Result<LegacyActivation> {
        self.inner
            .cfg
            .require_generation(Generation::Legacy, "activate")?;
        let signers = self.inner.outbox.signers();
        for (field, a) in std::iter::once(("machine", Some(p.machine)))
            .chain(std::iter::once(("operator", p.operator)))
        {
            if let Some(a) = a {
                if !signers.contains(&a) {
                    return Err(ChainError::config(
                        "SIGNER_UNAVAILABLE",
                        field,
                        format!("no key configured for {field} {a:#x}"),
                    ));
                }
            }
        }
        // Validate DID inputs before touching the chain.
        MachineDidAttributes {
            machine_id: U256::from(1),
            nft_token_id: U256::ZERO,
            operator: p.operator,
            documentation_url: p.documentation_url.clone(),
            data_api: p.data_api.clone(),
            data_visibility: p.data_visibility.clone(),
        }
        .pairs()?;
        let mut proxy_machine_id = U256::ZERO;
        if let Some(op) = p.operator {
            proxy_machine_id = self.machine_id_of_owner(op).await?;
            if proxy_machine_id.is_zero() {
                return Err(ChainError::config(
                    "PROXY_NOT_REGISTERED",
                    "operator",
                    "Proxy operator is not registered",
                ));
            }
        }
        let register = match p.operator {
            Some(op) => self.register_for(op, p.machine).await?,
            None => self.register_inner(p.machine, p.machine, false).await?,
        };
        let mint_signer = p.operator.unwrap_or(p.machine);
        let mint = self
            .mint_nft(Some(mint_signer), register.machine_id, p.machine)
            .await?;
        let attrs = MachineDidAttributes {
            machine_id: register.machine_id,
            nft_token_id: mint.token_id,
            operator: p.operator,
            documentation_url: p.documentation_url.clone(),
            data_api: p.data_api.clone(),
            data_visibility: p.data_visibility.clone(),
        };
        let machine_did_step = self
            .write_machine_did_attributes(Some(p.machine), &attrs)
            .await?;
        let proxy_did_step = match p.operator {
            Some(op) => Some(
                self.write_proxy_did_attributes(Some(op), proxy_machine_id, &[register.machine_id])
                    .await?,
            ),
            None => None,
        };
        Ok(LegacyActivation {
            machine_id: register.machine_id,
            token_id: mint.token_id,
            machine_did: format!("did:peaq:{}", p.machine.to_checksum(None)),
            register: register.step,
            mint: mint.step,
            machine_did_step,
            proxy_did_step,
        })
    }

    // ------------------------------------------------------------------ gen 2

    /// Gen-2 activation, SDK 0.12.1 `activate_machine` steps (SPEC §3.6), signed by the default
    /// signer (the machine key; it becomes owner and payer, `controller` the DID controller).
    pub async fn activate(&self, p: &ActivateParams) -> Result<ActivationResult> {
        let cfg = &self.inner.cfg;
        cfg.require_generation(Generation::Economics2, "activate")?;
        let signer = self.inner.default_signer;
        let g2 = cfg.gen2.clone();
        let act = |code: &str, field: &str, msg: String| ChainError::activation(code, field, msg);
        // 1. local validation
        if p.machine_type.is_empty() {
            return Err(ChainError::validation(
                "machine_type",
                "non-empty",
                "machine_type must be a non-empty string",
            ));
        }
        if p.credential_subject.is_empty() {
            return Err(ChainError::validation(
                "credential_subject",
                "non-empty",
                "credential_subject must be non-empty bytes",
            ));
        }
        if p.tier > 2 {
            return Err(act(
                "INVALID_TIER",
                "tier",
                format!("tier must be 0, 1 or 2, got {}", p.tier),
            ));
        }
        if p.controller == Address::ZERO {
            return Err(ChainError::validation(
                "controller",
                "non-zero address",
                "controller must be a non-zero address",
            ));
        }
        let n_vm = U256::from(p.verification_methods.len());
        if let Some(bad) = p.authentication.iter().find(|a| **a >= n_vm) {
            return Err(ChainError::validation(
                "authentication",
                "index < len(verification_methods)",
                format!("authentication index {bad} is out of range"),
            ));
        }
        // 2. preflight
        self.check_chain_id().await?;
        for (name, a) in [
            ("info_desk", g2.info_desk),
            ("machine_registry", g2.machine_registry),
            ("machine_state_and_sync", g2.machine_state_and_sync),
            ("machine_subscription", g2.machine_subscription),
        ] {
            let code = self
                .inner
                .rpc
                .code(a)
                .await
                .map_err(|f| read_err("eth_getCode", f))?;
            if code.is_empty() {
                return Err(act(
                    "CONTRACT_NOT_DEPLOYED",
                    name,
                    format!("no bytecode at {name} {a:#x}"),
                ));
            }
        }
        // every peer matches InfoDesk.peer(keccak256(ROLE)) (SDK preflight)
        for (role, key_name, expected) in [
            ("machine_registry", "MACHINE_REGISTRY", g2.machine_registry),
            (
                "machine_subscription",
                "MACHINE_SUBSCRIPTION",
                g2.machine_subscription,
            ),
            (
                "machine_state_and_sync",
                "MACHINE_STATE_AND_SYNC",
                g2.machine_state_and_sync,
            ),
            (
                "cross_chain_mirror",
                "CROSS_CHAIN_MIRROR",
                g2.cross_chain_mirror,
            ),
            (
                "machine_bridge_adapter",
                "MACHINE_BRIDGE_ADAPTER",
                g2.machine_bridge_adapter,
            ),
            (
                "subscription_token_provision_pool",
                "SUBSCRIPTION_TOKEN_PROVISION_POOL",
                g2.subscription_token_provision_pool,
            ),
        ] {
            let key = alloy::primitives::keccak256(key_name.as_bytes());
            let actual = self
                .view_call(
                    g2.info_desk,
                    IInfoDesk::peerCall { key },
                    RevertScope::Activation,
                )
                .await
                .map_err(|e| as_activation(e, "READ_FAILED"))?;
            if actual == Address::ZERO {
                return Err(act("PEER_UNSET", role, format!("InfoDesk registers no address for {role}: the peer was cleared or never set")));
            }
            if actual != expected {
                return Err(act("PEER_MISMATCH", role, format!("InfoDesk registers {actual:#x} for {role}, but the configuration uses {expected:#x}")));
            }
        }
        let authority = self
            .view_call(
                g2.machine_subscription,
                IMachineSubscription::isEconomicAuthorityCall {},
                RevertScope::Activation,
            )
            .await
            .map_err(|e| as_activation(e, "READ_FAILED"))?;
        if !authority {
            return Err(act("NOT_ECONOMIC_AUTHORITY", "machine_subscription", format!("MachineSubscription at {:#x} is not the economic authority, so onboarding is not offered on this chain", g2.machine_subscription)));
        }
        // 3. machine id + technical pause
        let machine_id = self
            .view_call(
                g2.machine_registry,
                IMachineRegistry::computeTokenIdCall {
                    machineType_: p.machine_type.clone(),
                    credentialSubject_: p.credential_subject.clone().into(),
                },
                RevertScope::Activation,
            )
            .await?;
        let paused = self
            .view_call(
                g2.machine_state_and_sync,
                IMachineStateAndSync::isTechnicalPausedCall {
                    machineId: machine_id,
                },
                RevertScope::Activation,
            )
            .await?;
        if paused {
            return Err(act(
                "TECHNICALLY_PAUSED",
                "machine_id",
                format!("machine {machine_id} is technically paused"),
            ));
        }
        // Already active: refuse before any approval is spent (the simulation would revert
        // AlreadyActivated anyway).
        let st0 = self
            .view_call(
                g2.machine_subscription,
                IMachineSubscription::subscriptionStatusCall {
                    machineId: machine_id,
                },
                RevertScope::Activation,
            )
            .await?;
        if st0 != 0 {
            return Err(act(
                "ALREADY_ACTIVATED",
                "machine_id",
                format!("machine {machine_id} is already activated (subscription status {st0})"),
            ));
        }
        // 4. quote
        let quote = |s: Self| async move {
            let bond = s
                .view_call(
                    g2.machine_subscription,
                    IMachineSubscription::requiredPeaqAmountCall { tier: p.tier },
                    RevertScope::Activation,
                )
                .await?;
            let credit = s
                .view_call(
                    g2.machine_subscription,
                    IMachineSubscription::pendingVoucherCreditCall { operator: signer },
                    RevertScope::Activation,
                )
                .await?;
            let credit = credit.min(bond);
            Ok::<_, ChainError>((bond, credit, bond - credit))
        };
        let (bond, credit, net) = quote(self.clone())
            .await
            .map_err(|e| as_activation(e, "PRICE_NOT_AVAILABLE"))?;
        // 5. caller assertions
        if let Some(exp) = p.expected_machine_id {
            if exp != machine_id {
                return Err(act(
                    "MACHINE_ID_MISMATCH",
                    "expected_machine_id",
                    format!("computed machine id {machine_id} differs from expected {exp}"),
                ));
            }
        }
        if let Some(max) = p.max_net_peaq_amount {
            if net > max {
                return Err(act(
                    "MAX_NET_PEAQ_EXCEEDED",
                    "max_net_peaq_amount",
                    format!("net PEAQ amount {net} exceeds the maximum {max}"),
                ));
            }
        }
        // 6. token, balance, allowance
        let token = self
            .view_call(
                g2.info_desk,
                IInfoDesk::peaqTokenCall {},
                RevertScope::Activation,
            )
            .await?;
        let balance = self
            .view_call(
                token,
                IPeaqToken::balanceOfCall { account: signer },
                RevertScope::Activation,
            )
            .await?;
        if balance < net {
            return Err(act(
                "INSUFFICIENT_BALANCE",
                "signer",
                format!("PEAQ balance {balance} of {signer:#x} is below the net amount {net}"),
            ));
        }
        let allowance = self
            .view_call(
                token,
                IPeaqToken::allowanceCall {
                    owner: signer,
                    spender: g2.machine_subscription,
                },
                RevertScope::Activation,
            )
            .await?;
        let mut j = Map::new();
        j.insert("step".into(), json!("activate_machine"));
        j.insert("machine_id".into(), json!(machine_id.to_string()));
        j.insert("owner".into(), json!(signer.to_checksum(None)));
        j.insert("controller".into(), json!(p.controller.to_checksum(None)));
        j.insert("tier".into(), json!(p.tier));
        // 7. exact approval
        let mut approval_tx_hash = None;
        if allowance < net {
            let mut ja = j.clone();
            ja.insert("phase".into(), json!("approval"));
            ja.insert("method".into(), json!("approve"));
            let id = self.enqueue(
                "approve",
                signer,
                token,
                U256::ZERO,
                encoding::approve(g2.machine_subscription, net),
                RevertScope::Activation,
                ja,
            )?;
            match self.wait(&id).await {
                Ok(o) => approval_tx_hash = Some(o.tx_hash),
                Err(e) if e.code() == "RECEIPT_AWAIT_FAILED" => {
                    return Err(act("PENDING_TRANSACTION", "approval", e.to_string()))
                }
                Err(e) => return Err(act("APPROVAL_FAILED", "approval", e.to_string())),
            }
        }
        // 8. re-quote and re-read: never a second approval
        let (bond2, credit2, net2) = quote(self.clone())
            .await
            .map_err(|e| as_activation(e, "PRICE_NOT_AVAILABLE"))?;
        let allowance2 = self
            .view_call(
                token,
                IPeaqToken::allowanceCall {
                    owner: signer,
                    spender: g2.machine_subscription,
                },
                RevertScope::Activation,
            )
            .await?;
        if allowance2 < net2 {
            return Err(act(
                "ALLOWANCE_INSUFFICIENT",
                "allowance",
                format!("allowance {allowance2} is below the re-quoted net amount {net2}"),
            ));
        }
        // 9. simulate
        let doc = DIDDocument {
            id: String::new(),
            controller: p.controller,
            verificationMethods: p.verification_methods.clone(),
            authentication: p.authentication.clone(),
            serviceEndpoints: p.service_endpoints.clone(),
        };
        let args = ActivateArgs {
            doc,
            machine_type: p.machine_type.clone(),
            credential_subject: p.credential_subject.clone(),
            manufacturer: p.manufacturer,
            tier: p.tier,
        };
        let input = encoding::activate_machine(&args);
        self.view(
            g2.machine_state_and_sync,
            input.clone(),
            RevertScope::Activation,
        )
        .await
        .map_err(|e| as_activation(e, "CONTRACT_REVERTED"))?;
        // 10. submit
        let mut jb = j.clone();
        jb.insert("phase".into(), json!("activation"));
        jb.insert("method".into(), json!("activateMachine"));
        let id = self.enqueue(
            "activate_machine",
            signer,
            g2.machine_state_and_sync,
            U256::ZERO,
            input,
            RevertScope::Activation,
            jb,
        )?;
        let o = match self.wait(&id).await {
            Ok(o) => o,
            Err(e) if e.code() == "RECEIPT_AWAIT_FAILED" => {
                return Err(act("PENDING_TRANSACTION", "activation", e.to_string()))
            }
            Err(e) => return Err(as_activation(e, "CONTRACT_REVERTED")),
        };
        // 11. receipt correlation (only logs of the expected emitter, exactly one of each)
        let logs = &o.receipt.logs;
        let mismatch = |what: &str| {
            act(
                "EVENT_MISMATCH",
                "receipt",
                format!("activation receipt {:#x}: {what}", o.tx_hash),
            )
        };
        let onb = logs_from(
            logs,
            g2.machine_state_and_sync,
            IMachineStateAndSync::MachineOnboarded::SIGNATURE_HASH,
        );
        let minted = logs_from(
            logs,
            g2.machine_registry,
            IMachineRegistry::MachineMinted::SIGNATURE_HASH,
        );
        let activated = logs_from(
            logs,
            g2.machine_subscription,
            IMachineSubscription::Activated::SIGNATURE_HASH,
        );
        if onb.len() != 1 || minted.len() != 1 || activated.len() != 1 {
            return Err(mismatch(&format!(
                "expected one MachineOnboarded/MachineMinted/Activated, got {}/{}/{}",
                onb.len(),
                minted.len(),
                activated.len()
            )));
        }
        let dec =
            |l: &RpcLog| alloy::primitives::Log::new(l.address, l.topics.clone(), l.data.clone());
        let onb_ev = dec(onb[0])
            .and_then(|l| IMachineStateAndSync::MachineOnboarded::decode_log(&l).ok())
            .ok_or_else(|| mismatch("MachineOnboarded undecodable"))?;
        if onb_ev.machineId != machine_id || onb_ev.operator != signer {
            return Err(mismatch(
                "MachineOnboarded does not match the machine id / signer",
            ));
        }
        let mint_ev = dec(minted[0])
            .and_then(|l| IMachineRegistry::MachineMinted::decode_log(&l).ok())
            .ok_or_else(|| mismatch("MachineMinted undecodable"))?;
        if mint_ev.tokenId != machine_id
            || mint_ev.to != signer
            || mint_ev.controller != p.controller
            || mint_ev.machineType != p.machine_type
        {
            return Err(mismatch(
                "MachineMinted does not match token id / owner / controller / machine type",
            ));
        }
        let act_ev = dec(activated[0])
            .and_then(|l| IMachineSubscription::Activated::decode_log(&l).ok())
            .ok_or_else(|| mismatch("Activated undecodable"))?;
        if act_ev.machineId != machine_id || act_ev.bondedAmount != bond2 {
            return Err(mismatch("Activated does not match the machine id / bond"));
        }
        // 12. post-state
        let status = self
            .view_call(
                g2.machine_subscription,
                IMachineSubscription::subscriptionStatusCall {
                    machineId: machine_id,
                },
                RevertScope::Activation,
            )
            .await?;
        if status != 1 {
            return Err(act(
                "STATE_MISMATCH",
                "subscription",
                format!("subscription status of {machine_id} is {status}, expected 1 (active)"),
            ));
        }
        let _ = (bond, credit, net);
        Ok(ActivationResult {
            machine_id,
            owner: signer,
            controller: p.controller,
            tier: p.tier,
            bond_amount: bond2,
            voucher_credit_applied: credit2,
            net_peaq_amount: net2,
            approval_tx_hash,
            transaction_hash: o.tx_hash,
            intent_id: id,
            chain_id: cfg.chain_id,
            subscription_status: status,
        })
    }
}

/// Reverts during activation keep their decoded code; others get `fallback`.
fn as_activation(e: ChainError, fallback: &str) -> ChainError {
    match e {
        ChainError::Revert { code, message, .. } => {
            let code = if code == "TX_REVERTED" {
                fallback.to_string()
            } else {
                code
            };
            ChainError::Activation {
                code,
                field: String::new(),
                message,
            }
        }
        ChainError::Tx { code, message, .. } if code != "RECEIPT_AWAIT_FAILED" => {
            ChainError::Activation {
                code,
                field: String::new(),
                message,
            }
        }
        other => other,
    }
}

/// SDK `_map_batch_error` messages (single machine ⇒ its id; several ⇒ "one or more").
fn map_batch_error(err: ChainError, events: &[ValidEvent]) -> ChainError {
    let mut ids: Vec<U256> = events.iter().map(|e| e.machine_id).collect();
    ids.sort();
    ids.dedup();
    let single = if ids.len() == 1 { Some(ids[0]) } else { None };
    match err {
        ChainError::Tx {
            code,
            message,
            intent_id,
            tx_hash,
        } => {
            let message = match (code.as_str(), single) {
                ("NOT_OWNER_OR_CONTROLLER", Some(m)) => format!("Caller is neither the owner nor the DID controller of machine {m}"),
                ("NOT_OWNER_OR_CONTROLLER", None) => {
                    "Caller is neither the owner nor the DID controller of one or more machines in this batch".to_string()
                }
                ("SUBSCRIPTION_NOT_ELIGIBLE", Some(m)) => format!("Machine {m} subscription is not Active or Grace"),
                ("SUBSCRIPTION_NOT_ELIGIBLE", None) => "One or more machines in this batch are not Active or Grace".to_string(),
                ("MACHINE_NOT_FOUND", Some(m)) => format!("Machine ID {m} does not exist on this deployment"),
                ("MACHINE_NOT_FOUND", None) => "One or more machine IDs in this batch do not exist on this deployment".to_string(),
                _ => message,
            };
            ChainError::Tx {
                code,
                message,
                intent_id,
                tx_hash,
            }
        }
        other => other,
    }
}

/// SDK `_map_submit_event_error` messages.
fn map_event_error(err: ChainError, e: &ValidEvent) -> ChainError {
    match err {
        ChainError::Tx {
            code,
            message,
            intent_id,
            tx_hash,
        } => {
            let message = match code.as_str() {
                "NOT_OWNER_OR_CONTROLLER" => format!(
                    "Caller is neither the owner nor the DID controller of machine {}",
                    e.machine_id
                ),
                "SUBSCRIPTION_NOT_ELIGIBLE" => format!(
                    "Machine {} subscription is not Active or Grace",
                    e.machine_id
                ),
                "MACHINE_NOT_FOUND" => format!(
                    "Machine ID {} does not exist on this deployment",
                    e.machine_id
                ),
                _ => message,
            };
            ChainError::Tx {
                code,
                message,
                intent_id,
                tx_hash,
            }
        }
        other => other,
    }
}
