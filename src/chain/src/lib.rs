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
//! * [`rpc`] — minimal JSON-RPC client with URL fallback (rustls + ring TLS).
//! * [`journal`] — `<data_dir>/peaqos.log` in the CLI's JSONL shape.
//! * [`outbox`] — durable, exactly-once transaction submission (the heart; see its docs): store,
//!   intent records, worker, merging, RPC refusal classification, fault-injection points.
//! * [`limits`] — operational limits (value cap, sliding-window rate limit).
//! * [`client`] — [`ChainClient`], the async flows the ROS node calls: events, gen-1 identity,
//!   activation (both generations), queries.
//! * [`mcr`] — MCR API client.
//! * [`gas_station`] — the Gas Station's funding call (SDK 0.12.1) and its durable request id.
//! * [`error`] — [`ChainError`] with `code()`/`field()`, and [`ErrorCode`], the SDK code strings.
//!
//! ## Use from the ROS node
//! ```no_run
//! # async fn demo() -> peaqos_chain::Result<()> {
//! use peaqos_chain::{ChainClient, ChainConfig, Generation, Network};
//! use peaqos_chain::validation::{Currency, MachineIdInput, SubmitEventParams, ValueInput};
//! let cfg = ChainConfig::new(Network::Peaq, Generation::Economics2, "/var/lib/peaqos").resolve()?;
//! let key: alloy::signers::local::PrivateKeySigner = std::env::var("PEAQOS_PRIVATE_KEY").unwrap().parse().unwrap();
//! let client = ChainClient::start(cfg, vec![key])?; // inside the node's tokio runtime
//! let mut status = client.subscribe_status(); // → ~/tx_status
//! let receipt = client.submit_event(&SubmitEventParams {
//!     machine_id: MachineIdInput::from_decimal("machine_id", "42")?, // ROS: decimal string
//!     event_type: 0,
//!     value: ValueInput::parse("123"),
//!     timestamp: 1_735_000_000,
//!     raw_data: Some(b"sensor:ok".to_vec()),
//!     trust_level: 0,
//!     source_chain_id: 3338,
//!     source_tx_hash: None,
//!     metadata: vec![],
//!     currency: Currency::Omitted, // "" from ROS may mean Code("") — the node decides
//! }).await;
//! match receipt {
//!     Ok(r) => println!("{:#x} {:#x}", r.tx_hash, r.data_hash),
//!     Err(e) => println!("success=false error_code={} error_field={} message={}", e.code(), e.field(), e),
//! }
//! # Ok(()) }
//! ```

pub mod bindings;
pub mod client;
pub mod config;
pub mod encoding;
pub mod error;
pub mod gas_station;
pub mod journal;
pub mod limits;
pub mod mcr;
pub mod outbox;
pub mod revert;
pub mod rpc;
pub mod validation;

pub use client::ChainClient;
pub use config::{ChainConfig, Generation, Network, OperationalLimits, ResolvedConfig};
pub use error::{ChainError, ErrorCode, Result};
pub use outbox::{IntentState, TxStatus};
