//! `peaqos_stream`: the ROS-free stream layer of the peaqOS Edge Agent — encrypted, hash-linked
//! chunk chains of signed data packages, buyer grants, datasets and storage.
//!
//! Formats are byte-compatible with peaq-os-sdk 0.12.1 (`peaq_os_sdk.stream`): chunk envelopes
//! `peaq.stream.chunks.v1` and buyer access `peaq.stream.buyer-access.v1` (tested against the SDK
//! in `tests/sdk_oracle.rs`, `tests/vectors.rs` and `test/stream/*.py`).
//!
//! Modules:
//! * [`crypto`], [`envelope`], [`chain`] — the chunk format: seal, verify (the SDK's checks and
//!   reasons), decrypt.
//! * [`keys`] — the machine's Ed25519 / X25519 stream keys, derived by HKDF from its secp256k1
//!   secret; EIP-191 signing/recovery.
//! * [`writer`] — [`writer::ChunkWriter`]: one topic's crash-safe chain (group-commit `sync`,
//!   recovery report, restart continuation); [`store`] — the on-disk layout and the plaintext
//!   encoding (JSON Lines of signed packages).
//! * [`grant`] — buyer access entries/files from the machine's own key entries; decrypt with grants.
//! * [`dataset`] — signed dataset manifests (RFC 6962 Merkle root over chunk ids), inclusion
//!   proofs.
//! * [`storage`] — local / S3 / Walrus destinations and the in-order durable upload queue.
//! * [`retention`] — local chunk copies deleted once stored at every destination, old grants.
//! * [`verify`] — whole-directory verification (`peaqos-stream verify`).
//! * [`streams`] — [`streams::StreamSet`]: all topics of a machine from one [`streams::StreamConfig`].
//! * [`topic_config`] — the Data Event Map's per-topic `stream:` block; [`feed`] —
//!   [`feed::TopicFeed`]: a topic's chain fed from the core's package log, nothing lost, nothing
//!   twice (what the node runs).
//!
//! Typical node usage (per topic):
//! ```no_run
//! # use std::{path::Path, time::{Duration, SystemTime}};
//! # use peaqos_stream::{keys::MachineStreamKeys, writer::*, storage::*};
//! # fn main() -> peaqos_stream::Result<()> {
//! let keys = MachineStreamKeys::from_secp256k1_secret(&[7u8; 32])?;
//! let did = keys.default_did();
//! let (mut w, report) = ChunkWriter::open(Path::new("/var/lib/peaqos/stream"), "/sensor/gps",
//!     ChunkPolicy { max_bytes: 1 << 20, max_messages: 10_000, max_age: Duration::from_secs(60) },
//!     &keys, &did, &format!("{did}#stream-ed25519"), &Recipients::default())?;
//! if let Some(s) = report.sealed { /* publish s.chunk (manifest) */ }
//! if let Some(s) = w.append(br#"{"did":"did:peaq:0x0","payload":{}}"#)? { /* publish s.chunk */ }
//! w.sync()?; // group commit: appended lines are now acknowledged
//! if let Some(s) = w.poll(SystemTime::now())? { /* publish s.chunk */ }
//! let dest = destination(&DestinationConfig::default());
//! let _ = upload_pending(w.dir(), dest.as_ref(), 16)?;
//! # Ok(()) }
//! ```
pub mod chain;
pub mod cipher_stream;
pub mod crypto;
pub mod dataset;
pub mod envelope;
pub mod error;
pub mod export;
pub mod feed;
pub mod grant;
pub mod keys;
pub mod open_chunk;
pub mod payload_store;
pub mod retention;
pub mod ros2msg;
pub mod storage;
pub mod store;
pub mod streams;
pub mod topic_config;
pub mod verify;
pub mod writer;

pub use error::{ErrorCode, Result, StreamError};
