//! The buyer's calls (ORCHESTRATION.md §2.1 #12–14, #25–41): pairing with platform auth, the rest
//! with the pairing token in `x-agent-pairing-token` (never logged, never in an error).
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{decode, decode_page, path_id, Auth, Call, OrchestrationClient, Shape};
use crate::error::{MarketError, Result};
use crate::secret::Secret;
use crate::wire::{self, Execution};

impl OrchestrationClient {
    async fn agent_send<B: Serialize>(
        &self,
        call: Call<'_>,
        token: Option<&Secret>,
        body: Option<&B>,
    ) -> Result<Value> {
        if token.is_some_and(Secret::is_blank) {
            return Err(MarketError::validation("pairingToken", "must not be blank"));
        }
        let body = body.map(|b| serde_json::to_vec(b).expect("request shapes serialize"));
        self.send_as(call, body, token).await
    }

    async fn agent_item<B: Serialize, T: DeserializeOwned>(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<&B>,
    ) -> Result<T> {
        let auth = if token.is_some() { Auth::None } else { Auth::Platform };
        let call = Call { op, method, path, query: &[], auth, shape: Shape::Item };
        let v = self.agent_send(call, token, body).await?;
        decode(op, "item", v.get("item").cloned().unwrap_or(Value::Null))
    }

    async fn agent_raw<B: Serialize>(
        &self,
        op: &'static str,
        path: &str,
        token: &Secret,
        body: Option<&B>,
    ) -> Result<Value> {
        let call = Call { op, method: Method::POST, path, query: &[], auth: Auth::None, shape: Shape::Raw };
        self.agent_send(call, Some(token), body).await
    }

    fn order_path(order_id: &str, tail: &str) -> Result<String> {
        Ok(format!("/market/orders/{}{tail}", path_id("orderId", order_id)?))
    }

    // ---- pairing (platform auth) ----------------------------------------------------------------

    /// `POST /machines/{id}/agent-pairings/challenges`.
    pub async fn pairing_challenge(
        &self,
        machine_id: &str,
        req: &wire::PairingChallengeRequest,
    ) -> Result<wire::AgentPairingChallenge> {
        const OP: &str = "create agent pairing challenge";
        let path = format!("/machines/{}/agent-pairings/challenges", path_id("machineId", machine_id)?);
        let ch: wire::AgentPairingChallenge = self.agent_item(OP, Method::POST, &path, None, Some(req)).await?;
        ch.check().map_err(|m| MarketError::shape(OP, m))?;
        Ok(ch)
    }

    /// `POST /machines/{id}/agent-pairings`: the pairing and its session token.
    pub async fn create_pairing(
        &self,
        machine_id: &str,
        req: &wire::CreatePairingRequest,
    ) -> Result<(wire::AgentPairing, Secret)> {
        const OP: &str = "create agent pairing";
        let path = format!("/machines/{}/agent-pairings", path_id("machineId", machine_id)?);
        let p: wire::AgentPairing = self.agent_item(OP, Method::POST, &path, None, Some(req)).await?;
        with_token(OP, p)
    }

    /// `POST /machines/{id}/agent-pairings/{pairingId}/sessions`: a fresh session token.
    pub async fn pairing_session(
        &self,
        machine_id: &str,
        pairing_id: &str,
        req: &wire::PairingSessionRequest,
    ) -> Result<(wire::AgentPairing, Secret)> {
        const OP: &str = "create agent pairing session";
        let path = format!(
            "/machines/{}/agent-pairings/{}/sessions",
            path_id("machineId", machine_id)?,
            path_id("pairingId", pairing_id)?
        );
        let p: wire::AgentPairing = self.agent_item(OP, Method::POST, &path, None, Some(req)).await?;
        with_token(OP, p)
    }

    /// `PATCH /machines/{id}/agent-pairings/{pairingId}` (the token in the answer is ignored).
    pub async fn update_pairing(
        &self,
        machine_id: &str,
        pairing_id: &str,
        req: &wire::UpdatePairingRequest,
    ) -> Result<wire::AgentPairing> {
        const OP: &str = "update agent pairing";
        let path = format!(
            "/machines/{}/agent-pairings/{}",
            path_id("machineId", machine_id)?,
            path_id("pairingId", pairing_id)?
        );
        self.agent_item(OP, Method::PATCH, &path, None, Some(req)).await
    }

    // ---- search and orders (agent auth) ---------------------------------------------------------

    /// `POST /market/search`.
    pub async fn market_search(&self, token: &Secret, req: &wire::MarketSearchRequest) -> Result<wire::MarketSearch> {
        self.agent_item("market search", Method::POST, "/market/search", Some(token), Some(req)).await
    }

    /// `POST /market/orders`.
    pub async fn create_order(&self, token: &Secret, req: &wire::CreateOrderRequest) -> Result<wire::MarketOrder> {
        for (field, v) in
            [("machineId", &req.machine_id), ("agentPairingId", &req.agent_pairing_id), ("serviceId", &req.service_id)]
        {
            if v.trim().is_empty() {
                return Err(MarketError::validation(field, "must not be blank"));
            }
        }
        self.agent_item("create market order", Method::POST, "/market/orders", Some(token), Some(req)).await
    }

    /// `GET /market/orders/{id}` with the pairing token.
    pub async fn get_order(&self, token: &Secret, order_id: &str) -> Result<wire::MarketOrder> {
        let path = Self::order_path(order_id, "")?;
        self.agent_item::<(), _>("get market order", Method::GET, &path, Some(token), None).await
    }

    /// `GET /market/orders?machineId=` (platform auth): the first page, up to 500.
    pub async fn list_orders(&self, machine_id: &str) -> Result<Vec<wire::MarketOrder>> {
        const OP: &str = "list market orders";
        if machine_id.trim().is_empty() {
            return Err(MarketError::validation("machineId", "must not be blank"));
        }
        let q = [("machineId", machine_id.to_string()), ("limit", "500".to_string())];
        let call = Call {
            op: OP,
            method: Method::GET,
            path: "/market/orders",
            query: &q,
            auth: Auth::Platform,
            shape: Shape::List,
        };
        let v = self.send_as(call, None, None).await?;
        Ok(decode_page::<wire::MarketOrder>(OP, v)?.items)
    }

    /// `POST /market/orders/{id}/execute`: a native run (200) or a handoff (202).
    pub async fn execute_order(&self, token: &Secret, order_id: &str, req: &wire::ExecuteRequest) -> Result<Execution> {
        const OP: &str = "execute market order";
        let path = Self::order_path(order_id, "/execute")?;
        let v = self.agent_raw(OP, &path, token, Some(req)).await?;
        Execution::from_body(&v).map_err(|m| MarketError::shape(OP, m))
    }

    /// `POST /market/orders/{id}/confirm`: the order's and payment's statuses after it.
    pub async fn confirm_order(&self, token: &Secret, order_id: &str) -> Result<(String, Option<String>)> {
        const OP: &str = "confirm market order";
        let path = Self::order_path(order_id, "/confirm")?;
        let v = self.agent_raw(OP, &path, token, Some(&serde_json::json!({}))).await?;
        statuses(OP, &v)
    }

    /// `POST /market/orders/{id}/dispute`: the order's and payment's statuses after it.
    pub async fn dispute_order(
        &self,
        token: &Secret,
        order_id: &str,
        req: &wire::DisputeRequest,
    ) -> Result<(String, Option<String>)> {
        const OP: &str = "dispute market order";
        if req.reason.trim().is_empty() {
            return Err(MarketError::validation("reason", "must not be blank"));
        }
        let path = Self::order_path(order_id, "/dispute")?;
        let v = self.agent_raw(OP, &path, token, Some(req)).await?;
        statuses(OP, &v)
    }

    // ---- payments -------------------------------------------------------------------------------

    /// `POST /market/orders/{id}/payment-intent`.
    pub async fn payment_intent(
        &self,
        token: &Secret,
        order_id: &str,
        req: &wire::PaymentIntentRequest,
    ) -> Result<wire::MarketPayment> {
        let path = Self::order_path(order_id, "/payment-intent")?;
        self.agent_item("create payment intent", Method::POST, &path, Some(token), Some(req)).await
    }

    /// `GET /market/orders/{id}/payment` (platform auth): `None` for `{"item": null}`.
    pub async fn get_payment(&self, order_id: &str) -> Result<Option<wire::MarketPayment>> {
        let path = Self::order_path(order_id, "/payment")?;
        self.agent_item::<(), _>("get market payment", Method::GET, &path, None, None).await
    }

    /// `POST /market/orders/{id}/payment-proof` with an EVM transfer proof.
    pub async fn payment_proof(
        &self,
        token: &Secret,
        order_id: &str,
        proof: &wire::TransferProof,
    ) -> Result<wire::MarketPayment> {
        let path = Self::order_path(order_id, "/payment-proof")?;
        self.agent_item("submit payment proof", Method::POST, &path, Some(token), Some(proof)).await
    }

    /// `POST /market/orders/{id}/payment/escrow-lock`.
    pub async fn escrow_lock(
        &self,
        token: &Secret,
        order_id: &str,
        lock: &wire::EscrowLock,
    ) -> Result<wire::MarketPayment> {
        let path = Self::order_path(order_id, "/payment/escrow-lock")?;
        self.agent_item("lock escrow payment", Method::POST, &path, Some(token), Some(lock)).await
    }

    /// `POST /market/orders/{id}/payment/release` with no body.
    pub async fn release_payment(&self, token: &Secret, order_id: &str) -> Result<wire::MarketPayment> {
        let path = Self::order_path(order_id, "/payment/release")?;
        self.agent_item::<(), _>("release payment", Method::POST, &path, Some(token), None).await
    }

    /// `POST /market/orders/{id}/payment/refund` with no body.
    pub async fn refund_payment(&self, token: &Secret, order_id: &str) -> Result<wire::MarketPayment> {
        let path = Self::order_path(order_id, "/payment/refund")?;
        self.agent_item::<(), _>("refund payment", Method::POST, &path, Some(token), None).await
    }
}

/// A pairing answer must carry a non-empty `pairingToken` (create and session).
fn with_token(op: &'static str, mut p: wire::AgentPairing) -> Result<(wire::AgentPairing, Secret)> {
    match p.pairing_token.take() {
        Some(t) if !t.trim().is_empty() => Ok((p, Secret::new(t))),
        _ => Err(MarketError::shape(op, "item.pairingToken must be a non-empty string")),
    }
}

/// `{order:{status}, payment?:{status}|null}` of confirm and dispute.
fn statuses(op: &'static str, v: &Value) -> Result<(String, Option<String>)> {
    let order = v
        .pointer("/order/status")
        .and_then(Value::as_str)
        .ok_or_else(|| MarketError::shape(op, "order.status must be a string"))?;
    let payment = match v.get("payment") {
        None | Some(Value::Null) => None,
        Some(p) => Some(
            p.get("status")
                .and_then(Value::as_str)
                .ok_or_else(|| MarketError::shape(op, "payment.status must be a string"))?
                .to_string(),
        ),
    };
    Ok((order.to_string(), payment))
}
