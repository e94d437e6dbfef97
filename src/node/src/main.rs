//! peaqos_node: the peaqOS Edge Agent ROS 2 node.
//!
//! This layer only converts messages, declares parameters and maps ROS primitives onto the
//! ROS-free core (`peaqos_core`): subscriptions hand converted messages to the core's
//! packaging pipeline through bounded queues and never block or sign; the pipeline signs,
//! writes each package durably, then calls back here to publish it.
mod access;
mod answer;
mod catalog;
mod chain;
mod convert;
mod dds_profile;
mod events;
mod market;
mod params;
mod qos;
mod retention;
mod ros_log;
mod status;
mod stream;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use peaqos_core::keys::FieldKey;
use peaqos_core::pipeline::{Pipeline, PipelineConfig, Published, RawMessage};
use peaqos_core::policy::{self, DataEventMap};
use rclrs::{
    Context, CreateBasicExecutor, DynamicMessage, DynamicSubscription, Executor, IntoPrimitiveOptions, MessageInfo,
    Node, Publisher, SpinOptions,
};
use ros_env::peaqos_node::msg::DataPackage;

/// The policy used when `policy_file` is empty: the demo robot's battery topic.
const DEFAULT_POLICY: &str = include_str!("../../../config/data_event_map.yaml");

/// Why the node could not start. Each names the parameter, file or topic concerned.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("ROS: {0}")]
    Ros(#[from] rclrs::RclrsError),
    #[error("parameter `{name}`: {reason}")]
    Parameter { name: String, reason: String },
    #[error("{0}")]
    Policy(#[from] policy::PolicyError),
    #[error("machine key: {0}")]
    Key(#[from] peaqos_core::keys::KeyError),
    #[error("package pipeline: {0}")]
    Pipeline(#[from] peaqos_core::pipeline::PipelineError),
    #[error("topic `{topic}`: message type `{type_name}` {reason}")]
    TopicType { topic: String, type_name: String, reason: String },
}

/// A subsystem fed every durable package batch (on the packaging thread: it must return at once).
type Tap = Box<dyn FnMut(&[Published]) + Send>;

fn main() -> ExitCode {
    // Before anything else: Fast DDS reads its profile when the first participant is made.
    let dds_profile = dds_profile::apply();
    peaqos_core::memory::map_large_allocations();
    ros_log::init();
    match run(&dds_profile) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("peaqos_node cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The policy and the name its errors use for its file.
fn load_policy(params: &params::Params) -> Result<(DataEventMap, std::path::PathBuf), StartError> {
    let file = params.policy_file_name();
    if params.policy_file.is_empty() {
        Ok((DataEventMap::from_yaml_str(DEFAULT_POLICY, &file)?, file))
    } else {
        Ok((policy::load(&file)?, file))
    }
}

fn run(dds_profile: &dds_profile::Choice) -> Result<(), StartError> {
    let context = Context::default_from_env()?;
    // SIGINT/SIGTERM from the first moment: a stop that arrives while the node is still starting
    // must shut down cleanly too (drain and flush), not kill the process.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    let mut executor = context.create_basic_executor();
    let node = executor.create_node("peaqos_node")?;
    ros_log::attach(node.logger().name());
    dds_profile::log(dds_profile);

    let params = params::Params::declare(&node)?;
    let (map, policy_file) = load_policy(&params)?;
    let key = params.machine_key()?;
    // The pipeline takes the key; the chain client gets its own signer from the same secret.
    let chain_key = params.machine_key()?;
    let field_key = FieldKey::load(&params.data_dir)?;
    tracing::info!(
        "machine {} ({}); data_dir {}; {} topic(s)",
        key.address(),
        key.did(),
        params.data_dir.display(),
        map.topics.len()
    );

    // Resolve every topic's type before anything starts: an unknown type is a start error.
    let types = resolve_types(&map)?;
    // Every field rule must be able to match: a mistyped path would publish in clear.
    let catalogs = catalog::catalogs(&map);
    map.check_field_paths(&policy_file, &catalogs)?;

    // The chain client comes first: the subsystems fed by packages may submit through it.
    let chain_params = chain::ChainParams::declare(&params)?;
    let chain_services = chain::serve(&node, chain_params, &chain_key, &params.services)?;
    let machine_id = chain::declare_machine_id(&params)?;
    // Retention: consumers of the package log register before the pipeline starts deleting.
    let retention = retention::Retention::declare(&params)?;

    // Taps: subsystems that consume every durable package batch after it is published (the
    // chunk stream, the event rules). Each must return at once (hand the batch to its own
    // thread): taps run on the packaging thread.
    #[allow(unused_mut)]
    let mut taps: Vec<Tap> = Vec::new();
    // -- tap registration: new subsystems push their tap here --
    let mut stream = stream::start(&node, &params, &map, chain_services.as_ref(), &machine_id, &retention)?;
    if let Some(tap) = stream.as_mut().and_then(stream::StreamSubsystem::take_tap) {
        taps.push(tap);
    }
    let market = market::start(&node, &params, &map, &machine_id, params.machine_key()?, chain_services.as_ref())?;
    // Written once, streamed packages are read back from their chunks (the log holds references).
    let resolver = stream.as_ref().and_then(stream::StreamSubsystem::resolver);
    let payload_store = stream.as_mut().and_then(stream::StreamSubsystem::take_payload_store);
    let mut events =
        events::start(&params, &map, chain_services.as_ref(), &machine_id, &catalogs, &retention, resolver)?;
    if let Some(tap) = events.as_mut().and_then(events::EventsSubsystem::take_tap) {
        taps.push(tap);
    }

    // Reliable keep-last: what DDS may hold for a slow subscriber is this many packages (each at
    // most about its topic's queue byte bound, base64 included).
    let depth: i64 = params.declared.read_only_in(
        "data_packages.depth",
        1000,
        "History depth of the reliable ~/data_packages publisher (1..10000): the most packages DDS keeps for a slow subscriber. Lower it for large messages: DDS holds up to depth × the largest package.",
        rclrs::ParameterRange { lower: Some(1), upper: Some(10_000), step: None },
    )?;
    let depth = u32::try_from(depth).map_err(|_| params::param_err("data_packages.depth", "must be 1..10000"))?;
    let publisher = node.create_publisher::<DataPackage>("~/data_packages".reliable().keep_last(depth))?;
    let pipeline = Arc::new(Pipeline::start_with_store(
        PipelineConfig {
            batch_max: params.batch_max,
            batch_max_wait: Duration::from_millis(2),
            max_queued_bytes: params.max_queued_bytes,
            topic_max_queued_bytes: params.topic_max_queued_bytes,
            min_free_bytes: params.min_free_bytes,
            retention: retention.log,
            segment_max_bytes: retention.segment_max_bytes,
            retention_interval: retention.interval,
            consumers: Arc::clone(&retention.consumers),
            ..PipelineConfig::new(params.data_dir.clone())
        },
        key,
        field_key,
        &map,
        package_sink(publisher, taps),
        payload_store,
    )?);
    let subscriptions = subscribe(&node, &map, types, &pipeline)?;
    let sources = status::Sources {
        stream: stream.as_ref().map(stream::StreamSubsystem::status),
        events: events.as_ref().map(events::EventsSubsystem::status),
        gas: chain_services.as_ref().map(chain::ChainServices::gas),
    };
    let status = status::serve(&node, Arc::downgrade(&pipeline), &params, &map, sources)?;

    spin_until_stopped(&mut executor, &context, &stop);
    drop(subscriptions);
    drop(status);
    tracing::info!("shutting down: packaging what was accepted and flushing the package log");
    // The status handlers only hold weak references, so this is the last one; dropping the
    // pipeline also drains and flushes it (and runs the taps on the last batches).
    if let Ok(mut p) = Arc::try_unwrap(pipeline) {
        p.shutdown();
    }
    // -- subsystem shutdown: flush what the taps were handed --
    if let Some(s) = stream {
        s.shutdown();
    }
    if let Some(e) = events {
        e.shutdown();
    }
    if let Some(m) = market {
        m.shutdown();
    }
    drop(chain_services);
    Ok(())
}

/// Each topic's message type, checked to be installed on this machine.
fn resolve_types(map: &DataEventMap) -> Result<Vec<rclrs::MessageTypeName>, StartError> {
    let mut types = Vec::with_capacity(map.topics.len());
    for t in &map.topics {
        let type_name: rclrs::MessageTypeName = t.msg_type.as_str().try_into().map_err(|e| StartError::TopicType {
            topic: t.topic.clone(),
            type_name: t.msg_type.clone(),
            reason: format!("{e}"),
        })?;
        if let Err(e) = rclrs::DynamicMessageMetadata::new(type_name.clone()) {
            return Err(StartError::TopicType {
                topic: t.topic.clone(),
                type_name: t.msg_type.clone(),
                reason: format!("is not installed on this machine ({e}); source the workspace that provides it"),
            });
        }
        types.push(type_name);
    }
    Ok(types)
}

/// Where the pipeline hands each durable batch: `~/data_packages`, then every tap.
fn package_sink(publisher: Publisher<DataPackage>, mut taps: Vec<Tap>) -> Box<dyn FnMut(Vec<Published>) + Send> {
    Box::new(move |batch: Vec<Published>| {
        for p in &batch {
            let msg = DataPackage {
                topic: p.topic.to_string(),
                sequence_number: p.sequence_number,
                package_json: p.package_json.clone(),
            };
            if let Err(e) = publisher.publish(msg) {
                tracing::warn!("publishing a data package failed: {e}");
            }
        }
        for tap in taps.iter_mut() {
            tap(&batch);
        }
    })
}

/// One subscription per topic, handing converted messages to the topic's packaging queue.
fn subscribe(
    node: &Node,
    map: &DataEventMap,
    types: Vec<rclrs::MessageTypeName>,
    pipeline: &Pipeline,
) -> Result<Vec<DynamicSubscription>, StartError> {
    let mut subscriptions = Vec::new();
    for (i, (t, type_name)) in map.topics.iter().zip(types).enumerate() {
        let Some(submitter) = pipeline.submitter(i) else {
            return Err(StartError::TopicType {
                topic: t.topic.clone(),
                type_name: t.msg_type.clone(),
                reason: "has no packaging queue".into(),
            });
        };
        let options = t.topic.as_str().qos(qos::profile(&t.qos));
        let sub =
            node.create_dynamic_subscription(type_name, options, move |msg: DynamicMessage, _info: MessageInfo| {
                let received = SystemTime::now();
                let fields = convert::message_to_map(&msg);
                let stamp = convert::header_stamp(&fields);
                // Never blocks: a full queue (by count or bytes) is counted as a drop for this topic.
                submitter.try_submit(RawMessage { fields, stamp, received });
            })?;
        tracing::info!("subscribed to {} ({})", t.topic, t.msg_type);
        subscriptions.push(sub);
    }
    Ok(subscriptions)
}

/// Spin until SIGINT/SIGTERM (or the context ends).
fn spin_until_stopped(executor: &mut Executor, context: &Context, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) && context.ok() {
        for e in executor.spin(SpinOptions::default().timeout(Duration::from_millis(100))) {
            if !matches!(e, rclrs::RclrsError::RclError { code: rclrs::RclReturnCode::Timeout, .. }) {
                tracing::warn!("executor: {e}");
            }
        }
    }
}
