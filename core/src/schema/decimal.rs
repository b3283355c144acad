//! Exact decimal parsing and rounding for NUMERIC and BIGNUMERIC columns.
//!
//! Contract: [`parse`] reads a decimal literal (`"9.99"`, `"-0.5"`, `"1.2e3"`, `"+7"`, `".5"`)
//! exactly, as a digit string and a power of ten; [`Decimal::canonical`] rounds it to a column's
//! scale (half away from zero by default, as BigQuery does, or half to even when the column sets
//! `roundingMode: ROUND_HALF_EVEN`), checks the precision, and returns the canonical text: no
//! exponent, no trailing fractional zeros, no leading zeros, and `"0"` rather than `"-0"`. Working on
//! digit strings keeps every digit exact; f64 is never involved.

/// Largest BIGNUMERIC magnitude in units of 10^-38 (BigQuery's range is asymmetric like i256).
const BIGNUMERIC_MAX: &str =
    "57896044618658097711785492504343953926634992332820282019728792003956564819967";
const BIGNUMERIC_MIN_ABS: &str =
    "57896044618658097711785492504343953926634992332820282019728792003956564819968";

/// Exponents beyond this are certainly out of range (or certainly round to zero) for every
/// column; clamping keeps the arithmetic in `i64`.
const EXP_LIMIT: i64 = 1_000_000;

/// How fractional digits beyond the scale are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rounding {
    /// BigQuery's default: `2.5 → 3`, `-2.5 → -3`.
    #[default]
    HalfAwayFromZero,
    /// `ROUND_HALF_EVEN`: `2.5 → 2`, `3.5 → 4`.
    HalfEven,
}

/// The limits of one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total significant digits allowed.
    pub precision: u32,
    /// Digits after the decimal point.
    pub scale: u32,
    /// BigQuery's unparameterised BIGNUMERIC: 76.76 digits, bounded by i256 rather than a digit
    /// count.
    pub bignumeric_default: bool,
}

impl Limits {
    /// NUMERIC without parameters: NUMERIC(38, 9).
    pub const NUMERIC: Limits = Limits {
        precision: 38,
        scale: 9,
        bignumeric_default: false,
    };
    /// BIGNUMERIC without parameters: 76.76 digits, scale 38.
    pub const BIGNUMERIC: Limits = Limits {
        precision: 77,
        scale: 38,
        bignumeric_default: true,
    };
}

/// A decimal value read exactly: `(-1)^negative × digits × 10^exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    /// ASCII digits without leading zeros; empty means zero.
    digits: Vec<u8>,
    exp: i64,
}

/// Why a decimal was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecimalError {
    /// Not a decimal literal.
    Syntax,
    /// The rounded value has more integer digits than the column allows.
    OutOfRange,
}

/// Consumes an optional `+`/`-` at `b[*i]`; true for `-`.
fn take_sign(b: &[u8], i: &mut usize) -> bool {
    match b.get(*i) {
        Some(b'-') => {
            *i += 1;
            true
        }
        Some(b'+') => {
            *i += 1;
            false
        }
        _ => false,
    }
}

/// Reads a decimal literal: `[+-]digits[.digits][(e|E)[+-]digits]`, at least one mantissa digit.
pub fn parse(s: &str) -> Result<Decimal, DecimalError> {
    let b = s.as_bytes();
    let mut i = 0;
    let negative = take_sign(b, &mut i);
    let mut digits = Vec::new();
    let mut frac_digits: i64 = 0;
    let mut seen_digit = false;
    let mut seen_point = false;
    while let Some(&c) = b.get(i) {
        match c {
            b'0'..=b'9' => {
                seen_digit = true;
                if seen_point {
                    frac_digits += 1;
                }
                // Leading zeros carry no information.
                if !(digits.is_empty() && c == b'0') {
                    digits.push(c);
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => break,
        }
        i += 1;
    }
    if !seen_digit {
        return Err(DecimalError::Syntax);
    }
    let mut exp: i64 = 0;
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        let exp_negative = take_sign(b, &mut i);
        let start = i;
        while let Some(&c @ b'0'..=b'9') = b.get(i) {
            exp = (exp * 10 + i64::from(c - b'0')).min(EXP_LIMIT);
            i += 1;
        }
        if i == start {
            return Err(DecimalError::Syntax);
        }
        if exp_negative {
            exp = -exp;
        }
    }
    if i != b.len() {
        return Err(DecimalError::Syntax);
    }
    // Fraction digits were collected into the mantissa, so shift the exponent back.
    let mut exp = exp - frac_digits;
    // Trailing zeros move into the exponent so equal values have equal representations.
    while digits.last() == Some(&b'0') {
        digits.pop();
        exp += 1;
    }
    Ok(Decimal {
        negative,
        digits,
        exp,
    })
}

impl Decimal {
    /// Number of significant digits (0 for zero).
    pub fn significant_digits(&self) -> usize {
        self.digits.len()
    }

    /// Appends [`canonical`](Self::canonical)'s text to `out`. Values that need no rounding
    /// (the usual case: fewer fraction digits than the scale) are written straight from the
    /// digits, without building the scaled digit string.
    pub fn canonical_into(
        &self,
        limits: Limits,
        rounding: Rounding,
        out: &mut String,
    ) -> Result<(), DecimalError> {
        let len = self.digits.len() as i64;
        let shift = self.exp + i64::from(limits.scale);
        let exact = shift >= 0
            && !self.digits.is_empty()
            && len + shift <= i64::from(limits.precision)
            && !(limits.bignumeric_default && (len + shift) as usize == BIGNUMERIC_MAX.len());
        if !exact {
            out.push_str(&self.canonical(limits, rounding)?);
            return Ok(());
        }
        if self.negative {
            out.push('-');
        }
        let digits = std::str::from_utf8(&self.digits).map_err(|_| DecimalError::Syntax)?;
        if self.exp >= 0 {
            out.push_str(digits);
            zeros(self.exp as usize).for_each(|z| out.push_str(z));
        } else {
            let frac = (-self.exp) as usize;
            if digits.len() > frac {
                let (int, fraction) = digits.split_at(digits.len() - frac);
                out.push_str(int);
                out.push('.');
                out.push_str(fraction);
            } else {
                out.push_str("0.");
                zeros(frac - digits.len()).for_each(|z| out.push_str(z));
                out.push_str(digits);
            }
        }
        Ok(())
    }

    /// Rounds to `limits.scale` fractional digits and renders the canonical text, or fails when
    /// the integer part does not fit.
    pub fn canonical(&self, limits: Limits, rounding: Rounding) -> Result<String, DecimalError> {
        let scale = i64::from(limits.scale);
        // `scaled` = |value| × 10^scale, rounded to an integer, as a digit string.
        let shift = self.exp + scale;
        let mut scaled: Vec<u8>;
        if shift >= 0 {
            if self.digits.is_empty() {
                scaled = Vec::new();
            } else {
                if self.digits.len() as i64 + shift > i64::from(limits.precision) {
                    return Err(DecimalError::OutOfRange);
                }
                scaled = Vec::with_capacity(self.digits.len() + shift as usize);
                scaled.extend_from_slice(&self.digits);
                zeros(shift as usize).for_each(|z| scaled.extend_from_slice(z.as_bytes()));
            }
        } else {
            let drop = (-shift) as usize;
            let len = self.digits.len();
            let (kept, dropped): (&[u8], &[u8]) = if drop >= len {
                (&[], &self.digits)
            } else {
                self.digits.split_at(len - drop)
            };
            scaled = kept.to_vec();
            // When more digits are dropped than exist, the first dropped digit is a zero.
            let first = if drop > len {
                b'0'
            } else {
                dropped.first().copied().unwrap_or(b'0')
            };
            let round_up = match rounding {
                Rounding::HalfAwayFromZero => first >= b'5',
                Rounding::HalfEven => {
                    // `digits` has no trailing zeros, so "exactly half" means a lone 5.
                    let exactly_half = drop <= len && first == b'5' && dropped.len() == 1;
                    let last_odd = kept.last().is_some_and(|d| (d - b'0') % 2 == 1);
                    first > b'5' || (first == b'5' && (!exactly_half || last_odd))
                }
            };
            if round_up {
                increment(&mut scaled);
            }
            if scaled.len() > limits.precision as usize {
                return Err(DecimalError::OutOfRange);
            }
        }
        if limits.bignumeric_default && scaled.len() == BIGNUMERIC_MAX.len() {
            let bound = if self.negative {
                BIGNUMERIC_MIN_ABS
            } else {
                BIGNUMERIC_MAX
            };
            // Equal lengths, so byte order is numeric order.
            if scaled.as_slice() > bound.as_bytes() {
                return Err(DecimalError::OutOfRange);
            }
        }
        Ok(render(self.negative, &scaled, limits.scale as usize))
    }
}

/// `n` ASCII zeros, in chunks to append by copying. Not `resize`: glibc's memset for a few bytes
/// uses a masked AVX-512 store that cost ~8% of an event's conversion in profiles (two NUMERIC
/// columns).
fn zeros(mut n: usize) -> impl Iterator<Item = &'static str> {
    const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
    std::iter::from_fn(move || {
        let k = n.min(ZEROS.len());
        n -= k;
        (k > 0).then(|| &ZEROS[..k])
    })
}

/// Adds one to a big-endian ASCII digit string.
fn increment(d: &mut Vec<u8>) {
    for c in d.iter_mut().rev() {
        if *c == b'9' {
            *c = b'0';
        } else {
            *c += 1;
            return;
        }
    }
    d.insert(0, b'1');
}

/// Renders `digits × 10^-scale` canonically.
fn render(negative: bool, digits: &[u8], scale: usize) -> String {
    if digits.is_empty() {
        return "0".to_owned();
    }
    let mut out = String::with_capacity(digits.len() + scale + 3);
    if negative {
        out.push('-');
    }
    let (int, frac): (&[u8], &[u8]) = if digits.len() > scale {
        digits.split_at(digits.len() - scale)
    } else {
        (&[], digits)
    };
    if int.is_empty() {
        out.push('0');
    } else {
        out.extend(int.iter().map(|&b| char::from(b)));
    }
    let pad = scale - frac.len();
    let mut frac_text: Vec<u8> = Vec::with_capacity(pad + frac.len());
    zeros(pad).for_each(|z| frac_text.extend_from_slice(z.as_bytes()));
    frac_text.extend_from_slice(frac);
    while frac_text.last() == Some(&b'0') {
        frac_text.pop();
    }
    if !frac_text.is_empty() {
        out.push('.');
        out.extend(frac_text.iter().map(|&b| char::from(b)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_into_agrees_with_canonical() {
        let limits = [
            Limits::NUMERIC,
            Limits::BIGNUMERIC,
            Limits {
                precision: 5,
                scale: 2,
                bignumeric_default: false,
            },
            Limits {
                precision: 10,
                scale: 0,
                bignumeric_default: false,
            },
        ];
        let mut inputs: Vec<String> = [
            "0",
            "-0.0",
            "19.99",
            "-19.99",
            "1e3",
            "1.5e-3",
            "0.000000001",
            "0.0000000015",
            "123.4567891234",
            "-0.5",
            "99999999999999999999999999999.999999999",
            "1e29",
            "0.00",
            "+7",
            "1E-9",
            "12345",
            "123.45",
            "1.005",
            "-999.995",
            "578960446186580977117854925043439539266.34992332820282019728792003956564819967",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        inputs.push(format!("{}.5", "9".repeat(37)));
        for text in &inputs {
            let d = parse(text).unwrap();
            for l in limits {
                for r in [Rounding::HalfAwayFromZero, Rounding::HalfEven] {
                    let mut out = String::new();
                    let into = d.canonical_into(l, r, &mut out).map(|()| out);
                    assert_eq!(into, d.canonical(l, r), "{text} {l:?} {r:?}");
                }
            }
        }
    }

    fn num(s: &str) -> Result<String, DecimalError> {
        parse(s)?.canonical(Limits::NUMERIC, Rounding::HalfAwayFromZero)
    }

    fn big(s: &str) -> Result<String, DecimalError> {
        parse(s)?.canonical(Limits::BIGNUMERIC, Rounding::HalfAwayFromZero)
    }

    fn ok(r: Result<String, DecimalError>) -> String {
        r.expect("valid decimal in test")
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(ok(num("9.99")), "9.99");
        assert_eq!(ok(num("-0.5")), "-0.5");
        assert_eq!(ok(num("1.2e3")), "1200");
        assert_eq!(ok(num("+7")), "7");
        assert_eq!(ok(num("007.500")), "7.5");
        assert_eq!(ok(num(".5")), "0.5");
        assert_eq!(ok(num("5.")), "5");
        assert_eq!(ok(num("-0")), "0");
        assert_eq!(ok(num("-0.0000000001")), "0");
        assert_eq!(ok(num("1E-9")), "0.000000001");
        assert_eq!(ok(num("0e999999999999999")), "0");
        assert_eq!(ok(num("12345e-2")), "123.45");
    }

    #[test]
    fn rounding_half_away_from_zero() {
        assert_eq!(ok(num("0.0000000005")), "0.000000001");
        assert_eq!(ok(num("-0.0000000005")), "-0.000000001");
        assert_eq!(ok(num("0.00000000049999")), "0");
        assert_eq!(ok(num("0.9999999999")), "1");
        assert_eq!(ok(num("1.23456789012345")), "1.23456789");
        assert_eq!(ok(num("5e-10")), "0.000000001");
        assert_eq!(ok(num("5e-11")), "0");
    }

    #[test]
    fn rounding_half_even() {
        let l = Limits {
            precision: 10,
            scale: 0,
            bignumeric_default: false,
        };
        let r = |s: &str| parse(s).and_then(|d| d.canonical(l, Rounding::HalfEven));
        assert_eq!(ok(r("2.5")), "2");
        assert_eq!(ok(r("3.5")), "4");
        assert_eq!(ok(r("2.51")), "3");
        assert_eq!(ok(r("-2.5")), "-2");
        assert_eq!(ok(r("0.5")), "0");
        assert_eq!(ok(r("0.05")), "0");
        assert_eq!(ok(r("1.49")), "1");
    }

    #[test]
    fn ranges() {
        let max = format!("{}.999999999", "9".repeat(29));
        assert_eq!(ok(num(&max)), max);
        assert_eq!(
            num(&format!("1{}", "0".repeat(29))),
            Err(DecimalError::OutOfRange)
        );
        // Rounding can push a value over the limit.
        assert_eq!(
            num(&format!("{}.9999999995", "9".repeat(29))),
            Err(DecimalError::OutOfRange)
        );
        assert_eq!(num("1e29"), Err(DecimalError::OutOfRange));
        assert_eq!(num("1e999999999999"), Err(DecimalError::OutOfRange));
        let p = Limits {
            precision: 5,
            scale: 2,
            bignumeric_default: false,
        };
        let r = |s: &str| parse(s).and_then(|d| d.canonical(p, Rounding::HalfAwayFromZero));
        assert_eq!(ok(r("999.994")), "999.99");
        assert_eq!(r("999.995"), Err(DecimalError::OutOfRange));
        assert_eq!(r("1000"), Err(DecimalError::OutOfRange));
    }

    #[test]
    fn bignumeric_bounds() {
        let max = "578960446186580977117854925043439539266.34992332820282019728792003956564819967";
        assert_eq!(ok(big(max)), max);
        let min = format!("-{}8", &max[..max.len() - 1]);
        assert_eq!(ok(big(&min)), min);
        let over = format!("{}8", &max[..max.len() - 1]);
        assert_eq!(big(&over), Err(DecimalError::OutOfRange));
        assert_eq!(ok(big("1e-38")), "0.00000000000000000000000000000000000001");
        assert_eq!(ok(big("1e-39")), "0");
    }

    #[test]
    fn syntax_errors() {
        for s in [
            "", "-", "+", ".", "abc", "1.2.3", "1e", "1e+", "e5", " 1", "1 ", "0x10", "NaN", "--1",
            "1_000",
        ] {
            assert_eq!(parse(s), Err(DecimalError::Syntax), "{s:?}");
        }
    }
}
