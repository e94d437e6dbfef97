//! The chain services: ROS requests → `peaqos_chain::ChainClient` calls → ROS responses.
//!
//! The chain client is async (tokio); the node's executor is not. Each service is an rclrs
//! async service whose future only awaits a task spawned on the node's tokio runtime, so a
//! slow chain never blocks subscriptions. Every response carries `success`, `error_code`,
//! `error_field` and `message`; error codes are the SDK's (`VALIDATION_ERROR`,
//! `FUTURE_TIMESTAMP`, `RATE_LIMITED`, ...). Keys never cross ROS: the machine key (and, for
//! legacy proxy flows, an operator key) are loaded from the environment or files.
//!
//! Layout: `params` (the `chain.*` parameters), `answer` (how a `ChainError` becomes a response
//! naming the request field, and the request-field parsers), one file per service group
//! (`event_services`, `identity_services`, `did_services`, `query_services`, `gas_services`, `account_services`), the `~/bridge_nft` action
//! (`bridge_action`); this file starts the client and
//! its runtime, publishes `~/tx_status` and registers the groups.
use std::sync::Arc;

use alloy::signers::local::PrivateKeySigner;
use peaqos_chain::{ChainClient, TxStatus};
use peaqos_core::keys::MachineKey;
use rclrs::{IntoPrimitiveOptions, Node, Publisher};
use ros_env::peaqos_node::msg::TxStatus as TxStatusMsg;
use tokio::runtime::Runtime;

use crate::params::param_err;
use crate::StartError;
use answer::hx;

/// Environment variable of the optional operator (proxy) key for legacy proxy flows.
pub const OPERATOR_KEY_ENV: &str = "PEAQOS_OPERATOR_PRIVATE_KEY";

/// What a service group registers its services with.
pub(crate) struct Registrar<'a> {
    pub node: &'a Node,
    pub client: ChainClient,
    pub runtime: Arc<Runtime>,
    pub services: Vec<Box<dyn std::any::Any>>,
    /// Which services to create at all (`services.disabled`).
    pub enabled: crate::access::Services,
}

/// Register one chain service: `service!(reg, "~/name", Srv, [renames: R,] |client, request| body)`,
/// where `body` is async code returning `Result<Srv_Response, ChainError>`; it runs on the
/// chain runtime, and an error becomes the response's `error_code` / `error_field` / `message`.
macro_rules! service {
    ($reg:expr, $name:literal, $srv:ty, |$c:ident, $req:ident| $body:expr) => {
        service!($reg, $name, $srv, renames: &[], clone: (), |$c, $req| $body)
    };
    ($reg:expr, $name:literal, $srv:ty, renames: $renames:expr, |$c:ident, $req:ident| $body:expr) => {
        service!($reg, $name, $srv, renames: $renames, clone: (), |$c, $req| $body)
    };
    // `clone: (a, b)`: values (`Arc`s) the body uses, cloned for each request.
    ($reg:expr, $name:literal, $srv:ty, renames: $renames:expr, clone: ($($cl:ident),*), |$c:ident, $req:ident| $body:expr) => {{
        use rclrs::IntoPrimitiveOptions as _;
        let reg: &mut $crate::chain::Registrar = $reg;
        if reg.enabled.enabled($name) {
        let (client, rt) = (reg.client.clone(), std::sync::Arc::clone(&reg.runtime));
        let s: rclrs::Service<$srv> = reg.node.create_async_service::<$srv, _>(
            $name.reliable().keep_last($crate::chain::SERVICE_QUEUE_DEPTH),
            move |$req: <$srv as rosidl_runtime_rs::Service>::Request| {
                $crate::ros_log::request($name);
                let $c = client.clone();
                $(let $cl = $cl.clone();)*
                $crate::chain::answer::on_runtime(&rt, $renames, async move { $body })
            },
        )?;
        reg.services.push(Box::new(s));
        }
    }};
}

mod account_services;
mod answer;
mod bridge_action;
mod did_services;
mod event_services;
mod gas_services;
mod identity_services;
mod params;
mod query_services;

pub use bridge_action::BridgeParamsSet;
pub use gas_services::{GasParams, GasView};
pub use params::{declare_machine_id, ChainParams};

/// Requests a chain service holds before the executor takes them: the ROS default of 10 loses
/// requests when callers burst (twenty concurrent `~/batch_submit_events` calls lost one).
pub const SERVICE_QUEUE_DEPTH: u32 = 1000;

fn signer_of(key: &MachineKey) -> Result<PrivateKeySigner, StartError> {
    let secret = key.secret_bytes();
    PrivateKeySigner::from_slice(&secret[..])
        .map_err(|_| param_err("key_file", "the machine key is not a valid secp256k1 key"))
}

/// The operator key for legacy proxy flows, when one is configured: a keystore
/// (`chain.operator_keystore_file`), else `PEAQOS_OPERATOR_PRIVATE_KEY` or `chain.operator_key_file`.
fn operator_key(params: &ChainParams) -> Result<Option<MachineKey>, StartError> {
    if let Some(ks) = &params.operator_keystore_file {
        let prompt = format!("passphrase of the operator keystore {}: ", ks.display());
        let pass = peaqos_core::keys::keystore_passphrase_or_ask(
            ks,
            params.operator_keystore_passphrase_file.as_deref(),
            &prompt,
        )
        .map_err(|e| param_err("chain.operator_keystore_passphrase_file", e))?;
        let key = MachineKey::from_keystore(ks, &pass).map_err(|e| param_err("chain.operator_keystore_file", e))?;
        return Ok(Some(key));
    }
    let operator_env = std::env::var(OPERATOR_KEY_ENV).ok().filter(|v| !v.trim().is_empty());
    if operator_env.is_none() && params.operator_key_file.is_none() {
        return Ok(None);
    }
    MachineKey::load_from(operator_env.as_deref(), params.operator_key_file.as_deref())
        .map(Some)
        .map_err(|e| param_err("chain.operator_key_file", e))
}

/// Keeps the services, the status forwarder and the runtime alive.
pub struct ChainServices {
    _services: Vec<Box<dyn std::any::Any>>,
    _runtime: Arc<Runtime>,
    client: ChainClient,
    gas: Arc<GasView>,
    _bridge: Option<bridge_action::BridgeActionServer>,
}

impl ChainServices {
    /// The chain client, for subsystems that submit through it (the event rules).
    pub fn client(&self) -> &ChainClient {
        &self.client
    }
    /// The balance watch (`~/status`, `/diagnostics`).
    pub fn gas(&self) -> Arc<GasView> {
        Arc::clone(&self.gas)
    }
    /// The tokio runtime the client runs on.
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self._runtime.handle().clone()
    }
}

/// Remember the machine id a successful activation answered (`<data_dir>/machine_id`), so the
/// event rules can submit without `chain.machine_id`. Written atomically; failures are logged.
fn persist_machine_id(c: &ChainClient, machine_id: &str) {
    let path = peaqos_base::layout::machine_id_file(&c.config().data_dir);
    if let Err(e) = peaqos_base::fsio::write_atomic(&path, format!("{machine_id}\n").as_bytes()) {
        tracing::warn!("cannot persist the machine id: {e}");
    }
}

fn tx_status_msg(s: &TxStatus) -> TxStatusMsg {
    TxStatusMsg {
        intent_id: s.intent_id.clone(),
        kind: s.kind.clone(),
        state: format!("{:?}", s.state).to_ascii_lowercase(),
        signer: s.signer.to_checksum(None),
        nonce: s.nonce.map(|n| n as i64).unwrap_or(-1),
        tx_hash: s.tx_hash.map(hx).unwrap_or_default(),
        block_number: s.block_number.unwrap_or(0),
        gas_used: s.gas_used.unwrap_or(0),
        error_code: s.code.clone(),
        message: s.message.clone(),
    }
}

/// Start the chain client and create its services and the `~/tx_status` topic.
pub fn serve(
    node: &Node,
    params: ChainParams,
    machine_key: &MachineKey,
    services: &crate::access::Services,
) -> Result<Option<ChainServices>, StartError> {
    if !params.enabled {
        tracing::info!("chain client disabled (chain.enabled = false)");
        return Ok(None);
    }
    let mut signers = vec![signer_of(machine_key)?];
    if let Some(op) = operator_key(&params)? {
        tracing::info!("operator key {} loaded for legacy proxy flows", op.address());
        signers.push(signer_of(&op)?);
    }
    let operator = signers.get(1).map(|s| s.address());
    let resolved = params.config.resolve().map_err(|e| param_err(&format!("chain.{}", e.field()), e))?;
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("peaqos-chain")
            .enable_all()
            .build()
            .map_err(|e| param_err("chain", format!("cannot start the chain runtime: {e}")))?,
    );
    let client = {
        let _guard = runtime.enter();
        ChainClient::start(resolved, signers).map_err(|e| param_err("chain", e))?
    };
    tracing::info!("chain client: {:?}", client);

    // ~/tx_status: every intent state change, transient local so late joiners see the latest.
    let status_pub: Publisher<TxStatusMsg> =
        node.create_publisher("~/tx_status".reliable().transient_local().keep_last(100))?;
    let mut rx = client.subscribe_status();
    runtime.spawn(async move {
        loop {
            match rx.recv().await {
                Ok(s) => {
                    if let Err(e) = status_pub.publish(tx_status_msg(&s)) {
                        tracing::warn!("publishing ~/tx_status failed: {e}");
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("~/tx_status lagged: {n} state changes not published");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });

    let mut reg = Registrar {
        node,
        client: client.clone(),
        runtime: Arc::clone(&runtime),
        services: Vec::new(),
        enabled: services.clone(),
    };
    event_services::register(&mut reg)?;
    identity_services::register(&mut reg, operator)?;
    did_services::register(&mut reg, operator)?;
    query_services::register(&mut reg)?;
    account_services::register(&mut reg)?;
    let gas = gas_services::register(&mut reg, params.gas)?;
    let bridge = if services.enabled(bridge_action::ACTION_NAME) {
        Some(bridge_action::serve(node, Arc::clone(&runtime), client.clone(), params.bridge)?)
    } else {
        None
    };
    Ok(Some(ChainServices { _services: reg.services, _runtime: runtime, client, gas, _bridge: bridge }))
}
