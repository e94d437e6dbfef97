//! Exact decimal amounts for prices, quotes and payments: a canonical decimal text (`0`, `0.05`,
//! `12`) is held as an integer of units and a scale, so `price × chunks` and the conversion to
//! a token's base units or a currency's minor units never round.
use std::fmt;

/// `units × 10^-scale`.
#[derive(Debug, Clone, Copy)]
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

impl Amount {
    pub const ZERO: Amount = Amount { units: 0, scale: 0 };

    /// An amount the server sent as a JSON number (`1.5`, `2`, `2.0`): its shortest decimal text,
    /// trailing fractional zeros dropped; an exponent or a negative number is refused.
    pub fn from_number(n: &serde_json::Number, field: &str) -> Result<Amount, String> {
        let text = n.to_string();
        let trimmed = match text.split_once('.') {
            Some((i, f)) if f.bytes().all(|b| b == b'0') => i.to_string(),
            Some((i, f)) => format!("{i}.{}", f.trim_end_matches('0')),
            None => text.clone(),
        };
        Amount::parse(&trimmed, field).map_err(|_| format!("{field}: {text} is not a plain non-negative decimal"))
    }

    /// The amount as a JSON number, for the wire (exact for every amount with ≤ 15 significant digits).
    pub fn to_number(self) -> serde_json::Number {
        if self.scale == 0 {
            if let Ok(u) = u64::try_from(self.units) {
                return serde_json::Number::from(u);
            }
        }
        let f: f64 = self.to_string().parse().unwrap_or(f64::MAX);
        serde_json::Number::from_f64(f).unwrap_or_else(|| serde_json::Number::from(0u64))
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        let scale = self.scale.max(other.scale);
        let a = self.units.checked_mul(10u128.checked_pow(scale - self.scale)?)?;
        let b = other.units.checked_mul(10u128.checked_pow(scale - other.scale)?)?;
        Some(Amount { units: a.checked_add(b)?, scale })
    }
}

impl PartialEq for Amount {
    fn eq(&self, other: &Amount) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Amount {}

impl PartialOrd for Amount {
    fn partial_cmp(&self, other: &Amount) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Amount {
    /// By value (`0.5 == 0.50`), exact; an amount too large to rescale compares as the larger.
    fn cmp(&self, other: &Amount) -> std::cmp::Ordering {
        let scale = self.scale.max(other.scale);
        let up = |a: &Amount| 10u128.checked_pow(scale - a.scale).and_then(|m| a.units.checked_mul(m));
        match (up(self), up(other)) {
            (Some(a), Some(b)) => a.cmp(&b),
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, None) => self.units.cmp(&other.units),
        }
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
    fn adds_compares_and_reads_wire_numbers() {
        let a = Amount::parse("1.5", "a").unwrap();
        let b = Amount::parse("0.25", "b").unwrap();
        assert_eq!(a.checked_add(b).unwrap().to_string(), "1.75");
        assert!(a > b && Amount::ZERO < b);
        assert_eq!(a.cmp(&b), std::cmp::Ordering::Greater);
        assert_eq!(
            Amount::parse("2", "x").unwrap(),
            Amount::from_number(&serde_json::Number::from_f64(2.0).unwrap(), "x").unwrap()
        );
        assert_eq!(Amount::from_number(&serde_json::Number::from_f64(1.5).unwrap(), "x").unwrap().to_string(), "1.5");
        assert!(Amount::from_number(&serde_json::Number::from_f64(-1.0).unwrap(), "x").unwrap_err().starts_with("x:"));
        assert_eq!(a.to_number().to_string(), "1.5");
        assert_eq!(Amount::parse("3", "x").unwrap().to_number().to_string(), "3");
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
