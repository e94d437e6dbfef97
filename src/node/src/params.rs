//! The node's ROS parameters. Secrets are never parameters: the machine key comes from
//! `PEAQOS_PRIVATE_KEY` or the file named by `key_file` (mode 0600).
//!
//! Every parameter is declared through [`ParamSet`], which keeps its handle for the node's
//! lifetime: rclrs 0.8 undeclares a parameter when its handle is dropped, and then `ros2 param
//! list/get/describe` no longer see it. Most parameters are read-only (they shape state that is
//! built once at start; `ros2 param set` answers "Parameter is read only"); the few that can
//! change safely at run time (`diagnostics_period`, `log_level`) take effect when set.
use std::any::Any;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use peaqos_core::keys::{self, MachineKey};
use zeroize::Zeroizing;

use rclrs::{DeclarationError, Node, ParameterRange, ParameterValue, ParameterVariant};

use crate::StartError;

/// Declares parameters on one node and keeps their handles alive as long as it lives.
pub struct ParamSet {
    node: Node,
    kept: Mutex<Vec<Box<dyn Any + Send + Sync>>>,
}

/// A start error for parameter `name`, with the reason in words.
pub fn param_err(name: &str, reason: impl std::fmt::Display) -> StartError {
    StartError::Parameter { name: name.to_owned(), reason: reason.to_string() }
}

fn declaration_err(name: &str, e: DeclarationError) -> StartError {
    let hint = match e {
        DeclarationError::OverrideValueTypeMismatch => {
            // `-p x:=0xA1e7…` is read as an integer, `-p x:=5` as an integer where a double is
            // expected: say how to give the intended type.
            " (ROS reads an unquoted `0x…` or digits as a number: quote a string, e.g. -p 'name:=\"0xA1…\"', \
             and write a double with a decimal point, e.g. 2.0)"
        }
        _ => "",
    };
    param_err(name, format!("{e}{hint}"))
}

impl ParamSet {
    pub fn new(node: &Node) -> ParamSet {
        ParamSet { node: Node::clone(node), kept: Mutex::new(Vec::new()) }
    }

    fn keep(&self, handle: impl Any + Send + Sync) {
        self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Box::new(handle));
    }

    /// A read-only parameter: its value at start.
    pub fn read_only<T>(&self, name: &str, default: T, description: &str) -> Result<T, StartError>
    where
        T: ParameterVariant + Send + Sync + 'static,
    {
        self.read_only_in(name, default, description, T::Range::default())
    }

    /// A read-only parameter with a range that `ros2 param describe` shows and ROS enforces.
    pub fn read_only_in<T>(&self, name: &str, default: T, description: &str, range: T::Range) -> Result<T, StartError>
    where
        T: ParameterVariant + Send + Sync + 'static,
    {
        let p = self.builder(name, default, description, range).read_only().map_err(|e| declaration_err(name, e))?;
        let v = p.get();
        self.keep(p);
        Ok(v)
    }

    fn builder<T: ParameterVariant>(
        &self,
        name: &str,
        default: T,
        description: &str,
        range: T::Range,
    ) -> rclrs::ParameterBuilder<'_, T> {
        self.node.declare_parameter::<T>(name).default(default).description(description).range(range)
    }

    /// A read-only string-array parameter.
    pub fn read_only_strings(
        &self,
        name: &str,
        default: &[&str],
        description: &str,
    ) -> Result<Vec<String>, StartError> {
        let p = self
            .node
            .declare_parameter::<Arc<[Arc<str>]>>(name)
            .default_string_array(default.iter().copied())
            .description(description)
            .read_only()
            .map_err(|e| declaration_err(name, e))?;
        let v = p.get().iter().map(|s| s.to_string()).collect();
        self.keep(p);
        Ok(v)
    }

    /// A read-only parameter of any type (the caller checks the type it got).
    pub fn read_only_dynamic(
        &self,
        name: &str,
        default: ParameterValue,
        description: &str,
    ) -> Result<ParameterValue, StartError> {
        self.read_only(name, default, description)
    }

    /// A parameter that may be set at run time: `validate` refuses a bad value with a reason (also
    /// at start), `on_change` applies an accepted one. Returns the value at start.
    pub fn settable<T>(
        &self,
        name: &str,
        default: T,
        description: &str,
        range: T::Range,
        validate: impl Fn(&T) -> Result<(), String> + Send + Sync + 'static,
        on_change: impl Fn(&T) + Send + Sync + 'static,
    ) -> Result<T, StartError>
    where
        T: ParameterVariant + Send + Sync + 'static,
    {
        let p = self
            .builder(name, default, description, range)
            .validate(validate)
            .mandatory()
            .map_err(|e| declaration_err(name, e))?;
        p.on_change(on_change);
        let v = p.get();
        self.keep(p);
        Ok(v)
    }
}

/// A value of seconds that readers on other threads see change when its parameter is set.
#[derive(Clone)]
pub struct SharedSeconds(Arc<AtomicU64>);

impl SharedSeconds {
    fn new(v: f64) -> SharedSeconds {
        SharedSeconds(Arc::new(AtomicU64::new(v.to_bits())))
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
}

/// Shortest and longest `diagnostics_period`, seconds.
pub const DIAGNOSTICS_PERIOD_RANGE: (f64, f64) = (0.05, 3600.0);

pub struct Params {
    /// Declares further parameters (subsystems) and keeps every handle for the node's lifetime.
    pub declared: ParamSet,
    /// The Data Event Map (policy) file; empty = the embedded default policy.
    pub policy_file: String,
    /// All durable state: package log, keys created on first start, chain outbox.
    pub data_dir: PathBuf,
    /// Optional path of the machine's secp256k1 key file (hex, mode 0600).
    pub key_file: Option<PathBuf>,
    /// Optional V3 keystore of the machine key (wins over `key_file` and `PEAQOS_PRIVATE_KEY`).
    pub keystore_file: Option<PathBuf>,
    /// Optional file with the keystore's passphrase (mode 0600); else `PEAQOS_KEYSTORE_PASSWORD`.
    pub keystore_passphrase_file: Option<PathBuf>,
    /// The machine secret once loaded (a keystore is decrypted once); zeroized when dropped.
    key_secret: OnceLock<Zeroizing<[u8; 32]>>,
    /// Period of the /diagnostics report, seconds; settable at run time.
    pub diagnostics_period: SharedSeconds,
    /// Largest number of packages signed and written per group commit.
    pub batch_max: usize,
    /// Which services exist (`services.disabled`).
    pub services: crate::access::Services,
    /// Most estimated message bytes queued or being packaged, all topics (`pipeline.max_queued_bytes`).
    pub max_queued_bytes: u64,
    /// Per-topic byte bound where the policy sets no `queue_max_bytes` (`pipeline.topic_max_queued_bytes`).
    pub topic_max_queued_bytes: u64,
    /// Refuse new messages while the data directory's file system has less free space (`disk.min_free_bytes`).
    pub min_free_bytes: u64,
}

fn int_range(lower: i64, upper: i64) -> ParameterRange<i64> {
    ParameterRange { lower: Some(lower), upper: Some(upper), step: None }
}

impl Params {
    pub fn declare(node: &Node) -> Result<Params, StartError> {
        let declared = ParamSet::new(node);
        let policy_file: Arc<str> = declared.read_only(
            "policy_file",
            Arc::from(""),
            "Data Event Map YAML: topics, types, QoS and field rules. Empty: the embedded default (a demo /battery_state policy).",
        )?;
        let data_dir: Arc<str> = declared.read_only(
            "data_dir",
            Arc::from(""),
            "Directory for all durable state (package log, field key, outbox). Empty: $ROS_HOME/peaqos_node or ~/.ros/peaqos_node.",
        )?;
        let key_file: Arc<str> = declared.read_only(
            "key_file",
            Arc::from(""),
            "Machine secp256k1 key file (hex; mode 0600 or 0400). Empty: use the PEAQOS_PRIVATE_KEY environment variable.",
        )?;
        let keystore_file: Arc<str> = declared.read_only(
            "keystore_file",
            Arc::from(""),
            "Machine key as an Ethereum V3 keystore (peaqos-key new/import make one). Wins over key_file and PEAQOS_PRIVATE_KEY.",
        )?;
        let keystore_passphrase_file: Arc<str> = declared.read_only(
            "keystore_passphrase_file",
            Arc::from(""),
            "File holding the keystore's passphrase (mode 0600, e.g. a systemd credential). Empty: PEAQOS_KEYSTORE_PASSWORD.",
        )?;
        let (lo, hi) = DIAGNOSTICS_PERIOD_RANGE;
        let period = SharedSeconds::new(1.0);
        let applied = period.clone();
        let start_period = declared.settable(
            "diagnostics_period",
            1.0,
            "Seconds between /diagnostics reports; may be set at run time.",
            ParameterRange { lower: Some(lo), upper: Some(hi), step: None },
            move |v: &f64| {
                if v.is_finite() && (lo..=hi).contains(v) {
                    Ok(())
                } else {
                    Err(format!("diagnostics_period must be {lo}..{hi} seconds, got {v}"))
                }
            },
            move |v: &f64| applied.set(*v),
        )?;
        period.set(start_period);
        let batch_max: i64 = declared.read_only_in(
            "batch_max",
            256,
            "Largest number of packages signed and written to disk per group commit (1..65536).",
            int_range(1, 65_536),
        )?;
        let bytes = |name: &str, default: u64, min: i64, description: &str| -> Result<u64, StartError> {
            let v: i64 = declared.read_only_in(name, default as i64, description, int_range(min, i64::MAX))?;
            u64::try_from(v).map_err(|_| param_err(name, format!("must be at least {min}")))
        };
        use peaqos_core::pipeline as pl;
        let max_queued_bytes = bytes(
            "pipeline.max_queued_bytes",
            pl::DEFAULT_MAX_QUEUED_BYTES,
            1 << 20,
            "Most estimated bytes of messages queued or being packaged, all topics together; beyond it new messages are dropped and counted (dropped_for_bytes).",
        )?;
        let topic_max_queued_bytes = bytes(
            "pipeline.topic_max_queued_bytes",
            pl::DEFAULT_TOPIC_MAX_QUEUED_BYTES,
            4096,
            "Per-topic bound of queued message bytes for topics whose Data Event Map entry sets no queue_max_bytes.",
        )?;
        let min_free_bytes = bytes(
            "disk.min_free_bytes",
            pl::DEFAULT_MIN_FREE_BYTES,
            0,
            "Refuse new messages (counted drops, ERROR on /diagnostics) while data_dir's file system has fewer free bytes; resumes by itself. 0 = only on a full disk.",
        )?;
        crate::ros_log::declare_level_parameter(&declared)?;
        let services = crate::access::Services::declare(&declared)?;
        Ok(Params {
            declared,
            policy_file: policy_file.to_string(),
            data_dir: if data_dir.is_empty() { default_data_dir() } else { PathBuf::from(&*data_dir) },
            key_file: (!key_file.is_empty()).then(|| PathBuf::from(&*key_file)),
            keystore_file: (!keystore_file.is_empty()).then(|| PathBuf::from(&*keystore_file)),
            keystore_passphrase_file: (!keystore_passphrase_file.is_empty())
                .then(|| PathBuf::from(&*keystore_passphrase_file)),
            key_secret: OnceLock::new(),
            diagnostics_period: period,
            services,
            batch_max: usize::try_from(batch_max).map_err(|_| param_err("batch_max", "must be 1..65536"))?,
            max_queued_bytes,
            topic_max_queued_bytes,
            min_free_bytes,
        })
    }
}

/// Anvil / Hardhat account #0: the public demo key (scripts/demo), never a real machine's.
const DEMO_ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

impl Params {
    /// The policy file as its errors name it: `policy_file`, or `<embedded default policy>`.
    pub fn policy_file_name(&self) -> PathBuf {
        if self.policy_file.is_empty() {
            PathBuf::from("<embedded default policy>")
        } else {
            PathBuf::from(&self.policy_file)
        }
    }

    /// The machine key: from `keystore_file` (decrypted once, then kept only in zeroized memory),
    /// else `PEAQOS_PRIVATE_KEY` / `key_file`. A plaintext key other than the demo's is warned about.
    pub fn machine_key(&self) -> Result<MachineKey, StartError> {
        if let Some(secret) = self.key_secret.get() {
            return Ok(MachineKey::from_bytes(secret)?);
        }
        let key = match &self.keystore_file {
            Some(ks) => {
                let env_key = std::env::var(keys::PRIVATE_KEY_ENV).is_ok_and(|v| !v.trim().is_empty());
                if env_key || self.key_file.is_some() {
                    tracing::warn!("keystore_file is set: {} and key_file are ignored", keys::PRIVATE_KEY_ENV);
                }
                let pass = keys::keystore_passphrase_or_ask(
                    ks,
                    self.keystore_passphrase_file.as_deref(),
                    &format!("passphrase of {}: ", ks.display()),
                )?;
                let key = MachineKey::from_keystore(ks, &pass)?;
                tracing::info!("machine key from keystore {}", ks.display());
                key
            }
            None => {
                let key = MachineKey::load(self.key_file.as_deref())?;
                if key.address() != DEMO_ADDRESS {
                    tracing::warn!(
                        "the machine key is stored in plaintext ({}); on a robot keep it in a keystore: \
                         peaqos-key import --keystore <file>, then keystore_file:=<file>",
                        if self.key_file.is_some() { "key_file" } else { keys::PRIVATE_KEY_ENV }
                    );
                }
                key
            }
        };
        let _ = self.key_secret.set(key.secret_bytes());
        Ok(key)
    }
}

fn default_data_dir() -> PathBuf {
    if let Some(ros_home) = std::env::var_os("ROS_HOME") {
        return PathBuf::from(ros_home).join("peaqos_node");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".ros").join("peaqos_node")
}
