//! Test support: find/spawn anvil and the test/chain harness (127.0.0.1 only, stopped on drop).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use peaqos_chain::config::{ChainConfig, Generation, Network};
use peaqos_chain::rpc::Rpc;
use peaqos_chain::validation::{Currency, MachineIdInput, SubmitEventParams, ValueInput};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const KEY0: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
pub const KEY1: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

#[allow(unused_imports)] // not every test file uses both
pub use peaqos_testkit::{free_port, repo_root};

pub fn signer(hex_key: &str) -> PrivateKeySigner {
    hex_key.parse().unwrap()
}

/// Raw JSON-RPC helper for assertions.
pub async fn rpc_value(url: &str, method: &str, params: Value) -> Value {
    let rpc = Rpc::new(vec![url.to_string()], Duration::from_secs(10)).unwrap();
    rpc.request_value(method, params).await.unwrap_or_else(|e| panic!("{method}: {e:?}"))
}

/// The latest block's timestamp: event timestamps must not be ahead of it (`FutureTimestamp`).
pub async fn latest_block_timestamp(url: &str) -> i64 {
    let b = rpc_value(url, "eth_getBlockByNumber", json!(["latest", false])).await;
    quantity(&b["timestamp"]) as i64
}

pub async fn nonce_of(url: &str, a: Address) -> u64 {
    quantity(&rpc_value(url, "eth_getTransactionCount", json!([a, "latest"])).await)
}

/// A JSON-RPC hex quantity (`"0x1a"`).
fn quantity(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

pub async fn storage0(url: &str, a: Address) -> U256 {
    let v = rpc_value(url, "eth_getStorageAt", json!([a, "0x0", "latest"])).await;
    v.as_str().unwrap().parse().unwrap()
}

fn kill_term(child: &mut Child) {
    peaqos_testkit::terminate(child);
}

/// One anvil process.
pub struct Anvil {
    pub port: u16,
    pub child: Option<Child>,
    pub bin: PathBuf,
}

impl Anvil {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn spawn(bin: &Path, port: u16, state: Option<&Path>, no_mining: bool) -> Anvil {
        Self::spawn_with(bin, port, state, no_mining, &[])
    }

    /// [`Anvil::spawn`] with more anvil arguments (`--gas-limit`, ...).
    pub fn spawn_with(bin: &Path, port: u16, state: Option<&Path>, no_mining: bool, extra: &[&str]) -> Anvil {
        let mut cmd = Command::new(bin);
        cmd.args(extra);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--chain-id", "3338"]);
        if let Some(s) = state {
            cmd.arg("--state").arg(s);
        }
        if no_mining {
            cmd.arg("--no-mining");
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::null()).stdin(Stdio::null());
        let child = cmd.spawn().expect("spawn anvil");
        let a = Anvil { port, child: Some(child), bin: bin.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return a;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("anvil did not listen on {port}");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_term(&mut c);
        }
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Counter stand-ins: EventRegistry (+1 per call) and Batch precompile (+len(to) per call).
pub const COUNTER_CODE: &str = "0x60005460010160005500";
pub const BATCH_COUNTER_CODE: &str = "0x600435600401356000540160005500";

pub async fn set_code(url: &str, a: Address, code: &str) {
    rpc_value(url, "anvil_setCode", json!([a, code])).await;
}

/// The gen-2 EventRegistry address of the test deployment (where [`install_counters`] puts its
/// counter).
pub const REGISTRY: Address = alloy::primitives::address!("A1e7F1d7B24dAb55Dc92491e6d9B89F6E925Ad1e");

/// The counter stand-ins at the EventRegistry and the Batch precompile, so their storage slot 0
/// counts the events that reached the chain.
pub async fn install_counters(url: &str) {
    set_code(url, REGISTRY, COUNTER_CODE).await;
    set_code(url, peaqos_chain::config::BATCH_PRECOMPILE, BATCH_COUNTER_CODE).await;
}

pub fn config(url: &str, dir: &Path) -> ChainConfig {
    let mut c = ChainConfig::new(Network::Peaq, Generation::Economics2, dir);
    c.rpc_urls = vec![url.to_string()];
    c.poll_interval_ms = 50;
    c.max_backoff_ms = 400;
    c.receipt_timeout_ms = 20_000;
    c
}

/// The revenue event the harness tests submit for `machine_id` at `ts` (currency: the SDK's smart
/// default); tests change single fields with `..harness_event(..)`.
pub fn harness_event(machine_id: U256, ts: i64) -> SubmitEventParams {
    SubmitEventParams {
        machine_id: MachineIdInput(machine_id),
        event_type: 0,
        value: ValueInput::from_u128(123),
        timestamp: ts,
        raw_data: Some(b"sensor:ok".to_vec()),
        trust_level: 0,
        source_chain_id: 3338,
        source_tx_hash: None,
        metadata: br#"{"mode":"self"}"#.to_vec(),
        currency: Currency::Omitted,
    }
}

/// `python test/chain/harness.py serve` (the team's anvil + stand-in contracts).
#[allow(unused_imports)] // not every test file spawns the harness
pub use peaqos_testkit::ChainHarness as Harness;

/// A JSON-RPC proxy on 127.0.0.1 in front of `upstream` that counts the methods it forwards, so
/// a test can say which calls the client made (stopped when dropped).
pub struct RpcRecorder {
    pub url: String,
    counts: Arc<Mutex<HashMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RpcRecorder {
    pub async fn start(upstream: &str) -> RpcRecorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let (upstream, seen) = (upstream.to_string(), counts.clone());
        let http = reqwest::Client::new();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (upstream, seen, http) = (upstream.clone(), seen.clone(), http.clone());
                tokio::spawn(async move {
                    let Some(body) = read_http_body(&mut s).await else {
                        return;
                    };
                    if let Some(m) = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v["method"].as_str().map(str::to_string))
                    {
                        *seen.lock().unwrap().entry(m).or_default() += 1;
                    }
                    let sent = http.post(&upstream).header("content-type", "application/json").body(body).send().await;
                    // Upstream down: the client sees a dropped connection, as with a dead node.
                    let Ok(answer) = sent else { return };
                    let answer = answer.bytes().await.unwrap_or_default();
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", answer.len());
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(&answer).await;
                });
            }
        });
        RpcRecorder { url, counts, task }
    }

    /// How many `method` calls went through so far.
    pub fn count(&self, method: &str) -> u64 {
        self.counts.lock().unwrap().get(method).copied().unwrap_or(0)
    }
}

impl Drop for RpcRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The body of one HTTP/1.1 request (by its `content-length`); `None` if the peer hangs up first.
async fn read_http_body(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= p + 4 + len {
                return Some(buf[p + 4..p + 4 + len].to_vec());
            }
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
