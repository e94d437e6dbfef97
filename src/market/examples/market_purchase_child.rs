//! Test child for the purchase kill -9 test (`tests/purchases.rs`): serves one purchase like the
//! node will and, at the step named by its last argument, prints `paused <step>` and waits to be
//! killed.
//!
//! Usage: `market_purchase_child <orchestration url> <data dir> <purchase id> <listing id> <topic> <step|"">`,
//! API key from `PEAQOS_API_KEY`, machine key from `PEAQOS_PRIVATE_KEY` (hex); the agent is the one
//! stored in the data dir.
use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

use peaqos_market::agent::AgentCredentials;
use peaqos_market::purchases::{Desk, PurchaseStore};
use peaqos_market::secret::load_api_key;
use peaqos_market::state::MarketStore;
use peaqos_market::{ClientConfig, OrchestrationClient};
use peaqos_stream::keys::MachineStreamKeys;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, data_dir, purchase, listing, topic, pause] = &args[..] else {
        eprintln!("usage: market_purchase_child <url> <data dir> <purchase id> <listing id> <topic> <step|\"\">");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let result = rt.block_on(async {
        let client = OrchestrationClient::new(ClientConfig::new(url, load_api_key(None)?))?;
        let dir = Path::new(data_dir);
        let (rec, token) = MarketStore::open(dir)?.load_agent()?.expect("an enrolled agent in the data dir");
        let creds = AgentCredentials { machine_id: rec.machine_id, agent_id: rec.agent_id, token };
        let secret = std::env::var("PEAQOS_PRIVATE_KEY").expect("PEAQOS_PRIVATE_KEY");
        let keys = MachineStreamKeys::from_secret_hex(&secret).expect("machine key");
        let store = PurchaseStore::open(dir)?;
        // the listing as the tests make it: 0.1 USDC a chunk, x402 (no on-chain check here)
        let cfg = peaqos_stream::topic_config::TopicStreamConfig::from_value(&serde_json::json!({"sale": {
            "price": "0.1", "currency": "USDC", "listing_id": listing,
            "payment_rails": [{"type": "x402", "chain": "base", "token": "USDC"}]}}))
        .expect("sale config");
        let l = peaqos_market::offers::listing(topic, cfg.sale.as_ref().expect("sale"), "local").expect("listing");
        let listings = [(listing.clone(), l)].into();
        let desk = Desk {
            client: &client,
            store: &store,
            stream_dir: dir,
            keys: &keys,
            creds: &creds,
            listings: &listings,
            chain: None,
            http: None,
        };
        let mut hook = |s: &str| {
            if s == pause {
                println!("paused {s}");
                std::io::stdout().flush().unwrap();
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(60)); // until kill -9
                }
            }
            ControlFlow::Continue(())
        };
        desk.advance(purchase, Some(&mut hook)).await
    });
    match result {
        Ok(state) => println!("done {state:?}"),
        Err(e) => {
            eprintln!("market_purchase_child: {e}");
            std::process::exit(1);
        }
    }
}
