//! The chain outbox on a full disk: its store on a small tmpfs this test mounts (root or
//! CAP_SYS_ADMIN; without, the test fails saying so, it never skips). While the file system is
//! full a new intent is refused with `STORE_FULL` (naming the file) and nothing is half-written;
//! an intent acknowledged before (in flight when the disk filled) is neither lost nor sent
//! twice; once space is freed the outbox goes on by itself and takes new intents. Every
//! acknowledged event reaches the chain exactly once (anvil with counter stand-ins).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use alloy::primitives::{address, Address, U256};
use common::*;
use peaqos_chain::config::BATCH_PRECOMPILE;
use peaqos_chain::outbox::IntentState;
use peaqos_chain::validation::{Currency, MachineIdInput, SubmitEventParams, ValueInput};
use peaqos_chain::ChainClient;

const REGISTRY: Address = address!("A1e7F1d7B24dAb55Dc92491e6d9B89F6E925Ad1e");

fn ev(i: u64) -> SubmitEventParams {
    SubmitEventParams {
        machine_id: MachineIdInput(U256::from(42)),
        event_type: 1,
        value: ValueInput::from_u128(i as u128),
        timestamp: 1_735_000_000 + i as i64,
        raw_data: Some(format!("reading {i}").into_bytes()),
        trust_level: 0,
        source_chain_id: 0,
        source_tx_hash: None,
        metadata: br#"{"k":1}"#.to_vec(),
        currency: Currency::Omitted,
    }
}

/// A tmpfs of `size` mounted at `dir` (unmounted on drop).
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(dir: &Path, size: &str) -> SmallFs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test needs root or CAP_SYS_ADMIN to mount a tmpfs: mount said {:?}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        SmallFs(dir.to_owned())
    }

    /// Write a filler file until the file system is full.
    fn fill(&self, name: &str) {
        let mut f = std::fs::File::create(self.0.join(name)).unwrap();
        for block in [65_536usize, 512, 1] {
            let b = vec![0u8; block];
            while f.write_all(&b).is_ok() {}
        }
        let _ = f.sync_all();
    }

    fn free(&self, name: &str) {
        std::fs::remove_file(self.0.join(name)).unwrap();
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Every file under the outbox store parses as JSON (no torn record, no temporary left).
fn store_intact(data: &Path) -> usize {
    let mut n = 0;
    for sub in ["intents", "done", "nonces"] {
        let d = data.join("chain").join(sub);
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(!name.ends_with(".tmp"), "temporary file left on a full disk: {}", p.display());
            let b = std::fs::read(&p).unwrap();
            serde_json::from_slice::<serde_json::Value>(&b).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_new_intents_keeps_acknowledged_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let fs = SmallFs::mount(&data, "2m");
    // No automatic mining: an intent stays in flight until the test mines a block.
    let anvil = Anvil::spawn(&peaqos_testkit::anvil(), free_port(), None, true);
    let url = anvil.url();
    set_code(&url, REGISTRY, COUNTER_CODE).await;
    rpc_value(&url, "evm_mine", serde_json::json!([])).await;
    let client = ChainClient::start(config(&url, &data).resolve_with(|_| None).unwrap(), vec![signer(KEY0)]).unwrap();

    // 1: acknowledged and included before anything goes wrong.
    let c = client.clone();
    let first = tokio::spawn(async move { c.submit_event(&ev(1)).await });
    wait_broadcast(&client, 1).await;
    rpc_value(&url, "evm_mine", serde_json::json!([])).await;
    first.await.unwrap().unwrap();

    // 2: acknowledged (durable intent), broadcast, then the disk fills before it is included.
    let c = client.clone();
    let second = tokio::spawn(async move { c.submit_event(&ev(2)).await });
    wait_broadcast(&client, 1).await;
    fs.fill("filler");
    // A new intent is refused, clearly, and leaves nothing behind.
    let before = store_intact(&data);
    let e = client.submit_event(&ev(3)).await.expect_err("an intent accepted on a full disk");
    assert_eq!(e.code(), "STORE_FULL", "{e}");
    assert!(e.to_string().contains("disk full"), "{e}");
    assert_eq!(store_intact(&data), before, "a refused intent left a file");
    // The in-flight intent is mined while the disk is full: the outbox cannot record it yet
    // but must not lose it or send it again.
    rpc_value(&url, "evm_mine", serde_json::json!([])).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    store_intact(&data);

    // Space is back: the outbox goes on by itself.
    fs.free("filler");
    let r2 = tokio::time::timeout(Duration::from_secs(30), second).await.expect("the in-flight intent finished");
    r2.unwrap().unwrap();
    let c = client.clone();
    let fourth = tokio::spawn(async move { c.submit_event(&ev(4)).await });
    wait_broadcast(&client, 1).await;
    rpc_value(&url, "evm_mine", serde_json::json!([])).await;
    fourth.await.unwrap().unwrap();

    // Exactly once: events 1, 2 and 4 on chain, 3 never; nothing left pending.
    assert_eq!(storage0(&url, REGISTRY).await, U256::from(3));
    assert!(client.outbox().pending().is_empty(), "{:?}", client.outbox().pending());
    store_intact(&data);
    drop(client);
    drop(anvil);
    let _ = BATCH_PRECOMPILE;
}

/// Wait until `n` intents are broadcast (in the pool, waiting for a block).
async fn wait_broadcast(client: &ChainClient, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let b = client.outbox().pending().iter().filter(|i| i.state == IntentState::Broadcast).count();
        if b >= n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no broadcast intent: {:?}", client.outbox().pending());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
