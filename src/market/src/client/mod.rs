//! The one HTTP client of the orchestration API (ORCHESTRATION.md §1): URL building, auth modes,
//! timeouts, response envelopes and the mapping of every answer to a value or a [`MarketError`].
//!
//! Same stack as `peaqos_chain`: reqwest with rustls + ring (no second TLS stack in the binary).
//! Never panics on server input: bodies are read up to [`MAX_BODY`], parsed as JSON and decoded
//! with the failing field named.
use std::fmt;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{redact_details, ApiCode, MarketError, Result};
use crate::secret::Secret;
use crate::wire::{self, Page};

mod buyer;

/// `GET` timeout (SDK `DEFAULT_READ_TIMEOUT_MS`).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of every other method (SDK `DEFAULT_WRITE_TIMEOUT_MS`).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest response body read; more is `BAD_RESPONSE`.
pub const MAX_BODY: usize = 4 << 20;

/// How a request authenticates (§1.2). Buyer-side calls will add agent-pairing auth here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `x-api-key` when a key is configured, else no auth header.
    Platform,
    /// No auth header at all, even with a key configured (heartbeat, health, readiness).
    None,
}

/// Envelope expected of a 2xx answer (§1.6).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    Item,
    List,
    Raw,
}

/// One request's fixed parts.
pub(crate) struct Call<'a> {
    pub(crate) op: &'static str,
    pub(crate) method: Method,
    pub(crate) path: &'a str,
    pub(crate) query: &'a [(&'a str, String)],
    pub(crate) auth: Auth,
    pub(crate) shape: Shape,
}

/// Client settings.
#[derive(Clone)]
pub struct ClientConfig {
    /// The orchestration URL (`PEAQOS_ORCHESTRATION_URL`); `/api/v1` is appended.
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub connect_timeout: Duration,
}

impl ClientConfig {
    pub fn new(base_url: impl Into<String>, api_key: Option<Secret>) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into(),
            api_key,
            read_timeout: READ_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Client of the orchestration API.
#[derive(Clone)]
pub struct OrchestrationClient {
    api: String,
    shown: String,
    http: reqwest::Client,
    api_key: Option<Secret>,
    read_timeout: Duration,
    write_timeout: Duration,
}

impl fmt::Debug for OrchestrationClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrchestrationClient")
            .field("api", &self.shown)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

/// `url` without user info, query or fragment (for messages and logs).
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url) else { return "<invalid url>".into() };
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string().trim_end_matches('/').to_string()
}

/// rustls needs a process-wide crypto provider: the one HTTP stack's (ring).
use peaqos_http::install_tls as install_crypto_provider;

impl OrchestrationClient {
    pub fn new(cfg: ClientConfig) -> Result<OrchestrationClient> {
        install_crypto_provider();
        let bad = |m: &str| MarketError::Config { field: "orchestration_url", message: m.to_string() };
        let url = reqwest::Url::parse(cfg.base_url.trim()).map_err(|_| bad("not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(bad("must be an http(s) URL with a host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not carry a query or fragment"));
        }
        if cfg.api_key.as_ref().is_some_and(Secret::is_blank) {
            return Err(MarketError::Config { field: "api_key", message: "is empty".into() });
        }
        let base = cfg.base_url.trim();
        let base = base.strip_suffix('/').unwrap_or(base);
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .user_agent(concat!("peaqos-node/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| MarketError::Config { field: "orchestration_url", message: format!("HTTP client: {e}") })?;
        Ok(OrchestrationClient {
            api: format!("{base}/api/v1"),
            shown: format!("{}/api/v1", redact_url(base)),
            http,
            api_key: cfg.api_key,
            read_timeout: cfg.read_timeout,
            write_timeout: cfg.write_timeout,
        })
    }

    /// The orchestration URL as configured (for the control socket; may carry credentials: never log it).
    pub fn base_url(&self) -> &str {
        self.api.strip_suffix("/api/v1").unwrap_or(&self.api)
    }

    /// The API base as shown in messages (no credentials).
    pub fn api_base(&self) -> &str {
        &self.shown
    }

    /// One request; returns the 2xx JSON body (checked against `shape`), or `Value::Null` for 204.
    async fn send(&self, call: Call<'_>, body: Option<Vec<u8>>) -> Result<Value> {
        self.send_as(call, body, None).await
    }

    /// [`Self::send`], with the agent-pairing token in `x-agent-pairing-token` when given (§1.2).
    pub(crate) async fn send_as(&self, call: Call<'_>, body: Option<Vec<u8>>, agent: Option<&Secret>) -> Result<Value> {
        let Call { op, method, path, query, auth, shape } = call;
        let shown = format!("{}{}", self.shown, path);
        let mut url = reqwest::Url::parse(&format!("{}{}", self.api, path))
            .map_err(|_| MarketError::validation("path", format!("{shown} is not a valid URL")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let timeout = if method == Method::GET { self.read_timeout } else { self.write_timeout };
        let mut req = self.http.request(method, url).timeout(timeout);
        if let (Auth::Platform, Some(key)) = (auth, &self.api_key) {
            let mut v = reqwest::header::HeaderValue::from_str(key.expose())
                .map_err(|_| MarketError::Config { field: "api_key", message: "not a valid header value".into() })?;
            v.set_sensitive(true);
            req = req.header("x-api-key", v);
        }
        if let Some(token) = agent {
            let mut v = reqwest::header::HeaderValue::from_str(token.expose()).map_err(|_| MarketError::Config {
                field: "pairing_token",
                message: "not a valid header value".into(),
            })?;
            v.set_sensitive(true);
            req = req.header("x-agent-pairing-token", v);
        }
        // content-type only with a body: the server rejects a bodyless request that claims one.
        req = match body {
            Some(b) => req.header("content-type", "application/json").body(b),
            None => req.header("content-length", "0"),
        };
        tracing::debug!(op, url = %shown, "orchestration request");
        let net = |e: reqwest::Error| MarketError::Network {
            op,
            url: shown.clone(),
            reason: error_chain(&e),
            timeout: e.is_timeout(),
        };
        let mut resp = req.send().await.map_err(net)?;
        let status = resp.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(net)? {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(MarketError::api(op, ApiCode::BadResponse, status, format!("body over {MAX_BODY} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        if status >= 400 {
            return Err(error_from_body(op, status, &bytes));
        }
        if status == 204 {
            return Ok(Value::Null);
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
            let what = if bytes.is_empty() { "an empty body" } else { "a non-JSON body" };
            MarketError::api(op, ApiCode::BadResponse, status, format!("HTTP {status} with {what}"))
        })?;
        check_envelope(op, &value, shape)?;
        Ok(value)
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        auth: Auth,
        body: Option<&B>,
    ) -> Result<T> {
        let body = body.map(|b| serde_json::to_vec(b).expect("request shapes serialize"));
        let v = self.send(Call { op, method, path, query: &[], auth, shape: Shape::Item }, body).await?;
        decode(op, "item", v.get("item").cloned().unwrap_or(Value::Null))
    }

    /// `GET /health` (no auth): `Ok(())` when the server says `{"ok": true}`.
    pub async fn health(&self) -> Result<()> {
        let v = self
            .send(
                Call {
                    op: "health",
                    method: Method::GET,
                    path: "/health",
                    query: &[],
                    auth: Auth::None,
                    shape: Shape::Raw,
                },
                None,
            )
            .await?;
        let h: wire::Health = decode("health", "response", v)?;
        if h.ok {
            Ok(())
        } else {
            Err(MarketError::shape("health", "response.ok must be true"))
        }
    }

    /// `POST /machine-identity/challenges` for `identity_ref` (`did:peaq:<decimal>`).
    pub async fn create_identity_challenge(&self, identity_ref: &str) -> Result<wire::MachineIdentityChallenge> {
        const OP: &str = "create identity challenge";
        if !wire::is_canonical_machine_did(identity_ref) {
            return Err(MarketError::validation("identityRef", "must be did:peaq:<canonical decimal machine id>"));
        }
        let req = wire::IdentityChallengeRequest { identity_ref: identity_ref.to_string() };
        let ch: wire::MachineIdentityChallenge =
            self.call(OP, Method::POST, "/machine-identity/challenges", Auth::Platform, Some(&req)).await?;
        ch.check().map_err(|m| MarketError::shape(OP, m))?;
        Ok(ch)
    }

    /// `POST /machines` (record created as `draft`).
    pub async fn create_machine(&self, req: &wire::CreateMachineRequest) -> Result<wire::Machine> {
        const OP: &str = "create machine";
        for (field, v) in [("displayName", &req.display_name), ("ownerId", &req.owner_id)] {
            if v.trim().is_empty() {
                return Err(MarketError::validation(field, "must not be blank"));
            }
        }
        let m: wire::Machine = self.call(OP, Method::POST, "/machines", Auth::Platform, Some(req)).await?;
        m.check(true).map_err(|e| MarketError::shape(OP, e))?;
        Ok(m)
    }

    /// `GET /machines/{id}`.
    pub async fn get_machine(&self, machine_id: &str) -> Result<wire::Machine> {
        const OP: &str = "get machine";
        let path = format!("/machines/{}", path_id("machineId", machine_id)?);
        let m: wire::Machine = self.call::<(), _>(OP, Method::GET, &path, Auth::Platform, None).await?;
        m.check(false).map_err(|e| MarketError::shape(OP, e))?;
        Ok(m)
    }

    /// `PATCH /machines/{id}`.
    pub async fn update_machine(&self, machine_id: &str, req: &wire::UpdateMachineRequest) -> Result<wire::Machine> {
        const OP: &str = "update machine";
        let path = format!("/machines/{}", path_id("machineId", machine_id)?);
        let m: wire::Machine = self.call(OP, Method::PATCH, &path, Auth::Platform, Some(req)).await?;
        m.check(false).map_err(|e| MarketError::shape(OP, e))?;
        Ok(m)
    }

    /// `GET /machines?limit&cursor`: one page.
    pub async fn list_machines(&self, limit: Option<u32>, cursor: Option<&str>) -> Result<Page<wire::Machine>> {
        const OP: &str = "list machines";
        if limit.is_some_and(|l| !(1..=500).contains(&l)) {
            return Err(MarketError::validation("limit", "integer between 1 and 500"));
        }
        let mut q = Vec::new();
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(c) = cursor {
            q.push(("cursor", c.to_string()));
        }
        let v = self
            .send(
                Call {
                    op: OP,
                    method: Method::GET,
                    path: "/machines",
                    query: &q,
                    auth: Auth::Platform,
                    shape: Shape::List,
                },
                None,
            )
            .await?;
        let page: Page<wire::Machine> = decode_page(OP, v)?;
        for (i, m) in page.items.iter().enumerate() {
            m.check(false).map_err(|e| MarketError::shape(OP, e.replacen("item.", &format!("items[{i}]."), 1)))?;
        }
        Ok(page)
    }

    /// `POST /machines/{id}/agents/enrollment`: the answer carries the one-time agent token.
    pub async fn enroll_agent(&self, machine_id: &str, req: &wire::EnrollAgentRequest) -> Result<wire::MachineAgent> {
        const OP: &str = "enroll machine agent";
        let path = format!("/machines/{}/agents/enrollment", path_id("machineId", machine_id)?);
        self.call(OP, Method::POST, &path, Auth::Platform, Some(req)).await
    }

    /// `GET /machines/{id}/agents` (no paging).
    pub async fn list_agents(&self, machine_id: &str) -> Result<Vec<wire::MachineAgent>> {
        const OP: &str = "list machine agents";
        let path = format!("/machines/{}/agents", path_id("machineId", machine_id)?);
        let v = self
            .send(
                Call { op: OP, method: Method::GET, path: &path, query: &[], auth: Auth::Platform, shape: Shape::List },
                None,
            )
            .await?;
        Ok(decode_page(OP, v)?.items)
    }

    /// `DELETE /machines/{id}/agents/{agentId}` (204).
    pub async fn revoke_agent(&self, machine_id: &str, agent_id: &str) -> Result<()> {
        let path = format!("/machines/{}/agents/{}", path_id("machineId", machine_id)?, path_id("agentId", agent_id)?);
        self.send(
            Call {
                op: "revoke machine agent",
                method: Method::DELETE,
                path: &path,
                query: &[],
                auth: Auth::Platform,
                shape: Shape::Raw,
            },
            None,
        )
        .await?;
        Ok(())
    }

    /// `POST /machine-agents/heartbeat` (no auth header: the agent token is in the body).
    pub async fn heartbeat(&self, req: &wire::HeartbeatRequest) -> Result<wire::HeartbeatResult> {
        const OP: &str = "machine agent heartbeat";
        if req.endpoints.is_empty() {
            return Err(MarketError::validation("endpoints", "must contain at least one entry"));
        }
        if req.agent_token.is_blank() {
            return Err(MarketError::validation("agentToken", "must not be blank"));
        }
        let r: wire::HeartbeatResult =
            self.call(OP, Method::POST, "/machine-agents/heartbeat", Auth::None, Some(req)).await?;
        if r.machine_id != req.machine_id || r.agent_id != req.agent_id {
            return Err(MarketError::shape(
                OP,
                "item.machineId/agentId do not match the agent that sent the heartbeat",
            ));
        }
        Ok(r)
    }
}

impl OrchestrationClient {
    /// `PUT /machines/{id}/delivery-capabilities`: what this machine can deliver (seller side).
    pub async fn put_delivery_capabilities(
        &self,
        machine_id: &str,
        req: &wire::DeliveryCapabilitiesRequest,
    ) -> Result<wire::DeliveryCapabilities> {
        const OP: &str = "put delivery capabilities";
        path_id("agentId", &req.agent_id)?;
        let path = format!("/machines/{}/delivery-capabilities", path_id("machineId", machine_id)?);
        let r: wire::DeliveryCapabilities = self.call(OP, Method::PUT, &path, Auth::Platform, Some(req)).await?;
        if r.machine_id != machine_id || r.agent_id != req.agent_id {
            return Err(MarketError::shape(OP, "item.machineId/agentId do not match the request"));
        }
        Ok(r)
    }

    /// `PUT /machines/{m}/runtime-endpoints/{providerKey}` (upsert).
    pub async fn upsert_runtime_endpoint(
        &self,
        machine_id: &str,
        provider_key: &str,
        req: &wire::RuntimeEndpointUpsert,
    ) -> Result<wire::RuntimeEndpoint> {
        const OP: &str = "upsert runtime endpoint";
        let path = format!(
            "/machines/{}/runtime-endpoints/{}",
            path_id("machineId", machine_id)?,
            path_id("providerKey", provider_key)?
        );
        let r: wire::RuntimeEndpoint = self.call(OP, Method::PUT, &path, Auth::Platform, Some(req)).await?;
        if r.machine_id != machine_id || r.provider_key != provider_key {
            return Err(MarketError::shape(OP, "item.machineId/providerKey do not match the request"));
        }
        Ok(r)
    }

    /// `GET /purchases/{id}`.
    pub async fn get_purchase(&self, purchase_id: &str) -> Result<wire::Purchase> {
        let path = format!("/purchases/{}", path_id("purchaseId", purchase_id)?);
        let p: wire::Purchase = self.call::<(), _>("get purchase", Method::GET, &path, Auth::Platform, None).await?;
        if p.id != purchase_id {
            return Err(MarketError::shape("get purchase", "item.id is not the purchase asked for"));
        }
        Ok(p)
    }

    /// `POST /stream/orders/{purchaseId}/prepare-access` (raw answer; agent credentials in the body).
    pub async fn prepare_access(
        &self,
        purchase_id: &str,
        req: &wire::PrepareAccessRequest,
    ) -> Result<wire::PrepareAccessResponse> {
        const OP: &str = "prepare buyer access";
        let path = format!("/stream/orders/{}/prepare-access", path_id("purchaseId", purchase_id)?);
        let body = serde_json::to_vec(req).expect("request shapes serialize");
        let v = self
            .send(
                Call { op: OP, method: Method::POST, path: &path, query: &[], auth: Auth::Platform, shape: Shape::Raw },
                Some(body),
            )
            .await?;
        decode(OP, "response", v)
    }

    /// `POST /purchases/{id}/events`.
    pub async fn purchase_event(
        &self,
        purchase_id: &str,
        req: &wire::PurchaseEventRequest,
    ) -> Result<wire::PurchaseEvent> {
        let path = format!("/purchases/{}/events", path_id("purchaseId", purchase_id)?);
        self.call("create purchase event", Method::POST, &path, Auth::Platform, Some(req)).await
    }

    /// `PATCH /machines/{id}/stream/listings/{listingId}` (raw answer, ignored as the SDK does).
    pub async fn update_listing(&self, machine_id: &str, listing_id: &str, req: &wire::ListingUpdate) -> Result<()> {
        let path = format!(
            "/machines/{}/stream/listings/{}",
            path_id("machineId", machine_id)?,
            path_id("listingId", listing_id)?
        );
        let body = serde_json::to_vec(req).expect("request shapes serialize");
        self.send(
            Call {
                op: "update stream listing",
                method: Method::PATCH,
                path: &path,
                query: &[],
                auth: Auth::Platform,
                shape: Shape::Raw,
            },
            Some(body),
        )
        .await?;
        Ok(())
    }
}

/// A path segment: non-blank and free of characters that would change the path (ids are
/// interpolated raw by the SDK; we refuse instead of encoding).
pub(crate) fn path_id<'a>(field: &str, id: &'a str) -> Result<&'a str> {
    let ok = !id.trim().is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.~".contains(&b));
    if ok {
        Ok(id)
    } else {
        Err(MarketError::validation(field, "must be a non-blank id of letters, digits and _-.~"))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// An HTTP ≥ 400 answer as an error (§1.7).
fn error_from_body(op: &'static str, status: u16, bytes: &[u8]) -> MarketError {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return MarketError::api(op, ApiCode::BadResponse, status, format!("HTTP {status} with a non-JSON error body"));
    };
    match serde_json::from_value::<wire::ErrorEnvelope>(value) {
        Ok(env) => MarketError::Api {
            op,
            code: ApiCode::parse(&env.error.code),
            status,
            message: env.error.message,
            details: env.error.details.map(|d| Box::new(redact_details(d))),
        },
        Err(_) => MarketError::api(
            op,
            ApiCode::BadResponse,
            status,
            format!("HTTP {status} without an error envelope {{error:{{code,message}}}}"),
        ),
    }
}

fn check_envelope(op: &'static str, v: &Value, shape: Shape) -> Result<()> {
    let obj = match (shape, v.as_object()) {
        (Shape::Raw, _) => return Ok(()),
        (_, Some(o)) => o,
        (_, None) => return Err(MarketError::shape(op, "response must be a JSON object")),
    };
    match shape {
        Shape::Item if !obj.contains_key("item") => Err(MarketError::shape(op, "response.item is missing")),
        Shape::List if !obj.get("items").is_some_and(Value::is_array) => {
            Err(MarketError::shape(op, "response.items must be an array"))
        }
        Shape::List if !matches!(obj.get("nextCursor"), None | Some(Value::Null) | Some(Value::String(_))) => {
            Err(MarketError::shape(op, "response.nextCursor must be a string or null"))
        }
        _ => Ok(()),
    }
}

/// Decode `v` as `T`; a mismatch is `INVALID_RESPONSE_SHAPE` naming the field (`where.a.b[2]`).
pub(crate) fn decode<T: DeserializeOwned>(op: &'static str, at: &str, v: Value) -> Result<T> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { at.to_string() } else { format!("{at}.{path}") };
        MarketError::shape(op, format!("{field}: {}", e.into_inner()))
    })
}

pub(crate) fn decode_page<T: DeserializeOwned>(op: &'static str, v: Value) -> Result<Page<T>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        items: Vec<Value>,
        #[serde(default)]
        next_cursor: Option<String>,
    }
    let raw: Raw = decode(op, "response", v)?;
    let items = raw
        .items
        .into_iter()
        .enumerate()
        .map(|(i, item)| decode(op, &format!("items[{i}]"), item))
        .collect::<Result<Vec<T>>>()?;
    Ok(Page { items, next_cursor: raw.next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked_and_key_never_shown() {
        let c = OrchestrationClient::new(ClientConfig::new("https://u:p@example.com/x/", Some(Secret::new("k-123"))))
            .unwrap();
        let d = format!("{c:?}");
        assert!(d.contains("https://example.com/x/api/v1") && !d.contains("k-123") && !d.contains("u:p"), "{d}");
        for bad in ["ftp://h", "http://", "not a url", "http://h/?q=1"] {
            let e = OrchestrationClient::new(ClientConfig::new(bad, None)).unwrap_err();
            assert!(e.to_string().contains("orchestration_url"), "{bad}: {e}");
        }
    }

    #[test]
    fn path_ids_refuse_path_changes() {
        assert!(path_id("machineId", "mach_1").is_ok());
        for bad in ["", " ", "a/b", "..%2f", "a?b"] {
            assert!(path_id("machineId", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_bodies() {
        let e = error_from_body(
            "op",
            409,
            br#"{"error":{"code":"MACHINE_IDENTITY_EXISTS","message":"m","details":{"agentToken":"s"}},"x":1}"#,
        );
        assert!(e.is(&ApiCode::MachineIdentityExists));
        let MarketError::Api { details: Some(d), status: 409, .. } = &e else { panic!("{e:?}") };
        assert_eq!(d["agentToken"], "[REDACTED]");
        assert!(error_from_body("op", 500, b"<html>").is(&ApiCode::BadResponse));
        assert!(error_from_body("op", 400, br#"{"error":"nope"}"#).is(&ApiCode::BadResponse));
        assert!(error_from_body("op", 400, b"").is(&ApiCode::BadResponse));
    }

    #[test]
    fn decode_names_the_field() {
        let e = decode::<wire::MachineIdentityChallenge>("op", "item", serde_json::json!({"challengeId": 1}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("INVALID_RESPONSE_SHAPE") && e.contains("item.challengeId"), "{e}");
    }
}
