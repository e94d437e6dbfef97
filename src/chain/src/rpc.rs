//! Minimal Ethereum JSON-RPC client over HTTP(S) with ordered URL fallback.
//!
//! Why not an alloy provider: the outbox must control nonces, keep the exact signed bytes, and
//! distinguish "every URL is down" (keep the intent queued, back off) from "a node answered with
//! an error" (decide per error). So this layer returns [`RpcFailure::Transport`] only when no
//! configured URL produced a JSON-RPC answer, and [`RpcFailure::Node`] for JSON-RPC error objects
//! (with revert data when the node supplied it).
//!
//! URLs are tried in configured order starting at the last one that worked. Error strings carry
//! only `scheme://host` of a URL (see [`crate::error::redact_url`]).

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use alloy::primitives::{Address, Bytes, B256, U256, U64};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{redact_url, ChainError, ErrorCode};

/// Install ring as rustls' process-wide crypto provider (idempotent): the one HTTP stack's.
pub use peaqos_http::install_tls as install_crypto_provider;

/// Failure of one RPC call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcFailure {
    /// No URL answered (connection refused, timeout, HTTP 5xx/429, unparsable body).
    Transport(String),
    /// A node answered with a JSON-RPC error.
    Node { code: i64, message: String, data: Option<Bytes> },
}

impl RpcFailure {
    /// The node reported an EVM revert (revert data may still be empty).
    pub fn is_revert(&self) -> bool {
        match self {
            RpcFailure::Node { code, message, data } => {
                *code == 3 || data.is_some() || message.to_ascii_lowercase().contains("revert")
            }
            RpcFailure::Transport(_) => false,
        }
    }
    /// The node says the call needs more gas than a block (or the call's allowance) holds:
    /// geth and anvil "gas required exceeds allowance", anvil's "intrinsic gas too high",
    /// "exceeds block gas limit".
    pub fn is_gas_above_block(&self) -> bool {
        match self {
            RpcFailure::Node { message, .. } => {
                let m = message.to_ascii_lowercase();
                m.contains("gas required exceeds")
                    || m.contains("intrinsic gas too high")
                    || m.contains("exceeds block gas limit")
            }
            RpcFailure::Transport(_) => false,
        }
    }
    /// The node does not serve the method (JSON-RPC -32601, or a message that says so).
    pub fn is_method_unavailable(&self) -> bool {
        match self {
            RpcFailure::Node { code, message, .. } => {
                let m = message.to_ascii_lowercase();
                *code == -32601
                    || ["method not found", "not supported", "unsupported", "does not exist", "not available"]
                        .iter()
                        .any(|p| m.contains(p))
            }
            RpcFailure::Transport(_) => false,
        }
    }
    pub fn message(&self) -> String {
        match self {
            RpcFailure::Transport(m) => m.clone(),
            RpcFailure::Node { message, .. } => message.clone(),
        }
    }
    pub fn into_error(self) -> ChainError {
        match self {
            RpcFailure::Transport(m) => ChainError::rpc(ErrorCode::RpcUnavailable, m),
            RpcFailure::Node { code, message, .. } => {
                let c = if code == -32005 || message.contains("rate limit") {
                    ErrorCode::RpcRateLimited
                } else {
                    ErrorCode::RpcError
                };
                ChainError::rpc(c, format!("RPC error {code}: {message}"))
            }
        }
    }
}

/// A log in a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct RpcLog {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
}

/// The receipt fields we use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcReceipt {
    pub transaction_hash: B256,
    pub block_number: Option<U64>,
    pub gas_used: U64,
    pub status: Option<U64>,
    #[serde(default)]
    pub logs: Vec<RpcLog>,
    #[serde(default)]
    pub effective_gas_price: Option<U256>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RpcBlock {
    base_fee_per_gas: Option<U256>,
    #[serde(default)]
    gas_limit: Option<U64>,
}

/// Whether the node answers `eth_simulateV1` (learned on first use).
const SIMULATE_UNKNOWN: u8 = 0;
const SIMULATE_YES: u8 = 1;
const SIMULATE_NO: u8 = 2;

/// One simulated call of `eth_simulateV1`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SimulatedCall {
    gas_used: U64,
    status: U64,
    #[serde(default)]
    return_data: Bytes,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct SimulatedBlock {
    calls: Vec<SimulatedCall>,
}

/// What [`Rpc::gas_needed`] found for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GasNeed {
    /// Gas to ask for: the measured need plus what refunds and call forwarding can hide.
    pub limit: u64,
    /// Gas the call was seen to use: its gas used in the simulation, or `eth_estimateGas`'s
    /// answer. Both ran the call with at most a block's gas (the default gas of a simulated call
    /// is what its block has left; the estimate searches up to the block's limit), so a call
    /// measured at all fits in a block.
    pub measured: u64,
}

/// Call parameters for `eth_call` / `eth_estimateGas`.
#[derive(Debug, Clone, Default)]
pub struct CallRequest {
    pub from: Option<Address>,
    pub to: Address,
    pub value: U256,
    pub data: Bytes,
}

impl CallRequest {
    fn to_json(&self) -> Value {
        let mut o = json!({"to": self.to, "data": self.data, "value": format!("{:#x}", self.value)});
        if let Some(f) = self.from {
            o["from"] = json!(f);
        }
        o
    }
}

/// JSON-RPC client.
#[derive(Debug)]
pub struct Rpc {
    urls: Vec<String>,
    http: reqwest::Client,
    next_id: AtomicU64,
    preferred: AtomicUsize,
    simulate: AtomicU8,
}

fn revert_data(v: Option<&Value>) -> Option<Bytes> {
    match v? {
        Value::String(s) => s.parse::<Bytes>().ok(),
        Value::Object(o) => revert_data(o.get("data")),
        _ => None,
    }
}

impl Rpc {
    pub fn new(urls: Vec<String>, request_timeout: Duration) -> Result<Self, ChainError> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| ChainError::rpc(ErrorCode::RpcUnavailable, format!("cannot build HTTP client: {e}")))?;
        Ok(Rpc {
            urls,
            http,
            next_id: AtomicU64::new(1),
            preferred: AtomicUsize::new(0),
            simulate: AtomicU8::new(SIMULATE_UNKNOWN),
        })
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Raw JSON-RPC request with fallback over the URLs.
    pub async fn request_value(&self, method: &str, params: Value) -> Result<Value, RpcFailure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let n = self.urls.len();
        let start = self.preferred.load(Ordering::Relaxed) % n.max(1);
        let mut errors = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            let url = &self.urls[i];
            let resp = match self.http.post(url).json(&body).send().await {
                Ok(r) => r,
                Err(e) => {
                    let kind = if e.is_timeout() {
                        "timeout"
                    } else if e.is_connect() {
                        "connect failed"
                    } else {
                        "request failed"
                    };
                    errors.push(format!("{}: {kind}", redact_url(url)));
                    continue;
                }
            };
            let status = resp.status();
            if status.as_u16() == 429 || status.is_server_error() {
                errors.push(format!("{}: HTTP {}", redact_url(url), status.as_u16()));
                continue;
            }
            let v: Value = match resp.json().await {
                Ok(v) => v,
                Err(_) => {
                    errors.push(format!("{}: HTTP {} with non-JSON body", redact_url(url), status.as_u16()));
                    continue;
                }
            };
            self.preferred.store(i, Ordering::Relaxed);
            if let Some(err) = v.get("error") {
                return Err(RpcFailure::Node {
                    code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                    message: err.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
                    data: revert_data(err.get("data")),
                });
            }
            return Ok(v.get("result").cloned().unwrap_or(Value::Null));
        }
        Err(RpcFailure::Transport(format!("{method}: no RPC URL answered ({})", errors.join("; "))))
    }

    pub async fn request<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, RpcFailure> {
        let v = self.request_value(method, params).await?;
        serde_json::from_value(v).map_err(|e| RpcFailure::Transport(format!("{method}: unexpected result shape: {e}")))
    }

    pub async fn chain_id(&self) -> Result<u64, RpcFailure> {
        Ok(self.request::<U64>("eth_chainId", json!([])).await?.to::<u64>())
    }
    pub async fn transaction_count(&self, a: Address, tag: &str) -> Result<u64, RpcFailure> {
        Ok(self.request::<U64>("eth_getTransactionCount", json!([a, tag])).await?.to::<u64>())
    }
    pub async fn balance(&self, a: Address) -> Result<U256, RpcFailure> {
        self.request("eth_getBalance", json!([a, "latest"])).await
    }
    pub async fn code(&self, a: Address) -> Result<Bytes, RpcFailure> {
        self.request("eth_getCode", json!([a, "latest"])).await
    }
    pub async fn call(&self, req: &CallRequest) -> Result<Bytes, RpcFailure> {
        self.request("eth_call", json!([req.to_json(), "latest"])).await
    }
    pub async fn call_at(&self, req: &CallRequest, block: u64) -> Result<Bytes, RpcFailure> {
        self.request("eth_call", json!([req.to_json(), format!("{block:#x}")])).await
    }
    async fn estimate_gas(&self, req: &CallRequest) -> Result<u64, RpcFailure> {
        Ok(self.request::<U64>("eth_estimateGas", json!([req.to_json()])).await?.to::<u64>())
    }
    /// Gas to give `req`: its gas used in one `eth_simulateV1` execution, plus the most EIP-3529
    /// refunds can hide (a fifth of the gas consumed) and the 63/64 forwarding of two call
    /// levels, where the node has that method; `eth_estimateGas` (a binary search: about ten
    /// executions of the call on the node) otherwise. A revert comes back as
    /// [`RpcFailure::Node`] with code 3 and the revert data either way.
    pub async fn gas_needed(&self, req: &CallRequest) -> Result<GasNeed, RpcFailure> {
        if self.simulate.load(Ordering::Relaxed) != SIMULATE_NO {
            match self.simulate_gas(req).await {
                Ok(used) => {
                    self.simulate.store(SIMULATE_YES, Ordering::Relaxed);
                    return Ok(GasNeed {
                        limit: used.saturating_add(used / 4).saturating_mul(64 * 64) / (63 * 63),
                        measured: used,
                    });
                }
                Err(f) if f.is_method_unavailable() => {
                    tracing::debug!(error = %f.message(), "eth_simulateV1 unavailable; using eth_estimateGas");
                    self.simulate.store(SIMULATE_NO, Ordering::Relaxed);
                }
                // Any other refusal but a revert (intrinsic gas above the block's, ...): let
                // eth_estimateGas give the node's usual answer for this call.
                Err(f @ RpcFailure::Node { .. }) if !f.is_revert() => {}
                Err(f) => return Err(f),
            }
        }
        let exact = self.estimate_gas(req).await?;
        Ok(GasNeed { limit: exact, measured: exact })
    }

    /// Gas used by `req` in one `eth_simulateV1` execution.
    async fn simulate_gas(&self, req: &CallRequest) -> Result<u64, RpcFailure> {
        let blocks: Vec<SimulatedBlock> = self
            .request("eth_simulateV1", json!([{"blockStateCalls": [{"calls": [req.to_json()]}]}, "latest"]))
            .await?;
        let Some(call) = blocks.into_iter().next().and_then(|b| b.calls.into_iter().next()) else {
            return Err(RpcFailure::Transport("eth_simulateV1: answer holds no call result".into()));
        };
        if call.status.to::<u64>() != 1 {
            let message = call
                .error
                .as_ref()
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("execution reverted")
                .to_string();
            return Err(RpcFailure::Node {
                code: 3,
                message: if message.contains("revert") { message } else { format!("execution reverted ({message})") },
                data: Some(call.return_data),
            });
        }
        Ok(call.gas_used.to::<u64>())
    }

    pub async fn send_raw(&self, raw: &Bytes) -> Result<B256, RpcFailure> {
        self.request("eth_sendRawTransaction", json!([raw])).await
    }
    pub async fn receipt(&self, h: B256) -> Result<Option<RpcReceipt>, RpcFailure> {
        self.request("eth_getTransactionReceipt", json!([h])).await
    }
    /// `Some(block_number_or_none)` when the node knows the transaction.
    pub async fn transaction_known(&self, h: B256) -> Result<bool, RpcFailure> {
        let v = self.request_value("eth_getTransactionByHash", json!([h])).await?;
        Ok(!v.is_null())
    }
    pub async fn base_fee(&self) -> Result<Option<u128>, RpcFailure> {
        Ok(self.latest_block_limits().await?.0)
    }
    /// Base fee and gas limit of the latest block.
    pub async fn latest_block_limits(&self) -> Result<(Option<u128>, Option<u64>), RpcFailure> {
        let b: Option<RpcBlock> = self.request("eth_getBlockByNumber", json!(["latest", false])).await?;
        Ok(match b {
            Some(b) => (b.base_fee_per_gas.map(|f| f.saturating_to::<u128>()), b.gas_limit.map(|g| g.to::<u64>())),
            None => (None, None),
        })
    }
    pub async fn max_priority_fee(&self) -> Result<u128, RpcFailure> {
        Ok(self.request::<U256>("eth_maxPriorityFeePerGas", json!([])).await?.saturating_to::<u128>())
    }
    pub async fn gas_price(&self) -> Result<u128, RpcFailure> {
        Ok(self.request::<U256>("eth_gasPrice", json!([])).await?.saturating_to::<u128>())
    }
}

#[cfg(test)]
mod tests {
    use super::RpcFailure;

    fn node(code: i64, message: &str) -> RpcFailure {
        RpcFailure::Node { code, message: message.into(), data: None }
    }

    #[test]
    fn gas_above_block_is_told_apart_from_a_missing_method() {
        // anvil 1.7's answers to eth_simulateV1 and eth_estimateGas for a call above the block
        let sim = node(-32000, "intrinsic gas too high -- CallGasCostMoreThanGasLimit");
        let est = node(-32003, "Out of gas: gas required exceeds allowance: 400000");
        assert!(sim.is_gas_above_block() && est.is_gas_above_block());
        assert!(!sim.is_method_unavailable() && !est.is_method_unavailable());
        assert!(!sim.is_revert() && !est.is_revert());
        // a node without eth_simulateV1
        let missing = node(-32601, "the method eth_simulateV1 does not exist/is not available");
        assert!(missing.is_method_unavailable() && !missing.is_gas_above_block());
        assert!(node(-32000, "Method not found").is_method_unavailable());
        assert!(!RpcFailure::Transport("connection refused".into()).is_gas_above_block());
        assert!(!node(3, "execution reverted").is_method_unavailable());
    }
}
