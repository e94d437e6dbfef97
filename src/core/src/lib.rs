//! peaqos_core: the ROS-free core of the peaqOS Edge Agent.
//!
//! From a ROS message's fields (as a JSON map, see [`value`]) to a signed data package on
//! disk: [`policy`] (the Data Event Map file) → [`field_rules`] → [`package`] (canonical JSON
//! via [`canonical_json`], EIP-191 signature with [`keys::MachineKey`]) → [`package_log`]
//! (crash-safe, group-committed) → the node's publisher, driven by [`pipeline`].
//!
//! Everything that is signed is byte-for-byte what the peaq OS SDK 0.12.1 produces and
//! verifies (`peaq_os_sdk.stream`), checked against its vectors and the SDK itself.

mod b64;
pub mod canonical_json;
pub mod field_rules;
pub mod keys;
pub mod package;
pub mod package_log;
pub mod pipeline;
pub mod policy;
pub mod value;

pub use b64::{decode as base64_decode, encode as base64_encode};
