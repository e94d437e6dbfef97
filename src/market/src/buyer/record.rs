//! One durable record per order under `<data_dir>/market/orders/<order key>.json`, rewritten
//! atomically (tmp + fsync + rename + dir fsync) at every step, before the step is reported: after
//! a `kill -9` the order resumes from the last state on disk.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use peaqos_base::fsio;
use serde::{Deserialize, Serialize};

use super::desk::{OrderGoal, OrderResult, Step};
use crate::error::{MarketError, Result};

const VERSION: u32 = 1;

/// Where an order is. Each state names what is done; the driver does the next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Goal stored; nothing asked yet.
    Requested,
    /// A quote chosen.
    Quoted,
    /// About to create the order (a crash here may have created it: look it up first).
    Ordering,
    /// The server's order exists.
    Ordered,
    /// The payment intent is checked against the quote and budget.
    PaymentDue,
    /// Limits passed and the spend counted: the payment is (being) stored in the outbox.
    Paying,
    /// The payment transaction is included.
    Paid,
    /// The server accepted the payment proof (or escrow lock).
    ProofAccepted,
    /// Execute sent (a crash here re-sends it: the server answers the saved execution).
    Executing,
    /// Ended: a native run returned.
    Executed,
    /// Ended: an external handoff.
    Handoff,
    /// After delivery: the caller confirmed.
    Confirmed,
    /// After delivery: the caller disputed.
    Disputed,
    /// Ended without delivery.
    Failed,
    /// Ended by the caller before payment.
    Cancelled,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Requested => "requested",
            OrderState::Quoted => "quoted",
            OrderState::Ordering => "ordering",
            OrderState::Ordered => "ordered",
            OrderState::PaymentDue => "payment_due",
            OrderState::Paying => "paying",
            OrderState::Paid => "paid",
            OrderState::ProofAccepted => "proof_accepted",
            OrderState::Executing => "executing",
            OrderState::Executed => "executed",
            OrderState::Handoff => "handoff",
            OrderState::Confirmed => "confirmed",
            OrderState::Disputed => "disputed",
            OrderState::Failed => "failed",
            OrderState::Cancelled => "cancelled",
        }
    }

    /// No further step of the driver (the action's result is known).
    pub fn is_end(self) -> bool {
        matches!(
            self,
            OrderState::Executed
                | OrderState::Handoff
                | OrderState::Confirmed
                | OrderState::Disputed
                | OrderState::Failed
                | OrderState::Cancelled
        )
    }

    /// The payment is signed (or about to be): a cancel is refused from here on.
    pub fn payment_committed(self) -> bool {
        !matches!(
            self,
            OrderState::Requested
                | OrderState::Quoted
                | OrderState::Ordering
                | OrderState::Ordered
                | OrderState::PaymentDue
                | OrderState::Cancelled
        )
    }

    /// The feedback step this state reports.
    pub fn step(self) -> Step {
        match self {
            OrderState::Requested => Step::Accepted,
            OrderState::Quoted | OrderState::Ordering => Step::Quoted,
            OrderState::Ordered => Step::Ordered,
            OrderState::PaymentDue | OrderState::Paying => Step::PaymentIntent,
            OrderState::Paid => Step::Paid,
            OrderState::ProofAccepted => Step::ProofAccepted,
            OrderState::Executing => Step::Executing,
            _ => Step::Done,
        }
    }
}

/// What is to be paid, fixed before anything is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentPlan {
    pub payment_id: String,
    /// `wallet` / `wdk-usdt-transfer` (transfer to the payee) or `onchain-escrow` / `escrow`.
    pub rail_type: String,
    pub chain: String,
    pub token: String,
    /// The ERC-20; `None`: native value.
    pub token_address: Option<String>,
    pub token_decimals: u32,
    /// Where the transfer goes: the payee, or the escrow contract.
    pub pay_to: String,
    pub escrow: bool,
    pub payer: String,
    /// Decimal, in `currency`.
    pub amount: String,
    pub currency: String,
    /// Base units of the token.
    pub raw_amount: String,
    /// The UTC day the spend counts on (`YYYY-MM-DD`).
    pub day: String,
    /// The payment transaction failed (nothing moved): it no longer counts against the limits.
    #[serde(default)]
    pub failed: bool,
}

/// One order, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderRecord {
    pub version: u32,
    pub key: String,
    pub goal: OrderGoal,
    pub state: OrderState,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub cancel_requested: bool,
    #[serde(default)]
    pub search_id: Option<String>,
    #[serde(default)]
    pub quote_id: Option<String>,
    #[serde(default)]
    pub service_id: Option<String>,
    #[serde(default)]
    pub skill_key: Option<String>,
    /// The quoted price (decimal) and its currency, when the quote had one.
    #[serde(default)]
    pub quote_amount: Option<String>,
    #[serde(default)]
    pub quote_currency: Option<String>,
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub payment_required: bool,
    #[serde(default)]
    pub payment: Option<PaymentPlan>,
    #[serde(default)]
    pub intent_id: Option<String>,
    #[serde(default)]
    pub tx_hash: Option<String>,
    /// Set once the order ended (also kept through confirm / dispute).
    #[serde(default)]
    pub result: Option<OrderResult>,
    /// The payment's status after confirm / dispute, as the server said.
    #[serde(default)]
    pub payment_status: Option<String>,
    /// The last transient problem (shown as feedback detail while the order waits).
    #[serde(default)]
    pub waiting: Option<String>,
}

impl OrderRecord {
    pub fn new(key: String, goal: OrderGoal, now: &str) -> OrderRecord {
        OrderRecord {
            version: VERSION,
            key,
            goal,
            state: OrderState::Requested,
            created_at: now.into(),
            updated_at: now.into(),
            cancel_requested: false,
            search_id: None,
            quote_id: None,
            service_id: None,
            skill_key: None,
            quote_amount: None,
            quote_currency: None,
            order_id: None,
            payment_required: false,
            payment: None,
            intent_id: None,
            tx_hash: None,
            result: None,
            payment_status: None,
            waiting: None,
        }
    }
}

/// The `market/orders/` directory.
#[derive(Debug, Clone)]
pub struct OrderStore {
    dir: PathBuf,
}

/// An order key: `ord-` and 16 lower-case hex digits (also a safe file name).
pub fn is_order_key(key: &str) -> bool {
    key.strip_prefix("ord-").is_some_and(|h| h.len() == 16 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

impl OrderStore {
    pub fn open(data_dir: &Path) -> Result<OrderStore> {
        let dir = peaqos_base::layout::market_dir(data_dir).join("orders");
        fsio::create_private_dir(&dir)?;
        Ok(OrderStore { dir })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// Write the record durably (before its state is reported to anyone).
    pub fn save(&self, rec: &OrderRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(rec).expect("order records serialize");
        fsio::write_atomic(&self.path(&rec.key), &bytes)?;
        Ok(())
    }

    /// Every stored order, by key. A file this crate did not write is an error naming it.
    pub fn load_all(&self) -> Result<BTreeMap<String, OrderRecord>> {
        let mut out = BTreeMap::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| fsio::FsError::new("read dir", self.dir.clone(), e))?;
        for entry in entries {
            let path = entry.map_err(|e| fsio::FsError::new("read dir", self.dir.clone(), e))?.path();
            let Some(key) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json")) else {
                continue; // a temporary file of an interrupted write
            };
            if !is_order_key(key) {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| fsio::FsError::new("read", path.clone(), e))?;
            let rec: OrderRecord = serde_json::from_slice(&bytes)
                .map_err(|e| MarketError::State { path: path.clone(), message: e.to_string() })?;
            if rec.version != VERSION || rec.key != key {
                return Err(MarketError::State { path, message: "not an order record of this version".into() });
            }
            out.insert(rec.key.clone(), rec);
        }
        Ok(out)
    }

    /// Remove an ended order's record (retention).
    pub fn remove(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => fsio::sync_dir(&self.dir).map_err(Into::into),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(fsio::FsError::new("remove", path, e).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_foreign_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let s = OrderStore::open(d.path()).unwrap();
        let mut r = OrderRecord::new("ord-0123456789abcdef".into(), OrderGoal::default(), "2026-12-06T00:00:00Z");
        r.state = OrderState::Paying;
        s.save(&r).unwrap();
        let all = s.load_all().unwrap();
        assert_eq!(all["ord-0123456789abcdef"], r);
        assert!(r.state.payment_committed() && !OrderState::PaymentDue.payment_committed());
        std::fs::write(s.dir.join("ord-ffffffffffffffff.json"), b"{\"version\":1}").unwrap();
        let e = s.load_all().unwrap_err().to_string();
        assert!(e.contains("ord-ffffffffffffffff.json"), "{e}");
        assert!(is_order_key("ord-0123456789abcdef") && !is_order_key("ord-../x") && !is_order_key("x"));
    }
}
