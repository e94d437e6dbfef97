//! # peaqos_events — robot topics become peaqOS events
//!
//! ROS-free. The Data Event Map's per-topic `events:` rules ([`rules`]) are loaded and checked
//! at start; the [`engine`] turns each durable signed package into events (windows,
//! conditions, exact decimal conversion with [`decimal`], counters with resets, [`metadata`]
//! templates); the [`store`] keeps raw data, pending events and checkpoints on disk and
//! replays the package log after a restart; the [`submit`] loop hands pending events to the
//! chain client's durable outbox as `batchAll` transactions; [`counters`] feed `~/status`;
//! [`anchor`] anchors a sealed stream dataset as an event; [`error`] names every error's code.
//!
//! ```text
//! package (durable) ─► Engine::on_package ─► EventStore::persist (raw/<hash>.json, pending/<id>.json)
//!                                            └► checkpoint (state.json)
//! submit loop: pending ─► machine id? chain time clamp ─► ChainClient::enqueue_batch ─► submitted/
//! ```

pub mod anchor;
pub mod counters;
pub mod decimal;
pub mod engine;
pub mod error;
pub mod log_reader;
pub mod metadata;
pub mod processor;
pub mod rules;
pub mod store;
pub mod submit;

pub use engine::{Engine, EventOut, Outcome};
pub use error::ErrorCode;
pub use rules::{load_rules, FieldCatalog, FieldKind, Rule, RuleError};
