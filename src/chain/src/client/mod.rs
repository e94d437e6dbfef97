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
//! * gen 1 smart accounts: [`ChainClient::smart_account_address`] (the factory's CREATE2
//!   prediction) and [`ChainClient::deploy_smart_account`] (idempotent: an existing account is
//!   reported, not deployed again);
//! * gen 1 NFT bridge: [`ChainClient::bridge_nft`] (quote, approval pre-flight, send through the
//!   outbox, arrival on the destination chain; never sent twice) and [`ChainClient::quote_bridge`];
//! * gas: [`ChainClient::gas_report`] (the balance against the queued work and a reserve) and
//!   [`ChainClient::fund_from_gas_station`] (an operator's 2FA-coded funding, never twice);
//! * gen 2: [`ChainClient::activate`] — SDK 0.12.1 `activate_machine` steps (SPEC §3.6);
//! * gen 1: [`ChainClient::register`], [`ChainClient::register_for`], [`ChainClient::mint_nft`],
//!   [`ChainClient::token_id_of`], [`ChainClient::write_machine_did_attributes`],
//!   [`ChainClient::write_proxy_did_attributes`], [`ChainClient::read_did_attribute`] and
//!   [`ChainClient::activate_legacy`] (CLI 0.0.5 steps register → mint → DID, each checked on
//!   chain first so a rerun finishes a half-done activation and repeats nothing).

//!
//! Modules: `events` (submit/batch/validate), `gas` (balance report, Gas Station funding), `identity` (gen-1 register, mint, DID attributes),
//! `activate` (gen-2 and gen-1 activation), `queries` (reads); this one holds [`ChainClient`], its
//! construction and the helpers they share (views, enqueue + wait, journal lines).

mod activate;
mod bridge;
mod events;
mod gas;
mod identity;
mod payments;
mod queries;
mod smart_account;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

pub use activate::{ActivateParams, ActivationResult, LegacyActivateParams, LegacyActivation};
pub use bridge::{
    BridgeDestination, BridgeOutcome, BridgeParams, BridgeStep, DEFAULT_ARRIVAL_TIMEOUT, DEFAULT_POLL_INTERVAL,
    LAYERZERO_EIDS,
};
pub use events::{BatchReceipt, EventReceipt};
pub use gas::{Funding, GasPolicy, GasReport, GasStationSettings};
pub use identity::{MintResult, RegisterResult, StepResult};
pub use payments::{erc20_transfer_calldata, Payment};
pub use smart_account::{SmartAccount, SmartAccountParams};

use crate::config::{Generation, ResolvedConfig};
use crate::error::{ChainError, ErrorCode, Result};
use crate::journal::Journal;
use crate::limits::{RateLimiter, Reservation};
use crate::outbox::{IntentState, Outbox, OutboxSettings, Outcome, TxRequest, TxStatus};
use crate::revert::{self, RevertScope};
use crate::rpc::{CallRequest, Rpc, RpcFailure, RpcLog};

struct Inner {
    cfg: ResolvedConfig,
    rpc: Arc<Rpc>,
    outbox: Outbox,
    limiter: RateLimiter,
    /// Rate-limit reservations of intents not yet terminal (released if they fail).
    reservations: Mutex<HashMap<String, Reservation>>,
    journal: Arc<Journal>,
    default_signer: Address,
    /// Gas Station fundings, one at a time (each holds the one pending request id).
    funding: tokio::sync::Mutex<()>,
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
        RpcFailure::Transport(m) => ChainError::rpc(ErrorCode::RpcUnavailable, format!("{what}: {m}")),
        RpcFailure::Node { code, message, .. } => {
            ChainError::rpc(ErrorCode::ReadFailed, format!("{what}: RPC error {code}: {message}"))
        }
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
    logs.iter().filter(|l| l.address == emitter && l.topics.first() == Some(&topic0)).collect()
}

impl ChainClient {
    /// Start the client (opens the outbox, spawns its worker on the current tokio runtime).
    /// The first signer is the default one (the machine key); further keys (e.g. the operator's
    /// for gen-1 proxy mode) may be given.
    pub fn start(cfg: ResolvedConfig, signers: Vec<PrivateKeySigner>) -> Result<Self> {
        let default_signer = signers.first().map(|s| s.address()).ok_or_else(|| {
            ChainError::config(ErrorCode::SignerUnavailable, "signers", "at least one signing key is required")
        })?;
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| ChainError::store(ErrorCode::StoreIo, &cfg.data_dir, e))?;
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
            funding: tokio::sync::Mutex::new(()),
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
                        let r = inner.reservations.lock().unwrap_or_else(|p| p.into_inner()).remove(&s.intent_id);
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

    /// MCR API client for the configured base URL (`DEPLOYMENT_UNAVAILABLE` when none, e.g.
    /// agung: "agung pairs no MCR").
    pub fn mcr(&self) -> Result<crate::mcr::McrClient> {
        let base = self.inner.cfg.mcr_api_url.as_deref().ok_or_else(|| {
            ChainError::config(
                ErrorCode::DeploymentUnavailable,
                "mcr_api_url",
                format!("no MCR API URL for {} (set mcr_api_url or PEAQOS_MCR_API_URL)", self.inner.cfg.network.name()),
            )
        })?;
        crate::mcr::McrClient::new(base, crate::mcr::DEFAULT_TIMEOUT)
    }

    fn events_scope(&self) -> RevertScope {
        match self.inner.cfg.generation {
            Generation::Economics2 => RevertScope::EventsGen2,
            Generation::Legacy => RevertScope::Legacy,
        }
    }

    async fn view(&self, to: Address, data: Bytes, scope: RevertScope) -> Result<Bytes> {
        let req = CallRequest { from: Some(self.inner.default_signer), to, value: U256::ZERO, data };
        match self.inner.rpc.call(&req).await {
            Ok(b) => Ok(b),
            Err(RpcFailure::Node { data: Some(d), .. }) if !d.is_empty() => Err(revert::to_error(scope, &d)),
            Err(RpcFailure::Node { message, .. }) if message.contains("revert") => {
                let r = revert::decode_reason(scope, &message);
                Err(ChainError::Revert { code: r.code, message: r.message, data: String::new() })
            }
            Err(f) => Err(read_err("eth_call", f)),
        }
    }

    async fn view_call<C: SolCall>(&self, to: Address, call: C, scope: RevertScope) -> Result<C::Return> {
        let out = self.view(to, call.abi_encode().into(), scope).await?;
        C::abi_decode_returns(&out).map_err(|_| {
            ChainError::rpc(
                ErrorCode::BadRpcResponse,
                format!("{} at {to:#x} returned undecodable data (is the contract deployed?)", C::SIGNATURE),
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
        self.inner.outbox.enqueue(self.tx_request(kind, signer, to, value, input, scope, journal))
    }

    #[allow(clippy::too_many_arguments)]
    fn tx_request(
        &self,
        kind: &str,
        signer: Address,
        to: Address,
        value: U256,
        input: Bytes,
        scope: RevertScope,
        journal: Map<String, Value>,
    ) -> TxRequest {
        TxRequest {
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
        }
    }

    async fn wait(&self, id: &str) -> Result<Outcome> {
        self.inner.outbox.wait(id, self.inner.cfg.receipt_timeout).await
    }

    fn journal_line(&self, mut m: Map<String, Value>) {
        if let Err(e) = self.inner.journal.append(std::mem::take(&mut m)) {
            tracing::warn!(error = %e, "journal append failed");
        }
    }
}
