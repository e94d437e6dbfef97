//! Anchoring a sealed dataset on chain: an activity event (value 0) whose `raw_data` is the
//! dataset manifest file's bytes, queued in the chain client's durable outbox. Its on-chain
//! `dataHash` is keccak256 of that file, so it commits to every chunk id and the Merkle root.
//!
//! The node's `~/seal_dataset` (with `anchor`) calls it through [`DatasetAnchor`]; the dataset
//! itself is the stream crate's (`peaqos_stream::dataset`), described here by [`DatasetRef`].
use std::path::{Path, PathBuf};
use std::time::Duration;

use peaqos_chain::validation::{Currency, MachineIdInput, SubmitEventParams, ValueInput, MAX_METADATA_SIZE};
use peaqos_chain::{ChainClient, ChainError};

use crate::error::ErrorCode;
use crate::submit::{current_machine_id, machine_id_file};

/// How long the latest block's time is waited for.
const BLOCK_TIME_TIMEOUT: Duration = Duration::from_secs(10);

/// The sealed dataset to anchor.
#[derive(Debug, Clone, Copy)]
pub struct DatasetRef<'a> {
    pub topic: &'a str,
    pub first_index: u64,
    pub last_index: u64,
    pub merkle_root: &'a str,
    /// The manifest file's bytes (the event's `raw_data`).
    pub manifest_file: &'a [u8],
    /// When it was sealed, Unix milliseconds.
    pub sealed_ms: u64,
}

/// An anchor queued: the outbox intent and the event's data hash (`0x` + 64 hex digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchored {
    pub intent_id: String,
    pub data_hash: String,
}

/// Why a dataset was not anchored. Every variant is about the request's `anchor` unless the
/// chain client names another field.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("no machine id to anchor for: set chain.machine_id or activate the machine (~/activate) first")]
    MachineIdUnknown,
    #[error("dataset sealed but not anchored: {reason}")]
    RpcUnavailable { reason: String },
    #[error(transparent)]
    Chain(#[from] ChainError),
}

impl AnchorError {
    /// This error's code.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            AnchorError::MachineIdUnknown => ErrorCode::MachineIdUnknown,
            AnchorError::RpcUnavailable { .. } => ErrorCode::Chain(peaqos_chain::error::ErrorCode::RpcUnavailable),
            AnchorError::Chain(e) => ErrorCode::Chain(e.error_code()),
        }
    }

    /// This error's code as the string in a service's `error_code`.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// The request field it is about: the chain client's field when it names one, else `anchor`.
    pub fn field(&self) -> &str {
        match self {
            AnchorError::Chain(e) if !e.field().is_empty() => e.field(),
            _ => "anchor",
        }
    }
}

/// Something that anchors sealed datasets.
pub trait DatasetAnchor: Send + Sync {
    /// Queue the anchor of `d`.
    fn anchor(&self, d: &DatasetRef) -> Result<Anchored, AnchorError>;
}

/// Anchors datasets on chain through the chain client's durable outbox.
pub struct ChainAnchor {
    client: ChainClient,
    runtime: tokio::runtime::Handle,
    /// `chain.machine_id`; `None` = the id `~/activate` persisted in `machine_id_file`.
    machine_id: Option<String>,
    machine_id_file: PathBuf,
}

impl ChainAnchor {
    /// Through `client` on `runtime` (called from outside it: it blocks on the latest block's
    /// time); `machine_id` is `chain.machine_id` (empty: the id `~/activate` persisted under
    /// `data_dir`).
    pub fn new(client: ChainClient, runtime: tokio::runtime::Handle, machine_id: &str, data_dir: &Path) -> Self {
        ChainAnchor {
            client,
            runtime,
            machine_id: (!machine_id.is_empty()).then(|| machine_id.to_owned()),
            machine_id_file: machine_id_file(data_dir),
        }
    }
}

impl DatasetAnchor for ChainAnchor {
    /// The event's timestamp is the seal time, capped at the latest block's (the registry
    /// reverts `FutureTimestamp` above it).
    fn anchor(&self, d: &DatasetRef) -> Result<Anchored, AnchorError> {
        let mid = current_machine_id(self.machine_id.as_deref(), &self.machine_id_file)
            .ok_or(AnchorError::MachineIdUnknown)?;
        let machine_id = MachineIdInput::from_decimal("machine_id", &mid)?;
        let block_ts = self
            .runtime
            .block_on(async { tokio::time::timeout(BLOCK_TIME_TIMEOUT, self.client.latest_block_time()).await })
            .unwrap_or_else(|_| Err("chain did not answer within 10 s".into()))
            .map_err(|reason| AnchorError::RpcUnavailable { reason })?;
        let p = event_params(d, machine_id, block_ts);
        let (intent_id, hash) = self.client.enqueue_event(&p)?;
        Ok(Anchored { intent_id, data_hash: format!("{hash:#x}") })
    }
}

/// The anchoring event: activity, value 0, `raw_data` the manifest file, metadata naming the
/// dataset (left out if it would exceed the contract's metadata size).
fn event_params(d: &DatasetRef, machine_id: MachineIdInput, block_ts: i64) -> SubmitEventParams {
    let metadata = serde_json::json!({
        "kind": "peaqos.stream.dataset.v1",
        "topic": d.topic,
        "first_index": d.first_index,
        "last_index": d.last_index,
        "merkle_root": d.merkle_root,
    })
    .to_string();
    SubmitEventParams {
        machine_id,
        event_type: 1,
        value: ValueInput::from_u128(0),
        timestamp: ((d.sealed_ms / 1000) as i64).min(block_ts),
        raw_data: Some(d.manifest_file.to_vec()),
        trust_level: 0,
        source_chain_id: 0,
        source_tx_hash: None,
        metadata: if metadata.len() <= MAX_METADATA_SIZE { metadata.into_bytes() } else { Vec::new() },
        currency: Currency::Omitted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_fields() {
        let e = AnchorError::MachineIdUnknown;
        assert_eq!((e.code(), e.field()), ("MACHINE_ID_UNKNOWN", "anchor"));
        let e = AnchorError::RpcUnavailable { reason: "down".into() };
        assert_eq!((e.code(), e.field()), ("RPC_UNAVAILABLE", "anchor"));
        assert_eq!(e.to_string(), "dataset sealed but not anchored: down");
        let e = AnchorError::from(ChainError::validation("machine_id", "decimal", "not a number"));
        assert_eq!((e.code(), e.field()), ("VALIDATION_ERROR", "machine_id"));
    }

    #[test]
    fn event_is_an_activity_committing_to_the_manifest_file() {
        let d = DatasetRef {
            topic: "/gps",
            first_index: 0,
            last_index: 3,
            merkle_root: "ab",
            manifest_file: b"{}",
            sealed_ms: 1_735_000_000_500,
        };
        let p = event_params(&d, MachineIdInput::from_decimal("machine_id", "42").unwrap(), 1_735_000_000 - 5);
        assert_eq!((p.event_type, p.timestamp), (1, 1_735_000_000 - 5));
        assert_eq!(p.raw_data.as_deref(), Some(&b"{}"[..]));
        let meta: serde_json::Value = serde_json::from_slice(&p.metadata).unwrap();
        assert_eq!(meta["kind"], "peaqos.stream.dataset.v1");
        assert_eq!(meta["last_index"], 3);
    }
}
