//! Exact decimal amounts for prices, quotes and payments: a canonical decimal text (`0`, `0.05`,
//! `12`) is held as an integer of units and a scale, so `price × chunks` and the conversion to
//! a token's base units or a currency's minor units never round.
use std::fmt;

/// `units × 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    units: u128,
    scale: u32,
}

/// Most decimals an amount may have (the widest token, 18, and then some).
pub const MAX_SCALE: u32 = 24;

impl Amount {
    /// Parse a canonical non-negative decimal (`0`, `0.5`, `12.25`; no sign, exponent, spaces,
    /// leading zeros or trailing fractional zeros). `field` names it in the error.
    pub fn parse(text: &str, field: &str) -> Result<Amount, String> {
        let bad = || format!("{field}: {text:?} is not a canonical decimal (like 0, 0.05, 12)");
        let (int, frac) = match text.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (text, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || (int.len() > 1 && int.starts_with('0')) {
            return Err(bad());
        }
        let frac = match frac {
            Some(f) if !digits(f) || f.ends_with('0') => return Err(bad()),
            Some(f) => f,
            None => "",
        };
        let scale = u32::try_from(frac.len()).map_err(|_| bad())?;
        if scale > MAX_SCALE {
            return Err(format!("{field}: {text:?} has more than {MAX_SCALE} decimals"));
        }
        let units: u128 = format!("{int}{frac}").parse().map_err(|_| format!("{field}: {text:?} is too large"))?;
        Ok(Amount { units, scale })
    }

    /// `self × n`, or `None` on overflow.
    pub fn times(self, n: u64) -> Option<Amount> {
        Some(Amount { units: self.units.checked_mul(u128::from(n))?, scale: self.scale })
    }

    /// The amount in units of `10^-decimals` (a token's base units, a currency's minor units);
    /// `None` when it has more decimals than that (it would have to be rounded) or overflows.
    pub fn in_units_of(self, decimals: u32) -> Option<u128> {
        if self.scale > decimals {
            let div = 10u128.checked_pow(self.scale - decimals)?;
            return (self.units % div == 0).then_some(self.units / div);
        }
        self.units.checked_mul(10u128.checked_pow(decimals - self.scale)?)
    }
}

impl fmt::Display for Amount {
    /// The canonical decimal text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scale == 0 {
            return write!(f, "{}", self.units);
        }
        let s = format!("{:0>width$}", self.units, width = self.scale as usize + 1);
        let (int, frac) = s.split_at(s.len() - self.scale as usize);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            write!(f, "{int}")
        } else {
            write!(f, "{int}.{frac}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multiplies_and_converts_exactly() {
        let p = Amount::parse("0.05", "price").unwrap();
        assert_eq!(p.times(3).unwrap().to_string(), "0.15");
        assert_eq!(p.times(20).unwrap().to_string(), "1");
        assert_eq!(p.times(3).unwrap().in_units_of(6), Some(150_000));
        assert_eq!(p.times(3).unwrap().in_units_of(2), Some(15));
        assert_eq!(p.in_units_of(1), None, "0.05 in tenths would round");
        assert_eq!(Amount::parse("12", "x").unwrap().in_units_of(18), Some(12 * 10u128.pow(18)));
        assert_eq!(Amount::parse("0", "x").unwrap().to_string(), "0");
        assert_eq!(Amount::parse("1.5", "x").unwrap().times(0).unwrap().to_string(), "0");
    }

    #[test]
    fn refuses_what_is_not_canonical_naming_the_field() {
        for bad in ["", "-1", "+1", "01", "1.", ".5", "1.50", "1e3", " 1", "0x10", "1.2.3"] {
            let e = Amount::parse(bad, "sale.price").unwrap_err();
            assert!(e.starts_with("sale.price"), "{bad:?}: {e}");
        }
        assert!(Amount::parse("1", "p").unwrap().times(u64::MAX).is_some());
        assert!(Amount::parse("340282366920938463463374607431768211455", "p").unwrap().times(2).is_none());
    }
}
