//! # peaqos_chain — ROS-free peaqOS chain client
//!
//! Talks to both peaqOS contract generations (SPEC §0): gen 2 "Economics 2.0" (EventRegistry 2.0,
//! `MachineStateAndSync.activateMachine`) and gen 1 "legacy" (IdentityRegistry, MachineNFT, DID
//! precompile). Modules:
//! * [`config`] — generation, network presets, env/explicit overrides, limits.
//! * [`bindings`] — `sol!` declarations of the members used.
//! * [`validation`] — SDK-identical `submit_event` validation.
//! * [`encoding`] — calldata builders, byte-identical to the SDK.
//! * [`revert`] — revert data → SDK error codes.
//! * [`rpc`] — minimal JSON-RPC client with URL fallback.
//! * [`journal`] — `<data_dir>/peaqos.log` in the CLI's JSONL shape.
//! * [`outbox`] — durable, exactly-once transaction submission (the heart; see its docs).
//! * [`limits`] — operational limits (value cap, sliding-window rate limit).
//! * [`client`] — [`ChainClient`], the async flows the ROS node calls.
//! * [`mcr`] — MCR API client.
//! * [`error`] — [`ChainError`] with `code()`/`field()`.

pub mod bindings;
pub mod client;
pub mod config;
pub mod encoding;
pub mod error;
pub mod journal;
pub mod limits;
pub mod mcr;
pub mod outbox;
pub mod revert;
pub mod rpc;
pub mod validation;

pub use client::ChainClient;
pub use config::{ChainConfig, Generation, Network, OperationalLimits, ResolvedConfig};
pub use error::{ChainError, Result};
pub use outbox::{IntentState, TxStatus};
