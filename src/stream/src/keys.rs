//! The machine's stream keys, derived deterministically from its secp256k1 secret (the same
//! 32-byte key that signs data packages and chain transactions), so no extra key file has to be
//! provisioned or backed up:
//!
//! ```text
//! prk          = HKDF-SHA256-Extract(salt = "peaqos-stream-keys-v1", ikm = secp256k1 secret)
//! ed25519 seed = HKDF-Expand(prk, info = "peaqos/stream/ed25519-chunk-signing/v1", 32)
//! x25519 sk    = HKDF-Expand(prk, info = "peaqos/stream/x25519-key-wrapping/v1", 32)
//! ```
//!
//! The Ed25519 key signs chunk envelopes (`signature.public_key_hex`); the X25519 key is the
//! `machine` key recipient of every chunk, which is how the machine keeps per-chunk keys for
//! later grants without ever storing them in plaintext. Secret material is zeroized on drop and
//! never logged (`Debug` prints public keys only).
//!
//! The secp256k1 key also yields the machine's EVM address and signs dataset manifests with
//! EIP-191 `personal_sign` ([`eip191_sign`]); [`eip191_recover`] is the verifier. Both are the
//! package signer's ([`peaqos_core::keys`]): one curve library for every secp256k1 signature.

use hkdf::Hkdf;
use peaqos_core::keys::MachineKey;
use sha2::Sha256;
use zeroize::Zeroizing;

/// EIP-55 checksummed `0x` address (the package signer's).
pub use peaqos_core::keys::checksum_address;

use crate::chain::ChunkSigner;
use crate::crypto;
use crate::error::{Result, StreamError};

/// HKDF salt.
pub const HKDF_SALT: &[u8] = b"peaqos-stream-keys-v1";
/// HKDF info of the Ed25519 chunk signing seed.
pub const INFO_ED25519: &[u8] = b"peaqos/stream/ed25519-chunk-signing/v1";
/// HKDF info of the X25519 key wrapping secret.
pub const INFO_X25519: &[u8] = b"peaqos/stream/x25519-key-wrapping/v1";

/// Ed25519 + X25519 stream keys of one machine.
pub struct MachineStreamKeys {
    machine: MachineKey,
    ed25519_seed: Zeroizing<[u8; 32]>,
    x25519_secret: Zeroizing<[u8; 32]>,
    /// Ed25519 public key (chunk signatures).
    pub ed25519_public: [u8; 32],
    /// X25519 public key (machine key recipient).
    pub x25519_public: [u8; 32],
    /// EVM address of the secp256k1 key.
    pub address: [u8; 20],
}

impl std::fmt::Debug for MachineStreamKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineStreamKeys")
            .field("ed25519_public", &hex::encode(self.ed25519_public))
            .field("x25519_public", &hex::encode(self.x25519_public))
            .field("address", &checksum_address(&self.address))
            .finish_non_exhaustive()
    }
}

impl MachineStreamKeys {
    /// Derive from the 32-byte secp256k1 secret (must be a valid non-zero scalar).
    pub fn from_secp256k1_secret(secret: &[u8; 32]) -> Result<Self> {
        let machine = secp256k1_key(secret, "machine secp256k1 secret")?;
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), secret);
        let mut ed = Zeroizing::new([0u8; 32]);
        let mut x = Zeroizing::new([0u8; 32]);
        hk.expand(INFO_ED25519, ed.as_mut()).map_err(|_| StreamError::invalid("hkdf", "expand failed"))?;
        hk.expand(INFO_X25519, x.as_mut()).map_err(|_| StreamError::invalid("hkdf", "expand failed"))?;
        let ed25519_public = crypto::ed25519_public(&ed);
        let x25519_public = crypto::x25519_public(&x);
        let address = machine.address_bytes();
        Ok(Self { machine, ed25519_seed: ed, x25519_secret: x, ed25519_public, x25519_public, address })
    }

    /// Parse a hex secret (optional `0x`), as in `PEAQOS_PRIVATE_KEY`.
    pub fn from_secret_hex(hex_secret: &str) -> Result<Self> {
        let s = Zeroizing::new(crypto::parse_hex_n::<32>(hex_secret.trim(), "machine private key")?);
        Self::from_secp256k1_secret(&s)
    }

    /// Chunk signer with the given DID and key id.
    pub fn signer(&self, machine_did: &str, key_id: &str) -> Result<ChunkSigner> {
        ChunkSigner::new(*self.ed25519_seed, machine_did, key_id)
    }

    /// `did:peaq:0x<EIP-55 address>` (the gen-1 / SDK package DID form).
    pub fn default_did(&self) -> String {
        format!("did:peaq:{}", checksum_address(&self.address))
    }

    /// The X25519 secret (for unwrapping the machine recipient entries).
    pub fn x25519_secret(&self) -> &[u8; 32] {
        &self.x25519_secret
    }

    /// EIP-191 `personal_sign` of `message` with the machine's secp256k1 key.
    pub fn eip191_sign(&self, message: &[u8]) -> Result<[u8; 65]> {
        Ok(self.machine.sign_eip191(message))
    }
}

fn secp256k1_key(secret: &[u8; 32], field: &str) -> Result<MachineKey> {
    MachineKey::from_bytes(secret).map_err(|_| StreamError::invalid(field, "not a valid secp256k1 private key"))
}

/// EIP-191 `personal_sign`: 65 bytes `r || s || v` with `v` in {27, 28}.
pub fn eip191_sign(secret: &[u8; 32], message: &[u8]) -> Result<[u8; 65]> {
    Ok(secp256k1_key(secret, "secp256k1 secret")?.sign_eip191(message))
}

/// Recover the signer address of an EIP-191 signature (`v` 27/28 or 0/1).
pub fn eip191_recover(message: &[u8], sig: &[u8; 65]) -> Result<[u8; 20]> {
    peaqos_core::keys::recover_eip191(message, sig).map_err(|e| StreamError::invalid("signature", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hardhat/anvil account 0: address 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266.
    const ANVIL0: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    #[test]
    fn derivation_is_deterministic_and_distinct() {
        let a = MachineStreamKeys::from_secret_hex(ANVIL0).unwrap();
        let b = MachineStreamKeys::from_secret_hex(&format!("0x{ANVIL0}")).unwrap();
        assert_eq!(a.ed25519_public, b.ed25519_public);
        assert_eq!(a.x25519_public, b.x25519_public);
        assert_ne!(a.ed25519_seed.as_ref(), a.x25519_secret.as_ref());
        assert_eq!(a.default_did(), "did:peaq:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
        // Pinned; computed independently with Python `cryptography` HKDF + PyNaCl / Ed25519.
        assert_eq!(hex::encode(a.ed25519_public), "afa197f5ba85507d3b80cbb02a357823b833b1d327a6416a86d3c5988972a1c6");
        assert_eq!(hex::encode(a.x25519_public), "cff2a4191e9a3b0431cad71e7b3f9c5116f203c61185d3e7b0b9bac060f8d71b");
        assert!(!format!("{a:?}").contains(ANVIL0));
        assert!(MachineStreamKeys::from_secp256k1_secret(&[0u8; 32]).is_err());
    }

    #[test]
    fn eip191_matches_sdk_data_package_vector() {
        // SPEC §8.6: signature of the canonical package bytes with anvil key 0.
        let v: serde_json::Value = serde_json::from_str(include_str!("../tests/data/sdk_stream_vectors.json")).unwrap();
        let signed = v["data_package"]["signable_bytes_utf8"].as_str().map(str::to_string);
        let expect = v["data_package"]["package"]["signature"].as_str().unwrap();
        let k = MachineStreamKeys::from_secret_hex(ANVIL0).unwrap();
        if let Some(signed) = signed {
            assert_eq!(format!("0x{}", hex::encode(k.eip191_sign(signed.as_bytes()).unwrap())), expect);
        }
        let sig = k.eip191_sign(b"hello").unwrap();
        assert_eq!(eip191_recover(b"hello", &sig).unwrap(), k.address);
        assert_ne!(eip191_recover(b"hellO", &sig).unwrap(), k.address);
    }
}
