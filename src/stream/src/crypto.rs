//! Cryptographic primitives of `peaq.stream.chunks.v1`, byte-compatible with peaq-os-sdk 0.12.1
//! (`peaq_os_sdk/stream/_internal/*.py`).
//!
//! * Hashes: `"0x" + hex(sha256(bytes))` (lower-case) for `encrypted_data_hash`,
//!   `plaintext_hash`, `source_hash` and `chunk_id`.
//! * `chunk_id = "0x" + sha256(utf8(f"{previous_chunk_id or ''}|{encrypted_data_hash}|{index}"))`.
//! * `key_commitment = "sha256:" + hex(sha256(chunk_key))`.
//! * Chunk cipher: XChaCha20-Poly1305, 32-byte key, 24-byte nonce (hex in the envelope), no AAD,
//!   `encrypted_data = ciphertext || tag16` (the nonce is not prepended).
//! * Key wrapping: libsodium `crypto_box_seal`: `ephemeral_pk(32) || crypto_box(msg)` where
//!   `crypto_box` = XSalsa20-Poly1305 with the X25519/HSalsa20 shared key, output `tag16 || ct`,
//!   nonce = BLAKE2b-192(ephemeral_pk || recipient_pk). Opens with PyNaCl's `SealedBox`.
//! * Chunk signature: Ed25519 over the UTF-8 bytes of the `encrypted_data_hash` *string*
//!   (including its `0x`), hex-encoded (no `0x`).
//!
//! Hex inputs accept an optional `0x` prefix (as the SDK's `parse_hex_bytes`).

use blake2::digest::consts::U24;
use blake2::{Blake2b, Digest as _};
use crypto_box::aead::Aead;
use crypto_box::SalsaBox;
use ed25519_dalek::{Signer as _, Verifier as _};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Result, StreamError};

/// Length of a per-chunk key.
pub const CHUNK_KEY_LEN: usize = 32;
/// Length of an XChaCha20 nonce.
pub const XCHACHA_NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Length of a sealed-box wrapped 32-byte key: 32 (ephemeral pk) + 16 (tag) + 32.
pub const WRAPPED_KEY_LEN: usize = 80;

/// Raw SHA-256 (ring's assembly implementation; SHA-NI where available).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// SHA-256 with the pure-Rust `sha2` crate (cross-check).
pub fn sha256_portable(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// `"0x" + hex(sha256(data))`.
pub fn hash_hex0x(data: &[u8]) -> String {
    format!("0x{}", hex::encode(sha256(data)))
}

/// The SDK's `compute_chunk_id`.
pub fn compute_chunk_id(previous_chunk_id: Option<&str>, encrypted_data_hash: &str, index: u64) -> String {
    let material = format!("{}|{}|{}", previous_chunk_id.unwrap_or(""), encrypted_data_hash, index);
    hash_hex0x(material.as_bytes())
}

/// The SDK's `compute_key_commitment`.
pub fn key_commitment(key: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha256(key)))
}

/// Parse hex with optional `0x` prefix; empty or odd-length input is an error naming `field`.
pub fn parse_hex(value: &str, field: &str) -> Result<Vec<u8>> {
    let v = value.strip_prefix("0x").unwrap_or(value);
    if v.is_empty() || v.len() % 2 != 0 {
        return Err(StreamError::invalid(field, "expected even-length, non-empty hexadecimal string"));
    }
    hex::decode(v).map_err(|_| StreamError::invalid(field, "expected hexadecimal string"))
}

/// Parse exactly `N` bytes of hex.
pub fn parse_hex_n<const N: usize>(value: &str, field: &str) -> Result<[u8; N]> {
    let bytes = parse_hex(value, field)?;
    <[u8; N]>::try_from(bytes.as_slice())
        .map_err(|_| StreamError::invalid(field, format!("expected {N} bytes, got {}", bytes.len())))
}

/// XChaCha20 → ChaCha20-Poly1305 (IETF) key and nonce: subkey = HChaCha20(key, nonce[..16]),
/// nonce12 = 0u32 || nonce[16..24] (draft-irtf-cfrg-xchacha §2.3; what pycryptodome and
/// libsodium do).
fn xchacha_ring_key(
    key: &[u8; CHUNK_KEY_LEN],
    nonce: &[u8; XCHACHA_NONCE_LEN],
) -> Result<(ring::aead::LessSafeKey, ring::aead::Nonce)> {
    use chacha20::cipher::consts::U10;
    let sub = Zeroizing::new(chacha20::hchacha::<U10>(key.into(), nonce[..16].into()));
    let mut n12 = [0u8; 12];
    n12[4..].copy_from_slice(&nonce[16..]);
    let ub = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &sub[..])
        .map_err(|_| StreamError::invalid("chunk key", "rejected by ChaCha20-Poly1305"))?;
    Ok((ring::aead::LessSafeKey::new(ub), ring::aead::Nonce::assume_unique_for_key(n12)))
}

/// XChaCha20-Poly1305 encrypt, no AAD; returns `ct || tag16`.
pub fn xchacha_encrypt(
    key: &[u8; CHUNK_KEY_LEN],
    nonce: &[u8; XCHACHA_NONCE_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let (k, n) = xchacha_ring_key(key, nonce)?;
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    let tag = k
        .seal_in_place_separate_tag(n, ring::aead::Aad::empty(), &mut buf)
        .map_err(|_| StreamError::invalid("chunk plaintext", "too large for ChaCha20-Poly1305"))?;
    buf.extend_from_slice(tag.as_ref());
    Ok(buf)
}

/// [`xchacha_encrypt`] that also returns `sha256(plaintext)`, hashing each block while it is
/// copied into the output buffer (one pass over the plaintext instead of two).
pub fn xchacha_encrypt_and_hash(
    key: &[u8; CHUNK_KEY_LEN],
    nonce: &[u8; XCHACHA_NONCE_LEN],
    plaintext: &[u8],
) -> Result<(Vec<u8>, [u8; 32])> {
    let (k, n) = xchacha_ring_key(key, nonce)?;
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    for block in plaintext.chunks(16 * 1024) {
        h.update(block);
        buf.extend_from_slice(block);
    }
    let tag = k
        .seal_in_place_separate_tag(n, ring::aead::Aad::empty(), &mut buf)
        .map_err(|_| StreamError::invalid("chunk plaintext", "too large for ChaCha20-Poly1305"))?;
    buf.extend_from_slice(tag.as_ref());
    let mut out = [0u8; 32];
    out.copy_from_slice(h.finish().as_ref());
    Ok((buf, out))
}

/// XChaCha20-Poly1305 decrypt of `ct || tag`; `None` if the tag does not verify.
pub fn xchacha_decrypt(key: &[u8; CHUNK_KEY_LEN], nonce: &[u8; XCHACHA_NONCE_LEN], data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < TAG_LEN {
        return None;
    }
    let (k, n) = xchacha_ring_key(key, nonce).ok()?;
    let mut buf = data.to_vec();
    let len = k.open_in_place(n, ring::aead::Aad::empty(), &mut buf).ok()?.len();
    buf.truncate(len);
    Some(buf)
}

/// Parse a recipient's X25519 public key: exactly 32 bytes of hex, not a low-order point
/// (see [`check_x25519_public`]). Every recipient key (policy recipients, buyer grants, market
/// purchases, the tool's flags) enters through here.
pub fn parse_x25519_public(value: &str, field: &str) -> Result<[u8; 32]> {
    let pk = parse_hex_n::<32>(value, field)?;
    check_x25519_public(&pk, field)?;
    Ok(pk)
}

/// Refuse a low-order X25519 public key: one whose shared secret with *every* secret key is
/// all-zero, so a key wrapped to it opens without any secret. libsodium (the SDK's PyNaCl)
/// refuses these in `crypto_scalarmult`. Clamped scalars are multiples of the cofactor 8, so
/// the product with one fixed clamped scalar is zero exactly for the points of order 1, 2, 4
/// or 8 (in every encoding, non-canonical ones and a set top bit included).
pub fn check_x25519_public(pk: &[u8; 32], field: &str) -> Result<()> {
    let probe = curve25519_dalek::montgomery::MontgomeryPoint(*pk).mul_clamped([0x5a; 32]);
    if probe.to_bytes() == [0u8; 32] {
        return Err(StreamError::invalid(
            field,
            "is a low-order X25519 point (its shared secret is all-zero: anyone could open what is wrapped to it)",
        ));
    }
    Ok(())
}

/// X25519 public key of a secret key.
pub fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    crypto_box::SecretKey::from_bytes(*secret).public_key().to_bytes()
}

fn sealed_box_nonce(ephemeral_pk: &[u8; 32], recipient_pk: &[u8; 32]) -> [u8; 24] {
    let mut h = Blake2b::<U24>::new();
    h.update(ephemeral_pk);
    h.update(recipient_pk);
    h.finalize().into()
}

/// libsodium `crypto_box_seal` with a caller-chosen ephemeral secret (fresh random in
/// production, fixed only to reproduce test vectors).
pub fn sealed_box_seal(message: &[u8], recipient_pk: &[u8; 32], ephemeral_sk: &[u8; 32]) -> Vec<u8> {
    let esk = crypto_box::SecretKey::from_bytes(*ephemeral_sk);
    let epk = esk.public_key().to_bytes();
    let nonce = sealed_box_nonce(&epk, recipient_pk);
    let sbox = SalsaBox::new(&crypto_box::PublicKey::from_bytes(*recipient_pk), &esk);
    let boxed = sbox.encrypt(&nonce.into(), message).unwrap_or_default();
    let mut out = Vec::with_capacity(32 + boxed.len());
    out.extend_from_slice(&epk);
    out.extend_from_slice(&boxed);
    out
}

/// libsodium `crypto_box_seal_open`; `None` if it does not open with this secret key.
pub fn sealed_box_open(sealed: &[u8], recipient_sk: &[u8; 32]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < 32 + TAG_LEN {
        return None;
    }
    let mut epk = [0u8; 32];
    epk.copy_from_slice(&sealed[..32]);
    let sk = crypto_box::SecretKey::from_bytes(*recipient_sk);
    let rpk = sk.public_key().to_bytes();
    let nonce = sealed_box_nonce(&epk, &rpk);
    let sbox = SalsaBox::new(&crypto_box::PublicKey::from_bytes(epk), &sk);
    sbox.decrypt(&nonce.into(), &sealed[32..]).ok().map(Zeroizing::new)
}

/// Ed25519 public key of a 32-byte seed.
pub fn ed25519_public(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

/// Ed25519 signature over the UTF-8 bytes of `encrypted_data_hash`, lower-case hex.
pub fn sign_encrypted_data_hash(encrypted_data_hash: &str, seed: &[u8; 32]) -> String {
    let sk = ed25519_dalek::SigningKey::from_bytes(seed);
    hex::encode(sk.sign(encrypted_data_hash.as_bytes()).to_bytes())
}

/// Verify an Ed25519 signature (hex) over `encrypted_data_hash` with a public key (hex).
pub fn verify_encrypted_data_hash_signature(
    encrypted_data_hash: &str,
    signature_hex: &str,
    public_key_hex: &str,
) -> bool {
    let Ok(pk) = parse_hex_n::<32>(public_key_hex, "signature.public_key_hex") else { return false };
    let Ok(sig) = parse_hex_n::<64>(signature_hex, "signature.value") else { return false };
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&pk) else { return false };
    vk.verify(encrypted_data_hash.as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig)).is_ok()
}

/// Fill a buffer from the operating system's CSPRNG.
pub fn os_random<const N: usize>() -> Result<Zeroizing<[u8; N]>> {
    let mut buf = Zeroizing::new([0u8; N]);
    getrandom::getrandom(buf.as_mut()).map_err(|e| StreamError::invalid("os randomness", e.to_string()))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_id_vectors() {
        let a = compute_chunk_id(None, &format!("0x{}", "aa".repeat(32)), 0);
        assert_eq!(a, "0x2429383c049d50e710d8870d308df933fe603d02f4def2d6af8f499a3d75e81b");
        let b = compute_chunk_id(Some(&a), &format!("0x{}", "bb".repeat(32)), 1);
        assert_eq!(b, "0x64b3c125eb09ef86e182eb65d91aa437dc66eef74cea3c4a787e8e7a41d8c6e5");
    }

    #[test]
    fn key_commitment_vector() {
        assert_eq!(
            key_commitment(&[0x41; 32]),
            "sha256:22a48051594c1949deed7040850c1f0f8764537f5191be56732d16a54c1d8153"
        );
    }

    #[test]
    fn xchacha_matches_rustcrypto_and_detects_tampering() {
        use chacha20poly1305::aead::{Aead as _, KeyInit};
        for len in [0usize, 1, 63, 64, 65, 1000, 70_000] {
            let pt: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let key = [0x41u8; 32];
            let nonce = [0x42u8; 24];
            let ours = xchacha_encrypt(&key, &nonce, &pt).unwrap();
            let rc =
                chacha20poly1305::XChaCha20Poly1305::new(&key.into()).encrypt(&nonce.into(), pt.as_slice()).unwrap();
            assert_eq!(ours, rc, "len {len}");
            assert_eq!(xchacha_decrypt(&key, &nonce, &ours).unwrap(), pt);
            let mut bad = ours.clone();
            bad[0] ^= 1;
            assert!(xchacha_decrypt(&key, &nonce, &bad).is_none());
            assert_eq!(sha256(&pt), sha256_portable(&pt));
            assert_eq!(xchacha_encrypt_and_hash(&key, &nonce, &pt).unwrap(), (ours.clone(), sha256(&pt)));
        }
    }

    /// The low-order points of Curve25519 (libsodium's X25519 blocklist, each also with the top
    /// bit set, which X25519 ignores) are refused; ordinary keys are not.
    #[test]
    fn low_order_keys_are_refused() {
        let low = [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "0000000000000000000000000000000000000000000000000000000000000080",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
            "0100000000000000000000000000000000000000000000000000000000000080",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ];
        for h in low {
            let e = parse_x25519_public(h, "buyer_public_key_hex").expect_err(h).to_string();
            assert!(e.contains("buyer_public_key_hex") && e.contains("low-order"), "{h}: {e}");
        }
        for bad in ["", "00", &"11".repeat(31), &"11".repeat(33)] {
            assert!(parse_x25519_public(bad, "f").is_err(), "{bad}");
        }
        for seed in 1u8..=20 {
            let pk = x25519_public(&[seed; 32]);
            parse_x25519_public(&hex::encode(pk), "f").unwrap();
        }
    }

    #[test]
    fn sealed_box_roundtrip_and_wrong_key() {
        let sk = [3u8; 32];
        let pk = x25519_public(&sk);
        let sealed = sealed_box_seal(&[9u8; 32], &pk, &[0x77; 32]);
        assert_eq!(sealed.len(), WRAPPED_KEY_LEN);
        assert_eq!(sealed_box_open(&sealed, &sk).unwrap().as_slice(), &[9u8; 32]);
        assert!(sealed_box_open(&sealed, &[4u8; 32]).is_none());
    }
}
