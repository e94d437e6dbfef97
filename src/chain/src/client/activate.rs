//! Activation flows: gen-1 `activate_legacy` (register → mint → machine DID → proxy DID) and gen-2
//! `activate` (SDK 0.12.1 `activate_machine`), the latter as a sequence of named steps, each
//! returning what the next one needs.

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolEvent;
use serde_json::{json, Map};

use super::identity::StepResult;
use super::{logs_from, read_err, ChainClient};
use crate::bindings::*;
use crate::config::Generation;
use crate::encoding::{self, ActivateArgs, MachineDidAttributes};
use crate::error::{ChainError, Result};
use crate::revert::RevertScope;
use crate::rpc::RpcLog;

/// Gen-1 `activate` parameters (CLI 0.0.5 `peaqos activate [--for <machine> --machine-key]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyActivateParams {
    /// The machine's EVM address; its key must be configured (it signs the machine-DID batch).
    pub machine: Address,
    /// Proxy mode: the operator address (its key must be configured); `None` = self mode.
    pub operator: Option<Address>,
    pub documentation_url: String,
    pub data_api: String,
    pub data_visibility: String,
}

/// Gen-1 `activate` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyActivation {
    pub machine_id: U256,
    pub token_id: U256,
    pub machine_did: String,
    pub register: StepResult,
    pub mint: StepResult,
    pub machine_did_step: StepResult,
    pub proxy_did_step: Option<StepResult>,
}

/// Gen-2 activation parameters (SDK `ActivateMachineParams`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivateParams {
    pub controller: Address,
    pub verification_methods: Vec<VerificationMethod>,
    pub authentication: Vec<U256>,
    pub service_endpoints: Vec<ServiceEndpoint>,
    pub machine_type: String,
    pub credential_subject: Vec<u8>,
    pub manufacturer: Address,
    pub tier: u8,
    pub expected_machine_id: Option<U256>,
    pub max_net_peaq_amount: Option<U256>,
}

/// Gen-2 activation result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationResult {
    pub machine_id: U256,
    pub owner: Address,
    pub controller: Address,
    pub tier: u8,
    pub bond_amount: U256,
    pub voucher_credit_applied: U256,
    pub net_peaq_amount: U256,
    pub approval_tx_hash: Option<B256>,
    pub transaction_hash: B256,
    pub intent_id: String,
    pub chain_id: u64,
    pub subscription_status: u8,
}

impl ChainClient {
    /// Gen-1 activation as CLI 0.0.5 (steps 4–6; funding is out of scope): register (or
    /// registerFor by the operator) → mint the Machine NFT to the machine → machine DID (machine
    /// key) → proxy DID (operator key, proxy mode). Each step is checked on chain first, so a
    /// rerun completes a half-done activation and repeats nothing.
    pub async fn activate_legacy(&self, p: &LegacyActivateParams) -> Result<LegacyActivation> {
        self.inner.cfg.require_generation(Generation::Legacy, "activate")?;
        let signers = self.inner.outbox.signers();
        for (field, a) in std::iter::once(("machine", Some(p.machine))).chain(std::iter::once(("operator", p.operator)))
        {
            if let Some(a) = a {
                if !signers.contains(&a) {
                    return Err(ChainError::config(
                        "SIGNER_UNAVAILABLE",
                        field,
                        format!("no key configured for {field} {a:#x}"),
                    ));
                }
            }
        }
        // Validate DID inputs before touching the chain.
        MachineDidAttributes {
            machine_id: U256::from(1),
            nft_token_id: U256::ZERO,
            operator: p.operator,
            documentation_url: p.documentation_url.clone(),
            data_api: p.data_api.clone(),
            data_visibility: p.data_visibility.clone(),
        }
        .pairs()?;
        let mut proxy_machine_id = U256::ZERO;
        if let Some(op) = p.operator {
            proxy_machine_id = self.machine_id_of_owner(op).await?;
            if proxy_machine_id.is_zero() {
                return Err(ChainError::config("PROXY_NOT_REGISTERED", "operator", "Proxy operator is not registered"));
            }
        }
        let register = match p.operator {
            Some(op) => self.register_for(op, p.machine).await?,
            None => self.register_inner(p.machine, p.machine, false).await?,
        };
        let mint_signer = p.operator.unwrap_or(p.machine);
        let mint = self.mint_nft(Some(mint_signer), register.machine_id, p.machine).await?;
        let attrs = MachineDidAttributes {
            machine_id: register.machine_id,
            nft_token_id: mint.token_id,
            operator: p.operator,
            documentation_url: p.documentation_url.clone(),
            data_api: p.data_api.clone(),
            data_visibility: p.data_visibility.clone(),
        };
        let machine_did_step = self.write_machine_did_attributes(Some(p.machine), &attrs).await?;
        let proxy_did_step = match p.operator {
            Some(op) => {
                Some(self.write_proxy_did_attributes(Some(op), proxy_machine_id, &[register.machine_id]).await?)
            }
            None => None,
        };
        Ok(LegacyActivation {
            machine_id: register.machine_id,
            token_id: mint.token_id,
            machine_did: format!("did:peaq:{}", p.machine.to_checksum(None)),
            register: register.step,
            mint: mint.step,
            machine_did_step,
            proxy_did_step,
        })
    }

    /// Gen-2 activation, SDK 0.12.1 `activate_machine` steps (SPEC §3.6), signed by the default
    /// signer (the machine key; it becomes owner and payer, `controller` the DID controller).
    pub async fn activate(&self, p: &ActivateParams) -> Result<ActivationResult> {
        let cfg = &self.inner.cfg;
        cfg.require_generation(Generation::Economics2, "activate")?;
        let signer = self.inner.default_signer;
        let g2 = cfg.gen2.clone();
        let act = |code: &str, field: &str, msg: String| ChainError::activation(code, field, msg);
        // 1. local validation
        if p.machine_type.is_empty() {
            return Err(ChainError::validation("machine_type", "non-empty", "machine_type must be a non-empty string"));
        }
        if p.credential_subject.is_empty() {
            return Err(ChainError::validation(
                "credential_subject",
                "non-empty",
                "credential_subject must be non-empty bytes",
            ));
        }
        if p.tier > 2 {
            return Err(act("INVALID_TIER", "tier", format!("tier must be 0, 1 or 2, got {}", p.tier)));
        }
        if p.controller == Address::ZERO {
            return Err(ChainError::validation(
                "controller",
                "non-zero address",
                "controller must be a non-zero address",
            ));
        }
        let n_vm = U256::from(p.verification_methods.len());
        if let Some(bad) = p.authentication.iter().find(|a| **a >= n_vm) {
            return Err(ChainError::validation(
                "authentication",
                "index < len(verification_methods)",
                format!("authentication index {bad} is out of range"),
            ));
        }
        // 2. preflight
        self.check_chain_id().await?;
        for (name, a) in [
            ("info_desk", g2.info_desk),
            ("machine_registry", g2.machine_registry),
            ("machine_state_and_sync", g2.machine_state_and_sync),
            ("machine_subscription", g2.machine_subscription),
        ] {
            let code = self.inner.rpc.code(a).await.map_err(|f| read_err("eth_getCode", f))?;
            if code.is_empty() {
                return Err(act("CONTRACT_NOT_DEPLOYED", name, format!("no bytecode at {name} {a:#x}")));
            }
        }
        // every peer matches InfoDesk.peer(keccak256(ROLE)) (SDK preflight)
        for (role, key_name, expected) in [
            ("machine_registry", "MACHINE_REGISTRY", g2.machine_registry),
            ("machine_subscription", "MACHINE_SUBSCRIPTION", g2.machine_subscription),
            ("machine_state_and_sync", "MACHINE_STATE_AND_SYNC", g2.machine_state_and_sync),
            ("cross_chain_mirror", "CROSS_CHAIN_MIRROR", g2.cross_chain_mirror),
            ("machine_bridge_adapter", "MACHINE_BRIDGE_ADAPTER", g2.machine_bridge_adapter),
            (
                "subscription_token_provision_pool",
                "SUBSCRIPTION_TOKEN_PROVISION_POOL",
                g2.subscription_token_provision_pool,
            ),
        ] {
            let key = alloy::primitives::keccak256(key_name.as_bytes());
            let actual = self
                .view_call(g2.info_desk, IInfoDesk::peerCall { key }, RevertScope::Activation)
                .await
                .map_err(|e| as_activation(e, "READ_FAILED"))?;
            if actual == Address::ZERO {
                return Err(act(
                    "PEER_UNSET",
                    role,
                    format!("InfoDesk registers no address for {role}: the peer was cleared or never set"),
                ));
            }
            if actual != expected {
                return Err(act(
                    "PEER_MISMATCH",
                    role,
                    format!("InfoDesk registers {actual:#x} for {role}, but the configuration uses {expected:#x}"),
                ));
            }
        }
        let authority = self
            .view_call(
                g2.machine_subscription,
                IMachineSubscription::isEconomicAuthorityCall {},
                RevertScope::Activation,
            )
            .await
            .map_err(|e| as_activation(e, "READ_FAILED"))?;
        if !authority {
            return Err(act("NOT_ECONOMIC_AUTHORITY", "machine_subscription", format!("MachineSubscription at {:#x} is not the economic authority, so onboarding is not offered on this chain", g2.machine_subscription)));
        }
        // 3. machine id + technical pause
        let machine_id = self
            .view_call(
                g2.machine_registry,
                IMachineRegistry::computeTokenIdCall {
                    machineType_: p.machine_type.clone(),
                    credentialSubject_: p.credential_subject.clone().into(),
                },
                RevertScope::Activation,
            )
            .await?;
        let paused = self
            .view_call(
                g2.machine_state_and_sync,
                IMachineStateAndSync::isTechnicalPausedCall { machineId: machine_id },
                RevertScope::Activation,
            )
            .await?;
        if paused {
            return Err(act("TECHNICALLY_PAUSED", "machine_id", format!("machine {machine_id} is technically paused")));
        }
        // Already active: refuse before any approval is spent (the simulation would revert
        // AlreadyActivated anyway).
        let st0 = self
            .view_call(
                g2.machine_subscription,
                IMachineSubscription::subscriptionStatusCall { machineId: machine_id },
                RevertScope::Activation,
            )
            .await?;
        if st0 != 0 {
            return Err(act(
                "ALREADY_ACTIVATED",
                "machine_id",
                format!("machine {machine_id} is already activated (subscription status {st0})"),
            ));
        }
        // 4. quote
        let quote = |s: Self| async move {
            let bond = s
                .view_call(
                    g2.machine_subscription,
                    IMachineSubscription::requiredPeaqAmountCall { tier: p.tier },
                    RevertScope::Activation,
                )
                .await?;
            let credit = s
                .view_call(
                    g2.machine_subscription,
                    IMachineSubscription::pendingVoucherCreditCall { operator: signer },
                    RevertScope::Activation,
                )
                .await?;
            let credit = credit.min(bond);
            Ok::<_, ChainError>((bond, credit, bond - credit))
        };
        let (bond, credit, net) = quote(self.clone()).await.map_err(|e| as_activation(e, "PRICE_NOT_AVAILABLE"))?;
        // 5. caller assertions
        if let Some(exp) = p.expected_machine_id {
            if exp != machine_id {
                return Err(act(
                    "MACHINE_ID_MISMATCH",
                    "expected_machine_id",
                    format!("computed machine id {machine_id} differs from expected {exp}"),
                ));
            }
        }
        if let Some(max) = p.max_net_peaq_amount {
            if net > max {
                return Err(act(
                    "MAX_NET_PEAQ_EXCEEDED",
                    "max_net_peaq_amount",
                    format!("net PEAQ amount {net} exceeds the maximum {max}"),
                ));
            }
        }
        // 6. token, balance, allowance
        let token = self.view_call(g2.info_desk, IInfoDesk::peaqTokenCall {}, RevertScope::Activation).await?;
        let balance =
            self.view_call(token, IPeaqToken::balanceOfCall { account: signer }, RevertScope::Activation).await?;
        if balance < net {
            return Err(act(
                "INSUFFICIENT_BALANCE",
                "signer",
                format!("PEAQ balance {balance} of {signer:#x} is below the net amount {net}"),
            ));
        }
        let allowance = self
            .view_call(
                token,
                IPeaqToken::allowanceCall { owner: signer, spender: g2.machine_subscription },
                RevertScope::Activation,
            )
            .await?;
        let mut j = Map::new();
        j.insert("step".into(), json!("activate_machine"));
        j.insert("machine_id".into(), json!(machine_id.to_string()));
        j.insert("owner".into(), json!(signer.to_checksum(None)));
        j.insert("controller".into(), json!(p.controller.to_checksum(None)));
        j.insert("tier".into(), json!(p.tier));
        // 7. exact approval
        let mut approval_tx_hash = None;
        if allowance < net {
            let mut ja = j.clone();
            ja.insert("phase".into(), json!("approval"));
            ja.insert("method".into(), json!("approve"));
            let id = self.enqueue(
                "approve",
                signer,
                token,
                U256::ZERO,
                encoding::approve(g2.machine_subscription, net),
                RevertScope::Activation,
                ja,
            )?;
            match self.wait(&id).await {
                Ok(o) => approval_tx_hash = Some(o.tx_hash),
                Err(e) if e.code() == "RECEIPT_AWAIT_FAILED" => {
                    return Err(act("PENDING_TRANSACTION", "approval", e.to_string()))
                }
                Err(e) => return Err(act("APPROVAL_FAILED", "approval", e.to_string())),
            }
        }
        // 8. re-quote and re-read: never a second approval
        let (bond2, credit2, net2) = quote(self.clone()).await.map_err(|e| as_activation(e, "PRICE_NOT_AVAILABLE"))?;
        let allowance2 = self
            .view_call(
                token,
                IPeaqToken::allowanceCall { owner: signer, spender: g2.machine_subscription },
                RevertScope::Activation,
            )
            .await?;
        if allowance2 < net2 {
            return Err(act(
                "ALLOWANCE_INSUFFICIENT",
                "allowance",
                format!("allowance {allowance2} is below the re-quoted net amount {net2}"),
            ));
        }
        // 9. simulate
        let doc = DIDDocument {
            id: String::new(),
            controller: p.controller,
            verificationMethods: p.verification_methods.clone(),
            authentication: p.authentication.clone(),
            serviceEndpoints: p.service_endpoints.clone(),
        };
        let args = ActivateArgs {
            doc,
            machine_type: p.machine_type.clone(),
            credential_subject: p.credential_subject.clone(),
            manufacturer: p.manufacturer,
            tier: p.tier,
        };
        let input = encoding::activate_machine(&args);
        self.view(g2.machine_state_and_sync, input.clone(), RevertScope::Activation)
            .await
            .map_err(|e| as_activation(e, "CONTRACT_REVERTED"))?;
        // 10. submit
        let mut jb = j.clone();
        jb.insert("phase".into(), json!("activation"));
        jb.insert("method".into(), json!("activateMachine"));
        let id = self.enqueue(
            "activate_machine",
            signer,
            g2.machine_state_and_sync,
            U256::ZERO,
            input,
            RevertScope::Activation,
            jb,
        )?;
        let o = match self.wait(&id).await {
            Ok(o) => o,
            Err(e) if e.code() == "RECEIPT_AWAIT_FAILED" => {
                return Err(act("PENDING_TRANSACTION", "activation", e.to_string()))
            }
            Err(e) => return Err(as_activation(e, "CONTRACT_REVERTED")),
        };
        // 11. receipt correlation (only logs of the expected emitter, exactly one of each)
        let logs = &o.receipt.logs;
        let mismatch =
            |what: &str| act("EVENT_MISMATCH", "receipt", format!("activation receipt {:#x}: {what}", o.tx_hash));
        let onb = logs_from(logs, g2.machine_state_and_sync, IMachineStateAndSync::MachineOnboarded::SIGNATURE_HASH);
        let minted = logs_from(logs, g2.machine_registry, IMachineRegistry::MachineMinted::SIGNATURE_HASH);
        let activated = logs_from(logs, g2.machine_subscription, IMachineSubscription::Activated::SIGNATURE_HASH);
        if onb.len() != 1 || minted.len() != 1 || activated.len() != 1 {
            return Err(mismatch(&format!(
                "expected one MachineOnboarded/MachineMinted/Activated, got {}/{}/{}",
                onb.len(),
                minted.len(),
                activated.len()
            )));
        }
        let dec = |l: &RpcLog| alloy::primitives::Log::new(l.address, l.topics.clone(), l.data.clone());
        let onb_ev = dec(onb[0])
            .and_then(|l| IMachineStateAndSync::MachineOnboarded::decode_log(&l).ok())
            .ok_or_else(|| mismatch("MachineOnboarded undecodable"))?;
        if onb_ev.machineId != machine_id || onb_ev.operator != signer {
            return Err(mismatch("MachineOnboarded does not match the machine id / signer"));
        }
        let mint_ev = dec(minted[0])
            .and_then(|l| IMachineRegistry::MachineMinted::decode_log(&l).ok())
            .ok_or_else(|| mismatch("MachineMinted undecodable"))?;
        if mint_ev.tokenId != machine_id
            || mint_ev.to != signer
            || mint_ev.controller != p.controller
            || mint_ev.machineType != p.machine_type
        {
            return Err(mismatch("MachineMinted does not match token id / owner / controller / machine type"));
        }
        let act_ev = dec(activated[0])
            .and_then(|l| IMachineSubscription::Activated::decode_log(&l).ok())
            .ok_or_else(|| mismatch("Activated undecodable"))?;
        if act_ev.machineId != machine_id || act_ev.bondedAmount != bond2 {
            return Err(mismatch("Activated does not match the machine id / bond"));
        }
        // 12. post-state
        let status = self
            .view_call(
                g2.machine_subscription,
                IMachineSubscription::subscriptionStatusCall { machineId: machine_id },
                RevertScope::Activation,
            )
            .await?;
        if status != 1 {
            return Err(act(
                "STATE_MISMATCH",
                "subscription",
                format!("subscription status of {machine_id} is {status}, expected 1 (active)"),
            ));
        }
        let _ = (bond, credit, net);
        Ok(ActivationResult {
            machine_id,
            owner: signer,
            controller: p.controller,
            tier: p.tier,
            bond_amount: bond2,
            voucher_credit_applied: credit2,
            net_peaq_amount: net2,
            approval_tx_hash,
            transaction_hash: o.tx_hash,
            intent_id: id,
            chain_id: cfg.chain_id,
            subscription_status: status,
        })
    }
}

/// Reverts during activation keep their decoded code; others get `fallback`.
fn as_activation(e: ChainError, fallback: &str) -> ChainError {
    match e {
        ChainError::Revert { code, message, .. } => {
            let code = if code == "TX_REVERTED" { fallback.to_string() } else { code };
            ChainError::Activation { code, field: String::new(), message }
        }
        ChainError::Tx { code, message, .. } if code != "RECEIPT_AWAIT_FAILED" => {
            ChainError::Activation { code, field: String::new(), message }
        }
        other => other,
    }
}
