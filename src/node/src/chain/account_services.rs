//! Gen-1 smart accounts: `~/smart_account_address` (the factory's CREATE2 prediction) and
//! `~/deploy_smart_account` (idempotent, through the outbox). The flows are
//! `peaqos_chain`'s ([`ChainClient::smart_account_address`], [`ChainClient::deploy_smart_account`]).
use alloy::primitives::U256;
use peaqos_chain::client::SmartAccountParams;
use peaqos_chain::{ChainClient, ChainError};
use ros_env::peaqos_node::srv::*;

use super::answer::*;
use super::Registrar;
use crate::StartError;

/// The request fields both services share: empty owner/machine = the machine's address, empty
/// salt = 0 (a non-negative decimal otherwise, as the SDK's `salt`).
fn params(c: &ChainClient, owner: &str, machine: &str, salt: &str) -> Result<SmartAccountParams, ChainError> {
    let me = c.signer_address();
    let salt = match salt {
        "" | "0" => U256::ZERO,
        s => u256("salt", s)?,
    };
    Ok(SmartAccountParams {
        owner: opt_address("owner", owner)?.unwrap_or(me),
        machine: opt_address("machine", machine)?.unwrap_or(me),
        salt,
    })
}

/// Reverts carry no field: the factory's `InvalidAddress` is about the owner or machine.
const ACCOUNT_REVERTS: Renames = &[
    ("code:InvalidAddress", "owner"),
    ("machine_account_factory", "chain.contracts.machine_account_factory"),
    ("generation", "chain.generation"),
];

pub(super) fn register(reg: &mut Registrar) -> Result<(), StartError> {
    service!(reg, "~/smart_account_address", SmartAccountAddress, renames: ACCOUNT_REVERTS, |c, req| {
        let p = params(&c, &req.owner, &req.machine, &req.salt)?;
        let address = c.smart_account_address(&p).await?;
        let deployed = c.has_code(address).await?;
        Ok(SmartAccountAddress_Response {
            success: true,
            message: if deployed { "deployed".into() } else { "not deployed yet".into() },
            address: address.to_checksum(None),
            deployed,
            ..Default::default()
        })
    });
    service!(reg, "~/deploy_smart_account", DeploySmartAccount, renames: ACCOUNT_REVERTS, |c, req| {
        let p = params(&c, &req.owner, &req.machine, &req.salt)?;
        let a = c.deploy_smart_account(&p).await?;
        Ok(DeploySmartAccount_Response {
            success: true,
            message: if a.deployed { "deployed".into() } else { "already deployed: nothing sent".into() },
            address: a.address.to_checksum(None),
            deployed: a.deployed,
            intent_id: a.intent_id,
            tx_hash: a.tx_hash.map(hx).unwrap_or_default(),
            block_number: a.block_number.unwrap_or(0),
            ..Default::default()
        })
    });
    Ok(())
}
