//! Identity on chain: `~/activate` (both generations), the legacy steps (`~/register`,
//! `~/register_for`, `~/mint_nft`, `~/token_id_of`) and the DID precompile services.
use alloy::primitives::{Address, U256};
use peaqos_chain::bindings::{ServiceEndpoint, VerificationMethod};
use peaqos_chain::client::{ActivateParams, LegacyActivateParams};
use peaqos_chain::{ChainClient, ChainError, Generation};
use ros_env::peaqos_node::srv::*;

use super::answer::*;
use super::{persist_machine_id, Registrar, OPERATOR_KEY_ENV};
use crate::StartError;

/// A DID document as `activateMachine` takes it: verification methods, authentication indexes,
/// service endpoints.
type DidDocument = (Vec<VerificationMethod>, Vec<U256>, Vec<ServiceEndpoint>);

pub(super) fn register(reg: &mut Registrar, operator: Option<Address>) -> Result<(), StartError> {
    const ACTIVATE: Renames = &[
        ("credential_subject", "credential_subject_hex"),
        ("operator", "operator_address"),
        ("machine_id", "expected_machine_id"),
        ("authentication", "did_document_json"),
    ];
    service!(reg, "~/activate", Activate, renames: ACTIVATE, |c, req| {
        if c.config().generation == Generation::Legacy {
            activate_legacy(c, req).await
        } else {
            activate_economics2(c, req).await
        }
    });

    /// The answer of both registration services.
    macro_rules! registered {
        ($resp:ident, $r:expr) => {{
            let r = $r;
            Ok($resp {
                success: true,
                message: if r.step.skipped { "already registered".into() } else { "registered".into() },
                machine_id: r.machine_id.to_string(),
                tx_hash: r.step.tx_hash.map(hx).unwrap_or_default(),
                skipped: r.step.skipped,
                ..Default::default()
            })
        }};
    }

    service!(reg, "~/register", Register, |c, _req| registered!(Register_Response, c.register().await?));

    service!(reg, "~/register_for", RegisterFor, |c, req| {
        let proxy = match opt_address("proxy_address", &req.proxy_address)? {
            Some(p) => p,
            None => operator.ok_or_else(|| {
                ChainError::validation(
                    "proxy_address",
                    "operator key",
                    format!("no operator key is configured: set chain.operator_keystore_file, {OPERATOR_KEY_ENV} or chain.operator_key_file"),
                )
            })?,
        };
        registered!(
            RegisterFor_Response,
            c.register_for(proxy, address("machine_address", &req.machine_address)?).await?
        )
    });

    service!(reg, "~/mint_nft", MintNft, renames: MACHINE_REVERTS, |c, req| {
        let signer = opt_address("signer_address", &req.signer_address)?;
        let recipient = opt_address("recipient", &req.recipient)?.unwrap_or(signer.unwrap_or(c.signer_address()));
        let r = c.mint_nft(signer, u256("machine_id", &req.machine_id)?, recipient).await?;
        Ok(MintNft_Response {
            success: true,
            message: if r.step.skipped { "already minted".into() } else { "minted".into() },
            token_id: r.token_id.to_string(),
            tx_hash: r.step.tx_hash.map(hx).unwrap_or_default(),
            skipped: r.step.skipped,
            ..Default::default()
        })
    });

    service!(reg, "~/token_id_of", TokenIdOf, renames: MACHINE_REVERTS, |c, req| {
        let t = c.token_id_of(u256("machine_id", &req.machine_id)?).await?;
        Ok(TokenIdOf_Response { success: true, token_id: t.to_string(), ..Default::default() })
    });

    Ok(())
}

/// Parse the `did_document_json` of Activate: `{verificationMethods, authentication,
/// serviceEndpoints}` exactly (the CLI's `--did-document` rules: `id`/`controller` forbidden).
fn did_document(json: &str, controller: Address) -> Result<DidDocument, ChainError> {
    const F: &str = "did_document_json";
    if json.trim().is_empty() {
        return Ok((Vec::new(), Vec::new(), Vec::new()));
    }
    let bad = |m: String| ChainError::validation(F, "did document", m);
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(format!("{F}: not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| bad(format!("{F}: must be a JSON object")))?;
    for k in obj.keys() {
        if !["verificationMethods", "authentication", "serviceEndpoints"].contains(&k.as_str()) {
            return Err(bad(format!(
                "{F}: unknown key {k:?} (allowed: verificationMethods, authentication, serviceEndpoints)"
            )));
        }
    }
    let s = |o: &serde_json::Value, k: &str, at: &str| -> Result<String, ChainError> {
        o.get(k)
            .and_then(|x| x.as_str())
            .map(str::to_owned)
            .ok_or_else(|| bad(format!("{F}: {at}.{k} must be a string")))
    };
    let mut vms = Vec::new();
    for (i, vm) in obj.get("verificationMethods").and_then(|x| x.as_array()).into_iter().flatten().enumerate() {
        let at = format!("verificationMethods[{i}]");
        let c = match vm.get("controller").and_then(|x| x.as_str()) {
            Some(c) => address(&format!("{F}.{at}.controller"), c)?,
            None => controller,
        };
        vms.push(VerificationMethod {
            id: s(vm, "id", &at)?,
            methodType: s(vm, "methodType", &at)?,
            controller: c,
            publicKeyMultibase: s(vm, "publicKeyMultibase", &at)?,
        });
    }
    let mut auth = Vec::new();
    for (i, a) in obj.get("authentication").and_then(|x| x.as_array()).into_iter().flatten().enumerate() {
        let n = a.as_u64().ok_or_else(|| bad(format!("{F}: authentication[{i}] must be a non-negative integer")))?;
        auth.push(U256::from(n));
    }
    let mut ses = Vec::new();
    for (i, se) in obj.get("serviceEndpoints").and_then(|x| x.as_array()).into_iter().flatten().enumerate() {
        let at = format!("serviceEndpoints[{i}]");
        ses.push(ServiceEndpoint {
            id: s(se, "id", &at)?,
            serviceType: s(se, "serviceType", &at)?,
            serviceEndpoint: s(se, "serviceEndpoint", &at)?,
        });
    }
    Ok((vms, auth, ses))
}

/// Legacy activation: register → mint → DID attributes, each step checked on chain first.
async fn activate_legacy(c: ChainClient, req: Activate_Request) -> Result<Activate_Response, ChainError> {
    let signer = c.signer_address();
    let r = c
        .activate_legacy(&LegacyActivateParams {
            machine: signer,
            operator: opt_address("operator_address", &req.operator_address)?,
            documentation_url: req.documentation_url,
            data_api: req.data_api,
            data_visibility: if req.data_visibility.is_empty() { "public".into() } else { req.data_visibility },
        })
        .await?;
    persist_machine_id(&c, &r.machine_id.to_string());
    let last = [Some(&r.machine_did_step), Some(&r.mint), Some(&r.register)]
        .into_iter()
        .flatten()
        .find_map(|s| s.tx_hash)
        .map(hx)
        .unwrap_or_default();
    Ok(Activate_Response {
        success: true,
        message: "activated (legacy)".into(),
        machine_id: r.machine_id.to_string(),
        did: r.machine_did.clone(),
        token_id: r.token_id.to_string(),
        tx_hash: last,
        result_json: format!("{r:?}"),
        ..Default::default()
    })
}

/// Economics-2 activation: `activateMachine` after approving exactly the net bond.
async fn activate_economics2(c: ChainClient, req: Activate_Request) -> Result<Activate_Response, ChainError> {
    let signer = c.signer_address();
    // Proxy activation is a legacy flow: an operator given here must not be ignored.
    if opt_address("operator_address", &req.operator_address)?.is_some() {
        return Err(ChainError::validation(
            "operator_address",
            "empty",
            "operator_address (proxy activation) is only available for generation legacy",
        ));
    }
    let controller = opt_address("controller", &req.controller)?.unwrap_or(signer);
    let (verification_methods, authentication, service_endpoints) = did_document(&req.did_document_json, controller)?;
    let p = ActivateParams {
        controller,
        verification_methods,
        authentication,
        service_endpoints,
        machine_type: req.machine_type,
        credential_subject: hex_bytes("credential_subject_hex", &req.credential_subject_hex)?,
        manufacturer: address("manufacturer", &req.manufacturer)?,
        tier: req.tier,
        expected_machine_id: if req.expected_machine_id.is_empty() {
            None
        } else {
            Some(u256("expected_machine_id", &req.expected_machine_id)?)
        },
        max_net_peaq_amount: if req.max_net_peaq_amount.is_empty() {
            None
        } else {
            Some(u256("max_net_peaq_amount", &req.max_net_peaq_amount)?)
        },
    };
    let r = c.activate(&p).await?;
    persist_machine_id(&c, &r.machine_id.to_string());
    Ok(Activate_Response {
        success: true,
        message: "activated".into(),
        machine_id: r.machine_id.to_string(),
        did: format!("did:peaq:{}", r.machine_id),
        tx_hash: hx(r.transaction_hash),
        result_json: serde_json::json!({
            "machine_id": r.machine_id.to_string(),
            "owner": r.owner.to_checksum(None),
            "controller": r.controller.to_checksum(None),
            "tier": r.tier,
            "bond_amount": r.bond_amount.to_string(),
            "voucher_credit_applied": r.voucher_credit_applied.to_string(),
            "net_peaq_amount": r.net_peaq_amount.to_string(),
            "approval_tx_hash": r.approval_tx_hash.map(hx),
            "transaction_hash": hx(r.transaction_hash),
            "intent_id": r.intent_id,
            "chain_id": r.chain_id,
            "subscription_status": r.subscription_status,
        })
        .to_string(),
        ..Default::default()
    })
}
