//! Gas: what the machine's native balance must cover ([`ChainClient::gas_report`]) and a Gas
//! Station funding relayed for an operator ([`ChainClient::fund_from_gas_station`]).

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};

use super::{read_err, ChainClient};
use crate::error::{ChainError, ErrorCode, Result};
use crate::gas_station::{self, FundOutcome, FundRequest, FundingLedger, GasStation, TwoFactorCode};
use crate::outbox::IntentState;

/// What the balance must cover besides the queued work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GasPolicy {
    /// Wei kept in reserve above the queued work's need.
    pub reserve_wei: U256,
    /// Gas one queued intent is assumed to use (its own measured limit when it has one).
    pub intent_gas: u64,
}

/// The balance against the need: `required = reserve + Σ value of queued intents + Σ gas ×
/// fee per gas` (each intent's gas limit once measured, else [`GasPolicy::intent_gas`]; the fee
/// per gas the outbox would offer now: twice the base fee plus the priority fee).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GasReport {
    pub address: Address,
    pub balance: U256,
    /// Intents not yet final that will cost gas (merged members ride on their carrier).
    pub pending_intents: usize,
    /// Native value they send (a legacy registration's bond, a bridge fee).
    pub pending_value: U256,
    pub pending_gas: u64,
    pub fee_per_gas: u128,
    pub reserve: U256,
    pub required: U256,
}

impl GasReport {
    /// The balance does not cover the queued work and the reserve.
    pub fn low(&self) -> bool {
        self.balance < self.required
    }
}

/// Where and for whom a Gas Station funding goes (the node's `gas_station.*` parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GasStationSettings {
    /// Base URL of the Gas Station (`https://depinstation.peaq.xyz` in the SDK's docstrings).
    pub url: String,
    /// The 2FA-enrolled owner (an EVM or SS58 address, as the station knows it).
    pub owner_address: String,
    /// The station's chain identifier (`"peaq"` in the SDK reference).
    pub chain_id: String,
    pub timeout: Duration,
}

/// A funding request's final answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Funding {
    pub request_id: String,
    /// The request id was kept from an earlier call whose answer was lost.
    pub repeated: bool,
    pub outcome: FundOutcome,
    /// Block of the station's transfer on this client's chain, when found within the receipt
    /// timeout.
    pub included_block: Option<u64>,
    /// The machine's balance after it.
    pub balance: Option<U256>,
}

impl ChainClient {
    /// The machine's native balance against what its queued intents and `policy` need.
    pub async fn gas_report(&self, policy: &GasPolicy) -> Result<GasReport> {
        let address = self.inner.default_signer;
        let balance = self.inner.rpc.balance(address).await.map_err(|f| read_err("eth_getBalance", f))?;
        let (base, _) = self.inner.rpc.latest_block_limits().await.map_err(|f| read_err("eth_getBlockByNumber", f))?;
        let prio = self.inner.rpc.max_priority_fee().await.unwrap_or(0);
        let fee_per_gas = match base {
            Some(base) => base.saturating_mul(2).saturating_add(prio),
            None => self.inner.rpc.gas_price().await.map_err(|f| read_err("eth_gasPrice", f))?.saturating_mul(2),
        };
        let mut pending_intents = 0usize;
        let mut pending_value = U256::ZERO;
        let mut pending_gas = 0u64;
        for i in self.inner.outbox.pending() {
            if i.state == IntentState::Merged || i.signer != address {
                continue;
            }
            pending_intents += 1;
            pending_value = pending_value.saturating_add(i.value);
            pending_gas = pending_gas.saturating_add(i.gas_limit.unwrap_or(policy.intent_gas));
        }
        let required = policy
            .reserve_wei
            .saturating_add(pending_value)
            .saturating_add(U256::from(pending_gas).saturating_mul(U256::from(fee_per_gas)));
        Ok(GasReport {
            address,
            balance,
            pending_intents,
            pending_value,
            pending_gas,
            fee_per_gas,
            reserve: policy.reserve_wei,
            required,
        })
    }

    /// One Gas Station funding of the machine's own address with an operator's one-time 2FA code
    /// (SDK 0.12.1 `fund_from_gas_station`). Calls are serialized; the request id is durable
    /// before the request is sent and repeated by the next call while the outcome is unknown
    /// (see [`crate::gas_station`]), so a retried call never funds twice. After a funding the
    /// station's transaction is awaited on this client's chain (up to the receipt timeout) and
    /// the balance read again.
    pub async fn fund_from_gas_station(&self, s: &GasStationSettings, code: TwoFactorCode) -> Result<Funding> {
        if s.url.is_empty() {
            return Err(ChainError::validation(
                "faucet_base_url",
                "non-empty string",
                "faucet_base_url must be a non-empty string (the Gas Station URL)",
            ));
        }
        gas_station::check_text("owner_address", &s.owner_address)?;
        gas_station::check_text("chain_id", &s.chain_id)?;
        let station = GasStation::new(&s.url, s.timeout)?;
        let target = self.inner.default_signer;
        let _one_at_a_time = self.inner.funding.lock().await;
        let ledger = FundingLedger::open(&self.inner.cfg.data_dir)?;
        let (pending, repeated) = ledger.begin(&s.owner_address, target, &s.chain_id)?;
        let id = pending.request_id.clone();
        tracing::info!(
            request_id = %id,
            repeated,
            attempt = pending.attempts,
            "gas station: funding request for {target:#x} (owner {})",
            s.owner_address
        );
        let answer = station
            .fund(&FundRequest {
                owner_address: &s.owner_address,
                target_wallet_address: target,
                chain_id: &s.chain_id,
                two_factor_code: &code,
                request_id: &id,
            })
            .await;
        drop(code);
        let outcome = match answer {
            Ok(o) => o,
            Err(e) => return Err(self.funding_failed(&ledger, &pending, repeated, e)),
        };
        let result = if matches!(outcome, FundOutcome::Funded { .. }) { "funded" } else { "skipped" };
        ledger.finish(&pending, result, Some(outcome.clone()), "", "")?;
        tracing::info!(request_id = %id, "gas station: {result} ({outcome:?})");
        let included_block = match &outcome {
            FundOutcome::Funded { tx_hash, .. } => match tx_hash.parse::<B256>() {
                Ok(h) => self.await_inclusion(h).await,
                Err(_) => None,
            },
            FundOutcome::Skipped { .. } => None,
        };
        let balance = self.inner.rpc.balance(target).await.ok();
        Ok(Funding { request_id: id, repeated, outcome, included_block, balance })
    }

    /// A failed funding call: a final refusal is recorded and frees the request id; an unknown
    /// outcome keeps it for the next call. The error names the request id either way.
    fn funding_failed(
        &self,
        ledger: &FundingLedger,
        pending: &gas_station::PendingFunding,
        repeated: bool,
        e: ChainError,
    ) -> ChainError {
        let id = pending.request_id.clone();
        let ChainError::Faucet { code, field, status, message, .. } = e else { return e };
        let message = if gas_station::outcome_unknown(code) {
            tracing::warn!(request_id = %id, code = %code, "gas station: outcome unknown; the request id is kept");
            format!(
                "{message}; the station may have handled request {id}: it is kept, and the next call repeats it (never a second funding)"
            )
        } else {
            tracing::warn!(request_id = %id, code = %code, "gas station: refused");
            let message = if code == ErrorCode::RequestAlreadyProcessed && repeated {
                format!(
                    "{message}: request {id} was completed by the station after an earlier call lost its answer; nothing was funded again"
                )
            } else {
                message
            };
            if let Err(store) = ledger.finish(pending, "refused", None, code.as_str(), &message) {
                return store;
            }
            message
        };
        ChainError::Faucet { code, field, status, message, request_id: id }
    }

    /// The block of `h` on this client's chain, polled until the receipt timeout.
    async fn await_inclusion(&self, h: B256) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + self.inner.cfg.receipt_timeout;
        loop {
            if let Ok(Some(r)) = self.inner.rpc.receipt(h).await {
                if let Some(b) = r.block_number {
                    return Some(b.to::<u64>());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("gas station: transfer {h:#x} not seen on this chain within the receipt timeout");
                return None;
            }
            tokio::time::sleep(self.inner.cfg.poll_interval).await;
        }
    }
}
