//! User-given durations (parameters, policy keys) → `Duration`, checked: finite, in range, never
//! a panic (`Duration::from_secs_f64` panics on negative, NaN or huge input) nor a wrapped
//! integer (`u64::MAX as i64` is −1).

use std::time::Duration;

/// The longest duration any setting accepts: 366 days. Longer is refused as absurd.
pub const MAX_SECONDS: u64 = 366 * 24 * 3600;

/// `secs` as a duration in `(0 or more)..=MAX_SECONDS`; `zero_ok` says whether 0 is allowed.
/// The error says what is wrong (the caller names the setting).
pub fn seconds(secs: f64, zero_ok: bool) -> Result<Duration, String> {
    let lower = if zero_ok { ">= 0" } else { "> 0" };
    if !secs.is_finite() || secs < 0.0 || (!zero_ok && secs == 0.0) || secs > MAX_SECONDS as f64 {
        return Err(format!("must be a number of seconds {lower} and at most {MAX_SECONDS} (366 days), got {secs}"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{secs} seconds: {e}"))
}

/// Whole seconds in `1..=MAX_SECONDS` (windows), as `i64` for time arithmetic.
pub fn whole_seconds(secs: u64) -> Result<i64, String> {
    if !(1..=MAX_SECONDS).contains(&secs) {
        return Err(format!("must be 1..={MAX_SECONDS} seconds (366 days), got {secs}"));
    }
    i64::try_from(secs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(seconds(2.5, false).unwrap(), Duration::from_millis(2500));
        assert_eq!(seconds(0.0, true).unwrap(), Duration::ZERO);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300, 18446744073709551615.0, (MAX_SECONDS + 1) as f64] {
            assert!(seconds(bad, false).is_err(), "{bad}");
        }
        assert_eq!(whole_seconds(3600), Ok(3600));
        for bad in [0, u64::MAX, 1 << 63, (1 << 63) - 1, MAX_SECONDS + 1] {
            assert!(whole_seconds(bad).is_err(), "{bad}");
        }
    }
}
