//! The worker: one tokio task that ticks over the live intents of each signer in order and
//! measures gas, signs, broadcasts, polls receipts, replaces underpriced transactions and
//! reconciles after a restart (the "Life of an intent" and "Reconciliation" in the
//! [module docs](super)).

use std::collections::HashMap;
use std::time::Duration;

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::primitives::{Address, Bytes, TxKind, B256};
use alloy::signers::SignerSync;
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use super::fault::{fault_point, AbortAfter};
use super::intent::{Attempt, ErrorInfo, Intent, IntentState, ReceiptInfo};
use super::rpc_errors::{already_known, broadcast_refusal, fee_refusal, nonce_too_low, simulation_revert};
use super::{now_str, Inner};
use crate::error::{ChainError, ErrorCode, Result};
use crate::revert;
use crate::rpc::{CallRequest, RpcFailure, RpcReceipt};

/// Values read once per tick (fees, next nonce per signer).
#[derive(Default)]
pub(super) struct TickCache {
    /// (max fee, priority fee, latest block gas limit)
    fees: Option<(u128, u128, Option<u64>)>,
    next_nonce: HashMap<Address, u64>,
}

pub(super) enum Step {
    /// Keep going with this signer.
    Continue,
    /// Stop processing this signer for now (waiting on the chain, or order must be kept).
    Blocked,
}

impl Inner {
    /// Fail an intent that needs more gas than a block holds (`GAS_LIMIT_EXCEEDS_BLOCK`). Nothing
    /// was signed; a merged carrier is then split and its batches go out one by one.
    pub(super) fn fail_above_block(&self, i: Intent, need: Option<u64>, block: Option<u64>, node: &str) {
        let what = if i.members.is_empty() { "transaction" } else { "merged transaction" };
        let need = need.map(|g| format!("{g} gas, more")).unwrap_or_else(|| "more gas".into());
        let block = block.map(|b| format!(" ({b})")).unwrap_or_default();
        let node = if node.is_empty() { String::new() } else { format!("; node: {node}") };
        let message = format!("the {what} needs {need} than a block holds{block}; send fewer events per batch{node}");
        let _ = self.fail(i, IntentState::Failed, ErrorCode::GasLimitExceedsBlock, message);
    }

    /// Hash of the chain's genesis block (read once; `None` when the node has no block 0).
    pub(super) async fn genesis(&self) -> std::result::Result<Option<B256>, RpcFailure> {
        if let Some(g) = self.genesis_cached() {
            return Ok(Some(g));
        }
        let v = self.rpc.request_value("eth_getBlockByNumber", json!(["0x0", false])).await?;
        let g = v.get("hash").and_then(Value::as_str).and_then(|h| h.parse::<B256>().ok());
        *self.genesis.lock().unwrap_or_else(|p| p.into_inner()) = g;
        Ok(g)
    }

    pub(super) fn genesis_cached(&self) -> Option<B256> {
        *self.genesis.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) async fn next_nonce(&self, signer: Address) -> std::result::Result<u64, RpcFailure> {
        let chain = self.rpc.transaction_count(signer, "pending").await?;
        let genesis = self.genesis().await?;
        let file = match self.store.read_nonce(signer).ok().flatten() {
            // The file guards nonces this data dir used on this chain; a chain with another
            // genesis block (a dev chain started afresh) never saw them.
            Some((n, Some(g))) if genesis.is_some_and(|now| now != g) => {
                warn!(signer = %signer, stored_next_nonce = n, "outbox: the chain's genesis block differs from the one this data dir sent to (a reset dev chain?); nonces continue from the chain's count");
                0
            }
            Some((n, _)) => n,
            None => 0,
        };
        let inflight = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.live.values().filter(|i| i.signer == signer).filter_map(|i| i.nonce).map(|n| n + 1).max().unwrap_or(0)
        };
        Ok(chain.max(file).max(inflight))
    }

    pub(super) fn sign(&self, i: &Intent, nonce: u64, gas_limit: u64, max_fee: u128, prio: u128) -> Result<Attempt> {
        let signer = self.signers.get(&i.signer).ok_or_else(|| {
            ChainError::config(
                ErrorCode::SignerUnavailable,
                "signer",
                format!("no key configured for signer {:#x}", i.signer),
            )
        })?;
        let tx = TxEip1559 {
            chain_id: i.chain_id,
            nonce,
            gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: prio,
            to: TxKind::Call(i.to),
            value: i.value,
            access_list: Default::default(),
            input: i.input.clone(),
        };
        let sig = signer
            .sign_hash_sync(&tx.signature_hash())
            .map_err(|_| ChainError::config(ErrorCode::SignerUnavailable, "signer", "signing failed"))?;
        let signed = tx.into_signed(sig);
        let hash = *signed.hash();
        let env = TxEnvelope::Eip1559(signed);
        Ok(Attempt {
            tx_hash: hash,
            raw: env.encoded_2718().into(),
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: prio,
            signed_at: now_str(),
        })
    }

    /// (max fee, priority fee, block gas limit) from the latest block.
    pub(super) async fn fees(&self) -> std::result::Result<(u128, u128, Option<u64>), RpcFailure> {
        let prio = match self.rpc.max_priority_fee().await {
            Ok(p) => p,
            Err(RpcFailure::Transport(m)) => return Err(RpcFailure::Transport(m)),
            Err(_) => 0,
        };
        let (base, block_gas) = self.rpc.latest_block_limits().await?;
        let max_fee = match base {
            Some(base) => base.saturating_mul(2).saturating_add(prio),
            None => self.rpc.gas_price().await?.saturating_mul(2).max(prio),
        };
        Ok((max_fee.max(prio), prio, block_gas))
    }

    pub(super) async fn revert_reason(&self, i: &Intent, block: u64) -> (ErrorCode, String) {
        let req = CallRequest { from: Some(i.signer), to: i.to, value: i.value, data: i.input.clone() };
        let at = block.saturating_sub(1);
        match self.rpc.call_at(&req, at).await {
            Err(RpcFailure::Node { data: Some(d), .. }) if !d.is_empty() => {
                let r = revert::decode(i.scope(), &d);
                (r.code, r.message)
            }
            Err(RpcFailure::Node { message, .. })
                if message.contains("revert") && message.len() > "execution reverted".len() =>
            {
                let r = revert::decode_reason(i.scope(), &message);
                (r.code, r.message)
            }
            _ => (ErrorCode::TxReverted, "Transaction reverted on-chain after submission".into()),
        }
    }

    pub(super) async fn finish_with_receipt(&self, mut i: Intent, r: RpcReceipt) -> Result<()> {
        let info = ReceiptInfo {
            tx_hash: r.transaction_hash,
            block_number: r.block_number.map(|b| b.to::<u64>()).unwrap_or(0),
            gas_used: r.gas_used.to::<u64>(),
            success: r.status.map(|s| s.to::<u64>() == 1).unwrap_or(false),
            logs: r.logs,
        };
        let ok = info.success;
        let block = info.block_number;
        i.receipt = Some(info);
        if ok {
            info!(intent = %i.id, block, "outbox: included");
            i.state = IntentState::Included;
            i.error = None;
            self.journal(&i, "confirmed");
            self.commit(i)
        } else {
            let (code, message) = self.revert_reason(&i, block).await;
            self.fail(i, IntentState::Failed, code, message)
        }
    }

    /// Look for a receipt of any attempt.
    pub(super) async fn find_receipt(&self, i: &Intent) -> std::result::Result<Option<RpcReceipt>, RpcFailure> {
        for a in i.attempts.iter().rev() {
            if let Some(r) = self.rpc.receipt(a.tx_hash).await? {
                if r.block_number.is_some() {
                    return Ok(Some(r));
                }
            }
        }
        Ok(None)
    }

    pub(super) async fn replace_with_bumped_fees(&self, mut i: Intent) -> std::result::Result<Step, RpcFailure> {
        let (Some(nonce), Some(gas), Some(last)) = (i.nonce, i.gas_limit, i.attempts.last().cloned()) else {
            return Ok(Step::Blocked);
        };
        let (cur_max, cur_prio, _) = self.fees().await?;
        let max_fee = (last.max_fee_per_gas.saturating_mul(5) / 4 + 1).max(cur_max);
        let prio = (last.max_priority_fee_per_gas.saturating_mul(5) / 4 + 1).max(cur_prio).min(max_fee);
        let a = match self.sign(&i, nonce, gas, max_fee, prio) {
            Ok(a) => a,
            Err(e) => {
                warn!(intent = %i.id, error = %e, "cannot sign replacement");
                return Ok(Step::Blocked);
            }
        };
        info!(intent = %i.id, nonce, max_fee, "outbox: replacing with bumped fees");
        let raw = a.raw.clone();
        i.attempts.push(a);
        i.state = IntentState::Signed;
        self.journal(&i, "pending");
        if let Err(e) = self.commit(i.clone()) {
            warn!(error = %e, "store failed");
            return Ok(Step::Blocked);
        }
        match self.rpc.send_raw(&raw).await {
            Ok(_) => {
                i.state = IntentState::Broadcast;
                let _ = self.commit(i);
            }
            Err(RpcFailure::Node { message, .. }) if already_known(&message) => {
                i.state = IntentState::Broadcast;
                let _ = self.commit(i);
            }
            Err(RpcFailure::Transport(m)) => return Err(RpcFailure::Transport(m)),
            Err(f) => {
                warn!(intent = %i.id, error = %f.message(), "replacement refused; will reconcile")
            }
        }
        Ok(Step::Blocked)
    }

    /// Reconcile a signed/broadcast intent (also the restart path).
    pub(super) async fn reconcile(&self, mut i: Intent) -> std::result::Result<Step, RpcFailure> {
        if let Some(r) = self.find_receipt(&i).await? {
            if let Err(e) = self.finish_with_receipt(i, r).await {
                warn!(error = %e, "store failed");
            }
            return Ok(Step::Continue);
        }
        let (Some(nonce), Some(hash)) = (i.nonce, i.latest_hash()) else {
            return Ok(Step::Blocked);
        };
        let mut known = false;
        for a in i.attempts.iter().rev() {
            if self.rpc.transaction_known(a.tx_hash).await? {
                known = true;
                break;
            }
        }
        if known {
            if i.state == IntentState::Signed {
                i.state = IntentState::Broadcast;
                if let Err(e) = self.commit(i.clone()) {
                    warn!(error = %e, "store failed");
                }
            }
            // Dropped-for-fees risk: max fee below the current base fee ⇒ replace.
            if let (Some(last), Ok(Some(base))) = (i.attempts.last(), self.rpc.base_fee().await) {
                if last.max_fee_per_gas < base {
                    return self.replace_with_bumped_fees(i).await;
                }
            }
            // In the pool: later nonces may proceed (the pool orders them).
            return Ok(Step::Continue);
        }
        let latest = self.rpc.transaction_count(i.signer, "latest").await?;
        if latest > nonce {
            // Nonce consumed. Re-check receipts once (the tx may have been mined just now).
            if let Some(r) = self.find_receipt(&i).await? {
                let _ = self.finish_with_receipt(i, r).await;
                return Ok(Step::Continue);
            }
            if i.members.is_empty() {
                // None of our transactions was included, and with their nonce used by another none
                // ever can be: sign the same call again at a fresh nonce (nothing is sent twice).
                self.resign_after_conflict(i, nonce);
                return Ok(Step::Continue);
            }
            // A merged carrier: its members go out again on their own (settle_member).
            let msg = format!("nonce {nonce} of {:#x} was consumed by another transaction; {hash:#x} was not included and is not re-sent", i.signer);
            let _ = self.fail(i, IntentState::Conflicting, ErrorCode::NonceConflict, msg);
            return Ok(Step::Continue);
        }
        // Unknown and nonce free: re-broadcast the same stored raw transaction.
        let raw = i.attempts.last().map(|a| a.raw.clone()).unwrap_or_default();
        info!(intent = %i.id, tx = %hash, nonce, "outbox: re-broadcasting stored transaction");
        match self.rpc.send_raw(&raw).await {
            Ok(_) => {
                i.state = IntentState::Broadcast;
                i.error = None;
                let _ = self.commit(i.clone());
                fault_point(AbortAfter::Broadcast);
                if let Some(r) = self.find_receipt(&i).await? {
                    let _ = self.finish_with_receipt(i, r).await;
                }
                Ok(Step::Continue)
            }
            Err(RpcFailure::Node { message, .. }) if already_known(&message) => Ok(Step::Continue),
            Err(RpcFailure::Node { message, .. }) if fee_refusal(&message) => self.replace_with_bumped_fees(i).await,
            Err(RpcFailure::Node { message, .. }) if nonce_too_low(&message) => Ok(Step::Blocked),
            Err(RpcFailure::Transport(m)) => Err(RpcFailure::Transport(m)),
            Err(f) => {
                // E.g. insufficient funds: the stored transaction is neither re-signed nor given
                // up (its nonce would leave a gap behind later intents); it waits, and the
                // reason is on the record and the status stream until it goes through.
                let message = f.message();
                warn!(intent = %i.id, error = %message, "re-broadcast refused; retrying later");
                if i.error.as_ref().map(|e| e.message.as_str()) != Some(message.as_str()) {
                    i.error = Some(ErrorInfo { code: ErrorCode::RebroadcastRefused.to_string(), message });
                    let _ = self.commit(i);
                }
                Ok(Step::Blocked)
            }
        }
    }

    /// An intent whose nonce another transaction consumed while none of its own attempts was
    /// included: back to `queued` without a nonce, its superseded hashes kept in the journal
    /// fields, so the next tick signs it again at a fresh nonce.
    fn resign_after_conflict(&self, mut i: Intent, nonce: u64) {
        let hashes: Vec<String> = i.attempts.iter().map(|a| format!("{:#x}", a.tx_hash)).collect();
        warn!(intent = %i.id, nonce, superseded = ?hashes, "outbox: nonce consumed by another transaction and ours was never included; signing again at a new nonce");
        i.journal.insert("superseded".into(), serde_json::json!({ "nonce": nonce, "tx_hashes": hashes }));
        i.attempts.clear();
        i.nonce = None;
        i.gas_limit = None;
        i.error = None;
        i.state = IntentState::Queued;
        if let Err(e) = self.commit(i) {
            warn!(error = %e, "outbox: cannot persist a re-queued intent; retried at start");
        }
        self.notify.notify_one();
    }

    /// First signing + broadcast of a queued intent: fees, merge, gas, nonce, sign + store, send.
    pub(super) async fn send_new(&self, mut i: Intent, cache: &mut TickCache) -> std::result::Result<Step, RpcFailure> {
        // Fees first: they are read once per tick anyway, and this way batches are only merged
        // when an RPC answers, so that everything queued during an outage goes out together.
        let (max_fee, prio, block_gas) = match cache.fees {
            Some(f) => f,
            None => {
                let f = self.fees().await?;
                cache.fees = Some(f);
                f
            }
        };
        if i.mergeable && self.settings.merge_max_subcalls > 1 {
            match self.merge_from(&i) {
                Ok(Some(carrier)) => i = carrier,
                Ok(None) => {}
                Err(e) => {
                    warn!(error = %e, "outbox: cannot persist a merge; sending unmerged");
                }
            }
        }
        let Some(gas_limit) = self.gas_limit(&i, block_gas).await? else {
            return Ok(Step::Continue);
        };
        // One pending-count read per signer and tick; later intents of the same tick continue
        // from it (the in-flight term of next_nonce covers them after this one is stored).
        let nonce = match cache.next_nonce.get(&i.signer) {
            Some(n) => *n,
            None => self.next_nonce(i.signer).await?,
        };
        cache.next_nonce.insert(i.signer, nonce + 1);
        let a = match self.sign(&i, nonce, gas_limit, max_fee, prio) {
            Ok(a) => a,
            Err(e) => {
                let _ = self.fail(i, IntentState::Failed, e.error_code(), e.to_string());
                return Ok(Step::Continue);
            }
        };
        let raw = a.raw.clone();
        i.nonce = Some(nonce);
        i.gas_limit = Some(gas_limit);
        i.attempts.push(a);
        i.state = IntentState::Signed;
        if let Err(e) = self.commit(i.clone()) {
            warn!(error = %e, "outbox: cannot persist signed intent; not broadcasting");
            return Ok(Step::Blocked);
        }
        if let Err(e) = self.store.write_nonce(i.signer, nonce + 1, self.genesis_cached()) {
            warn!(error = %e, "outbox: cannot persist nonce file");
        }
        self.journal(&i, "pending");
        fault_point(AbortAfter::Sign);
        self.broadcast_first(i, &raw, nonce, cache).await
    }

    /// Gas limit of a queued intent, or `None` when it failed instead (the simulation reverted,
    /// or it needs more gas than a block holds).
    ///
    /// Headroom over the need, but never above what a block can hold (a transaction asking
    /// for more is refused by every node). When the headroom does not fit, the block's limit
    /// is enough: the call was measured running with at most a block's gas (see
    /// `GasNeed::measured`), so no second search is needed (an `eth_estimateGas` here cost
    /// about ten more executions of a near-full block for every large merged batch). A call
    /// that needs more than a block holds fails by name; a merged carrier is then split.
    async fn gas_limit(&self, i: &Intent, block_gas: Option<u64>) -> std::result::Result<Option<u64>, RpcFailure> {
        let req = CallRequest { from: Some(i.signer), to: i.to, value: i.value, data: i.input.clone() };
        let need = match self.rpc.gas_needed(&req).await {
            Ok(g) => g,
            Err(RpcFailure::Transport(m)) => return Err(RpcFailure::Transport(m)),
            Err(f) if f.is_gas_above_block() => {
                self.fail_above_block(i.clone(), None, block_gas, &f.message());
                return Ok(None);
            }
            Err(f) if f.is_revert() => {
                let (code, message) = simulation_revert(i.scope(), &f);
                let _ = self.fail(i.clone(), IntentState::Failed, code, message);
                return Ok(None);
            }
            Err(f) => {
                let e = f.into_error();
                let _ = self.fail(i.clone(), IntentState::Failed, e.error_code(), e.to_string());
                return Ok(None);
            }
        };
        let mut gas_limit = need.limit.saturating_mul(6) / 5 + 10_000;
        if let Some(block) = block_gas {
            if need.measured > block {
                self.fail_above_block(i.clone(), Some(need.measured), Some(block), "");
                return Ok(None);
            }
            gas_limit = gas_limit.min(block);
        }
        Ok(Some(gas_limit))
    }

    /// First `eth_sendRawTransaction` of a just-signed (and stored) intent.
    async fn broadcast_first(
        &self,
        mut i: Intent,
        raw: &Bytes,
        nonce: u64,
        cache: &mut TickCache,
    ) -> std::result::Result<Step, RpcFailure> {
        match self.rpc.send_raw(raw).await {
            Ok(_) => {}
            Err(RpcFailure::Node { message, .. }) if already_known(&message) => {}
            Err(RpcFailure::Transport(m)) => return Err(RpcFailure::Transport(m)),
            Err(RpcFailure::Node { message, .. }) if nonce_too_low(&message) || fee_refusal(&message) => {
                // Reconcile decides (consumed nonce ⇒ conflicting; fees ⇒ replacement).
                return Ok(Step::Blocked);
            }
            Err(f) => {
                // Hard rejection of the first broadcast: nothing is in any pool under this nonce,
                // and no later intent of this signer has been signed yet ⇒ give the nonce back.
                let (code, message) = broadcast_refusal(i.scope(), &f);
                let signer = i.signer;
                let _ = self.fail(i, IntentState::Failed, code, message);
                let _ = self.store.write_nonce(signer, nonce, self.genesis_cached());
                cache.next_nonce.insert(signer, nonce);
                return Ok(Step::Continue);
            }
        }
        i.state = IntentState::Broadcast;
        if let Err(e) = self.commit(i.clone()) {
            warn!(error = %e, "store failed");
        }
        debug!(intent = %i.id, tx = %i.latest_hash().unwrap_or_default(), nonce, "outbox: broadcast");
        fault_point(AbortAfter::Broadcast);
        // Automine/instant-seal chains: the receipt may already exist.
        if let Some(r) = self.find_receipt(&i).await? {
            let _ = self.finish_with_receipt(i, r).await;
        }
        Ok(Step::Continue)
    }

    /// One pass over all live intents. `Err` = every RPC URL is down.
    pub(super) async fn tick(&self) -> std::result::Result<bool, RpcFailure> {
        // Only the keys: cloning every live intent on each pass made enqueueing O(n) while
        // thousands wait for an RPC; each intent is read when its turn comes.
        let seqs: Vec<u64> = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.live.keys().copied().collect()
        };
        let mut blocked: Vec<Address> = vec![];
        let mut cache = TickCache::default();
        for seq in seqs {
            // Read now: an earlier step may have changed it.
            let current = {
                let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.live.get(&seq).cloned()
            };
            let Some(i) = current else { continue };
            if blocked.contains(&i.signer) {
                continue;
            }
            if !self.signers.contains_key(&i.signer) {
                blocked.push(i.signer);
                continue;
            }
            let signer = i.signer;
            let step = match i.state {
                IntentState::Queued => self.send_new(i, &mut cache).await?,
                IntentState::Signed | IntentState::Broadcast => self.reconcile(i).await?,
                // Merged: its carrier is a live intent of its own; terminal: nothing to do.
                _ => Step::Continue,
            };
            if let Step::Blocked = step {
                blocked.push(signer);
            }
        }
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(!st.live.is_empty())
    }
}

/// The worker task: ticks until the last [`super::Outbox`] handle is gone.
pub(super) async fn run(weak: std::sync::Weak<Inner>) {
    let mut backoff: Option<Duration> = None;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let delay = match inner.tick().await {
            Ok(true) => {
                backoff = None;
                Some(inner.settings.poll_interval)
            }
            Ok(false) => {
                backoff = None;
                None
            }
            Err(f) => {
                let b =
                    backoff.map(|b| (b * 2).min(inner.settings.max_backoff)).unwrap_or(inner.settings.poll_interval);
                backoff = Some(b);
                warn!(error = %f.message(), retry_in_ms = b.as_millis() as u64, "outbox: RPC unavailable, intents stay queued");
                Some(b)
            }
        };
        // Wait for new work or the delay (≤ 1 s while idle, so the worker notices when the last
        // handle is dropped and exits, releasing the store lock).
        let idle = delay.unwrap_or(Duration::from_secs(1));
        tokio::select! {
            _ = inner.notify.notified() => {},
            _ = tokio::time::sleep(idle) => {},
        }
        drop(inner);
    }
}
