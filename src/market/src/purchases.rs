//! Stream purchases, seller side: a durable state machine per purchase under
//! `<data_dir>/market/purchases/<purchase id>.json` (written only through `peaqos_base::fsio`):
//!
//! ```text
//! seen → paid → access_prepared → delivered → recorded        (or refused, final)
//! ```
//!
//! * **seen**: the purchase is for one of this machine's listings, its buyer key is a valid
//!   X25519 key (low-order keys refused); nothing is granted.
//! * **paid**: the server says the payment is `verified` and the delivery is not `blocked`. The
//!   exact chunk ids sold are fixed here, before any key leaves the machine: the selection's
//!   `chunkIds`, or the sealed chunks of its time range, or (no selection) every chunk sealed now.
//!   **A purchase is never granted before this state is on disk.**
//! * **access_prepared**: buyer grants for exactly those chunks (the stream's grant code re-wraps
//!   each chunk key to the buyer) were accepted by `POST /stream/orders/{id}/prepare-access`.
//! * **delivered**: `delivery.completed` was posted (storage mode: the buyer fetches the chunks by
//!   their `storageRef` and now holds their keys).
//! * **recorded**: the server's purchase shows the delivery `completed`.
//!
//! [`Desk::advance`] moves a purchase as far as it can and is safe to rerun after a crash at any
//! point: each step is checked or repeated, never skipped (a repeated prepare-access wraps the same
//! chunk keys again; the server's answer for the order is the same).
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use peaqos_base::fsio::{self, FsError};
use peaqos_stream::grant::{chunk_ids_of, grant_chunk_ids, GrantRange};
use peaqos_stream::keys::MachineStreamKeys;
use serde::{Deserialize, Serialize};

use crate::agent::AgentCredentials;
use crate::client::OrchestrationClient;
use crate::error::{MarketError, Result};
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
}

/// `<data_dir>/market/purchases/`.
#[derive(Debug, Clone)]
pub struct PurchaseStore {
    dir: PathBuf,
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
        if !dir.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| FsError::new("create directory", &dir, e))?;
            fsio::sync_dir(dir.parent().unwrap_or(data_dir))?;
        }
        Ok(PurchaseStore { dir })
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
    /// listing id → topic, of this machine's listings.
    pub listings: &'a BTreeMap<String, String>,
}

fn state_name(s: PurchaseState) -> &'static str {
    match s {
        PurchaseState::Seen => "seen",
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

    /// The chunks a paid purchase buys (fixed once, stored before any grant).
    fn chunks_sold(&self, topic: &str, p: &Purchase) -> std::result::Result<Vec<String>, String> {
        let sel = p.resource.selection.clone().unwrap_or_default();
        if let Some(t) = sel.topic.as_deref().filter(|t| *t != topic) {
            return Err(format!("selection.topic {t:?} is not the listing's topic {topic:?}"));
        }
        let stream_err = |e: peaqos_stream::StreamError| e.to_string();
        if let Some(ids) = sel.chunk_ids.filter(|v| !v.is_empty()) {
            // every id must be a sealed chunk of this topic
            let dir = peaqos_stream::store::topic_dir(self.stream_dir, topic).map_err(stream_err)?;
            peaqos_stream::grant::select_chunk_ids(&dir, &ids).map_err(stream_err)?;
            return Ok(ids);
        }
        let range = match (sel.start_time.as_deref(), sel.end_time.as_deref()) {
            (None, None) => GrantRange::TimeMs { from: 0, to: u64::MAX },
            (a, b) => {
                let from = a.map(|s| rfc3339_ms(s).ok_or(format!("selection.startTime {s:?} is not RFC 3339")));
                let to = b.map(|s| rfc3339_ms(s).ok_or(format!("selection.endTime {s:?} is not RFC 3339")));
                GrantRange::TimeMs { from: from.transpose()?.unwrap_or(0), to: to.transpose()?.unwrap_or(u64::MAX) }
            }
        };
        let ids = chunk_ids_of(self.stream_dir, topic, &range).map_err(stream_err)?;
        if ids.is_empty() {
            return Err("the selection holds no sealed chunk".into());
        }
        Ok(ids)
    }

    /// Move purchase `id` as far as it goes now; returns where it stands.
    pub async fn advance(&self, id: &str, mut hook: Option<PurchaseHook<'_>>) -> Result<PurchaseState> {
        safe_id(id)?;
        loop {
            let rec = self.store.load(id)?;
            let Some(mut r) = rec else {
                let p = self.client.get_purchase(id).await?;
                let Some(topic) = self.listings.get(&p.resource.listing_id).cloned() else {
                    // not ours (or not listed any more): remember that, grant nothing
                    let r = PurchaseRecord {
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
                    };
                    return self.refuse(r, format!("listing {} is not one of this machine's", p.resource.listing_id));
                };
                let r = PurchaseRecord {
                    version: VERSION,
                    purchase_id: id.into(),
                    listing_id: p.resource.listing_id.clone(),
                    topic,
                    buyer_id: p.buyer.id.clone(),
                    buyer_public_key_hex: p.buyer.public_key.public_key_hex.clone(),
                    state: PurchaseState::Seen,
                    chunk_ids: vec![],
                    payment_reference: None,
                    delivery_session_id: None,
                    refusal: None,
                };
                if p.resource.kind != "stream.listing" || p.buyer.public_key.kind != "x25519" {
                    return self.refuse(
                        r,
                        format!("resource {} / key {} not sold here", p.resource.kind, p.buyer.public_key.kind),
                    );
                }
                if let Err(e) = peaqos_stream::crypto::parse_x25519_public(&r.buyer_public_key_hex, "buyer.publicKey") {
                    return self.refuse(r, e.to_string());
                }
                self.store.save(&r)?;
                tracing::info!(purchase = %id, listing = %r.listing_id, "market: purchase seen");
                hook_at(&mut hook, "seen")?;
                continue;
            };
            match r.state {
                PurchaseState::Seen => {
                    let p = self.client.get_purchase(id).await?;
                    if !is_paid(&p) {
                        return Ok(PurchaseState::Seen);
                    }
                    match self.chunks_sold(&r.topic, &p) {
                        Ok(ids) => r.chunk_ids = ids,
                        Err(why) => return self.refuse(r, why),
                    }
                    r.payment_reference = p.payment.reference.clone();
                    r.state = PurchaseState::Paid;
                    self.store.save(&r)?;
                    tracing::info!(purchase = %id, chunks = r.chunk_ids.len(), "market: purchase paid");
                    hook_at(&mut hook, "paid")?;
                }
                PurchaseState::Paid => {
                    let buyer_pk =
                        peaqos_stream::crypto::parse_x25519_public(&r.buyer_public_key_hex, "buyer.publicKey")
                            .map_err(|e| MarketError::validation("buyer.publicKey", e.to_string()))?;
                    let entries =
                        grant_chunk_ids(self.stream_dir, &r.topic, &r.chunk_ids, self.keys, &buyer_pk, &r.buyer_id)
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
                    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
                    let req = PrepareAccessRequest {
                        machine_id: self.creds.machine_id.clone(),
                        agent_id: self.creds.agent_id.clone(),
                        agent_token: self.creds.token.clone(),
                        items,
                        delivery: PrepareDelivery {
                            mode: "storage".into(),
                            transport_id: crate::offers::TRANSPORT_ID.into(),
                            connect: DeliveryConnect {
                                kind: "storage-ref".into(),
                                url: format!("peaqos-storage:{}", r.listing_id),
                                expires_at: expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                            },
                        },
                    };
                    let resp = self.client.prepare_access(id, &req).await?;
                    hook_at(&mut hook, "prepare-access accepted")?;
                    r.delivery_session_id = Some(resp.item.delivery_session_id);
                    r.state = PurchaseState::AccessPrepared;
                    self.store.save(&r)?;
                    tracing::info!(purchase = %id, chunks = r.chunk_ids.len(), "market: buyer access prepared");
                    hook_at(&mut hook, "access_prepared")?;
                }
                PurchaseState::AccessPrepared => {
                    let req = PurchaseEventRequest {
                        actor: PurchaseEventActor {
                            kind: "seller".into(),
                            machine_id: self.creds.machine_id.clone(),
                            agent_id: self.creds.agent_id.clone(),
                        },
                        kind: "delivery.completed".into(),
                        payload: Some(serde_json::json!({"chunkIds": r.chunk_ids, "mode": "storage"})),
                    };
                    self.client.purchase_event(id, &req).await?;
                    r.state = PurchaseState::Delivered;
                    self.store.save(&r)?;
                    hook_at(&mut hook, "delivered")?;
                }
                PurchaseState::Delivered => {
                    let p = self.client.get_purchase(id).await?;
                    if p.delivery.status != "completed" {
                        return Ok(PurchaseState::Delivered);
                    }
                    r.state = PurchaseState::Recorded;
                    self.store.save(&r)?;
                    tracing::info!(purchase = %id, "market: sale recorded");
                    hook_at(&mut hook, "recorded")?;
                }
                s @ (PurchaseState::Recorded | PurchaseState::Refused) => return Ok(s),
            }
            tracing::debug!(purchase = %id, state = state_name(r.state), "market: purchase state");
        }
    }
}
