//! The buyer's shapes: agent pairing (§3.5), search and quotes (§3.7), orders (§3.8), confirm and
//! dispute (§3.9), execute (§3.10), payments and proofs (§3.11–3.12). Same strictness rules as the
//! rest of [`crate::wire`]: unknown response fields are ignored, a required one missing is
//! `INVALID_RESPONSE_SHAPE`, optional lists may be `null`.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use super::{null_as_default, VerificationMethod};

// ---- agent pairing (§3.5) -----------------------------------------------------------------------

/// `POST /machines/{id}/agent-pairings/challenges` body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingChallengeRequest {
    pub agent_address: String,
    pub agent_provider: String,
    pub agent_role: String,
}

/// A pairing challenge: every string required and non-empty.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPairingChallenge {
    pub challenge_id: String,
    pub machine_id: String,
    pub machine_identity_ref: String,
    pub agent_address: String,
    pub agent_did: String,
    pub agent_provider: String,
    pub agent_role: String,
    /// Signed verbatim (EIP-191).
    pub message: String,
    pub expires_at: String,
    pub verification_method: VerificationMethod,
}

impl AgentPairingChallenge {
    /// The SDK's checks: all bindings non-empty, the identity ref canonical.
    pub fn check(&self) -> Result<(), String> {
        for (field, v) in [
            ("challengeId", &self.challenge_id),
            ("machineId", &self.machine_id),
            ("agentAddress", &self.agent_address),
            ("agentDid", &self.agent_did),
            ("agentProvider", &self.agent_provider),
            ("agentRole", &self.agent_role),
            ("message", &self.message),
            ("expiresAt", &self.expires_at),
        ] {
            if v.trim().is_empty() {
                return Err(format!("item.{field} must not be empty"));
            }
        }
        if !super::is_canonical_machine_did(&self.machine_identity_ref) {
            return Err("item.machineIdentityRef must be a canonical did:peaq:<decimal>".into());
        }
        Ok(())
    }
}

/// `{challengeId, signature}`: EIP-191 by the key behind the agent address.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentProof {
    pub challenge_id: String,
    pub signature: String,
}

/// The delegation policy as on the wire; the request side sends all four lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelegationPolicyWire {
    #[serde(default, deserialize_with = "null_as_default")]
    pub allowed_skill_keys: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub denied_skill_keys: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub allowed_service_ids: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub denied_service_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_transaction_limit: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_spend_limit: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// `POST /machines/{id}/agent-pairings` body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatePairingRequest {
    pub agent_address: String,
    pub agent_provider: String,
    pub agent_role: String,
    pub agent_proof: AgentProof,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub delegation_policy: DelegationPolicyWire,
}

/// `POST …/agent-pairings/{id}/sessions` body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingSessionRequest {
    pub agent_proof: AgentProof,
}

/// `PATCH …/agent-pairings/{id}` body (the buyer only changes the policy).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePairingRequest {
    pub delegation_policy: DelegationPolicyWire,
}

/// An agent pairing; `pairingToken` is required on create and session answers (checked by the client).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPairing {
    pub id: String,
    pub machine_id: String,
    pub agent_address: String,
    pub status: String,
    pub delegation_policy: DelegationPolicyWire,
    #[serde(default)]
    pub session_expires_at: Option<String>,
    #[serde(default)]
    pub pairing_token: Option<String>,
}

// ---- search and quotes (§3.7) -------------------------------------------------------------------

/// A budget (search and order): numbers as on the wire.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetWire {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// `POST /market/search` body (all optional; unset fields omitted).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketSearchRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_pairing_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetWire>,
}

/// A search's answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketSearch {
    pub id: String,
    pub status: String,
    #[serde(deserialize_with = "null_as_default")]
    pub quotes: Vec<MarketQuote>,
}

/// How a quote is priced.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pricing {
    pub mode: String,
    #[serde(default)]
    pub amount: Option<Number>,
    #[serde(default)]
    pub currency: Option<String>,
}

/// A payment rail recommendation (quotes and orders).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RailRecommendation {
    pub default_rail: String,
    pub required: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub supported_rails: Vec<String>,
    #[serde(default)]
    pub chain: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_address: Option<String>,
    #[serde(default)]
    pub payee_address: Option<String>,
}

/// One quote of a search.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketQuote {
    pub id: String,
    pub service_id: String,
    pub skill_key: String,
    pub provider_key: String,
    pub execution_mode: String,
    pub operation: String,
    pub score: f64,
    pub expires_at: String,
    pub pricing: Pricing,
    pub payment: RailRecommendation,
}

// ---- orders (§3.8–3.10) -------------------------------------------------------------------------

/// `POST /market/orders` body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrderRequest {
    pub machine_id: String,
    pub agent_pairing_id: String,
    pub service_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetWire>,
}

/// A market order (the fields the buyer reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketOrder {
    pub id: String,
    pub machine_id: String,
    pub agent_pairing_id: String,
    pub service_id: String,
    pub skill_key: String,
    pub operation: String,
    pub execution_mode: String,
    pub status: String,
    pub payment: RailRecommendation,
    #[serde(default)]
    pub quote_id: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
}

/// `POST …/execute` body.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// What an execute answered, checked as the SDK checks it (`execution.statusCode` in the body).
#[derive(Debug, Clone, PartialEq)]
pub enum Execution {
    /// 200: a native run and its outcome (the objects as received).
    Native { run: Map<String, Value>, outcome: Map<String, Value> },
    /// 202: an external handoff.
    Handoff { handoff: Map<String, Value> },
}

impl Execution {
    /// Decode `{order, execution:{statusCode, run, outcome} | {statusCode, handoff}}`.
    pub fn from_body(v: &Value) -> Result<Execution, String> {
        let ex = v.get("execution").and_then(Value::as_object).ok_or("execution must be an object")?;
        let obj = |k: &str| ex.get(k).and_then(Value::as_object).cloned();
        match ex.get("statusCode").and_then(Value::as_u64) {
            Some(200) => {
                let run = obj("run").ok_or("execution.run must be an object")?;
                let outcome = obj("outcome").ok_or("execution.outcome must be an object")?;
                if !matches!(outcome.get("status").and_then(Value::as_str), Some("completed" | "failed" | "external")) {
                    return Err("execution.outcome.status must be completed, failed or external".into());
                }
                Ok(Execution::Native { run, outcome })
            }
            Some(202) => {
                let handoff = obj("handoff").ok_or("execution.handoff must be an object")?;
                for k in ["label", "url"] {
                    if !handoff.get(k).is_some_and(Value::is_string) {
                        return Err(format!("execution.handoff.{k} must be a string"));
                    }
                }
                Ok(Execution::Handoff { handoff })
            }
            _ => Err("execution.statusCode must be the number 200 or 202".into()),
        }
    }
}

/// `POST …/dispute` body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DisputeRequest {
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Value>,
}

// ---- payments (§3.11–3.12) ----------------------------------------------------------------------

/// The rail asked for in a payment intent.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RailRequest {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub rail_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer_address: Option<String>,
}

/// `POST …/payment-intent` body.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentIntentRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rail: Option<RailRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// A payment's rail.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRail {
    #[serde(rename = "type", alias = "railType")]
    pub rail_type: String,
    #[serde(default)]
    pub chain: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_address: Option<String>,
    #[serde(default)]
    pub escrow_address: Option<String>,
    #[serde(default)]
    pub payee_address: Option<String>,
    #[serde(default)]
    pub wallet_address: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

/// A market payment.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketPayment {
    pub id: String,
    pub order_id: String,
    pub status: String,
    pub rail: PaymentRail,
    #[serde(default)]
    pub amount: Option<Number>,
    #[serde(default)]
    pub currency: Option<String>,
}

/// The EVM transfer proof (`verificationMode: "rpc"`), exactly as SDK 0.12.1 sends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferProof {
    pub verification_mode: String,
    pub chain: String,
    pub token: String,
    pub payer_address: String,
    pub payee_address: String,
    /// Decimal string.
    pub amount: String,
    pub transaction_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_decimals: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_amount: Option<String>,
}

/// `POST …/payment/escrow-lock` body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EscrowLock {
    pub transaction_hash: String,
    pub chain: String,
    pub escrow_address: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn execution_is_checked_like_the_sdk() {
        let native = json!({"order": {}, "execution": {"statusCode": 200, "run": {"id": "r"},
            "outcome": {"status": "completed", "result": {"x": 1}}}});
        assert!(matches!(Execution::from_body(&native), Ok(Execution::Native { .. })));
        let handoff = json!({"execution": {"statusCode": 202, "handoff": {"label": "l", "url": "https://x"}}});
        assert!(matches!(Execution::from_body(&handoff), Ok(Execution::Handoff { .. })));
        for bad in [
            json!({"execution": {"statusCode": "200", "run": {}, "outcome": {"status": "completed"}}}),
            json!({"execution": {"statusCode": 200, "run": {}}}),
            json!({"execution": {"statusCode": 202, "handoff": {"label": "l"}}}),
            json!({"execution": {"statusCode": 201}}),
            json!({}),
        ] {
            assert!(Execution::from_body(&bad).is_err(), "{bad}");
        }
    }
}
