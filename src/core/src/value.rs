//! How ROS message values become JSON values in a package payload.
//!
//! The node converts each incoming ROS message into a `serde_json::Map` of its top-level
//! fields with these helpers, so that every machine produces the same canonical bytes:
//!
//! * `float64`: finite values as JSON numbers (canonical form = Python `repr`).
//! * `float32`: the shortest decimal that round-trips the `f32` (`0.1f32` → `0.1`, not
//!   `0.10000000149011612`), re-read as `f64`; the canonical form is then stable across
//!   implementations.
//! * Non-finite floats (the SDK's canonical JSON rejects them) become strings:
//!   NaN → `"NaN"`, +∞ → `"Infinity"`, −∞ → `"-Infinity"` (the spellings of Python's
//!   `json` module and rosbridge).
//! * `uint8[]`/`byte[]` → standard padded base64 string (as rosbridge does).
//! * 64-bit integers stay exact JSON integers (`i64`/`u64`).
//! * Timestamps: `iso8601_utc` writes `YYYY-MM-DDTHH:MM:SS[.fffffffff]Z` (nanoseconds, 9
//!   digits, omitted when zero). The SDK does not parse `timestamp` (it signs the string as
//!   given) and Python 3.11 `datetime.fromisoformat` accepts the 9-digit fraction.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Number, Value};

/// JSON value of a ROS `float64`.
pub fn float64(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None => non_finite(f),
    }
}

/// JSON value of a ROS `float32` (shortest decimal that round-trips the `f32`).
pub fn float32(f: f32) -> Value {
    if !f.is_finite() {
        return non_finite(f64::from(f));
    }
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(f);
    match s.parse::<f64>().ok().and_then(Number::from_f64) {
        Some(n) => Value::Number(n),
        None => float64(f64::from(f)),
    }
}

fn non_finite(f: f64) -> Value {
    Value::String(
        if f.is_nan() {
            "NaN"
        } else if f > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
        .to_owned(),
    )
}

/// JSON value of a ROS `uint8[]`/`byte[]`: standard base64 string.
pub fn bytes(b: &[u8]) -> Value {
    Value::String(crate::b64::encode(b))
}

/// JSON value of a ROS `int64` (exact).
pub fn int64(i: i64) -> Value {
    Value::from(i)
}

/// JSON value of a ROS `uint64` (exact).
pub fn uint64(u: u64) -> Value {
    Value::from(u)
}

/// A ROS time (`builtin_interfaces/Time`): seconds and nanoseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub sec: i64,
    /// Nanoseconds (values ≥ 1e9 carry into `sec`).
    pub nanosec: u32,
}

impl Timestamp {
    /// The time of a `SystemTime` (times before the epoch give negative seconds).
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp { sec: d.as_secs() as i64, nanosec: d.subsec_nanos() },
            Err(e) => {
                let d = e.duration();
                let mut sec = -(d.as_secs() as i64);
                let mut nanosec = d.subsec_nanos();
                if nanosec > 0 {
                    sec -= 1;
                    nanosec = 1_000_000_000 - nanosec;
                }
                Timestamp { sec, nanosec }
            }
        }
    }

    /// Now.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fffffffff]Z` for a timestamp (fraction only when non-zero).
pub fn iso8601_utc(ts: Timestamp) -> String {
    let sec = ts.sec.saturating_add(i64::from(ts.nanosec / 1_000_000_000));
    let nanos = ts.nanosec % 1_000_000_000;
    let days = sec.div_euclid(86_400);
    let rem = sec.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", y, m, d, rem / 3600, (rem % 3600) / 60, rem % 60);
    if nanos != 0 {
        s.push_str(&format!(".{nanos:09}"));
    }
    s.push('Z');
    s
}

/// The inverse of [`iso8601_utc`]: `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` → timestamp (`None` for any
/// other form or an impossible date).
pub fn parse_iso8601_utc(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = s.get(19..)?.strip_suffix('Z')?;
    let nanosec = match rest.strip_prefix('.') {
        None if rest.is_empty() => 0,
        Some(f) if (1..=9).contains(&f.len()) && f.bytes().all(|c| c.is_ascii_digit()) => {
            f.parse::<u32>().ok()? * 10u32.pow(9 - f.len() as u32)
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || d < 1 || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    if civil_from_days(days) != (y, mo as u32, d as u32) {
        return None;
    }
    Some(Timestamp { sec: days * 86_400 + h * 3600 + mi * 60 + se, nanosec })
}

/// Day count since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical_json::to_canonical_string;

    #[test]
    fn iso8601_round_trip() {
        for ts in [
            Timestamp { sec: 1_767_225_600, nanosec: 0 },
            Timestamp { sec: 1_735_000_000, nanosec: 5 },
            Timestamp { sec: 951_782_400, nanosec: 123_456_789 },
            Timestamp { sec: 0, nanosec: 0 },
        ] {
            assert_eq!(parse_iso8601_utc(&iso8601_utc(ts)), Some(ts));
        }
        assert_eq!(
            parse_iso8601_utc("2026-01-01T00:00:00.5Z"),
            Some(Timestamp { sec: 1_767_225_600, nanosec: 500_000_000 })
        );
        for bad in ["2026-02-30T00:00:00Z", "2026-01-01 00:00:00Z", "2026-01-01T00:00:00", "x", "2026-01-01T00:00:00.Z"]
        {
            assert_eq!(parse_iso8601_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn floats() {
        assert_eq!(to_canonical_string(&float32(0.1)).unwrap(), "0.1");
        assert_eq!(to_canonical_string(&float32(1.0)).unwrap(), "1.0");
        assert_eq!(to_canonical_string(&float32(3.4028235e38)).unwrap(), "3.4028235e+38");
        assert_eq!(to_canonical_string(&float64(0.1)).unwrap(), "0.1");
        assert_eq!(float64(f64::NAN), Value::String("NaN".into()));
        assert_eq!(float32(f32::INFINITY), Value::String("Infinity".into()));
        assert_eq!(float64(f64::NEG_INFINITY), Value::String("-Infinity".into()));
        assert_eq!(bytes(&[0, 1, 2, 255]), Value::String("AAEC/w==".into()));
        assert_eq!(to_canonical_string(&uint64(u64::MAX)).unwrap(), "18446744073709551615");
    }

    #[test]
    fn timestamps() {
        assert_eq!(iso8601_utc(Timestamp { sec: 1_767_225_600, nanosec: 0 }), "2026-01-01T00:00:00Z");
        assert_eq!(iso8601_utc(Timestamp { sec: 1_735_000_000, nanosec: 5 }), "2024-12-24T00:26:40.000000005Z");
        assert_eq!(iso8601_utc(Timestamp { sec: 0, nanosec: 0 }), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_utc(Timestamp { sec: -1, nanosec: 500_000_000 }), "1969-12-31T23:59:59.500000000Z");
        assert_eq!(iso8601_utc(Timestamp { sec: 951_782_400, nanosec: 0 }), "2000-02-29T00:00:00Z");
        let t = Timestamp::from_system_time(UNIX_EPOCH - std::time::Duration::from_millis(1500));
        assert_eq!(t, Timestamp { sec: -2, nanosec: 500_000_000 });
    }
}
