//! The delegation policy: what the paired agent may buy and spend (ORCHESTRATION.md §3.5). The node
//! sends it to the server at pairing, and enforces it itself before it signs anything: a payment
//! over a limit never reaches the chain, whatever the server says.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{MarketError, Result};
use crate::money::Amount;
use crate::wire::DelegationPolicyWire;

/// Spend limits and allow/deny lists, from the node's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegationPolicy {
    /// Most one payment may be (decimal, in `currency`); `None`: no per-payment limit.
    pub per_transaction_limit: Option<String>,
    /// Most all payments of one UTC day may add up to; `None`: no daily limit.
    pub daily_spend_limit: Option<String>,
    /// The currency of the limits (USDT, ...).
    pub currency: String,
    pub allowed_skill_keys: Vec<String>,
    pub denied_skill_keys: Vec<String>,
    pub allowed_service_ids: Vec<String>,
    pub denied_service_ids: Vec<String>,
}

/// A refusal of the policy, with the server's code for the same case.
fn refuse(code: &'static str, field: &str, message: String) -> MarketError {
    MarketError::Refused { code, field: field.to_string(), message }
}

impl DelegationPolicy {
    /// Check the configuration: limits are canonical decimals, the currency is set when a limit is.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("market.buyer.per_transaction_limit", &self.per_transaction_limit),
            ("market.buyer.daily_spend_limit", &self.daily_spend_limit),
        ] {
            if let Some(v) = v {
                Amount::parse(v, field).map_err(|m| MarketError::validation(field, m))?;
            }
        }
        let limited = self.per_transaction_limit.is_some() || self.daily_spend_limit.is_some();
        if limited && self.currency.trim().is_empty() {
            return Err(MarketError::validation("market.buyer.currency", "must be set when a spend limit is"));
        }
        Ok(())
    }

    fn limit(v: &Option<String>) -> Option<Amount> {
        v.as_deref().and_then(|s| Amount::parse(s, "limit").ok())
    }

    /// As sent to the server (all four lists, the scalars when set).
    pub fn to_wire(&self) -> DelegationPolicyWire {
        DelegationPolicyWire {
            allowed_skill_keys: self.allowed_skill_keys.clone(),
            denied_skill_keys: self.denied_skill_keys.clone(),
            allowed_service_ids: self.allowed_service_ids.clone(),
            denied_service_ids: self.denied_service_ids.clone(),
            per_transaction_limit: Self::limit(&self.per_transaction_limit).map(Amount::to_number),
            daily_spend_limit: Self::limit(&self.daily_spend_limit).map(Amount::to_number),
            currency: (!self.currency.is_empty()).then(|| self.currency.clone()),
        }
    }

    /// A digest of the policy: a change means a policy update and a new session.
    pub fn fingerprint(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("policy serializes");
        hex::encode(Sha256::digest(bytes))
    }

    /// May the agent buy this service? (`AGENT_POLICY_DENIED` otherwise.)
    pub fn check_service(&self, service_id: &str, skill_key: &str) -> Result<()> {
        let denied = |list: &[String], v: &str| list.iter().any(|x| x == v);
        let not_allowed = |list: &[String], v: &str| !list.is_empty() && !list.iter().any(|x| x == v);
        if denied(&self.denied_service_ids, service_id) || not_allowed(&self.allowed_service_ids, service_id) {
            return Err(refuse(
                "AGENT_POLICY_DENIED",
                "service_id",
                format!("service {service_id} is not allowed by the delegation policy"),
            ));
        }
        if denied(&self.denied_skill_keys, skill_key) || not_allowed(&self.allowed_skill_keys, skill_key) {
            return Err(refuse(
                "AGENT_POLICY_DENIED",
                "skill_key",
                format!("skill {skill_key} is not allowed by the delegation policy"),
            ));
        }
        Ok(())
    }

    /// May the agent pay `amount` in `currency`, having paid `spent_today` today, within the
    /// caller's `budget`? Checked before any transaction is signed.
    pub fn check_spend(
        &self,
        amount: Amount,
        currency: &str,
        spent_today: Amount,
        budget: Option<Amount>,
    ) -> Result<()> {
        if let Some(b) = budget {
            if amount > b {
                return Err(refuse(
                    "BUDGET_EXCEEDED",
                    "budget",
                    format!("the payment of {amount} {currency} is over the order's budget of {b}"),
                ));
            }
        }
        let limited = self.per_transaction_limit.is_some() || self.daily_spend_limit.is_some();
        if limited && !currency.eq_ignore_ascii_case(&self.currency) {
            return Err(refuse(
                "AGENT_POLICY_DENIED",
                "currency",
                format!("the payment is in {currency}; the delegation limits are in {}", self.currency),
            ));
        }
        if let Some(max) = Self::limit(&self.per_transaction_limit) {
            if amount > max {
                return Err(refuse(
                    "AGENT_SPEND_LIMIT_EXCEEDED",
                    "market.buyer.per_transaction_limit",
                    format!("the payment of {amount} {currency} is over the per-transaction limit of {max}"),
                ));
            }
        }
        if let Some(max) = Self::limit(&self.daily_spend_limit) {
            if spent_today.checked_add(amount).is_none_or(|total| total > max) {
                return Err(refuse(
                    "AGENT_DAILY_LIMIT_EXCEEDED",
                    "market.buyer.daily_spend_limit",
                    format!("{spent_today} {currency} spent today; {amount} more is over the daily limit of {max}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> DelegationPolicy {
        DelegationPolicy {
            per_transaction_limit: Some("2".into()),
            daily_spend_limit: Some("5".into()),
            currency: "USDT".into(),
            denied_service_ids: vec!["svc_bad".into()],
            ..Default::default()
        }
    }

    fn amt(s: &str) -> Amount {
        Amount::parse(s, "t").unwrap()
    }

    #[test]
    fn limits_refuse_with_named_codes() {
        let p = policy();
        p.validate().unwrap();
        assert!(p.check_spend(amt("1.5"), "USDT", amt("3.5"), None).is_ok());
        let code = |r: Result<()>| r.unwrap_err().error_code().to_string();
        assert_eq!(code(p.check_spend(amt("2.01"), "USDT", Amount::ZERO, None)), "AGENT_SPEND_LIMIT_EXCEEDED");
        assert_eq!(code(p.check_spend(amt("1.5"), "USDT", amt("3.6"), None)), "AGENT_DAILY_LIMIT_EXCEEDED");
        assert_eq!(code(p.check_spend(amt("1"), "USDT", Amount::ZERO, Some(amt("0.5")))), "BUDGET_EXCEEDED");
        assert_eq!(code(p.check_spend(amt("1"), "EUR", Amount::ZERO, None)), "AGENT_POLICY_DENIED");
        assert_eq!(code(p.check_service("svc_bad", "x")), "AGENT_POLICY_DENIED");
        assert!(p.check_service("svc_ok", "x").is_ok());
        let only = DelegationPolicy { allowed_skill_keys: vec!["maps".into()], ..Default::default() };
        assert!(only.check_service("s", "maps").is_ok() && only.check_service("s", "other").is_err());
    }

    #[test]
    fn wire_form_and_fingerprint() {
        let p = policy();
        let w = serde_json::to_value(p.to_wire()).unwrap();
        assert_eq!(w["perTransactionLimit"], 2);
        assert_eq!(w["dailySpendLimit"], 5);
        assert_eq!(w["deniedServiceIds"][0], "svc_bad");
        assert_eq!(w["allowedSkillKeys"], serde_json::json!([]));
        let mut q = p.clone();
        assert_eq!(p.fingerprint(), q.fingerprint());
        q.daily_spend_limit = Some("6".into());
        assert_ne!(p.fingerprint(), q.fingerprint());
        let bad = DelegationPolicy { per_transaction_limit: Some("1.50".into()), ..Default::default() };
        assert_eq!(bad.validate().unwrap_err().field(), "market.buyer.per_transaction_limit");
    }
}
