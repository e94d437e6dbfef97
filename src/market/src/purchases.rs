//! Stream purchases, seller side: a durable state machine per purchase under
//! `<data_dir>/market/purchases/<purchase id>.json` (written only through `peaqos_base::fsio`):
//!
//! ```text
//! seen → quoted → paid → access_prepared → delivered → recorded        (or refused, final)
//! ```
//!
//! * **seen**: the purchase is for one of this machine's listings, its buyer key is a valid
//!   X25519 key (low-order keys refused); the exact chunk ids sold are fixed and stored here:
//!   the selection's `chunkIds`, or the sealed chunks of its time range, or (no selection) every
//!   chunk sealed now. Nothing is granted.
//! * **quoted**: the quote (those chunk ids, `price × chunks` in the listing's currency) was sent
//!   to the server as a `seller.ready` purchase event, so the buyer pays for a known set.
//! * **paid**: the server says the payment is `verified` and the delivery is not `blocked`, and,
//!   for a `transfer` rail on the chain this node reads, the node found the transfer itself
//!   ([`crate::settle`]): a successful transaction, final, paying at least the quote to the
//!   rail's `pay_to` in its token, and not already used for another purchase
//!   (`market/payments/<tx>.json`). **A purchase is never granted before this state is on disk.**
//! * **access_prepared**: buyer grants for exactly those chunks (the stream's grant code re-wraps
//!   each chunk key to the buyer) were accepted by `POST /stream/orders/{id}/prepare-access`.
//! * **delivered**: `delivery.completed` was posted (storage mode: the buyer fetches the chunks by
//!   their `storageRef` and now holds their keys).
//! * **recorded**: the server's purchase shows the delivery `completed`, and the sale's revenue
//!   event is in the chain client's durable outbox, once per purchase (`raw_data` = the sale
//!   receipt; see [`crate::settle`]).
//!
//! [`Desk::advance`] moves a purchase as far as it can and is safe to rerun after a crash at any
//! point: each step is checked or repeated, never skipped (a repeated prepare-access wraps the same
//! chunk keys again; the server's answer for the order is the same; the revenue event is keyed
//! by the purchase id, so a repeat finds the first).
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use peaqos_base::fsio::{self, FsError};
use peaqos_stream::grant::{grant_chunk_ids, GrantRange};
use peaqos_stream::keys::MachineStreamKeys;
use serde::{Deserialize, Serialize};

use crate::agent::AgentCredentials;
use crate::client::OrchestrationClient;
use crate::error::{MarketError, Result};
use crate::money::Amount;
use crate::seller::Listing;
use crate::settle::{PaymentCheck, SaleChain, SaleRecord, TransferTerms};
use crate::wire::{
    AccessBuyer, AccessItem, DeliveryConnect, PrepareAccessRequest, PrepareDelivery, Purchase, PurchaseEventActor,
    PurchaseEventRequest,
};

const VERSION: u32 = 1;

/// Where a purchase stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseState {
    Seen,
    Quoted,
    Paid,
    AccessPrepared,
    Delivered,
    Recorded,
    Refused,
}

impl PurchaseState {
    pub fn is_final(self) -> bool {
        matches!(self, PurchaseState::Recorded | PurchaseState::Refused)
    }
}

/// The durable record of one purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurchaseRecord {
    pub version: u32,
    pub purchase_id: String,
    pub listing_id: String,
    pub topic: String,
    pub buyer_id: String,
    pub buyer_public_key_hex: String,
    pub state: PurchaseState,
    /// The chunks sold, fixed when the payment is seen verified.
    #[serde(default)]
    pub chunk_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// The quote: `price × chunks` (canonical decimal) in `currency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The rail the server says was paid (`transfer`, `x402`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_rail: Option<String>,
    /// How the payment was checked: `chain: block N, payer 0x…` when the node found it on chain
    /// itself, `server` when the rail is not on a chain the node reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_check: Option<String>,
    /// The outbox intent of the sale's revenue event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue_intent_id: Option<String>,
    /// The chain indices of `chunk_ids`, in the same order (for the local delivery endpoint).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunk_indices: Vec<u64>,
    /// Until when (Unix ms) the local delivery endpoint serves this purchase (its bearer token's
    /// lifetime), when the purchase is delivered that way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_expires_ms: Option<u64>,
}

/// `<data_dir>/market/purchases/`.
#[derive(Debug, Clone)]
pub struct PurchaseStore {
    dir: PathBuf,
    /// Held while a payment reference is claimed (check, then write), so that two purchases
    /// served at once cannot both claim one payment.
    claims: std::sync::Arc<std::sync::Mutex<()>>,
}

fn safe_id(id: &str) -> Result<&str> {
    let ok = (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.~".contains(&b));
    if ok && id != "." && id != ".." {
        Ok(id)
    } else {
        Err(MarketError::validation("purchaseId", "must be 1..128 of letters, digits and _-.~"))
    }
}

impl PurchaseStore {
    pub fn open(data_dir: &Path) -> Result<PurchaseStore> {
        let dir = peaqos_base::layout::market_dir(data_dir).join("purchases");
        fsio::create_private_dir(&dir)?;
        Ok(PurchaseStore { dir, claims: Default::default() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &str) -> Result<PathBuf> {
        Ok(self.dir.join(format!("{}.json", safe_id(id)?)))
    }

    pub fn load(&self, id: &str) -> Result<Option<PurchaseRecord>> {
        let path = self.path(id)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FsError::new("read", path, e).into()),
        };
        let r: PurchaseRecord = serde_json::from_slice(&bytes)
            .map_err(|e| MarketError::State { path: path.clone(), message: e.to_string() })?;
        if r.version != VERSION || r.purchase_id != id {
            return Err(MarketError::State { path, message: format!("not version {VERSION} of purchase {id}") });
        }
        Ok(Some(r))
    }

    pub fn save(&self, r: &PurchaseRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(r).expect("state serializes");
        fsio::write_atomic(&self.path(&r.purchase_id)?, &bytes)?;
        Ok(())
    }

    /// Claim payment `reference` for purchase `id`: `Ok(None)` when it is ours (now or before),
    /// `Ok(Some(other))` when another purchase was settled with it.
    pub fn claim_payment(&self, reference: &str, id: &str) -> Result<Option<String>> {
        let dir = self.dir.with_file_name("payments");
        let name = reference.to_ascii_lowercase();
        if !crate::settle::is_tx_hash(&name) {
            return Err(MarketError::validation("payment.reference", "must be 0x and 64 hex digits"));
        }
        let path = dir.join(format!("{name}.json"));
        let _claiming = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        match std::fs::read(&path) {
            Ok(b) => {
                let v: serde_json::Value = serde_json::from_slice(&b)
                    .map_err(|e| MarketError::State { path: path.clone(), message: e.to_string() })?;
                let other = v["purchaseId"].as_str().unwrap_or_default();
                return Ok((other != id).then(|| other.to_string()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(FsError::new("read", path, e).into()),
        }
        fsio::create_private_dir(&dir)?;
        let body = serde_json::to_vec(&serde_json::json!({"purchaseId": id, "reference": name})).expect("json");
        fsio::write_atomic(&path, &body)?;
        Ok(None)
    }

    /// Delete the records of final purchases (recorded or refused) last written more than
    /// `older_than` ago; returns how many. Open purchases are never touched, and the payment
    /// claims (`market/payments/`, a few bytes each) stay, so a pruned sale's payment still cannot
    /// settle another purchase.
    pub fn prune_final(&self, older_than: std::time::Duration) -> Result<u64> {
        let now = std::time::SystemTime::now();
        let mut pruned = 0;
        for e in std::fs::read_dir(&self.dir).map_err(|e| FsError::new("read directory", &self.dir, e))? {
            let e = e.map_err(|e| FsError::new("read directory", &self.dir, e))?;
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else { continue };
            let age = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| now.duration_since(t).ok());
            if age.is_none_or(|a| a <= older_than) {
                continue;
            }
            if self.load(id)?.is_some_and(|r| r.state.is_final()) {
                let path = e.path();
                std::fs::remove_file(&path).map_err(|e| FsError::new("remove", &path, e))?;
                pruned += 1;
            }
        }
        if pruned > 0 {
            fsio::sync_dir(&self.dir)?;
        }
        Ok(pruned)
    }

    /// Every stored purchase that is not final (to poll after a restart or reconnect).
    pub fn open_purchases(&self) -> Result<Vec<PurchaseRecord>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(|e| FsError::new("read directory", &self.dir, e))? {
            let name = e.map_err(|e| FsError::new("read directory", &self.dir, e))?.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else { continue };
            if let Some(r) = self.load(id)? {
                if !r.state.is_final() {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }
}

/// Observer of the state changes (tests stop there to simulate a crash); fires after each state
/// is on disk, and once more right after prepare-access succeeded, before that is stored.
pub type PurchaseHook<'a> = &'a mut (dyn FnMut(&str) -> ControlFlow<()> + Send);

fn hook_at(hook: &mut Option<PurchaseHook<'_>>, at: &'static str) -> Result<()> {
    match hook.as_mut().map(|h| h(at)) {
        Some(ControlFlow::Break(())) => Err(MarketError::Interrupted(at)),
        _ => Ok(()),
    }
}

/// Everything needed to serve purchases.
pub struct Desk<'a> {
    pub client: &'a OrchestrationClient,
    pub store: &'a PurchaseStore,
    /// The stream root (`<data_dir>/stream`) holding the topics' chunk chains.
    pub stream_dir: &'a Path,
    pub keys: &'a MachineStreamKeys,
    pub creds: &'a AgentCredentials,
    /// This machine's listings, by listing id.
    pub listings: &'a BTreeMap<String, Listing>,
    /// The chain payments are checked on and sales recorded on (`None`: neither; the server's
    /// word on payments is taken and no revenue event is written).
    pub chain: Option<&'a SaleChain>,
    /// The local delivery endpoint purchases are handed over through (`None`: storage mode).
    pub http: Option<&'a crate::delivery::HttpDelivery>,
}

/// Where a step leaves a purchase: go on with the next state, or stop here for now.
enum Step {
    Next(&'static str),
    Wait,
}

pub fn state_name(s: PurchaseState) -> &'static str {
    match s {
        PurchaseState::Seen => "seen",
        PurchaseState::Quoted => "quoted",
        PurchaseState::Paid => "paid",
        PurchaseState::AccessPrepared => "access_prepared",
        PurchaseState::Delivered => "delivered",
        PurchaseState::Recorded => "recorded",
        PurchaseState::Refused => "refused",
    }
}

/// Paid: the payment verified and the delivery released.
pub fn is_paid(p: &Purchase) -> bool {
    p.payment.status == "verified" && p.delivery.status != "blocked"
}

fn rfc3339_ms(s: &str) -> Option<u64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().and_then(|t| u64::try_from(t.timestamp_millis()).ok())
}

impl Desk<'_> {
    fn refuse(&self, mut r: PurchaseRecord, why: String) -> Result<PurchaseState> {
        tracing::warn!(purchase = %r.purchase_id, reason = %why, "market: purchase refused");
        r.state = PurchaseState::Refused;
        r.refusal = Some(why);
        self.store.save(&r)?;
        Ok(PurchaseState::Refused)
    }

    /// The chunks a purchase buys, (index, id) in chain order (fixed once, stored before anything
    /// is granted).
    fn chunks_sold(&self, topic: &str, p: &Purchase) -> std::result::Result<Vec<(u64, String)>, String> {
        let sel = p.resource.selection.clone().unwrap_or_default();
        if let Some(t) = sel.topic.as_deref().filter(|t| *t != topic) {
            return Err(format!("selection.topic {t:?} is not the listing's topic {topic:?}"));
        }
        let stream_err = |e: peaqos_stream::StreamError| e.to_string();
        if let Some(ids) = sel.chunk_ids.filter(|v| !v.is_empty()) {
            // every id must be a sealed chunk of this topic
            let dir = peaqos_stream::store::topic_dir(self.stream_dir, topic).map_err(stream_err)?;
            let indices = peaqos_stream::grant::select_chunk_ids(&dir, &ids).map_err(stream_err)?;
            return Ok(indices.into_iter().zip(ids).collect());
        }
        let range = match (sel.start_time.as_deref(), sel.end_time.as_deref()) {
            (None, None) => GrantRange::TimeMs { from: 0, to: u64::MAX },
            (a, b) => {
                let from = a.map(|s| rfc3339_ms(s).ok_or(format!("selection.startTime {s:?} is not RFC 3339")));
                let to = b.map(|s| rfc3339_ms(s).ok_or(format!("selection.endTime {s:?} is not RFC 3339")));
                GrantRange::TimeMs { from: from.transpose()?.unwrap_or(0), to: to.transpose()?.unwrap_or(u64::MAX) }
            }
        };
        let dir = peaqos_stream::store::topic_dir(self.stream_dir, topic).map_err(stream_err)?;
        let indices = peaqos_stream::grant::select_indices(&dir, &range).map_err(stream_err)?;
        if indices.is_empty() {
            return Err("the selection holds no sealed chunk".into());
        }
        indices
            .into_iter()
            .map(|i| Ok((i, peaqos_stream::store::load_chunk(&dir, i).map_err(stream_err)?.chunk_id)))
            .collect()
    }

    /// Move purchase `id` as far as it goes now; returns where it stands.
    pub async fn advance(&self, id: &str, mut hook: Option<PurchaseHook<'_>>) -> Result<PurchaseState> {
        safe_id(id)?;
        loop {
            let Some(mut r) = self.store.load(id)? else {
                match self.first_sight(id).await? {
                    Ok(()) => {
                        hook_at(&mut hook, "seen")?;
                        continue;
                    }
                    Err(final_state) => return Ok(final_state),
                }
            };
            let step = match r.state {
                PurchaseState::Seen => self.quote(&mut r).await?,
                PurchaseState::Quoted => self.take_payment(&mut r).await?,
                PurchaseState::Paid => self.prepare_access(&mut r, &mut hook).await?,
                PurchaseState::AccessPrepared => self.deliver(&mut r).await?,
                PurchaseState::Delivered => self.record(&mut r).await?,
                s @ (PurchaseState::Recorded | PurchaseState::Refused) => return Ok(s),
            };
            match step {
                Step::Wait => return Ok(r.state),
                Step::Next(at) => {
                    tracing::debug!(purchase = %id, state = state_name(r.state), "market: purchase state");
                    hook_at(&mut hook, at)?;
                    if r.state.is_final() {
                        return Ok(r.state);
                    }
                }
            }
        }
    }

    /// A purchase not seen before: stored as `seen` with the chunks it buys (`Ok`), or refused
    /// (`Err(Refused)`: not ours, not sold here, a bad buyer key, nothing to sell).
    async fn first_sight(&self, id: &str) -> Result<std::result::Result<(), PurchaseState>> {
        let p = self.client.get_purchase(id).await?;
        let mut r = PurchaseRecord {
            version: VERSION,
            purchase_id: id.into(),
            listing_id: p.resource.listing_id.clone(),
            topic: String::new(),
            buyer_id: p.buyer.id.clone(),
            buyer_public_key_hex: p.buyer.public_key.public_key_hex.clone(),
            state: PurchaseState::Seen,
            chunk_ids: vec![],
            payment_reference: None,
            delivery_session_id: None,
            refusal: None,
            amount: None,
            currency: None,
            payment_rail: None,
            payment_check: None,
            revenue_intent_id: None,
            chunk_indices: vec![],
            delivery_expires_ms: None,
        };
        let Some(listing) = self.listings.get(&p.resource.listing_id) else {
            // not ours (or not listed any more): remember that, grant nothing
            let why = format!("listing {} is not one of this machine's", p.resource.listing_id);
            return self.refuse(r, why).map(Err);
        };
        r.topic = listing.topic.clone();
        if p.resource.kind != "stream.listing" || p.buyer.public_key.kind != "x25519" {
            let why = format!("resource {} / key {} not sold here", p.resource.kind, p.buyer.public_key.kind);
            return self.refuse(r, why).map(Err);
        }
        if let Err(e) = peaqos_stream::crypto::parse_x25519_public(&r.buyer_public_key_hex, "buyer.publicKey") {
            return self.refuse(r, e.to_string()).map(Err);
        }
        match self.chunks_sold(&r.topic, &p) {
            Ok(sold) => (r.chunk_indices, r.chunk_ids) = sold.into_iter().unzip(),
            Err(why) => return self.refuse(r, why).map(Err),
        }
        let n = u64::try_from(r.chunk_ids.len()).unwrap_or(u64::MAX);
        let Some(amount) = listing.terms.price.times(n) else {
            return self.refuse(r, "price × chunks overflows".into()).map(Err);
        };
        r.amount = Some(amount.to_string());
        r.currency = Some(listing.terms.currency.clone());
        self.store.save(&r)?;
        tracing::info!(purchase = %id, listing = %r.listing_id, chunks = r.chunk_ids.len(), "market: purchase seen");
        Ok(Ok(()))
    }

    fn actor(&self) -> PurchaseEventActor {
        PurchaseEventActor {
            kind: "seller".into(),
            machine_id: self.creds.machine_id.clone(),
            agent_id: self.creds.agent_id.clone(),
        }
    }

    /// seen → quoted: tell the server (and so the buyer) what the purchase buys and costs.
    async fn quote(&self, r: &mut PurchaseRecord) -> Result<Step> {
        let quote = serde_json::json!({"chunkIds": r.chunk_ids, "amount": r.amount, "currency": r.currency});
        self.announce(r, "seller.ready", quote, PurchaseState::Quoted, "quoted").await
    }

    /// Post purchase event `kind` as the seller, then store the purchase in state `next`.
    async fn announce(
        &self,
        r: &mut PurchaseRecord,
        kind: &str,
        payload: serde_json::Value,
        next: PurchaseState,
        at: &'static str,
    ) -> Result<Step> {
        let req = PurchaseEventRequest { actor: self.actor(), kind: kind.into(), payload: Some(payload) };
        self.client.purchase_event(&r.purchase_id, &req).await?;
        r.state = next;
        self.store.save(r)?;
        Ok(Step::Next(at))
    }

    /// quoted → paid, once the server says so and, where the node can, the chain agrees.
    async fn take_payment(&self, r: &mut PurchaseRecord) -> Result<Step> {
        let p = self.client.get_purchase(&r.purchase_id).await?;
        if !is_paid(&p) {
            return Ok(Step::Wait);
        }
        r.payment_reference = p.payment.reference.clone();
        r.payment_rail = p.payment.rail.clone();
        match self.check_on_chain(r).await? {
            Some(Ok(check)) => r.payment_check = Some(check),
            Some(Err(why)) => {
                let id = r.purchase_id.clone();
                self.refuse(r.clone(), why)?;
                *r = self.store.load(&id)?.unwrap_or_else(|| r.clone());
                return Ok(Step::Next("refused"));
            }
            None => return Ok(Step::Wait),
        }
        r.state = PurchaseState::Paid;
        self.store.save(r)?;
        tracing::info!(purchase = %r.purchase_id, chunks = r.chunk_ids.len(), check = ?r.payment_check, "market: purchase paid");
        Ok(Step::Next("paid"))
    }

    /// The node's own check of a payment the server calls verified: `Some(Ok(how))` when it
    /// holds (or cannot be checked here: `server`), `Some(Err(why))` when it does not,
    /// `None` while it is not final yet.
    async fn check_on_chain(&self, r: &PurchaseRecord) -> Result<Option<std::result::Result<String, String>>> {
        let listing = self.listings.get(&r.listing_id);
        let rails: Vec<&TransferTerms> = match (self.chain, listing) {
            (Some(c), Some(l)) if r.payment_rail.as_deref() == Some("transfer") => {
                l.terms.transfer_rails.iter().filter(|t| c.reads(&t.chain)).collect()
            }
            _ => vec![],
        };
        let (Some(chain), false) = (self.chain, rails.is_empty()) else {
            return Ok(Some(Ok("server".into())));
        };
        let Some(reference) = r.payment_reference.as_deref() else {
            return Ok(Some(Err("the server reports a transfer payment without a reference".into())));
        };
        let amount = Amount::parse(r.amount.as_deref().unwrap_or("0"), "amount")
            .map_err(|m| MarketError::validation("amount", m))?;
        let mut why = Vec::new();
        for rail in rails {
            let Some(due) = amount.in_units_of(rail.token_decimals) else {
                why.push(format!("{} has more decimals than {} ({})", amount, rail.token, rail.token_decimals));
                continue;
            };
            match chain.check_payment(rail, reference, due).await? {
                PaymentCheck::Confirmed { payer, block } => {
                    if let Some(other) = self.store.claim_payment(reference, &r.purchase_id)? {
                        return Ok(Some(Err(format!("payment {reference} already settled purchase {other}"))));
                    }
                    return Ok(Some(Ok(format!("chain: block {block}, payer {payer}"))));
                }
                PaymentCheck::Pending(reason) => {
                    tracing::debug!(purchase = %r.purchase_id, %reason, "market: payment not final yet");
                    return Ok(None);
                }
                PaymentCheck::Mismatch(reason) => why.push(reason),
            }
        }
        Ok(Some(Err(format!("payment not found on chain: {}", why.join("; ")))))
    }

    /// paid → access_prepared: wrap each sold chunk's key to the buyer, hand them to the server.
    async fn prepare_access(&self, r: &mut PurchaseRecord, hook: &mut Option<PurchaseHook<'_>>) -> Result<Step> {
        let buyer_pk = peaqos_stream::crypto::parse_x25519_public(&r.buyer_public_key_hex, "buyer.publicKey")
            .map_err(|e| MarketError::validation("buyer.publicKey", e.to_string()))?;
        let entries = grant_chunk_ids(self.stream_dir, &r.topic, &r.chunk_ids, self.keys, &buyer_pk, &r.buyer_id)
            .map_err(|e| MarketError::validation("chunkIds", e.to_string()))?;
        let items = entries
            .into_iter()
            .map(|e| AccessItem {
                schema_version: e.schema_version,
                chunk_id: e.chunk_id,
                buyer: AccessBuyer {
                    recipient_id: e.buyer.recipient_id,
                    recipient_type: "buyer".into(),
                    algorithm: e.buyer.algorithm,
                    public_key_hex: e.buyer.public_key_hex,
                    wrapped_key_hex: e.buyer.wrapped_key_hex,
                },
            })
            .collect();
        let delivery = match self.http {
            Some(http) => {
                // the endpoint's bearer token is derived, not stored: a repeated prepare-access
                // hands over the same one, valid until the first expiry stored here
                let expires_ms = *r.delivery_expires_ms.get_or_insert_with(|| http.expires_ms_from_now());
                PrepareDelivery {
                    mode: "p2p".into(),
                    transport_id: crate::delivery::TRANSPORT_ID.into(),
                    connect: DeliveryConnect {
                        kind: crate::delivery::CONNECT_TYPE.into(),
                        url: http.connect_url(&r.purchase_id),
                        expires_at: crate::delivery::rfc3339_ms(expires_ms),
                    },
                }
            }
            None => PrepareDelivery {
                mode: "storage".into(),
                transport_id: crate::offers::TRANSPORT_ID.into(),
                connect: DeliveryConnect {
                    kind: "storage-ref".into(),
                    url: format!("peaqos-storage:{}", r.listing_id),
                    expires_at: (chrono::Utc::now() + chrono::Duration::hours(1))
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                },
            },
        };
        let req = PrepareAccessRequest {
            machine_id: self.creds.machine_id.clone(),
            agent_id: self.creds.agent_id.clone(),
            agent_token: self.creds.token.clone(),
            items,
            delivery,
        };
        let resp = self.client.prepare_access(&r.purchase_id, &req).await?;
        hook_at(hook, "prepare-access accepted")?;
        r.delivery_session_id = Some(resp.item.delivery_session_id);
        r.state = PurchaseState::AccessPrepared;
        self.store.save(r)?;
        tracing::info!(purchase = %r.purchase_id, chunks = r.chunk_ids.len(), "market: buyer access prepared");
        Ok(Step::Next("access_prepared"))
    }

    /// access_prepared → delivered.
    async fn deliver(&self, r: &mut PurchaseRecord) -> Result<Step> {
        let mode = if r.delivery_expires_ms.is_some() { "p2p" } else { "storage" };
        let done = serde_json::json!({"chunkIds": r.chunk_ids, "mode": mode});
        self.announce(r, "delivery.completed", done, PurchaseState::Delivered, "delivered").await
    }

    /// delivered → recorded: the server shows the delivery completed; the revenue event is in
    /// the outbox (once per purchase).
    async fn record(&self, r: &mut PurchaseRecord) -> Result<Step> {
        let p = self.client.get_purchase(&r.purchase_id).await?;
        if p.delivery.status != "completed" {
            return Ok(Step::Wait);
        }
        if let Some(chain) = self.chain {
            r.revenue_intent_id = Some(self.record_revenue(chain, r).await?);
        }
        r.state = PurchaseState::Recorded;
        self.store.save(r)?;
        tracing::info!(purchase = %r.purchase_id, revenue_intent = ?r.revenue_intent_id, "market: sale recorded");
        Ok(Step::Next("recorded"))
    }

    async fn record_revenue(&self, chain: &SaleChain, r: &PurchaseRecord) -> Result<String> {
        let listing = self.listings.get(&r.listing_id);
        let minor = listing.map_or(2, |l| l.terms.minor_units);
        let amount_text = r.amount.clone().unwrap_or_else(|| "0".into());
        let amount = Amount::parse(&amount_text, "amount").map_err(|m| MarketError::validation("amount", m))?;
        let value_minor = amount.in_units_of(minor).ok_or_else(|| {
            MarketError::validation("amount", format!("{amount} is not whole in minor units ({minor})"))
        })?;
        let currency = r.currency.clone().unwrap_or_default();
        let receipt = crate::settle::receipt(
            &r.purchase_id,
            &r.listing_id,
            &r.topic,
            &self.creds.machine_id,
            &r.buyer_id,
            &r.chunk_ids,
            &amount_text,
            &currency,
            r.payment_rail.as_deref(),
            r.payment_reference.as_deref(),
        );
        let on_chain = r.payment_check.as_deref().is_some_and(|c| c.starts_with("chain:"));
        let sale = SaleRecord {
            purchase_id: &r.purchase_id,
            receipt: &receipt,
            value_minor,
            currency: &currency,
            verified_payment: r.payment_reference.as_deref().filter(|_| on_chain),
        };
        chain.record_sale(&sale).await
    }
}

#[cfg(test)]
mod retention_tests {
    use super::*;

    fn record(id: &str, state: PurchaseState) -> PurchaseRecord {
        serde_json::from_value(serde_json::json!({
            "version": VERSION, "purchaseId": id, "listingId": "lst_1", "topic": "/cam", "buyerId": "b",
            "buyerPublicKeyHex": "22".repeat(32), "state": state}))
        .expect("record")
    }

    fn age(store: &PurchaseStore, id: &str, by: std::time::Duration) {
        let f = std::fs::File::options().write(true).open(store.dir().join(format!("{id}.json"))).unwrap();
        f.set_modified(std::time::SystemTime::now() - by).unwrap();
    }

    #[test]
    fn only_old_final_records_are_pruned_and_payment_claims_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = PurchaseStore::open(dir.path()).unwrap();
        let day = std::time::Duration::from_secs(86_400);
        for (id, state) in [
            ("old_recorded", PurchaseState::Recorded),
            ("old_refused", PurchaseState::Refused),
            ("old_open", PurchaseState::Paid),
            ("new_recorded", PurchaseState::Recorded),
        ] {
            store.save(&record(id, state)).unwrap();
        }
        for id in ["old_recorded", "old_refused", "old_open"] {
            age(&store, id, 3 * day);
        }
        let tx = format!("0x{}", "ab".repeat(32));
        assert_eq!(store.claim_payment(&tx, "old_recorded").unwrap(), None);
        assert_eq!(store.prune_final(2 * day).unwrap(), 2);
        assert!(store.load("old_recorded").unwrap().is_none() && store.load("old_refused").unwrap().is_none());
        assert!(store.load("old_open").unwrap().is_some(), "an open purchase is never pruned");
        assert!(store.load("new_recorded").unwrap().is_some(), "a recent one stays");
        assert_eq!(store.claim_payment(&tx, "another").unwrap().as_deref(), Some("old_recorded"));
        assert_eq!(store.prune_final(2 * day).unwrap(), 0);
    }
}
