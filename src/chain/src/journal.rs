//! `<data_dir>/peaqos.log`: append-only JSONL journal in the peaq CLI's shape (SPEC §3.5, §3.7).
//!
//! Each line is what Python's `json.dumps(entry, sort_keys=True)` writes: keys sorted, separators
//! `", "` and `": "`, non-ASCII escaped as `\uXXXX` (ensure_ascii), plus `"ts"` =
//! `datetime.now(timezone.utc).isoformat()` (e.g. `2026-11-25T02:37:31.123456+00:00`). The file is
//! created with mode 0600. Keys `totp, TOTP, private_key, privateKey, PEAQOS_PRIVATE_KEY` are
//! scrubbed (value replaced by `"[REDACTED]"`, at any depth). Every line is written with one
//! `write_all` and flushed with `sync_data` before returning, so a pending tx hash is on disk before
//! the caller starts awaiting its receipt.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value};

use crate::error::{ChainError, ErrorCode, Result};

/// Keys whose values never reach the journal.
pub const SCRUBBED_KEYS: [&str; 5] = ["totp", "TOTP", "private_key", "privateKey", "PEAQOS_PRIVATE_KEY"];

/// Journal writer (one per data dir; serialised by a mutex).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    lock: Mutex<()>,
}

/// Python `json.dumps(v, sort_keys=True)` (default separators, ensure_ascii).
pub fn py_json_dumps(v: &Value) -> String {
    let mut out = String::new();
    write_py(v, &mut out);
    out
}

fn write_py_str(s: &str, out: &mut String) {
    peaqos_base::json::push_str(s, peaqos_base::json::NonAscii::Escape, true, out);
}

fn write_py(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_py_str(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py_str(k, out);
                out.push_str(": ");
                write_py(&o[k.as_str()], out);
            }
            out.push('}');
        }
    }
}

fn scrub(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                if SCRUBBED_KEYS.contains(&k.as_str()) {
                    *x = Value::String("[REDACTED]".into());
                } else {
                    scrub(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(scrub),
        _ => {}
    }
}

/// Python `datetime.now(timezone.utc).isoformat()`.
pub fn py_utc_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

impl Journal {
    pub fn new(data_dir: &Path) -> Self {
        Journal { path: data_dir.join("peaqos.log"), lock: Mutex::new(()) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one entry (an object); adds `ts`, scrubs secrets, flushes to disk.
    pub fn append(&self, entry: Map<String, Value>) -> Result<()> {
        let mut v = Value::Object(entry);
        scrub(&mut v);
        if let Value::Object(o) = &mut v {
            o.insert("ts".into(), Value::String(py_utc_now()));
        }
        let mut line = py_json_dumps(&v);
        line.push('\n');
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut opts = OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&self.path).map_err(|e| ChainError::store(ErrorCode::StoreIo, &self.path, e))?;
        f.write_all(line.as_bytes()).map_err(|e| ChainError::store(ErrorCode::StoreIo, &self.path, e))?;
        f.sync_data().map_err(|e| ChainError::store(ErrorCode::StoreIo, &self.path, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_dumps_shape() {
        let v = json!({"b": 1, "a": "Zürich ☃", "c": [1, {"y": null, "x": true}], "private_key": "0xdead"});
        let mut v2 = v.clone();
        scrub(&mut v2);
        assert_eq!(
            py_json_dumps(&v2),
            r#"{"a": "Z\u00fcrich \u2603", "b": 1, "c": [1, {"x": true, "y": null}], "private_key": "[REDACTED]"}"#
        );
    }

    #[test]
    fn file_mode_and_ts() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::new(d.path());
        let mut m = Map::new();
        m.insert("step".into(), json!("register"));
        m.insert("totp".into(), json!("123456"));
        j.append(m).unwrap();
        let s = std::fs::read_to_string(j.path()).unwrap();
        assert!(s.starts_with(r#"{"step": "register", "totp": "[REDACTED]", "ts": "#), "{s}");
        assert!(!s.contains("123456"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(j.path()).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
