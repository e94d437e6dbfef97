//! Activation flows: gen-1 `activate_legacy` (register → mint → machine DID → proxy DID) and gen-2
//! `activate` (SDK 0.12.1 `activate_machine`), the latter as a sequence of named steps, each
//! returning what the next one needs.

use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::sol_types::SolEvent;
use serde_json::{json, Map, Value};

use super::identity::StepResult;
use super::{logs_from, read_err, ChainClient};
use crate::bindings::*;
use crate::config::Generation;
use crate::encoding::{self, ActivateArgs, MachineDidAttributes};
use crate::error::{ChainError, ErrorCode, Result};
use crate::outbox::Outcome;
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
                        ErrorCode::SignerUnavailable,
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
                return Err(ChainError::config(
                    ErrorCode::ProxyNotRegistered,
                    "operator",
                    "Proxy operator is not registered",
                ));
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
    /// Every step refuses before anything is spent when the chain or the inputs say it would fail.
    pub async fn activate(&self, p: &ActivateParams) -> Result<ActivationResult> {
        let cfg = &self.inner.cfg;
        cfg.require_generation(Generation::Economics2, "activate")?;
        let signer = self.inner.default_signer;
        validate_activation(p)?;
        self.activation_preflight().await?;
        let machine_id = self.machine_to_activate(p).await?;
        let quote = self.quote(p.tier, signer).await.map_err(|e| as_activation(e, ErrorCode::PriceNotAvailable))?;
        check_caller_limits(p, machine_id, &quote)?;
        let (token, allowance) = self.check_funds(signer, quote.net).await?;
        let j = activation_journal(p, machine_id, signer);
        let approval_tx_hash =
            if allowance < quote.net { Some(self.approve_bond(token, quote.net, &j).await?) } else { None };
        let quote = self.requote_after_approval(p.tier, signer, token).await?;
        let input = self.simulate_activation(p).await?;
        let (intent_id, o) = self.activate_machine(input, &j).await?;
        self.check_activation_receipt(&o, p, machine_id, signer, quote.bond)?;
        let subscription_status = self.check_active(machine_id).await?;
        Ok(ActivationResult {
            machine_id,
            owner: signer,
            controller: p.controller,
            tier: p.tier,
            bond_amount: quote.bond,
            voucher_credit_applied: quote.credit,
            net_peaq_amount: quote.net,
            approval_tx_hash,
            transaction_hash: o.tx_hash,
            intent_id,
            chain_id: cfg.chain_id,
            subscription_status,
        })
    }

    /// Step 2, preflight: chain id, contracts deployed, InfoDesk peers, economic authority.
    async fn activation_preflight(&self) -> Result<()> {
        self.check_chain_id().await?;
        self.check_contracts_deployed().await?;
        self.check_peers().await?;
        self.check_economic_authority().await
    }

    /// Bytecode at each gen-2 contract the activation calls (`CONTRACT_NOT_DEPLOYED`).
    async fn check_contracts_deployed(&self) -> Result<()> {
        let g2 = &self.inner.cfg.gen2;
        for (name, a) in [
            ("info_desk", g2.info_desk),
            ("machine_registry", g2.machine_registry),
            ("machine_state_and_sync", g2.machine_state_and_sync),
            ("machine_subscription", g2.machine_subscription),
        ] {
            let code = self.inner.rpc.code(a).await.map_err(|f| read_err("eth_getCode", f))?;
            if code.is_empty() {
                return Err(act(ErrorCode::ContractNotDeployed, name, format!("no bytecode at {name} {a:#x}")));
            }
        }
        Ok(())
    }

    /// Every peer matches `InfoDesk.peer(keccak256(ROLE))` (SDK preflight; `PEER_UNSET`,
    /// `PEER_MISMATCH`).
    async fn check_peers(&self) -> Result<()> {
        let g2 = &self.inner.cfg.gen2;
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
                .map_err(|e| as_activation(e, ErrorCode::ReadFailed))?;
            if actual == Address::ZERO {
                return Err(act(
                    ErrorCode::PeerUnset,
                    role,
                    format!("InfoDesk registers no address for {role}: the peer was cleared or never set"),
                ));
            }
            if actual != expected {
                return Err(act(
                    ErrorCode::PeerMismatch,
                    role,
                    format!("InfoDesk registers {actual:#x} for {role}, but the configuration uses {expected:#x}"),
                ));
            }
        }
        Ok(())
    }

    /// The MachineSubscription is the economic authority of this chain (`NOT_ECONOMIC_AUTHORITY`).
    async fn check_economic_authority(&self) -> Result<()> {
        let subscription = self.inner.cfg.gen2.machine_subscription;
        let authority = self
            .view_call(subscription, IMachineSubscription::isEconomicAuthorityCall {}, RevertScope::Activation)
            .await
            .map_err(|e| as_activation(e, ErrorCode::ReadFailed))?;
        if !authority {
            return Err(act(
                ErrorCode::NotEconomicAuthority,
                "machine_subscription",
                format!(
                    "MachineSubscription at {subscription:#x} is not the economic authority, so onboarding is not offered on this chain"
                ),
            ));
        }
        Ok(())
    }

    /// Step 3: the machine id the registry computes for these inputs, refused when technically
    /// paused or already active (before any approval is spent; the simulation would revert
    /// `AlreadyActivated` anyway).
    async fn machine_to_activate(&self, p: &ActivateParams) -> Result<U256> {
        let g2 = &self.inner.cfg.gen2;
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
            return Err(act(
                ErrorCode::TechnicallyPaused,
                "machine_id",
                format!("machine {machine_id} is technically paused"),
            ));
        }
        let status = self.subscription_status(machine_id).await?;
        if status != 0 {
            return Err(act(
                ErrorCode::AlreadyActivated,
                "machine_id",
                format!("machine {machine_id} is already activated (subscription status {status})"),
            ));
        }
        Ok(machine_id)
    }

    /// `MachineSubscription.subscriptionStatus(machineId)` (0 = none, 1 = active).
    async fn subscription_status(&self, machine_id: U256) -> Result<u8> {
        self.view_call(
            self.inner.cfg.gen2.machine_subscription,
            IMachineSubscription::subscriptionStatusCall { machineId: machine_id },
            RevertScope::Activation,
        )
        .await
    }

    /// Steps 4 and 8: the bond of `tier`, the signer's voucher credit (capped at the bond) and the
    /// net amount to pay.
    async fn quote(&self, tier: u8, signer: Address) -> Result<Quote> {
        let subscription = self.inner.cfg.gen2.machine_subscription;
        let bond = self
            .view_call(subscription, IMachineSubscription::requiredPeaqAmountCall { tier }, RevertScope::Activation)
            .await?;
        let credit = self
            .view_call(
                subscription,
                IMachineSubscription::pendingVoucherCreditCall { operator: signer },
                RevertScope::Activation,
            )
            .await?;
        let credit = credit.min(bond);
        Ok(Quote { bond, credit, net: bond - credit })
    }

    /// Step 6: the PEAQ token, a balance covering `net` (`INSUFFICIENT_BALANCE`), and the current
    /// allowance of the MachineSubscription; returns (token, allowance).
    async fn check_funds(&self, signer: Address, net: U256) -> Result<(Address, U256)> {
        let info_desk = self.inner.cfg.gen2.info_desk;
        let token = self.view_call(info_desk, IInfoDesk::peaqTokenCall {}, RevertScope::Activation).await?;
        let balance =
            self.view_call(token, IPeaqToken::balanceOfCall { account: signer }, RevertScope::Activation).await?;
        if balance < net {
            return Err(act(
                ErrorCode::InsufficientBalance,
                "signer",
                format!("PEAQ balance {balance} of {signer:#x} is below the net amount {net}"),
            ));
        }
        Ok((token, self.allowance(token, signer).await?))
    }

    /// The MachineSubscription's PEAQ allowance from `signer`.
    async fn allowance(&self, token: Address, signer: Address) -> Result<U256> {
        let spender = self.inner.cfg.gen2.machine_subscription;
        self.view_call(token, IPeaqToken::allowanceCall { owner: signer, spender }, RevertScope::Activation).await
    }

    /// Step 7: approve exactly `net` to the MachineSubscription; returns the approval's hash
    /// (`PENDING_TRANSACTION` on timeout, `APPROVAL_FAILED` otherwise).
    async fn approve_bond(&self, token: Address, net: U256, j: &Map<String, Value>) -> Result<B256> {
        let signer = self.inner.default_signer;
        let mut ja = j.clone();
        ja.insert("phase".into(), json!("approval"));
        ja.insert("method".into(), json!("approve"));
        let input = encoding::approve(self.inner.cfg.gen2.machine_subscription, net);
        let id = self.enqueue("approve", signer, token, U256::ZERO, input, RevertScope::Activation, ja)?;
        match self.wait(&id).await {
            Ok(o) => Ok(o.tx_hash),
            Err(e) if e.error_code() == ErrorCode::ReceiptAwaitFailed => {
                Err(act(ErrorCode::PendingTransaction, "approval", e.to_string()))
            }
            Err(e) => Err(act(ErrorCode::ApprovalFailed, "approval", e.to_string())),
        }
    }

    /// Step 8: re-quote and re-read the allowance (never a second approval:
    /// `ALLOWANCE_INSUFFICIENT`); returns the quote the activation pays.
    async fn requote_after_approval(&self, tier: u8, signer: Address, token: Address) -> Result<Quote> {
        let quote = self.quote(tier, signer).await.map_err(|e| as_activation(e, ErrorCode::PriceNotAvailable))?;
        let allowance = self.allowance(token, signer).await?;
        if allowance < quote.net {
            return Err(act(
                ErrorCode::AllowanceInsufficient,
                "allowance",
                format!("allowance {allowance} is below the re-quoted net amount {}", quote.net),
            ));
        }
        Ok(quote)
    }

    /// Step 9: `activateMachine` calldata, simulated with `eth_call` (a revert keeps its decoded
    /// code, else `CONTRACT_REVERTED`); returns the calldata.
    async fn simulate_activation(&self, p: &ActivateParams) -> Result<Bytes> {
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
        self.view(self.inner.cfg.gen2.machine_state_and_sync, input.clone(), RevertScope::Activation)
            .await
            .map_err(|e| as_activation(e, ErrorCode::ContractReverted))?;
        Ok(input)
    }

    /// Step 10: send `activateMachine` and wait for it; returns (intent id, outcome).
    async fn activate_machine(&self, input: Bytes, j: &Map<String, Value>) -> Result<(String, Outcome)> {
        let mut jb = j.clone();
        jb.insert("phase".into(), json!("activation"));
        jb.insert("method".into(), json!("activateMachine"));
        let to = self.inner.cfg.gen2.machine_state_and_sync;
        let signer = self.inner.default_signer;
        let id = self.enqueue("activate_machine", signer, to, U256::ZERO, input, RevertScope::Activation, jb)?;
        match self.wait(&id).await {
            Ok(o) => Ok((id, o)),
            Err(e) if e.error_code() == ErrorCode::ReceiptAwaitFailed => {
                Err(act(ErrorCode::PendingTransaction, "activation", e.to_string()))
            }
            Err(e) => Err(as_activation(e, ErrorCode::ContractReverted)),
        }
    }

    /// Step 11, receipt correlation: only logs of the expected emitters, exactly one each of
    /// `MachineOnboarded`, `MachineMinted`, `Activated`, matching this activation
    /// (`EVENT_MISMATCH`).
    fn check_activation_receipt(
        &self,
        o: &Outcome,
        p: &ActivateParams,
        machine_id: U256,
        signer: Address,
        bond: U256,
    ) -> Result<()> {
        let g2 = &self.inner.cfg.gen2;
        let logs = &o.receipt.logs;
        let mismatch = |what: &str| {
            act(ErrorCode::EventMismatch, "receipt", format!("activation receipt {:#x}: {what}", o.tx_hash))
        };
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
        if act_ev.machineId != machine_id || act_ev.bondedAmount != bond {
            return Err(mismatch("Activated does not match the machine id / bond"));
        }
        Ok(())
    }

    /// Step 12, post-state: the subscription is active (`STATE_MISMATCH`); returns its status.
    async fn check_active(&self, machine_id: U256) -> Result<u8> {
        let status = self.subscription_status(machine_id).await?;
        if status != 1 {
            return Err(act(
                ErrorCode::StateMismatch,
                "subscription",
                format!("subscription status of {machine_id} is {status}, expected 1 (active)"),
            ));
        }
        Ok(status)
    }
}

/// What the MachineSubscription asks of a signer for a tier.
#[derive(Debug, Clone, Copy)]
struct Quote {
    bond: U256,
    /// Voucher credit applied (at most the bond).
    credit: U256,
    /// What the signer pays: bond − credit.
    net: U256,
}

/// An activation step's refusal.
fn act(code: ErrorCode, field: &str, message: String) -> ChainError {
    ChainError::activation(code, field, message)
}

/// Step 1, local validation of the inputs (nothing read from the chain).
fn validate_activation(p: &ActivateParams) -> Result<()> {
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
        return Err(act(ErrorCode::InvalidTier, "tier", format!("tier must be 0, 1 or 2, got {}", p.tier)));
    }
    if p.controller == Address::ZERO {
        return Err(ChainError::validation("controller", "non-zero address", "controller must be a non-zero address"));
    }
    let n_vm = U256::from(p.verification_methods.len());
    if let Some(bad) = p.authentication.iter().find(|a| **a >= n_vm) {
        return Err(ChainError::validation(
            "authentication",
            "index < len(verification_methods)",
            format!("authentication index {bad} is out of range"),
        ));
    }
    Ok(())
}

/// Step 5, the caller's assertions: the expected machine id (`MACHINE_ID_MISMATCH`) and the most
/// it pays (`MAX_NET_PEAQ_EXCEEDED`).
fn check_caller_limits(p: &ActivateParams, machine_id: U256, quote: &Quote) -> Result<()> {
    if let Some(exp) = p.expected_machine_id {
        if exp != machine_id {
            return Err(act(
                ErrorCode::MachineIdMismatch,
                "expected_machine_id",
                format!("computed machine id {machine_id} differs from expected {exp}"),
            ));
        }
    }
    if let Some(max) = p.max_net_peaq_amount {
        if quote.net > max {
            return Err(act(
                ErrorCode::MaxNetPeaqExceeded,
                "max_net_peaq_amount",
                format!("net PEAQ amount {} exceeds the maximum {max}", quote.net),
            ));
        }
    }
    Ok(())
}

/// Journal fields shared by the approval and activation transactions.
fn activation_journal(p: &ActivateParams, machine_id: U256, signer: Address) -> Map<String, Value> {
    let mut j = Map::new();
    j.insert("step".into(), json!("activate_machine"));
    j.insert("machine_id".into(), json!(machine_id.to_string()));
    j.insert("owner".into(), json!(signer.to_checksum(None)));
    j.insert("controller".into(), json!(p.controller.to_checksum(None)));
    j.insert("tier".into(), json!(p.tier));
    j
}

/// Reverts during activation keep their decoded code; others get `fallback`.
fn as_activation(e: ChainError, fallback: ErrorCode) -> ChainError {
    match e {
        ChainError::Revert { code, message, .. } => {
            let code = if code == ErrorCode::TxReverted { fallback } else { code };
            ChainError::Activation { code, field: String::new(), message }
        }
        ChainError::Tx { code, message, .. } if code != ErrorCode::ReceiptAwaitFailed => {
            ChainError::Activation { code, field: String::new(), message }
        }
        other => other,
    }
}
