//! The chain services: ROS requests → `peaqos_chain::ChainClient` calls → ROS responses.
//!
//! The chain client is async (tokio); the node's executor is not. Each service is an rclrs
//! async service whose future only awaits a task spawned on the node's tokio runtime, so a
//! slow chain never blocks subscriptions. Every response carries `success`, `error_code`,
//! `error_field` and `message`; error codes are the SDK's (`VALIDATION_ERROR`,
//! `FUTURE_TIMESTAMP`, `RATE_LIMITED`, ...). Keys never cross ROS: the machine key (and, for
//! legacy proxy flows, an operator key) are loaded from the environment or files.
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use peaqos_chain::bindings::{ServiceEndpoint, VerificationMethod};
use peaqos_chain::client::{ActivateParams, LegacyActivateParams};
use peaqos_chain::config::AddressOverrides;
use peaqos_chain::encoding::MachineDidAttributes;
use peaqos_chain::validation::{Currency, MachineIdInput, SubmitEventParams, ValueInput};
use peaqos_chain::{ChainClient, ChainConfig, ChainError, Generation, Network, OperationalLimits, TxStatus};
use peaqos_core::keys::MachineKey;
use rclrs::{IntoPrimitiveOptions, Node, Publisher, Service};
use ros_env::peaqos_node::msg::{Event, TxStatus as TxStatusMsg};
use ros_env::peaqos_node::srv::*;
use tokio::runtime::Runtime;

use crate::StartError;

/// Environment variable of the optional operator (proxy) key for legacy proxy flows.
pub const OPERATOR_KEY_ENV: &str = "PEAQOS_OPERATOR_PRIVATE_KEY";

/// Chain parameters, declared under `chain.`.
pub struct ChainParams {
    pub enabled: bool,
    pub config: ChainConfig,
    pub operator_key_file: Option<PathBuf>,
}

use crate::params::{param_err, ParamSet};

fn declare_str(node: &ParamSet, name: &str, default: &str, description: &str) -> Result<String, StartError> {
    node.read_only::<Arc<str>>(name, Arc::from(default), description).map(|v| v.to_string())
}

fn declare_int(node: &ParamSet, name: &str, default: i64, description: &str) -> Result<i64, StartError> {
    node.read_only::<i64>(name, default, description)
}

fn non_negative(name: &str, v: i64) -> Result<u64, StartError> {
    u64::try_from(v).map_err(|_| param_err(name, format!("must be >= 0, got {v}")))
}

const CONTRACT_PARAMS: &[&str] = &[
    "identity_registry",
    "identity_staking",
    "event_registry",
    "machine_nft",
    "did_registry",
    "batch_precompile",
    "machine_account_factory",
    "machine_nft_adapter",
    "info_desk",
    "machine_registry",
    "machine_state_and_sync",
    "machine_subscription",
    "cross_chain_mirror",
    "machine_bridge_adapter",
    "subscription_token_provision_pool",
    "peaq_token",
];

/// How to pass an address on the command line: ROS reads an unquoted `0x…` as a number.
const ADDRESS_QUOTING: &str = "quote it so ROS reads a string: -p 'chain.contracts.<name>:=\"0x…\"' (in a params file: '0x…')";

/// `chain.contracts.<name>`: an address override (`None` = preset or environment). Dynamic,
/// like `chain.machine_id`: ROS turns an unquoted `0x…` into an integer when it fits (a
/// precompile such as `0x…0803`, taken as is) and into a float when it does not (the address is
/// lost: refused, saying how to quote it).
fn declare_contract_address(node: &ParamSet, name: &str) -> Result<Option<Address>, StartError> {
    let full = format!("chain.contracts.{name}");
    let v = node.read_only_dynamic(
        &full,
        rclrs::ParameterValue::String(Arc::from("")),
        "Contract address override (a quoted \"0x…\" string); empty = preset or environment.",
    )?;
    let text = match v {
        rclrs::ParameterValue::String(s) => s.to_string(),
        rclrs::ParameterValue::Integer(i) if i > 0 => format!("{:#042x}", i),
        other => return Err(param_err(&full, format!("an address string, got {other:?}: {ADDRESS_QUOTING}"))),
    };
    if text.is_empty() {
        return Ok(None);
    }
    let a = peaqos_chain::validation::parse_address(&full, &text).map_err(|e| param_err(&full, e))?;
    tracing::info!("{full} = {a}");
    Ok(Some(a))
}

fn set_override(o: &mut AddressOverrides, name: &str, a: Address) {
    let slot = match name {
        "identity_registry" => &mut o.identity_registry,
        "identity_staking" => &mut o.identity_staking,
        "event_registry" => &mut o.event_registry,
        "machine_nft" => &mut o.machine_nft,
        "did_registry" => &mut o.did_registry,
        "batch_precompile" => &mut o.batch_precompile,
        "machine_account_factory" => &mut o.machine_account_factory,
        "machine_nft_adapter" => &mut o.machine_nft_adapter,
        "info_desk" => &mut o.info_desk,
        "machine_registry" => &mut o.machine_registry,
        "machine_state_and_sync" => &mut o.machine_state_and_sync,
        "machine_subscription" => &mut o.machine_subscription,
        "cross_chain_mirror" => &mut o.cross_chain_mirror,
        "machine_bridge_adapter" => &mut o.machine_bridge_adapter,
        "subscription_token_provision_pool" => &mut o.subscription_token_provision_pool,
        _ => &mut o.peaq_token,
    };
    *slot = Some(a);
}

impl ChainParams {
    pub fn declare(params: &crate::params::Params) -> Result<ChainParams, StartError> {
        let (node, data_dir) = (&params.declared, params.data_dir.as_path());
        let enabled = node.read_only::<bool>("chain.enabled", true, "Start the embedded chain client and its services.")?;
        let generation = declare_str(
            node,
            "chain.generation",
            "economics2",
            "peaqOS contract generation: economics2 (current mainnet) or legacy (IdentityRegistry).",
        )?;
        let network = declare_str(node, "chain.network", "peaq", "Network preset: peaq (3338) or agung (9990).")?;
        let chain_id = declare_int(node, "chain.chain_id", 0, "Chain id override for a dev chain; 0 = the preset's.")?;
        let rpc_urls: Vec<String> = node
            .read_only_strings(
                "chain.rpc_urls",
                &["http://127.0.0.1:8545"],
                "JSON-RPC URLs in fallback order. Default: a local chain. PEAQOS_RPC_URL overrides when this is empty.",
            )?
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        let mcr = declare_str(node, "chain.mcr_api_url", "", "MCR API base URL; empty = the preset's.")?;
        let max_value = declare_int(node, "chain.max_value_per_tx", 0, "Largest event value per transaction; 0 = no cap.")?;
        let rate_max =
            declare_int(node, "chain.rate_limit_max_events", 0, "Events allowed per window and machine; 0 = no limit.")?;
        let rate_window = declare_int(node, "chain.rate_limit_window_seconds", 0, "Rate limit window, seconds.")?;
        let receipt_timeout = node.read_only::<f64>(
            "chain.receipt_timeout",
            120.0,
            "Seconds a service call waits for inclusion before answering (the intent stays tracked).",
        )?;
        let poll_interval = node.read_only::<f64>(
            "chain.poll_interval",
            0.25,
            "Seconds between receipt polls of a broadcast transaction (lower it for a local chain).",
        )?;
        let merge_max = declare_int(
            node,
            "chain.merge_max_events",
            200,
            "Most events one transaction carries when queued ~/batch_submit_events calls are sent together (0 = never merge; at most 512).",
        )?;
        let operator_key_file = declare_str(
            node,
            "chain.operator_key_file",
            "",
            "Legacy proxy flows: the operator's key file (mode 0600); empty = PEAQOS_OPERATOR_PRIVATE_KEY if set.",
        )?;
        let mut addresses = AddressOverrides::default();
        for name in CONTRACT_PARAMS {
            if let Some(a) = declare_contract_address(node, name)? {
                set_override(&mut addresses, name, a);
            }
        }

        let generation = match generation.trim().to_ascii_lowercase().as_str() {
            "economics2" | "gen2" => Generation::Economics2,
            "legacy" | "gen1" => Generation::Legacy,
            other => return Err(param_err("chain.generation", format!("economics2 or legacy, got {other:?}"))),
        };
        let network: Network = network.parse().map_err(|e: ChainError| param_err("chain.network", e))?;
        let receipt_timeout =
            peaqos_core::duration::seconds(receipt_timeout, false).map_err(|e| param_err("chain.receipt_timeout", e))?;
        let mut config = ChainConfig::new(network, generation, data_dir.to_path_buf());
        config.chain_id = match non_negative("chain.chain_id", chain_id)? {
            0 => None,
            id => Some(id),
        };
        config.rpc_urls = rpc_urls;
        config.addresses = addresses;
        config.mcr_api_url = (!mcr.is_empty()).then_some(mcr);
        config.limits = OperationalLimits {
            max_value_per_tx: u128::from(non_negative("chain.max_value_per_tx", max_value)?),
            rate_limit_max_events: non_negative("chain.rate_limit_max_events", rate_max)?,
            rate_limit_window_seconds: non_negative("chain.rate_limit_window_seconds", rate_window)?,
        };
        config.receipt_timeout_ms = u64::try_from(receipt_timeout.as_millis()).unwrap_or(u64::MAX);
        let poll_interval =
            peaqos_core::duration::seconds(poll_interval, false).map_err(|e| param_err("chain.poll_interval", e))?;
        config.poll_interval_ms = u64::try_from(poll_interval.as_millis()).unwrap_or(u64::MAX).max(1);
        config.merge_max_events = match non_negative("chain.merge_max_events", merge_max)? {
            n @ 0..=512 => n as usize,
            n => return Err(param_err("chain.merge_max_events", format!("must be 0..512, got {n}"))),
        };
        Ok(ChainParams {
            enabled,
            config,
            operator_key_file: (!operator_key_file.is_empty()).then(|| PathBuf::from(operator_key_file)),
        })
    }
}

/// `chain.machine_id`: the machine events and dataset anchors are submitted for (decimal; empty =
/// the id `~/activate` answered, persisted in `<data_dir>/machine_id`). Declared once, here.
pub fn declare_machine_id(params: &crate::params::Params) -> Result<String, StartError> {
    // Dynamic: `-p chain.machine_id:=42` arrives as an integer, a uint256 beyond i64 as a string.
    let machine_id: String = match params.declared.read_only_dynamic(
        "chain.machine_id",
        rclrs::ParameterValue::String(Arc::from("")),
        "Machine id (decimal, integer or string) events are submitted for; empty = the id ~/activate answered.",
    )? {
        rclrs::ParameterValue::String(s) => s.trim().to_string(),
        rclrs::ParameterValue::Integer(i) if i > 0 => i.to_string(),
        other => return Err(param_err("chain.machine_id", format!("a positive decimal machine id, got {other:?}"))),
    };
    if !machine_id.is_empty() {
        peaqos_chain::validation::MachineIdInput::from_decimal("chain.machine_id", &machine_id)
            .map_err(|e| param_err("chain.machine_id", e))?;
    }
    Ok(machine_id)
}

/// Requests a chain service holds before the executor takes them: the ROS default of 10 loses
/// requests when callers burst (twenty concurrent `~/batch_submit_events` calls lost one).
pub const SERVICE_QUEUE_DEPTH: u32 = 1000;

fn signer_of(key: &MachineKey) -> Result<PrivateKeySigner, StartError> {
    let secret = key.secret_bytes();
    PrivateKeySigner::from_slice(&secret[..])
        .map_err(|_| param_err("key_file", "the machine key is not a valid secp256k1 key"))
}

/// Keeps the services, the status forwarder and the runtime alive.
pub struct ChainServices {
    _services: Vec<Box<dyn std::any::Any>>,
    _runtime: Arc<Runtime>,
    client: ChainClient,
}

impl ChainServices {
    /// The chain client, for subsystems that submit through it (the event rules).
    pub fn client(&self) -> &ChainClient {
        &self.client
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

/// What each response type needs to report a failure; `field` is the request field concerned
/// ([`request_field`]).
trait Fail: Default {
    fn fail(e: &ChainError, field: String) -> Self;
}

/// How one service's request spells the fields the chain client names: `(from, to)`, where
/// `from` is the client's field name (the SDK's) or `code:<CODE>` for an error that carries no
/// field (a revert about the machine the request names).
type Renames = &'static [(&'static str, &'static str)];

/// Reverts about the machine or the event a request names (reverts carry no field).
const MACHINE_REVERTS: Renames = &[
    ("code:MACHINE_NOT_FOUND", "machine_id"),
    ("code:NOT_OWNER_OR_CONTROLLER", "machine_id"),
    ("code:SUBSCRIPTION_NOT_ELIGIBLE", "machine_id"),
    ("code:METADATA_TOO_LARGE", "metadata"),
    ("code:INVALID_CURRENCY_SHAPE", "currency"),
    ("code:FUTURE_TIMESTAMP", "timestamp"),
];

/// The request field an error is about, spelled as in the service's `.srv` (issue 14 #4).
fn request_field(e: &ChainError, renames: Renames) -> String {
    let field = e.field();
    let code_key = format!("code:{}", e.code());
    let key = if field.is_empty() { code_key.as_str() } else { field };
    renames.iter().find(|(from, _)| *from == key).map_or(field, |(_, to)| *to).to_owned()
}

macro_rules! impl_fail {
    ($($t:ty),* $(,)?) => {$(
        impl Fail for $t {
            fn fail(e: &ChainError, field: String) -> Self {
                Self {
                    success: false,
                    error_code: e.code().to_owned(),
                    error_field: field,
                    message: e.to_string(),
                    ..Default::default()
                }
            }
        }
    )*};
}

/// Responses that also report the intent and transaction a failure is about (a receipt wait
/// that timed out leaves the intent queued and tracked).
macro_rules! impl_fail_with_intent {
    ($($t:ty),* $(,)?) => {$(
        impl Fail for $t {
            fn fail(e: &ChainError, field: String) -> Self {
                let (intent_id, tx_hash) = match e {
                    ChainError::Tx { intent_id, tx_hash, .. } => (intent_id.clone(), tx_hash.clone()),
                    _ => (String::new(), String::new()),
                };
                Self {
                    success: false,
                    error_code: e.code().to_owned(),
                    error_field: field,
                    message: e.to_string(),
                    intent_id,
                    tx_hash,
                    ..Default::default()
                }
            }
        }
    )*};
}

impl_fail_with_intent!(SubmitEvent_Response, BatchSubmitEvents_Response);

impl_fail!(
    ValidateEvent_Response,
    Activate_Response,
    Register_Response,
    RegisterFor_Response,
    MintNft_Response,
    TokenIdOf_Response,
    WriteMachineDidAttributes_Response,
    WriteProxyDidAttributes_Response,
    ReadDidAttribute_Response,
    QueryMcr_Response,
    QueryMachine_Response,
    QueryOperatorMachines_Response,
);

/// Run `f` on the tokio runtime; the returned future can be awaited by rclrs's executor.
fn on_runtime<R, F>(rt: &Arc<Runtime>, renames: Renames, f: F) -> impl Future<Output = R> + Send + 'static
where
    R: Fail + Send + 'static,
    F: Future<Output = Result<R, ChainError>> + Send + 'static,
{
    let handle = rt.spawn(f);
    async move {
        match handle.await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => R::fail(&e, request_field(&e, renames)),
            Err(e) => R::fail(&ChainError::validation("", "internal", format!("the request task failed: {e}")), String::new()),
        }
    }
}

/// A uint256 request field: a canonical decimal, exactly as the SDK's `parse_machine_id`.
fn u256(field: &str, s: &str) -> Result<U256, ChainError> {
    MachineIdInput::from_decimal(field, s).map(|m| m.0)
}

/// An address request field: `0x` + 40 hex digits, as the SDK (no trimming, no `0X`).
fn address(field: &str, s: &str) -> Result<Address, ChainError> {
    peaqos_chain::validation::parse_address(field, s)
}

/// Empty = not given; anything else must be an address.
fn opt_address(field: &str, s: &str) -> Result<Option<Address>, ChainError> {
    if s.is_empty() {
        Ok(None)
    } else {
        address(field, s).map(Some)
    }
}

/// A bytes request field: `0x` + an even number of hex digits, nothing around them.
fn hex_bytes(field: &str, s: &str) -> Result<Vec<u8>, ChainError> {
    let bad = || ChainError::validation(field, "hex", format!("{field} must be 0x-prefixed hex"));
    hex::decode(s.strip_prefix("0x").ok_or_else(bad)?).map_err(|_| bad())
}

fn hx<T: std::fmt::LowerHex>(v: T) -> String {
    format!("{v:#x}")
}

fn event_params(e: &Event, currency: Currency) -> Result<SubmitEventParams, ChainError> {
    Ok(SubmitEventParams {
        machine_id: MachineIdInput::from_decimal("machine_id", &e.machine_id)?,
        event_type: i64::from(e.event_type),
        value: ValueInput::parse(&e.value),
        timestamp: i64::try_from(e.timestamp).unwrap_or(i64::MAX),
        raw_data: (!e.raw_data.is_empty()).then(|| e.raw_data.clone()),
        trust_level: i64::from(e.trust_level),
        source_chain_id: i128::from(e.source_chain_id),
        source_tx_hash: (!e.source_tx_hash.is_empty()).then(|| e.source_tx_hash.clone()),
        metadata: e.metadata.clone(),
        currency,
    })
}

fn single_currency(c: &str) -> Currency {
    if c.is_empty() {
        Currency::Omitted
    } else {
        Currency::Code(c.to_owned())
    }
}

/// Parse the `did_document_json` of Activate: `{verificationMethods, authentication,
/// serviceEndpoints}` exactly (the CLI's `--did-document` rules: `id`/`controller` forbidden).
fn did_document(json: &str, controller: Address) -> Result<(Vec<VerificationMethod>, Vec<U256>, Vec<ServiceEndpoint>), ChainError> {
    const F: &str = "did_document_json";
    if json.trim().is_empty() {
        return Ok((Vec::new(), Vec::new(), Vec::new()));
    }
    let bad = |m: String| ChainError::validation(F, "did document", m);
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(format!("{F}: not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| bad(format!("{F}: must be a JSON object")))?;
    for k in obj.keys() {
        if !["verificationMethods", "authentication", "serviceEndpoints"].contains(&k.as_str()) {
            return Err(bad(format!("{F}: unknown key {k:?} (allowed: verificationMethods, authentication, serviceEndpoints)")));
        }
    }
    let s = |o: &serde_json::Value, k: &str, at: &str| -> Result<String, ChainError> {
        o.get(k).and_then(|x| x.as_str()).map(str::to_owned).ok_or_else(|| bad(format!("{F}: {at}.{k} must be a string")))
    };
    let mut vms = Vec::new();
    for (i, vm) in obj.get("verificationMethods").and_then(|x| x.as_array()).into_iter().flatten().enumerate() {
        let at = format!("verificationMethods[{i}]");
        let c = match vm.get("controller").and_then(|x| x.as_str()) {
            Some(c) => address(&format!("{F}.{at}.controller"), c)?,
            None => controller,
        };
        vms.push(VerificationMethod {
            id: s(vm, "id", &at)?,
            methodType: s(vm, "methodType", &at)?,
            controller: c,
            publicKeyMultibase: s(vm, "publicKeyMultibase", &at)?,
        });
    }
    let mut auth = Vec::new();
    for (i, a) in obj.get("authentication").and_then(|x| x.as_array()).into_iter().flatten().enumerate() {
        let n = a.as_u64().ok_or_else(|| bad(format!("{F}: authentication[{i}] must be a non-negative integer")))?;
        auth.push(U256::from(n));
    }
    let mut ses = Vec::new();
    for (i, se) in obj.get("serviceEndpoints").and_then(|x| x.as_array()).into_iter().flatten().enumerate() {
        let at = format!("serviceEndpoints[{i}]");
        ses.push(ServiceEndpoint {
            id: s(se, "id", &at)?,
            serviceType: s(se, "serviceType", &at)?,
            serviceEndpoint: s(se, "serviceEndpoint", &at)?,
        });
    }
    Ok((vms, auth, ses))
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
pub fn serve(node: &Node, params: ChainParams, machine_key: &MachineKey) -> Result<Option<ChainServices>, StartError> {
    if !params.enabled {
        tracing::info!("chain client disabled (chain.enabled = false)");
        return Ok(None);
    }
    let mut signers = vec![signer_of(machine_key)?];
    let operator_env = std::env::var(OPERATOR_KEY_ENV).ok().filter(|v| !v.trim().is_empty());
    if operator_env.is_some() || params.operator_key_file.is_some() {
        let op = MachineKey::load_from(operator_env.as_deref(), params.operator_key_file.as_deref())
            .map_err(|e| param_err("chain.operator_key_file", e))?;
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

    let mut services: Vec<Box<dyn std::any::Any>> = Vec::new();

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

    macro_rules! service {
        ($name:literal, $srv:ty, |$c:ident, $req:ident| $body:expr) => {
            service!($name, $srv, renames: &[], |$c, $req| $body)
        };
        ($name:literal, $srv:ty, renames: $renames:expr, |$c:ident, $req:ident| $body:expr) => {{
            let (client, rt) = (client.clone(), Arc::clone(&runtime));
            let s: Service<$srv> = node.create_async_service::<$srv, _>($name.reliable().keep_last(SERVICE_QUEUE_DEPTH), move |$req: <$srv as rosidl_runtime_rs::Service>::Request| {
                crate::ros_log::request($name);
                let $c = client.clone();
                on_runtime(&rt, $renames, async move { $body })
            })?;
            services.push(Box::new(s));
        }};
    }

    service!("~/submit_event", SubmitEvent, renames: MACHINE_REVERTS, |c, req| {
        let e = Event {
            machine_id: req.machine_id,
            event_type: req.event_type,
            value: req.value,
            currency: req.currency.clone(),
            timestamp: req.timestamp,
            raw_data: req.raw_data,
            trust_level: req.trust_level,
            source_chain_id: req.source_chain_id,
            source_tx_hash: req.source_tx_hash,
            metadata: req.metadata,
        };
        let p = event_params(&e, single_currency(&req.currency))?;
        if req.no_wait {
            let (intent_id, data_hash) = c.enqueue_event(&p)?;
            return Ok(SubmitEvent_Response {
                success: true,
                message: "queued".into(),
                intent_id,
                data_hash: hx(data_hash),
                ..Default::default()
            });
        }
        let r = c.submit_event(&p).await?;
        Ok(SubmitEvent_Response {
            success: true,
            message: "included".into(),
            intent_id: r.intent_id,
            tx_hash: hx(r.tx_hash),
            data_hash: hx(r.data_hash),
            block_number: r.block_number,
            ..Default::default()
        })
    });

    service!("~/batch_submit_events", BatchSubmitEvents, renames: MACHINE_REVERTS, |c, req| {
        let mut items = Vec::with_capacity(req.events.len());
        for (i, e) in req.events.iter().enumerate() {
            // Validate each event on its own first so the answer says which one failed.
            let p = event_params(e, Currency::Code(e.currency.clone())).map_err(|err| name_event(err, i))?;
            c.validate_event(&p).map_err(|err| name_event(err, i))?;
            items.push(p);
        }
        if req.no_wait {
            let (intent_id, hashes) = c.enqueue_batch(&items)?;
            return Ok(BatchSubmitEvents_Response {
                success: true,
                message: "queued".into(),
                intent_id,
                data_hashes: hashes.into_iter().map(hx).collect(),
                ..Default::default()
            });
        }
        let r = c.batch_submit_events(&items).await?;
        Ok(BatchSubmitEvents_Response {
            success: true,
            message: "included".into(),
            intent_id: r.intent_id,
            tx_hash: hx(r.tx_hash),
            data_hashes: r.data_hashes.into_iter().map(hx).collect(),
            block_number: r.block_number,
            ..Default::default()
        })
    });

    service!("~/validate_event", ValidateEvent, |c, req| {
        let currency =
            if req.currency_omitted { Currency::Omitted } else { Currency::Code(req.event.currency.clone()) };
        let h = c.validate_event(&event_params(&req.event, currency)?)?;
        Ok(ValidateEvent_Response { success: true, message: "valid".into(), data_hash: hx(h), ..Default::default() })
    });

    const ACTIVATE: Renames = &[
        ("credential_subject", "credential_subject_hex"),
        ("operator", "operator_address"),
        ("machine_id", "expected_machine_id"),
        ("authentication", "did_document_json"),
    ];
    service!("~/activate", Activate, renames: ACTIVATE, |c, req| {
        let signer = c.signer_address();
        if c.config().generation == Generation::Legacy {
            let r = c
                .activate_legacy(&LegacyActivateParams {
                    machine: signer,
                    operator: opt_address("operator_address", &req.operator_address)?,
                    documentation_url: req.documentation_url,
                    data_api: req.data_api,
                    data_visibility: if req.data_visibility.is_empty() { "public".into() } else { req.data_visibility },
                })
                .await?;
            persist_machine_id(&c, &r.machine_id.to_string());
            let last = [Some(&r.machine_did_step), Some(&r.mint), Some(&r.register)]
                .into_iter()
                .flatten()
                .find_map(|s| s.tx_hash)
                .map(hx)
                .unwrap_or_default();
            return Ok(Activate_Response {
                success: true,
                message: "activated (legacy)".into(),
                machine_id: r.machine_id.to_string(),
                did: r.machine_did.clone(),
                token_id: r.token_id.to_string(),
                tx_hash: last,
                result_json: format!("{r:?}"),
                ..Default::default()
            });
        }
        // Proxy activation is a legacy flow: an operator given here must not be ignored.
        if opt_address("operator_address", &req.operator_address)?.is_some() {
            return Err(ChainError::validation(
                "operator_address",
                "empty",
                "operator_address (proxy activation) is only available for generation legacy",
            ));
        }
        let controller = opt_address("controller", &req.controller)?.unwrap_or(signer);
        let (verification_methods, authentication, service_endpoints) =
            did_document(&req.did_document_json, controller)?;
        let p = ActivateParams {
            controller,
            verification_methods,
            authentication,
            service_endpoints,
            machine_type: req.machine_type,
            credential_subject: hex_bytes("credential_subject_hex", &req.credential_subject_hex)?,
            manufacturer: address("manufacturer", &req.manufacturer)?,
            tier: req.tier,
            expected_machine_id: if req.expected_machine_id.is_empty() {
                None
            } else {
                Some(u256("expected_machine_id", &req.expected_machine_id)?)
            },
            max_net_peaq_amount: if req.max_net_peaq_amount.is_empty() {
                None
            } else {
                Some(u256("max_net_peaq_amount", &req.max_net_peaq_amount)?)
            },
        };
        let r = c.activate(&p).await?;
        persist_machine_id(&c, &r.machine_id.to_string());
        Ok(Activate_Response {
            success: true,
            message: "activated".into(),
            machine_id: r.machine_id.to_string(),
            did: format!("did:peaq:{}", r.machine_id),
            tx_hash: hx(r.transaction_hash),
            result_json: serde_json::json!({
                "machine_id": r.machine_id.to_string(),
                "owner": r.owner.to_checksum(None),
                "controller": r.controller.to_checksum(None),
                "tier": r.tier,
                "bond_amount": r.bond_amount.to_string(),
                "voucher_credit_applied": r.voucher_credit_applied.to_string(),
                "net_peaq_amount": r.net_peaq_amount.to_string(),
                "approval_tx_hash": r.approval_tx_hash.map(hx),
                "transaction_hash": hx(r.transaction_hash),
                "intent_id": r.intent_id,
                "chain_id": r.chain_id,
                "subscription_status": r.subscription_status,
            })
            .to_string(),
            ..Default::default()
        })
    });

    /// The answer of both registration services.
    macro_rules! registered {
        ($resp:ident, $r:expr) => {{
            let r = $r;
            Ok($resp {
                success: true,
                message: if r.step.skipped { "already registered".into() } else { "registered".into() },
                machine_id: r.machine_id.to_string(),
                tx_hash: r.step.tx_hash.map(hx).unwrap_or_default(),
                skipped: r.step.skipped,
                ..Default::default()
            })
        }};
    }

    service!("~/register", Register, |c, _req| registered!(Register_Response, c.register().await?));

    service!("~/register_for", RegisterFor, |c, req| {
        let proxy = match opt_address("proxy_address", &req.proxy_address)? {
            Some(p) => p,
            None => operator.ok_or_else(|| {
                ChainError::validation(
                    "proxy_address",
                    "operator key",
                    format!("no operator key is configured: set {OPERATOR_KEY_ENV} or chain.operator_key_file"),
                )
            })?,
        };
        registered!(RegisterFor_Response, c.register_for(proxy, address("machine_address", &req.machine_address)?).await?)
    });

    service!("~/mint_nft", MintNft, renames: MACHINE_REVERTS, |c, req| {
        let signer = opt_address("signer_address", &req.signer_address)?;
        let recipient = opt_address("recipient", &req.recipient)?.unwrap_or(signer.unwrap_or(c.signer_address()));
        let r = c.mint_nft(signer, u256("machine_id", &req.machine_id)?, recipient).await?;
        Ok(MintNft_Response {
            success: true,
            message: if r.step.skipped { "already minted".into() } else { "minted".into() },
            token_id: r.token_id.to_string(),
            tx_hash: r.step.tx_hash.map(hx).unwrap_or_default(),
            skipped: r.step.skipped,
            ..Default::default()
        })
    });

    service!("~/token_id_of", TokenIdOf, renames: MACHINE_REVERTS, |c, req| {
        let t = c.token_id_of(u256("machine_id", &req.machine_id)?).await?;
        Ok(TokenIdOf_Response { success: true, token_id: t.to_string(), ..Default::default() })
    });

    service!("~/write_machine_did_attributes", WriteMachineDidAttributes, renames: &[("operator", "operator_did")], |c, req| {
        let operator = match req.operator_did.as_str() {
            "" => None,
            did => Some(address("operator_did", did.strip_prefix("did:peaq:").unwrap_or(did))?),
        };
        let attrs = MachineDidAttributes {
            machine_id: u256("machine_id", &req.machine_id)?,
            nft_token_id: u256("nft_token_id", &req.nft_token_id)?,
            operator,
            documentation_url: req.documentation_url,
            data_api: req.data_api,
            data_visibility: req.data_visibility,
        };
        let r = c.write_machine_did_attributes(None, &attrs).await?;
        Ok(WriteMachineDidAttributes_Response {
            success: true,
            message: if r.skipped { "already on chain".into() } else { "written".into() },
            tx_hash: r.tx_hash.map(hx).unwrap_or_default(),
            skipped: r.skipped,
            ..Default::default()
        })
    });

    service!("~/write_proxy_did_attributes", WriteProxyDidAttributes, |c, req| {
        let signer = match opt_address("signer_address", &req.signer_address)? {
            Some(s) => Some(s),
            None => operator,
        };
        let mut ids = Vec::with_capacity(req.machine_ids.len());
        for (i, m) in req.machine_ids.iter().enumerate() {
            ids.push(u256(&format!("machine_ids[{i}]"), m)?);
        }
        let r = c.write_proxy_did_attributes(signer, u256("proxy_machine_id", &req.proxy_machine_id)?, &ids).await?;
        Ok(WriteProxyDidAttributes_Response {
            success: true,
            message: if r.skipped { "already on chain".into() } else { "written".into() },
            tx_hash: r.tx_hash.map(hx).unwrap_or_default(),
            skipped: r.skipped,
            ..Default::default()
        })
    });

    service!("~/read_did_attribute", ReadDidAttribute, |c, req| {
        let did = req.did_address.as_str();
        let account = address("did_address", did.strip_prefix("did:peaq:").unwrap_or(did))?;
        let v = c.read_did_attribute(account, &req.name).await?;
        Ok(ReadDidAttribute_Response {
            success: true,
            found: v.is_some(),
            value: v.unwrap_or_default(),
            message: "read".into(),
            ..Default::default()
        })
    });

    service!("~/query_mcr", QueryMcr, |c, req| {
        let v = c.mcr()?.query_mcr(&req.did).await?;
        Ok(QueryMcr_Response { success: true, result_json: v.to_string(), ..Default::default() })
    });
    service!("~/query_machine", QueryMachine, |c, req| {
        let v = c.mcr()?.query_machine(&req.did).await?;
        Ok(QueryMachine_Response { success: true, result_json: v.to_string(), ..Default::default() })
    });
    service!("~/query_operator_machines", QueryOperatorMachines, |c, req| {
        let v = c.mcr()?.query_operator_machines(&req.did).await?;
        Ok(QueryOperatorMachines_Response { success: true, result_json: v.to_string(), ..Default::default() })
    });

    Ok(Some(ChainServices { _services: services, _runtime: runtime, client }))
}

/// Say which event of a batch an error is about. `error_field` stays the SDK's field name
/// (`currency`); the message starts with `events[2]: `.
fn name_event(e: ChainError, index: usize) -> ChainError {
    match e {
        ChainError::Validation { field, constraint, message } => {
            ChainError::Validation { field, constraint, message: format!("events[{index}]: {message}") }
        }
        ChainError::Type { field, message } => ChainError::Type { field, message: format!("events[{index}]: {message}") },
        other => other,
    }
}
