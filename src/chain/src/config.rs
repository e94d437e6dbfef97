//! Chain configuration: generation, network presets, overrides, limits.
//!
//! Resolution order for every value (later wins): built-in network preset (SPEC §1.3 gen-1
//! `peaqos.json`, §1.4 gen-2 deployment records) → environment variables (the SDK/CLI names of
//! §1.3, plus `*_ADDRESS` names for the gen-2 contracts, which SDK 0.12.1 never reads from the
//! environment) → explicit [`ChainConfig`] values. `PEAQOS_RPC_URL` may hold several URLs separated
//! by commas; they are tried in order.
//!
//! Gen-2 on agung has no EventRegistry record: [`ResolvedConfig::event_registry`] then fails with
//! `DEPLOYMENT_UNAVAILABLE` (as SDK 0.12.1 `client.event_registry`) unless an override supplies one.

use std::path::PathBuf;
use std::str::FromStr;

use alloy::primitives::{address, Address};
use serde::{Deserialize, Serialize};

use crate::error::{ChainError, ErrorCode, Result};

/// peaqOS contract generation (SPEC §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Generation {
    /// "Economics 2.0" / "Tokenomics 2.0" (SDK 0.12.1).
    #[default]
    #[serde(alias = "gen2", alias = "economics_2")]
    Economics2,
    /// IdentityRegistry model (SDK ≤ 0.11.2, CLI 0.0.5).
    #[serde(alias = "gen1", alias = "tokenomics1")]
    Legacy,
}

/// Network preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    #[default]
    #[serde(alias = "mainnet")]
    Peaq,
    #[serde(alias = "testnet")]
    Agung,
}

impl Network {
    pub fn chain_id(self) -> u64 {
        match self {
            Network::Peaq => 3338,
            Network::Agung => 9990,
        }
    }
    /// Name used in journals (`chain_id` of the CLI fund step, SDK deployment ids).
    pub fn name(self) -> &'static str {
        match self {
            Network::Peaq => "peaq",
            Network::Agung => "agung",
        }
    }
    /// SDK 0.12.1 deployment id.
    pub fn deployment_id(self) -> &'static str {
        match self {
            Network::Peaq => "peaq-mainnet",
            Network::Agung => "agung-2026-08-28",
        }
    }
    fn default_rpc_urls(self) -> Vec<String> {
        match self {
            Network::Peaq => vec![
                "https://quicknode1.peaq.xyz".into(),
                "https://quicknode2.peaq.xyz".into(),
                "https://quicknode3.peaq.xyz".into(),
                "https://peaq.api.onfinality.io/public".into(),
                "https://peaq-rpc.publicnode.com".into(),
            ],
            Network::Agung => vec!["https://peaq-agung.api.onfinality.io/public".into()],
        }
    }
    fn default_mcr(self) -> Option<String> {
        match self {
            Network::Peaq => Some("https://mcr.peaq.xyz".into()),
            Network::Agung => None,
        }
    }
}

impl FromStr for Network {
    type Err = ChainError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "peaq" | "mainnet" => Ok(Network::Peaq),
            "agung" | "testnet" => Ok(Network::Agung),
            other => Err(ChainError::config(
                ErrorCode::DeploymentUnknown,
                "network",
                format!("unknown network {other:?} (expected peaq|mainnet|agung|testnet)"),
            )),
        }
    }
}

pub const DID_PRECOMPILE: Address = address!("0000000000000000000000000000000000000800");
pub const BATCH_PRECOMPILE: Address = address!("0000000000000000000000000000000000000805");
pub const PEAQ_TOKEN_PRECOMPILE: Address = address!("0000000000000000000000000000000000000809");

/// Gen-1 addresses (SPEC §1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gen1Addresses {
    pub identity_registry: Address,
    pub identity_staking: Address,
    pub event_registry: Address,
    pub machine_nft: Address,
    pub did: Address,
    pub batch: Address,
    pub machine_account_factory: Option<Address>,
    pub machine_nft_adapter: Option<Address>,
}

/// Gen-2 addresses (SPEC §1.4 deployment records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gen2Addresses {
    pub info_desk: Address,
    pub machine_registry: Address,
    pub machine_state_and_sync: Address,
    pub machine_subscription: Address,
    pub cross_chain_mirror: Address,
    pub machine_bridge_adapter: Address,
    pub subscription_token_provision_pool: Address,
    pub event_registry: Option<Address>,
    pub peaq_token: Address,
    pub batch: Address,
}

fn gen1_preset(n: Network) -> Gen1Addresses {
    match n {
        Network::Peaq => Gen1Addresses {
            identity_registry: address!("b53Af985765031936311273599389b5B68aC9956"),
            identity_staking: address!("11c05A650704136786253e8685f56879A202b1C7"),
            event_registry: address!("43c6AF2E14dc1327dc3cc6c7117D1CD72fffEcbA"),
            machine_nft: address!("2943F80e9DdB11B9Dd275499C661Df78F5F691F9"),
            did: DID_PRECOMPILE,
            batch: BATCH_PRECOMPILE,
            machine_account_factory: Some(address!("4A808d5A90A2c91739E92C70aF19924e0B3D527f")),
            machine_nft_adapter: Some(address!("9AD5408702EC204441A88589B99ADfC2514AFAE6")),
        },
        Network::Agung => Gen1Addresses {
            identity_registry: address!("9E9463a65c7B74623b3b6Cdc39F71be7274e5971"),
            identity_staking: address!("55f336714aDb0749DbFE33b057a1702405564E3d"),
            event_registry: address!("2DAD8905380993940e340C5cE6d313d5c2780040"),
            machine_nft: address!("B41C2A4f1c19b6B06beaAce0F5CD8439e77C4b1c"),
            did: DID_PRECOMPILE,
            batch: BATCH_PRECOMPILE,
            machine_account_factory: Some(address!("65a4DfEB799dFf8CF15f13816d648a7805d6b1F9")),
            machine_nft_adapter: None,
        },
    }
}

fn gen2_preset(n: Network) -> Gen2Addresses {
    match n {
        Network::Peaq => Gen2Addresses {
            info_desk: address!("6C7426ada37212D94477Ac4CFcA43A38177D6A82"),
            machine_registry: address!("64b93Cc29b251fAFa83BD110cDB1C24207f85536"),
            machine_state_and_sync: address!("cD1917FB2a56459AcA34FDD118e08776dE0890f2"),
            machine_subscription: address!("9e37AD189c334C92e6B8a812Ca4c02f35Ac43895"),
            cross_chain_mirror: address!("71DCB313977d6884212395505f081a2991Bfe8E5"),
            machine_bridge_adapter: address!("791087c35484b567c53f392a624d2e4BaDcC53DF"),
            subscription_token_provision_pool: address!("7088Cf400081428a41a4287B75AC633071c0e92A"),
            event_registry: Some(address!("A1e7F1d7B24dAb55Dc92491e6d9B89F6E925Ad1e")),
            peaq_token: PEAQ_TOKEN_PRECOMPILE,
            batch: BATCH_PRECOMPILE,
        },
        Network::Agung => Gen2Addresses {
            info_desk: address!("72b66AF120c55371cA6e5Ce38D4e10dF1bA30Bb1"),
            machine_registry: address!("538da35489B1F0035799a8351E67835ae4ABb377"),
            machine_state_and_sync: address!("A7D33726232aae30622643a18047f0Ca3e159da9"),
            machine_subscription: address!("aDCc5dD8CD57E3198B881c3388F25D2fD69B5aDc"),
            cross_chain_mirror: address!("d5F8d5944c5d488B1cD698D642FC8156a8CD0c0c"),
            machine_bridge_adapter: address!("0406e7bE522AEa626aee54f6258D415215e59F76"),
            subscription_token_provision_pool: address!("8A3692Ad0AcF79BB89413514Af9957d95032e19B"),
            event_registry: None,
            peaq_token: PEAQ_TOKEN_PRECOMPILE,
            batch: BATCH_PRECOMPILE,
        },
    }
}

/// Explicit address overrides (all optional). Keys are the SDK role names in snake_case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressOverrides {
    pub identity_registry: Option<Address>,
    pub identity_staking: Option<Address>,
    /// Applies to the EventRegistry of the selected generation.
    pub event_registry: Option<Address>,
    pub machine_nft: Option<Address>,
    pub did_registry: Option<Address>,
    pub batch_precompile: Option<Address>,
    pub machine_account_factory: Option<Address>,
    pub machine_nft_adapter: Option<Address>,
    pub info_desk: Option<Address>,
    pub machine_registry: Option<Address>,
    pub machine_state_and_sync: Option<Address>,
    pub machine_subscription: Option<Address>,
    pub cross_chain_mirror: Option<Address>,
    pub machine_bridge_adapter: Option<Address>,
    pub subscription_token_provision_pool: Option<Address>,
    pub peaq_token: Option<Address>,
}

/// Environment variable for each override (gen-1 names are the SDK 0.11.2 / CLI names).
pub const ADDRESS_ENV_VARS: &[(&str, &str)] = &[
    ("identity_registry", "IDENTITY_REGISTRY_ADDRESS"),
    ("identity_staking", "IDENTITY_STAKING_ADDRESS"),
    ("event_registry", "EVENT_REGISTRY_ADDRESS"),
    ("machine_nft", "MACHINE_NFT_ADDRESS"),
    ("did_registry", "DID_REGISTRY_ADDRESS"),
    ("batch_precompile", "BATCH_PRECOMPILE_ADDRESS"),
    ("machine_account_factory", "MACHINE_ACCOUNT_FACTORY_ADDRESS"),
    ("machine_nft_adapter", "MACHINE_NFT_ADAPTER_ADDRESS"),
    ("info_desk", "INFO_DESK_ADDRESS"),
    ("machine_registry", "MACHINE_REGISTRY_ADDRESS"),
    ("machine_state_and_sync", "MACHINE_STATE_AND_SYNC_ADDRESS"),
    ("machine_subscription", "MACHINE_SUBSCRIPTION_ADDRESS"),
    ("cross_chain_mirror", "CROSS_CHAIN_MIRROR_ADDRESS"),
    ("machine_bridge_adapter", "MACHINE_BRIDGE_ADAPTER_ADDRESS"),
    ("subscription_token_provision_pool", "SUBSCRIPTION_TOKEN_PROVISION_POOL_ADDRESS"),
    ("peaq_token", "PEAQ_TOKEN_ADDRESS"),
];

impl AddressOverrides {
    fn slot(&mut self, role: &str) -> Option<&mut Option<Address>> {
        Some(match role {
            "identity_registry" => &mut self.identity_registry,
            "identity_staking" => &mut self.identity_staking,
            "event_registry" => &mut self.event_registry,
            "machine_nft" => &mut self.machine_nft,
            "did_registry" => &mut self.did_registry,
            "batch_precompile" => &mut self.batch_precompile,
            "machine_account_factory" => &mut self.machine_account_factory,
            "machine_nft_adapter" => &mut self.machine_nft_adapter,
            "info_desk" => &mut self.info_desk,
            "machine_registry" => &mut self.machine_registry,
            "machine_state_and_sync" => &mut self.machine_state_and_sync,
            "machine_subscription" => &mut self.machine_subscription,
            "cross_chain_mirror" => &mut self.cross_chain_mirror,
            "machine_bridge_adapter" => &mut self.machine_bridge_adapter,
            "subscription_token_provision_pool" => &mut self.subscription_token_provision_pool,
            "peaq_token" => &mut self.peaq_token,
            _ => return None,
        })
    }
}

/// SDK `OperationalLimits`: 0 disables a limit; all 0 (default) disables the checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationalLimits {
    #[serde(default)]
    pub max_value_per_tx: u128,
    #[serde(default)]
    pub rate_limit_max_events: u64,
    #[serde(default)]
    pub rate_limit_window_seconds: u64,
}

fn default_receipt_timeout_ms() -> u64 {
    120_000
}
fn default_poll_interval_ms() -> u64 {
    250
}
fn default_max_backoff_ms() -> u64 {
    5_000
}
fn default_merge_max_events() -> usize {
    200
}

/// Serde configuration (e.g. a section of the node's YAML parameters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    #[serde(default)]
    pub generation: Generation,
    #[serde(default)]
    pub network: Network,
    /// Explicit chain id (only for dev chains; the preset's id otherwise).
    #[serde(default)]
    pub chain_id: Option<u64>,
    /// RPC URLs in fallback order. Empty: `PEAQOS_RPC_URL` or the preset list.
    #[serde(default)]
    pub rpc_urls: Vec<String>,
    #[serde(default)]
    pub addresses: AddressOverrides,
    /// MCR API base URL; default per preset (`https://mcr.peaq.xyz` on peaq, none on agung).
    #[serde(default)]
    pub mcr_api_url: Option<String>,
    #[serde(default)]
    pub limits: OperationalLimits,
    /// How long a flow waits for a receipt before answering `RECEIPT_AWAIT_FAILED` (the intent
    /// keeps being tracked).
    #[serde(default = "default_receipt_timeout_ms")]
    pub receipt_timeout_ms: u64,
    /// Receipt / reconcile poll interval.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Upper bound of the retry backoff while every RPC URL is down.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Most events one merged `batchAll` carries when queued `batch_submit_events` calls of one
    /// signer are sent together (0 or 1: every call is a transaction of its own; at most 512).
    #[serde(default = "default_merge_max_events")]
    pub merge_max_events: usize,
    /// Root of durable state: `<data_dir>/chain/` (outbox) and `<data_dir>/peaqos.log` (journal).
    pub data_dir: PathBuf,
}

impl ChainConfig {
    /// Minimal config for a network/generation with defaults everywhere else.
    pub fn new(network: Network, generation: Generation, data_dir: impl Into<PathBuf>) -> Self {
        ChainConfig {
            generation,
            network,
            chain_id: None,
            rpc_urls: vec![],
            addresses: AddressOverrides::default(),
            mcr_api_url: None,
            limits: OperationalLimits::default(),
            receipt_timeout_ms: default_receipt_timeout_ms(),
            poll_interval_ms: default_poll_interval_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            merge_max_events: default_merge_max_events(),
            data_dir: data_dir.into(),
        }
    }

    /// A config taken from the environment the way the SDK/CLI read it: `PEAQOS_NETWORK`
    /// (`mainnet|testnet|peaq|agung`, default peaq), `PEAQOS_GENERATION` (`economics2|legacy`,
    /// default economics2); addresses/URLs are then applied by [`ChainConfig::resolve`].
    pub fn from_env(data_dir: impl Into<PathBuf>) -> Result<Self> {
        let network = match std::env::var("PEAQOS_NETWORK") {
            Ok(v) if !v.trim().is_empty() => v.parse()?,
            _ => Network::Peaq,
        };
        let generation = match std::env::var("PEAQOS_GENERATION").map(|v| v.trim().to_ascii_lowercase()) {
            Ok(v) if v == "legacy" || v == "gen1" => Generation::Legacy,
            Ok(v) if v.is_empty() || v == "economics2" || v == "gen2" => Generation::Economics2,
            Ok(v) => {
                return Err(ChainError::config(
                    ErrorCode::ConfigInvalid,
                    "PEAQOS_GENERATION",
                    format!("unknown generation {v:?} (economics2|legacy)"),
                ))
            }
            Err(_) => Generation::Economics2,
        };
        Ok(ChainConfig::new(network, generation, data_dir))
    }

    /// Resolve against the process environment.
    pub fn resolve(&self) -> Result<ResolvedConfig> {
        self.resolve_with(|k| std::env::var(k).ok())
    }

    /// Resolve with an explicit environment lookup (tests).
    pub fn resolve_with(&self, env: impl Fn(&str) -> Option<String>) -> Result<ResolvedConfig> {
        let env = |k: &str| env(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        // Network: explicit config is always set (defaults to peaq); PEAQOS_NETWORK only used
        // when the config left the default and the env says otherwise? No: explicit wins, so the
        // env var is only a fallback for callers that build the config from env (from_env).
        let network = self.network;
        let ov = self.address_overrides(&env)?;
        let (g1, g2) = self.addresses_with(network, &ov);
        let rpc_urls = self.rpc_urls_with(network, &env)?;
        let mcr_api_url =
            self.mcr_api_url.clone().or_else(|| env("PEAQOS_MCR_API_URL")).or_else(|| network.default_mcr());
        self.check_timing()?;
        Ok(ResolvedConfig {
            generation: self.generation,
            network,
            chain_id: self.chain_id.unwrap_or(network.chain_id()),
            rpc_urls,
            gen1: g1,
            gen2: g2,
            mcr_api_url,
            limits: self.limits,
            receipt_timeout: std::time::Duration::from_millis(self.receipt_timeout_ms),
            poll_interval: std::time::Duration::from_millis(self.poll_interval_ms),
            max_backoff: std::time::Duration::from_millis(self.max_backoff_ms.max(self.poll_interval_ms)),
            merge_max_events: self.merge_max_events,
            data_dir: self.data_dir.clone(),
        })
    }

    /// Address overrides: the `*_ADDRESS` environment variables, then the explicit config values
    /// (which win).
    fn address_overrides(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<AddressOverrides> {
        let mut ov = AddressOverrides::default();
        for (role, var) in ADDRESS_ENV_VARS {
            if let Some(v) = env(var) {
                let a = Address::from_str(&v).map_err(|_| {
                    ChainError::config(
                        ErrorCode::ConfigInvalid,
                        var,
                        format!("{var} is not a 0x-prefixed 20-byte address"),
                    )
                })?;
                if let Some(slot) = ov.slot(role) {
                    *slot = Some(a);
                }
            }
        }
        // Explicit config values win over env.
        let mut explicit = self.addresses.clone();
        for (role, _) in ADDRESS_ENV_VARS {
            let value = *explicit.slot(role).expect("role table is exhaustive");
            if let Some(a) = value {
                *ov.slot(role).expect("role table is exhaustive") = Some(a);
            }
        }
        Ok(ov)
    }

    /// The network's preset addresses of both generations with `ov` applied.
    fn addresses_with(&self, network: Network, ov: &AddressOverrides) -> (Gen1Addresses, Gen2Addresses) {
        let mut g1 = gen1_preset(network);
        let mut g2 = gen2_preset(network);
        macro_rules! apply {
            ($dst:expr, $src:expr) => {
                if let Some(a) = $src {
                    $dst = a;
                }
            };
        }
        apply!(g1.identity_registry, ov.identity_registry);
        apply!(g1.identity_staking, ov.identity_staking);
        apply!(g1.machine_nft, ov.machine_nft);
        apply!(g1.did, ov.did_registry);
        apply!(g1.batch, ov.batch_precompile);
        if ov.machine_account_factory.is_some() {
            g1.machine_account_factory = ov.machine_account_factory;
        }
        if ov.machine_nft_adapter.is_some() {
            g1.machine_nft_adapter = ov.machine_nft_adapter;
        }
        apply!(g2.info_desk, ov.info_desk);
        apply!(g2.machine_registry, ov.machine_registry);
        apply!(g2.machine_state_and_sync, ov.machine_state_and_sync);
        apply!(g2.machine_subscription, ov.machine_subscription);
        apply!(g2.cross_chain_mirror, ov.cross_chain_mirror);
        apply!(g2.machine_bridge_adapter, ov.machine_bridge_adapter);
        apply!(g2.subscription_token_provision_pool, ov.subscription_token_provision_pool);
        apply!(g2.peaq_token, ov.peaq_token);
        apply!(g2.batch, ov.batch_precompile);
        if let Some(er) = ov.event_registry {
            match self.generation {
                Generation::Legacy => g1.event_registry = er,
                Generation::Economics2 => g2.event_registry = Some(er),
            }
        }
        (g1, g2)
    }

    /// RPC URLs: explicit, else `PEAQOS_RPC_URL` (comma-separated), else the network's; each an
    /// http(s) URL, at least one.
    fn rpc_urls_with(&self, network: Network, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>> {
        let rpc_urls: Vec<String> = if !self.rpc_urls.is_empty() {
            self.rpc_urls.clone()
        } else if let Some(v) = env("PEAQOS_RPC_URL") {
            v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
        } else {
            network.default_rpc_urls()
        };
        for (i, u) in rpc_urls.iter().enumerate() {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(ChainError::config(
                    ErrorCode::ConfigInvalid,
                    &format!("rpc_urls[{i}]"),
                    format!("rpc_urls[{i}] must be an http(s) URL, got {}", crate::error::redact_url(u)),
                ));
            }
        }
        if rpc_urls.is_empty() {
            return Err(ChainError::config(ErrorCode::ConfigInvalid, "rpc_urls", "no RPC URL configured"));
        }
        Ok(rpc_urls)
    }

    /// Poll interval and receipt timeout above zero, merge size within the batch precompile's.
    fn check_timing(&self) -> Result<()> {
        if self.poll_interval_ms == 0 {
            return Err(ChainError::config(
                ErrorCode::ConfigInvalid,
                "poll_interval_ms",
                "poll_interval_ms must be > 0",
            ));
        }
        if self.merge_max_events > 512 {
            return Err(ChainError::config(
                ErrorCode::ConfigInvalid,
                "merge_max_events",
                format!(
                    "merge_max_events must be 0..512 (the batch precompile's limit), got {}",
                    self.merge_max_events
                ),
            ));
        }
        if self.receipt_timeout_ms == 0 {
            return Err(ChainError::config(
                ErrorCode::ConfigInvalid,
                "receipt_timeout_ms",
                "receipt_timeout_ms must be > 0",
            ));
        }
        Ok(())
    }
}

/// Fully resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedConfig {
    pub generation: Generation,
    pub network: Network,
    pub chain_id: u64,
    pub rpc_urls: Vec<String>,
    pub gen1: Gen1Addresses,
    pub gen2: Gen2Addresses,
    pub mcr_api_url: Option<String>,
    pub limits: OperationalLimits,
    pub receipt_timeout: std::time::Duration,
    pub poll_interval: std::time::Duration,
    pub max_backoff: std::time::Duration,
    pub merge_max_events: usize,
    pub data_dir: PathBuf,
}

impl ResolvedConfig {
    /// The EventRegistry of the selected generation, or `DEPLOYMENT_UNAVAILABLE`.
    pub fn event_registry(&self) -> Result<Address> {
        match self.generation {
            Generation::Legacy => Ok(self.gen1.event_registry),
            Generation::Economics2 => self.gen2.event_registry.ok_or_else(|| {
                ChainError::config(
                    ErrorCode::DeploymentUnavailable,
                    "event_registry",
                    format!(
                        "Deployment {} records no EventRegistry (agung publishes no 2.0 EventRegistry); set addresses.event_registry or EVENT_REGISTRY_ADDRESS",
                        self.network.deployment_id()
                    ),
                )
            }),
        }
    }
    /// Batch precompile of the selected generation.
    pub fn batch(&self) -> Address {
        match self.generation {
            Generation::Legacy => self.gen1.batch,
            Generation::Economics2 => self.gen2.batch,
        }
    }
    /// Identifier written to journals (`deployment_id`).
    pub fn deployment_id(&self) -> &'static str {
        match self.generation {
            Generation::Economics2 => self.network.deployment_id(),
            Generation::Legacy => match self.network {
                Network::Peaq => "peaq-gen1",
                Network::Agung => "agung-gen1",
            },
        }
    }
    pub(crate) fn require_generation(&self, g: Generation, op: &str) -> Result<()> {
        if self.generation == g {
            Ok(())
        } else {
            Err(ChainError::config(
                ErrorCode::GenerationUnsupported,
                "generation",
                format!("{op} is only available for generation {g:?}, configured {:?}", self.generation),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(map: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = map.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn presets() {
        let c = ChainConfig::new(Network::Peaq, Generation::Economics2, "/tmp/x").resolve_with(env(&[])).unwrap();
        assert_eq!(c.chain_id, 3338);
        assert_eq!(c.event_registry().unwrap(), address!("A1e7F1d7B24dAb55Dc92491e6d9B89F6E925Ad1e"));
        assert_eq!(c.mcr_api_url.as_deref(), Some("https://mcr.peaq.xyz"));
        assert_eq!(c.rpc_urls[0], "https://quicknode1.peaq.xyz");
        let a = ChainConfig::new(Network::Agung, Generation::Economics2, "/tmp/x").resolve_with(env(&[])).unwrap();
        assert_eq!(a.chain_id, 9990);
        let e = a.event_registry().unwrap_err();
        assert_eq!(e.code(), "DEPLOYMENT_UNAVAILABLE");
        assert_eq!(a.mcr_api_url, None);
        let l = ChainConfig::new(Network::Agung, Generation::Legacy, "/tmp/x").resolve_with(env(&[])).unwrap();
        assert_eq!(l.event_registry().unwrap(), address!("2DAD8905380993940e340C5cE6d313d5c2780040"));
        assert_eq!(l.gen1.machine_nft_adapter, None);
    }

    #[test]
    fn env_then_explicit_overrides() {
        let e = env(&[
            ("EVENT_REGISTRY_ADDRESS", "0x1111111111111111111111111111111111111111"),
            ("MACHINE_NFT_ADDRESS", "0x2222222222222222222222222222222222222222"),
            ("PEAQOS_RPC_URL", "http://a:1, http://b:2"),
            ("PEAQOS_MCR_API_URL", "http://127.0.0.1:9"),
        ]);
        let mut cfg = ChainConfig::new(Network::Agung, Generation::Economics2, "/tmp/x");
        let r = cfg.resolve_with(&e).unwrap();
        assert_eq!(r.event_registry().unwrap(), address!("1111111111111111111111111111111111111111"));
        assert_eq!(r.gen1.machine_nft, address!("2222222222222222222222222222222222222222"));
        assert_eq!(r.rpc_urls, vec!["http://a:1".to_string(), "http://b:2".to_string()]);
        assert_eq!(r.mcr_api_url.as_deref(), Some("http://127.0.0.1:9"));
        cfg.addresses.event_registry = Some(address!("3333333333333333333333333333333333333333"));
        cfg.rpc_urls = vec!["http://c:3".into()];
        let r = cfg.resolve_with(&e).unwrap();
        assert_eq!(r.event_registry().unwrap(), address!("3333333333333333333333333333333333333333"));
        assert_eq!(r.rpc_urls, vec!["http://c:3".to_string()]);
    }

    #[test]
    fn bad_env_address_names_the_variable() {
        let err = ChainConfig::new(Network::Peaq, Generation::Legacy, "/tmp/x")
            .resolve_with(env(&[("IDENTITY_REGISTRY_ADDRESS", "0x12")]))
            .unwrap_err();
        assert_eq!(err.field(), "IDENTITY_REGISTRY_ADDRESS");
    }

    #[test]
    fn merge_max_events_above_the_precompile_limit_names_the_field() {
        let mut c = ChainConfig::new(Network::Peaq, Generation::Economics2, "/tmp/x");
        c.merge_max_events = 513;
        let err = c.resolve_with(env(&[])).unwrap_err();
        assert_eq!((err.code(), err.field()), ("CONFIG_INVALID", "merge_max_events"));
        c.merge_max_events = 512;
        assert_eq!(c.resolve_with(env(&[])).unwrap().merge_max_events, 512);
    }

    #[test]
    fn serde_denies_unknown_fields() {
        let ok: ChainConfig = serde_json::from_str(
            r#"{"generation":"legacy","network":"agung","data_dir":"/d","limits":{"max_value_per_tx":5},"addresses":{"machine_nft":"0x2222222222222222222222222222222222222222"}}"#,
        )
        .unwrap();
        assert_eq!(ok.generation, Generation::Legacy);
        assert_eq!(ok.limits.max_value_per_tx, 5);
        assert!(serde_json::from_str::<ChainConfig>(r#"{"data_dir":"/d","bogus":1}"#).is_err());
        assert!(serde_json::from_str::<ChainConfig>(r#"{"data_dir":"/d","addresses":{"nope":"0x00"}}"#).is_err());
        assert_eq!("testnet".parse::<Network>().unwrap(), Network::Agung);
    }
}
