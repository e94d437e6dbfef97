//! The DID precompile: `~/write_machine_did_attributes`, `~/write_proxy_did_attributes` (one
//! `batchAll` each, skipped when every attribute exists) and `~/read_did_attribute`.
use alloy::primitives::Address;
use peaqos_chain::encoding::MachineDidAttributes;
use ros_env::peaqos_node::srv::*;

use super::answer::*;
use super::Registrar;
use crate::StartError;

pub(super) fn register(reg: &mut Registrar, operator: Option<Address>) -> Result<(), StartError> {
    service!(reg, "~/write_machine_did_attributes", WriteMachineDidAttributes, renames: &[("operator", "operator_did")], |c, req| {
        let operator = match req.operator_did.as_str() {
            "" => None,
            did => Some(address("operator_did", did.strip_prefix("did:peaq:").unwrap_or(did))?),
        };
        let attrs = MachineDidAttributes {
            machine_id: u256("machine_id", &req.machine_id)?,
            nft_token_id: u256("nft_token_id", &req.nft_token_id)?,
            operator,
            documentation_url: req.documentation_url,
            data_api: req.data_api,
            data_visibility: req.data_visibility,
        };
        let r = c.write_machine_did_attributes(None, &attrs).await?;
        Ok(WriteMachineDidAttributes_Response {
            success: true,
            message: if r.skipped { "already on chain".into() } else { "written".into() },
            tx_hash: r.tx_hash.map(hx).unwrap_or_default(),
            skipped: r.skipped,
            ..Default::default()
        })
    });

    service!(reg, "~/write_proxy_did_attributes", WriteProxyDidAttributes, |c, req| {
        let signer = match opt_address("signer_address", &req.signer_address)? {
            Some(s) => Some(s),
            None => operator,
        };
        let mut ids = Vec::with_capacity(req.machine_ids.len());
        for (i, m) in req.machine_ids.iter().enumerate() {
            ids.push(u256(&format!("machine_ids[{i}]"), m)?);
        }
        let r = c.write_proxy_did_attributes(signer, u256("proxy_machine_id", &req.proxy_machine_id)?, &ids).await?;
        Ok(WriteProxyDidAttributes_Response {
            success: true,
            message: if r.skipped { "already on chain".into() } else { "written".into() },
            tx_hash: r.tx_hash.map(hx).unwrap_or_default(),
            skipped: r.skipped,
            ..Default::default()
        })
    });

    service!(reg, "~/read_did_attribute", ReadDidAttribute, |c, req| {
        let did = req.did_address.as_str();
        let account = address("did_address", did.strip_prefix("did:peaq:").unwrap_or(did))?;
        let v = c.read_did_attribute(account, &req.name).await?;
        Ok(ReadDidAttribute_Response {
            success: true,
            found: v.is_some(),
            value: v.unwrap_or_default(),
            message: "read".into(),
            ..Default::default()
        })
    });
    Ok(())
}
