//! The on-disk store under `<data_dir>/chain/`: the `flock`, atomic intent records in
//! `intents/` and `done/`, and the per-signer `nonces/` files (layout in the [module docs](super)).

use std::fs;
use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256};
use serde_json::{json, Value};

use super::intent::Intent;
use crate::error::{ChainError, ErrorCode, Result};

/// Durable file operations.
#[derive(Debug)]
pub(super) struct Store {
    pub(super) root: PathBuf,
    _lock: fs::File,
}

pub(super) fn io_err(p: &Path, e: impl std::fmt::Display) -> ChainError {
    ChainError::store(ErrorCode::StoreIo, p, e)
}

impl Store {
    pub(super) fn open(data_dir: &Path) -> Result<Self> {
        let root = peaqos_base::layout::chain_dir(data_dir);
        for d in ["intents", "done", "nonces", "keys"] {
            let p = root.join(d);
            let mut b = fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            b.create(&p).map_err(|e| io_err(&p, e))?;
        }
        let lp = root.join("outbox.lock");
        let f =
            fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lp).map_err(|e| io_err(&lp, e))?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a valid, owned file descriptor.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                return Err(ChainError::store(ErrorCode::StoreLocked, &lp, "another process holds the outbox lock"));
            }
        }
        Ok(Store { root, _lock: f })
    }

    pub(super) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        peaqos_base::fsio::write_atomic(path, bytes).map_err(|e| {
            if e.is_disk_full() {
                ChainError::store(
                    ErrorCode::StoreFull,
                    &e.path.clone(),
                    format!("disk full ({e}): the outbox takes no new intent until space is freed; stored intents are intact"),
                )
            } else {
                io_err(&e.path.clone(), e)
            }
        })
    }

    pub(super) fn intent_path(&self, id: &str) -> PathBuf {
        self.root.join("intents").join(format!("{id}.json"))
    }

    pub(super) fn save(&self, i: &Intent) -> Result<()> {
        let p = self.intent_path(&i.id);
        let bytes = serde_json::to_vec_pretty(i).map_err(|e| io_err(&p, e))?;
        self.write_atomic(&p, &bytes)?;
        if i.state.is_terminal() {
            let dst = self.root.join("done").join(format!("{}.json", i.id));
            fs::rename(&p, &dst).map_err(|e| io_err(&dst, e))?;
            if let Ok(d) = fs::File::open(self.root.join("done")) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// `keys/<keccak256(key)>.json`: the intent an idempotency key names.
    pub(super) fn key_path(&self, key: &str) -> PathBuf {
        let h = alloy::primitives::keccak256(key.as_bytes());
        self.root.join("keys").join(format!("{}.json", alloy::hex::encode(h)))
    }

    /// The intent id stored for `key`, and whether the intent was saved after it (phase 2).
    pub(super) fn read_key(&self, key: &str) -> Result<Option<(String, bool)>> {
        let p = self.key_path(key);
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&p, e)),
        };
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| io_err(&p, e))?;
        match (v["id"].as_str(), v["committed"].as_bool()) {
            (Some(id), Some(c)) if v["key"].as_str() == Some(key) => Ok(Some((id.to_string(), c))),
            _ => Err(io_err(&p, "not an idempotency key record of this key")),
        }
    }

    pub(super) fn write_key(&self, key: &str, id: &str, committed: bool) -> Result<()> {
        let p = self.key_path(key);
        let bytes =
            serde_json::to_vec(&json!({"key": key, "id": id, "committed": committed})).map_err(|e| io_err(&p, e))?;
        self.write_atomic(&p, &bytes)
    }

    pub(super) fn load_all(&self) -> Result<Vec<Intent>> {
        let dir = self.root.join("intents");
        let mut out = vec![];
        for e in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let e = e.map_err(|e| io_err(&dir, e))?;
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                // leftover .tmp from a crash mid-write: the previous version is intact
                let _ = fs::remove_file(&p);
                continue;
            }
            let s = fs::read(&p).map_err(|e| io_err(&p, e))?;
            let i: Intent =
                serde_json::from_slice(&s).map_err(|e| ChainError::store(ErrorCode::StoreCorrupt, &p, e))?;
            out.push(i);
        }
        out.sort_by_key(|i| i.seq);
        Ok(out)
    }

    pub(super) fn max_seq(&self) -> u64 {
        let mut m = 0;
        for d in ["intents", "done"] {
            if let Ok(rd) = fs::read_dir(self.root.join(d)) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if let Some(n) = name.split('-').next().and_then(|s| s.parse::<u64>().ok()) {
                        m = m.max(n);
                    }
                }
            }
        }
        m
    }

    pub(super) fn nonce_path(&self, signer: Address) -> PathBuf {
        self.root.join("nonces").join(format!("{signer:#x}.json"))
    }

    /// (next nonce, genesis block hash of the chain it was used on, when recorded).
    pub(super) fn read_nonce(&self, signer: Address) -> Result<Option<(u64, Option<B256>)>> {
        let p = self.nonce_path(signer);
        match fs::read(&p) {
            Ok(s) => {
                let v: Value =
                    serde_json::from_slice(&s).map_err(|e| ChainError::store(ErrorCode::StoreCorrupt, &p, e))?;
                let genesis = v.get("genesis").and_then(Value::as_str).and_then(|g| g.parse::<B256>().ok());
                Ok(v.get("next_nonce").and_then(Value::as_u64).map(|n| (n, genesis)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    pub(super) fn write_nonce(&self, signer: Address, next: u64, genesis: Option<B256>) -> Result<()> {
        let p = self.nonce_path(signer);
        let mut v = json!({"signer": signer, "next_nonce": next});
        if let Some(g) = genesis {
            v["genesis"] = json!(g);
        }
        self.write_atomic(&p, v.to_string().as_bytes())
    }
}
