//! Building, verifying and decrypting `peaq.stream.chunks.v1` chunks — the Rust twin of
//! peaq-os-sdk 0.12.1 `stream/chunking.py` (`build_chunk_chain`, `verify_chunk_chain`,
//! `decrypt_chunk`).
//!
//! Sealing one chunk: fresh 32-byte key and 24-byte nonce from the [`ChunkRandom`] source,
//! `encrypted_data = XChaCha20-Poly1305(key, nonce, plaintext) = ct || tag`, hashes, key
//! commitment, Ed25519 signature over the `encrypted_data_hash` string, `chunk_id` linking to
//! the previous chunk, and the key wrapped (sealed box, fresh ephemeral key each) for every
//! recipient in the given order. The chunk key is zeroized after use.
//!
//! [`verify_chain`] performs exactly the SDK's checks in the SDK's order, with the SDK's reason
//! strings (`"hash_mismatch"`, `"invalid_signature"`, …) so results can be compared 1:1.

use zeroize::Zeroizing;

use crate::crypto::{self, CHUNK_KEY_LEN, XCHACHA_NONCE_LEN};
use crate::envelope::{
    Chunk, ChunkEncryption, ChunkSignature, KeyRecipient, RecipientType, CHUNK_CIPHER, CHUNK_SCHEMA_VERSION,
    KEY_WRAP_ALGORITHM, SIGNATURE_ALGORITHM,
};
use crate::error::{Result, StreamError};

/// What a random draw is for (lets test sources reproduce the SDK vectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandomPurpose {
    /// 32-byte per-chunk key.
    ChunkKey,
    /// 24-byte XChaCha20 nonce.
    Nonce,
    /// 32-byte X25519 ephemeral secret of one sealed box.
    EphemeralSecret,
}

/// Source of the per-chunk randomness. Production uses [`OsRandom`].
pub trait ChunkRandom: Send {
    /// Fill `buf` with random bytes for `purpose`.
    fn fill(&mut self, purpose: RandomPurpose, buf: &mut [u8]) -> Result<()>;
}

/// The operating system CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl ChunkRandom for OsRandom {
    fn fill(&mut self, _purpose: RandomPurpose, buf: &mut [u8]) -> Result<()> {
        getrandom::getrandom(buf).map_err(|e| StreamError::invalid("os randomness", e.to_string()))
    }
}

/// Deterministic source reproducing `vectors/stream.json` (SDK run with `os.urandom` call `k`
/// returning `bytes([0x40 + k]) * n` and every sealed-box ephemeral secret `0x77 * 32`).
/// **Tests only**: never use it for real data.
#[derive(Debug, Default, Clone)]
pub struct VectorRandom {
    calls: u8,
}

impl ChunkRandom for VectorRandom {
    fn fill(&mut self, purpose: RandomPurpose, buf: &mut [u8]) -> Result<()> {
        match purpose {
            RandomPurpose::EphemeralSecret => buf.fill(0x77),
            _ => {
                self.calls = self.calls.wrapping_add(1);
                buf.fill(0x40u8.wrapping_add(self.calls));
            }
        }
        Ok(())
    }
}

/// The machine's chunk signing identity.
pub struct ChunkSigner {
    seed: Zeroizing<[u8; 32]>,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// `signature.machine_did`.
    pub machine_did: String,
    /// `signature.key_id`.
    pub key_id: String,
}

impl std::fmt::Debug for ChunkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSigner")
            .field("public_key", &hex::encode(self.public_key))
            .field("machine_did", &self.machine_did)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ChunkSigner {
    /// From an Ed25519 seed; `machine_did` and `key_id` must be non-blank (SDK rule).
    pub fn new(seed: [u8; 32], machine_did: &str, key_id: &str) -> Result<Self> {
        if machine_did.trim().is_empty() {
            return Err(StreamError::invalid("machine_did", "must be a non-empty string"));
        }
        if key_id.trim().is_empty() {
            return Err(StreamError::invalid("machine_key_id", "must be a non-empty string"));
        }
        let public_key = crypto::ed25519_public(&seed);
        Ok(Self { seed: Zeroizing::new(seed), public_key, machine_did: machine_did.into(), key_id: key_id.into() })
    }
    pub(crate) fn sign(&self, encrypted_data_hash: &str) -> String {
        crypto::sign_encrypted_data_hash(encrypted_data_hash, &self.seed)
    }
}

/// A recipient the chunk key is wrapped for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientSpec {
    /// `recipient_id` (SDK defaults `owner-1`, `operator-1`, `machine-1`).
    pub recipient_id: String,
    /// Role.
    pub recipient_type: RecipientType,
    /// X25519 public key.
    pub public_key: [u8; 32],
}

/// Wrap `key` for one recipient.
pub fn wrap_key(
    key: &[u8],
    id: &str,
    t: RecipientType,
    pk: &[u8; 32],
    rng: &mut dyn ChunkRandom,
) -> Result<KeyRecipient> {
    crypto::check_x25519_public(pk, &format!("public key of recipient {id}"))?;
    let mut esk = Zeroizing::new([0u8; 32]);
    rng.fill(RandomPurpose::EphemeralSecret, esk.as_mut())?;
    Ok(KeyRecipient {
        recipient_id: id.to_string(),
        recipient_type: t,
        algorithm: KEY_WRAP_ALGORITHM.to_string(),
        public_key_hex: hex::encode(pk),
        wrapped_key_hex: hex::encode(crypto::sealed_box_seal(key, pk, &esk)),
    })
}

/// Encrypt, hash, sign and link one chunk. Returns the envelope and the ciphertext.
pub fn seal_chunk(
    plaintext: &[u8],
    index: u64,
    previous_chunk_id: Option<&str>,
    signer: &ChunkSigner,
    recipients: &[RecipientSpec],
    rng: &mut dyn ChunkRandom,
) -> Result<(Chunk, Vec<u8>)> {
    let mut key = Zeroizing::new([0u8; CHUNK_KEY_LEN]);
    rng.fill(RandomPurpose::ChunkKey, key.as_mut())?;
    let mut nonce = [0u8; XCHACHA_NONCE_LEN];
    rng.fill(RandomPurpose::Nonce, &mut nonce)?;

    let (encrypted, pt_digest) = crypto::xchacha_encrypt_and_hash(&key, &nonce, plaintext)?;
    let encrypted_data_hash = crypto::hash_hex0x(&encrypted);
    let chunk = envelope_for(
        &key,
        &nonce,
        &encrypted_data_hash,
        &pt_digest,
        index,
        previous_chunk_id,
        signer,
        recipients,
        rng,
    )?;
    Ok((chunk, encrypted))
}

/// The envelope of a chunk whose ciphertext is already made (by [`seal_chunk`], or written as it
/// grew: [`crate::open_chunk`]): key commitment, signature over `encrypted_data_hash`, link,
/// and the key wrapped for every recipient in order.
#[allow(clippy::too_many_arguments)]
pub fn envelope_for(
    key: &[u8; CHUNK_KEY_LEN],
    nonce: &[u8; XCHACHA_NONCE_LEN],
    encrypted_data_hash: &str,
    plaintext_digest: &[u8; 32],
    index: u64,
    previous_chunk_id: Option<&str>,
    signer: &ChunkSigner,
    recipients: &[RecipientSpec],
    rng: &mut dyn ChunkRandom,
) -> Result<Chunk> {
    let plaintext_hash = format!("0x{}", hex::encode(plaintext_digest));
    let key_commitment = crypto::key_commitment(key.as_ref());
    let value = signer.sign(encrypted_data_hash);
    let chunk_id = crypto::compute_chunk_id(previous_chunk_id, encrypted_data_hash, index);
    let key_recipients = recipients
        .iter()
        .map(|r| wrap_key(key.as_ref(), &r.recipient_id, r.recipient_type, &r.public_key, rng))
        .collect::<Result<Vec<_>>>()?;
    Ok(Chunk {
        schema_version: CHUNK_SCHEMA_VERSION.to_string(),
        chunk_id,
        previous_chunk_id: previous_chunk_id.map(str::to_string),
        index,
        encrypted_data_hash: encrypted_data_hash.to_string(),
        plaintext_hash,
        storage_ref: None,
        encryption: ChunkEncryption {
            algorithm: CHUNK_CIPHER.to_string(),
            nonce: hex::encode(nonce),
            key_commitment,
            key_recipients,
        },
        signature: ChunkSignature {
            algorithm: SIGNATURE_ALGORITHM.to_string(),
            machine_did: signer.machine_did.clone(),
            key_id: signer.key_id.clone(),
            public_key_hex: hex::encode(signer.public_key),
            value,
        },
    })
}

/// A built chain (the SDK's `ChunkChain` + the ciphertext sidecar, index-aligned).
#[derive(Debug, Clone)]
pub struct BuiltChain {
    /// `"0x" + sha256(input)`.
    pub source_hash: String,
    /// Chunks, index 0..n.
    pub chunks: Vec<Chunk>,
    /// Ciphertexts, same order.
    pub encrypted_data: Vec<Vec<u8>>,
    /// Chain DID.
    pub did: String,
    /// Slice size.
    pub chunk_size: usize,
}

/// The SDK's `build_chunk_chain`: split `input` into `chunk_size` slices (empty input gives one
/// empty chunk) and seal them in order for `recipients` (SDK order: owner, operator, machine).
pub fn build_chunk_chain(
    input: &[u8],
    chunk_size: usize,
    did: &str,
    signer: &ChunkSigner,
    recipients: &[RecipientSpec],
    rng: &mut dyn ChunkRandom,
) -> Result<BuiltChain> {
    if chunk_size == 0 {
        return Err(StreamError::invalid("chunk_size", "must be a positive integer"));
    }
    let slices: Vec<&[u8]> = if input.is_empty() { vec![&input[..0]] } else { input.chunks(chunk_size).collect() };
    let mut prev: Option<String> = None;
    let mut chunks = Vec::with_capacity(slices.len());
    let mut data = Vec::with_capacity(slices.len());
    for (i, s) in slices.into_iter().enumerate() {
        let (c, ct) = seal_chunk(s, i as u64, prev.as_deref(), signer, recipients, rng)?;
        prev = Some(c.chunk_id.clone());
        chunks.push(c);
        data.push(ct);
    }
    Ok(BuiltChain { source_hash: crypto::hash_hex0x(input), chunks, encrypted_data: data, did: did.into(), chunk_size })
}

/// The SDK's `ChunkChainVerificationResult`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainVerification {
    pub valid: bool,
    pub total_chunks: Option<usize>,
    pub reason: Option<String>,
    pub failed_at_index: Option<usize>,
}

impl ChainVerification {
    fn fail(reason: &str, at: usize) -> Self {
        Self { valid: false, total_chunks: None, reason: Some(reason.to_string()), failed_at_index: Some(at) }
    }
}

/// Reason strings of the SDK's `verify_chunk_chain`.
pub mod reasons {
    pub const EMPTY: &str = "Chunk chain is empty";
    pub const NOT_SEQUENTIAL: &str = "Chunk index is not sequential";
    pub const FIRST_PREVIOUS: &str = "First chunk must have null previous_chunk_id";
    pub const LINK: &str = "previous_chunk_id does not match preceding chunk_id";
    pub const MISSING_DATA: &str = "encrypted_data sidecar missing for chunk";
    pub const HASH_MISMATCH: &str = "hash_mismatch";
    pub const CHUNK_ID: &str = "chunk_id does not match linkage fields";
    pub const INVALID_SIGNATURE: &str = "invalid_signature";
}

/// Verify a chain that starts at index 0 (SDK `verify_chunk_chain`). `ciphertext(index)` returns
/// the stored ciphertext of a chunk, `None` if missing.
pub fn verify_chain(chunks: &[Chunk], ciphertext: impl FnMut(u64) -> Option<Vec<u8>>) -> ChainVerification {
    verify_chain_from(chunks, 0, None, ciphertext)
}

/// Like [`verify_chain`] for a segment starting at `first_index` whose first chunk must link to
/// `expected_previous` (`None` for index 0). Positions are reported relative to the segment.
pub fn verify_chain_from(
    chunks: &[Chunk],
    first_index: u64,
    expected_previous: Option<&str>,
    ciphertext: impl FnMut(u64) -> Option<Vec<u8>>,
) -> ChainVerification {
    verify_chain_stored_elsewhere(chunks, first_index, expected_previous, ciphertext, |_| false)
}

/// [`verify_chain_from`] where a chunk for which `stored_elsewhere` is true may lack its
/// ciphertext (deleted locally by retention once stored at its destinations): its links,
/// `chunk_id` and signature are still checked from the envelope (they cover
/// `encrypted_data_hash`), only the hash of the ciphertext itself is not.
pub fn verify_chain_stored_elsewhere(
    chunks: &[Chunk],
    first_index: u64,
    expected_previous: Option<&str>,
    mut ciphertext: impl FnMut(u64) -> Option<Vec<u8>>,
    stored_elsewhere: impl Fn(&Chunk) -> bool,
) -> ChainVerification {
    use reasons::*;
    if chunks.is_empty() {
        return ChainVerification::fail(EMPTY, 0);
    }
    let mut expected_prev: Option<String> = expected_previous.map(str::to_string);
    for (pos, c) in chunks.iter().enumerate() {
        if c.index != first_index + pos as u64 {
            return ChainVerification::fail(NOT_SEQUENTIAL, pos);
        }
        if pos == 0 && first_index == 0 {
            if c.previous_chunk_id.is_some() {
                return ChainVerification::fail(FIRST_PREVIOUS, 0);
            }
        } else if c.previous_chunk_id != expected_prev {
            return ChainVerification::fail(LINK, pos);
        }
        let h = match ciphertext(c.index) {
            Some(ct) => crypto::hash_hex0x(&ct),
            None if stored_elsewhere(c) => c.encrypted_data_hash.clone(),
            None => return ChainVerification::fail(MISSING_DATA, pos),
        };
        if c.encrypted_data_hash != h {
            return ChainVerification::fail(HASH_MISMATCH, pos);
        }
        if c.chunk_id != crypto::compute_chunk_id(c.previous_chunk_id.as_deref(), &c.encrypted_data_hash, c.index) {
            return ChainVerification::fail(CHUNK_ID, pos);
        }
        if c.signature.machine_did.trim().is_empty() || c.signature.key_id.trim().is_empty() {
            return ChainVerification::fail(INVALID_SIGNATURE, pos);
        }
        if !crypto::verify_encrypted_data_hash_signature(&h, &c.signature.value, &c.signature.public_key_hex) {
            return ChainVerification::fail(INVALID_SIGNATURE, pos);
        }
        expected_prev = Some(c.chunk_id.clone());
    }
    ChainVerification { valid: true, total_chunks: Some(chunks.len()), reason: None, failed_at_index: None }
}

/// Unwrap a chunk key from a recipient entry and check it against `key_commitment`.
pub fn unwrap_chunk_key(chunk: &Chunk, entry: &KeyRecipient, recipient_sk: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>> {
    let sealed = crypto::parse_hex(&entry.wrapped_key_hex, "wrapped_key_hex")?;
    let key = crypto::sealed_box_open(&sealed, recipient_sk).ok_or_else(|| {
        StreamError::check(
            &chunk.chunk_id,
            "key unwrap",
            format!("sealed box for recipient {} does not open with the given secret key", entry.recipient_id),
        )
    })?;
    let key: [u8; 32] = key
        .as_slice()
        .try_into()
        .map_err(|_| StreamError::check(&chunk.chunk_id, "key unwrap", "unwrapped key is not 32 bytes"))?;
    let key = Zeroizing::new(key);
    if crypto::key_commitment(key.as_ref()) != chunk.encryption.key_commitment {
        return Err(StreamError::check(
            &chunk.chunk_id,
            "key_commitment",
            "recovered chunk key does not match key_commitment",
        ));
    }
    Ok(key)
}

/// The SDK's `decrypt_chunk`: unwrap → key commitment → decrypt → plaintext hash.
pub fn decrypt_chunk(
    chunk: &Chunk,
    entry: &KeyRecipient,
    recipient_sk: &[u8; 32],
    encrypted_data: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let key = unwrap_chunk_key(chunk, entry, recipient_sk)?;
    let nonce = crypto::parse_hex_n::<XCHACHA_NONCE_LEN>(&chunk.encryption.nonce, "encryption.nonce")?;
    let pt = crypto::xchacha_decrypt(&key, &nonce, encrypted_data)
        .ok_or_else(|| StreamError::check(&chunk.chunk_id, "decrypt", "XChaCha20-Poly1305 tag does not verify"))?;
    let pt = Zeroizing::new(pt);
    if crypto::hash_hex0x(&pt) != chunk.plaintext_hash {
        return Err(StreamError::check(
            &chunk.chunk_id,
            "plaintext_hash",
            "decrypted data does not match plaintext_hash",
        ));
    }
    Ok(pt)
}
