//! The node's ROS parameters. Secrets are never parameters: the machine key comes from
//! `PEAQOS_PRIVATE_KEY` or the file named by `key_file` (mode 0600).
use std::path::PathBuf;
use std::sync::Arc;

use rclrs::{Node, ParameterVariant};

use crate::StartError;

/// The largest `batch_max`.
const MAX_BATCH: usize = 100_000;

pub struct Params {
    /// The Data Event Map (policy) file; empty = the embedded default policy.
    pub policy_file: String,
    /// All durable state: package log, keys created on first start, chain outbox.
    pub data_dir: PathBuf,
    /// Optional path of the machine's secp256k1 key file (hex, mode 0600).
    pub key_file: Option<PathBuf>,
    /// Period of the /diagnostics report.
    pub diagnostics_period: std::time::Duration,
    /// Largest number of packages signed and written per group commit.
    pub batch_max: usize,
}

fn declare<T: ParameterVariant + Clone + 'static>(
    node: &Node,
    name: &str,
    default: T,
    description: &str,
) -> Result<T, StartError> {
    let p = node
        .declare_parameter::<T>(name)
        .default(default)
        .description(description)
        .read_only()
        .map_err(|e| StartError::Parameter { name: name.to_owned(), reason: format!("{e:?}") })?;
    Ok(p.get())
}

impl Params {
    pub fn declare(node: &Node) -> Result<Params, StartError> {
        let policy_file: Arc<str> = declare(
            node,
            "policy_file",
            Arc::from(""),
            "Data Event Map YAML: topics, types, QoS and field rules. Empty: the embedded default (a demo /battery_state policy).",
        )?;
        let data_dir: Arc<str> = declare(
            node,
            "data_dir",
            Arc::from(""),
            "Directory for all durable state (package log, field key, outbox). Empty: $ROS_HOME/peaqos_node or ~/.ros/peaqos_node.",
        )?;
        let key_file: Arc<str> = declare(
            node,
            "key_file",
            Arc::from(""),
            "Machine secp256k1 key file (hex; mode 0600 or 0400). Empty: use the PEAQOS_PRIVATE_KEY environment variable.",
        )?;
        let diagnostics_period: f64 =
            declare(node, "diagnostics_period", 1.0, "Seconds between /diagnostics reports.")?;
        let batch_max: i64 = declare(
            node,
            "batch_max",
            256,
            "Largest number of packages signed and written to disk per group commit.",
        )?;
        let diagnostics_period = peaqos_core::duration::seconds(diagnostics_period, false)
            .map_err(|reason| StartError::Parameter { name: "diagnostics_period".into(), reason })?;
        let batch_max = match usize::try_from(batch_max) {
            Ok(n @ 1..=MAX_BATCH) => n,
            _ => {
                return Err(StartError::Parameter {
                    name: "batch_max".into(),
                    reason: format!("must be 1..={MAX_BATCH}, got {batch_max}"),
                })
            }
        };
        Ok(Params {
            policy_file: policy_file.to_string(),
            data_dir: if data_dir.is_empty() { default_data_dir() } else { PathBuf::from(&*data_dir) },
            key_file: (!key_file.is_empty()).then(|| PathBuf::from(&*key_file)),
            diagnostics_period,
            batch_max,
        })
    }
}

fn default_data_dir() -> PathBuf {
    if let Some(ros_home) = std::env::var_os("ROS_HOME") {
        return PathBuf::from(ros_home).join("peaqos_node");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".ros").join("peaqos_node")
}
