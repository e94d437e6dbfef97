//! `peaqos_stream`: the ROS-free stream layer of the peaqOS Edge Agent.
//!
//! * [`envelope`], [`crypto`], [`chain`]: the `peaq.stream.chunks.v1` chunk format, byte-compatible
//!   with peaq-os-sdk 0.12.1 (build, verify, decrypt).
//! * [`keys`]: the machine's Ed25519 / X25519 stream keys, derived from its secp256k1 secret.
pub mod chain;
pub mod crypto;
pub mod dataset;
pub mod envelope;
pub mod error;
pub mod grant;
pub mod keys;
pub mod storage;
pub mod store;
pub mod verify;
pub mod writer;

pub use error::{Result, StreamError};
