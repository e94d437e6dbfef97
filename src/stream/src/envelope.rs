//! Chunk envelope (`peaq.stream.chunks.v1`) and buyer access (`peaq.stream.buyer-access.v1`)
//! documents, field for field as peaq-os-sdk 0.12.1 `stream/types/chunk.py` and
//! `stream/types/buyer_access.py`.
//!
//! Two JSON spellings exist and both are read:
//! * the SDK's Python form (`dataclasses.asdict`): snake_case keys (`chunk_id`, `key_recipients`…);
//! * the CLI / P2P wire form (`_internal/frames.py::_chunk_to_camel`): camelCase keys
//!   (`chunkId`, `keyRecipients`, `wrappedKeyHex`…).
//!
//! Files written by this crate use the camelCase wire form (what `peaqos stream publish` writes as
//! `chunk-{n}.json`); [`to_snake_json`](Chunk::to_snake_json) gives the Python form.
//!
//! Envelope shape:
//! ```json
//! {"schemaVersion":"peaq.stream.chunks.v1","chunkId":"0x…","previousChunkId":null|"0x…",
//!  "index":0,"encryptedDataHash":"0x…","plaintextHash":"0x…","storageRef":null|"file:///…",
//!  "encryption":{"algorithm":"xchacha20-poly1305","nonce":"<48 hex>","keyCommitment":"sha256:…",
//!    "keyRecipients":[{"recipientId":"machine-1","recipientType":"machine",
//!      "algorithm":"x25519-sealedbox","publicKeyHex":"…","wrappedKeyHex":"<160 hex>"}]},
//!  "signature":{"algorithm":"ed25519","machineDid":"did:peaq:…","keyId":"…",
//!    "publicKeyHex":"…","value":"<128 hex>"}}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, StreamError};

/// `schema_version` of chunk envelopes.
pub const CHUNK_SCHEMA_VERSION: &str = "peaq.stream.chunks.v1";
/// `schema_version` of buyer access entries and files.
pub const BUYER_ACCESS_SCHEMA_VERSION: &str = "peaq.stream.buyer-access.v1";
/// Default maximum size of one buyer access file (500 KiB), as the SDK.
pub const DEFAULT_BUYER_ACCESS_FILE_SIZE: usize = 500 * 1024;
/// Chunk cipher name.
pub const CHUNK_CIPHER: &str = "xchacha20-poly1305";
/// Key wrapping algorithm name.
pub const KEY_WRAP_ALGORITHM: &str = "x25519-sealedbox";
/// Chunk signature algorithm name.
pub const SIGNATURE_ALGORITHM: &str = "ed25519";

/// Role of a key recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientType {
    Owner,
    Operator,
    Machine,
    Buyer,
}

/// One wrapped copy of a chunk key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecipient {
    #[serde(alias = "recipientId")]
    pub recipient_id: String,
    #[serde(alias = "recipientType")]
    pub recipient_type: RecipientType,
    pub algorithm: String,
    #[serde(alias = "publicKeyHex")]
    pub public_key_hex: String,
    #[serde(alias = "wrappedKeyHex")]
    pub wrapped_key_hex: String,
}

/// Per-chunk encryption block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkEncryption {
    pub algorithm: String,
    pub nonce: String,
    #[serde(alias = "keyCommitment")]
    pub key_commitment: String,
    #[serde(alias = "keyRecipients")]
    pub key_recipients: Vec<KeyRecipient>,
}

/// Inline Ed25519 signature over `encrypted_data_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkSignature {
    pub algorithm: String,
    #[serde(alias = "machineDid")]
    pub machine_did: String,
    #[serde(alias = "keyId")]
    pub key_id: String,
    #[serde(alias = "publicKeyHex")]
    pub public_key_hex: String,
    pub value: String,
}

/// A chunk envelope (the "manifest" of one chunk: hashes, encryption metadata, storage
/// reference, signature; never the data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    #[serde(alias = "schemaVersion")]
    pub schema_version: String,
    #[serde(alias = "chunkId")]
    pub chunk_id: String,
    #[serde(alias = "previousChunkId", default)]
    pub previous_chunk_id: Option<String>,
    pub index: u64,
    #[serde(alias = "encryptedDataHash")]
    pub encrypted_data_hash: String,
    #[serde(alias = "plaintextHash")]
    pub plaintext_hash: String,
    #[serde(alias = "storageRef", default)]
    pub storage_ref: Option<String>,
    pub encryption: ChunkEncryption,
    pub signature: ChunkSignature,
}

/// One buyer grant for one chunk (`BuyerAccessEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuyerAccessEntry {
    #[serde(alias = "chunkId")]
    pub chunk_id: String,
    pub buyer: KeyRecipient,
    #[serde(alias = "schemaVersion", default = "buyer_schema")]
    pub schema_version: String,
}

fn buyer_schema() -> String {
    BUYER_ACCESS_SCHEMA_VERSION.to_string()
}

/// A batch of buyer grants (`BuyerAccessFile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuyerAccessFile {
    #[serde(alias = "schemaVersion")]
    pub schema_version: String,
    #[serde(alias = "fileName", default)]
    pub file_name: String,
    #[serde(alias = "buyerPublicKeyHex")]
    pub buyer_public_key_hex: String,
    pub entries: Vec<BuyerAccessEntry>,
}

/// snake_case → camelCase for one key.
fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut up = false;
    for c in key.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Recursively rename object keys to camelCase (order preserved).
pub fn camelize(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (camel(&k), camelize(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(camelize).collect()),
        other => other,
    }
}

fn to_value<T: Serialize>(t: &T, what: &str) -> Result<Value> {
    serde_json::to_value(t).map_err(|e| StreamError::json(what, e))
}

impl Chunk {
    /// Python (`asdict`) form.
    pub fn to_snake_json(&self) -> Result<Value> {
        to_value(self, "chunk envelope")
    }
    /// CLI / P2P wire form (camelCase).
    pub fn to_wire_json(&self) -> Result<Value> {
        Ok(camelize(self.to_snake_json()?))
    }
    /// Parse either spelling.
    pub fn from_json_bytes(bytes: &[u8], what: &str) -> Result<Chunk> {
        serde_json::from_slice(bytes).map_err(|e| StreamError::json(what, e))
    }
    /// The recipient entry of the given type, if any (first match, as the SDK).
    pub fn recipient(&self, t: RecipientType) -> Option<&KeyRecipient> {
        self.encryption.key_recipients.iter().find(|r| r.recipient_type == t)
    }
    /// The machine's own key entry: a `Machine` recipient with the X25519 public key
    /// `machine_x25519_public` (its hex compared case-insensitively). `None` when the chunk has none.
    pub fn machine_recipient(&self, machine_x25519_public: &[u8; 32]) -> Option<&KeyRecipient> {
        let machine_pk = hex::encode(machine_x25519_public);
        self.encryption
            .key_recipients
            .iter()
            .find(|r| r.recipient_type == RecipientType::Machine && r.public_key_hex.eq_ignore_ascii_case(&machine_pk))
    }
}

impl BuyerAccessEntry {
    /// Python (`asdict`) form.
    pub fn to_snake_json(&self) -> Result<Value> {
        to_value(self, "buyer access entry")
    }
    /// Wire form used in grant files: `{"chunkId","buyer":{recipientId,…}}`, plus
    /// `schemaVersion` (as the ROS 2 agent's buyer access items).
    pub fn to_wire_json(&self) -> Result<Value> {
        Ok(camelize(self.to_snake_json()?))
    }
}

impl BuyerAccessFile {
    /// Python (`asdict`) form; its compact serialization is what the SDK measures for batching.
    pub fn to_snake_json(&self) -> Result<Value> {
        to_value(self, "buyer access file")
    }
    /// File content as written to disk (CLI wire form):
    /// `{"schemaVersion","buyerPublicKeyHex","entries":[{"chunkId","buyer":{…},"schemaVersion"}]}`.
    pub fn to_wire_json(&self) -> Result<Value> {
        let mut v = camelize(self.to_snake_json()?);
        if let Value::Object(m) = &mut v {
            m.shift_remove("fileName");
        }
        Ok(v)
    }
    /// Parse either spelling.
    pub fn from_json_bytes(bytes: &[u8], what: &str) -> Result<BuyerAccessFile> {
        serde_json::from_slice(bytes).map_err(|e| StreamError::json(what, e))
    }
}
