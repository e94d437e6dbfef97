//! Machine keys: the secp256k1 signing key (`MachineKey`) and the AES-256 field encryption
//! key (`FieldKey`).
//!
//! Formats:
//! * Machine key: 32 bytes as 64 hex digits, with or without `0x`, surrounding whitespace
//!   ignored. Source: the environment variable `PEAQOS_PRIVATE_KEY` (the SDK's name) when set
//!   and non-empty, else the key file given by the caller. The file must be a regular file
//!   with mode `0600` or `0400` (never readable or writable by group/others).
//! * Field key: 32 bytes as 64 hex digits (same parsing). Source: `PEAQOS_FIELD_ENCRYPTION_KEY`,
//!   else `<data_dir>/keys/field_encryption.key`, created on first start (random, mode `0600`,
//!   directory `0700`, written as 64 lowercase hex digits and a newline) with the same mode
//!   check afterwards.
//!
//! Identity: `address()` is the EIP-55 checksummed Ethereum address of the key, `did()` is
//! `did:peaq:<address>` (the form the SDK's `verify_data_package` accepts), `key_id()` is
//! `<did>#keys-1`. Signatures are EIP-191 `personal_sign`: keccak256 of
//! `"\x19Ethereum Signed Message:\n" + decimal length + message`, 65 bytes `r ‖ s ‖ v` with
//! `v` = 27/28, RFC 6979 deterministic nonces and low-s (identical to eth_account).
//!
//! No error or `Debug` output ever contains key material; secrets are zeroized on drop.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use secp256k1::{All, Message, PublicKey, Secp256k1, SecretKey};
use sha3::{Digest, Keccak256};
use zeroize::{Zeroize, Zeroizing};

/// Environment variable holding the machine's secp256k1 key (the SDK's name).
pub const PRIVATE_KEY_ENV: &str = "PEAQOS_PRIVATE_KEY";
/// Environment variable holding the 32-byte field encryption key.
pub const FIELD_KEY_ENV: &str = "PEAQOS_FIELD_ENCRYPTION_KEY";

/// Key loading and signature errors. Never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No key source configured.
    #[error("no machine key: set {PRIVATE_KEY_ENV} or configure a key file")]
    Missing,
    /// The key file could not be read or created.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file is accessible to group or others (or is not a regular file).
    #[error("key file {path}: mode {mode:04o} is too open, must be 0600 or 0400 (chmod 600 {path})")]
    BadMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a regular file.
    #[error("key file {path}: not a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// The key text is not 64 hex digits (the key itself is never echoed).
    #[error("{source_name}: malformed key: {reason}")]
    Malformed {
        /// Where the key came from: the env var name or the file path.
        source_name: String,
        /// What is wrong (length/characters), without the key.
        reason: String,
    },
    /// 32 bytes that are not a valid secp256k1 secret (zero or ≥ the group order).
    #[error("{source_name}: not a valid secp256k1 private key")]
    InvalidScalar {
        /// Where the key came from.
        source_name: String,
    },
    /// A V3 keystore that could not be decrypted.
    #[error("keystore {path}: {source}")]
    Keystore {
        /// The keystore file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::keystore::KeystoreError,
    },
    /// A keystore is configured but no passphrase source is.
    #[error("keystore {path}: no passphrase: set {KEYSTORE_PASSWORD_ENV} or a passphrase file (mode 0600)")]
    NoPassphrase {
        /// The keystore file.
        path: PathBuf,
    },
}

/// The environment variable a keystore passphrase may come from (else a passphrase file).
pub const KEYSTORE_PASSWORD_ENV: &str = "PEAQOS_KEYSTORE_PASSWORD";

/// The passphrase of a keystore: from `file` (mode 0600/0400; one trailing newline dropped, as a
/// systemd credential or `echo > file` leaves it) or else `PEAQOS_KEYSTORE_PASSWORD`.
pub fn keystore_passphrase(keystore: &Path, file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    if let Some(f) = file {
        let text = read_private_file(f)?;
        let t = text.strip_suffix('\n').unwrap_or(&text);
        let t = t.strip_suffix('\r').unwrap_or(t);
        return Ok(Zeroizing::new(t.as_bytes().to_vec()));
    }
    match env_value(KEYSTORE_PASSWORD_ENV) {
        Some(v) => Ok(Zeroizing::new(v.as_bytes().to_vec())),
        None => Err(KeyError::NoPassphrase { path: keystore.to_owned() }),
    }
}

/// [`keystore_passphrase`], else asked on the terminal when the process has one (stdin is a TTY;
/// the answer is read from `/dev/tty` without echo).
pub fn keystore_passphrase_or_ask(
    keystore: &Path,
    file: Option<&Path>,
    prompt: &str,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    match keystore_passphrase(keystore, file) {
        Err(KeyError::NoPassphrase { path }) if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            rpassword::prompt_password(prompt)
                .map(|s| Zeroizing::new(s.into_bytes()))
                .map_err(|_| KeyError::NoPassphrase { path })
        }
        r => r,
    }
}

/// Parse 64 hex digits (optional `0x`, surrounding whitespace) into 32 bytes.
fn parse_hex32(text: &str, source_name: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let t = text.trim();
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    let malformed = |reason: String| KeyError::Malformed { source_name: source_name.to_owned(), reason };
    if t.len() != 64 {
        return Err(malformed(format!("expected 64 hex digits, got {} characters", t.chars().count())));
    }
    let mut out = Zeroizing::new([0u8; 32]);
    if hex::decode_to_slice(t, &mut out[..]).is_err() {
        return Err(malformed("contains a character that is not a hex digit".to_owned()));
    }
    Ok(out)
}

/// Read a key file after checking it is a regular file with mode 0600 or 0400.
fn read_private_file(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    let meta = fs::metadata(path).map_err(|source| KeyError::Io { path: path.to_owned(), source })?;
    if !meta.is_file() {
        return Err(KeyError::NotAFile { path: path.to_owned() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode != 0o600 && mode != 0o400 {
        return Err(KeyError::BadMode { path: path.to_owned(), mode });
    }
    let bytes = fs::read(path).map_err(|source| KeyError::Io { path: path.to_owned(), source })?;
    match String::from_utf8(bytes) {
        Ok(s) => Ok(Zeroizing::new(s)),
        Err(e) => {
            let mut b = e.into_bytes();
            b.zeroize();
            Err(KeyError::Malformed { source_name: path.display().to_string(), reason: "not UTF-8 text".to_owned() })
        }
    }
}

fn env_value(name: &str) -> Option<Zeroizing<String>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Some(Zeroizing::new(v)),
        _ => None,
    }
}

/// keccak256.
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// The EIP-191 `personal_sign` digest of `msg`.
pub fn eip191_hash(msg: &[u8]) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(b"\x19Ethereum Signed Message:\n");
    h.update(itoa::Buffer::new().format(msg.len()).as_bytes());
    h.update(msg);
    h.finalize().into()
}

/// EIP-55 checksummed `0x…` form of a 20-byte address.
pub fn checksum_address(addr: &[u8; 20]) -> String {
    let lower = hex::encode(addr);
    let hash = keccak256(lower.as_bytes());
    let mut s = String::with_capacity(42);
    s.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0xf;
        if c.is_ascii_alphabetic() && nibble >= 8 {
            s.push(c.to_ascii_uppercase());
        } else {
            s.push(c);
        }
    }
    s
}

fn address_of(pk: &PublicKey) -> [u8; 20] {
    let unc = pk.serialize_uncompressed();
    let h = keccak256(&unc[1..]);
    let mut a = [0u8; 20];
    a.copy_from_slice(&h[12..]);
    a
}

/// Signature verification errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// Not 65 bytes / bad recovery id / not a valid signature.
    #[error("signature: {0}")]
    Invalid(String),
}

/// Recover the signer address of an EIP-191 signature (`r ‖ s ‖ v`, v ∈ {0, 1, 27, 28}).
pub fn recover_eip191(msg: &[u8], sig: &[u8]) -> Result<[u8; 20], SignatureError> {
    if sig.len() != 65 {
        return Err(SignatureError::Invalid(format!("expected 65 bytes, got {}", sig.len())));
    }
    let v = match sig[64] {
        27 | 28 => i32::from(sig[64] - 27),
        0 | 1 => i32::from(sig[64]),
        other => return Err(SignatureError::Invalid(format!("bad recovery byte v={other}"))),
    };
    let recid = RecoveryId::try_from(v).map_err(|e| SignatureError::Invalid(e.to_string()))?;
    let rs =
        RecoverableSignature::from_compact(&sig[..64], recid).map_err(|e| SignatureError::Invalid(e.to_string()))?;
    let msg = Message::from_digest(eip191_hash(msg));
    let secp = secp256k1::Secp256k1::verification_only();
    let pk = secp.recover_ecdsa(&msg, &rs).map_err(|e| SignatureError::Invalid(e.to_string()))?;
    Ok(address_of(&pk))
}

/// The machine's secp256k1 signing key with its derived identity.
pub struct MachineKey {
    secret: SecretKey,
    secp: Secp256k1<All>,
    address: [u8; 20],
    address_str: String,
    did: String,
    key_id: String,
}

impl MachineKey {
    /// Load from `PEAQOS_PRIVATE_KEY` when set and non-empty, else from `key_file`.
    pub fn load(key_file: Option<&Path>) -> Result<MachineKey, KeyError> {
        let env = env_value(PRIVATE_KEY_ENV);
        Self::load_from(env.as_ref().map(|s| s.as_str()), key_file)
    }

    /// As `load`, with the environment value passed in (for tests and callers that read the
    /// environment themselves). `env` wins over `key_file`.
    pub fn load_from(env: Option<&str>, key_file: Option<&Path>) -> Result<MachineKey, KeyError> {
        if let Some(text) = env {
            if key_file.is_some() {
                tracing::warn!("{PRIVATE_KEY_ENV} is set; ignoring the configured key file");
            }
            return Self::from_hex_named(text, PRIVATE_KEY_ENV);
        }
        match key_file {
            Some(path) => {
                let text = read_private_file(path)?;
                Self::from_hex_named(&text, &path.display().to_string())
            }
            None => Err(KeyError::Missing),
        }
    }

    /// From a V3 keystore file (mode 0600 or 0400) and its passphrase; the secret is only ever
    /// in zeroized memory.
    pub fn from_keystore(path: &Path, passphrase: &[u8]) -> Result<MachineKey, KeyError> {
        let json = read_private_file(path)?;
        let secret = crate::keystore::decrypt(json.as_bytes(), passphrase)
            .map_err(|source| KeyError::Keystore { path: path.to_owned(), source })?;
        Self::from_bytes_named(&secret, &path.display().to_string())
    }

    /// From 64 hex digits (optional `0x`).
    pub fn from_hex(text: &str) -> Result<MachineKey, KeyError> {
        Self::from_hex_named(text, "private key")
    }

    fn from_hex_named(text: &str, source_name: &str) -> Result<MachineKey, KeyError> {
        let bytes = parse_hex32(text, source_name)?;
        Self::from_bytes_named(&bytes, source_name)
    }

    /// From 32 raw bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<MachineKey, KeyError> {
        Self::from_bytes_named(bytes, "private key")
    }

    fn from_bytes_named(bytes: &[u8; 32], source_name: &str) -> Result<MachineKey, KeyError> {
        let secret = SecretKey::from_slice(bytes)
            .map_err(|_| KeyError::InvalidScalar { source_name: source_name.to_owned() })?;
        let secp = Secp256k1::new();
        let pk = PublicKey::from_secret_key(&secp, &secret);
        let address = address_of(&pk);
        let address_str = checksum_address(&address);
        let did = format!("did:peaq:{address_str}");
        let key_id = format!("{did}#keys-1");
        Ok(MachineKey { secret, secp, address, address_str, did, key_id })
    }

    /// The 20-byte address.
    pub fn address_bytes(&self) -> [u8; 20] {
        self.address
    }

    /// EIP-55 checksummed address `0x…`.
    pub fn address(&self) -> &str {
        &self.address_str
    }

    /// `did:peaq:0x<checksummed address>`.
    pub fn did(&self) -> &str {
        &self.did
    }

    /// `<did>#keys-1`, written as `signingKeyId` into packages.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The 32 secret bytes, for handing the same key to another signer implementation (the
    /// chain client's). Zeroized when dropped; never log or display them.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.secret_bytes())
    }

    /// EIP-191 `personal_sign` of `msg`: `r ‖ s ‖ v`, v = 27/28.
    pub fn sign_eip191(&self, msg: &[u8]) -> [u8; 65] {
        self.sign_digest(eip191_hash(msg))
    }

    /// Sign a 32-byte digest: `r ‖ s ‖ v`, v = 27/28.
    pub fn sign_digest(&self, digest: [u8; 32]) -> [u8; 65] {
        let msg = Message::from_digest(digest);
        let sig = self.secp.sign_ecdsa_recoverable(&msg, &self.secret);
        let (recid, compact) = sig.serialize_compact();
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&compact);
        out[64] = 27 + i32::from(recid) as u8;
        out
    }
}

impl fmt::Debug for MachineKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineKey").field("address", &self.address_str).field("secret", &"[REDACTED]").finish()
    }
}

impl Drop for MachineKey {
    fn drop(&mut self) {
        self.secret.non_secure_erase();
    }
}

/// The 32-byte AES-256-GCM key for `encrypt` field rules.
#[derive(Clone)]
pub struct FieldKey {
    bytes: Zeroizing<[u8; 32]>,
}

impl FieldKey {
    /// From 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> FieldKey {
        FieldKey { bytes: Zeroizing::new(bytes) }
    }

    /// From 64 hex digits (optional `0x`).
    pub fn from_hex(text: &str) -> Result<FieldKey, KeyError> {
        Ok(FieldKey { bytes: parse_hex32(text, "field encryption key")? })
    }

    /// The raw key.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Path of the key file under a data directory.
    pub fn default_path(data_dir: &Path) -> PathBuf {
        data_dir.join("keys").join("field_encryption.key")
    }

    /// Load from `PEAQOS_FIELD_ENCRYPTION_KEY`, else from (or create) the key file under
    /// `data_dir`.
    pub fn load(data_dir: &Path) -> Result<FieldKey, KeyError> {
        let env = env_value(FIELD_KEY_ENV);
        Self::load_from(env.as_ref().map(|s| s.as_str()), data_dir)
    }

    /// As `load`, with the environment value passed in.
    pub fn load_from(env: Option<&str>, data_dir: &Path) -> Result<FieldKey, KeyError> {
        if let Some(text) = env {
            return Ok(FieldKey { bytes: parse_hex32(text, FIELD_KEY_ENV)? });
        }
        let path = Self::default_path(data_dir);
        if !path.exists() {
            Self::create(&path)?;
        }
        let text = read_private_file(&path)?;
        Ok(FieldKey { bytes: parse_hex32(&text, &path.display().to_string())? })
    }

    fn create(path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io { path: path.to_owned(), source };
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
        }
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(&mut key[..]).map_err(|e| io(std::io::Error::other(format!("random source: {e}"))))?;
        let mut text = Zeroizing::new(hex::encode(&key[..]));
        text.push('\n');
        let mut f = match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(f) => f,
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        if let Some(dir) = path.parent() {
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        tracing::info!(path = %path.display(), "created a new field encryption key");
        Ok(())
    }
}

impl fmt::Debug for FieldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FieldKey([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HARDHAT0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    #[test]
    fn eip191_vector() {
        let k = MachineKey::from_hex(HARDHAT0).unwrap();
        assert_eq!(k.address(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
        assert_eq!(k.did(), "did:peaq:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
        assert_eq!(k.key_id(), "did:peaq:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266#keys-1");
        assert_eq!(
            hex::encode(eip191_hash(b"peaqOS test vector")),
            "0912c42b0c1178b059f2ccc4bcae704a9be2268483a2c7d2b6a2a88c448bd478"
        );
        let sig = k.sign_eip191(b"peaqOS test vector");
        assert_eq!(hex::encode(sig), "9270f53622c7e1e6cd8217c9a1c6f5f2e08974daf7cac2f5c8bd96371af9307c2e66f0db7410a242c1285f26091b94501eb5a0e173d6bf92e58be5121e21a0a71b");
        assert_eq!(recover_eip191(b"peaqOS test vector", &sig).unwrap(), k.address_bytes());
        let dbg = format!("{k:?}");
        assert!(!dbg.contains("ac0974"), "{dbg}");
    }
}
