//! The stream's configuration: the policy's `stream:` blocks and the `stream.*` parameters.
use std::path::Path;
use std::time::Duration;

use peaqos_core::policy::{DataEventMap, PolicyError};
use peaqos_stream::topic_config::TopicStreamConfig;

use crate::params::Params;
use crate::StartError;

/// Default byte budget of the tap → stream thread channel.
const DEFAULT_QUEUE_MAX_BYTES: i64 = 64 * 1024 * 1024;
/// Default of `stream.shutdown_upload_timeout`, seconds.
const DEFAULT_SHUTDOWN_UPLOAD_TIMEOUT: f64 = 10.0;

/// One streamed topic.
pub(crate) struct TopicSpec {
    pub(crate) topic: String,
    pub(crate) cfg: TopicStreamConfig,
}

pub(super) fn policy_err(file: &Path, path: String, reason: impl Into<String>) -> StartError {
    StartError::Policy(PolicyError { file: file.to_owned(), path, reason: reason.into() })
}

pub(super) fn stream_err(what: &str, e: impl std::fmt::Display) -> StartError {
    StartError::Parameter { name: "data_dir".into(), reason: format!("stream: {what}: {e}") }
}

/// The `stream:` blocks of the policy, checked: `<file>: topics[i].stream.<key>: <reason>`.
pub(crate) fn topic_specs(map: &DataEventMap, policy_file: &Path) -> Result<Vec<TopicSpec>, StartError> {
    let mut out = Vec::new();
    for (i, t) in map.topics.iter().enumerate() {
        let Some(block) = &t.stream else { continue };
        let json = serde_json::to_value(block)
            .map_err(|e| policy_err(policy_file, format!("topics[{i}].stream"), format!("not a plain mapping: {e}")))?;
        let key_err = |e: peaqos_stream::topic_config::ConfigError| {
            let path =
                if e.key.is_empty() { format!("topics[{i}].stream") } else { format!("topics[{i}].stream.{}", e.key) };
            policy_err(policy_file, path, e.reason)
        };
        let mut cfg = TopicStreamConfig::from_value(&json).map_err(key_err)?;
        cfg.resolve_env_secrets(&|name| std::env::var(name).ok()).map_err(key_err)?;
        out.push(TopicSpec { topic: t.topic.clone(), cfg });
    }
    Ok(out)
}

pub(super) fn declare_queue_max_bytes(params: &Params) -> Result<usize, StartError> {
    let v = params.declared.read_only::<i64>(
        "stream.queue_max_bytes",
        DEFAULT_QUEUE_MAX_BYTES,
        "Most package bytes waiting between the packaging thread and the chunk stream; beyond it hand-overs are dropped and later read back from the package log.",
    )?;
    usize::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| StartError::Parameter {
        name: "stream.queue_max_bytes".into(),
        reason: format!("must be > 0, got {v}"),
    })
}

pub(super) fn declare_write_once(params: &Params) -> Result<bool, StartError> {
    params.declared.read_only::<bool>(
        "stream.write_once",
        true,
        "Write a streamed package once, as chunk ciphertext, in the packaging thread's group commit (the package log holds a reference to it). false: the package log holds the package and the chunk stream copies it (twice the bytes written).",
    )
}

pub(super) fn declare_shutdown_upload_timeout(params: &Params) -> Result<Duration, StartError> {
    let name = "stream.shutdown_upload_timeout";
    let v = params.declared.read_only::<f64>(
        name,
        DEFAULT_SHUTDOWN_UPLOAD_TIMEOUT,
        "Seconds a clean stop spends uploading the chunks still queued (those sealed at shutdown included); what is left is logged and uploaded at the next start. 0 = none.",
    )?;
    Duration::try_from_secs_f64(v).map_err(|_| StartError::Parameter {
        name: name.into(),
        reason: format!("must be a number of seconds >= 0, got {v}"),
    })
}
