//! A real `kill -9` of a process at every step of onboarding and enrollment; a rerun over the same
//! data dir finishes with exactly one live machine record and one live agent that can heartbeat.
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{key, profile, Server, API_KEY};
use peaqos_market::agent::{ensure_enrolled, EnrollConfig, Heartbeat, HeartbeatPolicy};
use peaqos_market::onboard::{onboard, Step};
use peaqos_market::state::MarketStore;
use peaqos_market::wire::{HeartbeatEndpoint, MachineStatus};

#[tokio::test]
async fn a_kill_9_at_any_step_is_finished_by_a_rerun_without_duplicates() {
    let srv = Server::start(&[]);
    let client = srv.client();
    let child = peaqos_testkit::example_bin("market_onboard_child");
    let steps = [
        Step::ChallengeIssued,
        Step::MachineCreated,
        Step::MachineStored,
        Step::Activated,
        Step::AgentEnrolled,
        Step::AgentStored,
    ];
    for (i, at) in steps.into_iter().enumerate() {
        let machine_id = (500 + i).to_string();
        let dir = tempfile::tempdir().unwrap();
        let mut p = Command::new(&child)
            .args([&srv.url, dir.path().to_str().unwrap(), &machine_id, at.name()])
            .env("PEAQOS_API_KEY", API_KEY)
            .env("PEAQOS_PRIVATE_KEY", "11".repeat(32))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(p.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), format!("paused {}", at.name()));
        p.kill().unwrap(); // SIGKILL
        p.wait().unwrap();

        let store = MarketStore::open(dir.path()).unwrap();
        let m = onboard(&client, &store, &key(), &machine_id, &profile(), None).await.unwrap();
        assert_eq!(m.status, MachineStatus::Active);
        let cfg = EnrollConfig { label: "peaqos-node".into(), allowed_provider_keys: vec![] };
        let creds = ensure_enrolled(&client, &store, &m.id, &cfg, None).await.unwrap();
        let now = chrono::Utc::now();
        let endpoints = vec![HeartbeatEndpoint::new("qvac", "http://127.0.0.1:8080")];
        Heartbeat::new(creds, endpoints, HeartbeatPolicy::default(), now).unwrap().beat(&client, now).await.unwrap();

        let state = srv.state();
        let live_machines: Vec<_> = state["machines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["identityRef"] == format!("did:peaq:{machine_id}") && x["status"] != "archived")
            .collect();
        assert_eq!(live_machines.len(), 1, "killed at {at:?}");
        let live_agents: Vec<_> = state["agents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["machineId"] == m.id && a["status"] != "revoked")
            .collect();
        assert_eq!(live_agents.len(), 1, "killed at {at:?}: {live_agents:?}");
        let leftovers: Vec<_> = std::fs::read_dir(store.dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "killed at {at:?}: {leftovers:?}");
    }
}
