//! Gen-1 identity flows: register / registerFor on the IdentityRegistry, minting the Machine NFT,
//! and writing machine and proxy DID attributes through the DID precompile (each step checked on
//! chain first, so a rerun repeats nothing).

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolEvent;
use serde_json::{json, Map, Value};
use tracing::info;

use super::{jnum, logs_from, ChainClient};
use crate::bindings::*;
use crate::config::Generation;
use crate::encoding::{self, MachineDidAttributes};
use crate::error::{ChainError, ErrorCode, Result};
use crate::revert::RevertScope;

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

impl ChainClient {
    pub(super) async fn register_inner(&self, signer: Address, target: Address, proxy: bool) -> Result<RegisterResult> {
        self.inner.cfg.require_generation(Generation::Legacy, "register")?;
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
                step: StepResult { tx_hash: None, intent_id: None, skipped: true },
            });
        }
        let bond = self.min_bond().await;
        let input = if proxy { encoding::register_for(target) } else { encoding::register() };
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
            Err(e) if e.error_code() == ErrorCode::Solidity("AlreadyRegistered") => {
                // CLI race handling: re-read.
                let again = self.machine_id_of_owner(target).await?;
                if again.is_zero() {
                    return Err(e);
                }
                return Ok(RegisterResult {
                    machine_id: again,
                    step: StepResult { tx_hash: None, intent_id: Some(id), skipped: true },
                });
            }
            Err(e) => return Err(e),
        };
        let topic = IIdentityRegistry::Registered::SIGNATURE_HASH;
        let logs = logs_from(&o.receipt.logs, self.inner.cfg.gen1.identity_registry, topic);
        let Some(log) = logs.first() else {
            return Err(ChainError::Tx {
                code: ErrorCode::RegisteredEventMissing,
                message: "receipt has no Registered event from the IdentityRegistry".into(),
                intent_id: id,
                tx_hash: format!("{:#x}", o.tx_hash),
            });
        };
        let machine_id = log.topics.get(1).map(|t| U256::from_be_bytes(t.0)).unwrap_or_default();
        if machine_id.is_zero() {
            return Err(ChainError::Tx {
                code: ErrorCode::RegisteredEventMalformed,
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
            step: StepResult { tx_hash: Some(o.tx_hash), intent_id: Some(id), skipped: false },
        })
    }

    /// Gen 1 `register()` by the default signer (skipped if already registered).
    pub async fn register(&self) -> Result<RegisterResult> {
        self.register_inner(self.inner.default_signer, self.inner.default_signer, false).await
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

    /// Gen 1 `mint(machineId, recipient)` signed by `signer` (default signer when `None`); skipped
    /// when `tokenIdOf(machineId) > 0` and owned by `recipient` (`MINT_OWNER_MISMATCH` otherwise).
    pub async fn mint_nft(&self, signer: Option<Address>, machine_id: U256, recipient: Address) -> Result<MintResult> {
        self.inner.cfg.require_generation(Generation::Legacy, "mint_nft")?;
        if machine_id.is_zero() {
            return Err(ChainError::validation("machine_id", "> 0", "machine_id must be a positive integer"));
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
            let owner =
                self.view_call(nft, IMachineNft::ownerOfCall { tokenId: existing }, RevertScope::Legacy).await?;
            if owner != recipient {
                return Err(ChainError::Tx {
                    code: ErrorCode::MintOwnerMismatch,
                    message: format!(
                        "Machine NFT {existing} of machine {machine_id} is owned by {owner:#x}, not {recipient:#x}"
                    ),
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
                step: StepResult { tx_hash: None, intent_id: None, skipped: true },
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
            Err(e) if e.error_code() == ErrorCode::Solidity("AlreadyMinted") => (None, true),
            Err(e) => return Err(e),
        };
        let token_id = self.token_id_of(machine_id).await?;
        let mut m = Map::new();
        m.insert("step".into(), json!("mint_nft"));
        m.insert("status".into(), json!(if skipped { "skipped" } else { "confirmed" }));
        m.insert("machine_id".into(), jnum(machine_id));
        m.insert("recipient".into(), json!(recipient.to_checksum(None)));
        m.insert("token_id".into(), jnum(token_id));
        if let Some(h) = tx {
            m.insert("tx_hash".into(), json!(format!("{h:#x}")));
        } else {
            m.insert("recovered_from".into(), json!("AlreadyMinted"));
        }
        self.journal_line(m);
        Ok(MintResult { token_id, step: StepResult { tx_hash: tx, intent_id: Some(id), skipped } })
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
        self.inner.cfg.require_generation(Generation::Legacy, kind)?;
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
            return Ok(StepResult { tx_hash: None, intent_id: None, skipped: true });
        }
        let did = self.inner.cfg.gen1.did;
        let input = encoding::did_attributes_batch(did, signer, &missing);
        j.insert("method".into(), json!("batchAll"));
        let id = self.enqueue(kind, signer, self.inner.cfg.gen1.batch, U256::ZERO, input, RevertScope::Legacy, j)?;
        match self.wait(&id).await {
            Ok(o) => Ok(StepResult { tx_hash: Some(o.tx_hash), intent_id: Some(id), skipped: false }),
            Err(e) if e.error_code() == ErrorCode::AttributeAlreadyExists => {
                Ok(StepResult { tx_hash: None, intent_id: Some(id), skipped: true })
            }
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
        j.insert("mode".into(), json!(if attrs.operator.is_some() { "proxy" } else { "self" }));
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
        j.insert("machine_ids".into(), Value::Array(machine_ids.iter().map(|m| jnum(*m)).collect()));
        j.insert("proxy_did_tx_count".into(), json!(2));
        self.write_did_batch("proxy_did", signer, &pairs, j).await
    }
}
