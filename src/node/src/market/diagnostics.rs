//! The seller's health as one `/diagnostics` status ("peaqos_node: market").

use peaqos_market::seller::{Phase, Snapshot};
use ros_env::diagnostic_msgs::msg::{DiagnosticStatus, KeyValue};

use super::{BUYER, SELLER};

fn kv(key: &str, value: impl ToString) -> KeyValue {
    KeyValue { key: key.to_owned(), value: value.to_string() }
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).unwrap_or_default()
}

/// The market's `/diagnostics` status: OK while online, WARN while waiting or retrying (with the
/// backoff), ERROR after a failure that waiting will not fix. `None` while the market is disabled.
/// The seller's state as `~/status` reports it (`None` while the market is off).
pub struct MarketStatus {
    pub phase: String,
    pub machine_id: String,
    pub agent_id: String,
    pub control_connected: bool,
    pub heartbeats: u64,
    pub purchases: String,
    pub error: String,
}

fn purchase_counts(s: &Snapshot) -> String {
    s.purchases.iter().map(|(k, n)| format!("{k}={n}")).collect::<Vec<_>>().join(",")
}

/// What `~/status` says of the market.
pub fn status() -> Option<MarketStatus> {
    let s: Snapshot = SELLER.get()?.snapshot();
    let error = s
        .last_error
        .as_ref()
        .or(s.purchase_error.as_ref())
        .map(|(c, e)| peaqos_core::text::one_line(&format!("{c}: {e}"), 500))
        .unwrap_or_default();
    Some(MarketStatus {
        phase: s.phase.as_str().to_string(),
        machine_id: s.machine_id.clone().unwrap_or_default(),
        agent_id: s.agent_id.clone().unwrap_or_default(),
        control_connected: s.control_connected,
        heartbeats: s.heartbeats,
        purchases: purchase_counts(&s),
        error,
    })
}

pub fn diagnostic_status(hardware_id: &str) -> Option<DiagnosticStatus> {
    let s: Snapshot = SELLER.get()?.snapshot();
    let purchases = purchase_counts(&s);
    let (level, message) = match s.phase {
        Phase::Online => (DiagnosticStatus::OK, "online: heartbeat accepted".to_owned()),
        Phase::Idle => (DiagnosticStatus::OK, "not onboarded (call ~/market_onboard)".to_owned()),
        Phase::Onboarding => (DiagnosticStatus::OK, "onboarding".to_owned()),
        Phase::WaitingForMachineId => {
            (DiagnosticStatus::WARN, "waiting for the machine id (chain.machine_id or ~/activate)".to_owned())
        }
        Phase::Retrying => (
            DiagnosticStatus::WARN,
            format!("unreachable or refused; retrying ({})", s.last_error.as_ref().map_or("", |e| e.0.as_str())),
        ),
        Phase::Failed => (
            DiagnosticStatus::ERROR,
            format!("failed ({}); call ~/market_onboard", s.last_error.as_ref().map_or("", |e| e.0.as_str())),
        ),
    };
    let (level, message) = match &s.offers_error {
        Some((code, _)) if level == DiagnosticStatus::OK => {
            (DiagnosticStatus::WARN, format!("{message}; publishing the listings failed ({code}), retrying"))
        }
        _ => (level, message),
    };
    let (code, err) = s.last_error.clone().unwrap_or_default();
    let (orders, orders_waiting) = BUYER.get().map(|b| b.counts()).unwrap_or_default();
    let (level, message) = match orders_waiting {
        n if n > 0 && level == DiagnosticStatus::OK => {
            (DiagnosticStatus::WARN, format!("{message}; {n} order(s) waiting on the orchestrator or the chain"))
        }
        _ => (level, message),
    };
    Some(DiagnosticStatus {
        level,
        name: "peaqos_node: market".into(),
        message,
        hardware_id: hardware_id.to_owned(),
        values: vec![
            kv("phase", s.phase.as_str()),
            kv("chain_machine_id", s.chain_machine_id.unwrap_or_default()),
            kv("machine_id", s.machine_id.unwrap_or_default()),
            kv("agent_id", s.agent_id.unwrap_or_default()),
            kv("heartbeats", s.heartbeats),
            kv("last_heartbeat", time(s.last_heartbeat)),
            kv("lease_expires_at", time(s.lease_expires_at)),
            kv("failures", s.failures),
            kv("backoff_seconds", s.backoff.map(|d| format!("{:.3}", d.as_secs_f64())).unwrap_or_default()),
            kv("next_attempt", time(s.retry_at)),
            kv("error_code", code),
            kv("error", peaqos_core::text::one_line(&err, 500)),
            kv("control_connected", s.control_connected),
            kv("purchases", purchases),
            kv(
                "purchase_error",
                s.purchase_error
                    .as_ref()
                    .map(|(id, e)| peaqos_core::text::one_line(&format!("{id}: {e}"), 500))
                    .unwrap_or_default(),
            ),
            kv("purchases_pruned", s.purchases_pruned),
            kv("runtime_endpoint_status", s.runtime_endpoint_status.clone().unwrap_or_default()),
            kv(
                "runtime_endpoint_error",
                s.runtime_endpoint_error
                    .as_ref()
                    .map(|e| peaqos_core::text::one_line(&format!("{}: {}", e.0, e.1), 500))
                    .unwrap_or_default(),
            ),
            kv("listings", s.listings_total),
            kv("listings_published", s.listings_published),
            kv("capabilities_expires_at", time(s.capabilities_expires_at)),
            kv("buyer", BUYER.get().is_some()),
            kv("orders", orders),
            kv("orders_waiting", orders_waiting),
            kv(
                "offers_error",
                s.offers_error
                    .as_ref()
                    .map(|e| peaqos_core::text::one_line(&format!("{}: {}", e.0, e.1), 500))
                    .unwrap_or_default(),
            ),
        ],
    })
}
