//! Anchoring a sealed dataset on chain (`~/seal_dataset` with `anchor`).
use std::path::{Path, PathBuf};
use std::time::Duration;

use peaqos_chain::validation::{Currency, MachineIdInput, SubmitEventParams, ValueInput};
use peaqos_chain::{ChainClient, ChainError};
use peaqos_events::submit::{current_machine_id, machine_id_file};
use peaqos_stream::dataset::DatasetManifest;

use super::services::SvcError;
use crate::chain::ChainServices;

/// Anchors sealed datasets on chain through the chain client's durable outbox.
pub(super) struct Anchor {
    client: ChainClient,
    runtime: tokio::runtime::Handle,
    /// `chain.machine_id`; `None` = the id `~/activate` persisted in `machine_id_file`.
    machine_id: Option<String>,
    machine_id_file: PathBuf,
}

impl Anchor {
    /// Through `chain`'s client and runtime; `machine_id` is `chain.machine_id` (empty: the id
    /// `~/activate` persisted under `data_dir`).
    pub(super) fn new(chain: &ChainServices, machine_id: &str, data_dir: &Path) -> Anchor {
        Anchor {
            client: chain.client().clone(),
            runtime: chain.runtime(),
            machine_id: (!machine_id.is_empty()).then(|| machine_id.to_owned()),
            machine_id_file: machine_id_file(data_dir),
        }
    }

    /// Queue an activity event (value 0) whose `raw_data` is the manifest file's bytes, so its
    /// on-chain `dataHash` is keccak256 of that file and commits to every chunk id and the
    /// Merkle root. Its timestamp is the seal time, capped at the latest block's (the registry
    /// reverts `FutureTimestamp` above it). Returns (intent id, data hash).
    pub(super) fn submit(
        &self,
        m: &DatasetManifest,
        file: &[u8],
        sealed_ms: u64,
    ) -> Result<(String, String), SvcError> {
        let Some(mid) = current_machine_id(self.machine_id.as_deref(), &self.machine_id_file) else {
            return Err(SvcError {
                code: "MACHINE_ID_UNKNOWN",
                field: "anchor".into(),
                message: "no machine id to anchor for: set chain.machine_id or activate the machine (~/activate) first"
                    .into(),
            });
        };
        let machine_id = MachineIdInput::from_decimal("machine_id", &mid).map_err(chain_err)?;
        let block_ts = self
            .runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), self.client.latest_block_time()).await })
            .unwrap_or_else(|_| Err("chain did not answer within 10 s".into()))
            .map_err(|e| SvcError {
                code: "RPC_UNAVAILABLE",
                field: "anchor".into(),
                message: format!("dataset sealed but not anchored: {e}"),
            })?;
        let metadata = serde_json::json!({
            "kind": "peaqos.stream.dataset.v1",
            "topic": m.topic,
            "first_index": m.first_index,
            "last_index": m.last_index,
            "merkle_root": m.merkle_root,
        })
        .to_string();
        let p = SubmitEventParams {
            machine_id,
            event_type: 1,
            value: ValueInput::from_u128(0),
            timestamp: ((sealed_ms / 1000) as i64).min(block_ts),
            raw_data: Some(file.to_vec()),
            trust_level: 0,
            source_chain_id: 0,
            source_tx_hash: None,
            metadata: if metadata.len() <= peaqos_chain::validation::MAX_METADATA_SIZE {
                metadata.into_bytes()
            } else {
                Vec::new()
            },
            currency: Currency::Omitted,
        };
        let (intent, hash) = self.client.enqueue_event(&p).map_err(chain_err)?;
        Ok((intent, format!("{hash:#x}")))
    }
}

fn chain_err(e: ChainError) -> SvcError {
    let field = if e.field().is_empty() { "anchor".to_owned() } else { e.field().to_owned() };
    SvcError { code: e.error_code().as_str(), field, message: e.to_string() }
}
