//! The `chain.*` parameters: generation, network, RPC URLs, limits, timing, contract address
//! overrides and the machine id.
use std::path::PathBuf;
use std::sync::Arc;

use alloy::primitives::Address;
use peaqos_chain::config::AddressOverrides;
use peaqos_chain::{ChainConfig, ChainError, Generation, Network, OperationalLimits};

use crate::params::{param_err, ParamSet};
use crate::StartError;

/// Chain parameters, declared under `chain.`.
pub struct ChainParams {
    pub enabled: bool,
    pub config: ChainConfig,
    pub operator_key_file: Option<PathBuf>,
    /// The operator key as a V3 keystore (wins over the two plaintext sources).
    pub operator_keystore_file: Option<PathBuf>,
    pub operator_keystore_passphrase_file: Option<PathBuf>,
    /// `gas.*` (the low-balance watch) and `gas_station.*` (`~/fund_from_gas_station`).
    pub gas: super::GasParams,
    /// `bridge.*` (`~/bridge_nft`'s destination chain).
    pub bridge: super::BridgeParamsSet,
}

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
const ADDRESS_QUOTING: &str =
    "quote it so ROS reads a string: -p 'chain.contracts.<name>:=\"0x…\"' (in a params file: '0x…')";

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

/// The operator key's sources for legacy proxy flows (each `None` when empty): the plaintext key
/// file, the keystore, the keystore's passphrase file.
fn operator_key_params(node: &ParamSet) -> Result<[Option<PathBuf>; 3], StartError> {
    let path = |s: String| (!s.is_empty()).then(|| PathBuf::from(s));
    Ok([
        path(declare_str(
            node,
            "chain.operator_key_file",
            "",
            "Legacy proxy flows: the operator's key file (mode 0600); empty = PEAQOS_OPERATOR_PRIVATE_KEY if set.",
        )?),
        path(declare_str(
            node,
            "chain.operator_keystore_file",
            "",
            "Legacy proxy flows: the operator's key as a V3 keystore (wins over chain.operator_key_file).",
        )?),
        path(declare_str(
            node,
            "chain.operator_keystore_passphrase_file",
            "",
            "The operator keystore's passphrase file (mode 0600); empty = PEAQOS_KEYSTORE_PASSWORD.",
        )?),
    ])
}

impl ChainParams {
    pub fn declare(params: &crate::params::Params) -> Result<ChainParams, StartError> {
        let (node, data_dir) = (&params.declared, params.data_dir.as_path());
        let enabled =
            node.read_only::<bool>("chain.enabled", true, "Start the embedded chain client and its services.")?;
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
        let max_value =
            declare_int(node, "chain.max_value_per_tx", 0, "Largest event value per transaction; 0 = no cap.")?;
        let rate_max = declare_int(
            node,
            "chain.rate_limit_max_events",
            0,
            "Events allowed per window and machine; 0 = no limit.",
        )?;
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
        let [operator_key_file, operator_keystore_file, operator_keystore_passphrase_file] = operator_key_params(node)?;
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
        let receipt_timeout = peaqos_core::duration::seconds(receipt_timeout, false)
            .map_err(|e| param_err("chain.receipt_timeout", e))?;
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
        let gas = super::GasParams::declare(node)?;
        let bridge = super::BridgeParamsSet::declare(node)?;
        Ok(ChainParams {
            enabled,
            config,
            operator_key_file,
            operator_keystore_file,
            operator_keystore_passphrase_file,
            gas,
            bridge,
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
