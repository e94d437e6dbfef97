//! peaqOS Machine Markets on ROS: the `market.*` parameters, `~/market_onboard`, and the seller's
//! health as one `/diagnostics` status ("peaqos_node: market"). Everything else is
//! `peaqos_market::seller`, which runs on a tokio runtime of its own, so neither onboarding nor the
//! heartbeat ever blocks the executor.
//!
//! Secrets are never parameters, fields or log lines: the platform API key comes from
//! `market.api_key_file` (mode 0600) or `PEAQOS_API_KEY` / `PEAQOS_ORCH_API_KEY`; the agent token
//! lives only in `<data_dir>/market/agent_token` (0600).
//!
//! One file per job: [`params`] (the `market.*` parameters), [`diagnostics`] (the status),
//! [`buyer`] (the `market.buyer.*` parameters and the buyer's services), [`order_action`] (the
//! buyer's `~/market_order` action over an `OrderDesk`), this file (start, the service, the
//! subsystem).

mod buyer;
mod diagnostics;
pub mod order_action;
mod params;

pub use diagnostics::{diagnostic_status, status};

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use peaqos_core::keys::MachineKey;
use peaqos_core::policy::{DataEventMap, PolicyError};
use peaqos_events::submit::{current_machine_id, machine_id_file};
use peaqos_market::delivery::HttpDelivery;
use peaqos_market::seller::{SalesConfig, Seller};
use peaqos_market::state::MarketStore;
use peaqos_market::{ClientConfig, OrchestrationClient};
use rclrs::{IntoPrimitiveOptions, Node, Service};
use ros_env::peaqos_node::srv::{MarketOnboard, MarketOnboard_Request, MarketOnboard_Response};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::params::{param_err, Params};
use crate::StartError;
use params::{config_err, declare, MarketParams};

/// Environment variable of the orchestration URL when `market.url` is empty (the SDK's name).
pub const URL_ENV: &str = "PEAQOS_ORCHESTRATION_URL";

pub(crate) static SELLER: OnceLock<Arc<Seller>> = OnceLock::new();
pub(crate) static BUYER: OnceLock<peaqos_market::buyer::Buyer> = OnceLock::new();

/// The running market subsystem (service, runtime, supervisor).
pub struct MarketSubsystem {
    _service: Option<Service<MarketOnboard>>,
    _buyer: Option<buyer::BuyerEndpoints>,
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

/// The machine id (decimal) when known: the `chain.machine_id` parameter, or what `~/activate`
/// persisted in `<data_dir>/machine_id`.
fn machine_id_source(params: &Params, chain_machine_id: &str) -> impl Fn() -> Option<String> + Clone + Send + Sync {
    let fixed = (!chain_machine_id.is_empty()).then(|| chain_machine_id.to_owned());
    let file = machine_id_file(&params.data_dir);
    move || current_machine_id(fixed.as_deref(), &file)
}

/// The local delivery endpoint's settings; its token key is derived from the machine key (so a
/// purchase's token is the same after a restart, and never stored).
fn http_delivery(mp: &MarketParams, key: &MachineKey) -> Option<HttpDelivery> {
    let d = mp.delivery.as_ref()?;
    let mut material = Zeroizing::new(key.secret_bytes().to_vec());
    material.extend_from_slice(b"peaqos-delivery-token-key-v1");
    Some(HttpDelivery {
        listen: d.listen,
        public_url: d.public_url.clone(),
        token_ttl: d.token_ttl,
        token_key: Arc::new(Zeroizing::new(peaqos_core::keys::keccak256(&material))),
    })
}

/// What selling needs: the listings of the `sale:` blocks, the stream keys, the chain that
/// payments are checked on and sales recorded on, the node's health, the delivery endpoint.
fn prepare_sales(
    params: &Params,
    map: &DataEventMap,
    key: &MachineKey,
    chain: Option<&crate::chain::ChainServices>,
    machine_id: &(impl Fn() -> Option<String> + Clone + Send + Sync + 'static),
    mp: &mut MarketParams,
) -> Result<(), StartError> {
    let policy_file = params.policy_file_name();
    let specs = crate::stream::topic_specs(map, &policy_file)?;
    mp.cfg.offers =
        peaqos_market::offers::offers(specs.iter().map(|s| (s.topic.as_str(), &s.cfg)), mp.capabilities_ttl).map_err(
            |reason| PolicyError { file: policy_file.clone(), path: "topics[*].stream.sale".into(), reason },
        )?;
    let http = http_delivery(mp, key);
    if let Some(h) = &http {
        peaqos_market::offers::with_http_delivery(&mut mp.cfg.offers, &h.public_url);
    }
    for l in &mp.cfg.offers.listings {
        tracing::info!("market: {} is for sale as listing {}", l.topic, l.listing_id);
    }
    let stream_keys = peaqos_stream::keys::MachineStreamKeys::from_secp256k1_secret(&key.secret_bytes())
        .map_err(|e| param_err("key_file", format!("stream keys: {e}")))?;
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
    mp.cfg.sales = Some(SalesConfig {
        data_dir: params.data_dir.clone(),
        stream_dir: peaqos_base::layout::stream_dir(&params.data_dir),
        keys: Arc::new(stream_keys),
        poll_interval: mp.purchase_poll,
        chain: sale_chain,
        http,
        retention: mp.purchase_retention,
    });
    Ok(())
}

/// Bind the delivery endpoint now (an address in use stops the node naming the parameter) and
/// serve it on the market runtime until `stop`.
fn serve_delivery(runtime: &Runtime, sales: &SalesConfig, stop: watch::Receiver<bool>) -> Result<(), StartError> {
    let Some(http) = sales.http.clone() else { return Ok(()) };
    let listener = std::net::TcpListener::bind(http.listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| param_err("market.delivery.http_listen", format!("cannot listen on {}: {e}", http.listen)))?;
    let store = peaqos_market::purchases::PurchaseStore::open(&sales.data_dir).map_err(|e| param_err("data_dir", e))?;
    let stream_dir = sales.stream_dir.clone();
    runtime.spawn(async move {
        if let Err(e) = peaqos_market::delivery::serve(http, listener, store, stream_dir, stop).await {
            tracing::error!(error = %e, "market: the delivery endpoint stopped");
        }
    });
    Ok(())
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
    let buyer_params = buyer::declare(&params.declared)?;
    let Some(mut mp) = declare(&params.declared, key.address())? else {
        if buyer_params.is_some() {
            return Err(param_err("market.buyer.enabled", "needs market.enabled"));
        }
        return Ok(None);
    };
    let machine_id = machine_id_source(params, chain_machine_id);
    prepare_sales(params, map, &key, chain, &machine_id, &mut mp)?;
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
    let sales = mp.cfg.sales.clone();
    let key = Arc::new(key);
    let buyer_parts = (client.clone(), store.clone(), Arc::clone(&key));
    let seller = Seller::new(client, store, key, mp.cfg, source).map_err(config_err)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("peaqos-market")
        .enable_all()
        .build()
        .map_err(|e| param_err("market", format!("cannot start the market runtime: {e}")))?;
    let (stop, stop_rx) = watch::channel(false);
    if let Some(sales) = &sales {
        serve_delivery(&runtime, sales, stop_rx.clone())?;
    }
    runtime.spawn(Arc::clone(&seller).run(stop_rx));
    let _ = SELLER.set(Arc::clone(&seller));

    let service = onboard_service(node, params, &runtime, seller)?;
    let buyer = match buyer_params {
        Some(bp) => {
            let (client, store, key) = buyer_parts;
            Some(buyer::start(node, params, bp, client, store, key, chain, runtime.handle().clone())?)
        }
        None => None,
    };
    Ok(Some(MarketSubsystem { _service: service, _buyer: buyer, runtime: Some(runtime), stop }))
}

/// `~/market_onboard` (unless switched off): runs on the market runtime; the executor never waits
/// on HTTP.
fn onboard_service(
    node: &Node,
    params: &Params,
    runtime: &Runtime,
    seller: Arc<Seller>,
) -> Result<Option<Service<MarketOnboard>>, StartError> {
    let handle = runtime.handle().clone();
    let service: Option<Service<MarketOnboard>> = params
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
    Ok(service)
}
