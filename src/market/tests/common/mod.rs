//! The local orchestrator (`test/market/orchestrator.py`) as a child process, and its test controls.
#![allow(dead_code)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use peaqos_core::keys::MachineKey;
use peaqos_market::onboard::MachineProfile;
use peaqos_market::{ClientConfig, OrchestrationClient, Secret};
use serde_json::{json, Value};

pub const API_KEY: &str = "market-test-key";

/// The machine key of the tests (32 × 0x11; address 0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A).
pub fn key() -> MachineKey {
    MachineKey::from_hex(&"11".repeat(32)).unwrap()
}

pub fn profile() -> MachineProfile {
    MachineProfile {
        display_name: "Test robot".into(),
        owner_id: "owner-1".into(),
        machine_type: "robot".into(),
        runtime_profile: "ros2".into(),
        capabilities: vec!["camera".into()],
        labels: [("site".to_string(), "lab".to_string())].into(),
    }
}

pub struct Server {
    child: Child,
    pub url: String,
    addr: String,
}

impl Server {
    /// Start the server with `args` added; every identity is controlled by the test key unless
    /// `args` names controllers itself.
    pub fn start(args: &[&str]) -> Server {
        let script = peaqos_testkit::repo_root().join("test/market/orchestrator.py");
        let controller = format!("*={}", key().address());
        let mut cmd = Command::new(peaqos_testkit::sdk_python());
        cmd.arg(&script).args(["--port", "0", "--api-key", API_KEY]);
        if !args.contains(&"--controller") {
            cmd.args(["--controller", &controller]);
        }
        let mut child =
            cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start orchestrator.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("orchestrator.py did not print its JSON line (got {line:?}); see stderr"));
        let url = info["url"].as_str().unwrap().to_string();
        let addr = url.trim_start_matches("http://").to_string();
        Server { child, url, addr }
    }

    pub fn client(&self) -> OrchestrationClient {
        self.client_with(Some(API_KEY))
    }

    pub fn client_with(&self, key: Option<&str>) -> OrchestrationClient {
        OrchestrationClient::new(ClientConfig::new(&self.url, key.map(Secret::new))).unwrap()
    }

    /// A test control (`/__mock__/<name>`), blocking (usable inside step hooks).
    pub fn control(&self, method: &str, name: &str, body: Value) -> Value {
        let body = body.to_string();
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "{method} /__mock__/{name} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (_, payload) = resp.split_once("\r\n\r\n").expect("HTTP response");
        serde_json::from_str(payload).unwrap_or(Value::Null)
    }

    pub fn fault(&self, fault: Value) {
        self.control("POST", "faults", fault);
    }

    pub fn config(&self, cfg: Value) {
        self.control("POST", "config", cfg);
    }

    pub fn advance_clock(&self, seconds: f64) {
        self.control("POST", "clock", json!({ "advanceSeconds": seconds }));
    }

    pub fn state(&self) -> Value {
        self.control("GET", "state", Value::Null)
    }

    /// Requests the server received for `method path` (the request log).
    pub fn requests(&self, method: &str, path: &str) -> Vec<Value> {
        self.state()["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["method"] == method && r["path"] == path)
            .cloned()
            .collect()
    }

    /// Machines of `identity_ref` that are not archived.
    pub fn live_machines(&self, identity_ref: &str) -> Vec<Value> {
        self.state()["machines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["identityRef"] == identity_ref && m["status"] != "archived")
            .cloned()
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
