//! The machine key at rest: Ethereum V3 keystores (Web3 Secret Storage), the JSON that geth,
//! Foundry, alloy and eth_account read and write: the secret is AES-128-CTR encrypted under a
//! key derived from a passphrase with scrypt or PBKDF2-HMAC-SHA256, and a keccak MAC
//! (`keccak256(dk[16..32] ‖ ciphertext)`) tells a wrong passphrase from a damaged file.
//!
//! The decrypted secret lives only in memory, in a [`Zeroizing`] buffer. KDF parameters from a
//! file are bounded (a hostile keystore cannot make the robot allocate gigabytes or spin for
//! hours), and every error names the field.
use aes::cipher::{KeyIvInit, StreamCipher};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::{checksum_address, keccak256, MachineKey};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Why a keystore could not be read or written. Never contains key material or the passphrase.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeystoreError {
    #[error("keystore: not a V3 keystore: {0}")]
    Format(String),
    #[error("keystore: field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("keystore: wrong passphrase (or a damaged file): the MAC does not match")]
    WrongPassphrase,
    #[error("keystore: the decrypted secret is not a valid secp256k1 key")]
    InvalidKey,
    #[error("keystore: the passphrase is empty")]
    EmptyPassphrase,
    #[error("keystore: random source: {0}")]
    Random(String),
}

fn field(field: &'static str, reason: impl Into<String>) -> KeystoreError {
    KeystoreError::Field { field, reason: reason.into() }
}

#[derive(Serialize, Deserialize)]
struct V3 {
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(alias = "Crypto")]
    crypto: CryptoJson,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    version: u32,
}

#[derive(Serialize, Deserialize)]
struct CryptoJson {
    cipher: String,
    cipherparams: CipherParams,
    ciphertext: String,
    kdf: String,
    kdfparams: serde_json::Value,
    mac: String,
}

#[derive(Serialize, Deserialize)]
struct CipherParams {
    iv: String,
}

/// The key-derivation function of a new keystore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    /// scrypt with cost `2^log_n`, r = 8, p = 1 (geth's "standard" is log_n = 18: 256 MiB, ~1 s).
    Scrypt { log_n: u8 },
    /// PBKDF2-HMAC-SHA256 with `c` iterations.
    Pbkdf2 { c: u32 },
}

impl Default for Kdf {
    fn default() -> Kdf {
        Kdf::Scrypt { log_n: 18 }
    }
}

/// Largest scrypt memory (128·r·N·p bytes) and PBKDF2 count a keystore may ask for.
const MAX_SCRYPT_BYTES: u64 = 1 << 30;
const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;

fn hex_field(v: &str, name: &'static str) -> Result<Vec<u8>, KeystoreError> {
    let t = v.strip_prefix("0x").unwrap_or(v);
    hex::decode(t).map_err(|_| field(name, "not hex"))
}

fn u64_param(p: &serde_json::Value, name: &'static str) -> Result<u64, KeystoreError> {
    p.get(name).and_then(serde_json::Value::as_u64).ok_or_else(|| field(name, "missing or not a non-negative integer"))
}

/// Derive the 32-byte key of `kdf` / `params` from `passphrase`.
fn derive(kdf: &str, params: &serde_json::Value, passphrase: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let dklen = u64_param(params, "dklen")?;
    if dklen != 32 {
        return Err(field("dklen", format!("must be 32, got {dklen}")));
    }
    let salt = hex_field(params.get("salt").and_then(|s| s.as_str()).ok_or_else(|| field("salt", "missing"))?, "salt")?;
    let mut dk = Zeroizing::new([0u8; 32]);
    match kdf {
        "scrypt" => {
            let (n, r, p) = (u64_param(params, "n")?, u64_param(params, "r")?, u64_param(params, "p")?);
            if n < 2 || !n.is_power_of_two() {
                return Err(field("n", format!("must be a power of two ≥ 2, got {n}")));
            }
            if r == 0 || p == 0 || 128u64.saturating_mul(r).saturating_mul(n).saturating_mul(p) > MAX_SCRYPT_BYTES {
                return Err(field("n", format!("n={n}, r={r}, p={p} would need more than 1 GiB")));
            }
            let params = scrypt::Params::new(n.trailing_zeros() as u8, r as u32, p as u32, 32)
                .map_err(|e| field("n", e.to_string()))?;
            scrypt::scrypt(passphrase, &salt, &params, &mut dk[..]).map_err(|e| field("dklen", e.to_string()))?;
        }
        "pbkdf2" => {
            let prf = params.get("prf").and_then(|s| s.as_str()).unwrap_or("");
            if prf != "hmac-sha256" {
                return Err(field("prf", format!("only hmac-sha256 is supported, got {prf:?}")));
            }
            let c = u64_param(params, "c")?;
            if c == 0 || c > u64::from(MAX_PBKDF2_ROUNDS) {
                return Err(field("c", format!("must be 1..={MAX_PBKDF2_ROUNDS}, got {c}")));
            }
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(passphrase, &salt, c as u32, &mut dk[..]);
        }
        other => return Err(field("kdf", format!("scrypt or pbkdf2, got {other:?}"))),
    }
    Ok(dk)
}

fn mac(dk: &[u8; 32], ciphertext: &[u8]) -> [u8; 32] {
    let mut m = Vec::with_capacity(16 + ciphertext.len());
    m.extend_from_slice(&dk[16..32]);
    m.extend_from_slice(ciphertext);
    keccak256(&m)
}

/// Decrypt a V3 keystore with `passphrase`: the 32-byte secp256k1 secret.
pub fn decrypt(json: &[u8], passphrase: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let v: V3 = serde_json::from_slice(json).map_err(|e| KeystoreError::Format(e.to_string()))?;
    if v.version != 3 {
        return Err(field("version", format!("must be 3, got {}", v.version)));
    }
    let c = &v.crypto;
    if c.cipher != "aes-128-ctr" {
        return Err(field("cipher", format!("only aes-128-ctr is supported, got {:?}", c.cipher)));
    }
    let iv = hex_field(&c.cipherparams.iv, "iv")?;
    let iv: [u8; 16] = iv.try_into().map_err(|_| field("iv", "must be 16 bytes"))?;
    let ciphertext = hex_field(&c.ciphertext, "ciphertext")?;
    if ciphertext.len() != 32 {
        return Err(field("ciphertext", format!("must be 32 bytes, got {}", ciphertext.len())));
    }
    let expected = hex_field(&c.mac, "mac")?;
    let dk = derive(&c.kdf, &c.kdfparams, passphrase)?;
    if mac(&dk, &ciphertext)[..] != expected[..] {
        return Err(KeystoreError::WrongPassphrase);
    }
    let mut secret = Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(&ciphertext);
    let key: [u8; 16] = dk[..16].try_into().map_err(|_| KeystoreError::InvalidKey)?;
    Aes128Ctr::new(&key.into(), &iv.into()).apply_keystream(&mut secret[..]);
    MachineKey::from_bytes(&secret).map_err(|_| KeystoreError::InvalidKey)?;
    Ok(secret)
}

/// The address a keystore says it holds (its `address` field, unverified: only decryption proves it).
pub fn stated_address(json: &[u8]) -> Result<Option<String>, KeystoreError> {
    let v: V3 = serde_json::from_slice(json).map_err(|e| KeystoreError::Format(e.to_string()))?;
    Ok(v.address.map(|a| {
        let t = a.strip_prefix("0x").unwrap_or(&a).to_ascii_lowercase();
        let mut b = [0u8; 20];
        match hex::decode_to_slice(&t, &mut b) {
            Ok(()) => checksum_address(&b),
            Err(_) => a,
        }
    }))
}

fn random<const N: usize>() -> Result<[u8; N], KeystoreError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| KeystoreError::Random(e.to_string()))?;
    Ok(b)
}

/// Encrypt `secret` into a V3 keystore (JSON text) under `passphrase`.
pub fn encrypt(secret: &[u8; 32], passphrase: &[u8], kdf: Kdf) -> Result<String, KeystoreError> {
    if passphrase.is_empty() {
        return Err(KeystoreError::EmptyPassphrase);
    }
    let key = MachineKey::from_bytes(secret).map_err(|_| KeystoreError::InvalidKey)?;
    let salt: [u8; 32] = random()?;
    let iv: [u8; 16] = random()?;
    let (name, params) = match kdf {
        Kdf::Scrypt { log_n } => {
            ("scrypt", serde_json::json!({"dklen": 32, "n": 1u64 << log_n, "r": 8, "p": 1, "salt": hex::encode(salt)}))
        }
        Kdf::Pbkdf2 { c } => {
            ("pbkdf2", serde_json::json!({"dklen": 32, "c": c, "prf": "hmac-sha256", "salt": hex::encode(salt)}))
        }
    };
    let dk = derive(name, &params, passphrase)?;
    let mut ciphertext = Zeroizing::new(*secret);
    let aes_key: [u8; 16] = dk[..16].try_into().map_err(|_| KeystoreError::InvalidKey)?;
    Aes128Ctr::new(&aes_key.into(), &iv.into()).apply_keystream(&mut ciphertext[..]);
    let uuid: [u8; 16] = random()?;
    let id = format!(
        "{}-{}-4{}-{}-{}",
        hex::encode(&uuid[0..4]),
        hex::encode(&uuid[4..6]),
        &hex::encode(&uuid[6..8])[1..],
        hex::encode(&uuid[8..10]),
        hex::encode(&uuid[10..16])
    );
    let v = V3 {
        address: Some(hex::encode(key.address_bytes())),
        crypto: CryptoJson {
            cipher: "aes-128-ctr".into(),
            cipherparams: CipherParams { iv: hex::encode(iv) },
            ciphertext: hex::encode(&ciphertext[..]),
            kdf: name.into(),
            kdfparams: params,
            mac: hex::encode(mac(&dk, &ciphertext[..])),
        },
        id: Some(id),
        version: 3,
    };
    serde_json::to_string_pretty(&v).map_err(|e| KeystoreError::Format(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SK: [u8; 32] = [0x11; 32];

    #[test]
    fn round_trip_with_both_kdfs_and_wrong_passphrase() {
        for kdf in [Kdf::Scrypt { log_n: 10 }, Kdf::Pbkdf2 { c: 1000 }] {
            let j = encrypt(&SK, b"pass", kdf).unwrap();
            assert_eq!(*decrypt(j.as_bytes(), b"pass").unwrap(), SK);
            assert_eq!(decrypt(j.as_bytes(), b"wrong").unwrap_err(), KeystoreError::WrongPassphrase);
            assert!(!j.contains(&hex::encode(SK)));
            let addr = MachineKey::from_bytes(&SK).unwrap().address().to_owned();
            assert_eq!(stated_address(j.as_bytes()).unwrap(), Some(addr));
        }
        assert_eq!(encrypt(&SK, b"", Kdf::default()).unwrap_err(), KeystoreError::EmptyPassphrase);
    }

    #[test]
    fn hostile_parameters_are_refused_naming_the_field() {
        let j: serde_json::Value =
            serde_json::from_str(&encrypt(&SK, b"p", Kdf::Scrypt { log_n: 10 }).unwrap()).unwrap();
        let with = |path: &[&str], v: serde_json::Value| {
            let mut j = j.clone();
            let mut cur = &mut j;
            for p in &path[..path.len() - 1] {
                cur = cur.get_mut(*p).unwrap();
            }
            cur[path[path.len() - 1]] = v;
            decrypt(j.to_string().as_bytes(), b"p").unwrap_err()
        };
        let f = |e: KeystoreError| match e {
            KeystoreError::Field { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(f(with(&["crypto", "kdfparams", "n"], serde_json::json!(1u64 << 40))), "n");
        assert_eq!(f(with(&["crypto", "kdfparams", "n"], serde_json::json!(1000))), "n");
        assert_eq!(f(with(&["crypto", "kdfparams", "dklen"], serde_json::json!(16))), "dklen");
        assert_eq!(f(with(&["crypto", "cipher"], serde_json::json!("aes-256-gcm"))), "cipher");
        assert_eq!(f(with(&["crypto", "kdf"], serde_json::json!("argon2"))), "kdf");
        assert_eq!(f(with(&["crypto", "ciphertext"], serde_json::json!("zz"))), "ciphertext");
        assert_eq!(f(with(&["version"], serde_json::json!(2))), "version");
        assert!(matches!(decrypt(b"{", b"p").unwrap_err(), KeystoreError::Format(_)));
    }
}
