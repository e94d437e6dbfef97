//! MCR API client (SPEC §4; SDK 0.12.1 `query/`).
//!
//! * `GET {base}/mcr/{did}` → MCR response (`did`, `machine_id`, `mcr_score`, `mcr`, `bond_status`, …)
//! * `GET {base}/machine/{did}` → machine profile (`schema_version`, `name`, `peaqos{did, …}`)
//! * `GET {base}/operator/{did}/machines` → `{operator_did, machines[], pagination}`
//!
//! Machine DIDs must be `did:peaq:<canonical decimal uint256>` (hex machine DIDs are refused, as in
//! the SDK); operator DIDs are `did:peaq:0x<40 hex>`. Errors carry the SDK `ApiError.code`:
//! 400 `INVALID_REQUEST`, 401/403 `UNAUTHORIZED`, 404 `NOT_FOUND`, 409 `MACHINE_HOMED_ELSEWHERE`
//! (when `detail.code` says so) or `CONFLICT`, 503 `SERVICE_UNAVAILABLE`, other 5xx `SERVER_ERROR`,
//! other non-2xx `HTTP_ERROR`, non-JSON or wrong shape `BAD_RESPONSE`, transport `NETWORK_ERROR`,
//! per-call timeout (default 30 s) `TIMEOUT`. A well-formed response about a different subject
//! than requested (machine compared by parsed id, operator case-insensitively) is `BAD_RESPONSE`.
//! Responses are returned as JSON values after these checks (the node forwards them as JSON text).

use std::time::Duration;

use alloy::primitives::U256;
use serde_json::Value;

use crate::error::{redact_url, ChainError, ErrorCode, Result};
use crate::validation::MachineIdInput;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// MCR API client.
#[derive(Debug, Clone)]
pub struct McrClient {
    base: String,
    http: reqwest::Client,
}

fn api(code: ErrorCode, status: u16, message: impl Into<String>) -> ChainError {
    ChainError::Api { code, status, message: message.into() }
}

/// SDK `validate_machine_did`: `did:peaq:<canonical decimal>` → machine id.
pub fn parse_machine_did(did: &str) -> Result<U256> {
    let rest = did.strip_prefix("did:peaq:").ok_or_else(|| {
        ChainError::validation(
            "did",
            "did:peaq:<decimal machine id>",
            "machine DID must be did:peaq:<canonical decimal machine id>",
        )
    })?;
    MachineIdInput::from_decimal("did", rest).map(|m| m.0).map_err(|_| {
        ChainError::validation(
            "did",
            "did:peaq:<decimal machine id>",
            "machine DID must be did:peaq:<canonical decimal machine id>",
        )
    })
}

/// Operator DID `did:peaq:0x<40 hex>`.
pub fn validate_operator_did(did: &str) -> Result<()> {
    let ok = did.strip_prefix("did:peaq:0x").is_some_and(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(ChainError::validation("did", "did:peaq:0x<address>", "operator DID must be did:peaq:0x<40 hex digits>"))
    }
}

impl McrClient {
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self> {
        crate::rpc::install_crypto_provider();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ChainError::config(
                ErrorCode::ConfigInvalid,
                "mcr_api_url",
                "mcr_api_url must be an http(s) URL",
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| api(ErrorCode::NetworkError, 0, format!("cannot build HTTP client: {e}")))?;
        Ok(McrClient { base: base_url.trim_end_matches('/').to_string(), http })
    }

    async fn get_json(&self, op: &str, path: &str) -> Result<Value> {
        let url = format!("{}{}", self.base, path);
        let shown = format!("{}{}", redact_url(&self.base), path);
        let resp = match self.http.get(&url).header("accept", "application/json").send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(api(ErrorCode::Timeout, 0, format!("{op}: request to {shown} timed out")))
            }
            Err(_) => return Err(api(ErrorCode::NetworkError, 0, format!("{op}: network request to {shown} failed"))),
        };
        let status = resp.status().as_u16();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => {
                return Err(api(ErrorCode::Timeout, status, format!("{op}: request to {shown} timed out")))
            }
            Err(_) => {
                return Err(api(ErrorCode::NetworkError, status, format!("{op}: network request to {shown} failed")))
            }
        };
        if !(200..300).contains(&status) {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let (server_code, server_message) = match v.get("detail") {
                Some(Value::String(s)) => (None, Some(s.clone())),
                Some(Value::Object(o)) => (
                    o.get("code").and_then(Value::as_str).map(str::to_string),
                    o.get("message").and_then(Value::as_str).map(str::to_string),
                ),
                _ => (None, None),
            };
            let suffix = server_message.map(|m| format!(" — {m}")).unwrap_or_default();
            let (code, what) = match status {
                409 if server_code.as_deref() == Some(ErrorCode::MachineHomedElsewhere.as_str()) => (
                    ErrorCode::MachineHomedElsewhere,
                    "machine is registered on a chain this server cannot read".to_string(),
                ),
                409 => (ErrorCode::Conflict, format!("MCR API reported a conflict (HTTP {status}) at {shown}")),
                400 => (
                    ErrorCode::InvalidRequest,
                    format!("MCR API rejected the request or DID (HTTP {status}) at {shown}"),
                ),
                401 | 403 => {
                    (ErrorCode::Unauthorized, format!("MCR API refused authorization (HTTP {status}) at {shown}"))
                }
                404 => (ErrorCode::NotFound, format!("resource not found (HTTP {status}) at {shown}")),
                503 => (ErrorCode::ServiceUnavailable, format!("service unavailable (HTTP {status}) at {shown}")),
                s if s >= 500 => (ErrorCode::ServerError, format!("server error (HTTP {status}) at {shown}")),
                _ => (ErrorCode::HttpError, format!("unexpected HTTP {status} from {shown}")),
            };
            return Err(api(code, status, format!("{op}: {what}{suffix}")));
        }
        serde_json::from_slice(&body).map_err(|_| {
            api(ErrorCode::BadResponse, status, format!("{op}: MCR API at {shown} returned a non-JSON response"))
        })
    }

    fn shape(op: &str, ok: bool, what: &str) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(api(
                ErrorCode::BadResponse,
                200,
                format!("{op}: response does not match the documented shape ({what})"),
            ))
        }
    }

    fn correlate_machine(op: &str, requested: U256, returned: Option<&Value>) -> Result<()> {
        let same = returned.and_then(Value::as_str).and_then(|d| parse_machine_did(d).ok()) == Some(requested);
        if same {
            Ok(())
        } else {
            Err(api(ErrorCode::BadResponse, 200, format!("{op}: MCR API returned a response for a different machine")))
        }
    }

    /// `query_mcr(did)`.
    pub async fn query_mcr(&self, did: &str) -> Result<Value> {
        let id = parse_machine_did(did)?;
        let v = self.get_json("query_mcr", &format!("/mcr/{did}")).await?;
        Self::shape("query_mcr", v.is_object(), "object")?;
        Self::correlate_machine("query_mcr", id, v.get("did"))?;
        Self::shape("query_mcr", v.get("mcr").is_some_and(|m| m.is_string()), "mcr string")?;
        Self::shape("query_mcr", v.get("event_count").is_some_and(Value::is_u64), "event_count integer")?;
        Self::shape(
            "query_mcr",
            v.get("mcr_score").is_some_and(|s| s.is_null() || s.as_u64().is_some_and(|x| x <= 100)),
            "mcr_score 0..100 or null",
        )?;
        Ok(v)
    }

    /// `query_machine(did)`.
    pub async fn query_machine(&self, did: &str) -> Result<Value> {
        let id = parse_machine_did(did)?;
        let v = self.get_json("query_machine", &format!("/machine/{did}")).await?;
        Self::shape("query_machine", v.get("peaqos").is_some_and(Value::is_object), "peaqos object")?;
        Self::correlate_machine("query_machine", id, v["peaqos"].get("did"))?;
        Ok(v)
    }

    /// `query_operator_machines(did)`.
    pub async fn query_operator_machines(&self, did: &str) -> Result<Value> {
        validate_operator_did(did)?;
        let v = self.get_json("query_operator_machines", &format!("/operator/{did}/machines")).await?;
        Self::shape("query_operator_machines", v.get("machines").is_some_and(Value::is_array), "machines array")?;
        Self::shape("query_operator_machines", v.get("pagination").is_some_and(Value::is_object), "pagination object")?;
        let same = v.get("operator_did").and_then(Value::as_str).is_some_and(|r| r.eq_ignore_ascii_case(did));
        if !same {
            return Err(api(
                ErrorCode::BadResponse,
                200,
                "query_operator_machines: MCR API returned a response for a different operator",
            ));
        }
        Ok(v)
    }
}
