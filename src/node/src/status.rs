//! `~/status` (peaqos_node/srv/GetStatus) and the 1 Hz `/diagnostics` report.
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peaqos_core::pipeline::{Pipeline, TopicStats};
use peaqos_core::policy::DataEventMap;
use rclrs::{Node, Service, Timer};
use ros_env::builtin_interfaces::msg::Time;
use ros_env::diagnostic_msgs::msg::{DiagnosticArray, DiagnosticStatus, KeyValue};
use ros_env::peaqos_node::msg::TopicStatus;
use ros_env::peaqos_node::srv::{GetStatus, GetStatus_Request, GetStatus_Response};
use ros_env::std_msgs::msg::Header;

use crate::params::Params;
use crate::StartError;

/// What `~/status` reports besides the pipeline, handed over by the subsystems that started
/// (`None`: the subsystem is off).
#[derive(Default)]
pub struct Sources {
    pub stream: Option<Arc<crate::stream::StatusView>>,
    pub events: Option<Arc<crate::events::StatusView>>,
    pub gas: Option<Arc<crate::chain::GasView>>,
}

/// Keeps the service and the diagnostics timer alive.
pub struct StatusHandles {
    _service: Service<GetStatus>,
    _timer: Timer,
}

fn topic_status(s: &TopicStats, type_name: &str) -> TopicStatus {
    TopicStatus {
        topic: s.topic.clone(),
        type_: type_name.to_owned(),
        received: s.received,
        packaged: s.packaged,
        dropped: s.dropped,
        dropped_for_bytes: s.dropped_for_bytes,
        dropped_bytes: s.dropped_bytes,
        queued_bytes: s.queued_bytes,
        errors: s.errors,
        queue_depth: s.queue_depth as u64,
        last_sequence: s.last_sequence.map(|n| n as i64).unwrap_or(-1),
        log_bytes: s.log_bytes,
        log_segments_removed: s.retention_removed_segments,
        log_bytes_removed: s.retention_removed_bytes,
    }
}

fn now() -> Time {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Time { sec: d.as_secs() as i32, nanosec: d.subsec_nanos() }
}

fn kv(key: &str, value: impl ToString) -> KeyValue {
    KeyValue { key: key.to_owned(), value: value.to_string() }
}

/// One DiagnosticStatus per topic: OK, WARN once drops or errors are counted, ERROR while new
/// messages are refused (disk full); one for the pipeline's memory and disk; the events
/// hand-over's (WARN once a hand-over was dropped) when there are event rules; the gas watch's
/// (WARN while the balance is below what the queued transactions and the reserve need) with the
/// chain client on; and the market's
/// ("peaqos_node: market") when it is enabled.
fn diagnostics(
    pipeline: &Pipeline,
    types: &[String],
    did: &str,
    events: Option<&crate::events::StatusView>,
    gas: Option<&crate::chain::GasView>,
) -> DiagnosticArray {
    let refusing = pipeline.refusing();
    let (queued, max_queued) = pipeline.queued_bytes();
    let mut status: Vec<DiagnosticStatus> = pipeline
        .stats()
        .iter()
        .zip(types)
        .map(|(s, t)| {
            let (level, message) = if let Some(why) = &refusing {
                (DiagnosticStatus::ERROR, format!("refusing new messages: {why}; {} dropped", s.dropped))
            } else if s.dropped > 0 || s.errors > 0 {
                let bytes = if s.dropped_for_bytes > 0 {
                    format!(" ({} for the byte bound, {} bytes)", s.dropped_for_bytes, s.dropped_bytes)
                } else {
                    String::new()
                };
                (DiagnosticStatus::WARN, format!("{} dropped{bytes}, {} failed", s.dropped, s.errors))
            } else {
                (DiagnosticStatus::OK, "packaging".to_owned())
            };
            DiagnosticStatus {
                level,
                name: format!("peaqos_node: {}", s.topic),
                message,
                hardware_id: did.to_owned(),
                values: vec![
                    kv("type", t),
                    kv("received", s.received),
                    kv("packaged", s.packaged),
                    kv("dropped", s.dropped),
                    kv("dropped_for_bytes", s.dropped_for_bytes),
                    kv("dropped_bytes", s.dropped_bytes),
                    kv("errors", s.errors),
                    kv("queue_depth", s.queue_depth),
                    kv("queued_bytes", s.queued_bytes),
                    kv("last_sequence", s.last_sequence.map(|n| n as i64).unwrap_or(-1)),
                    kv("log_bytes", s.log_bytes),
                    kv("log_segments_removed", s.retention_removed_segments),
                    kv("log_bytes_removed", s.retention_removed_bytes),
                ],
            }
        })
        .collect();
    let (level, message) = match &refusing {
        Some(why) => (DiagnosticStatus::ERROR, format!("refusing new messages: {why}")),
        None => (DiagnosticStatus::OK, "accepting".to_owned()),
    };
    status.push(DiagnosticStatus {
        level,
        name: "peaqos_node: pipeline".to_owned(),
        message,
        hardware_id: did.to_owned(),
        values: vec![
            kv("queued_bytes", queued),
            kv("max_queued_bytes", max_queued),
            kv("accepting", refusing.is_none()),
        ],
    });
    if let Some(h) = events.map(|e| &e.hand_over) {
        let dropped = h.dropped.load(Ordering::Relaxed);
        status.push(DiagnosticStatus {
            level: if dropped > 0 { DiagnosticStatus::WARN } else { DiagnosticStatus::OK },
            name: "peaqos_node: events hand-over".to_owned(),
            message: if dropped > 0 {
                format!("{dropped} hand-overs dropped for events.queue_max_bytes (read back from the package log)")
            } else {
                "ok".to_owned()
            },
            hardware_id: did.to_owned(),
            values: vec![
                kv("queued_bytes", h.queued_bytes.load(Ordering::Relaxed)),
                kv("max_bytes", h.max_bytes.load(Ordering::Relaxed)),
                kv("dropped", dropped),
                kv("dropped_bytes", h.dropped_bytes.load(Ordering::Relaxed)),
            ],
        });
    }
    status.extend(gas.map(|g| g.diagnostic_status(did)));
    status.extend(crate::market::diagnostic_status(did));
    DiagnosticArray { header: Header { stamp: now(), frame_id: String::new() }, status }
}

pub fn serve(
    node: &Node,
    pipeline: Weak<Pipeline>,
    params: &Params,
    map: &DataEventMap,
    sources: Sources,
) -> Result<StatusHandles, StartError> {
    let types: Arc<Vec<String>> = Arc::new(map.topics.iter().map(|t| t.msg_type.clone()).collect());
    let data_dir = params.data_dir.display().to_string();

    let (p, ty) = (Weak::clone(&pipeline), Arc::clone(&types));
    let diag_events = sources.events.clone();
    let diag_gas = sources.gas.clone();
    let service = node.create_service::<GetStatus, _>("~/status", move |_req: GetStatus_Request| {
        crate::ros_log::request("~/status");
        let Some(p) = p.upgrade() else {
            return GetStatus_Response::default();
        };
        let stream = sources.stream.as_deref();
        let (event_rules, events_machine_id) = sources.events.as_ref().map(|v| v.report()).unwrap_or_default();
        let hand = sources.events.as_deref().map(|v| &*v.hand_over);
        let market = crate::market::status();
        let m = market.as_ref();
        let gas = sources.gas.as_ref().map(|g| g.status()).unwrap_or_default();
        GetStatus_Response {
            address: p.address().to_owned(),
            did: p.did().to_owned(),
            data_dir: data_dir.clone(),
            topics: p.stats().iter().zip(ty.iter()).map(|(s, t)| topic_status(s, t)).collect(),
            queued_bytes: p.queued_bytes().0,
            max_queued_bytes: p.queued_bytes().1,
            accepting: p.refusing().is_none(),
            refusing_reason: p.refusing().unwrap_or_default(),
            ed25519_public_key_hex: stream.map(|v| v.ed25519_public_key_hex.clone()).unwrap_or_default(),
            x25519_public_key_hex: stream.map(|v| v.x25519_public_key_hex.clone()).unwrap_or_default(),
            streams: stream.map(|v| v.streams()).unwrap_or_default(),
            event_rules,
            events_machine_id,
            events_handover_queued_bytes: hand.map_or(0, |h| h.queued_bytes.load(Ordering::Relaxed) as u64),
            events_handover_dropped: hand.map_or(0, |h| h.dropped.load(Ordering::Relaxed)),
            events_handover_dropped_bytes: hand.map_or(0, |h| h.dropped_bytes.load(Ordering::Relaxed)),
            market_phase: m.map(|m| m.phase.clone()).unwrap_or_default(),
            market_machine_id: m.map(|m| m.machine_id.clone()).unwrap_or_default(),
            market_agent_id: m.map(|m| m.agent_id.clone()).unwrap_or_default(),
            market_control_connected: m.is_some_and(|m| m.control_connected),
            market_heartbeats: m.map_or(0, |m| m.heartbeats),
            market_purchases: m.map(|m| m.purchases.clone()).unwrap_or_default(),
            market_error: m.map(|m| m.error.clone()).unwrap_or_default(),
            gas_balance_wei: gas.balance_wei,
            gas_required_wei: gas.required_wei,
            gas_low: gas.low,
            gas_pending_intents: gas.pending_intents,
            gas_error: gas.error,
        }
    })?;

    let diag = node.create_publisher::<DiagnosticArray>("/diagnostics")?;
    let did = pipeline.upgrade().map(|p| p.did().to_owned()).unwrap_or_default();
    // A fine tick that publishes once the current period has passed, so `diagnostics_period`
    // can be set at run time (an rclrs timer's period is fixed when it is made).
    let period = params.diagnostics_period.clone();
    let mut last = std::time::Instant::now();
    let tick = Duration::from_secs_f64(crate::params::DIAGNOSTICS_PERIOD_RANGE.0);
    let timer = node.create_timer_repeating(tick, move || {
        if last.elapsed().as_secs_f64() < period.get() {
            return;
        }
        last = std::time::Instant::now();
        let Some(pipeline) = pipeline.upgrade() else { return };
        if let Err(e) = diag.publish(diagnostics(&pipeline, &types, &did, diag_events.as_deref(), diag_gas.as_deref()))
        {
            tracing::warn!("publishing /diagnostics failed: {e}");
        }
    })?;
    Ok(StatusHandles { _service: service, _timer: timer })
}
