//! peaqOS Machine Markets on ROS: the `market.*` parameters, `~/market_onboard`, and the seller's
//! health as one `/diagnostics` status ("peaqos_node: market"). Everything else is
//! `peaqos_market::seller`, which runs on a tokio runtime of its own, so neither onboarding nor the
//! heartbeat ever blocks the executor.
//!
//! Secrets are never parameters, fields or log lines: the platform API key comes from
//! `market.api_key_file` (mode 0600) or `PEAQOS_API_KEY` / `PEAQOS_ORCH_API_KEY`; the agent token
//! lives only in `<data_dir>/market/agent_token` (0600).
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use peaqos_core::keys::MachineKey;
use peaqos_core::policy::{DataEventMap, PolicyError};
use peaqos_events::submit::{current_machine_id, machine_id_file};
use peaqos_market::agent::{EnrollConfig, HeartbeatPolicy};
use peaqos_market::onboard::MachineProfile;
use peaqos_market::seller::{Phase, RuntimeEndpointConfig, Seller, SellerConfig, Snapshot};
use peaqos_market::state::MarketStore;
use peaqos_market::wire::{HeartbeatEndpoint, RuntimeEndpointUpsert};
use peaqos_market::{ClientConfig, MarketError, OrchestrationClient};
use rclrs::{IntoPrimitiveOptions, Node, ParameterRange, Service};
use ros_env::diagnostic_msgs::msg::{DiagnosticStatus, KeyValue};
use ros_env::peaqos_node::srv::{MarketOnboard, MarketOnboard_Request, MarketOnboard_Response};
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::params::{param_err, ParamSet, Params};
use crate::StartError;

/// Environment variable of the orchestration URL when `market.url` is empty (the SDK's name).
pub const URL_ENV: &str = "PEAQOS_ORCHESTRATION_URL";

static SELLER: OnceLock<Arc<Seller>> = OnceLock::new();

/// The running market subsystem (service, runtime, supervisor).
pub struct MarketSubsystem {
    _service: Option<Service<MarketOnboard>>,
    runtime: Option<Runtime>,
    stop: watch::Sender<bool>,
}

impl MarketSubsystem {
    /// Stop the supervisor and the runtime (requests in flight are abandoned; state is on disk).
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

fn string(p: &ParamSet, name: &str, default: &str, description: &str) -> Result<String, StartError> {
    p.read_only::<Arc<str>>(name, Arc::from(default), description).map(|v| v.trim().to_string())
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

/// Everything the seller needs from the parameters (`None` while `market.enabled` is false).
struct MarketParams {
    url: String,
    api_key_file: Option<PathBuf>,
    cfg: SellerConfig,
    capabilities_ttl: Duration,
    purchase_poll: Duration,
    payment_confirmations: u64,
}

fn declare(p: &ParamSet, address: &str) -> Result<Option<MarketParams>, StartError> {
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
    let display_name =
        string(p, "market.display_name", "", "Machine record display name. Empty: 'peaqOS machine <address>'.")?;
    let owner_id = string(p, "market.owner_id", "", "Machine record ownerId. Empty: the machine key's address.")?;
    let machine_type = string(p, "market.machine_type", "robot", "Machine record machineType.")?;
    let runtime_profile = string(p, "market.runtime_profile", "ros2", "Machine record runtimeProfile.")?;
    let capabilities = p.read_only_strings("market.capabilities", &[], "Machine record capabilities.")?;
    let label_entries = p.read_only_strings("market.labels", &[], "Machine record labels, each 'key=value'.")?;
    let agent_label = string(p, "market.agent_label", "peaqos-node", "Label of the machine agent this node enrolls.")?;
    let onboard_at_start = p.read_only::<bool>(
        "market.onboard_at_start",
        true,
        "Onboard as soon as the machine id is known (chain.machine_id or ~/activate); else only on ~/market_onboard.",
    )?;
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
    let runtime_upsert = p.read_only::<bool>(
        "market.runtime_endpoint.upsert",
        false,
        "Also upsert the heartbeat's endpoint as the machine's runtime endpoint (status: the node's health).",
    )?;
    let runtime_label =
        string(p, "market.runtime_endpoint.label", "", "Runtime endpoint label. Empty: the provider key.")?;
    let runtime_probe =
        string(p, "market.runtime_endpoint.probe_path", "", "Runtime endpoint probePath. Empty: none.")?;
    let runtime_refresh = seconds(
        p,
        "market.runtime_endpoint.refresh",
        600.0,
        "Seconds after which the runtime endpoint is upserted again even when the node's health is unchanged.",
    )?;
    let capabilities_ttl = seconds(
        p,
        "market.capabilities_ttl",
        3600.0,
        "Seconds the registered delivery capabilities stay valid; renewed halfway through.",
    )?;
    if !enabled {
        return Ok(None);
    }
    let url = if url.is_empty() { std::env::var(URL_ENV).unwrap_or_default().trim().to_string() } else { url };
    if url.is_empty() {
        return Err(param_err("market.url", format!("is empty and {URL_ENV} is not set")));
    }
    if !["loopback", "lan", "vpn", "public"].contains(&network_scope.as_str()) {
        return Err(param_err(
            "market.heartbeat.network_scope",
            format!("loopback, lan, vpn or public, got {network_scope:?}"),
        ));
    }
    if provider_key.is_empty() {
        return Err(param_err("market.heartbeat.provider_key", "must not be empty"));
    }
    let endpoint_ok = reqwest_like_url(&endpoint_url);
    if !endpoint_ok {
        return Err(param_err(
            "market.heartbeat.endpoint_url",
            format!("must be an http(s) URL with a host, got {endpoint_url:?}"),
        ));
    }
    if max_interval < min_interval {
        return Err(param_err("market.heartbeat.max_interval", "must not be below market.heartbeat.min_interval"));
    }
    if backoff_max < backoff_base {
        return Err(param_err("market.heartbeat.backoff_max", "must not be below market.heartbeat.backoff_base"));
    }
    let runtime_endpoint = runtime_upsert.then(|| RuntimeEndpointConfig {
        provider_key: provider_key.clone(),
        upsert: RuntimeEndpointUpsert {
            endpoint_base_url: endpoint_url.clone(),
            label: (!runtime_label.is_empty()).then_some(runtime_label),
            auth_type: Some("none".into()),
            network_scope: Some(network_scope.clone()),
            probe_path: (!runtime_probe.is_empty()).then_some(runtime_probe),
            status: None,
        },
        refresh: runtime_refresh,
        health: Arc::new(|| "active"), // replaced in `start` by the node's own
    });
    let mut endpoint = HeartbeatEndpoint::new(provider_key.clone(), endpoint_url);
    endpoint.network_scope = Some(network_scope);
    let cfg = SellerConfig {
        profile: MachineProfile {
            display_name: if display_name.is_empty() { format!("peaqOS machine {address}") } else { display_name },
            owner_id: if owner_id.is_empty() { address.to_string() } else { owner_id },
            machine_type,
            runtime_profile,
            capabilities: capabilities.into_iter().filter(|c| !c.trim().is_empty()).collect(),
            labels: labels(&label_entries)?,
        },
        enroll: EnrollConfig { label: agent_label, allowed_provider_keys: vec![provider_key] },
        heartbeat: HeartbeatPolicy {
            lease_ttl_seconds: u32::try_from(lease_ttl).ok().filter(|t| *t > 0),
            renew_fraction: 0.5,
            min_interval,
            max_interval,
            backoff_base,
            backoff_max,
        },
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
    }))
}

/// `http(s)://host...` with a non-empty host and no whitespace (what the API accepts).
fn reqwest_like_url(u: &str) -> bool {
    let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

/// A start error for a market config error, naming the parameter.
fn config_err(e: MarketError) -> StartError {
    let name = match e.field() {
        "orchestration_url" => "market.url",
        "api_key_file" | "api_key" => "market.api_key_file",
        _ => "market",
    };
    param_err(name, e)
}

/// Declare the `market.*` parameters; with `market.enabled`, start the seller and `~/market_onboard`.
/// Every streamed topic with a `sale:` block in `map` is listed. `chain_machine_id`: the
/// `chain.machine_id` parameter (empty = the id `~/activate` persisted).
pub fn start(
    node: &Node,
    params: &Params,
    map: &DataEventMap,
    chain_machine_id: &str,
    key: MachineKey,
    chain: Option<&crate::chain::ChainServices>,
) -> Result<Option<MarketSubsystem>, StartError> {
    let Some(mut mp) = declare(&params.declared, key.address())? else { return Ok(None) };
    let policy_file = if params.policy_file.is_empty() {
        PathBuf::from("<embedded default policy>")
    } else {
        PathBuf::from(&params.policy_file)
    };
    let specs = crate::stream::topic_specs(map, &policy_file)?;
    mp.cfg.offers =
        peaqos_market::offers::offers(specs.iter().map(|s| (s.topic.as_str(), &s.cfg)), mp.capabilities_ttl).map_err(
            |reason| PolicyError { file: policy_file.clone(), path: "topics[*].stream.sale".into(), reason },
        )?;
    for l in &mp.cfg.offers.listings {
        tracing::info!("market: {} is for sale as listing {}", l.topic, l.listing_id);
    }
    let stream_keys = peaqos_stream::keys::MachineStreamKeys::from_secp256k1_secret(&key.secret_bytes())
        .map_err(|e| param_err("key_file", format!("stream keys: {e}")))?;
    let fixed = (!chain_machine_id.is_empty()).then(|| chain_machine_id.to_owned());
    let file = machine_id_file(&params.data_dir);
    let machine_id = move || current_machine_id(fixed.as_deref(), &file);
    let sale_chain = chain.map(|c| peaqos_market::settle::SaleChain {
        client: c.client().clone(),
        confirmations: mp.payment_confirmations,
        machine_id: Arc::new(machine_id.clone()),
    });
    if sale_chain.is_none() && !mp.cfg.offers.listings.is_empty() {
        tracing::warn!("market: the chain client is off: payments are taken on the server's word and sales are not recorded on chain");
    }
    if let Some(rt) = mp.cfg.runtime_endpoint.as_mut() {
        // The node's health as the endpoint reports it: degraded while the data dir's file system
        // is below `disk.min_free_bytes` (new messages refused).
        let (dir, min_free) = (params.data_dir.clone(), params.min_free_bytes);
        rt.health = Arc::new(move || match peaqos_base::fsio::free_bytes(&dir) {
            Ok(free) if free >= min_free => "active",
            _ => "degraded",
        });
    }
    mp.cfg.sales = Some(peaqos_market::seller::SalesConfig {
        data_dir: params.data_dir.clone(),
        stream_dir: peaqos_base::layout::stream_dir(&params.data_dir),
        keys: Arc::new(stream_keys),
        poll_interval: mp.purchase_poll,
        chain: sale_chain,
        // No local HTTP delivery endpoint yet: main's market work adds the field and wires it
        // next; `None` keeps the behaviour from before it, so the node builds.
        http: None,
    });
    let api_key = peaqos_market::secret::load_api_key(mp.api_key_file.as_deref()).map_err(config_err)?;
    if api_key.is_none() {
        tracing::warn!(
            "market: no platform API key (market.api_key_file, PEAQOS_API_KEY): requests carry no x-api-key"
        );
    }
    let client = OrchestrationClient::new(ClientConfig::new(mp.url, api_key)).map_err(config_err)?;
    let store = MarketStore::open(&params.data_dir).map_err(|e| param_err("data_dir", e))?;
    let source = Box::new(machine_id);
    tracing::info!("market: orchestration API {}", client.api_base());
    let seller = Seller::new(client, store, Arc::new(key), mp.cfg, source).map_err(config_err)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("peaqos-market")
        .enable_all()
        .build()
        .map_err(|e| param_err("market", format!("cannot start the market runtime: {e}")))?;
    let (stop, stop_rx) = watch::channel(false);
    runtime.spawn(Arc::clone(&seller).run(stop_rx));
    let _ = SELLER.set(Arc::clone(&seller));

    let handle = runtime.handle().clone();
    let service = params
        .services
        .enabled("~/market_onboard")
        .then(|| {
            node.create_async_service::<MarketOnboard, _>(
                "~/market_onboard".reliable().keep_last(crate::chain::SERVICE_QUEUE_DEPTH),
                move |_req: MarketOnboard_Request| {
                    crate::ros_log::request("~/market_onboard");
                    let s = Arc::clone(&seller);
                    let task = handle.spawn(async move { s.onboard().await });
                    async move {
                        match task.await {
                            Ok(Ok(o)) => MarketOnboard_Response {
                                success: true,
                                message: "onboarded".into(),
                                identity_ref: o.machine.identity_ref.clone().unwrap_or_default(),
                                machine_id: o.chain_machine_id,
                                market_machine_id: o.machine.id,
                                machine_status: format!("{:?}", o.machine.status).to_ascii_lowercase(),
                                agent_id: o.agent_id,
                                ..Default::default()
                            },
                            Ok(Err(e)) => MarketOnboard_Response {
                                success: false,
                                error_code: e.error_code().to_owned(),
                                error_field: e.field().to_owned(),
                                message: e.to_string(),
                                ..Default::default()
                            },
                            Err(e) => MarketOnboard_Response {
                                success: false,
                                error_code: "INTERNAL".into(),
                                message: format!("the onboarding task failed: {e}"),
                                ..Default::default()
                            },
                        }
                    }
                },
            )
        })
        .transpose()?;
    Ok(Some(MarketSubsystem { _service: service, runtime: Some(runtime), stop }))
}

fn kv(key: &str, value: impl ToString) -> KeyValue {
    KeyValue { key: key.to_owned(), value: value.to_string() }
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).unwrap_or_default()
}

/// The market's `/diagnostics` status: OK while online, WARN while waiting or retrying (with the
/// backoff), ERROR after a failure that waiting will not fix. `None` while the market is disabled.
pub fn diagnostic_status(hardware_id: &str) -> Option<DiagnosticStatus> {
    let s: Snapshot = SELLER.get()?.snapshot();
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
            kv("purchases", s.purchases.iter().map(|(k, n)| format!("{k}={n}")).collect::<Vec<_>>().join(",")),
            kv(
                "purchase_error",
                s.purchase_error
                    .as_ref()
                    .map(|(id, e)| peaqos_core::text::one_line(&format!("{id}: {e}"), 500))
                    .unwrap_or_default(),
            ),
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
