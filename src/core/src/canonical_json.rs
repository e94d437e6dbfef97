//! Canonical JSON, byte-for-byte equal to the peaq OS SDK's `canonical_json_stringify`
//! (`peaq_os_sdk/stream/_internal/canonical_json.py`, SDK 0.12.1).
//!
//! The SDK serialises every scalar with Python's `json.dumps` defaults and joins containers
//! itself, so the format is:
//!
//! * objects: keys sorted by Python string order (= Unicode code point order = UTF-8 byte
//!   order, which is what `str::cmp` does) at every level; `{"k":v,"k2":v2}` with no spaces;
//! * arrays: element order kept, `[a,b]`;
//! * `null`, `true`, `false`;
//! * integers: exact decimal (`i64`/`u64`);
//! * floats: Python `repr(float)`: the shortest digit string that round-trips, laid out in
//!   positional form when the decimal exponent `decpt` (value = 0.d1d2… × 10^decpt) satisfies
//!   `-4 < decpt <= 16` (`1.0`, `0.1`, `0.0001`, `1000000000000000.0`) and in exponent form
//!   otherwise (`1e+16`, `1e-05`, `1.5e-07`, `1.7976931348623157e+308`); `-0.0` keeps its sign.
//!   NaN and ±Infinity are rejected by the SDK; `serde_json::Value` cannot hold them either;
//! * strings: `ensure_ascii=True` escaping: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`; every
//!   other byte outside `0x20..=0x7e` (control characters, DEL, all non-ASCII) as `\uXXXX` with
//!   lowercase hex, characters above U+FFFF as a UTF-16 surrogate pair (`\ud83d\ude00`).
//!
//! This is neither RFC 8785 nor JavaScript's `JSON.stringify`.

use serde_json::{Map, Number, Value};

/// Errors of canonical serialisation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CanonicalError {
    /// A number that is not finite (only reachable with serde_json's `arbitrary_precision`).
    #[error("canonical JSON: non-finite number at {path}")]
    NonFinite {
        /// JSON path of the number, e.g. `$.gps.latitude`.
        path: String,
    },
}

/// Append the canonical JSON of `v` to `out`.
pub fn write_canonical(v: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match write_value(v, out) {
        Ok(()) => Ok(()),
        Err(()) => Err(CanonicalError::NonFinite { path: find_non_finite(v, "$").unwrap_or_else(|| "$".to_owned()) }),
    }
}

/// Canonical JSON of `v` as a `String`.
pub fn to_canonical_string(v: &Value) -> Result<String, CanonicalError> {
    let mut out = Vec::with_capacity(128);
    write_canonical(v, &mut out)?;
    // Everything written is ASCII (ensure_ascii), so this never fails.
    Ok(String::from_utf8(out).unwrap_or_default())
}

/// Canonical JSON of `v` as bytes.
pub fn to_canonical_vec(v: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(128);
    write_canonical(v, &mut out)?;
    Ok(out)
}

/// Append the canonical JSON of an object (same rules as for `Value::Object`).
pub fn write_canonical_map(m: &Map<String, Value>, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match write_object(m, out) {
        Ok(()) => Ok(()),
        Err(()) => {
            let mut path = None;
            for (k, v) in m {
                if let Some(p) = find_non_finite(v, &format!("$.{k}")) {
                    path = Some(p);
                    break;
                }
            }
            Err(CanonicalError::NonFinite { path: path.unwrap_or_else(|| "$".to_owned()) })
        }
    }
}

fn find_non_finite(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::Number(n) => {
            let mut tmp = Vec::new();
            write_number(n, &mut tmp).err().map(|()| path.to_owned())
        }
        Value::Array(a) => a.iter().enumerate().find_map(|(i, x)| find_non_finite(x, &format!("{path}[{i}]"))),
        Value::Object(m) => m.iter().find_map(|(k, x)| find_non_finite(x, &format!("{path}.{k}"))),
        _ => None,
    }
}

fn write_value(v: &Value, out: &mut Vec<u8>) -> Result<(), ()> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_str(s, out),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(x, out)?;
            }
            out.push(b']');
        }
        Value::Object(m) => write_object(m, out)?,
    }
    Ok(())
}

fn write_object(m: &Map<String, Value>, out: &mut Vec<u8>) -> Result<(), ()> {
    out.push(b'{');
    // serde_json's default Map is a BTreeMap (already sorted); with `preserve_order` (enabled
    // by other crates of the workspace) it keeps insertion order, so sort when needed.
    let mut sorted = true;
    let mut prev: Option<&String> = None;
    for k in m.keys() {
        if let Some(p) = prev {
            if p.as_bytes() > k.as_bytes() {
                sorted = false;
                break;
            }
        }
        prev = Some(k);
    }
    if sorted {
        for (i, (k, v)) in m.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(k, out);
            out.push(b':');
            write_value(v, out)?;
        }
    } else {
        let mut entries: Vec<(&String, &Value)> = m.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (i, (k, v)) in entries.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(k, out);
            out.push(b':');
            write_value(v, out)?;
        }
    }
    out.push(b'}');
    Ok(())
}

/// Append a JSON number in Python `json.dumps` form.
fn write_number(n: &Number, out: &mut Vec<u8>) -> Result<(), ()> {
    if n.is_u64() {
        if let Some(u) = n.as_u64() {
            out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
            return Ok(());
        }
    }
    if n.is_i64() {
        if let Some(i) = n.as_i64() {
            out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
            return Ok(());
        }
    }
    match n.as_f64() {
        Some(f) if f.is_finite() => {
            write_f64(f, out);
            Ok(())
        }
        _ => Err(()),
    }
}

/// Append a finite `f64` exactly as Python's `repr(float)` does.
pub fn write_f64(f: f64, out: &mut Vec<u8>) {
    if f == 0.0 {
        out.extend_from_slice(if f.is_sign_negative() { b"-0.0" } else { b"0.0" });
        return;
    }
    if !f.is_finite() {
        // Not representable in JSON; callers never pass these (see `value`).
        out.extend_from_slice(b"null");
        return;
    }
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(f).as_bytes();
    let (neg, s) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    // Split ryu's output ("1.5e-7", "0.0001", "123.0", "1e16") into digits and exponent.
    let (mant, exp) = match s.iter().position(|&c| c == b'e') {
        Some(i) => (&s[..i], parse_exp(&s[i + 1..])),
        None => (s, 0),
    };
    let mut digits = [0u8; 40];
    let mut nd = 0usize;
    let mut point: Option<usize> = None;
    for &c in mant {
        if c == b'.' {
            point = Some(nd);
        } else if nd < digits.len() {
            digits[nd] = c;
            nd += 1;
        }
    }
    let mut point = point.unwrap_or(nd) as i32;
    let mut start = 0usize;
    while start < nd && digits[start] == b'0' {
        start += 1;
        point -= 1;
    }
    let mut end = nd;
    while end > start && digits[end - 1] == b'0' {
        end -= 1;
    }
    let d = &digits[start..end];
    let decpt = point + exp;
    if neg {
        out.push(b'-');
    }
    let len = d.len() as i32;
    if decpt <= -4 || decpt > 16 {
        out.push(d[0]);
        if d.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&d[1..]);
        }
        out.push(b'e');
        let e = decpt - 1;
        out.push(if e < 0 { b'-' } else { b'+' });
        let ea = e.unsigned_abs();
        if ea < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(itoa::Buffer::new().format(ea).as_bytes());
    } else if decpt <= 0 {
        out.extend_from_slice(b"0.");
        for _ in 0..(-decpt) {
            out.push(b'0');
        }
        out.extend_from_slice(d);
    } else if decpt >= len {
        out.extend_from_slice(d);
        for _ in 0..(decpt - len) {
            out.push(b'0');
        }
        out.extend_from_slice(b".0");
    } else {
        let p = decpt as usize;
        out.extend_from_slice(&d[..p]);
        out.push(b'.');
        out.extend_from_slice(&d[p..]);
    }
}

fn parse_exp(s: &[u8]) -> i32 {
    let (neg, s) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut e: i32 = 0;
    for &c in s {
        e = e * 10 + i32::from(c.wrapping_sub(b'0'));
    }
    if neg {
        -e
    } else {
        e
    }
}

/// Append a JSON string literal with Python's `ensure_ascii=True` escaping.
#[inline]
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    peaqos_base::json::write_str(s, peaqos_base::json::NonAscii::Escape, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(x: f64) -> String {
        let mut v = Vec::new();
        write_f64(x, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn python_float_repr() {
        assert_eq!(f(1.0), "1.0");
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(-0.0), "-0.0");
        assert_eq!(f(1e16), "1e+16");
        assert_eq!(f(1e15), "1000000000000000.0");
        assert_eq!(f(1e-5), "1e-05");
        assert_eq!(f(1e-4), "0.0001");
        assert_eq!(f(1.5e-7), "1.5e-07");
        assert_eq!(f(123.456), "123.456");
        assert_eq!(f(1.7976931348623157e308), "1.7976931348623157e+308");
        assert_eq!(f(5e-324), "5e-324");
        assert_eq!(f(-2.5e100), "-2.5e+100");
        assert_eq!(f(12345678901234567.0), "1.2345678901234568e+16");
        assert_eq!(f(1234567890123456.0), "1234567890123456.0");
    }

    #[test]
    fn strings_and_objects() {
        let v = json!({"name": "Zürich ☃", "b": [1, -2, {"z": null, "y": true}], "e": "\u{1F600}\n\"\\\u{7f}\u{0}"});
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            r#"{"b":[1,-2,{"y":true,"z":null}],"e":"\ud83d\ude00\n\"\\\u007f\u0000","name":"Z\u00fcrich \u2603"}"#
        );
        assert_eq!(to_canonical_string(&json!({})).unwrap(), "{}");
        assert_eq!(to_canonical_string(&json!([])).unwrap(), "[]");
        assert_eq!(to_canonical_string(&json!(u64::MAX)).unwrap(), "18446744073709551615");
        assert_eq!(to_canonical_string(&json!(i64::MIN)).unwrap(), "-9223372036854775808");
    }
}
