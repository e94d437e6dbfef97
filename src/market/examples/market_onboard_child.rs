//! Test child for the kill -9 tests (`tests/kill9.rs`): onboards and enrolls like the node will,
//! and at the step named by its last argument prints `paused <step>` and waits to be killed.
//!
//! Usage: `market_onboard_child <orchestration url> <data dir> <decimal machine id> <step name|"">`,
//! API key from `PEAQOS_API_KEY`, machine key from `PEAQOS_PRIVATE_KEY`.
use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

use peaqos_core::keys::MachineKey;
use peaqos_market::agent::{ensure_enrolled, EnrollConfig};
use peaqos_market::onboard::{onboard, MachineProfile, Step};
use peaqos_market::secret::load_api_key;
use peaqos_market::state::MarketStore;
use peaqos_market::{ClientConfig, OrchestrationClient};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, data_dir, machine_id, pause] = &args[..] else {
        eprintln!("usage: market_onboard_child <url> <data dir> <machine id> <step|\"\">");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let result = rt.block_on(async {
        let client = OrchestrationClient::new(ClientConfig::new(url, load_api_key(None)?))?;
        let store = MarketStore::open(Path::new(data_dir))?;
        let key = MachineKey::load(None).expect("PEAQOS_PRIVATE_KEY");
        let mut hook = |s: Step| {
            if s.name() == pause {
                println!("paused {}", s.name());
                std::io::stdout().flush().unwrap();
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(60)); // until kill -9
                }
            }
            ControlFlow::Continue(())
        };
        let profile = MachineProfile {
            display_name: "kill -9 robot".into(),
            owner_id: "owner-1".into(),
            machine_type: "robot".into(),
            runtime_profile: "ros2".into(),
            ..Default::default()
        };
        let m = onboard(&client, &store, &key, machine_id, &profile, Some(&mut hook)).await?;
        let cfg = EnrollConfig { label: "peaqos-node".into(), allowed_provider_keys: vec![] };
        ensure_enrolled(&client, &store, &m.id, &cfg, Some(&mut hook)).await
    });
    match result {
        Ok(creds) => println!("done {}", creds.agent_id),
        Err(e) => {
            eprintln!("market_onboard_child: {e}");
            std::process::exit(1);
        }
    }
}
