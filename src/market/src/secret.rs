//! Secrets of the market client (platform API key, agent token): held zeroized, never shown.
//!
//! [`Secret`]'s `Debug` and `Display` print `[REDACTED]`; the value leaves only through
//! [`Secret::expose`] (for a header) or serialization (for a request body). Secrets are read from
//! the environment or from a file that only the node's user can read (mode 0600 or 0400, like the
//! machine key).
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::error::{MarketError, Result};

/// Environment variables holding the platform API key, in order of precedence.
pub const API_KEY_ENVS: [&str; 2] = ["PEAQOS_API_KEY", "PEAQOS_ORCH_API_KEY"];

/// A secret string.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret value, to put into a header or file. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// Read a secret from `path`: a regular file of mode 0600 or 0400, UTF-8, surrounding whitespace
/// trimmed, not empty. `field` names the setting in errors.
pub fn read_secret_file(field: &'static str, path: &Path) -> Result<Secret> {
    let err = |message: String| MarketError::Config { field, message: format!("{}: {message}", path.display()) };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode != 0o600 && mode != 0o400 {
        return Err(err(format!("mode {mode:04o}; a secret file must be 0600 or 0400 (chmod 600)")));
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| err("not UTF-8 text".into()))?;
    let secret = Secret::new(text.trim());
    if secret.is_blank() {
        return Err(err("empty".into()));
    }
    Ok(secret)
}

/// The platform API key: read from `key_file` when one is configured, else `PEAQOS_API_KEY`, else
/// `PEAQOS_ORCH_API_KEY` (the configured file wins, as the machine key's `key_file` does); `None`
/// when none is configured (the client then sends no `x-api-key`, as the SDK does).
pub fn load_api_key(key_file: Option<&Path>) -> Result<Option<Secret>> {
    load_api_key_from(|name| std::env::var(name).ok(), key_file)
}

/// As [`load_api_key`], with the environment passed in (tests).
pub fn load_api_key_from(env: impl Fn(&str) -> Option<String>, key_file: Option<&Path>) -> Result<Option<Secret>> {
    if let Some(p) = key_file {
        return read_secret_file("api_key_file", p).map(Some);
    }
    for name in API_KEY_ENVS {
        if let Some(v) = env(name).map(Secret::new).filter(|s| !s.is_blank()) {
            return Ok(Some(Secret::new(v.expose().trim())));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shown() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s} {:?}", Some(&s)).contains("hunter2"));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"hunter2\"");
    }

    #[test]
    fn file_wins_with_mode_checked_then_env() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("key");
        std::fs::write(&f, "  file-key\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_api_key_from(|_| None, Some(&f)).unwrap_err().to_string();
        assert!(e.contains("api_key_file") && e.contains("0644"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_api_key_from(|_| None, Some(&f)).unwrap().unwrap().expose(), "file-key");
        let env = |n: &str| (n == "PEAQOS_ORCH_API_KEY").then(|| "env-key".to_string());
        assert_eq!(load_api_key_from(env, Some(&f)).unwrap().unwrap().expose(), "file-key");
        assert_eq!(load_api_key_from(env, None).unwrap().unwrap().expose(), "env-key");
        assert!(load_api_key_from(|_| Some(" ".into()), None).unwrap().is_none());
    }
}
