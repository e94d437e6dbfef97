//! From a payment intent to what is signed and proven: [`plan`] checks the intent against the
//! quote and this node's chain before anything is signed; [`transfer`] is the outbox payment;
//! [`proof`] the EVM transfer proof exactly as SDK 0.12.1 sends it (§3.12).
use alloy::primitives::{Address, U256};
use peaqos_chain::client::Payment;
use serde_json::Value;

use super::record::{OrderRecord, PaymentPlan};
use crate::error::{MarketError, Result};
use crate::money::Amount;
use crate::settle::{chain_is, TransferTerms};
use crate::wire::{EscrowLock, MarketPayment, TransferProof};

/// Rails the node pays itself: a transfer to the payee, or to an escrow contract.
const TRANSFER_RAILS: &[&str] = &["wallet", "wdk-usdt-transfer"];
const ESCROW_RAILS: &[&str] = &["onchain-escrow", "escrow"];

fn refuse(code: &'static str, field: &str, message: String) -> MarketError {
    MarketError::Refused { code, field: field.to_string(), message }
}

/// An address of the rail, checked, kept as the server spelled it (the proof repeats it as given,
/// as the SDK does).
fn address(text: Option<&str>, field: &str) -> Result<String> {
    let t = text
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| refuse("PAYMENT_RAIL_INVALID", field, format!("{field} is missing")))?;
    t.parse::<Address>()
        .map_err(|_| refuse("PAYMENT_RAIL_INVALID", field, format!("{field} {t:?} is not an address")))?;
    Ok(t.to_string())
}

/// The plan of `payment` for order `rec`, paid by `payer` from chain `chain_id` on UTC day `day`.
/// Refuses (named codes, before anything is signed): a rail the node cannot pay
/// (`PAYMENT_RAIL_UNSUPPORTED`), another chain (`PAYMENT_CHAIN_UNSUPPORTED`), a malformed rail
/// (`PAYMENT_RAIL_INVALID`), an amount over the quote (`PAYMENT_OVER_QUOTE`) or in another
/// currency (`PAYMENT_CURRENCY_MISMATCH`).
pub fn plan(payment: &MarketPayment, rec: &OrderRecord, chain_id: u64, payer: &str, day: &str) -> Result<PaymentPlan> {
    let rail = &payment.rail;
    let escrow = ESCROW_RAILS.contains(&rail.rail_type.as_str());
    if !escrow && !TRANSFER_RAILS.contains(&rail.rail_type.as_str()) {
        return Err(refuse(
            "PAYMENT_RAIL_UNSUPPORTED",
            "rail.type",
            format!("the node pays wallet/transfer and escrow rails itself; {:?} is not one", rail.rail_type),
        ));
    }
    let chain = rail.chain.clone().unwrap_or_default();
    if !chain_is(chain_id, &chain) {
        return Err(refuse(
            "PAYMENT_CHAIN_UNSUPPORTED",
            "rail.chain",
            format!("the payment is on {chain:?}; this node pays on eip155:{chain_id}"),
        ));
    }
    let pay_to = if escrow {
        address(rail.escrow_address.as_deref(), "rail.escrowAddress")?
    } else {
        address(rail.payee_address.as_deref().or(rail.wallet_address.as_deref()), "rail.payeeAddress")?
    };
    let token_address = match rail.token_address.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Some(address(Some(t), "rail.tokenAddress")?),
        None => None,
    };
    let token = rail.token.clone().unwrap_or_default();
    let meta_decimals = rail.metadata.as_ref().and_then(|m| m.get("tokenDecimals")).and_then(Value::as_u64);
    let decimals = match meta_decimals {
        Some(d) if d <= 36 => d as u32,
        Some(d) => return Err(refuse("PAYMENT_RAIL_INVALID", "rail.metadata.tokenDecimals", format!("{d} decimals"))),
        None => TransferTerms::default_decimals(&token, token_address.as_ref().map(|_| "erc20")).ok_or_else(|| {
            refuse("PAYMENT_RAIL_INVALID", "rail.metadata.tokenDecimals", format!("decimals of {token:?} unknown"))
        })?,
    };
    let quoted = rec.quote_amount.as_deref().map(|q| Amount::parse(q, "quote.pricing.amount")).transpose();
    let quoted = quoted.map_err(|m| refuse("PAYMENT_RAIL_INVALID", "quote.pricing.amount", m))?;
    let amount = match (&payment.amount, quoted) {
        (Some(n), _) => {
            Amount::from_number(n, "payment.amount").map_err(|m| refuse("PAYMENT_RAIL_INVALID", "payment.amount", m))?
        }
        (None, Some(q)) => q,
        (None, None) => {
            return Err(refuse("PAYMENT_RAIL_INVALID", "payment.amount", "no amount in the intent or the quote".into()))
        }
    };
    if let Some(q) = quoted {
        if amount > q {
            return Err(refuse(
                "PAYMENT_OVER_QUOTE",
                "payment.amount",
                format!("the intent asks {amount}, the quote was {q}"),
            ));
        }
    }
    let currency = payment.currency.clone().or_else(|| rec.quote_currency.clone()).unwrap_or_else(|| token.clone());
    if let Some(qc) = &rec.quote_currency {
        if !qc.eq_ignore_ascii_case(&currency) {
            return Err(refuse(
                "PAYMENT_CURRENCY_MISMATCH",
                "payment.currency",
                format!("the intent is in {currency}, the quote in {qc}"),
            ));
        }
    }
    let raw = amount.in_units_of(decimals).ok_or_else(|| {
        refuse("PAYMENT_RAIL_INVALID", "payment.amount", format!("{amount} has more than {decimals} decimals"))
    })?;
    Ok(PaymentPlan {
        payment_id: payment.id.clone(),
        rail_type: rail.rail_type.clone(),
        chain,
        token,
        token_address,
        token_decimals: decimals,
        pay_to,
        escrow,
        payer: payer.to_string(),
        amount: amount.to_string(),
        currency,
        raw_amount: raw.to_string(),
        day: day.to_string(),
        failed: false,
    })
}

/// The outbox payment of a plan.
pub fn transfer(plan: &PaymentPlan) -> Result<Payment> {
    let bad = |f: &str| MarketError::validation(f, "stored payment plan is malformed");
    Ok(Payment {
        token: plan.token_address.as_deref().map(|t| t.parse().map_err(|_| bad("payment.tokenAddress"))).transpose()?,
        to: plan.pay_to.parse().map_err(|_| bad("payment.payTo"))?,
        amount: plan.raw_amount.parse::<U256>().map_err(|_| bad("payment.rawAmount"))?,
    })
}

/// The EVM transfer proof (`verificationMode: "rpc"`) of a paid plan.
pub fn proof(plan: &PaymentPlan, tx_hash: &str) -> TransferProof {
    TransferProof {
        verification_mode: "rpc".into(),
        chain: plan.chain.clone(),
        token: plan.token.clone(),
        payer_address: plan.payer.clone(),
        payee_address: plan.pay_to.clone(),
        amount: plan.amount.clone(),
        transaction_hash: tx_hash.to_string(),
        token_address: plan.token_address.clone(),
        token_decimals: plan.token_address.as_ref().map(|_| plan.token_decimals),
        raw_amount: Some(plan.raw_amount.clone()),
    }
}

/// The escrow lock of a paid escrow plan.
pub fn escrow_lock(plan: &PaymentPlan, tx_hash: &str) -> EscrowLock {
    EscrowLock { transaction_hash: tx_hash.into(), chain: plan.chain.clone(), escrow_address: plan.pay_to.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buyer::desk::OrderGoal;
    use serde_json::json;

    fn payment(v: Value) -> MarketPayment {
        serde_json::from_value(v).unwrap()
    }

    fn rec() -> OrderRecord {
        let mut r = OrderRecord::new("ord-0000000000000001".into(), OrderGoal::default(), "t");
        r.quote_amount = Some("1.5".into());
        r.quote_currency = Some("USDT".into());
        r
    }

    const TOKEN: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
    const PAYEE: &str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";

    #[test]
    fn plans_a_wallet_rail_and_proves_it_like_the_sdk() {
        let p = payment(json!({"id": "pay_1", "orderId": "o", "status": "intent_created", "amount": 1.5,
            "currency": "USDT", "rail": {"type": "wallet", "chain": "eip155:31337", "token": "USDT",
            "tokenAddress": TOKEN, "payeeAddress": PAYEE}}));
        let plan = plan(&p, &rec(), 31337, "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "2026-12-06").unwrap();
        assert_eq!((plan.raw_amount.as_str(), plan.token_decimals, plan.escrow), ("1500000", 6, false));
        let t = transfer(&plan).unwrap();
        assert_eq!(t.amount, U256::from(1_500_000u64));
        let body = serde_json::to_value(proof(&plan, "0xabc")).unwrap();
        assert_eq!(body["verificationMode"], "rpc");
        assert_eq!(body["amount"], "1.5");
        assert_eq!(body["rawAmount"], "1500000");
        assert_eq!(body["tokenDecimals"], 6);
        assert_eq!(body["payeeAddress"], PAYEE);
    }

    #[test]
    fn refuses_before_signing_with_named_codes() {
        let base = json!({"id": "pay_1", "orderId": "o", "status": "intent_created", "amount": 1.5, "currency": "USDT",
            "rail": {"type": "wallet", "chain": "eip155:31337", "token": "USDT", "tokenAddress": TOKEN, "payeeAddress": PAYEE}});
        let code = |patch: &dyn Fn(&mut Value)| {
            let mut v = base.clone();
            patch(&mut v);
            plan(&payment(v), &rec(), 31337, "0x0", "d").unwrap_err().error_code().to_string()
        };
        assert_eq!(code(&|v| v["rail"]["type"] = json!("x402")), "PAYMENT_RAIL_UNSUPPORTED");
        assert_eq!(code(&|v| v["rail"]["chain"] = json!("eip155:1")), "PAYMENT_CHAIN_UNSUPPORTED");
        assert_eq!(code(&|v| v["rail"]["payeeAddress"] = json!("nope")), "PAYMENT_RAIL_INVALID");
        assert_eq!(code(&|v| v["amount"] = json!(1.6)), "PAYMENT_OVER_QUOTE");
        assert_eq!(code(&|v| v["currency"] = json!("EUR")), "PAYMENT_CURRENCY_MISMATCH");
        assert_eq!(code(&|v| v["amount"] = json!(0.0000001)), "PAYMENT_RAIL_INVALID");
    }
}
