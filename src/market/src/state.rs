//! Durable market state under `<data_dir>/market/`, written only through `peaqos_base::fsio`
//! (tmp + fsync + rename + directory fsync, mode 0600):
//!
//! * `machine.json` — `{version, identityRef, machineId?}`: the `mach_…` record of this identity.
//! * `agent.json` + `agent_token` — the enrolled agent (`{version, machineId, agentId, label}`)
//!   and its token (the secret alone, 0600), written as one batch.
//! * `enrolling.json` — written before an enrollment request: the agents that existed then, so a
//!   rerun after a crash can revoke the agent whose one-time token was lost.
//!
//! Files this crate did not write (unknown fields, other version) are errors naming the file, never
//! silently replaced.
use std::path::{Path, PathBuf};

use peaqos_base::fsio::{self, AtomicBatch, FsError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{MarketError, Result};
use crate::secret::{read_secret_file, Secret};

const VERSION: u32 = 1;

/// The machine record this node registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MachineRecord {
    pub version: u32,
    pub identity_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
}

/// The enrolled agent (its token is kept apart, in `agent_token`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentRecord {
    pub version: u32,
    pub machine_id: String,
    pub agent_id: String,
    pub label: String,
}

/// An enrollment in flight: the agent ids that existed before it was requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PendingEnrollment {
    pub version: u32,
    pub machine_id: String,
    pub label: String,
    pub known_agent_ids: Vec<String>,
}

/// The buyer's agent pairing (its session token is kept apart, in `pairing_token`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PairingRecord {
    pub version: u32,
    pub machine_id: String,
    pub pairing_id: String,
    pub agent_address: String,
    /// The session's end as the server said it (RFC 3339), when it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expires_at: Option<String>,
    /// The delegation policy the session was opened under.
    pub policy_fingerprint: String,
}

/// The `market/` directory of a node's data dir.
#[derive(Debug, Clone)]
pub struct MarketStore {
    dir: PathBuf,
}

impl MarketStore {
    /// Open (creating, mode 0700) `<data_dir>/market`.
    pub fn open(data_dir: &Path) -> Result<MarketStore> {
        let dir = peaqos_base::layout::market_dir(data_dir);
        fsio::create_private_dir(&dir)?;
        Ok(MarketStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let path = self.path(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FsError::new("read", path, e).into()),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| MarketError::State { path, message: e.to_string() })
    }

    fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).expect("state serializes");
        fsio::write_atomic(&self.path(name), &bytes)?;
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => fsio::sync_dir(&self.dir).map_err(Into::into),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FsError::new("remove", path, e).into()),
        }
    }

    fn check_version(&self, name: &str, version: u32) -> Result<()> {
        if version == VERSION {
            Ok(())
        } else {
            Err(MarketError::State { path: self.path(name), message: format!("version {version}, expected {VERSION}") })
        }
    }

    pub fn load_machine(&self) -> Result<Option<MachineRecord>> {
        let r: Option<MachineRecord> = self.read("machine.json")?;
        if let Some(r) = &r {
            self.check_version("machine.json", r.version)?;
        }
        Ok(r)
    }

    pub fn save_machine(&self, identity_ref: &str, machine_id: Option<&str>) -> Result<()> {
        let r = MachineRecord {
            version: VERSION,
            identity_ref: identity_ref.to_string(),
            machine_id: machine_id.map(str::to_string),
        };
        self.write("machine.json", &r)
    }

    /// The enrolled agent and its token; `None` unless both files are present.
    pub fn load_agent(&self) -> Result<Option<(AgentRecord, Secret)>> {
        let Some(r) = self.read::<AgentRecord>("agent.json")? else { return Ok(None) };
        self.check_version("agent.json", r.version)?;
        let token_path = self.path("agent_token");
        if !token_path.exists() {
            return Ok(None);
        }
        let token = read_secret_file("agent_token", &token_path)?;
        Ok(Some((r, token)))
    }

    /// Store the agent and its token together (one directory fsync) and drop the pending marker.
    pub fn save_agent(&self, machine_id: &str, agent_id: &str, label: &str, token: &Secret) -> Result<()> {
        let r = AgentRecord {
            version: VERSION,
            machine_id: machine_id.into(),
            agent_id: agent_id.into(),
            label: label.into(),
        };
        let mut batch = AtomicBatch::new(&self.dir);
        batch.write(&self.path("agent_token"), token.expose().as_bytes())?;
        batch.write(&self.path("agent.json"), &serde_json::to_vec_pretty(&r).expect("state serializes"))?;
        batch.commit()?;
        self.remove("enrolling.json")
    }

    /// Forget the agent (revoked, or enrolled for another machine record).
    pub fn clear_agent(&self) -> Result<()> {
        self.remove("agent_token")?;
        self.remove("agent.json")
    }

    /// The buyer's pairing and its session token; `None` unless both files are present.
    pub fn load_pairing(&self) -> Result<Option<(PairingRecord, Secret)>> {
        let Some(r) = self.read::<PairingRecord>("pairing.json")? else { return Ok(None) };
        self.check_version("pairing.json", r.version)?;
        let token_path = self.path("pairing_token");
        if !token_path.exists() {
            return Ok(None);
        }
        let token = read_secret_file("pairing_token", &token_path)?;
        Ok(Some((r, token)))
    }

    /// Store the pairing and its session token together (one directory fsync).
    pub fn save_pairing(&self, mut r: PairingRecord, token: &Secret) -> Result<()> {
        r.version = VERSION;
        let mut batch = AtomicBatch::new(&self.dir);
        batch.write(&self.path("pairing_token"), token.expose().as_bytes())?;
        batch.write(&self.path("pairing.json"), &serde_json::to_vec_pretty(&r).expect("state serializes"))?;
        batch.commit()?;
        Ok(())
    }

    /// Forget the pairing (revoked, paused, or for another machine record).
    pub fn clear_pairing(&self) -> Result<()> {
        self.remove("pairing_token")?;
        self.remove("pairing.json")
    }

    pub fn load_pending(&self) -> Result<Option<PendingEnrollment>> {
        let p: Option<PendingEnrollment> = self.read("enrolling.json")?;
        if let Some(p) = &p {
            self.check_version("enrolling.json", p.version)?;
        }
        Ok(p)
    }

    pub fn save_pending(&self, machine_id: &str, label: &str, known_agent_ids: Vec<String>) -> Result<()> {
        let p =
            PendingEnrollment { version: VERSION, machine_id: machine_id.into(), label: label.into(), known_agent_ids };
        self.write("enrolling.json", &p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trips_with_0600_token_and_rejects_foreign_files() {
        let d = tempfile::tempdir().unwrap();
        let s = MarketStore::open(d.path()).unwrap();
        assert!(s.load_machine().unwrap().is_none() && s.load_agent().unwrap().is_none());
        s.save_machine("did:peaq:1", Some("mach_1")).unwrap();
        assert_eq!(s.load_machine().unwrap().unwrap().machine_id.as_deref(), Some("mach_1"));
        s.save_pending("mach_1", "edge", vec!["agt_0".into()]).unwrap();
        s.save_agent("mach_1", "agt_1", "edge", &Secret::new("tok")).unwrap();
        assert!(s.load_pending().unwrap().is_none());
        let (a, t) = s.load_agent().unwrap().unwrap();
        assert_eq!((a.agent_id.as_str(), t.expose()), ("agt_1", "tok"));
        let mode = std::fs::metadata(s.dir().join("agent_token")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(s.dir().join("machine.json"), br#"{"version":1,"identityRef":"x","extra":1}"#).unwrap();
        let e = s.load_machine().unwrap_err().to_string();
        assert!(e.contains("machine.json") && e.contains("extra"), "{e}");
        s.clear_agent().unwrap();
        assert!(s.load_agent().unwrap().is_none());
    }
}
