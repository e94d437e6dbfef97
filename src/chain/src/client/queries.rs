//! Read-only queries: latest block time, chain id check, event count, and the gen-1 registry,
//! NFT and DID attribute reads the flows check before writing.

use alloy::primitives::{Address, U256};
use serde_json::json;

use super::{read_err, ChainClient};
use crate::bindings::*;
use crate::encoding;
use crate::error::{ChainError, ErrorCode, Result};
use crate::revert::RevertScope;

impl ChainClient {
    /// Timestamp of the latest block: the bound of an event's `timestamp` (the EventRegistry
    /// reverts `FutureTimestamp` above it). Errors say why in one line.
    pub async fn latest_block_time(&self) -> std::result::Result<i64, String> {
        let v = self
            .inner
            .rpc
            .request_value("eth_getBlockByNumber", json!(["latest", false]))
            .await
            .map_err(|e| format!("chain unreachable: {}", e.message()))?;
        let ts = v.get("timestamp").and_then(|t| t.as_str()).ok_or("latest block without a timestamp")?;
        i64::from_str_radix(ts.trim_start_matches("0x"), 16).map_err(|e| format!("block timestamp {ts:?}: {e}"))
    }

    /// `eth_chainId` equals the configured chain id (`CHAIN_MISMATCH` otherwise).
    pub async fn check_chain_id(&self) -> Result<()> {
        let id = self.inner.rpc.chain_id().await.map_err(|f| read_err("eth_chainId", f))?;
        if id != self.inner.cfg.chain_id {
            return Err(ChainError::activation(
                ErrorCode::ChainMismatch,
                "chain_id",
                format!("RPC reports chain id {id}, configuration expects {}", self.inner.cfg.chain_id),
            ));
        }
        Ok(())
    }

    /// `EventRegistry.getEventCount(machineId)` of the configured generation.
    pub async fn event_count(&self, machine_id: U256) -> Result<U256> {
        let registry = self.inner.cfg.event_registry()?;
        self.view_call(registry, IEventRegistry::getEventCountCall { machineId: machine_id }, self.events_scope()).await
    }

    /// `IdentityRegistry.machineIdOfOwner(addr)` (0 = not registered).
    pub async fn machine_id_of_owner(&self, owner: Address) -> Result<U256> {
        self.view_call(
            self.inner.cfg.gen1.identity_registry,
            IIdentityRegistry::machineIdOfOwnerCall { addr: owner },
            RevertScope::Legacy,
        )
        .await
    }

    pub(super) async fn min_bond(&self) -> U256 {
        // GUESS (SPEC §3.2): read minBond() instead of hard-coding; the SDK sends 1e18.
        self.view_call(self.inner.cfg.gen1.identity_registry, IIdentityRegistry::minBondCall {}, RevertScope::Legacy)
            .await
            .unwrap_or(U256::from(10u128.pow(18)))
    }

    /// `MachineNFT.tokenIdOf(machineId)` (0 = not minted).
    pub async fn token_id_of(&self, machine_id: U256) -> Result<U256> {
        self.view_call(
            self.inner.cfg.gen1.machine_nft,
            IMachineNft::tokenIdOfCall { machineId: machine_id },
            RevertScope::Legacy,
        )
        .await
    }

    /// DID precompile `readAttribute(didAccount, name)`: `Ok(None)` when absent ("Cannot find the item").
    pub async fn read_did_attribute(&self, did_account: Address, name: &str) -> Result<Option<String>> {
        if name.is_empty() || name.len() > encoding::DID_MAX_NAME_BYTES || !name.is_ascii() {
            return Err(ChainError::validation("name", "ascii, 1..64 bytes", "name must be 1 to 64 ASCII bytes"));
        }
        let did = self.inner.cfg.gen1.did;
        match self
            .view_call(
                did,
                IDid::readAttributeCall { didAccount: did_account, name: name.as_bytes().to_vec().into() },
                RevertScope::Legacy,
            )
            .await
        {
            Ok(a) => Ok(Some(String::from_utf8_lossy(&a.value).into_owned())),
            Err(e)
                if e.error_code() == ErrorCode::AttributeNotFound
                    || e.error_code() == ErrorCode::Solidity("EntryNotFound") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
