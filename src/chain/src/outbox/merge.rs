//! Merging: several queued mergeable batches of one signer become one `batchAll` carrier intent,
//! and a finished carrier settles its members (included together, or split and re-queued one by
//! one when it failed). Also the restart recovery of half-done merges.

use std::fs;

use alloy::primitives::U256;
use serde_json::json;
use tracing::{info, warn};

use super::fault::{fault_point, AbortAfter};
use super::intent::{queued_intent, Intent, IntentState, TxRequest};
use super::Inner;
use crate::encoding;
use crate::error::{ErrorCode, Result};

impl Inner {
    /// Join `first` (queued, mergeable) with the queued mergeable intents of its signer that
    /// directly follow it, up to `merge_max_subcalls` subcalls, into one new carrier intent.
    /// The carrier is durable before any member is marked `merged`, so a crash in between
    /// leaves a carrier whose members are re-marked at start, never two sends of one member.
    pub(super) fn merge_from(&self, first: &Intent) -> Result<Option<Intent>> {
        let max = self.settings.merge_max_subcalls.min(512);
        let Some(mut calls) = encoding::batch_all_calls(&first.input) else {
            return Ok(None);
        };
        let mut members = vec![first.clone()];
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (_, j) in st.live.range(first.seq + 1..) {
            if j.signer != first.signer || j.state == IntentState::Merged {
                continue;
            }
            let joinable = j.state == IntentState::Queued
                && j.mergeable
                && j.to == first.to
                && j.scope == first.scope
                && j.value.is_zero()
                && j.chain_id == first.chain_id;
            if !joinable {
                break; // keep the signer's order: never merge across an intent that is not joined
            }
            let Some(more) = encoding::batch_all_calls(&j.input) else {
                break;
            };
            if calls.len() + more.len() > max {
                break;
            }
            calls.extend(more);
            members.push(j.clone());
        }
        if members.len() < 2 {
            return Ok(None);
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let mut journal = first.journal.clone();
        journal.insert("event_count".into(), json!(calls.len()));
        journal.insert("merged_intents".into(), json!(members.iter().map(|m| m.id.clone()).collect::<Vec<_>>()));
        let mut carrier = queued_intent(
            seq,
            first.chain_id,
            TxRequest {
                kind: first.kind.clone(),
                signer: first.signer,
                to: first.to,
                value: U256::ZERO,
                input: encoding::batch_all(&calls),
                scope: first.scope(),
                journal,
                mergeable: false,
            },
        );
        carrier.members = members.iter().map(|m| m.id.clone()).collect();
        let id = carrier.id.clone();
        self.store.save(&carrier)?;
        st.by_id.insert(id.clone(), seq);
        st.live.insert(seq, carrier.clone());
        drop(st);
        info!(intent = %carrier.id, members = carrier.members.len(), subcalls = calls.len(), "outbox: merged queued batches into one transaction");
        self.publish(&carrier);
        fault_point(AbortAfter::Merge);
        for mut m in members {
            m.state = IntentState::Merged;
            m.merged_into = Some(id.clone());
            self.commit(m)?;
        }
        Ok(Some(carrier))
    }

    /// A carrier reached a final state: its members follow. Included ⇒ included with the
    /// carrier's receipt; failed (refused before sending, or reverted: either way nothing of it
    /// happened on chain) ⇒ each member is queued again on its own, so one bad batch fails
    /// alone with its own error; conflicting ⇒ conflicting (never re-sent).
    pub(super) fn settle_members(&self, carrier: &Intent) {
        for id in &carrier.members {
            let m = {
                let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.by_id.get(id).and_then(|s| st.live.get(s)).cloned()
            };
            let Some(m) = m else { continue };
            if let Err(e) = self.settle_member(m, carrier) {
                warn!(intent = %id, error = %e, "outbox: cannot settle a merged intent; retried at start");
            }
        }
        self.notify.notify_one();
    }

    pub(super) fn settle_member(&self, mut m: Intent, carrier: &Intent) -> Result<()> {
        if m.state != IntentState::Merged || m.merged_into.as_deref() != Some(carrier.id.as_str()) {
            return Ok(());
        }
        match carrier.state {
            IntentState::Included => {
                m.state = IntentState::Included;
                m.nonce = carrier.nonce;
                // The carrier's record keeps the logs (up to one per event of every member).
                m.receipt = carrier.receipt.clone().map(|mut r| {
                    r.logs.clear();
                    r
                });
                self.journal(&m, "confirmed");
            }
            // Nothing of a conflicting carrier was included either: its members go out on their own.
            _ => {
                info!(intent = %m.id, carrier = %carrier.id, "outbox: merged transaction failed; sending this batch on its own");
                m.state = IntentState::Queued;
                m.mergeable = false;
                m.merged_into = None;
            }
        }
        self.commit(m)
    }

    /// After a restart: members of a stored carrier that were not yet marked are marked now;
    /// members whose carrier already finished follow it.
    pub(super) fn recover_merges(&self) {
        let live: Vec<Intent> = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.live.values().cloned().collect()
        };
        for c in live.iter().filter(|c| !c.members.is_empty()) {
            for m in live.iter().filter(|m| c.members.contains(&m.id)) {
                if m.state == IntentState::Queued {
                    let mut m = m.clone();
                    m.state = IntentState::Merged;
                    m.merged_into = Some(c.id.clone());
                    if let Err(e) = self.commit(m) {
                        warn!(error = %e, "outbox: cannot re-mark a merged intent");
                    }
                }
            }
        }
        for m in live.iter().filter(|m| m.state == IntentState::Merged) {
            let Some(cid) = m.merged_into.clone() else {
                continue;
            };
            let carrier = {
                let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.by_id.get(&cid).and_then(|s| st.live.get(s)).cloned()
            };
            if carrier.is_some() {
                continue; // still on its way
            }
            let done = self.store.root.join("done").join(format!("{cid}.json"));
            let res = match fs::read(&done).ok().and_then(|b| serde_json::from_slice::<Intent>(&b).ok()) {
                Some(c) => self.settle_member(m.clone(), &c),
                None => self.fail(
                    m.clone(),
                    IntentState::Failed,
                    ErrorCode::MergeRecordMissing,
                    format!("the record of merged transaction {cid} is missing; this batch is not re-sent (its transaction may have been sent)"),
                ),
            };
            if let Err(e) = res {
                warn!(error = %e, "outbox: cannot settle a merged intent");
            }
        }
    }
}
