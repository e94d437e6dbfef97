//! Every path under the node's `data_dir`, named in one place. `peaqos-stream --data-dir` takes
//! the same folder, so one word means one folder everywhere.
//!
//! ```text
//! <data_dir>/packages/<topic dir>/seg-*.jsonl   the signed package log (peaqos_core)
//! <data_dir>/stream/<topic dir>/                a topic's chunk chain (peaqos_stream)
//! <data_dir>/chain/                             the chain outbox (peaqos_chain)
//! <data_dir>/events/                            event windows and pending events (peaqos_events)
//! <data_dir>/keys/                              keys the node made at first start
//! <data_dir>/market/                            Machine Markets state: machine, agent, purchases/ (peaqos_market)
//! <data_dir>/gas_station/                      Gas Station funding requests: pending.json, done/ (peaqos_chain)
//! <data_dir>/machine_id                         the machine id ~/activate answered
//! <data_dir>/peaqos.log                         the CLI-shaped journal
//! ```
use std::path::{Path, PathBuf};

pub fn packages_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("packages")
}

pub fn stream_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("stream")
}

pub fn chain_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("chain")
}

pub fn events_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("events")
}

/// Machine Markets state (`machine.json`, `agent.json`, `agent_token`, `purchases/`).
pub fn market_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("market")
}

/// Gas Station funding requests (`pending.json`: the request id in flight; `done/`).
pub fn gas_station_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("gas_station")
}

pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

/// The machine id `~/activate` answered (decimal, one line), read by the stream and event rules.
pub fn machine_id_file(data_dir: &Path) -> PathBuf {
    data_dir.join("machine_id")
}

/// Directory name of a topic, the same under `packages/` and `stream/`: the leading `/`
/// dropped, `/` → `.`, `[A-Za-z0-9_]` kept, every other byte → `%XX`; a relative (or empty)
/// name gets the prefix `%rel.`. Injective: two topics never share a directory (`/a` and `a`,
/// `/a/b` and `/a.b` differ).
pub fn topic_dir_name(topic: &str) -> String {
    let t = topic.strip_prefix('/').unwrap_or(topic);
    let mut s = String::with_capacity(t.len() + 4);
    if t.is_empty() || topic == t {
        s.push_str("%rel.");
    }
    for b in t.bytes() {
        match b {
            b'/' => s.push('.'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' => s.push(char::from(b)),
            _ => s.push_str(&format!("%{b:02X}")),
        }
    }
    s
}

/// The name the chunk stream used for a topic before it shared [`topic_dir_name`] (`-` kept,
/// relative names unmarked): read only to move such a directory to its new name.
pub fn legacy_stream_topic_dir_name(topic: &str) -> String {
    let t = topic.strip_prefix('/').unwrap_or(topic);
    let mut out = String::with_capacity(t.len());
    for b in t.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => out.push(b as char),
            b'/' => out.push('.'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_injective() {
        assert_eq!(topic_dir_name("/sensor/gps"), "sensor.gps");
        assert_eq!(topic_dir_name("/a.b"), "a%2Eb");
        assert_ne!(topic_dir_name("/a/b"), topic_dir_name("/a.b"));
        assert_ne!(topic_dir_name("/a"), topic_dir_name("a"));
        assert_ne!(topic_dir_name("/a-b"), topic_dir_name("/a%2Db"));
        assert_eq!(topic_dir_name("/a-b"), "a%2Db");
        // Names ROS allows ([A-Za-z0-9_/]) are the same as before under both encodings.
        assert_eq!(topic_dir_name("/robot_1/odom"), legacy_stream_topic_dir_name("/robot_1/odom"));
    }
}
