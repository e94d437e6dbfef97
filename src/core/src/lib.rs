//! peaqos_core: the ROS-free core of the peaqOS Edge Agent.
//!
//! From a ROS message's fields (as a JSON map, see [`value`]) to a signed data package on
//! disk: [`policy`] (the Data Event Map file) → [`field_rules`] → [`package`] (canonical JSON
//! via [`canonical_json`], EIP-191 signature with [`keys::MachineKey`]) → [`package_log`]
//! (crash-safe, group-committed) → the node's publisher, driven by [`pipeline`].
//!
//! Everything that is signed is byte-for-byte what the peaq OS SDK 0.12.1 produces and
//! verifies (`peaq_os_sdk.stream`), checked against its vectors and the SDK itself.
//!
//! How the node uses it:
//! ```no_run
//! use std::path::Path;
//! use std::time::SystemTime;
//! use peaqos_core::{keys, pipeline, policy, value};
//!
//! let map = policy::load(Path::new("config/data_event_map.yaml"))?;
//! let key = keys::MachineKey::load(Some(Path::new("/var/lib/peaqos/keys/machine.key")))?;
//! let data_dir = Path::new("/var/lib/peaqos");
//! let field_key = keys::FieldKey::load(data_dir)?;
//! let cfg = pipeline::PipelineConfig::new(data_dir.to_owned());
//! let p = pipeline::Pipeline::start(cfg, key, field_key, &map, Box::new(|batch| {
//!     for published in batch {
//!         // publish published.package_json on the node's output topic
//!         let _ = (published.topic, published.sequence_number, published.package_json);
//!     }
//! }))?;
//! let submitter = p.submitter(0).expect("topic 0 exists");
//! // in the subscription callback of topics[0]:
//! let mut fields = serde_json::Map::new();
//! fields.insert("voltage".into(), value::float32(12.6));
//! fields.insert("data".into(), value::bytes(&[1, 2, 3]));
//! let accepted = submitter.try_submit(pipeline::RawMessage {
//!     fields,
//!     stamp: Some(value::Timestamp { sec: 1_735_000_000, nanosec: 5 }),
//!     received: SystemTime::now(),
//! });
//! # let _ = accepted;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod b64;
pub mod canonical_json;
pub mod catalog;
pub mod duration;
pub mod field_rules;
pub mod keys;
pub mod keystore;
pub mod memory;
pub mod package;
pub mod package_log;
pub mod payload;
pub mod pipeline;
pub mod policy;
pub mod retention;
pub mod text;
pub mod value;

pub use b64::{decode as base64_decode, encode as base64_encode};
