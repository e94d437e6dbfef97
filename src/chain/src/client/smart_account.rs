//! Gen-1 smart accounts (SDK 0.11.2 `smart_account`): the factory's CREATE2 prediction
//! ([`ChainClient::smart_account_address`]) and an idempotent deployment
//! ([`ChainClient::deploy_smart_account`]) through the durable outbox.

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolEvent;
use serde_json::{json, Map, Value};

use super::{logs_from, read_err, ChainClient};
use crate::bindings::IMachineAccountFactory;
use crate::config::Generation;
use crate::encoding;
use crate::error::{ChainError, ErrorCode, Result};
use crate::outbox::IntentState;
use crate::revert::RevertScope;

/// SDK 0.11.2 `deploy_smart_account(owner, machine, salt)` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmartAccountParams {
    /// EOA that owns the account.
    pub owner: Address,
    /// Machine EOA the account is scoped to.
    pub machine: Address,
    /// CREATE2 salt (non-negative, as the SDK).
    pub salt: U256,
}

/// The account and whether this call deployed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartAccount {
    pub address: Address,
    /// `false`: the account existed already (reported, not deployed again).
    pub deployed: bool,
    pub intent_id: String,
    pub tx_hash: Option<B256>,
    pub block_number: Option<u64>,
}

/// Most deployment attempts one call makes after earlier ones failed for good.
const MAX_ATTEMPTS: usize = 8;

impl ChainClient {
    /// The configured MachineAccountFactory (legacy generation only, as the SDK's client needs
    /// `machine_account_factory`).
    fn account_factory(&self) -> Result<Address> {
        self.inner.cfg.require_generation(Generation::Legacy, "smart accounts")?;
        self.inner.cfg.gen1.machine_account_factory.ok_or_else(|| {
            ChainError::validation(
                "machine_account_factory",
                "required for smart-account operations",
                format!(
                    "no MachineAccountFactory on {} (set chain.contracts.machine_account_factory or MACHINE_ACCOUNT_FACTORY_ADDRESS)",
                    self.inner.cfg.network.name()
                ),
            )
        })
    }

    /// `MachineAccountFactory.getAddress(owner, machine, salt)`: where the account is (or will be).
    pub async fn smart_account_address(&self, p: &SmartAccountParams) -> Result<Address> {
        let factory = self.account_factory()?;
        let a = self
            .view_call(
                factory,
                IMachineAccountFactory::getAddressCall { owner: p.owner, machine: p.machine, salt: p.salt },
                RevertScope::Legacy,
            )
            .await?;
        if a == Address::ZERO {
            return Err(ChainError::rpc(
                ErrorCode::InvalidAddressResult,
                "MachineAccountFactory.getAddress returned an invalid address",
            ));
        }
        Ok(a)
    }

    /// Whether `a` holds contract code now.
    pub async fn has_code(&self, a: Address) -> Result<bool> {
        Ok(!self.inner.rpc.code(a).await.map_err(|f| read_err("eth_getCode", f))?.is_empty())
    }

    /// Deploy the account with `createAccount(owner, machine, salt)` (signed by the machine key,
    /// SDK 0.11.2 calldata) unless it exists: an account with code at the predicted address is
    /// reported, not deployed again. The transaction goes through the outbox once per
    /// `(factory, owner, machine, salt)` (`enqueue_once`): a repeated call, also after a crash or a
    /// receipt timeout, waits for the same intent; only an attempt that failed for good is followed
    /// by a new one. The receipt's `AccountCreated` must name the predicted address.
    pub async fn deploy_smart_account(&self, p: &SmartAccountParams) -> Result<SmartAccount> {
        let factory = self.account_factory()?;
        let predicted = self.smart_account_address(p).await?;
        if self.has_code(predicted).await? {
            return Ok(SmartAccount {
                address: predicted,
                deployed: false,
                intent_id: String::new(),
                tx_hash: None,
                block_number: None,
            });
        }
        let signer = self.inner.default_signer;
        let mut j = Map::new();
        j.insert("step".into(), json!("deploy_smart_account"));
        j.insert("owner".into(), json!(p.owner.to_checksum(None)));
        j.insert("machine".into(), json!(p.machine.to_checksum(None)));
        j.insert("salt".into(), json!(p.salt.to_string()));
        j.insert("account".into(), Value::String(predicted.to_checksum(None)));
        let input = encoding::create_account(p.owner, p.machine, p.salt);
        let base_key = format!(
            "smart-account:{}:{factory:#x}:{:#x}:{:#x}:{}",
            self.inner.cfg.chain_id, p.owner, p.machine, p.salt
        );
        let mut key = base_key.clone();
        let mut id = String::new();
        for _ in 0..MAX_ATTEMPTS {
            let req = self.tx_request(
                "deploy_smart_account",
                signer,
                factory,
                U256::ZERO,
                input.clone(),
                RevertScope::Legacy,
                j.clone(),
            );
            let (got, _) = self.inner.outbox.enqueue_once(&key, req)?;
            id = got;
            match self.inner.outbox.get(&id) {
                Some(i) if i.state == IntentState::Failed || i.state == IntentState::Conflicting => {
                    key = format!("{base_key}:after:{id}");
                }
                _ => break,
            }
        }
        let o = self.wait(&id).await?;
        let created = logs_from(&o.receipt.logs, factory, IMachineAccountFactory::AccountCreated::SIGNATURE_HASH);
        let Some(log) = created.first() else {
            return Err(ChainError::Tx {
                code: ErrorCode::AccountCreatedEventMissing,
                message: "No AccountCreated event found in transaction receipt".into(),
                intent_id: id,
                tx_hash: format!("{:#x}", o.tx_hash),
            });
        };
        let ev = alloy::primitives::Log::new(log.address, log.topics.clone(), log.data.clone())
            .and_then(|l| IMachineAccountFactory::AccountCreated::decode_log(&l).ok());
        match ev {
            Some(ev) if ev.account == predicted && ev.owner == p.owner && ev.machine == p.machine => Ok(SmartAccount {
                address: predicted,
                deployed: true,
                intent_id: id,
                tx_hash: Some(o.tx_hash),
                block_number: Some(o.receipt.block_number),
            }),
            _ => Err(ChainError::Tx {
                code: ErrorCode::AccountCreatedEventMalformed,
                message: format!(
                    "AccountCreated in {:#x} does not name the predicted account {predicted:#x} for this owner and machine",
                    o.tx_hash
                ),
                intent_id: id,
                tx_hash: format!("{:#x}", o.tx_hash),
            }),
        }
    }
}
