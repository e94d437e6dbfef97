//! Shared helpers of the integration tests: a small deterministic PRNG, random JSON value
//! generators and the runner of the SDK oracle (`tests/sdk_oracle.py`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Map, Number, Value};

/// xorshift64* (deterministic, seedable).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

pub fn random_f64(r: &mut Rng) -> f64 {
    loop {
        let f = match r.below(6) {
            0 => f64::from_bits(r.next()),
            // subnormals
            1 => f64::from_bits(r.next() & 0x000f_ffff_ffff_ffff | (r.next() & 0x8000_0000_0000_0000)),
            2 => (r.below(2_000_000) as f64 - 1_000_000.0) / 10f64.powi(r.below(8) as i32),
            3 => (r.next() as i64 as f64) * 10f64.powi(r.below(40) as i32 - 20),
            4 => [0.0, -0.0, 1.0, 0.1, 1e16, 1e15, 1e-4, 1e-5, 1.5e-7, 9007199254740993.0, 123456789012345680.0]
                [r.below(11) as usize],
            _ => f64::from(f32::from_bits(r.next() as u32)),
        };
        if f.is_finite() {
            return f;
        }
    }
}

pub fn random_string(r: &mut Rng, allow_dot: bool) -> String {
    let n = r.below(8);
    let mut s = String::new();
    for _ in 0..n {
        let c = match r.below(10) {
            0 => char::from_u32(r.below(0x20) as u32).unwrap(),
            1 => ['"', '\\', '\u{7f}', '/', '\u{2028}', 'é', '☃', '\u{fffe}'][r.below(8) as usize],
            2 => char::from_u32(0x10000 + r.below(0xF0000) as u32).unwrap_or('x'),
            3 => loop {
                if let Some(c) = char::from_u32(0x80 + r.below(0xFF80) as u32) {
                    break c;
                }
            },
            _ => char::from(b'a' + r.below(26) as u8),
        };
        if !allow_dot && c == '.' {
            continue;
        }
        s.push(c);
    }
    s
}

pub fn random_number(r: &mut Rng) -> Value {
    match r.below(5) {
        0 => Value::from(r.below(1000)),
        1 => Value::from(r.next()),
        2 => Value::from(r.next() as i64),
        3 => Value::from([i64::MIN, i64::MAX, 0, -1][r.below(4) as usize]),
        _ => Value::Number(Number::from_f64(random_f64(r)).unwrap()),
    }
}

pub fn random_value(r: &mut Rng, depth: u32, keys: &dyn Fn(&mut Rng) -> String) -> Value {
    let k = if depth == 0 { r.below(4) } else { r.below(7) };
    match k {
        0 => Value::Null,
        1 => Value::Bool(r.chance(1, 2)),
        2 => random_number(r),
        3 => Value::String(random_string(r, true)),
        4 => Value::Array((0..r.below(4)).map(|_| random_value(r, depth - 1, keys)).collect()),
        _ => {
            let mut m = Map::new();
            for _ in 0..r.below(5) {
                let key = keys(r);
                m.insert(key, random_value(r, depth - 1, keys));
            }
            Value::Object(m)
        }
    }
}

#[allow(unused_imports)] // not every test file uses it
pub use peaqos_testkit::sdk_python;

/// Run the oracle on a request; returns its JSON answer.
pub fn run_oracle(python: &PathBuf, request: &Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let req = dir.path().join("request.json");
    std::fs::write(&req, serde_json::to_vec(request).unwrap()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_oracle.py");
    let out = Command::new(python).arg(&script).arg(&req).output().expect("run SDK oracle");
    assert!(out.status.success(), "oracle failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("oracle output is JSON")
}

/// One of the SDK-computed vector files in `test/fixtures/sdk/vectors/` (see PROVENANCE.md there).
pub fn vectors_file(name: &str) -> Value {
    let p = peaqos_testkit::fixture(&format!("sdk/vectors/{name}"));
    let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_slice(&b).expect("vector file is JSON")
}
