//! The intent record and its states: what is stored per transaction ([`Intent`], [`Attempt`],
//! [`ReceiptInfo`], [`ErrorInfo`]), what callers send ([`TxRequest`]) and get back ([`TxStatus`],
//! [`Outcome`]), and the constructors/readers shared by the other outbox modules.

use alloy::primitives::{Address, Bytes, B256, U256};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::now_str;
use crate::error::{ChainError, ErrorCode, Result};
use crate::revert::RevertScope;
use crate::rpc::RpcLog;

/// Intent state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentState {
    Queued,
    Signed,
    Broadcast,
    Included,
    Failed,
    Conflicting,
    /// Carried by a merged transaction (`merged_into`); settles when that one does.
    Merged,
}

impl IntentState {
    pub fn is_terminal(self) -> bool {
        matches!(self, IntentState::Included | IntentState::Failed | IntentState::Conflicting)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            IntentState::Queued => "queued",
            IntentState::Signed => "signed",
            IntentState::Broadcast => "broadcast",
            IntentState::Included => "included",
            IntentState::Failed => "failed",
            IntentState::Conflicting => "conflicting",
            IntentState::Merged => "merged",
        }
    }
}

/// One signed transaction for an intent (replacements add attempts at the same nonce).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    pub tx_hash: B256,
    pub raw: Bytes,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
    pub signed_at: String,
}

/// Inclusion result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptInfo {
    pub tx_hash: B256,
    pub block_number: u64,
    pub gas_used: u64,
    pub success: bool,
    pub logs: Vec<RpcLog>,
}

/// Failure information.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

/// The durable record of one intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    pub id: String,
    pub seq: u64,
    pub kind: String,
    pub chain_id: u64,
    pub signer: Address,
    pub to: Address,
    pub value: U256,
    pub input: Bytes,
    pub scope: String,
    /// Extra journal fields from the flow (step, machine_id, ...).
    pub journal: Map<String, Value>,
    pub state: IntentState,
    pub nonce: Option<u64>,
    pub gas_limit: Option<u64>,
    pub attempts: Vec<Attempt>,
    pub receipt: Option<ReceiptInfo>,
    pub error: Option<ErrorInfo>,
    pub created_at: String,
    pub updated_at: String,
    /// A `batchAll` of value-0 subcalls that the worker may send together with the next queued
    /// mergeable intents of the same signer (see [`Outbox`](super::Outbox)'s "Merging").
    #[serde(default, skip_serializing_if = "is_false")]
    pub mergeable: bool,
    /// The intents a merged transaction carries, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// The merged intent that carries this one (state `merged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Intent {
    pub(super) fn scope(&self) -> RevertScope {
        match self.scope.as_str() {
            "legacy" => RevertScope::Legacy,
            "activation" => RevertScope::Activation,
            _ => RevertScope::EventsGen2,
        }
    }
    pub(super) fn latest_hash(&self) -> Option<B256> {
        self.attempts.last().map(|a| a.tx_hash)
    }
}

fn scope_name(s: RevertScope) -> &'static str {
    match s {
        RevertScope::EventsGen2 => "events_gen2",
        RevertScope::Legacy => "legacy",
        RevertScope::Activation => "activation",
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct TxRequest {
    pub kind: String,
    pub signer: Address,
    pub to: Address,
    pub value: U256,
    pub input: Bytes,
    pub scope: RevertScope,
    pub journal: Map<String, Value>,
    /// May share a transaction with other mergeable intents (a `batchAll` of value-0 subcalls,
    /// all-or-nothing on its own: a merged transaction that fails is split up again).
    pub mergeable: bool,
}

/// A state change, published on the status stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxStatus {
    pub intent_id: String,
    pub kind: String,
    pub state: IntentState,
    pub signer: Address,
    pub nonce: Option<u64>,
    pub tx_hash: Option<B256>,
    pub block_number: Option<u64>,
    pub gas_used: Option<u64>,
    pub code: String,
    pub message: String,
}

/// Final result of an intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub intent_id: String,
    pub tx_hash: B256,
    pub receipt: ReceiptInfo,
}

/// What the in-memory cache of finished intents keeps: event submissions without their
/// receipt logs (one per event; nothing reads them, and a busy node finishes thousands of
/// batches an hour), everything else whole (the activation flows correlate logs). The record
/// in `done/` is always complete.
pub(super) fn cache_copy(i: &Intent) -> Intent {
    let mut c = i.clone();
    if matches!(i.kind.as_str(), "submit_event" | "batch_submit_events") {
        if let Some(r) = c.receipt.as_mut() {
            r.logs = Vec::new();
        }
    }
    c
}

/// A new intent in state `queued` with a fresh id (`<seq>-<random>`).
pub(super) fn queued_intent(seq: u64, chain_id: u64, req: TxRequest) -> Intent {
    let now = now_str();
    Intent {
        id: format!("{seq:012}-{:08x}", rand::random::<u32>()),
        seq,
        kind: req.kind,
        chain_id,
        signer: req.signer,
        to: req.to,
        value: req.value,
        input: req.input,
        scope: scope_name(req.scope).into(),
        journal: req.journal,
        state: IntentState::Queued,
        nonce: None,
        gas_limit: None,
        attempts: vec![],
        receipt: None,
        error: None,
        created_at: now.clone(),
        updated_at: now,
        mergeable: req.mergeable,
        members: vec![],
        merged_into: None,
    }
}

pub(super) fn outcome_of(i: &Intent) -> Result<Outcome> {
    let h = i.latest_hash().map(|h| format!("{h:#x}")).unwrap_or_default();
    match (i.state, &i.receipt) {
        (IntentState::Included, Some(r)) => {
            Ok(Outcome { intent_id: i.id.clone(), tx_hash: r.tx_hash, receipt: r.clone() })
        }
        _ => {
            let e = i
                .error
                .clone()
                .unwrap_or(ErrorInfo { code: ErrorCode::TxFailed.to_string(), message: "transaction failed".into() });
            let tx_hash = i.receipt.as_ref().map(|r| format!("{:#x}", r.tx_hash)).unwrap_or(h);
            Err(ChainError::Tx {
                code: ErrorCode::parse(&e.code),
                message: e.message,
                intent_id: i.id.clone(),
                tx_hash,
            })
        }
    }
}
