//! Exact decimal values and their conversion to the integer minor units the contract takes.
//!
//! A field value is read as the decimal the package shows (integers exactly, floats as their
//! shortest round-trip decimal, so `0.29` is `29 × 10⁻²`, never `0.28999…`). Sums, scales and
//! means are exact; the only rounding is the final one, with the rule's explicit mode. Values
//! that cannot be converted (NaN/±Infinity, negative, too large) are errors, never guessed.

use std::cmp::Ordering;

/// `m × 10^e`, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dec {
    pub m: i128,
    pub e: i32,
}

/// Why a value cannot become an event value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvertError {
    /// NaN, Infinity, -Infinity.
    NotFinite,
    /// Below zero after scaling.
    Negative,
    /// Does not fit (exponent or 128-bit range).
    Overflow,
}

impl ConvertError {
    /// The skip reason reported in `~/status`.
    pub fn reason(self) -> &'static str {
        match self {
            ConvertError::NotFinite => "not_finite",
            ConvertError::Negative => "negative",
            ConvertError::Overflow => "overflow",
        }
    }
}

/// Rounding of the final conversion to integer units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Toward zero (truncate; = floor for the non-negative values that reach the chain).
    Down,
    /// Away from zero (= ceiling).
    Up,
    /// Nearest, ties away from zero.
    HalfUp,
    /// Nearest, ties toward zero.
    HalfDown,
    /// Nearest, ties to even (banker's rounding, Python's `round`).
    HalfEven,
}

fn pow10(k: u32) -> Option<i128> {
    10i128.checked_pow(k)
}

impl Dec {
    pub const ZERO: Dec = Dec { m: 0, e: 0 };

    pub fn from_i128(v: i128) -> Dec {
        Dec { m: v, e: 0 }.normalized()
    }

    /// The shortest decimal of a finite f64 (what the package JSON shows).
    pub fn from_f64(f: f64) -> Result<Dec, ConvertError> {
        if !f.is_finite() {
            return Err(ConvertError::NotFinite);
        }
        let mut b = ryu::Buffer::new();
        Dec::parse(b.format_finite(f)).ok_or(ConvertError::Overflow)
    }

    /// Parse `-12.5e-3`-style decimal text. `None` if it is not a number or out of range.
    pub fn parse(s: &str) -> Option<Dec> {
        let s = s.trim();
        let (neg, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (num, exp) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = match num.find('.') {
            Some(i) => (&num[..i], &num[i + 1..]),
            None => (num, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let mut m: i128 = 0;
        let mut e = exp;
        let mut dropped = 0i32;
        for (i, c) in int.bytes().chain(frac.bytes()).enumerate() {
            if !c.is_ascii_digit() {
                return None;
            }
            let d = i128::from(c - b'0');
            match m.checked_mul(10).and_then(|x| x.checked_add(d)) {
                Some(x) => m = x,
                None => {
                    // More digits than 128 bits hold: only trailing zeros may be dropped.
                    if d != 0 {
                        return None;
                    }
                    dropped += 1;
                }
            }
            if i >= int.len() {
                e = e.checked_sub(1)?;
            }
        }
        e = e.checked_add(dropped)?;
        Some(Dec { m: if neg { -m } else { m }, e }.normalized())
    }

    /// Strip trailing zeros of the mantissa (keeps numbers small and comparisons simple).
    pub fn normalized(mut self) -> Dec {
        if self.m == 0 {
            return Dec::ZERO;
        }
        while self.m % 10 == 0 {
            self.m /= 10;
            self.e += 1;
        }
        self
    }

    pub fn is_negative(&self) -> bool {
        self.m < 0
    }

    /// Exact product.
    pub fn checked_mul(self, o: Dec) -> Option<Dec> {
        Some(Dec { m: self.m.checked_mul(o.m)?, e: self.e.checked_add(o.e)? }.normalized())
    }

    /// Both mantissas at the smaller exponent.
    fn aligned(self, o: Dec) -> Option<(i128, i128, i32)> {
        if self.m == 0 {
            return Some((0, o.m, o.e));
        }
        if o.m == 0 {
            return Some((self.m, 0, self.e));
        }
        let e = self.e.min(o.e);
        let a = self.m.checked_mul(pow10(u32::try_from(self.e - e).ok()?)?)?;
        let b = o.m.checked_mul(pow10(u32::try_from(o.e - e).ok()?)?)?;
        Some((a, b, e))
    }

    /// Exact sum.
    pub fn checked_add(self, o: Dec) -> Option<Dec> {
        let (a, b, e) = self.aligned(o)?;
        Some(Dec { m: a.checked_add(b)?, e }.normalized())
    }

    /// Exact difference.
    pub fn checked_sub(self, o: Dec) -> Option<Dec> {
        self.checked_add(Dec { m: o.m.checked_neg()?, e: o.e })
    }

    /// Numeric comparison (`None` only when the operands cannot be aligned).
    pub fn cmp_num(self, o: Dec) -> Option<Ordering> {
        if self.m.signum() != o.m.signum() {
            return Some(self.m.signum().cmp(&o.m.signum()));
        }
        match self.aligned(o) {
            Some((a, b, _)) => Some(a.cmp(&b)),
            // Same sign, one exponent far larger: the one with the larger exponent has the
            // larger magnitude.
            None => {
                let mag = self.e.cmp(&o.e);
                Some(if self.m < 0 { mag.reverse() } else { mag })
            }
        }
    }

    /// `round(self × scale ÷ divisor)` to integer units with `mode`.
    pub fn to_units(self, scale: Dec, divisor: u64, mode: Rounding) -> Result<u128, ConvertError> {
        let x = self.checked_mul(scale).ok_or(ConvertError::Overflow)?;
        if x.m < 0 {
            return Err(ConvertError::Negative);
        }
        if divisor == 0 {
            return Err(ConvertError::Overflow);
        }
        let mut a = x.m as u128;
        let mut e = x.e;
        let mut sticky = false; // a non-zero digit was shifted out below the kept ones
        let (num, den) = if e >= 0 {
            let p = 10u128.checked_pow(e as u32).ok_or(ConvertError::Overflow)?;
            (a.checked_mul(p).ok_or(ConvertError::Overflow)?, u128::from(divisor))
        } else {
            while e < -18 {
                sticky |= a % 10 != 0;
                a /= 10;
                e += 1;
            }
            (a, u128::from(divisor) * 10u128.pow((-e) as u32))
        };
        let (q, r) = (num / den, num % den);
        let twice = r * 2; // den ≤ 1.9e37, so no overflow
        let up = match mode {
            Rounding::Down => false,
            Rounding::Up => r > 0 || sticky,
            Rounding::HalfUp => twice >= den,
            Rounding::HalfDown => twice > den || (twice == den && sticky),
            Rounding::HalfEven => twice > den || (twice == den && (sticky || q % 2 == 1)),
        };
        if up {
            q.checked_add(1).ok_or(ConvertError::Overflow)
        } else {
            Ok(q)
        }
    }
}

impl std::fmt::Display for Dec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.e >= 0 {
            write!(f, "{}", self.m)?;
            for _ in 0..self.e.min(64) {
                f.write_str("0")?;
            }
            Ok(())
        } else {
            write!(f, "{}e{}", self.m, self.e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dec {
        Dec::parse(s).unwrap()
    }

    #[test]
    fn parse_and_exact_float() {
        assert_eq!(d("12.50"), Dec { m: 125, e: -1 });
        assert_eq!(d("-0.001"), Dec { m: -1, e: -3 });
        assert_eq!(d("1e3"), Dec { m: 1, e: 3 });
        assert_eq!(Dec::from_f64(0.29).unwrap(), Dec { m: 29, e: -2 });
        assert_eq!(Dec::from_f64(f64::NAN), Err(ConvertError::NotFinite));
        assert_eq!(Dec::from_f64(f64::INFINITY), Err(ConvertError::NotFinite));
        assert!(Dec::parse("abc").is_none());
        assert!(Dec::parse("").is_none());
        assert!(Dec::parse("1.2.3").is_none());
    }

    #[test]
    fn euros_to_cents_is_exact() {
        // 0.29 * 100 in f64 is 28.999999999999996; the decimal path gives 29 in every mode.
        for mode in [Rounding::Down, Rounding::Up, Rounding::HalfEven, Rounding::HalfUp, Rounding::HalfDown] {
            assert_eq!(Dec::from_f64(0.29).unwrap().to_units(d("100"), 1, mode), Ok(29));
        }
        assert_eq!(Dec::from_f64(12.34).unwrap().to_units(d("100"), 1, Rounding::Down), Ok(1234));
    }

    #[test]
    fn rounding_modes() {
        let cases = [
            ("2.5", [2, 3, 3, 2, 2]),
            ("3.5", [3, 4, 4, 3, 4]),
            ("2.4", [2, 3, 2, 2, 2]),
            ("2.6", [2, 3, 3, 3, 3]),
            ("2.500000000000000000000001", [2, 3, 3, 3, 3]),
            ("7", [7, 7, 7, 7, 7]),
        ];
        let modes = [Rounding::Down, Rounding::Up, Rounding::HalfUp, Rounding::HalfDown, Rounding::HalfEven];
        for (v, want) in cases {
            for (m, w) in modes.iter().zip(want) {
                assert_eq!(d(v).to_units(d("1"), 1, *m), Ok(w), "{v} {m:?}");
            }
        }
    }

    #[test]
    fn mean_divides_exactly() {
        // (1 + 2) / 2 = 1.5
        let sum = d("1").checked_add(d("2")).unwrap();
        assert_eq!(sum.to_units(d("1"), 2, Rounding::HalfEven), Ok(2));
        assert_eq!(sum.to_units(d("1"), 2, Rounding::Down), Ok(1));
        assert_eq!(sum.to_units(d("10"), 2, Rounding::Down), Ok(15));
    }

    #[test]
    fn negative_and_overflow() {
        assert_eq!(d("-0.01").to_units(d("100"), 1, Rounding::Down), Err(ConvertError::Negative));
        assert_eq!(d("-0").to_units(d("100"), 1, Rounding::Down), Ok(0));
        assert_eq!(Dec::from_f64(1e300).unwrap().to_units(d("1"), 1, Rounding::Down), Err(ConvertError::Overflow));
        assert_eq!(Dec::from_f64(1e-300).unwrap().to_units(d("1"), 1, Rounding::Down), Ok(0));
        assert_eq!(Dec::from_f64(1e-300).unwrap().to_units(d("1"), 1, Rounding::Up), Ok(1));
        assert_eq!(d("1e38").to_units(d("100"), 1, Rounding::Down), Err(ConvertError::Overflow));
        assert_eq!(d("18446744073709551615").to_units(d("1"), 1, Rounding::Down), Ok(18446744073709551615));
    }

    #[test]
    fn sums_and_compare() {
        let s = d("0.1").checked_add(d("0.2")).unwrap();
        assert_eq!(s, d("0.3"));
        assert_eq!(d("10").checked_sub(d("12.5")).unwrap(), d("-2.5"));
        assert_eq!(d("1e30").cmp_num(d("1e-30")), Some(Ordering::Greater));
        assert_eq!(d("-1").cmp_num(d("0")), Some(Ordering::Less));
        assert_eq!(d("2.50").cmp_num(d("2.5")), Some(Ordering::Equal));
    }
}
