//! Durable outbox: every state-changing transaction goes through here, exactly once.
//!
//! ## Store layout (`<data_dir>/chain/`)
//! * `outbox.lock` — `flock`ed for the life of the outbox; a second process on the same data dir
//!   gets `STORE_LOCKED` instead of racing nonces.
//! * `intents/<seq>-<rand>.json` — one JSON file per non-terminal intent ([`Intent`]). Every update
//!   is written as `<file>.tmp`, `fsync`ed, renamed over the file, and the directory `fsync`ed, so a
//!   crash leaves either the old or the new record, never a torn one.
//! * `done/<id>.json` — the final record of terminal intents (moved there after the final state is
//!   durable; kept for audit; not scanned at startup).
//! * `nonces/<signer>.json` — `{"next_nonce": n, "genesis": <block 0 hash>}` per signer, written
//!   after the intent holding `n-1` is durable (so it is never ahead of the intents). A chain
//!   whose genesis block differs (a dev chain started afresh) ignores it.
//!
//! ## Life of an intent
//! 1. [`Outbox::enqueue`] writes the intent (`queued`: signer, to, value, calldata, revert scope,
//!    journal context) durably and only then returns its id. Limits were checked by the caller
//!    before this point, so refused requests never touch the store or the chain.
//! 2. The worker (one tokio task, intents of one signer strictly in creation order) measures gas
//!    (one `eth_simulateV1`, else `eth_estimateGas`; a revert here fails the intent with the
//!    decoded code before any nonce is taken), takes fees from the latest base fee +
//!    `eth_maxPriorityFeePerGas`, allocates the nonce
//!    `max(eth_getTransactionCount(pending), nonces file, highest in-flight nonce + 1)`, signs an
//!    EIP-1559 transaction and stores the raw bytes, hash and nonce (`signed`, fsync) and journals
//!    the pending hash (flushed) — all **before** broadcasting.
//! 3. `eth_sendRawTransaction` of the stored bytes ⇒ `broadcast` (durable). A hard rejection of a
//!    first broadcast (e.g. insufficient funds) fails the intent and gives the nonce back (safe:
//!    the next intent of that signer is only signed after this one was accepted).
//! 4. Receipt polling every `poll_interval` ⇒ `included` (block, gas used; status 0 ⇒ `failed`
//!    `TX_REVERTED` with the revert reason replayed by `eth_call` at that block when available).
//!
//! ## Reconciliation (every tick, and after a restart)
//! For each stored `signed`/`broadcast` intent, by hash and nonce:
//! * a receipt for any of its attempt hashes ⇒ done (included or reverted);
//! * known to the node's pool ⇒ wait (if its max fee fell below the current base fee it is
//!   replaced at the same nonce with fees bumped by 25 %);
//! * unknown and `eth_getTransactionCount(latest) > nonce` ⇒ the nonce was consumed by another
//!   transaction, so none of ours can ever be included ⇒ the call is signed again at a fresh
//!   nonce (the superseded hashes are kept in the record's journal fields; nothing is sent twice;
//!   a merged carrier is marked `conflicting` and its members go out again on their own);
//! * unknown and nonce not consumed ⇒ re-broadcast the **same stored raw transaction** (same hash);
//!   if the node refuses it for fee reasons (underpriced / fee too low / below base fee) a
//!   replacement with bumped fees at the same nonce is signed, stored, then sent.
//!
//! ## Merging
//! Queued intents marked `mergeable` (the event batches of `batch_submit_events`: each a
//! `batchAll` of value-0 subcalls) that follow each other for one signer are sent as one
//! `batchAll` of up to `merge_max_subcalls` subcalls: one transaction, one nonce, one block slot
//! instead of many — how the node keeps up when callers outpace blocks. The worker writes a new
//! *carrier* intent holding the joined calldata and its members' ids (durable first), then marks
//! each member `merged`. When the carrier is final its members follow: included with its receipt;
//! if it failed (refused by the simulation or reverted on chain: nothing of it took effect) each
//! member is queued again on its own, so a bad batch fails alone with its own decoded error and
//! the others go through; the same after a conflicting carrier. At start, members of a stored carrier
//! not yet marked are marked, and members of a finished carrier follow it.
//!
//! While no RPC URL answers, intents stay on disk in their state and the worker retries with
//! exponential backoff (poll interval … `max_backoff`).
//!
//! ## Status stream
//! Every state change is published on a `tokio::sync::broadcast` channel as [`TxStatus`]
//! (queued, signed, broadcast, included with block/gas, failed/conflicting with code/message), which
//! the node republishes on `~/tx_status`. [`Outbox::wait`] lets a flow await one intent.
//!
//! ## Fault injection (tests)
//! `PEAQOS_CHAIN_FAULT=abort_after_sign` / `abort_after_broadcast` / `abort_after_merge` calls
//! `std::process::abort()` right after the signed record (resp. the broadcast record, a merged
//! carrier whose members are not marked yet) is durable. Compiled only with the `fault-injection`
//! feature, which this crate's tests enable and release builds do not.

//!
//! ## Modules
//! * `intent` — the durable record ([`Intent`]) and its states, requests, statuses, outcomes.
//! * `store` — the on-disk layout above (lock, atomic records, nonce files).
//! * `worker` — the loop that measures gas, signs, broadcasts, polls and reconciles.
//! * `merge` — joining queued batches into one carrier, and splitting a failed one.
//! * `rpc_errors` — classification of a node's refusal text (already known, nonce too low, fees).
//! * `fault` — the fault-injection points (feature `fault-injection`).

mod fault;
mod intent;
mod merge;
mod rpc_errors;
mod store;
mod worker;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{json, Value};
use tokio::sync::{broadcast, Notify};
use tracing::{debug, info, warn};

pub use intent::{Attempt, ErrorInfo, Intent, IntentState, Outcome, ReceiptInfo, TxRequest, TxStatus};

use crate::error::{ChainError, ErrorCode, Result};
use crate::journal::Journal;
use crate::rpc::Rpc;
use intent::{cache_copy, outcome_of, queued_intent};
use store::Store;

fn now_str() -> String {
    crate::journal::py_utc_now()
}

/// Settings of the outbox.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    pub chain_id: u64,
    pub deployment_id: String,
    pub poll_interval: Duration,
    pub max_backoff: Duration,
    /// Most subcalls in one merged `batchAll` (the precompile takes 512); below 2 = no merging.
    pub merge_max_subcalls: usize,
}

struct State {
    live: BTreeMap<u64, Intent>,
    by_id: HashMap<String, u64>,
    done: HashMap<String, Intent>,
    done_order: VecDeque<String>,
    next_seq: u64,
}

const DONE_CACHE: usize = 4096;

struct Inner {
    store: Store,
    state: Mutex<State>,
    rpc: Arc<Rpc>,
    signers: HashMap<Address, PrivateKeySigner>,
    journal: Arc<Journal>,
    tx: broadcast::Sender<TxStatus>,
    notify: Notify,
    settings: OutboxSettings,
    /// The chain's genesis block hash, once read (recorded with the nonces file).
    genesis: Mutex<Option<B256>>,
}

/// Cheap-to-clone handle to the outbox and its worker.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("root", &self.inner.store.root).finish()
    }
}

impl Outbox {
    /// Open the store under `<data_dir>/chain/`, load non-terminal intents, start the worker on the
    /// current tokio runtime. `signers` are the keys intents may name.
    pub fn start(
        data_dir: &Path,
        rpc: Arc<Rpc>,
        signers: Vec<PrivateKeySigner>,
        journal: Arc<Journal>,
        settings: OutboxSettings,
    ) -> Result<Self> {
        let store = Store::open(data_dir)?;
        let loaded = store.load_all()?;
        let next_seq = store.max_seq() + 1;
        let mut live = BTreeMap::new();
        let mut by_id = HashMap::new();
        for i in loaded {
            info!(intent = %i.id, state = i.state.as_str(), "outbox: resuming stored intent");
            by_id.insert(i.id.clone(), i.seq);
            live.insert(i.seq, i);
        }
        let (tx, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            store,
            state: Mutex::new(State { live, by_id, done: HashMap::new(), done_order: VecDeque::new(), next_seq }),
            rpc,
            signers: signers.into_iter().map(|s| (s.address(), s)).collect(),
            journal,
            tx,
            notify: Notify::new(),
            settings,
            genesis: Mutex::new(None),
        });
        inner.recover_merges();
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move { worker::run(weak).await });
        Ok(Outbox { inner })
    }

    /// Subscribe to state changes.
    pub fn subscribe(&self) -> broadcast::Receiver<TxStatus> {
        self.inner.tx.subscribe()
    }

    /// Addresses of the registered signers.
    pub fn signers(&self) -> Vec<Address> {
        self.inner.signers.keys().copied().collect()
    }

    /// Durably store a new intent and return its id.
    pub fn enqueue(&self, req: TxRequest) -> Result<String> {
        if !self.inner.signers.contains_key(&req.signer) {
            return Err(ChainError::config(
                ErrorCode::SignerUnavailable,
                "signer",
                format!("no key configured for signer {:#x}", req.signer),
            ));
        }
        let intent = {
            let mut st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
            let seq = st.next_seq;
            st.next_seq += 1;
            let intent = queued_intent(seq, self.inner.settings.chain_id, req);
            let id = intent.id.clone();
            self.inner.store.save(&intent)?;
            st.by_id.insert(id, seq);
            st.live.insert(seq, intent.clone());
            intent
        };
        self.inner.publish(&intent);
        self.inner.notify.notify_one();
        Ok(intent.id)
    }

    /// [`Outbox::enqueue`] at most once per idempotency `key` (a sale, a caller's request id):
    /// the first call stores the intent, every later call (also after a crash or restart)
    /// returns the id of that same intent, which is never sent twice. Returns (id, newly stored).
    ///
    /// Two phases on disk: `keys/<keccak256(key)>.json` names the id first, then the intent is
    /// saved, then the key record is marked committed. A crash before the intent was saved leaves
    /// an uncommitted key whose intent does not exist: nothing was sent, so the key is free again.
    /// A committed key keeps its id even after the intent's record is gone (pruned).
    pub fn enqueue_once(&self, key: &str, mut req: TxRequest) -> Result<(String, bool)> {
        if key.is_empty() || key.len() > 512 {
            return Err(ChainError::validation("idempotency_key", "length", "must be 1..512 bytes"));
        }
        let mut st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((id, committed)) = self.inner.store.read_key(key)? {
            let exists = st.by_id.contains_key(&id)
                || st.done.contains_key(&id)
                || self.inner.store.intent_path(&id).exists()
                || self.inner.store.root.join("done").join(format!("{id}.json")).exists();
            if exists || committed {
                if exists && !committed {
                    self.inner.store.write_key(key, &id, true)?;
                }
                return Ok((id, false));
            }
        }
        if !self.inner.signers.contains_key(&req.signer) {
            return Err(ChainError::config(
                ErrorCode::SignerUnavailable,
                "signer",
                format!("no key configured for signer {:#x}", req.signer),
            ));
        }
        req.journal.insert("idempotency_key".into(), Value::String(key.into()));
        let seq = st.next_seq;
        st.next_seq += 1;
        let intent = queued_intent(seq, self.inner.settings.chain_id, req);
        let id = intent.id.clone();
        self.inner.store.write_key(key, &id, false)?;
        self.inner.store.save(&intent)?;
        self.inner.store.write_key(key, &id, true)?;
        st.by_id.insert(id.clone(), seq);
        st.live.insert(seq, intent.clone());
        drop(st);
        self.inner.publish(&intent);
        self.inner.notify.notify_one();
        Ok((id, true))
    }

    /// The intent an idempotency `key` of [`Outbox::enqueue_once`] names, if it names one that
    /// exists or was committed; `None` when the key is free.
    pub fn key_intent(&self, key: &str) -> Result<Option<String>> {
        let st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some((id, committed)) = self.inner.store.read_key(key)? else { return Ok(None) };
        let exists = st.by_id.contains_key(&id)
            || st.done.contains_key(&id)
            || self.inner.store.intent_path(&id).exists()
            || self.inner.store.root.join("done").join(format!("{id}.json")).exists();
        Ok((exists || committed).then_some(id))
    }

    /// Current record of an intent (live or recently finished).
    pub fn get(&self, id: &str) -> Option<Intent> {
        let st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(seq) = st.by_id.get(id) {
            return st.live.get(seq).cloned();
        }
        if let Some(i) = st.done.get(id) {
            return Some(i.clone());
        }
        drop(st);
        // Older terminal intents: read the final record from done/ (ids are file names, so only
        // accept the id shape we generate).
        if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || id.is_empty() {
            return None;
        }
        let p = self.inner.store.root.join("done").join(format!("{id}.json"));
        std::fs::read(&p).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Non-terminal intents, in order.
    pub fn pending(&self) -> Vec<Intent> {
        let st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        st.live.values().cloned().collect()
    }

    /// Wait for an intent to finish. `Ok` when included successfully; `Err` with the failure code
    /// (`TX_REVERTED` or the decoded revert, `NONCE_CONFLICT`, ...) or `RECEIPT_AWAIT_FAILED` on
    /// timeout (the intent keeps being tracked and its final state is published later).
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Outcome> {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.get(id) {
                if i.state.is_terminal() {
                    return outcome_of(&i);
                }
            } else {
                return Err(ChainError::Tx {
                    code: ErrorCode::IntentUnknown,
                    message: format!("unknown intent {id}"),
                    intent_id: id.into(),
                    tx_hash: String::new(),
                });
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Ok(s)) if s.intent_id != id || !s.state.is_terminal() => continue,
                Ok(_) => continue, // terminal for us, or lagged/closed: re-read the record
                Err(_) => {
                    let rec = self.get(id);
                    let h = rec.as_ref().and_then(|i| i.latest_hash()).map(|h| format!("{h:#x}")).unwrap_or_default();
                    let message = match rec.map(|i| i.state) {
                        Some(IntentState::Queued) => format!(
                            "Transaction not sent yet within {timeout:?} (no RPC URL reachable?); intent {id} stays queued on disk and will be sent"
                        ),
                        _ => format!(
                            "Transaction submitted but receipt could not be retrieved within {timeout:?} (intent {id} is still tracked)"
                        ),
                    };
                    return Err(ChainError::Tx {
                        code: ErrorCode::ReceiptAwaitFailed,
                        message,
                        intent_id: id.into(),
                        tx_hash: h,
                    });
                }
            }
        }
    }
}

impl Inner {
    fn publish(&self, i: &Intent) {
        let s = TxStatus {
            intent_id: i.id.clone(),
            kind: i.kind.clone(),
            state: i.state,
            signer: i.signer,
            nonce: i.nonce,
            tx_hash: i.receipt.as_ref().map(|r| r.tx_hash).or(i.latest_hash()),
            block_number: i.receipt.as_ref().map(|r| r.block_number),
            gas_used: i.receipt.as_ref().map(|r| r.gas_used),
            code: i.error.as_ref().map(|e| e.code.clone()).unwrap_or_default(),
            message: i.error.as_ref().map(|e| e.message.clone()).unwrap_or_default(),
        };
        debug!(intent = %s.intent_id, state = s.state.as_str(), "outbox status");
        let _ = self.tx.send(s);
    }

    fn journal(&self, i: &Intent, status: &str) {
        let mut m = i.journal.clone();
        m.entry("step").or_insert_with(|| json!(i.kind));
        m.insert("status".into(), json!(status));
        m.insert("intent_id".into(), json!(i.id));
        m.insert("deployment_id".into(), json!(self.settings.deployment_id));
        m.insert("chain_id".into(), json!(i.chain_id));
        m.insert("signer".into(), json!(i.signer.to_checksum(None)));
        m.insert("contract".into(), json!(i.to.to_checksum(None)));
        if let Some(h) = i.receipt.as_ref().map(|r| r.tx_hash).or(i.latest_hash()) {
            m.insert("tx_hash".into(), json!(format!("{h:#x}")));
        }
        if let Some(n) = i.nonce {
            m.insert("sender_nonce".into(), json!(n));
        }
        if let Some(r) = &i.receipt {
            m.insert("block_number".into(), json!(r.block_number));
        }
        if let Some(e) = &i.error {
            m.insert("code".into(), json!(e.code));
            m.insert("reason".into(), json!(e.message));
        }
        if let Err(e) = self.journal.append(m) {
            warn!(error = %e, "journal append failed");
        }
    }

    /// Persist + publish a changed intent; terminal ones leave the live set.
    fn commit(&self, mut i: Intent) -> Result<()> {
        i.updated_at = now_str();
        self.store.save(&i)?;
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if i.state.is_terminal() {
                st.live.remove(&i.seq);
                st.by_id.remove(&i.id);
                st.done_order.push_back(i.id.clone());
                st.done.insert(i.id.clone(), cache_copy(&i));
                while st.done_order.len() > DONE_CACHE {
                    if let Some(old) = st.done_order.pop_front() {
                        st.done.remove(&old);
                    }
                }
            } else {
                st.live.insert(i.seq, i.clone());
            }
        }
        self.publish(&i);
        if i.state.is_terminal() && !i.members.is_empty() {
            self.settle_members(&i);
        }
        Ok(())
    }

    fn fail(&self, mut i: Intent, state: IntentState, code: ErrorCode, message: String) -> Result<()> {
        let code = code.as_str();
        warn!(intent = %i.id, code, reason = %message, "outbox: intent {}", state.as_str());
        i.state = state;
        i.error = Some(ErrorInfo { code: code.into(), message });
        self.journal(&i, state.as_str());
        self.commit(i)
    }
}
