//! Gen-1 NFT bridge (SDK 0.11.2 `bridge_nft` peaq → Base, then `wait_for_bridge_arrival`):
//! quote, approval pre-flight, send with the quoted fee through the durable outbox, then poll
//! the destination chain's `ownerOf` until the token arrives.
//!
//! The source is this client's chain (the outbox signs on one chain), so the route is the one the
//! SDK runs on peaq: the machine's Machine NFT is locked in the `MachineNFTAdapter` and minted on
//! the destination by LayerZero. Base → peaq (burn on Base) would sign on Base: not offered.
//!
//! Never twice: the approval and the send go through [`crate::outbox::Outbox::enqueue_once`],
//! keyed by (chain, adapter, token, destination, recipient). A repeated call while the send is on
//! its way waits for that intent; once the token is locked in the adapter by our included send,
//! a repeated call only waits for the arrival again. A token that came back (owned by the machine
//! again after an included send) is bridged again under a new key.

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolCall;
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::{read_err, ChainClient};
use crate::bindings::{IMachineNft, IMachineNftAdapter};
use crate::config::Generation;
use crate::encoding;
use crate::error::{ChainError, ErrorCode, Result};
use crate::outbox::IntentState;
use crate::revert::RevertScope;
use crate::rpc::{CallRequest, Rpc, RpcFailure};

/// SDK 0.11.2 `constants.LAYERZERO_EIDS`.
pub const LAYERZERO_EIDS: &[(&str, u32)] = &[("peaq", 30302), ("base", 30184)];
/// The chain the node bridges from (the SDK's `source`).
pub const SOURCE: &str = "peaq";
/// SDK 0.11.2 `wait_for_bridge_arrival` defaults: a probe every 10 s, for up to 300 s.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_ARRIVAL_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest LayerZero `extraOptions` accepted.
const MAX_OPTIONS: usize = 4096;
/// `ERC721NonexistentToken(uint256)`: the token has not arrived.
const NONEXISTENT_TOKEN: [u8; 4] = [0x7e, 0x27, 0x32, 0x89];
/// The SDK's markers of "the token does not exist (yet)" in a revert reason.
const NONEXISTENT_MARKERS: &[&str] = &[
    "nonexistent token",
    "invalid token id",
    "owner query for nonexistent token",
    "erc721: invalid token",
    "erc721nonexistenttoken",
];

/// What to bridge (SDK `bridge_nft(token_id, "peaq", destination, recipient, options=...)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeParams {
    pub token_id: U256,
    pub destination: String,
    /// The owner on the destination chain.
    pub recipient: Address,
    /// Raw LayerZero v2 `extraOptions` (empty: the adapter's defaults).
    pub extra_options: Vec<u8>,
}

/// Where arrival is watched (SDK `wait_for_bridge_arrival(dst_rpc_url, dst_nft_address, ...)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeDestination {
    pub rpc_urls: Vec<String>,
    /// The Machine NFT contract on the destination chain (`MachineNFTBase` on Base).
    pub nft: Address,
    pub poll_interval: Duration,
    pub arrival_timeout: Duration,
}

/// A step reached (the action's feedback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeStep {
    /// The adapter's fee for this send (wei, paid as the send's value).
    Quoted {
        native_fee: U256,
    },
    /// The adapter may take the token: `tx_hash` of the approval, `None` when it already could.
    Approved {
        tx_hash: Option<B256>,
    },
    /// The send is included on the source chain (`resumed`: by an earlier call).
    Sent {
        intent_id: String,
        tx_hash: B256,
        block_number: u64,
        resumed: bool,
    },
    /// Not on the destination chain yet (after each probe).
    Waiting {
        probes: u64,
    },
    Arrived {
        owner: Address,
    },
}

/// The outcome of a bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeOutcome {
    pub native_fee: U256,
    pub approval_tx_hash: Option<B256>,
    pub send_intent_id: String,
    pub send_tx_hash: Option<B256>,
    pub send_block: Option<u64>,
    /// The send was made by an earlier call (this one only waited).
    pub resumed: bool,
    pub destination_owner: Option<Address>,
}

fn bridge_err(code: ErrorCode, field: &str, message: impl Into<String>) -> ChainError {
    ChainError::Activation { code, field: field.into(), message: message.into() }
}

fn cancelled(what: &str) -> ChainError {
    bridge_err(ErrorCode::Cancelled, "", format!("cancelled {what}"))
}

impl ChainClient {
    /// The adapter, after the generation and the inputs were checked; returns (adapter, eid).
    fn bridge_route(&self, p: &BridgeParams) -> Result<(Address, u32)> {
        self.inner.cfg.require_generation(Generation::Legacy, "bridge_nft")?;
        if p.token_id.is_zero() {
            return Err(ChainError::validation("token_id", "positive integer", "token_id must be a positive integer"));
        }
        let Some(&(_, eid)) = LAYERZERO_EIDS.iter().find(|(n, _)| *n == p.destination) else {
            return Err(ChainError::validation(
                "destination",
                "one of ('peaq', 'base')",
                "destination must be one of ('peaq', 'base')",
            ));
        };
        if p.destination == SOURCE {
            return Err(ChainError::validation(
                "destination",
                "different from source",
                "source and destination must be different chains (the node bridges from peaq)",
            ));
        }
        if p.recipient == Address::ZERO {
            return Err(ChainError::validation(
                "recipient",
                "non-zero address",
                "recipient must be a non-zero address",
            ));
        }
        if p.extra_options.len() > MAX_OPTIONS {
            return Err(ChainError::validation(
                "extra_options",
                "at most 4096 bytes",
                "extra_options must be at most 4096 bytes",
            ));
        }
        let adapter = self.inner.cfg.gen1.machine_nft_adapter.ok_or_else(|| {
            ChainError::validation(
                "machine_nft_adapter",
                "required for peaq-side bridging",
                format!(
                    "no MachineNFTAdapter on {} (set chain.contracts.machine_nft_adapter or MACHINE_NFT_ADAPTER_ADDRESS)",
                    self.inner.cfg.network.name()
                ),
            )
        })?;
        Ok((adapter, eid))
    }

    /// SDK 0.11.2 `quote_send`: the native fee of this send.
    pub async fn quote_bridge(&self, p: &BridgeParams) -> Result<U256> {
        let (adapter, eid) = self.bridge_route(p)?;
        let sp = encoding::bridge_send_param(eid, p.recipient, p.token_id, &p.extra_options);
        let fee = self
            .view_call(
                adapter,
                IMachineNftAdapter::quoteSendCall { _sendParam: sp, _payInLzToken: false },
                RevertScope::Legacy,
            )
            .await
            .map_err(|e| match e {
                ChainError::Rpc { code: ErrorCode::BadRpcResponse, message } => ChainError::rpc(
                    ErrorCode::InvalidFeeResult,
                    format!("quoteSend returned a malformed MessagingFee ({message})"),
                ),
                other => other,
            })?;
        Ok(fee.nativeFee)
    }

    /// Bridge the machine's Machine NFT `p.token_id` from this chain to `p.destination` and wait
    /// for it there; `step` is told each step reached; `cancel` turning `true` stops before the
    /// send is queued, or stops the arrival wait (the bridge itself goes on).
    pub async fn bridge_nft(
        &self,
        p: &BridgeParams,
        dst: &BridgeDestination,
        step: &(dyn Fn(BridgeStep) + Send + Sync),
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<BridgeOutcome> {
        let (adapter, eid) = self.bridge_route(p)?;
        if dst.rpc_urls.is_empty() {
            return Err(ChainError::validation(
                "destination_rpc_url",
                "non-empty",
                "the destination chain's RPC URL is needed to watch for the arrival",
            ));
        }
        if dst.nft == Address::ZERO {
            return Err(ChainError::validation(
                "destination_nft_address",
                "non-zero address",
                "the destination chain's Machine NFT address is needed to watch for the arrival",
            ));
        }
        let dst_rpc = Rpc::new(dst.rpc_urls.clone(), Duration::from_secs(10))?;
        let me = self.inner.default_signer;
        let nft = self.inner.cfg.gen1.machine_nft;
        let base_key =
            format!("bridge:{}:{adapter:#x}:{}:{eid}:{:#x}", self.inner.cfg.chain_id, p.token_id, p.recipient);
        let (send_key, earlier) = self.latest_key(&base_key)?;
        let owner = self
            .view_call(nft, IMachineNft::ownerOfCall { tokenId: p.token_id }, RevertScope::Legacy)
            .await
            .map_err(|e| named(e, "token_id"))?;
        let mut out = BridgeOutcome::default();
        let earlier_state = earlier.as_ref().and_then(|id| self.inner.outbox.get(id)).map(|i| i.state);
        let resume = match (owner == me, owner == adapter, earlier_state) {
            // our send is on its way (a call that timed out, a restart): wait for it
            (_, _, Some(s)) if !s.is_terminal() => true,
            // locked by our included send: the bridge happened, wait for the arrival
            (_, true, Some(IntentState::Included)) => true,
            (true, _, _) => false,
            _ => {
                return Err(bridge_err(
                    ErrorCode::NotTokenOwner,
                    "token_id",
                    format!("Machine NFT {} is owned by {owner:#x}, not by this machine ({me:#x})", p.token_id),
                ))
            }
        };
        let id = if resume {
            let id = earlier.unwrap_or_default();
            out.resumed = true;
            out.native_fee = self.inner.outbox.get(&id).map(|i| i.value).unwrap_or_default();
            id
        } else {
            // a new send: under the base key, or after the last (finished) one
            let key = match &earlier {
                Some(id) => format!("{base_key}:after:{id}"),
                None => send_key,
            };
            let sp = encoding::bridge_send_param(eid, p.recipient, p.token_id, &p.extra_options);
            let fee = self.quote_bridge(p).await?;
            out.native_fee = fee;
            step(BridgeStep::Quoted { native_fee: fee });
            let balance = self.inner.rpc.balance(me).await.map_err(|f| read_err("eth_getBalance", f))?;
            if balance < fee {
                return Err(bridge_err(
                    ErrorCode::InsufficientBalance,
                    "",
                    format!("balance {balance} wei of {me:#x} is below the LayerZero fee {fee} wei"),
                ));
            }
            if *cancel.borrow() {
                return Err(cancelled("before the approval"));
            }
            out.approval_tx_hash = self.approve_adapter(p.token_id, adapter, &key).await?;
            step(BridgeStep::Approved { tx_hash: out.approval_tx_hash });
            if *cancel.borrow() {
                return Err(cancelled("before the send"));
            }
            let mut j = Map::new();
            j.insert("step".into(), json!("bridge_nft"));
            j.insert("token_id".into(), json!(p.token_id.to_string()));
            j.insert("destination".into(), json!(p.destination));
            j.insert("dst_eid".into(), json!(eid));
            j.insert("recipient".into(), Value::String(p.recipient.to_checksum(None)));
            j.insert("native_fee".into(), json!(fee.to_string()));
            let input = encoding::send_nft(&sp, fee, me);
            let req = self.tx_request("bridge_nft", me, adapter, fee, input, RevertScope::Legacy, j);
            self.inner.outbox.enqueue_once(&key, req)?.0
        };
        let o = self.wait(&id).await?;
        out.send_intent_id = id.clone();
        out.send_tx_hash = Some(o.tx_hash);
        out.send_block = Some(o.receipt.block_number);
        step(BridgeStep::Sent {
            intent_id: id,
            tx_hash: o.tx_hash,
            block_number: o.receipt.block_number,
            resumed: out.resumed,
        });
        out.destination_owner = Some(self.await_arrival(&dst_rpc, dst, p.token_id, step, cancel).await?);
        Ok(out)
    }

    /// The last key of the chain `base`, `base:after:<id>`, ... that names an intent, and that
    /// intent; `(base, None)` when none does.
    fn latest_key(&self, base: &str) -> Result<(String, Option<String>)> {
        let mut key = base.to_owned();
        let mut last = None;
        while let Some(id) = self.inner.outbox.key_intent(&key)? {
            key = format!("{base}:after:{id}");
            last = Some(id);
        }
        Ok((if last.is_none() { base.to_owned() } else { key }, last))
    }

    /// SDK pre-flight: `getApproved(tokenId)`; unless it is the adapter, `approve(adapter,
    /// tokenId)` through the outbox (once per send key) and wait for it.
    async fn approve_adapter(&self, token_id: U256, adapter: Address, send_key: &str) -> Result<Option<B256>> {
        let nft = self.inner.cfg.gen1.machine_nft;
        let approved = self
            .view_call(nft, IMachineNft::getApprovedCall { tokenId: token_id }, RevertScope::Legacy)
            .await
            .map_err(|e| named(e, "token_id"))?;
        if approved == adapter {
            return Ok(None);
        }
        let mut j = Map::new();
        j.insert("step".into(), json!("bridge_nft"));
        j.insert("phase".into(), json!("approval"));
        j.insert("token_id".into(), json!(token_id.to_string()));
        j.insert("spender".into(), Value::String(adapter.to_checksum(None)));
        let input = encoding::approve_nft(adapter, token_id);
        let req =
            self.tx_request("approve_nft", self.inner.default_signer, nft, U256::ZERO, input, RevertScope::Legacy, j);
        let (id, _) = self.inner.outbox.enqueue_once(&format!("{send_key}:approve"), req)?;
        Ok(Some(self.wait(&id).await?.tx_hash))
    }

    /// SDK 0.11.2 `wait_for_bridge_arrival`: probe the destination's `ownerOf(tokenId)` every
    /// poll interval until it names a non-zero owner; a "nonexistent token" revert means not yet,
    /// any other revert fails at once (as the SDK re-raises it); an unreachable destination RPC is
    /// probed again (a robot's link may drop) until the timeout, which `ARRIVAL_TIMEOUT` names.
    async fn await_arrival(
        &self,
        rpc: &Rpc,
        dst: &BridgeDestination,
        token_id: U256,
        step: &(dyn Fn(BridgeStep) + Send + Sync),
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Address> {
        let deadline = tokio::time::Instant::now() + dst.arrival_timeout;
        let req = CallRequest {
            from: None,
            to: dst.nft,
            value: U256::ZERO,
            data: IMachineNft::ownerOfCall { tokenId: token_id }.abi_encode().into(),
        };
        let mut probes = 0u64;
        let mut last_error = String::new();
        loop {
            probes += 1;
            match rpc.call(&req).await {
                Ok(b) => match IMachineNft::ownerOfCall::abi_decode_returns(&b) {
                    Ok(owner) if owner != Address::ZERO => {
                        step(BridgeStep::Arrived { owner });
                        return Ok(owner);
                    }
                    _ => {}
                },
                Err(f) if not_arrived(&f) => {}
                Err(f @ RpcFailure::Node { .. }) if f.is_revert() => {
                    return Err(bridge_err(
                        ErrorCode::ReadFailed,
                        "destination_nft_address",
                        format!("ownerOf({token_id}) on the destination reverted: {}", f.message()),
                    ))
                }
                Err(f) => last_error = f.message(),
            }
            step(BridgeStep::Waiting { probes });
            let now = tokio::time::Instant::now();
            if now >= deadline {
                let why = if last_error.is_empty() { String::new() } else { format!(" (last error: {last_error})") };
                return Err(bridge_err(
                    ErrorCode::ArrivalTimeout,
                    "",
                    format!(
                        "token {token_id} did not arrive on the destination within {:?}{why}; the bridge goes on: call again to keep waiting",
                        dst.arrival_timeout
                    ),
                ));
            }
            let sleep = dst.poll_interval.min(deadline - now);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                changed = cancel.changed() => {
                    if changed.is_err() || *cancel.borrow() {
                        return Err(cancelled("while waiting for the arrival (the bridge goes on)"));
                    }
                }
            }
        }
    }
}

/// The revert says the token does not exist (yet) on the destination.
fn not_arrived(f: &RpcFailure) -> bool {
    match f {
        RpcFailure::Node { data: Some(d), .. } if d.get(..4) == Some(&NONEXISTENT_TOKEN[..]) => true,
        RpcFailure::Node { message, .. } => {
            let m = message.to_ascii_lowercase();
            NONEXISTENT_MARKERS.iter().any(|k| m.contains(k))
        }
        RpcFailure::Transport(_) => false,
    }
}

/// A read about the request's token: the error names `field` when it names none.
fn named(e: ChainError, field: &str) -> ChainError {
    match e {
        ChainError::Revert { code, message, .. } => bridge_err(code, field, message),
        other => other,
    }
}
