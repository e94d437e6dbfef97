//! Datasets (beyond the SDK, which defines none): a signed manifest committing to an index range
//! of one topic's chunk chain with an RFC 6962 Merkle root, and per-chunk inclusion proofs.
//!
//! Merkle tree (RFC 6962 §2.1, SHA-256): leaf `i` = the 32 raw bytes of `chunk_ids[i]`;
//! `leaf_hash = sha256(0x00 || leaf)`, `node = sha256(0x01 || left || right)`, the split point
//! of `n` leaves is the largest power of two `< n`; the empty tree hashes to `sha256("")`.
//! Audit paths are RFC 6962 §2.1.1 `PATH(m, D[n])`, verified with the RFC 9162 §2.1.3.2 algorithm.
//!
//! Dataset manifest (`<topic_dir>/datasets/<first>-<last>.json`):
//! ```json
//! {"schema":"peaqos.stream.dataset.v1","machineDid":"did:peaq:0x…","topic":"/sensor/gps",
//!  "firstIndex":0,"lastIndex":9,"firstAppendMs":…,"lastAppendMs":…,
//!  "chunkIds":["0x…",…],"merkleAlgorithm":"rfc6962-sha256","merkleRoot":"0x…",
//!  "chunkSignerPublicKeyHex":"<ed25519 hex>","createdAtMs":…,
//!  "signature":{"algorithm":"eip191-secp256k1","signer":"0x<address>","value":"0x<65 bytes>"}}
//! ```
//! The signature is EIP-191 `personal_sign` by the machine's secp256k1 key over the canonical
//! JSON (keys sorted at every level, compact, non-ASCII escaped as `\uXXXX` — the SDK's canonical
//! JSON) of the manifest **without** its `signature` member. `signer` is the recovered address.
//!
//! Inclusion proof (`peaqos-stream prove`):
//! ```json
//! {"schema":"peaqos.stream.inclusion-proof.v1","merkleRoot":"0x…","treeSize":10,"leafIndex":3,
//!  "chunkId":"0x…","auditPath":["0x…",…]}
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chain::verify_chain_stored_elsewhere;
use crate::crypto::{self, sha256};
use crate::error::{Result, StreamError};
use crate::keys::{checksum_address, eip191_recover};
use crate::store;

/// Manifest schema tag.
pub const DATASET_SCHEMA: &str = "peaqos.stream.dataset.v1";
/// Proof schema tag.
pub const PROOF_SCHEMA: &str = "peaqos.stream.inclusion-proof.v1";
/// Merkle algorithm name.
pub const MERKLE_ALGORITHM: &str = "rfc6962-sha256";

/// Signature block of a dataset manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSignature {
    pub algorithm: String,
    pub signer: String,
    pub value: String,
}

/// A dataset manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatasetManifest {
    pub schema: String,
    pub machine_did: String,
    pub topic: String,
    pub first_index: u64,
    pub last_index: u64,
    pub first_append_ms: Option<u64>,
    pub last_append_ms: Option<u64>,
    pub chunk_ids: Vec<String>,
    pub merkle_algorithm: String,
    pub merkle_root: String,
    pub chunk_signer_public_key_hex: String,
    pub created_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signature: Option<DatasetSignature>,
}

/// An RFC 6962 inclusion proof of one chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InclusionProof {
    pub schema: String,
    pub merkle_root: String,
    pub tree_size: u64,
    pub leaf_index: u64,
    pub chunk_id: String,
    pub audit_path: Vec<String>,
}

/// `sha256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    let mut v = Vec::with_capacity(leaf.len() + 1);
    v.push(0);
    v.extend_from_slice(leaf);
    sha256(&v)
}

/// `sha256(0x01 || l || r)`.
pub fn node_hash(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut v = [0u8; 65];
    v[0] = 1;
    v[1..33].copy_from_slice(l);
    v[33..].copy_from_slice(r);
    sha256(&v)
}

fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => sha256(b""),
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = split(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// Merkle tree hash over raw 32-byte leaves.
pub fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    mth(leaves)
}

/// RFC 6962 audit path of leaf `m`.
pub fn audit_path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let n = leaves.len();
    if n <= 1 || m >= n {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut p = audit_path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = audit_path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// RFC 9162 §2.1.3.2 inclusion verification.
pub fn verify_inclusion(leaf: &[u8; 32], index: u64, size: u64, path: &[[u8; 32]], root: &[u8; 32]) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnn, mut sn) = (index, size - 1);
    let mut r = leaf_hash(leaf);
    for p in path {
        if sn == 0 {
            return false;
        }
        if fnn & 1 == 1 || fnn == sn {
            r = node_hash(p, &r);
            if fnn & 1 == 0 {
                while fnn & 1 == 0 && fnn != 0 {
                    fnn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnn >>= 1;
        sn >>= 1;
    }
    sn == 0 && &r == root
}

fn leaves_of(ids: &[String]) -> Result<Vec<[u8; 32]>> {
    ids.iter().enumerate().map(|(i, id)| crypto::parse_hex_n::<32>(id, &format!("chunkIds[{i}]"))).collect()
}

fn h0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

/// Canonical JSON, the peaq SDK's (`peaqos_core::canonical_json`: keys sorted, compact,
/// non-ASCII escaped, Python float repr). Non-finite numbers cannot occur in a manifest.
pub fn canonical_json(v: &Value) -> String {
    peaqos_core::canonical_json::to_canonical_string(v).unwrap_or_default()
}

impl DatasetManifest {
    /// The bytes the EIP-191 signature covers.
    pub fn signing_bytes(&self) -> Result<Vec<u8>> {
        let mut u = self.clone();
        u.signature = None;
        let v = serde_json::to_value(&u).map_err(|e| StreamError::json("dataset manifest", e))?;
        Ok(canonical_json(&v).into_bytes())
    }

    /// Inclusion proof for `chunk_id`.
    pub fn prove(&self, chunk_id: &str) -> Result<InclusionProof> {
        let m = self.chunk_ids.iter().position(|c| c.eq_ignore_ascii_case(chunk_id)).ok_or_else(|| {
            StreamError::NotFound(format!(
                "chunk {chunk_id} in dataset {}..={} of {}",
                self.first_index, self.last_index, self.topic
            ))
        })?;
        let leaves = leaves_of(&self.chunk_ids)?;
        Ok(InclusionProof {
            schema: PROOF_SCHEMA.into(),
            merkle_root: self.merkle_root.clone(),
            tree_size: leaves.len() as u64,
            leaf_index: m as u64,
            chunk_id: self.chunk_ids[m].clone(),
            audit_path: audit_path(m, &leaves).iter().map(|h| h0x(h)).collect(),
        })
    }
}

/// Check a proof (against its own root, and `expected_root` if given).
pub fn verify_proof(proof: &InclusionProof, expected_root: Option<&str>) -> Result<()> {
    let fail = |r: &str| StreamError::check(&proof.chunk_id, "inclusion proof", r.to_string());
    if proof.schema != PROOF_SCHEMA {
        return Err(fail("unknown proof schema"));
    }
    if let Some(er) = expected_root {
        if !er.eq_ignore_ascii_case(&proof.merkle_root) {
            return Err(fail("proof root differs from the dataset's merkleRoot"));
        }
    }
    let leaf = crypto::parse_hex_n::<32>(&proof.chunk_id, "chunkId")?;
    let root = crypto::parse_hex_n::<32>(&proof.merkle_root, "merkleRoot")?;
    let path = proof
        .audit_path
        .iter()
        .enumerate()
        .map(|(i, p)| crypto::parse_hex_n::<32>(p, &format!("auditPath[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    if verify_inclusion(&leaf, proof.leaf_index, proof.tree_size, &path, &root) {
        Ok(())
    } else {
        Err(fail("audit path does not lead to merkleRoot"))
    }
}

/// EIP-191 signer callback: message bytes → 65-byte `r||s||v`. The node passes the core
/// crate's machine signer; [`crate::keys::MachineStreamKeys::eip191_sign`] also fits.
pub type Eip191Signer<'a> = &'a dyn Fn(&[u8]) -> Result<[u8; 65]>;

/// Build and sign the dataset manifest of chunks `first..=last` of `topic` under `data_dir`,
/// after verifying that segment of the chain (links, hashes, ids, signatures).
pub fn build_dataset(
    data_dir: &Path,
    topic: &str,
    first: u64,
    last: u64,
    machine_did: &str,
    created_at_ms: u64,
    signer: Eip191Signer<'_>,
) -> Result<DatasetManifest> {
    if last < first {
        return Err(StreamError::invalid("range", format!("{first}..{last} is empty")));
    }
    let dir = store::topic_dir(data_dir, topic)?;
    let mut chunks = Vec::new();
    for i in first..=last {
        chunks.push(store::load_chunk(&dir, i)?);
    }
    let prev = if first == 0 { None } else { Some(store::load_chunk(&dir, first - 1)?.chunk_id) };
    // A ciphertext deleted by retention (stored at its destinations, `storageRef` set): the
    // manifest commits to chunk ids, which the envelope's links and signature still prove.
    let v = verify_chain_stored_elsewhere(
        &chunks,
        first,
        prev.as_deref(),
        |i| std::fs::read(store::chunk_paths(&dir, i).1).ok(),
        |c| c.storage_ref.is_some() && !store::chunk_paths(&dir, c.index).1.exists(),
    );
    if !v.valid {
        let pos = v.failed_at_index.unwrap_or(0);
        return Err(StreamError::Chain {
            chain: dir.display().to_string(),
            index: first + pos as u64,
            reason: v.reason.unwrap_or_default(),
        });
    }
    let metas: Vec<_> = (first..=last).map(|i| store::load_meta(&dir, i).ok()).collect();
    let first_ms = metas.iter().flatten().map(|m| m.first_append_ms).min();
    let last_ms = metas.iter().flatten().map(|m| m.last_append_ms).max();
    let ids: Vec<String> = chunks.iter().map(|c| c.chunk_id.clone()).collect();
    let root = merkle_root(&leaves_of(&ids)?);
    let mut m = DatasetManifest {
        schema: DATASET_SCHEMA.into(),
        machine_did: machine_did.into(),
        topic: topic.into(),
        first_index: first,
        last_index: last,
        first_append_ms: first_ms,
        last_append_ms: last_ms,
        chunk_ids: ids,
        merkle_algorithm: MERKLE_ALGORITHM.into(),
        merkle_root: h0x(&root),
        chunk_signer_public_key_hex: chunks[0].signature.public_key_hex.clone(),
        created_at_ms,
        signature: None,
    };
    let msg = m.signing_bytes()?;
    let sig = signer(&msg)?;
    let addr = eip191_recover(&msg, &sig)?;
    m.signature = Some(DatasetSignature {
        algorithm: "eip191-secp256k1".into(),
        signer: checksum_address(&addr),
        value: h0x(&sig),
    });
    Ok(m)
}

/// Verify a manifest: schema, Merkle root over `chunkIds`, index count, and the EIP-191
/// signature (recovered address == `signature.signer`, and == the DID's address for
/// `did:peaq:0x…` DIDs). Returns the signer address.
pub fn verify_dataset(m: &DatasetManifest) -> Result<String> {
    let what = format!("dataset {} {}..={}", m.topic, m.first_index, m.last_index);
    let fail = |check: &'static str, r: &str| StreamError::check(what.clone(), check, r.to_string());
    if m.schema != DATASET_SCHEMA || m.merkle_algorithm != MERKLE_ALGORITHM {
        return Err(fail("schema", "unknown dataset schema or merkle algorithm"));
    }
    if m.last_index < m.first_index || (m.last_index - m.first_index).checked_add(1) != Some(m.chunk_ids.len() as u64) {
        return Err(fail("chunk count", "chunkIds length does not match the index range"));
    }
    if h0x(&merkle_root(&leaves_of(&m.chunk_ids)?)) != m.merkle_root.to_ascii_lowercase() {
        return Err(fail("merkle root", "merkleRoot does not match chunkIds"));
    }
    let s = m.signature.as_ref().ok_or_else(|| fail("signature", "manifest is unsigned"))?;
    let sig = crypto::parse_hex_n::<65>(&s.value, "signature.value")?;
    let addr = checksum_address(&eip191_recover(&m.signing_bytes()?, &sig)?);
    if !addr.eq_ignore_ascii_case(&s.signer) {
        return Err(fail("signature", "recovered signer differs from signature.signer"));
    }
    if let Some(a) = m.machine_did.strip_prefix("did:peaq:0x") {
        if !format!("0x{a}").eq_ignore_ascii_case(&addr) {
            return Err(fail("signature", "signer is not the machine DID's address"));
        }
    }
    Ok(addr)
}

/// Write a manifest to `<topic_dir>/datasets/<first>-<last>.json`; returns the path.
pub fn write_dataset(data_dir: &Path, m: &DatasetManifest) -> Result<PathBuf> {
    let d = store::topic_dir(data_dir, &m.topic)?.join("datasets");
    std::fs::create_dir_all(&d).map_err(|e| StreamError::io("create directory", &d, e))?;
    let p = d.join(format!("{}-{}.json", m.first_index, m.last_index));
    store::write_atomic(&p, &store::to_json_bytes(m, "dataset manifest")?)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n).map(|i| sha256(&(i as u64).to_be_bytes())).collect()
    }

    #[test]
    fn rfc6962_shapes() {
        assert_eq!(merkle_root(&[]), sha256(b""));
        let l = leaves(3);
        let expect = node_hash(&node_hash(&leaf_hash(&l[0]), &leaf_hash(&l[1])), &leaf_hash(&l[2]));
        assert_eq!(merkle_root(&l), expect);
    }

    #[test]
    fn every_proof_verifies_and_tampering_fails() {
        for n in 1..=17 {
            let l = leaves(n);
            let root = merkle_root(&l);
            for m in 0..n {
                let p = audit_path(m, &l);
                assert!(verify_inclusion(&l[m], m as u64, n as u64, &p, &root), "n={n} m={m}");
                assert!(!verify_inclusion(&l[(m + 1) % n], m as u64, n as u64, &p, &root) || n == 1);
                if !p.is_empty() {
                    let mut bad = p.clone();
                    bad[0][0] ^= 1;
                    assert!(!verify_inclusion(&l[m], m as u64, n as u64, &bad, &root));
                }
            }
        }
    }

    #[test]
    fn canonical_json_escapes_like_python() {
        let v: Value = serde_json::json!({"b": 1, "a": "Zürich ☃ \u{1F600}\n"});
        assert_eq!(canonical_json(&v), "{\"a\":\"Z\\u00fcrich \\u2603 \\ud83d\\ude00\\n\",\"b\":1}");
    }
}
