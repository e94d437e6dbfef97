//! Settling a sale on chain: the seller's own check of the buyer's payment (trust the chain, not
//! only the server), and the sale's peaqOS revenue event, each through the chain client's public
//! API.
//!
//! * [`SaleChain::check_payment`]: for a `transfer` rail on the chain this node reads, the
//!   payment reference must be a successful transaction in a block at least `confirmations` deep
//!   that moves at least the quoted amount to the rail's `pay_to`: an ERC-20 `Transfer` log of
//!   the rail's `token_address`, or (no token address) the transaction's native value. Not mined
//!   yet or not final: [`PaymentCheck::Pending`]; anything else: [`PaymentCheck::Mismatch`].
//! * [`SaleChain::record_sale`]: one revenue event per purchase (idempotency key
//!   `market-sale:<purchase id>`, see `peaqos_chain::outbox::Outbox::enqueue_once`), `raw_data`
//!   the canonical JSON of the sale receipt, so the event's on-chain `dataHash` commits to it.
use std::sync::Arc;

use peaqos_chain::validation::{Currency, MachineIdInput, SubmitEventParams, ValueInput};
use peaqos_chain::ChainClient;
use serde_json::{json, Value};

use crate::error::{MarketError, Result};
use crate::money::Amount;

/// `keccak256("Transfer(address,address,uint256)")`.
pub const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// What a listing sells for: per chunk, in `currency`, payable on the listed transfer rails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleTerms {
    pub price: Amount,
    pub currency: String,
    /// Decimals of the currency's minor unit (the revenue event's value unit).
    pub minor_units: u32,
    pub transfer_rails: Vec<TransferTerms>,
}

/// One `transfer` rail of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferTerms {
    pub chain: String,
    pub token: String,
    pub pay_to: String,
    /// The ERC-20 contract; `None`: a native-value transfer.
    pub token_address: Option<String>,
    pub token_decimals: u32,
}

impl TransferTerms {
    /// Decimals by default: 6 for USDC / USDT, 18 for a native transfer; otherwise `None`
    /// (the rail must say).
    pub fn default_decimals(token: &str, token_address: Option<&str>) -> Option<u32> {
        match (token.to_ascii_uppercase().as_str(), token_address) {
            ("USDC" | "USDT", _) => Some(6),
            (_, None) => Some(18),
            _ => None,
        }
    }
}

/// The outcome of the seller's own payment check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentCheck {
    /// Paid to us, final: the payer and the block.
    Confirmed { payer: String, block: u64 },
    /// Not mined, or not final yet: look again later (the reason says which).
    Pending(String),
    /// The transaction does not pay this purchase (failed, wrong token, payee or amount).
    Mismatch(String),
}

/// The chain a seller settles on: its client, how deep a payment must be, and the machine the
/// revenue events are for.
#[derive(Clone)]
pub struct SaleChain {
    pub client: ChainClient,
    /// Blocks on top of the payment's block before it counts (1: the block itself).
    pub confirmations: u64,
    /// The on-chain machine id (decimal), when known.
    pub machine_id: Arc<dyn Fn() -> Option<String> + Send + Sync>,
}

impl std::fmt::Debug for SaleChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaleChain").field("confirmations", &self.confirmations).finish_non_exhaustive()
    }
}

fn hex_u64(v: &Value, what: &str) -> std::result::Result<u64, String> {
    let s = v.as_str().ok_or_else(|| format!("{what} missing"))?;
    u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|_| format!("{what} {s:?} is not a hex quantity"))
}

/// A 32-byte word (hex) as a number, saturated at `u128::MAX` (a larger payment is large enough).
fn word_u128(s: &str) -> Option<u128> {
    let h = s.strip_prefix("0x")?;
    if h.is_empty() || h.len() > 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let h = h.trim_start_matches('0');
    if h.len() > 32 {
        return Some(u128::MAX);
    }
    if h.is_empty() {
        return Some(0);
    }
    u128::from_str_radix(h, 16).ok()
}

/// The address in the low 20 bytes of a 32-byte topic, lower case.
fn topic_address(t: &str) -> Option<String> {
    let h = t.strip_prefix("0x")?;
    (h.len() == 64).then(|| format!("0x{}", h[24..].to_ascii_lowercase()))
}

/// Whether a rail's `chain` names chain `id`: `eip155:<id>`, or `peaq` / `agung` for peaq
/// mainnet (3338) / the agung testnet (9990).
pub fn chain_is(id: u64, chain: &str) -> bool {
    chain == format!("eip155:{id}") || (chain == "peaq" && id == 3338) || (chain == "agung" && id == 9990)
}

/// A transaction hash: `0x` + 64 hex digits.
pub fn is_tx_hash(s: &str) -> bool {
    s.len() == 66 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl SaleChain {
    /// The chain id the client is on.
    pub fn chain_id(&self) -> u64 {
        self.client.config().chain_id
    }

    /// Whether a rail's `chain` names the chain this node reads: `eip155:<id>`, or `peaq` /
    /// `agung` for peaq mainnet (3338) / the agung testnet (9990).
    pub fn reads(&self, chain: &str) -> bool {
        chain_is(self.chain_id(), chain)
    }

    async fn rpc(&self, method: &str, params: Value) -> std::result::Result<Value, MarketError> {
        self.client.rpc().request_value(method, params).await.map_err(|f| MarketError::Chain {
            code: "CHAIN_UNREACHABLE".into(),
            message: format!("{method}: {}", f.message()),
        })
    }

    /// Does transaction `reference` pay `due` (in the rail's base units) to `rail.pay_to`?
    /// Errors only when the chain cannot be asked (retry later).
    pub async fn check_payment(&self, rail: &TransferTerms, reference: &str, due: u128) -> Result<PaymentCheck> {
        if !is_tx_hash(reference) {
            return Ok(PaymentCheck::Mismatch(format!("payment reference {reference:?} is not a transaction hash")));
        }
        let receipt = self.rpc("eth_getTransactionReceipt", json!([reference])).await?;
        if receipt.is_null() {
            return Ok(PaymentCheck::Pending(format!("transaction {reference} is not mined yet")));
        }
        let block = hex_u64(&receipt["blockNumber"], "receipt.blockNumber").map_err(MarketError::bad_chain_answer)?;
        if receipt["status"].as_str() != Some("0x1") {
            return Ok(PaymentCheck::Mismatch(format!("transaction {reference} failed (block {block})")));
        }
        let head = hex_u64(&self.rpc("eth_blockNumber", json!([])).await?, "eth_blockNumber")
            .map_err(MarketError::bad_chain_answer)?;
        let depth = head.saturating_sub(block) + 1;
        if depth < self.confirmations.max(1) {
            return Ok(PaymentCheck::Pending(format!(
                "transaction {reference} has {depth} of {} confirmations",
                self.confirmations
            )));
        }
        let pay_to = rail.pay_to.to_ascii_lowercase();
        match &rail.token_address {
            Some(token) => {
                let token = token.to_ascii_lowercase();
                let logs = receipt["logs"].as_array().cloned().unwrap_or_default();
                let mut best: Option<(u128, String)> = None;
                for l in &logs {
                    let topics: Vec<&str> = l["topics"]
                        .as_array()
                        .map(|t| t.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let addr = l["address"].as_str().unwrap_or_default().to_ascii_lowercase();
                    if addr != token || topics.len() != 3 || !topics[0].eq_ignore_ascii_case(TRANSFER_TOPIC) {
                        continue;
                    }
                    if topic_address(topics[2]).as_deref() != Some(pay_to.as_str()) {
                        continue;
                    }
                    let Some(v) = l["data"].as_str().and_then(word_u128) else { continue };
                    let payer = topic_address(topics[1]).unwrap_or_default();
                    if best.as_ref().is_none_or(|(b, _)| v > *b) {
                        best = Some((v, payer));
                    }
                }
                match best {
                    Some((v, payer)) if v >= due => Ok(PaymentCheck::Confirmed { payer, block }),
                    Some((v, _)) => Ok(PaymentCheck::Mismatch(format!(
                        "transaction {reference} pays {v} base units of {token} to {pay_to}, {due} are due"
                    ))),
                    None => Ok(PaymentCheck::Mismatch(format!(
                        "transaction {reference} has no Transfer of token {token} to {pay_to}"
                    ))),
                }
            }
            None => {
                let tx = self.rpc("eth_getTransactionByHash", json!([reference])).await?;
                let to = tx["to"].as_str().unwrap_or_default().to_ascii_lowercase();
                let value = tx["value"].as_str().and_then(word_u128).unwrap_or(0);
                let payer = tx["from"].as_str().unwrap_or_default().to_ascii_lowercase();
                if to != pay_to {
                    Ok(PaymentCheck::Mismatch(format!("transaction {reference} is not a transfer to {pay_to}")))
                } else if value < due {
                    Ok(PaymentCheck::Mismatch(format!("transaction {reference} pays {value} wei, {due} are due")))
                } else {
                    Ok(PaymentCheck::Confirmed { payer, block })
                }
            }
        }
    }

    /// Enqueue the revenue event of a sale, once per purchase: value `amount` in the currency's
    /// minor units, `raw_data` = `receipt` (canonical JSON), trust level 1 with the payment as
    /// source when the seller confirmed it on this chain. Returns the outbox intent id.
    pub async fn record_sale(&self, sale: &SaleRecord<'_>) -> Result<String> {
        let machine_id = (self.machine_id)().ok_or(MarketError::Chain {
            code: "MACHINE_ID_UNKNOWN".into(),
            message: "the machine id is not known yet (not activated)".into(),
        })?;
        let mid = MachineIdInput::from_decimal("machine_id", &machine_id).map_err(MarketError::from_chain)?;
        // the EventRegistry refuses a timestamp after the latest block
        let now = chrono::Utc::now().timestamp();
        let ts = match self.client.latest_block_time().await {
            Ok(t) => now.min(t),
            Err(m) => return Err(MarketError::Chain { code: "CHAIN_UNREACHABLE".into(), message: m }),
        };
        let (trust, source_chain, source_tx) = match sale.verified_payment {
            Some(tx) => (1, i128::from(self.chain_id()), Some(tx.to_string())),
            None => (0, 0, None),
        };
        let metadata = serde_json::to_vec(&json!({"kind": "sale", "purchaseId": sale.purchase_id}))
            .map_err(|e| MarketError::validation("metadata", e.to_string()))?;
        let p = SubmitEventParams {
            machine_id: mid,
            event_type: 0,
            value: ValueInput::from_u128(sale.value_minor),
            timestamp: ts.max(1),
            raw_data: Some(sale.receipt.to_vec()),
            trust_level: trust,
            source_chain_id: source_chain,
            source_tx_hash: source_tx,
            metadata,
            currency: Currency::Code(sale.currency.to_string()),
        };
        let key = format!("market-sale:{}", sale.purchase_id);
        let (id, _, new) = self.client.enqueue_event_once(&key, &p).map_err(MarketError::from_chain)?;
        if new {
            tracing::info!(purchase = %sale.purchase_id, intent = %id, "market: revenue event of the sale enqueued");
        }
        Ok(id)
    }
}

/// One sale's revenue event.
#[derive(Debug, Clone)]
pub struct SaleRecord<'a> {
    pub purchase_id: &'a str,
    pub receipt: &'a [u8],
    pub value_minor: u128,
    pub currency: &'a str,
    /// The payment transaction, when the seller confirmed it on this chain.
    pub verified_payment: Option<&'a str>,
}

/// The sale receipt (canonical JSON, the revenue event's `raw_data`).
#[allow(clippy::too_many_arguments)]
pub fn receipt(
    purchase_id: &str,
    listing_id: &str,
    topic: &str,
    machine: &str,
    buyer_id: &str,
    chunk_ids: &[String],
    amount: &str,
    currency: &str,
    payment_rail: Option<&str>,
    payment_reference: Option<&str>,
) -> Vec<u8> {
    let v = json!({
        "schema": "peaqos.market.sale.v1",
        "purchaseId": purchase_id,
        "listingId": listing_id,
        "topic": topic,
        "machineId": machine,
        "buyerId": buyer_id,
        "chunkIds": chunk_ids,
        "amount": amount,
        "currency": currency,
        "payment": {"rail": payment_rail, "reference": payment_reference},
    });
    peaqos_core::canonical_json::to_canonical_vec(&v).expect("plain JSON of strings is canonical")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_topics_and_hashes() {
        assert_eq!(word_u128("0x00000000000000000000000000000000000000000000000000000000000f4240"), Some(1_000_000));
        assert_eq!(word_u128(&format!("0x1{}", "0".repeat(63))), Some(u128::MAX));
        assert_eq!(word_u128("0x"), None);
        assert_eq!(word_u128("0xzz"), None);
        assert_eq!(
            topic_address("0x000000000000000000000000AbC0000000000000000000000000000000000001").as_deref(),
            Some("0xabc0000000000000000000000000000000000001")
        );
        assert!(is_tx_hash(&format!("0x{}", "a".repeat(64))));
        assert!(!is_tx_hash("0x12"));
        assert_eq!(TransferTerms::default_decimals("usdt", Some("0x1")), Some(6));
        assert_eq!(TransferTerms::default_decimals("PEAQ", None), Some(18));
        assert_eq!(TransferTerms::default_decimals("WETH", Some("0x1")), None);
    }

    #[test]
    fn the_receipt_is_canonical_json() {
        let r =
            receipt("pur_1", "lst_1", "/cam", "mach_1", "b", &["c1".into()], "0.05", "USDT", Some("transfer"), None);
        let s = String::from_utf8(r).unwrap();
        assert!(s.starts_with(r#"{"amount":"0.05","buyerId":"b","chunkIds":["c1"],"currency":"USDT","#), "{s}");
        assert!(s.contains(r#""payment":{"rail":"transfer","reference":null}"#), "{s}");
    }
}
