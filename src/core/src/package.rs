//! Signed data packages, as the SDK's `build_signed_data_package` makes them
//! (`peaq_os_sdk/stream/signing.py`, SPEC §5.2, vector §8.6).
//!
//! Signed bytes = canonical JSON of
//! `{"did", "payload", "schemaVersion", "sequenceNumber", "timestamp"}` (keys in canonical
//! order), signed with EIP-191 `personal_sign` by the machine key.
//! Wire form (`DataPackage::to_json`, one line in the package log and what the node
//! publishes) = canonical JSON of
//! `{"did", "payload", "schemaVersion", "sequenceNumber", "signature", "signingKeyId", "timestamp"}`
//! with `signature` = `0x` + 130 lowercase hex digits (`r ‖ s ‖ v`, v = 27/28). The topic is
//! not part of a package (as in the SDK).
//!
//! Verification (`verify_package_json`) follows the SDK's `verify_data_package`: the DID must
//! be `did:peaq:0x` + 40 hex digits, and the recovered signer must equal that address
//! (case-insensitive).

use serde_json::{Map, Value};

use crate::canonical_json::{self, CanonicalError};
use crate::keys::{self, MachineKey};

/// A signed data package.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPackage {
    /// Machine DID.
    pub did: String,
    /// ISO 8601 capture time.
    pub timestamp: String,
    /// Package schema version (e.g. `1.0.0`).
    pub schema_version: String,
    /// Per-topic sequence number.
    pub sequence_number: u64,
    /// Payload after field rules.
    pub payload: Map<String, Value>,
    /// EIP-191 signature `r ‖ s ‖ v`.
    pub signature: [u8; 65],
    /// Signing key id.
    pub signing_key_id: String,
}

/// Package building and verification errors.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The payload cannot be serialised canonically.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    /// `schemaVersion` is blank (the SDK refuses it too).
    #[error("schema_version is required (blank)")]
    BlankSchemaVersion,
    /// The package JSON is not valid JSON or lacks/mistypes a field.
    #[error("package JSON: {0}")]
    Malformed(String),
    /// The DID is not `did:peaq:0x<40 hex>`.
    #[error("Invalid package DID format: {0}")]
    BadDid(String),
    /// The signature cannot be parsed or recovered.
    #[error("Invalid signature: {0}")]
    BadSignature(String),
    /// The recovered signer is not the DID's address.
    #[error("Recovered signer {recovered} does not match package DID {did}")]
    SignerMismatch {
        /// The package DID.
        did: String,
        /// The recovered address.
        recovered: String,
    },
}

/// Write the signed bytes into `out`; returns the offset of `"timestamp"` in `out` (where the
/// wire form inserts `signature` and `signingKeyId`).
fn write_signable(
    did: &str,
    timestamp: &str,
    schema_version: &str,
    seq: u64,
    payload: &Map<String, Value>,
    out: &mut Vec<u8>,
) -> Result<usize, CanonicalError> {
    out.extend_from_slice(b"{\"did\":");
    canonical_json::write_str(did, out);
    out.extend_from_slice(b",\"payload\":");
    canonical_json::write_canonical_map(payload, out)?;
    out.extend_from_slice(b",\"schemaVersion\":");
    canonical_json::write_str(schema_version, out);
    out.extend_from_slice(b",\"sequenceNumber\":");
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.push(b',');
    let ts_at = out.len();
    out.extend_from_slice(b"\"timestamp\":");
    canonical_json::write_str(timestamp, out);
    out.push(b'}');
    Ok(ts_at)
}

/// The canonical signed bytes of a package's fields.
pub fn signable_bytes(
    did: &str,
    timestamp: &str,
    schema_version: &str,
    seq: u64,
    payload: &Map<String, Value>,
) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_signable(did, timestamp, schema_version, seq, payload, &mut out)?;
    Ok(out)
}

/// A package in both forms: the struct and its canonical wire JSON.
#[derive(Debug, Clone)]
pub struct SignedPackage {
    /// The package.
    pub package: DataPackage,
    /// `package.to_json()`, computed once while signing.
    pub json: String,
}

/// Build and sign a package (`payload` = output of the field rules).
pub fn build_signed_package(
    did: &str,
    key: &MachineKey,
    timestamp_iso: &str,
    schema_version: &str,
    seq: u64,
    payload: Map<String, Value>,
) -> Result<DataPackage, PackageError> {
    Ok(build_signed_package_json(did, key, timestamp_iso, schema_version, seq, payload)?.package)
}

/// Build and sign a package and produce its wire JSON in the same pass (the pipeline's path).
pub fn build_signed_package_json(
    did: &str,
    key: &MachineKey,
    timestamp_iso: &str,
    schema_version: &str,
    seq: u64,
    payload: Map<String, Value>,
) -> Result<SignedPackage, PackageError> {
    if schema_version.trim().is_empty() {
        return Err(PackageError::BlankSchemaVersion);
    }
    let mut buf = Vec::with_capacity(512);
    let ts_at = write_signable(did, timestamp_iso, schema_version, seq, &payload, &mut buf)?;
    let signature = key.sign_eip191(&buf);
    let json = splice_signature(&buf, ts_at, &signature, key.key_id());
    Ok(SignedPackage {
        package: DataPackage {
            did: did.to_owned(),
            timestamp: timestamp_iso.to_owned(),
            schema_version: schema_version.to_owned(),
            sequence_number: seq,
            payload,
            signature,
            signing_key_id: key.key_id().to_owned(),
        },
        json,
    })
}

fn splice_signature(signable: &[u8], ts_at: usize, signature: &[u8; 65], key_id: &str) -> String {
    let mut out = Vec::with_capacity(signable.len() + 200 + key_id.len());
    out.extend_from_slice(&signable[..ts_at]);
    out.extend_from_slice(b"\"signature\":\"0x");
    let mut hexbuf = [0u8; 130];
    // Cannot fail: the buffer is exactly 2 × 65 bytes.
    let _ = hex::encode_to_slice(signature, &mut hexbuf);
    out.extend_from_slice(&hexbuf);
    out.extend_from_slice(b"\",\"signingKeyId\":");
    canonical_json::write_str(key_id, &mut out);
    out.push(b',');
    out.extend_from_slice(&signable[ts_at..]);
    // All canonical output is ASCII.
    String::from_utf8(out).unwrap_or_default()
}

impl DataPackage {
    /// The signed bytes of this package.
    pub fn signable_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        signable_bytes(&self.did, &self.timestamp, &self.schema_version, self.sequence_number, &self.payload)
    }

    /// `0x` + 130 hex digits.
    pub fn signature_hex(&self) -> String {
        format!("0x{}", hex::encode(self.signature))
    }

    /// Canonical wire JSON (camelCase keys).
    pub fn to_json(&self) -> Result<String, CanonicalError> {
        let mut buf = Vec::with_capacity(512);
        let ts_at = write_signable(
            &self.did,
            &self.timestamp,
            &self.schema_version,
            self.sequence_number,
            &self.payload,
            &mut buf,
        )?;
        Ok(splice_signature(&buf, ts_at, &self.signature, &self.signing_key_id))
    }

    /// Parse the wire JSON (does not verify).
    pub fn from_json(text: &str) -> Result<DataPackage, PackageError> {
        let v: Value = serde_json::from_str(text).map_err(|e| PackageError::Malformed(e.to_string()))?;
        let Value::Object(mut m) = v else {
            return Err(PackageError::Malformed("not a JSON object".into()));
        };
        let mut take_str = |k: &str| -> Result<String, PackageError> {
            match m.remove(k) {
                Some(Value::String(s)) => Ok(s),
                Some(_) => Err(PackageError::Malformed(format!("{k}: not a string"))),
                None => Err(PackageError::Malformed(format!("{k}: missing"))),
            }
        };
        let did = take_str("did")?;
        let timestamp = take_str("timestamp")?;
        let schema_version = take_str("schemaVersion")?;
        let sig_hex = take_str("signature")?;
        let signing_key_id = take_str("signingKeyId")?;
        let sequence_number = match m.remove("sequenceNumber") {
            Some(Value::Number(n)) => {
                n.as_u64().ok_or_else(|| PackageError::Malformed("sequenceNumber: not a u64".into()))?
            }
            _ => return Err(PackageError::Malformed("sequenceNumber: missing or not a number".into())),
        };
        let payload = match m.remove("payload") {
            Some(Value::Object(p)) => p,
            _ => return Err(PackageError::Malformed("payload: missing or not an object".into())),
        };
        let sig_body = sig_hex.strip_prefix("0x").unwrap_or(&sig_hex);
        let mut signature = [0u8; 65];
        hex::decode_to_slice(sig_body, &mut signature)
            .map_err(|e| PackageError::BadSignature(format!("signature: {e}")))?;
        Ok(DataPackage { did, timestamp, schema_version, sequence_number, payload, signature, signing_key_id })
    }

    /// Verify as the SDK's `verify_data_package` does; returns the checksummed signer address.
    pub fn verify(&self) -> Result<String, PackageError> {
        self.verify_signable(&self.signable_bytes()?)
    }

    /// [`verify`](Self::verify), also returning the signed bytes and where the payload's
    /// canonical JSON lies in them (exactly the bytes the signature covers), so a caller that
    /// needs the payload as JSON does not serialize it again.
    pub fn verify_with_signable(&self) -> Result<(String, Vec<u8>, std::ops::Range<usize>), PackageError> {
        let bytes = self.signable_bytes()?;
        let signer = self.verify_signable(&bytes)?;
        let mut did = Vec::with_capacity(self.did.len() + 2);
        canonical_json::write_str(&self.did, &mut did);
        let start = b"{\"did\":".len() + did.len() + b",\"payload\":".len();
        // Only the schema version, sequence number and timestamp follow the payload, and no
        // canonical string holds a bare quote: the last `,"schemaVersion":` is the top-level key.
        let key = b",\"schemaVersion\":";
        let end = bytes
            .windows(key.len())
            .rposition(|w| w == key)
            .filter(|&e| e >= start)
            .ok_or_else(|| PackageError::Malformed("signed bytes without a top-level schemaVersion".into()))?;
        Ok((signer, bytes, start..end))
    }

    fn verify_signable(&self, bytes: &[u8]) -> Result<String, PackageError> {
        let addr = self
            .did
            .strip_prefix("did:peaq:")
            .filter(|a| a.len() == 42 && a.starts_with("0x") && a[2..].bytes().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| PackageError::BadDid(self.did.clone()))?;
        let recovered =
            keys::recover_eip191(bytes, &self.signature).map_err(|e| PackageError::BadSignature(e.to_string()))?;
        let recovered = keys::checksum_address(&recovered);
        if !recovered.eq_ignore_ascii_case(addr) {
            return Err(PackageError::SignerMismatch { did: self.did.clone(), recovered });
        }
        Ok(recovered)
    }
}

/// Parse and verify a package's wire JSON; returns the signer's checksummed address.
pub fn verify_package_json(text: &str) -> Result<String, PackageError> {
    DataPackage::from_json(text)?.verify()
}
