//! Event flows of both generations: `validate_event`, `submit_event`, `batch_submit_events`
//! (one `batchAll`) and their enqueue-only variants, the rate-limit reservations they hold, and the
//! SDK's per-code message mapping of their failures.

use alloy::primitives::{B256, U256};
use serde_json::{json, Map};

use super::ChainClient;
use crate::encoding;
use crate::error::{ChainError, ErrorCode, Result};
use crate::limits::Reservation;
use crate::outbox::IntentState;
use crate::validation::{self, SubmitEventParams, ValidEvent};

/// Result of a submitted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventReceipt {
    pub intent_id: String,
    pub tx_hash: B256,
    pub data_hash: B256,
    pub block_number: u64,
    pub gas_used: u64,
}

/// Result of a batch (one transaction for all events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReceipt {
    pub intent_id: String,
    pub tx_hash: B256,
    pub data_hashes: Vec<B256>,
    pub block_number: u64,
    pub gas_used: u64,
}

impl ChainClient {
    /// `validate_event`: SDK validation of a single submit, returns the data hash
    /// (keccak256(raw_data) or zero).
    pub fn validate_event(&self, p: &SubmitEventParams) -> Result<B256> {
        validation::validate_event(p)
    }

    /// Remember a rate-limit reservation until its intent is terminal; released if it fails.
    fn track_reservation(&self, id: &str, r: Reservation) {
        if r.is_empty() {
            return;
        }
        let mut m = self.inner.reservations.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the map lock: a terminal status published before this point is visible
        // in the outbox record; one published after finds the entry (see `start`).
        match self.inner.outbox.get(id).map(|i| i.state) {
            Some(IntentState::Included) => {}
            Some(IntentState::Failed | IntentState::Conflicting) => self.inner.limiter.release(r),
            _ => {
                m.insert(id.to_string(), r);
            }
        }
    }

    /// Limits + durable enqueue of validated events as `kind` (one `submitEvent`, or `batchAll`).
    fn enqueue_events(&self, kind: &str, events: &[ValidEvent]) -> Result<String> {
        self.enqueue_events_keyed(kind, events, None).map(|(id, _)| id)
    }

    /// [`Self::enqueue_events`], at most once per idempotency key when one is given.
    fn enqueue_events_keyed(&self, kind: &str, events: &[ValidEvent], key: Option<&str>) -> Result<(String, bool)> {
        let registry = self.inner.cfg.event_registry()?;
        let reservation = self.inner.limiter.reserve(events)?;
        let mut j = Map::new();
        j.insert("step".into(), json!(kind));
        let (to, input) = if kind == "submit_event" {
            j.insert("machine_id".into(), json!(events[0].machine_id.to_string()));
            j.insert("method".into(), json!("submitEvent"));
            (registry, encoding::submit_event(&events[0]))
        } else {
            j.insert("event_count".into(), json!(events.len()));
            j.insert("method".into(), json!("batchAll"));
            (self.inner.cfg.batch(), encoding::batch_submit_events(registry, events))
        };
        let req = self.tx_request(kind, self.inner.default_signer, to, U256::ZERO, input, self.events_scope(), j);
        let stored = match key {
            Some(k) => self.inner.outbox.enqueue_once(k, req),
            None => self.inner.outbox.enqueue(req).map(|id| (id, true)),
        };
        match stored {
            Ok((id, true)) => {
                self.track_reservation(&id, reservation);
                Ok((id, true))
            }
            Ok((id, false)) => {
                // already stored under this key: its reservation was taken then
                self.inner.limiter.release(reservation);
                Ok((id, false))
            }
            Err(err) => {
                self.inner.limiter.release(reservation);
                Err(err)
            }
        }
    }

    /// Validate, check limits and durably enqueue a single event without waiting; returns
    /// (intent id, data hash). The outcome arrives on the status stream.
    pub fn enqueue_event(&self, p: &SubmitEventParams) -> Result<(String, B256)> {
        let e = validation::resolve_single(p)?;
        let id = self.enqueue_events("submit_event", std::slice::from_ref(&e))?;
        Ok((id, e.data_hash))
    }

    /// [`ChainClient::enqueue_event`] at most once per idempotency `key` (see
    /// [`crate::outbox::Outbox::enqueue_once`]): a repeated call, also after a crash, returns the
    /// intent stored first. Returns (intent id, data hash, newly stored).
    pub fn enqueue_event_once(&self, key: &str, p: &SubmitEventParams) -> Result<(String, B256, bool)> {
        let e = validation::resolve_single(p)?;
        let (id, new) = self.enqueue_events_keyed("submit_event", std::slice::from_ref(&e), Some(key))?;
        Ok((id, e.data_hash, new))
    }

    /// Batch variant of [`ChainClient::enqueue_event`]; returns (intent id, data hashes).
    pub fn enqueue_batch(&self, items: &[SubmitEventParams]) -> Result<(String, Vec<B256>)> {
        let events = validation::resolve_batch(items)?;
        let id = self.enqueue_events("batch_submit_events", &events)?;
        Ok((id, events.iter().map(|e| e.data_hash).collect()))
    }

    /// `submit_event` (SDK semantics, smart currency default). Returns after inclusion.
    pub async fn submit_event(&self, p: &SubmitEventParams) -> Result<EventReceipt> {
        let e = validation::resolve_single(p)?;
        let id = self.enqueue_events("submit_event", std::slice::from_ref(&e))?;
        match self.wait(&id).await {
            Ok(o) => Ok(EventReceipt {
                intent_id: id,
                tx_hash: o.tx_hash,
                data_hash: e.data_hash,
                block_number: o.receipt.block_number,
                gas_used: o.receipt.gas_used,
            }),
            Err(err) => Err(map_event_error(err, &e)),
        }
    }

    /// `batch_submit_events`: every item validated (currency required), limits projected, one
    /// `batchAll` to the Batch precompile. Atomic.
    pub async fn batch_submit_events(&self, items: &[SubmitEventParams]) -> Result<BatchReceipt> {
        let events: Vec<ValidEvent> = validation::resolve_batch(items)?;
        if events.len() > 100 {
            tracing::warn!(count = events.len(), "batch_submit_events: batches above 100 may exceed block gas limits");
        }
        let id = self.enqueue_events("batch_submit_events", &events)?;
        let o = self.wait(&id).await.map_err(|e| map_batch_error(e, &events))?;
        Ok(BatchReceipt {
            intent_id: id,
            tx_hash: o.tx_hash,
            data_hashes: events.iter().map(|e| e.data_hash).collect(),
            block_number: o.receipt.block_number,
            gas_used: o.receipt.gas_used,
        })
    }
}

/// SDK `_map_batch_error` messages (single machine ⇒ its id; several ⇒ "one or more").
fn map_batch_error(err: ChainError, events: &[ValidEvent]) -> ChainError {
    let mut ids: Vec<U256> = events.iter().map(|e| e.machine_id).collect();
    ids.sort();
    ids.dedup();
    let single = if ids.len() == 1 { Some(ids[0]) } else { None };
    match err {
        ChainError::Tx { code, message, intent_id, tx_hash } => {
            let message = match (code, single) {
                (ErrorCode::NotOwnerOrController, Some(m)) => {
                    format!("Caller is neither the owner nor the DID controller of machine {m}")
                }
                (ErrorCode::NotOwnerOrController, None) => {
                    "Caller is neither the owner nor the DID controller of one or more machines in this batch"
                        .to_string()
                }
                (ErrorCode::SubscriptionNotEligible, Some(m)) => {
                    format!("Machine {m} subscription is not Active or Grace")
                }
                (ErrorCode::SubscriptionNotEligible, None) => {
                    "One or more machines in this batch are not Active or Grace".to_string()
                }
                (ErrorCode::MachineNotFound, Some(m)) => format!("Machine ID {m} does not exist on this deployment"),
                (ErrorCode::MachineNotFound, None) => {
                    "One or more machine IDs in this batch do not exist on this deployment".to_string()
                }
                _ => message,
            };
            ChainError::Tx { code, message, intent_id, tx_hash }
        }
        other => other,
    }
}

/// SDK `_map_submit_event_error` messages.
fn map_event_error(err: ChainError, e: &ValidEvent) -> ChainError {
    match err {
        ChainError::Tx { code, message, intent_id, tx_hash } => {
            let message = match code {
                ErrorCode::NotOwnerOrController => {
                    format!("Caller is neither the owner nor the DID controller of machine {}", e.machine_id)
                }
                ErrorCode::SubscriptionNotEligible => {
                    format!("Machine {} subscription is not Active or Grace", e.machine_id)
                }
                ErrorCode::MachineNotFound => format!("Machine ID {} does not exist on this deployment", e.machine_id),
                _ => message,
            };
            ChainError::Tx { code, message, intent_id, tx_hash }
        }
        other => other,
    }
}
