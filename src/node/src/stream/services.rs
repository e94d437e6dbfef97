//! `~/grant_access` and `~/seal_dataset`: read the sealed chain from disk (never the open chunk),
//! each request on a thread of its own.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use peaqos_core::keys::MachineKey;
use peaqos_core::text::{one_line, quoted};
use peaqos_events::anchor::{DatasetAnchor, DatasetRef};
use peaqos_stream::dataset::{verify_dataset, DatasetManifest};
use peaqos_stream::grant::{grant_to_files, select_indices, GrantRange, DEFAULT_BUYER_RECIPIENT_ID};
use peaqos_stream::keys::MachineStreamKeys;
use peaqos_stream::{store, ErrorCode, StreamError};
use rclrs::{IntoPrimitiveOptions, Node, Service};
use ros_env::peaqos_node::srv::{
    GrantAccess, GrantAccess_Request, GrantAccess_Response, SealDataset, SealDataset_Request, SealDataset_Response,
};

use super::config::TopicSpec;
use crate::answer::{Refusal, Refuse};
use crate::StartError;

/// A range that reaches past the sealed chunks names its end (`last_index`, or `to_ms` for a
/// time range); other errors keep their own field.
fn range_error(e: StreamError, time: bool) -> Refusal {
    match e {
        StreamError::NotFound(_) => {
            Refusal::new(ErrorCode::NotFound, if time { "to_ms" } else { "last_index" }, e.to_string())
        }
        other => other.into(),
    }
}

struct Ctx {
    stream_dir: PathBuf,
    topics: Vec<String>,
    keys: Arc<MachineStreamKeys>,
    key: Arc<MachineKey>,
    anchor: Option<Box<dyn DatasetAnchor>>,
}

impl Ctx {
    fn topic(&self, t: &str) -> Result<(), Refusal> {
        if self.topics.iter().any(|x| x == t) {
            Ok(())
        } else {
            Err(Refusal::new(
                ErrorCode::UnknownTopic,
                "topic",
                format!("topic {} is not streamed (no stream: block in the Data Event Map)", quoted(t)),
            ))
        }
    }

    fn range(&self, first: u64, last: u64, from_ms: u64, to_ms: u64) -> Result<GrantRange, Refusal> {
        if to_ms > 0 {
            if to_ms < from_ms {
                return Err(Refusal::new(
                    ErrorCode::InvalidArgument,
                    "to_ms",
                    format!("to_ms {to_ms} is before from_ms {from_ms}"),
                ));
            }
            Ok(GrantRange::TimeMs { from: from_ms, to: to_ms })
        } else {
            if last < first {
                return Err(Refusal::new(
                    ErrorCode::InvalidArgument,
                    "last_index",
                    format!("last_index {last} is before first_index {first}"),
                ));
            }
            Ok(GrantRange::Indices { first, last })
        }
    }

    fn grant(&self, r: &GrantAccess_Request) -> Result<GrantAccess_Response, Refusal> {
        self.topic(&r.topic)?;
        let pk = peaqos_stream::crypto::parse_x25519_public(&r.buyer_public_key_hex, "buyer_public_key_hex")
            .map_err(|e| Refusal::new(ErrorCode::InvalidArgument, "buyer_public_key_hex", e.to_string()))?;
        let buyer_id = if r.buyer_id.is_empty() { DEFAULT_BUYER_RECIPIENT_ID } else { r.buyer_id.as_str() };
        let dir = store::topic_dir(&self.stream_dir, &r.topic)?;
        let (range, dataset) = if r.dataset.is_empty() {
            (self.range(r.first_index, r.last_index, r.from_ms, r.to_ms)?, None)
        } else {
            let name = r.dataset.trim_end_matches(".json");
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                return Err(Refusal::new(ErrorCode::InvalidArgument, "dataset", "expected <first>-<last>"));
            }
            let p = dir.join("datasets").join(format!("{name}.json"));
            if !p.exists() {
                return Err(Refusal::new(
                    ErrorCode::NotFound,
                    "dataset",
                    format!("no sealed dataset {name} of {}", r.topic),
                ));
            }
            let m: DatasetManifest = store::load_json(&p)?;
            verify_dataset(&m)?;
            (GrantRange::Indices { first: m.first_index, last: m.last_index }, Some(m))
        };
        let indices = select_indices(&dir, &range).map_err(|e| range_error(e, r.to_ms > 0))?;
        if indices.is_empty() {
            return Err(Refusal::new(
                ErrorCode::NotFound,
                if r.to_ms > 0 { "from_ms" } else { "first_index" },
                "no sealed chunk in the range",
            ));
        }
        if let Some(m) = &dataset {
            for (i, id) in indices.iter().zip(&m.chunk_ids) {
                if store::load_chunk(&dir, *i)?.chunk_id != *id {
                    return Err(Refusal::new(
                        ErrorCode::ChainInvalid,
                        "dataset",
                        format!("chunk {i} differs from the dataset's chunk id"),
                    ));
                }
            }
        }
        let stamp = store::unix_ms(SystemTime::now());
        let out_dir = self.stream_dir.join("grants").join(hex::encode(pk)).join(stamp.to_string());
        let (paths, files) =
            grant_to_files(&self.stream_dir, &r.topic, &range, &self.keys, &pk, buyer_id, &out_dir, None)?;
        let json: Vec<serde_json::Value> = files.iter().map(|f| f.to_snake_json()).collect::<Result<_, _>>()?;
        Ok(GrantAccess_Response {
            success: true,
            message: format!("{} chunk(s) of {} granted in {} file(s)", indices.len(), r.topic, files.len()),
            access_files_json: serde_json::to_string(&json).unwrap_or_default(),
            files: paths.iter().map(|p| p.display().to_string()).collect(),
            chunk_indices: indices,
            ..Default::default()
        })
    }

    fn seal(&self, r: &SealDataset_Request) -> Result<SealDataset_Response, Refusal> {
        self.topic(&r.topic)?;
        let range = self.range(r.first_index, r.last_index, r.from_ms, r.to_ms)?;
        let dir = store::topic_dir(&self.stream_dir, &r.topic)?;
        let indices = select_indices(&dir, &range).map_err(|e| range_error(e, r.to_ms > 0))?;
        let (Some(&first), Some(&last)) = (indices.first(), indices.last()) else {
            return Err(Refusal::new(
                ErrorCode::NotFound,
                if r.to_ms > 0 { "from_ms" } else { "first_index" },
                "no sealed chunk in the range",
            ));
        };
        let key = Arc::clone(&self.key);
        let signer = move |m: &[u8]| -> peaqos_stream::Result<[u8; 65]> { Ok(key.sign_eip191(m)) };
        if r.anchor && self.anchor.is_none() {
            return Err(Refusal::new(
                ErrorCode::ChainDisabled,
                "anchor",
                "anchoring needs the chain client (chain.enabled)",
            ));
        }
        let sealed_ms = store::unix_ms(SystemTime::now());
        let m = peaqos_stream::dataset::build_dataset(
            &self.stream_dir,
            &r.topic,
            first,
            last,
            self.key.did(),
            sealed_ms,
            &signer,
        )?;
        let p = peaqos_stream::dataset::write_dataset(&self.stream_dir, &m)?;
        let mut resp = SealDataset_Response {
            success: true,
            message: format!("dataset of chunks {first}..={last} of {} sealed", r.topic),
            manifest_json: serde_json::to_string(&m).unwrap_or_default(),
            path: p.display().to_string(),
            merkle_root: m.merkle_root.clone(),
            ..Default::default()
        };
        if let (true, Some(a)) = (r.anchor, &self.anchor) {
            let file = std::fs::read(&p)
                .map_err(|e| Refusal::new(ErrorCode::IoError, "anchor", format!("{}: {e}", p.display())))?;
            let d = DatasetRef {
                topic: &m.topic,
                first_index: m.first_index,
                last_index: m.last_index,
                merkle_root: &m.merkle_root,
                manifest_file: &file,
                sealed_ms,
            };
            match a.anchor(&d).map(|a| (a.intent_id, a.data_hash)).map_err(Refusal::from) {
                Ok((intent, hash)) => {
                    resp.message.push_str(&format!("; anchor queued as intent {intent}"));
                    resp.anchor_intent_id = intent;
                    resp.anchor_data_hash = hash;
                }
                // The dataset stands (answer carries it); only the anchor failed.
                Err(e) => {
                    tracing::warn!(
                        "~/seal_dataset {}: anchor: {} {}: {}",
                        quoted(&r.topic),
                        e.code,
                        e.field,
                        one_line(&e.message, 300)
                    );
                    let message = format!("{}; not anchored: {}", resp.message, e.message);
                    resp = resp.refused(Refusal { message, ..e });
                }
            }
        }
        Ok(resp)
    }
}

/// Run `f` on its own thread; the returned future resolves with its answer (or the default
/// response, marked failed by `success: false`, if the thread could not run).
fn off_executor<R, F>(ctx: Arc<Ctx>, f: F) -> impl std::future::Future<Output = R> + Send + 'static
where
    R: Default + Send + 'static,
    F: FnOnce(&Ctx) -> R + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("peaqos-stream-svc".into()).spawn(move || {
        let _ = tx.send(f(&ctx));
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start a stream service thread: {e}");
    }
    async move { rx.await.unwrap_or_default() }
}

/// `~/grant_access` and `~/seal_dataset`, each absent when switched off (`services.disabled`).
pub(super) type StreamServices = (Option<Service<GrantAccess>>, Option<Service<SealDataset>>);

pub(super) fn serve(
    node: &Node,
    stream_dir: &Path,
    specs: &[TopicSpec],
    keys: Arc<MachineStreamKeys>,
    key: Arc<MachineKey>,
    anchor: Option<Box<dyn DatasetAnchor>>,
    enabled: &crate::access::Services,
) -> Result<StreamServices, StartError> {
    let ctx = Arc::new(Ctx {
        stream_dir: stream_dir.to_owned(),
        topics: specs.iter().map(|s| s.topic.clone()).collect(),
        keys,
        key,
        anchor,
    });
    // Grants and datasets read, unwrap and re-wrap whole ranges of chunks: run them on a thread
    // of their own so a large range never stalls the executor (and with it the subscriptions).
    // One service over `Ctx::$method`; a refusal is logged (topic quoted, message cut) and
    // answered with its code and the request field it names.
    macro_rules! service {
        ($name:literal, $srv:ident, $req:ident, $resp:ident, $method:ident) => {{
            let c = Arc::clone(&ctx);
            enabled
                .enabled($name)
                .then(|| {
                    node.create_async_service::<$srv, _>(
                        $name.reliable().keep_last(crate::chain::SERVICE_QUEUE_DEPTH),
                        move |r: $req| {
                            crate::ros_log::request($name);
                            off_executor(Arc::clone(&c), move |c| {
                                c.$method(&r).unwrap_or_else(|e| {
                                    tracing::warn!(
                                        "{} {}: {} {}: {}",
                                        $name,
                                        quoted(&r.topic),
                                        e.code,
                                        e.field,
                                        one_line(&e.message, 300)
                                    );
                                    $resp::default().refused(e)
                                })
                            })
                        },
                    )
                })
                .transpose()?
        }};
    }
    let grant = service!("~/grant_access", GrantAccess, GrantAccess_Request, GrantAccess_Response, grant);
    let seal = service!("~/seal_dataset", SealDataset, SealDataset_Request, SealDataset_Response, seal);
    Ok((grant, seal))
}
