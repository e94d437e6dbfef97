//! The `market.*` parameters: all declared at start (visible to `ros2 param` even while
//! `market.enabled` is false), read once, checked, every error naming the parameter. One function
//! per group: the machine record, the heartbeat, the runtime endpoint, sales and delivery.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use peaqos_market::agent::{EnrollConfig, HeartbeatPolicy};
use peaqos_market::onboard::MachineProfile;
use peaqos_market::seller::{RuntimeEndpointConfig, SellerConfig};
use peaqos_market::wire::{HeartbeatEndpoint, RuntimeEndpointUpsert};
use peaqos_market::MarketError;
use rclrs::ParameterRange;

use super::URL_ENV;
use crate::params::{param_err, ParamSet};
use crate::StartError;

fn string(p: &ParamSet, name: &str, default: &str, description: &str) -> Result<String, StartError> {
    Ok(p.read_only::<Arc<str>>(name, Arc::from(default), description)?.to_string())
}

fn seconds(p: &ParamSet, name: &str, default: f64, description: &str) -> Result<Duration, StartError> {
    let v = p.read_only::<f64>(name, default, description)?;
    peaqos_core::duration::seconds(v, false).map_err(|e| param_err(name, e))
}

/// `key=value` entries → a map; an entry without `=` or with an empty key is an error naming it.
fn labels(entries: &[String]) -> Result<BTreeMap<String, String>, StartError> {
    let mut out = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        match e.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_string(), v.trim().to_string());
            }
            _ => return Err(param_err(&format!("market.labels[{i}]"), format!("{e:?} is not key=value"))),
        }
    }
    Ok(out)
}

/// `http(s)://host...` with a non-empty host and no whitespace (what the API accepts).
fn reqwest_like_url(u: &str) -> bool {
    let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

/// A start error for a market config error, naming the parameter.
pub(super) fn config_err(e: MarketError) -> StartError {
    let name = match e.field() {
        "orchestration_url" => "market.url",
        "api_key_file" | "api_key" => "market.api_key_file",
        _ => "market",
    };
    param_err(name, e)
}

/// The local delivery endpoint's settings (`market.delivery.*`), when it is on.
pub(super) struct DeliveryParams {
    pub listen: SocketAddr,
    pub public_url: String,
    pub token_ttl: Duration,
}

/// Everything the seller needs from the parameters (`None` while `market.enabled` is false).
pub(super) struct MarketParams {
    pub url: String,
    pub api_key_file: Option<PathBuf>,
    pub cfg: SellerConfig,
    pub capabilities_ttl: Duration,
    pub purchase_poll: Duration,
    pub payment_confirmations: u64,
    pub delivery: Option<DeliveryParams>,
    pub purchase_retention: Option<Duration>,
}

/// The machine record (`market.display_name`, `.owner_id`, `.machine_type`, ...).
fn record(p: &ParamSet, address: &str) -> Result<(MachineProfile, String), StartError> {
    let display_name =
        string(p, "market.display_name", "", "Machine record display name. Empty: 'peaqOS machine <address>'.")?;
    let owner_id = string(p, "market.owner_id", "", "Machine record ownerId. Empty: the machine key's address.")?;
    let machine_type = string(p, "market.machine_type", "robot", "Machine record machineType.")?;
    let runtime_profile = string(p, "market.runtime_profile", "ros2", "Machine record runtimeProfile.")?;
    let capabilities = p.read_only_strings("market.capabilities", &[], "Machine record capabilities.")?;
    let label_entries = p.read_only_strings("market.labels", &[], "Machine record labels, each 'key=value'.")?;
    let agent_label = string(p, "market.agent_label", "peaqos-node", "Label of the machine agent this node enrolls.")?;
    let profile = MachineProfile {
        display_name: if display_name.is_empty() { format!("peaqOS machine {address}") } else { display_name },
        owner_id: if owner_id.is_empty() { address.to_string() } else { owner_id },
        machine_type,
        runtime_profile,
        capabilities: capabilities.into_iter().filter(|c| !c.trim().is_empty()).collect(),
        labels: labels(&label_entries)?,
    };
    Ok((profile, agent_label))
}

/// The heartbeat (`market.heartbeat.*`): the endpoint it reports and its timing.
fn heartbeat(p: &ParamSet) -> Result<(HeartbeatEndpoint, HeartbeatPolicy), StartError> {
    let provider_key =
        string(p, "market.heartbeat.provider_key", "qvac", "providerKey of the endpoint each heartbeat reports.")?;
    let endpoint_url = string(
        p,
        "market.heartbeat.endpoint_url",
        "http://127.0.0.1",
        "endpointBaseUrl each heartbeat reports (http(s) with a host).",
    )?;
    let network_scope = string(
        p,
        "market.heartbeat.network_scope",
        "loopback",
        "networkScope of the reported endpoint: loopback, lan, vpn or public.",
    )?;
    let lease_ttl = p.read_only_in::<i64>(
        "market.heartbeat.lease_ttl",
        0,
        "Lease asked for with each heartbeat, seconds (0 = the server's default; at most 86400).",
        ParameterRange { lower: Some(0), upper: Some(86_400), step: None },
    )?;
    let min_interval = seconds(p, "market.heartbeat.min_interval", 5.0, "Shortest time between heartbeats, seconds.")?;
    let max_interval = seconds(p, "market.heartbeat.max_interval", 300.0, "Longest time between heartbeats, seconds.")?;
    let backoff_base =
        seconds(p, "market.heartbeat.backoff_base", 1.0, "First retry delay after a failure, seconds (doubles).")?;
    let backoff_max = seconds(p, "market.heartbeat.backoff_max", 60.0, "Longest retry delay, seconds.")?;
    let mut endpoint = HeartbeatEndpoint::new(provider_key, endpoint_url);
    endpoint.network_scope = Some(network_scope);
    let policy = HeartbeatPolicy {
        lease_ttl_seconds: u32::try_from(lease_ttl).ok().filter(|t| *t > 0),
        renew_fraction: 0.5,
        min_interval,
        max_interval,
        backoff_base,
        backoff_max,
    };
    Ok((endpoint, policy))
}

/// The heartbeat's settings, checked (only when the market is on).
fn check_heartbeat(endpoint: &HeartbeatEndpoint, h: &HeartbeatPolicy) -> Result<(), StartError> {
    let scope = endpoint.network_scope.as_deref().unwrap_or_default();
    if !["loopback", "lan", "vpn", "public"].contains(&scope) {
        return Err(param_err(
            "market.heartbeat.network_scope",
            format!("loopback, lan, vpn or public, got {scope:?}"),
        ));
    }
    if endpoint.provider_key.is_empty() {
        return Err(param_err("market.heartbeat.provider_key", "must not be empty"));
    }
    if !reqwest_like_url(&endpoint.endpoint_base_url) {
        return Err(param_err(
            "market.heartbeat.endpoint_url",
            format!("must be an http(s) URL with a host, got {:?}", endpoint.endpoint_base_url),
        ));
    }
    if h.max_interval < h.min_interval {
        return Err(param_err("market.heartbeat.max_interval", "must not be below market.heartbeat.min_interval"));
    }
    if h.backoff_max < h.backoff_base {
        return Err(param_err("market.heartbeat.backoff_max", "must not be below market.heartbeat.backoff_base"));
    }
    Ok(())
}

/// The runtime endpoint (`market.runtime_endpoint.*`), the heartbeat's endpoint upserted with the
/// node's health as its status; `None` unless `upsert` is on.
fn runtime_endpoint(p: &ParamSet, endpoint: &HeartbeatEndpoint) -> Result<Option<RuntimeEndpointConfig>, StartError> {
    let upsert = p.read_only::<bool>(
        "market.runtime_endpoint.upsert",
        false,
        "Also upsert the heartbeat's endpoint as the machine's runtime endpoint (status: the node's health).",
    )?;
    let label = string(p, "market.runtime_endpoint.label", "", "Runtime endpoint label. Empty: the provider key.")?;
    let probe = string(p, "market.runtime_endpoint.probe_path", "", "Runtime endpoint probePath. Empty: none.")?;
    let refresh = seconds(
        p,
        "market.runtime_endpoint.refresh",
        600.0,
        "Seconds after which the runtime endpoint is upserted again even when the node's health is unchanged.",
    )?;
    Ok(upsert.then(|| RuntimeEndpointConfig {
        provider_key: endpoint.provider_key.clone(),
        upsert: RuntimeEndpointUpsert {
            endpoint_base_url: endpoint.endpoint_base_url.clone(),
            label: (!label.is_empty()).then_some(label),
            auth_type: Some("none".into()),
            network_scope: endpoint.network_scope.clone(),
            probe_path: (!probe.is_empty()).then_some(probe),
            status: None,
        },
        refresh,
        health: Arc::new(|| "active"), // replaced in `start` by the node's own
    }))
}

/// The local delivery endpoint (`market.delivery.*`); `None` while `http_listen` is empty.
fn delivery(p: &ParamSet) -> Result<Option<DeliveryParams>, StartError> {
    let listen = string(
        p,
        "market.delivery.http_listen",
        "",
        "Serve bought chunks over HTTP (bearer token per purchase, Range) at this address, e.g. 0.0.0.0:8089. Empty: off.",
    )?;
    let public_url = string(
        p,
        "market.delivery.http_url",
        "",
        "The URL buyers reach that endpoint at, e.g. http://robot.local:8089. Empty: http://<http_listen>.",
    )?;
    let token_ttl = seconds(
        p,
        "market.delivery.token_ttl",
        3600.0,
        "Seconds a purchase's delivery token stays valid after its access was prepared.",
    )?;
    if listen.is_empty() {
        return Ok(None);
    }
    let listen: SocketAddr = listen.parse().map_err(|_| {
        param_err("market.delivery.http_listen", format!("{listen:?} is not host:port (an IP address)"))
    })?;
    let public_url = if public_url.is_empty() { format!("http://{listen}") } else { public_url };
    if !reqwest_like_url(&public_url) {
        return Err(param_err(
            "market.delivery.http_url",
            format!("must be an http(s) URL with a host, got {public_url:?}"),
        ));
    }
    Ok(Some(DeliveryParams { listen, public_url: public_url.trim_end_matches('/').to_string(), token_ttl }))
}

pub(super) fn declare(p: &ParamSet, address: &str) -> Result<Option<MarketParams>, StartError> {
    let enabled = p.read_only::<bool>(
        "market.enabled",
        false,
        "Onboard into peaqOS Machine Markets (orchestration API) and heartbeat; adds ~/market_onboard.",
    )?;
    let url = string(p, "market.url", "", "Orchestration URL (/api/v1 is appended). Empty: PEAQOS_ORCHESTRATION_URL.")?;
    let api_key_file = string(
        p,
        "market.api_key_file",
        "",
        "Platform API key file (mode 0600 or 0400). Empty: PEAQOS_API_KEY, else PEAQOS_ORCH_API_KEY.",
    )?;
    let onboard_at_start = p.read_only::<bool>(
        "market.onboard_at_start",
        true,
        "Onboard as soon as the machine id is known (chain.machine_id or ~/activate); else only on ~/market_onboard.",
    )?;
    let (profile, agent_label) = record(p, address)?;
    let (endpoint, heartbeat_policy) = heartbeat(p)?;
    let purchase_poll = seconds(
        p,
        "market.purchase_poll_interval",
        10.0,
        "Seconds between polls of open purchases, besides the control socket's notifications.",
    )?;
    let payment_confirmations = p.read_only_in::<i64>(
        "market.payment_confirmations",
        2,
        "Blocks a transfer payment needs (its own included) before a purchase is served; the node checks it on chain itself.",
        ParameterRange { lower: Some(1), upper: Some(10_000), step: None },
    )?;
    let purchase_retention = p.read_only::<f64>(
        "market.purchase_retention",
        30.0 * 86_400.0,
        "Seconds a final (recorded or refused) purchase record is kept; 0 = forever. Payment claims always stay.",
    )?;
    let purchase_retention = peaqos_core::duration::seconds(purchase_retention, true)
        .map_err(|e| param_err("market.purchase_retention", e))?;
    let runtime_endpoint = runtime_endpoint(p, &endpoint)?;
    let capabilities_ttl = seconds(
        p,
        "market.capabilities_ttl",
        3600.0,
        "Seconds the registered delivery capabilities stay valid; renewed halfway through.",
    )?;
    let delivery = delivery(p)?;
    if !enabled {
        return Ok(None);
    }
    let url = if url.is_empty() { std::env::var(URL_ENV).unwrap_or_default().trim().to_string() } else { url };
    if url.is_empty() {
        return Err(param_err("market.url", format!("is empty and {URL_ENV} is not set")));
    }
    check_heartbeat(&endpoint, &heartbeat_policy)?;
    let cfg = SellerConfig {
        profile,
        enroll: EnrollConfig { label: agent_label, allowed_provider_keys: vec![endpoint.provider_key.clone()] },
        heartbeat: heartbeat_policy,
        endpoints: vec![endpoint],
        onboard_at_start,
        machine_id_poll: Duration::from_secs(1),
        offers: Default::default(),
        sales: None,
        runtime_endpoint,
    };
    Ok(Some(MarketParams {
        purchase_poll,
        payment_confirmations: u64::try_from(payment_confirmations).unwrap_or(2),
        url,
        api_key_file: (!api_key_file.is_empty()).then(|| PathBuf::from(api_key_file)),
        cfg,
        capabilities_ttl,
        delivery,
        purchase_retention: (!purchase_retention.is_zero()).then_some(purchase_retention),
    }))
}
