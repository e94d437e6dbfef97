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
//!   transaction ⇒ `conflicting` (`NONCE_CONFLICT`), never re-sent;
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
//! the others go through; conflicting stays conflicting. At start, members of a stored carrier
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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::primitives::{Address, Bytes, TxKind, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, Notify};
use tracing::{debug, info, warn};

use crate::encoding;
use crate::error::{ChainError, Result};
use crate::journal::Journal;
use crate::revert::{self, RevertScope};
use crate::rpc::{CallRequest, Rpc, RpcFailure, RpcLog, RpcReceipt};

/// Intent state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentState {
    Queued,
    Signed,
    Broadcast,
    Included,
    Failed,
    Conflicting,
    /// Carried by a merged transaction (`merged_into`); settles when that one does.
    Merged,
}

impl IntentState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            IntentState::Included | IntentState::Failed | IntentState::Conflicting
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            IntentState::Queued => "queued",
            IntentState::Signed => "signed",
            IntentState::Broadcast => "broadcast",
            IntentState::Included => "included",
            IntentState::Failed => "failed",
            IntentState::Conflicting => "conflicting",
            IntentState::Merged => "merged",
        }
    }
}

/// One signed transaction for an intent (replacements add attempts at the same nonce).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    pub tx_hash: B256,
    pub raw: Bytes,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
    pub signed_at: String,
}

/// Inclusion result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptInfo {
    pub tx_hash: B256,
    pub block_number: u64,
    pub gas_used: u64,
    pub success: bool,
    pub logs: Vec<RpcLog>,
}

/// Failure information.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

/// The durable record of one intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    pub id: String,
    pub seq: u64,
    pub kind: String,
    pub chain_id: u64,
    pub signer: Address,
    pub to: Address,
    pub value: U256,
    pub input: Bytes,
    pub scope: String,
    /// Extra journal fields from the flow (step, machine_id, ...).
    pub journal: Map<String, Value>,
    pub state: IntentState,
    pub nonce: Option<u64>,
    pub gas_limit: Option<u64>,
    pub attempts: Vec<Attempt>,
    pub receipt: Option<ReceiptInfo>,
    pub error: Option<ErrorInfo>,
    pub created_at: String,
    pub updated_at: String,
    /// A `batchAll` of value-0 subcalls that the worker may send together with the next queued
    /// mergeable intents of the same signer (see [`Outbox`]'s "Merging").
    #[serde(default, skip_serializing_if = "is_false")]
    pub mergeable: bool,
    /// The intents a merged transaction carries, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// The merged intent that carries this one (state `merged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Intent {
    fn scope(&self) -> RevertScope {
        match self.scope.as_str() {
            "legacy" => RevertScope::Legacy,
            "activation" => RevertScope::Activation,
            _ => RevertScope::EventsGen2,
        }
    }
    fn latest_hash(&self) -> Option<B256> {
        self.attempts.last().map(|a| a.tx_hash)
    }
}

fn scope_name(s: RevertScope) -> &'static str {
    match s {
        RevertScope::EventsGen2 => "events_gen2",
        RevertScope::Legacy => "legacy",
        RevertScope::Activation => "activation",
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct TxRequest {
    pub kind: String,
    pub signer: Address,
    pub to: Address,
    pub value: U256,
    pub input: Bytes,
    pub scope: RevertScope,
    pub journal: Map<String, Value>,
    /// May share a transaction with other mergeable intents (a `batchAll` of value-0 subcalls,
    /// all-or-nothing on its own: a merged transaction that fails is split up again).
    pub mergeable: bool,
}

/// A state change, published on the status stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxStatus {
    pub intent_id: String,
    pub kind: String,
    pub state: IntentState,
    pub signer: Address,
    pub nonce: Option<u64>,
    pub tx_hash: Option<B256>,
    pub block_number: Option<u64>,
    pub gas_used: Option<u64>,
    pub code: String,
    pub message: String,
}

/// Final result of an intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub intent_id: String,
    pub tx_hash: B256,
    pub receipt: ReceiptInfo,
}

/// Test fault injection: where `PEAQOS_CHAIN_FAULT=abort_after_<point>` aborts the process. Only
/// in builds with the `fault-injection` feature (this crate's own tests); release builds have none.
#[derive(Debug, Clone, Copy)]
enum AbortAfter {
    Sign,
    Broadcast,
    Merge,
}

#[cfg(feature = "fault-injection")]
fn fault_point(p: AbortAfter) {
    if let Ok(v) = std::env::var("PEAQOS_CHAIN_FAULT") {
        let hit = matches!(
            (p, v.as_str()),
            (AbortAfter::Sign, "abort_after_sign")
                | (AbortAfter::Broadcast, "abort_after_broadcast")
                | (AbortAfter::Merge, "abort_after_merge")
        );
        if hit {
            eprintln!("PEAQOS_CHAIN_FAULT={v}: aborting");
            std::process::abort();
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
fn fault_point(_p: AbortAfter) {}

fn now_str() -> String {
    crate::journal::py_utc_now()
}

/// Durable file operations.
#[derive(Debug)]
struct Store {
    root: PathBuf,
    _lock: fs::File,
}

fn io_err(p: &Path, e: impl std::fmt::Display) -> ChainError {
    ChainError::store("STORE_IO", p, e)
}

impl Store {
    fn open(data_dir: &Path) -> Result<Self> {
        let root = peaqos_base::layout::chain_dir(data_dir);
        for d in ["intents", "done", "nonces"] {
            let p = root.join(d);
            let mut b = fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            b.create(&p).map_err(|e| io_err(&p, e))?;
        }
        let lp = root.join("outbox.lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lp)
            .map_err(|e| io_err(&lp, e))?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a valid, owned file descriptor.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                return Err(ChainError::store(
                    "STORE_LOCKED",
                    &lp,
                    "another process holds the outbox lock",
                ));
            }
        }
        Ok(Store { root, _lock: f })
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        peaqos_base::fsio::write_atomic(path, bytes).map_err(|e| io_err(&e.path.clone(), e))
    }

    fn intent_path(&self, id: &str) -> PathBuf {
        self.root.join("intents").join(format!("{id}.json"))
    }

    fn save(&self, i: &Intent) -> Result<()> {
        let p = self.intent_path(&i.id);
        let bytes = serde_json::to_vec_pretty(i).map_err(|e| io_err(&p, e))?;
        self.write_atomic(&p, &bytes)?;
        if i.state.is_terminal() {
            let dst = self.root.join("done").join(format!("{}.json", i.id));
            fs::rename(&p, &dst).map_err(|e| io_err(&dst, e))?;
            if let Ok(d) = fs::File::open(self.root.join("done")) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    fn load_all(&self) -> Result<Vec<Intent>> {
        let dir = self.root.join("intents");
        let mut out = vec![];
        for e in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let e = e.map_err(|e| io_err(&dir, e))?;
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                // leftover .tmp from a crash mid-write: the previous version is intact
                let _ = fs::remove_file(&p);
                continue;
            }
            let s = fs::read(&p).map_err(|e| io_err(&p, e))?;
            let i: Intent = serde_json::from_slice(&s)
                .map_err(|e| ChainError::store("STORE_CORRUPT", &p, e))?;
            out.push(i);
        }
        out.sort_by_key(|i| i.seq);
        Ok(out)
    }

    fn max_seq(&self) -> u64 {
        let mut m = 0;
        for d in ["intents", "done"] {
            if let Ok(rd) = fs::read_dir(self.root.join(d)) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if let Some(n) = name.split('-').next().and_then(|s| s.parse::<u64>().ok()) {
                        m = m.max(n);
                    }
                }
            }
        }
        m
    }

    fn nonce_path(&self, signer: Address) -> PathBuf {
        self.root.join("nonces").join(format!("{signer:#x}.json"))
    }

    /// (next nonce, genesis block hash of the chain it was used on, when recorded).
    fn read_nonce(&self, signer: Address) -> Result<Option<(u64, Option<B256>)>> {
        let p = self.nonce_path(signer);
        match fs::read(&p) {
            Ok(s) => {
                let v: Value = serde_json::from_slice(&s)
                    .map_err(|e| ChainError::store("STORE_CORRUPT", &p, e))?;
                let genesis = v
                    .get("genesis")
                    .and_then(Value::as_str)
                    .and_then(|g| g.parse::<B256>().ok());
                Ok(v.get("next_nonce")
                    .and_then(Value::as_u64)
                    .map(|n| (n, genesis)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    fn write_nonce(&self, signer: Address, next: u64, genesis: Option<B256>) -> Result<()> {
        let p = self.nonce_path(signer);
        let mut v = json!({"signer": signer, "next_nonce": next});
        if let Some(g) = genesis {
            v["genesis"] = json!(g);
        }
        self.write_atomic(&p, v.to_string().as_bytes())
    }
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
        f.debug_struct("Outbox")
            .field("root", &self.inner.store.root)
            .finish()
    }
}

/// Values read once per tick (fees, next nonce per signer).
#[derive(Default)]
struct TickCache {
    /// (max fee, priority fee, latest block gas limit)
    fees: Option<(u128, u128, Option<u64>)>,
    next_nonce: HashMap<Address, u64>,
}

enum Step {
    /// Keep going with this signer.
    Continue,
    /// Stop processing this signer for now (waiting on the chain, or order must be kept).
    Blocked,
}

fn fee_refusal(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("underpriced")
        || m.contains("fee too low")
        || m.contains("less than block base fee")
        || m.contains("max fee per gas less than")
        || m.contains("feecap")
        || m.contains("fee cap")
}
fn already_known(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("already known")
        || m.contains("already imported")
        || m.contains("known transaction")
        || m.contains("already exists")
}
fn nonce_too_low(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("nonce too low") || m.contains("nonce is too low") || m.contains("stale")
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
            state: Mutex::new(State {
                live,
                by_id,
                done: HashMap::new(),
                done_order: VecDeque::new(),
                next_seq,
            }),
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
        tokio::spawn(async move { worker(weak).await });
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
                "SIGNER_UNAVAILABLE",
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
        let p = self
            .inner
            .store
            .root
            .join("done")
            .join(format!("{id}.json"));
        std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
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
                    code: "INTENT_UNKNOWN".into(),
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
                    let h = rec
                        .as_ref()
                        .and_then(|i| i.latest_hash())
                        .map(|h| format!("{h:#x}"))
                        .unwrap_or_default();
                    let message = match rec.map(|i| i.state) {
                        Some(IntentState::Queued) => format!(
                            "Transaction not sent yet within {timeout:?} (no RPC URL reachable?); intent {id} stays queued on disk and will be sent"
                        ),
                        _ => format!(
                            "Transaction submitted but receipt could not be retrieved within {timeout:?} (intent {id} is still tracked)"
                        ),
                    };
                    return Err(ChainError::Tx {
                        code: "RECEIPT_AWAIT_FAILED".into(),
                        message,
                        intent_id: id.into(),
                        tx_hash: h,
                    });
                }
            }
        }
    }
}

/// What the in-memory cache of finished intents keeps: event submissions without their
/// receipt logs (one per event; nothing reads them, and a busy node finishes thousands of
/// batches an hour), everything else whole (the activation flows correlate logs). The record
/// in `done/` is always complete.
fn cache_copy(i: &Intent) -> Intent {
    let mut c = i.clone();
    if matches!(i.kind.as_str(), "submit_event" | "batch_submit_events") {
        if let Some(r) = c.receipt.as_mut() {
            r.logs = Vec::new();
        }
    }
    c
}

/// A new intent in state `queued` with a fresh id (`<seq>-<random>`).
fn queued_intent(seq: u64, chain_id: u64, req: TxRequest) -> Intent {
    let now = now_str();
    Intent {
        id: format!("{seq:012}-{:08x}", rand::random::<u32>()),
        seq,
        kind: req.kind,
        chain_id,
        signer: req.signer,
        to: req.to,
        value: req.value,
        input: req.input,
        scope: scope_name(req.scope).into(),
        journal: req.journal,
        state: IntentState::Queued,
        nonce: None,
        gas_limit: None,
        attempts: vec![],
        receipt: None,
        error: None,
        created_at: now.clone(),
        updated_at: now,
        mergeable: req.mergeable,
        members: vec![],
        merged_into: None,
    }
}

fn outcome_of(i: &Intent) -> Result<Outcome> {
    let h = i
        .latest_hash()
        .map(|h| format!("{h:#x}"))
        .unwrap_or_default();
    match (i.state, &i.receipt) {
        (IntentState::Included, Some(r)) => Ok(Outcome {
            intent_id: i.id.clone(),
            tx_hash: r.tx_hash,
            receipt: r.clone(),
        }),
        _ => {
            let e = i.error.clone().unwrap_or(ErrorInfo {
                code: "TX_FAILED".into(),
                message: "transaction failed".into(),
            });
            let tx_hash = i
                .receipt
                .as_ref()
                .map(|r| format!("{:#x}", r.tx_hash))
                .unwrap_or(h);
            Err(ChainError::Tx {
                code: e.code,
                message: e.message,
                intent_id: i.id.clone(),
                tx_hash,
            })
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
            message: i
                .error
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_default(),
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

    /// Join `first` (queued, mergeable) with the queued mergeable intents of its signer that
    /// directly follow it, up to `merge_max_subcalls` subcalls, into one new carrier intent.
    /// The carrier is durable before any member is marked `merged`, so a crash in between
    /// leaves a carrier whose members are re-marked at start, never two sends of one member.
    fn merge_from(&self, first: &Intent) -> Result<Option<Intent>> {
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
        journal.insert(
            "merged_intents".into(),
            json!(members.iter().map(|m| m.id.clone()).collect::<Vec<_>>()),
        );
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
    fn settle_members(&self, carrier: &Intent) {
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

    fn settle_member(&self, mut m: Intent, carrier: &Intent) -> Result<()> {
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
            IntentState::Conflicting => {
                m.state = IntentState::Conflicting;
                m.nonce = carrier.nonce;
                m.error = carrier.error.clone();
                self.journal(&m, "conflicting");
            }
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
    fn recover_merges(&self) {
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
                    "MERGE_RECORD_MISSING",
                    format!("the record of merged transaction {cid} is missing; this batch is not re-sent (its transaction may have been sent)"),
                ),
            };
            if let Err(e) = res {
                warn!(error = %e, "outbox: cannot settle a merged intent");
            }
        }
    }

    fn fail(&self, mut i: Intent, state: IntentState, code: &str, message: String) -> Result<()> {
        warn!(intent = %i.id, code, %message, "outbox: intent {}", state.as_str());
        i.state = state;
        i.error = Some(ErrorInfo {
            code: code.into(),
            message,
        });
        self.journal(&i, state.as_str());
        self.commit(i)
    }

    /// Fail an intent that needs more gas than a block holds (`GAS_LIMIT_EXCEEDS_BLOCK`). Nothing
    /// was signed; a merged carrier is then split and its batches go out one by one.
    fn fail_above_block(&self, i: Intent, need: Option<u64>, block: Option<u64>, node: &str) {
        let what = if i.members.is_empty() {
            "transaction"
        } else {
            "merged transaction"
        };
        let need = need
            .map(|g| format!("{g} gas, more"))
            .unwrap_or_else(|| "more gas".into());
        let block = block.map(|b| format!(" ({b})")).unwrap_or_default();
        let node = if node.is_empty() {
            String::new()
        } else {
            format!("; node: {node}")
        };
        let message = format!(
            "the {what} needs {need} than a block holds{block}; send fewer events per batch{node}"
        );
        let _ = self.fail(i, IntentState::Failed, "GAS_LIMIT_EXCEEDS_BLOCK", message);
    }

    /// Hash of the chain's genesis block (read once; `None` when the node has no block 0).
    async fn genesis(&self) -> std::result::Result<Option<B256>, RpcFailure> {
        if let Some(g) = self.genesis_cached() {
            return Ok(Some(g));
        }
        let v = self
            .rpc
            .request_value("eth_getBlockByNumber", json!(["0x0", false]))
            .await?;
        let g = v
            .get("hash")
            .and_then(Value::as_str)
            .and_then(|h| h.parse::<B256>().ok());
        *self.genesis.lock().unwrap_or_else(|p| p.into_inner()) = g;
        Ok(g)
    }

    fn genesis_cached(&self) -> Option<B256> {
        *self.genesis.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn next_nonce(&self, signer: Address) -> std::result::Result<u64, RpcFailure> {
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
            st.live
                .values()
                .filter(|i| i.signer == signer)
                .filter_map(|i| i.nonce)
                .map(|n| n + 1)
                .max()
                .unwrap_or(0)
        };
        Ok(chain.max(file).max(inflight))
    }

    fn sign(
        &self,
        i: &Intent,
        nonce: u64,
        gas_limit: u64,
        max_fee: u128,
        prio: u128,
    ) -> Result<Attempt> {
        let signer = self.signers.get(&i.signer).ok_or_else(|| {
            ChainError::config(
                "SIGNER_UNAVAILABLE",
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
            .map_err(|_| ChainError::config("SIGNER_UNAVAILABLE", "signer", "signing failed"))?;
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
    async fn fees(&self) -> std::result::Result<(u128, u128, Option<u64>), RpcFailure> {
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

    async fn revert_reason(&self, i: &Intent, block: u64) -> (String, String) {
        let req = CallRequest {
            from: Some(i.signer),
            to: i.to,
            value: i.value,
            data: i.input.clone(),
        };
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
            _ => (
                "TX_REVERTED".into(),
                "Transaction reverted on-chain after submission".into(),
            ),
        }
    }

    async fn finish_with_receipt(&self, mut i: Intent, r: RpcReceipt) -> Result<()> {
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
            self.fail(i, IntentState::Failed, &code, message)
        }
    }

    /// Look for a receipt of any attempt.
    async fn find_receipt(
        &self,
        i: &Intent,
    ) -> std::result::Result<Option<RpcReceipt>, RpcFailure> {
        for a in i.attempts.iter().rev() {
            if let Some(r) = self.rpc.receipt(a.tx_hash).await? {
                if r.block_number.is_some() {
                    return Ok(Some(r));
                }
            }
        }
        Ok(None)
    }

    async fn replace_with_bumped_fees(
        &self,
        mut i: Intent,
    ) -> std::result::Result<Step, RpcFailure> {
        let (Some(nonce), Some(gas), Some(last)) =
            (i.nonce, i.gas_limit, i.attempts.last().cloned())
        else {
            return Ok(Step::Blocked);
        };
        let (cur_max, cur_prio, _) = self.fees().await?;
        let max_fee = (last.max_fee_per_gas.saturating_mul(5) / 4 + 1).max(cur_max);
        let prio = (last.max_priority_fee_per_gas.saturating_mul(5) / 4 + 1)
            .max(cur_prio)
            .min(max_fee);
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
    async fn reconcile(&self, mut i: Intent) -> std::result::Result<Step, RpcFailure> {
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
            let msg = format!("nonce {nonce} of {:#x} was consumed by another transaction; {hash:#x} was not included and is not re-sent", i.signer);
            let _ = self.fail(i, IntentState::Conflicting, "NONCE_CONFLICT", msg);
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
            Err(RpcFailure::Node { message, .. }) if fee_refusal(&message) => {
                self.replace_with_bumped_fees(i).await
            }
            Err(RpcFailure::Node { message, .. }) if nonce_too_low(&message) => Ok(Step::Blocked),
            Err(RpcFailure::Transport(m)) => Err(RpcFailure::Transport(m)),
            Err(f) => {
                // E.g. insufficient funds: the stored transaction is neither re-signed nor given
                // up (its nonce would leave a gap behind later intents); it waits, and the
                // reason is on the record and the status stream until it goes through.
                let message = f.message();
                warn!(intent = %i.id, error = %message, "re-broadcast refused; retrying later");
                if i.error.as_ref().map(|e| e.message.as_str()) != Some(message.as_str()) {
                    i.error = Some(ErrorInfo {
                        code: "REBROADCAST_REFUSED".into(),
                        message,
                    });
                    let _ = self.commit(i);
                }
                Ok(Step::Blocked)
            }
        }
    }

    /// First signing + broadcast of a queued intent.
    async fn send_new(
        &self,
        mut i: Intent,
        cache: &mut TickCache,
    ) -> std::result::Result<Step, RpcFailure> {
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
        let req = CallRequest {
            from: Some(i.signer),
            to: i.to,
            value: i.value,
            data: i.input.clone(),
        };
        let need = match self.rpc.gas_needed(&req).await {
            Ok(g) => g,
            Err(RpcFailure::Transport(m)) => return Err(RpcFailure::Transport(m)),
            Err(f) if f.is_gas_above_block() => {
                self.fail_above_block(i, None, block_gas, &f.message());
                return Ok(Step::Continue);
            }
            Err(f) if f.is_revert() => {
                let (code, message) = match &f {
                    RpcFailure::Node { data: Some(d), .. } if !d.is_empty() => {
                        let r = revert::decode(i.scope(), d);
                        (r.code, r.message)
                    }
                    other => {
                        let r = revert::decode_reason(i.scope(), &other.message());
                        (r.code, r.message)
                    }
                };
                let _ = self.fail(i, IntentState::Failed, &code, message);
                return Ok(Step::Continue);
            }
            Err(f) => {
                let e = f.into_error();
                let _ = self.fail(i, IntentState::Failed, e.code(), e.to_string());
                return Ok(Step::Continue);
            }
        };
        // Headroom over the need, but never above what a block can hold (a transaction asking
        // for more is refused by every node). When the headroom does not fit, the block's limit
        // is enough: the call was measured running with at most a block's gas (see
        // `GasNeed::measured`), so no second search is needed (an `eth_estimateGas` here cost
        // about ten more executions of a near-full block for every large merged batch). A call
        // that needs more than a block holds fails by name; a merged carrier is then split.
        let mut gas_limit = need.limit.saturating_mul(6) / 5 + 10_000;
        if let Some(block) = block_gas {
            if need.measured > block {
                self.fail_above_block(i, Some(need.measured), Some(block), "");
                return Ok(Step::Continue);
            }
            gas_limit = gas_limit.min(block);
        }
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
                let _ = self.fail(i, IntentState::Failed, e.code(), e.to_string());
                return Ok(Step::Continue);
            }
        };
        let raw = a.raw.clone();
        let hash = a.tx_hash;
        i.nonce = Some(nonce);
        i.gas_limit = Some(gas_limit);
        i.attempts.push(a);
        i.state = IntentState::Signed;
        if let Err(e) = self.commit(i.clone()) {
            warn!(error = %e, "outbox: cannot persist signed intent; not broadcasting");
            return Ok(Step::Blocked);
        }
        if let Err(e) = self
            .store
            .write_nonce(i.signer, nonce + 1, self.genesis_cached())
        {
            warn!(error = %e, "outbox: cannot persist nonce file");
        }
        self.journal(&i, "pending");
        fault_point(AbortAfter::Sign);
        match self.rpc.send_raw(&raw).await {
            Ok(_) => {}
            Err(RpcFailure::Node { message, .. }) if already_known(&message) => {}
            Err(RpcFailure::Transport(m)) => return Err(RpcFailure::Transport(m)),
            Err(RpcFailure::Node { message, .. })
                if nonce_too_low(&message) || fee_refusal(&message) =>
            {
                // Reconcile decides (consumed nonce ⇒ conflicting; fees ⇒ replacement).
                return Ok(Step::Blocked);
            }
            Err(f) => {
                // Hard rejection of the first broadcast: nothing is in any pool under this nonce,
                // and no later intent of this signer has been signed yet ⇒ give the nonce back.
                let (code, message) = match &f {
                    RpcFailure::Node { data: Some(d), .. } if !d.is_empty() => {
                        let r = revert::decode(i.scope(), d);
                        (r.code, r.message)
                    }
                    RpcFailure::Node { message, .. } if f.is_revert() => {
                        let r = revert::decode_reason(i.scope(), message);
                        (r.code, r.message)
                    }
                    other => {
                        let e = other.clone().into_error();
                        (e.code().to_string(), e.to_string())
                    }
                };
                let signer = i.signer;
                let _ = self.fail(i, IntentState::Failed, &code, message);
                let _ = self.store.write_nonce(signer, nonce, self.genesis_cached());
                cache.next_nonce.insert(signer, nonce);
                return Ok(Step::Continue);
            }
        }
        i.state = IntentState::Broadcast;
        if let Err(e) = self.commit(i.clone()) {
            warn!(error = %e, "store failed");
        }
        debug!(intent = %i.id, tx = %hash, nonce, "outbox: broadcast");
        fault_point(AbortAfter::Broadcast);
        // Automine/instant-seal chains: the receipt may already exist.
        if let Some(r) = self.find_receipt(&i).await? {
            let _ = self.finish_with_receipt(i, r).await;
        }
        Ok(Step::Continue)
    }

    /// One pass over all live intents. `Err` = every RPC URL is down.
    async fn tick(&self) -> std::result::Result<bool, RpcFailure> {
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

async fn worker(weak: std::sync::Weak<Inner>) {
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
                let b = backoff
                    .map(|b| (b * 2).min(inner.settings.max_backoff))
                    .unwrap_or(inner.settings.poll_interval);
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
