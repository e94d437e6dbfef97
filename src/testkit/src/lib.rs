//! Test support shared by the peaqos crates (a dev-dependency only; never in a release build).
//!
//! Every tool a test needs is found here, in one place, or the test fails with a message that
//! says how to install it: a test that cannot check must not pass. `scripts/test` installs all
//! of them and exports their paths (`PEAQOS_SDK_PYTHON`, `ANVIL_BIN`, `MOTO_SERVER_BIN`).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository's root (this crate lives in `src/testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// A file of `test/fixtures/` (facts copied into the repository, see their PROVENANCE.md).
pub fn fixture(rel: &str) -> PathBuf {
    let p = repo_root().join("test/fixtures").join(rel);
    assert!(p.exists(), "{}: missing (the test fixtures are part of the repository)", p.display());
    p
}

const INSTALL_SDK: &str = "run scripts/test once (it installs them), or `pip install peaq-os-sdk==0.12.1 pytest pyyaml 'moto[server]'` and set PEAQOS_SDK_PYTHON to that python";

/// A Python that imports the real peaq SDK 0.12.1 (the tests' oracle): `PEAQOS_SDK_PYTHON`, else
/// the repository's `.venv`, else `python3` on PATH. Panics, saying how to install it, when
/// none imports `peaq_os_sdk`.
pub fn sdk_python() -> PathBuf {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let mut candidates = Vec::new();
            if let Some(p) = std::env::var_os("PEAQOS_SDK_PYTHON") {
                candidates.push(PathBuf::from(p));
            } else {
                candidates.push(repo_root().join(".venv/bin/python"));
                candidates.push(PathBuf::from("python3"));
            }
            let mut tried = Vec::new();
            for c in candidates {
                let ok = Command::new(&c)
                    .args(["-c", "import peaq_os_sdk"])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false);
                if ok {
                    return Ok(c);
                }
                tried.push(c.display().to_string());
            }
            Err(format!(
                "the peaq SDK oracle (peaq-os-sdk 0.12.1) is not importable from {}: {INSTALL_SDK}",
                tried.join(", ")
            ))
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A program installed beside the SDK's Python (a console script of a pip package), else on PATH.
fn beside_python(name: &str) -> Option<PathBuf> {
    let py = sdk_python();
    let dir = if py.is_absolute() { py.parent().map(Path::to_path_buf) } else { None };
    if let Some(p) = dir.map(|d| d.join(name)).filter(|p| p.exists()) {
        return Some(p);
    }
    on_path(name)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The S3 test server (`moto_server`, from `pip install 'moto[server]'`): `MOTO_SERVER_BIN`, else
/// beside the SDK's Python, else on PATH. Panics saying how to install it.
pub fn moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER_BIN") {
        return PathBuf::from(p);
    }
    beside_python("moto_server").unwrap_or_else(|| panic!("moto_server (the S3 test server) not found: {INSTALL_SDK}"))
}

/// The local EVM node (anvil, from the npm package `@foundry-rs/anvil` in `test/chain`):
/// `ANVIL_BIN`, else `test/chain/node_modules`, else on PATH. Panics saying how to install it.
pub fn anvil() -> PathBuf {
    if let Some(p) = std::env::var_os("ANVIL_BIN") {
        return PathBuf::from(p);
    }
    let npm = repo_root().join("test/chain/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if npm.exists() {
        return npm;
    }
    on_path("anvil").unwrap_or_else(|| {
        panic!("anvil not found: run `npm ci` in test/chain (scripts/test does), or set ANVIL_BIN to an anvil binary")
    })
}

/// A TCP port free on 127.0.0.1 at the moment of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind 127.0.0.1:0")
}

/// An example program of the calling crate, built by `cargo test` beside the test binaries
/// (`target/<profile>/examples/<name>`): crash tests run their child writers from there.
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test binary");
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    let p = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("examples").join(name))
        .expect("test binary is under target/<profile>/deps");
    assert!(p.exists(), "{}: not built (cargo test builds the crate's examples)", p.display());
    p
}

/// Stop a child the way a terminal would (SIGTERM: anvil dumps its state, the harness cleans
/// up), and kill it after 10 s.
pub fn terminate(child: &mut std::process::Child) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) on the pid of a child we own and have not reaped.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `python test/chain/harness.py serve` (the team's anvil + peaqOS stand-in contracts at their
/// real addresses), stopped on drop. `desc` is the JSON line it printed (accounts, addresses).
pub struct ChainHarness {
    pub child: std::process::Child,
    pub desc: serde_json::Value,
}

impl ChainHarness {
    pub fn spawn() -> ChainHarness {
        Self::spawn_with(&[])
    }

    /// With extra `serve` arguments (e.g. `["--token", "0x…"]`).
    pub fn spawn_with(args: &[&str]) -> ChainHarness {
        use std::io::BufRead;
        use std::process::Stdio;
        let script = repo_root().join("test/chain/harness.py");
        let mut child = Command::new(sdk_python())
            .env("PEAQOS_TEST_ANVIL_CHECKED", anvil())
            .arg(script)
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn test/chain/harness.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).expect("read the harness line");
        match serde_json::from_str(&line) {
            Ok(desc) => ChainHarness { child, desc },
            Err(_) => {
                let _ = child.kill();
                panic!("test/chain/harness.py printed no JSON line: {line:?}");
            }
        }
    }

    pub fn url(&self) -> String {
        self.desc["rpc_url"].as_str().expect("rpc_url").to_string()
    }

    /// Test account `i`'s private key, hex without `0x`.
    pub fn key(&self, i: usize) -> String {
        self.desc["accounts"][i]["private_key"].as_str().expect("private_key").trim_start_matches("0x").to_string()
    }

    /// Test account `i`'s address (EIP-55).
    pub fn address(&self, i: usize) -> String {
        self.desc["accounts"][i]["address"].as_str().expect("address").to_string()
    }
}

impl Drop for ChainHarness {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}
