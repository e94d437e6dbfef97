//! The buyer on ROS (issue 16): the `market.buyer.*` parameters, the `~/market_order` action
//! ([`super::order_action`]) and the services `~/market_search`, `~/market_order_status`,
//! `~/market_order_received` and `~/market_order_dispute`. Everything else is
//! `peaqos_market::buyer`, on the market runtime: no callback waits on HTTP or the chain.
//!
//! The pairing token lives only in `<data_dir>/market/pairing_token` (0600); payments are signed
//! by the machine key through the chain client's outbox, so the buyer needs `chain.enabled`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use peaqos_core::keys::MachineKey;
use peaqos_market::buyer::{Buyer, BuyerConfig, BuyerParts, DelegationPolicy, OrderRecord, PairingConfig};
use peaqos_market::state::MarketStore;
use peaqos_market::OrchestrationClient;
use rclrs::{IntoPrimitiveOptions, Node, ParameterRange, Service};
use ros_env::peaqos_node::srv::*;
use tokio::runtime::Handle;

use crate::answer::{Refusal, Refuse};
use crate::params::{param_err, ParamSet, Params};
use crate::StartError;

fn string(p: &ParamSet, name: &str, default: &str, description: &str) -> Result<String, StartError> {
    Ok(p.read_only::<Arc<str>>(name, Arc::from(default), description)?.to_string())
}

fn seconds(p: &ParamSet, name: &str, default: f64, description: &str) -> Result<Duration, StartError> {
    let v = p.read_only::<f64>(name, default, description)?;
    peaqos_core::duration::seconds(v, false).map_err(|e| param_err(name, e))
}

fn list(p: &ParamSet, name: &str, description: &str) -> Result<Vec<String>, StartError> {
    Ok(p.read_only_strings(name, &[], description)?.into_iter().filter(|s| !s.trim().is_empty()).collect())
}

/// The buyer's settings (`None` while `market.buyer.enabled` is false).
pub(super) struct BuyerParams {
    pub agent_key_file: Option<PathBuf>,
    pub cfg: BuyerConfig,
}

/// Declare `market.buyer.*` (always, so `ros2 param` shows them) and read them.
pub(super) fn declare(p: &ParamSet) -> Result<Option<BuyerParams>, StartError> {
    let enabled = p.read_only::<bool>(
        "market.buyer.enabled",
        false,
        "Buy services on Machine Markets through ~/market_order (needs market.enabled and chain.enabled).",
    )?;
    let agent_key_file = string(
        p,
        "market.buyer.agent_key_file",
        "",
        "The buyer agent's key file (hex, mode 0600). Empty: the machine key is the agent key. Payments are always signed by the machine key.",
    )?;
    let agent_provider = string(p, "market.buyer.agent_provider", "peaqos-node", "agentProvider of the pairing.")?;
    let agent_role = string(p, "market.buyer.agent_role", "buyer", "agentRole of the pairing.")?;
    let currency = string(p, "market.buyer.currency", "USDT", "Currency of the spend limits and default budgets.")?;
    let per_tx = string(
        p,
        "market.buyer.per_transaction_limit",
        "",
        "Most one payment may be, a decimal in market.buyer.currency. Empty: no limit.",
    )?;
    let daily = string(
        p,
        "market.buyer.daily_spend_limit",
        "",
        "Most all payments of one UTC day may add up to, a decimal. Empty: no limit.",
    )?;
    let policy = DelegationPolicy {
        per_transaction_limit: (!per_tx.is_empty()).then_some(per_tx),
        daily_spend_limit: (!daily.is_empty()).then_some(daily),
        currency,
        allowed_skill_keys: list(p, "market.buyer.allowed_skill_keys", "Skills the agent may buy (empty: any).")?,
        denied_skill_keys: list(p, "market.buyer.denied_skill_keys", "Skills the agent may never buy.")?,
        allowed_service_ids: list(p, "market.buyer.allowed_service_ids", "Services the agent may buy (empty: any).")?,
        denied_service_ids: list(p, "market.buyer.denied_service_ids", "Services the agent may never buy.")?,
    };
    let renew_before = seconds(
        p,
        "market.buyer.session_renew_before",
        300.0,
        "Open a new pairing session when the current one has less than this many seconds left.",
    )?;
    let retry_base = seconds(
        p,
        "market.buyer.retry_base",
        1.0,
        "First wait of an order after a transient failure, seconds (doubles).",
    )?;
    let retry_max = seconds(p, "market.buyer.retry_max", 30.0, "Longest wait of an order between retries, seconds.")?;
    let payment_wait = seconds(
        p,
        "market.buyer.payment_wait",
        30.0,
        "Seconds one wait for a payment's inclusion lasts before the order reports it still waits.",
    )?;
    let retention = seconds(
        p,
        "market.buyer.order_retention",
        30.0 * 86_400.0,
        "Seconds an ended order's record is kept (its status stays queryable until then).",
    )?;
    let max_open = p.read_only_in::<i64>(
        "market.buyer.max_open_orders",
        1000,
        "Most orders open at once; more are refused with ORDER_LIMIT.",
        ParameterRange { lower: Some(1), upper: Some(100_000), step: None },
    )?;
    if !enabled {
        return Ok(None);
    }
    if let Err(e) = policy.validate() {
        let field = e.field().to_owned();
        return Err(param_err(&field, e));
    }
    if retry_max < retry_base {
        return Err(param_err("market.buyer.retry_max", "must not be below market.buyer.retry_base"));
    }
    Ok(Some(BuyerParams {
        agent_key_file: (!agent_key_file.is_empty()).then(|| PathBuf::from(agent_key_file)),
        cfg: BuyerConfig {
            pairing: PairingConfig { agent_provider, agent_role, description: None, policy, renew_before },
            retry_base,
            retry_max,
            max_open_orders: usize::try_from(max_open).unwrap_or(1000),
            retention,
            payment_wait,
        },
    }))
}

/// The running buyer's ROS endpoints.
pub(super) struct BuyerEndpoints {
    _search: Option<Service<MarketSearch>>,
    _status: Option<Service<MarketOrderStatus>>,
    _received: Option<Service<MarketOrderReceived>>,
    _dispute: Option<Service<MarketOrderDispute>>,
    _action: Option<super::order_action::OrderActionServer>,
}

/// Start the buyer (resuming stored orders) and its endpoints.
#[allow(clippy::too_many_arguments)]
pub(super) fn start(
    node: &Node,
    params: &Params,
    bp: BuyerParams,
    client: OrchestrationClient,
    store: MarketStore,
    machine_key: Arc<MachineKey>,
    chain: Option<&crate::chain::ChainServices>,
    rt: Handle,
) -> Result<BuyerEndpoints, StartError> {
    let chain = chain.ok_or_else(|| {
        param_err("market.buyer.enabled", "the buyer pays on chain: it needs chain.enabled (the chain client)")
    })?;
    let agent = match &bp.agent_key_file {
        Some(f) => {
            Arc::new(MachineKey::load_from(None, Some(f)).map_err(|e| param_err("market.buyer.agent_key_file", e))?)
        }
        None => machine_key,
    };
    let parts = BuyerParts { client, market: store, chain: chain.client().clone(), agent };
    let buyer = Buyer::start(parts, &params.data_dir, bp.cfg, rt.clone()).map_err(|e| param_err("data_dir", e))?;
    let on = |name: &str| params.services.enabled(name);
    let qos = |name: &'static str| name.reliable().keep_last(crate::chain::SERVICE_QUEUE_DEPTH);
    let search = on("~/market_search")
        .then(|| {
            let (b, rt) = (buyer.clone(), rt.clone());
            node.create_async_service::<MarketSearch, _>(qos("~/market_search"), move |req: MarketSearch_Request| {
                crate::ros_log::request("~/market_search");
                let b = b.clone();
                let task = rt.spawn(async move {
                    b.search_quotes(&req.service_type, &req.operation, &req.budget, &req.currency).await
                });
                async move {
                    match task.await {
                        Ok(Ok((id, quotes))) => MarketSearch_Response {
                            success: true,
                            message: format!("{} quote(s)", quotes.len()),
                            search_id: id,
                            quotes_json: serde_json::Value::Array(quotes).to_string(),
                            ..Default::default()
                        },
                        Ok(Err(e)) => MarketSearch_Response::default().refused(Refusal::from(&e)),
                        Err(e) => MarketSearch_Response::default().refused(internal(e)),
                    }
                }
            })
        })
        .transpose()?;
    let status = on("~/market_order_status")
        .then(|| {
            let b = buyer.clone();
            node.create_service::<MarketOrderStatus, _>(
                qos("~/market_order_status"),
                move |req: MarketOrderStatus_Request| {
                    crate::ros_log::request("~/market_order_status");
                    match b.record(&req.order_key) {
                        Some(rec) => status_of(&rec),
                        None => MarketOrderStatus_Response::default().refused(Refusal {
                            code: "NOT_FOUND".into(),
                            field: "order_key".into(),
                            message: format!("no order {:?}", req.order_key),
                        }),
                    }
                },
            )
        })
        .transpose()?;
    let received = on("~/market_order_received")
        .then(|| {
            let (b, rt) = (buyer.clone(), rt.clone());
            node.create_async_service::<MarketOrderReceived, _>(
                qos("~/market_order_received"),
                move |req: MarketOrderReceived_Request| {
                    crate::ros_log::request("~/market_order_received");
                    let b = b.clone();
                    let task = rt.spawn(async move { b.confirm(&req.order_key).await });
                    async move {
                        match task.await {
                            Ok(Ok(rec)) => MarketOrderReceived_Response {
                                success: true,
                                message: "confirmed".into(),
                                state: rec.state.as_str().into(),
                                payment_status: rec.payment_status.unwrap_or_default(),
                                ..Default::default()
                            },
                            Ok(Err(e)) => MarketOrderReceived_Response::default().refused(Refusal::from(&e)),
                            Err(e) => MarketOrderReceived_Response::default().refused(internal(e)),
                        }
                    }
                },
            )
        })
        .transpose()?;
    let dispute = on("~/market_order_dispute")
        .then(|| {
            let (b, rt) = (buyer.clone(), rt.clone());
            node.create_async_service::<MarketOrderDispute, _>(
                qos("~/market_order_dispute"),
                move |req: MarketOrderDispute_Request| {
                    crate::ros_log::request("~/market_order_dispute");
                    let b = b.clone();
                    let task =
                        rt.spawn(async move { b.dispute(&req.order_key, &req.reason, &req.evidence_json).await });
                    async move {
                        match task.await {
                            Ok(Ok(rec)) => MarketOrderDispute_Response {
                                success: true,
                                message: "disputed".into(),
                                state: rec.state.as_str().into(),
                                payment_status: rec.payment_status.unwrap_or_default(),
                                ..Default::default()
                            },
                            Ok(Err(e)) => MarketOrderDispute_Response::default().refused(Refusal::from(&e)),
                            Err(e) => MarketOrderDispute_Response::default().refused(internal(e)),
                        }
                    }
                },
            )
        })
        .transpose()?;
    let action =
        on("~/market_order").then(|| super::order_action::serve(node, &rt, Arc::new(buyer.clone()))).transpose()?;
    tracing::info!(agent = %buyer_agent(&buyer), "market: buyer ready (~/market_order)");
    let _ = super::BUYER.set(buyer.clone());
    Ok(BuyerEndpoints { _search: search, _status: status, _received: received, _dispute: dispute, _action: action })
}

fn buyer_agent(b: &Buyer) -> String {
    b.agent_address().to_string()
}

fn internal(e: tokio::task::JoinError) -> Refusal {
    Refusal::internal(format!("the task failed: {e}"))
}

fn status_of(rec: &OrderRecord) -> MarketOrderStatus_Response {
    let r = rec.result.clone().unwrap_or_default();
    let paid = rec.payment.as_ref().filter(|_| rec.tx_hash.is_some());
    MarketOrderStatus_Response {
        success: true,
        message: rec.waiting.clone().unwrap_or_default(),
        order_key: rec.key.clone(),
        order_id: rec.order_id.clone().unwrap_or_default(),
        state: rec.state.as_str().into(),
        step: rec.state.step().as_str().into(),
        detail: rec.waiting.clone().unwrap_or_default(),
        service_id: rec.service_id.clone().unwrap_or_default(),
        payment_reference: rec.tx_hash.clone().unwrap_or_default(),
        amount: paid.map(|p| p.amount.clone()).unwrap_or_default(),
        currency: paid.map(|p| p.currency.clone()).unwrap_or_default(),
        payment_status: rec.payment_status.clone().unwrap_or_default(),
        result_code: r.error_code,
        run_json: r.run_json,
        outcome_json: r.outcome_json,
        handoff_json: r.handoff_json,
        ..Default::default()
    }
}
