//! Civil time for BigQuery's TIMESTAMP, DATE, TIME and DATETIME types, without an external crate.
//!
//! Contract:
//! - A timestamp is an `i64` count of microseconds since 1970-01-01T00:00:00Z (UTC, no leap
//!   seconds). Valid timestamps lie in [`MIN_MICROS`]`..=`[`MAX_MICROS`], which is BigQuery's range
//!   `0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999999Z`; every parser rejects values outside it.
//! - A DATE is an `i32` count of days since 1970-01-01; a TIME is microseconds since midnight
//!   (`0..86_400_000_000`); a DATETIME is a zoneless wall-clock value encoded like a timestamp read
//!   as if it were UTC (same range, same arithmetic).
//! - Parsers accept RFC 3339 and BigQuery's canonical literal forms; fractions may carry up to 12
//!   digits, and digits beyond microseconds are truncated (not rounded), as BigQuery does.
//! - Formatters emit the canonical form that BigQuery load jobs and `insertAll` accept; for
//!   in-range input `parse(format(v)) == v`. Formatting out-of-range values does not panic but the
//!   text is not meaningful to BigQuery.

use std::cell::Cell;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds in one day.
const DAY_MICROS: i64 = 86_400_000_000;

/// `0001-01-01T00:00:00Z` in microseconds since the Unix epoch.
pub const MIN_MICROS: i64 = -62_135_596_800_000_000;

/// `9999-12-31T23:59:59.999999Z` in microseconds since the Unix epoch.
pub const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// Longest input excerpt quoted in an error message, in characters.
const EXCERPT_CHARS: usize = 64;

const TIMESTAMP_RULE: &str = "RFC 3339 or 'YYYY-MM-DD HH:MM:SS[.ffffff][ zone]'";
const DATE_RULE: &str = "'YYYY-[M]M-[D]D'";
const TIME_RULE: &str = "'[H]H:[M]M:[S]S[.ffffff]'";
const DATETIME_RULE: &str = "'YYYY-[M]M-[D]D[( |T)[H]H:[M]M:[S]S[.ffffff]]' without a time zone";

/// Why a date/time text or value was rejected. The Display names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// The text does not have the expected shape.
    #[error("expected {expected}, got {got:?}")]
    Syntax {
        /// The accepted forms.
        expected: &'static str,
        /// A bounded excerpt of the input.
        got: String,
    },
    /// A component (year, month, …) or the whole instant is outside its range.
    #[error("{what} {value} is out of range {range}")]
    Range {
        /// Which component, e.g. `year`.
        what: &'static str,
        /// The offending value.
        value: i64,
        /// The accepted range, e.g. `0001..9999`.
        range: String,
    },
    /// `:60` seconds; BigQuery has no leap seconds.
    #[error("leap second ':60' is not supported, got {got:?}")]
    LeapSecond {
        /// A bounded excerpt of the input.
        got: String,
    },
    /// A DATETIME carried a time zone.
    #[error("a DATETIME has no time zone (use a TIMESTAMP column for zoned values), got {got:?}")]
    ZoneNotAllowed {
        /// A bounded excerpt of the input.
        got: String,
    },
    /// The instant, after applying the zone offset, is outside BigQuery's range.
    #[error(
        "{got:?} is out of range 0001-01-01T00:00:00Z..=9999-12-31T23:59:59.999999Z after \
         applying its time zone"
    )]
    InstantRange {
        /// A bounded excerpt of the input.
        got: String,
    },
}

fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn syntax(expected: &'static str, s: &str) -> TimeError {
    TimeError::Syntax {
        expected,
        got: excerpt(s),
    }
}

/// Current wall-clock time in microseconds since the Unix epoch.
///
/// A clock before 1970 yields a negative value rather than a panic.
pub fn now_micros() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d` (Howard Hinnant's
/// `days_from_civil`). Expects `m` in 1..=12 and `d` in 1..=31; other inputs give a
/// well-defined but meaningless number.
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let m = i64::from(m);
    let d = i64::from(d);
    let y = i64::from(y) - i64::from(m <= 2);
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `(year, month, day)` of `days` since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`). Years outside `i32` saturate.
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    // Saturate so absurd inputs cannot overflow; they are far outside any real date.
    let z = days.clamp(-(1 << 50), 1 << 50) + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = y + i64::from(m <= 2);
    let y = i32::try_from(y).unwrap_or(if y < 0 { i32::MIN } else { i32::MAX });
    // m is 1..=12 and d is 1..=31 by construction.
    (y, m as u32, d as u32)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A byte cursor over the input; every method consumes only on success.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor {
            s: s.as_bytes(),
            pos: 0,
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, pred: impl Fn(u8) -> bool) -> Option<u8> {
        let b = self.peek().filter(|&b| pred(b))?;
        self.pos += 1;
        Some(b)
    }

    /// Reads `min..=max` ASCII digits; `None` (nothing consumed) when fewer than `min`.
    fn digits(&mut self, min: usize, max: usize) -> Option<(i64, usize)> {
        let start = self.pos;
        let mut v: i64 = 0;
        while self.pos - start < max {
            match self.peek() {
                Some(b @ b'0'..=b'9') => {
                    v = v * 10 + i64::from(b - b'0');
                    self.pos += 1;
                }
                _ => break,
            }
        }
        let n = self.pos - start;
        if n < min {
            self.pos = start;
            return None;
        }
        Some((v, n))
    }

    fn rest_eq_ignore_case(&self, word: &str) -> bool {
        self.s[self.pos.min(self.s.len())..].eq_ignore_ascii_case(word.as_bytes())
    }
}

struct RawDate {
    y: i64,
    m: i64,
    d: i64,
}

struct RawTime {
    h: i64,
    mi: i64,
    s: i64,
    micros: i64,
}

fn read_date(c: &mut Cursor<'_>) -> Option<RawDate> {
    // 4 to 6 year digits so that "10000-01-01" gets a range error rather than a syntax error.
    let (y, _) = c.digits(4, 6)?;
    c.eat(|b| b == b'-')?;
    let (m, _) = c.digits(1, 2)?;
    c.eat(|b| b == b'-')?;
    let (d, _) = c.digits(1, 2)?;
    Some(RawDate { y, m, d })
}

fn read_time(c: &mut Cursor<'_>) -> Option<RawTime> {
    let (h, _) = c.digits(1, 2)?;
    c.eat(|b| b == b':')?;
    let (mi, _) = c.digits(1, 2)?;
    c.eat(|b| b == b':')?;
    let (s, _) = c.digits(1, 2)?;
    let mut micros = 0;
    if c.eat(|b| b == b'.').is_some() {
        let start = c.pos;
        let (_, n) = c.digits(1, 12)?;
        // Truncate beyond microseconds: re-read only the first six digits.
        let keep = n.min(6);
        let mut v = 0i64;
        for &b in &c.s[start..start + keep] {
            v = v * 10 + i64::from(b - b'0');
        }
        for _ in keep..6 {
            v *= 10;
        }
        micros = v;
    }
    Some(RawTime { h, mi, s, micros })
}

/// Reads an optional zone after a time; returns the offset east of UTC in microseconds.
fn read_zone(c: &mut Cursor<'_>) -> Option<Option<i64>> {
    let spaced = c.eat(|b| b == b' ').is_some();
    if c.done() {
        // A trailing space without a zone is malformed.
        return if spaced { None } else { Some(None) };
    }
    if c.rest_eq_ignore_case("z") || c.rest_eq_ignore_case("utc") {
        c.pos = c.s.len();
        return Some(Some(0));
    }
    let sign = match c.eat(|b| b == b'+' || b == b'-')? {
        b'-' => -1,
        _ => 1,
    };
    let start = c.pos;
    let (v, n) = c.digits(1, 4)?;
    let (h, m) = match n {
        1 | 2 => {
            if c.eat(|b| b == b':').is_some() {
                (v, c.digits(2, 2)?.0)
            } else {
                (v, 0)
            }
        }
        4 => (v / 100, v % 100),
        _ => {
            c.pos = start;
            return None;
        }
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some(Some(sign * (h * 3600 + m * 60) * 1_000_000))
}

fn check_date(raw: &RawDate) -> Result<i64, TimeError> {
    if !(1..=9999).contains(&raw.y) {
        return Err(TimeError::Range {
            what: "year",
            value: raw.y,
            range: "0001..9999".into(),
        });
    }
    if !(1..=12).contains(&raw.m) {
        return Err(TimeError::Range {
            what: "month",
            value: raw.m,
            range: "1..12".into(),
        });
    }
    // m is 1..=12 here.
    let dim = i64::from(days_in_month(raw.y, raw.m as u32));
    if !(1..=dim).contains(&raw.d) {
        return Err(TimeError::Range {
            what: "day",
            value: raw.d,
            range: format!("1..{dim} for {:04}-{:02}", raw.y, raw.m),
        });
    }
    Ok(days_from_civil(raw.y as i32, raw.m as u32, raw.d as u32))
}

fn check_time(raw: &RawTime, input: &str) -> Result<i64, TimeError> {
    if raw.h > 23 {
        return Err(TimeError::Range {
            what: "hour",
            value: raw.h,
            range: "0..23".into(),
        });
    }
    if raw.mi > 59 {
        return Err(TimeError::Range {
            what: "minute",
            value: raw.mi,
            range: "0..59".into(),
        });
    }
    if raw.s == 60 {
        return Err(TimeError::LeapSecond {
            got: excerpt(input),
        });
    }
    if raw.s > 59 {
        return Err(TimeError::Range {
            what: "second",
            value: raw.s,
            range: "0..59".into(),
        });
    }
    Ok(((raw.h * 60 + raw.mi) * 60 + raw.s) * 1_000_000 + raw.micros)
}

/// Parses a TIMESTAMP: RFC 3339 (`2026-11-22T10:00:00.123Z`, `t`/`z` in any case, offsets
/// `+05:30`) or BigQuery's canonical form `YYYY-[M]M-[D]D[( |T)[H]H:[M]M:[S]S[.F]][[ ]zone]` with
/// zone `Z`, `UTC`, `+HH:MM`, `+H`, `+HH` or `+HHMM`. No zone means UTC; a date alone is midnight
/// UTC. Returns microseconds since the Unix epoch.
pub fn parse_timestamp(s: &str) -> Result<i64, TimeError> {
    let mut c = Cursor::new(s);
    let date = read_date(&mut c).ok_or_else(|| syntax(TIMESTAMP_RULE, s))?;
    let mut time = None;
    let mut offset = 0;
    if !c.done() {
        c.eat(|b| matches!(b, b'T' | b't' | b' '))
            .ok_or_else(|| syntax(TIMESTAMP_RULE, s))?;
        time = Some(read_time(&mut c).ok_or_else(|| syntax(TIMESTAMP_RULE, s))?);
        offset = read_zone(&mut c)
            .ok_or_else(|| syntax(TIMESTAMP_RULE, s))?
            .unwrap_or(0);
        if !c.done() {
            return Err(syntax(TIMESTAMP_RULE, s));
        }
    }
    let days = check_date(&date)?;
    let tod = match &time {
        Some(t) => check_time(t, s)?,
        None => 0,
    };
    let micros = days * DAY_MICROS + tod - offset;
    if !(MIN_MICROS..=MAX_MICROS).contains(&micros) {
        return Err(TimeError::InstantRange { got: excerpt(s) });
    }
    Ok(micros)
}

/// Appends `v` (`0 <= v < 10^width`) as exactly `width` digits, zero-padded (no `fmt` machinery:
/// rows format two timestamps each, on the hot path).
fn push_digits(out: &mut String, v: i64, width: u32) {
    let mut div = 10i64.pow(width - 1);
    while div > 0 {
        out.push(char::from(b'0' + (v / div % 10) as u8));
        div /= 10;
    }
}

fn push_date(out: &mut String, days: i64) {
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        push_digits(out, i64::from(y), 4);
        out.push('-');
        push_digits(out, i64::from(m), 2);
        out.push('-');
        push_digits(out, i64::from(d), 2);
    } else {
        let _ = write!(out, "{y:04}-{m:02}-{d:02}");
    }
}

fn push_time(out: &mut String, tod: i64, always_fraction: bool) {
    let secs = tod / 1_000_000;
    let frac = tod % 1_000_000;
    push_digits(out, secs / 3600, 2);
    out.push(':');
    push_digits(out, secs / 60 % 60, 2);
    out.push(':');
    push_digits(out, secs % 60, 2);
    if always_fraction || frac != 0 {
        out.push('.');
        push_digits(out, frac, 6);
    }
}

/// Formats a timestamp as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six fraction digits), a form
/// BigQuery load jobs and `insertAll` accept as is.
pub fn format_timestamp(micros: i64) -> String {
    let mut out = String::with_capacity(27);
    push_timestamp(&mut out, micros);
    out
}

/// Appends [`format_timestamp`]'s text to `out`.
pub(crate) fn push_timestamp(out: &mut String, micros: i64) {
    thread_local! {
        /// The last whole second formatted (seconds since the epoch) and its
        /// `YYYY-MM-DDTHH:MM:SS` text: events logged close together share it, and the forward
        /// sink frames one timestamp per event.
        static LAST_SECOND: Cell<(i64, [u8; 19])> = const { Cell::new((i64::MIN, [0; 19])) };
    }
    let secs = micros.div_euclid(1_000_000);
    let (last, mut prefix) = LAST_SECOND.get();
    if last != secs {
        match second_text(secs) {
            Some(text) => {
                prefix = text;
                LAST_SECOND.set((secs, prefix));
            }
            None => {
                let days = micros.div_euclid(DAY_MICROS);
                push_date(out, days);
                out.push('T');
                push_time(out, micros.rem_euclid(DAY_MICROS), true);
                out.push('Z');
                return;
            }
        }
    }
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    text[..19].copy_from_slice(&prefix);
    put_digits(&mut text[20..26], micros.rem_euclid(1_000_000));
    // SAFETY: only ASCII digits and separators are written into the ASCII template.
    #[allow(unsafe_code)]
    unsafe { out.as_mut_vec() }.extend_from_slice(&text);
}

/// `YYYY-MM-DDTHH:MM:SS` of a second since the epoch, or `None` outside years 0000–9999 (which
/// [`push_date`] writes in its own form).
fn second_text(secs: i64) -> Option<[u8; 19]> {
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let tod = secs.rem_euclid(86_400);
    let mut text = *b"0000-00-00T00:00:00";
    put_digits(&mut text[0..4], i64::from(y));
    put_digits(&mut text[5..7], i64::from(m));
    put_digits(&mut text[8..10], i64::from(d));
    put_digits(&mut text[11..13], tod / 3600);
    put_digits(&mut text[14..16], tod / 60 % 60);
    put_digits(&mut text[17..19], tod % 60);
    Some(text)
}

/// Writes the last `dst.len()` decimal digits of `v` (≥ 0) into `dst`, zero-padded.
fn put_digits(dst: &mut [u8], mut v: i64) {
    for c in dst.iter_mut().rev() {
        *c = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Parses a DATE `YYYY-[M]M-[D]D` into days since 1970-01-01.
pub fn parse_date(s: &str) -> Result<i32, TimeError> {
    let mut c = Cursor::new(s);
    let date = read_date(&mut c)
        .filter(|_| c.done())
        .ok_or_else(|| syntax(DATE_RULE, s))?;
    // In range 0001..9999 the day count fits comfortably in i32.
    Ok(check_date(&date)? as i32)
}

/// Formats days since 1970-01-01 as `YYYY-MM-DD`.
pub fn format_date(days: i32) -> String {
    let mut out = String::with_capacity(10);
    push_date(&mut out, i64::from(days));
    out
}

/// Parses a TIME `[H]H:[M]M:[S]S[.F]` into microseconds since midnight.
pub fn parse_time(s: &str) -> Result<i64, TimeError> {
    let mut c = Cursor::new(s);
    let t = read_time(&mut c)
        .filter(|_| c.done())
        .ok_or_else(|| syntax(TIME_RULE, s))?;
    check_time(&t, s)
}

/// Formats microseconds since midnight as `HH:MM:SS`, or `HH:MM:SS.ffffff` when the fraction is
/// not zero. Values outside one day are wrapped into it.
pub fn format_time(micros_of_day: i64) -> String {
    let mut out = String::with_capacity(15);
    push_time(&mut out, micros_of_day.rem_euclid(DAY_MICROS), false);
    out
}

/// Parses a DATETIME `YYYY-[M]M-[D]D[( |T)[H]H:[M]M:[S]S[.F]]` (no zone) into zoneless
/// microseconds, encoded like a UTC timestamp.
pub fn parse_datetime(s: &str) -> Result<i64, TimeError> {
    let mut c = Cursor::new(s);
    let date = read_date(&mut c).ok_or_else(|| syntax(DATETIME_RULE, s))?;
    let mut time = None;
    if !c.done() {
        c.eat(|b| matches!(b, b'T' | b't' | b' '))
            .ok_or_else(|| syntax(DATETIME_RULE, s))?;
        time = Some(read_time(&mut c).ok_or_else(|| syntax(DATETIME_RULE, s))?);
        if !c.done() {
            // Say "no zone allowed" when the tail parses as a zone; that is the likely mistake.
            let zone = read_zone(&mut c);
            if matches!(zone, Some(Some(_))) && c.done() {
                return Err(TimeError::ZoneNotAllowed { got: excerpt(s) });
            }
            return Err(syntax(DATETIME_RULE, s));
        }
    }
    let days = check_date(&date)?;
    let tod = match &time {
        Some(t) => check_time(t, s)?,
        None => 0,
    };
    Ok(days * DAY_MICROS + tod)
}

/// Formats a DATETIME as `YYYY-MM-DDTHH:MM:SS`, with `.ffffff` when the fraction is not zero.
pub fn format_datetime(micros: i64) -> String {
    let mut out = String::with_capacity(26);
    push_date(&mut out, micros.div_euclid(DAY_MICROS));
    out.push('T');
    push_time(&mut out, micros.rem_euclid(DAY_MICROS), false);
    out
}

/// The UTC day of a timestamp as `YYYYMMDD`, the suffix of date-sharded tables.
pub fn yyyymmdd(micros: i64) -> String {
    yyyymmdd_compact(micros).into()
}

/// As [`yyyymmdd`], kept inline (no allocation): the router computes it for every event, and
/// nearly every event of a thread falls on the day of the one before, so the last day's text is
/// kept per thread.
pub fn yyyymmdd_compact(micros: i64) -> compact_str::CompactString {
    thread_local! {
        /// The last day computed (days since the epoch) and its text.
        static LAST: std::cell::RefCell<(i64, compact_str::CompactString)> =
            std::cell::RefCell::new((i64::MIN, compact_str::CompactString::default()));
    }
    let days = micros.div_euclid(DAY_MICROS);
    LAST.with_borrow_mut(|(last, text)| {
        if *last != days {
            let (y, m, d) = civil_from_days(days);
            *text = compact_str::format_compact!("{y:04}{m:02}{d:02}");
            *last = days;
        }
        text.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        parse_timestamp(s).expect("valid timestamp in test")
    }

    #[test]
    fn epoch_and_bounds() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(1, 1, 1) * DAY_MICROS, MIN_MICROS);
        assert_eq!(
            (days_from_civil(9999, 12, 31) + 1) * DAY_MICROS - 1,
            MAX_MICROS
        );
        assert_eq!(ts("0001-01-01T00:00:00Z"), MIN_MICROS);
        assert_eq!(ts("9999-12-31T23:59:59.999999Z"), MAX_MICROS);
        assert_eq!(format_timestamp(MIN_MICROS), "0001-01-01T00:00:00.000000Z");
        assert_eq!(format_timestamp(MAX_MICROS), "9999-12-31T23:59:59.999999Z");
        // Extreme inputs do not panic.
        let _ = format_timestamp(i64::MIN);
        let _ = format_timestamp(i64::MAX);
        let _ = civil_from_days(i64::MIN);
        let _ = format_date(i32::MIN);
    }

    #[test]
    fn timestamps_read_back_whether_their_second_was_cached_or_not() {
        // Steps of a prime number of µs: runs within one second (the cached prefix), across
        // seconds, days, a leap day, years, and before the epoch.
        let mut seen = 0;
        for start in [
            ts("2024-02-28T23:59:58.5Z"),
            ts("1969-12-31T23:59:59Z"),
            ts("1999-12-31T23:59:59.9Z"),
            MAX_MICROS - 3_000_000,
            MIN_MICROS,
        ] {
            let mut t = start;
            while t < start + 3_000_000 && t <= MAX_MICROS {
                let text = format_timestamp(t);
                assert_eq!(text.len(), 27, "{text}");
                assert_eq!(ts(&text), t, "{text}");
                t += 99_991;
                seen += 1;
            }
        }
        assert!(seen > 100);
        // Outside the cached form's years, and back.
        assert_eq!(
            format_timestamp(MAX_MICROS + 1),
            "10000-01-01T00:00:00.000000Z"
        );
        assert_eq!(format_timestamp(MAX_MICROS), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn civil_roundtrip_every_day_of_some_years() {
        for days in days_from_civil(1999, 1, 1)..days_from_civil(2001, 1, 1) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(civil_from_days(days_from_civil(1, 1, 1)), (1, 1, 1));
    }

    #[test]
    fn rfc3339_forms() {
        let base = ts("2026-11-22T10:00:00Z");
        assert_eq!(format_timestamp(base), "2026-11-22T10:00:00.000000Z");
        assert_eq!(ts("2026-11-22T10:00:00.123Z"), base + 123_000);
        assert_eq!(ts("2026-11-22t10:00:00z"), base);
        assert_eq!(ts("2026-11-22T15:30:00+05:30"), base);
        assert_eq!(ts("2026-11-22T02:00:00-08:00"), base);
        assert_eq!(
            format_timestamp(ts("2026-11-22T10:00:00.123456Z")),
            "2026-11-22T10:00:00.123456Z"
        );
    }

    #[test]
    fn bigquery_canonical_forms() {
        let base = ts("2026-11-22T10:00:00Z");
        assert_eq!(ts("2026-11-22 10:00:00"), base);
        assert_eq!(ts("2026-11-22 10:00:00 UTC"), base);
        assert_eq!(ts("2026-11-22 10:00:00UTC"), base);
        assert_eq!(ts("2026-11-22 10:00:00 utc"), base);
        assert_eq!(ts("2026-11-22 12:00:00+02"), base);
        assert_eq!(ts("2026-11-22 12:00:00 +02"), base);
        assert_eq!(ts("2026-11-22 12:30:00+0230"), base);
        assert_eq!(ts("2026-11-22 12:30:00 +02:30"), base);
        assert_eq!(ts("2026-11-22 12:00:00+2"), base);
        assert_eq!(ts("2026-11-22 10:00:00 Z"), base);
        assert_eq!(ts("2026-1-2 3:4:5"), ts("2026-01-02T03:04:05Z"));
        assert_eq!(ts("2026-11-22"), ts("2026-11-22T00:00:00Z"));
        // Up to 12 fraction digits; beyond microseconds is truncated.
        assert_eq!(ts("2026-11-22 10:00:00.123456789012"), base + 123_456);
        assert_eq!(ts("2026-11-22 10:00:00.9999999"), base + 999_999);
        assert_eq!(ts("2026-11-22 10:00:00.5"), base + 500_000);
    }

    #[test]
    fn timestamp_errors() {
        let bad = [
            "",
            "2026",
            "2026-11-22T",
            "2026-11-22 10:00",
            "2026-11-22 10:00:00.",
            "2026-11-22 10:00:00.1234567890123",
            "2026-11-22 10:00:00 ",
            "2026-11-22 10:00:00 EST",
            "2026-11-22 10:00:00+5:3",
            "2026-11-22 10:00:00+123",
            "2026-11-22 10:00:00+24:00",
            "2026-11-22X10:00:00",
            "26-11-22 10:00:00",
            " 2026-11-22",
            "2026-11-22 10:00:00Zjunk",
            "１２３４-01-01",
        ];
        for s in bad {
            let e = parse_timestamp(s).expect_err(s);
            assert!(matches!(e, TimeError::Syntax { .. }), "{s}: {e}");
        }
        let e = parse_timestamp("garbage").expect_err("garbage");
        assert_eq!(
            e.to_string(),
            "expected RFC 3339 or 'YYYY-MM-DD HH:MM:SS[.ffffff][ zone]', got \"garbage\""
        );
        let e = parse_timestamp("10000-01-01T00:00:00Z").expect_err("year 10000");
        assert_eq!(e.to_string(), "year 10000 is out of range 0001..9999");
        let e = parse_timestamp("0000-12-31").expect_err("year 0");
        assert_eq!(e.to_string(), "year 0 is out of range 0001..9999");
        assert!(parse_timestamp("2026-13-01").is_err());
        let e = parse_timestamp("2026-02-29").expect_err("not leap");
        assert_eq!(e.to_string(), "day 29 is out of range 1..28 for 2026-02");
        assert!(parse_timestamp("2024-02-29").is_ok());
        assert!(parse_timestamp("2026-11-22 24:00:00").is_err());
        assert!(parse_timestamp("2026-11-22 10:60:00").is_err());
        let e = parse_timestamp("2026-12-31T23:59:60Z").expect_err("leap second");
        assert!(matches!(e, TimeError::LeapSecond { .. }));
        assert!(parse_timestamp("2026-11-22 10:00:61").is_err());
        let e = parse_timestamp("0001-01-01T00:30:00+01:00").expect_err("before min");
        assert!(matches!(e, TimeError::InstantRange { .. }), "{e}");
        assert!(parse_timestamp("9999-12-31T23:00:00-05:00").is_err());
        let long = "x".repeat(500);
        let msg = parse_timestamp(&long).expect_err("long").to_string();
        assert!(msg.len() < 200, "{msg}");
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("1970-1-2"), Ok(1));
        assert_eq!(format_date(1), "1970-01-02");
        assert_eq!(
            format_date(parse_date("0001-01-01").expect("min")),
            "0001-01-01"
        );
        assert_eq!(
            format_date(parse_date("9999-12-31").expect("max")),
            "9999-12-31"
        );
        assert!(parse_date("1970-01-01T00:00:00").is_err());
        assert!(parse_date("1970/01/01").is_err());
        assert!(parse_date("2026-04-31").is_err());
        let e = parse_date("junk").expect_err("junk");
        assert_eq!(e.to_string(), "expected 'YYYY-[M]M-[D]D', got \"junk\"");
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("00:00:00"), Ok(0));
        assert_eq!(parse_time("1:2:3"), Ok(3_723_000_000));
        assert_eq!(parse_time("23:59:59.999999"), Ok(DAY_MICROS - 1));
        assert_eq!(parse_time("10:00:00.1234567"), Ok(36_000_123_456));
        assert_eq!(format_time(3_723_000_000), "01:02:03");
        assert_eq!(format_time(36_000_123_456), "10:00:00.123456");
        assert_eq!(format_time(1), "00:00:00.000001");
        assert!(parse_time("24:00:00").is_err());
        assert!(parse_time("10:00").is_err());
        assert!(parse_time("10:00:00Z").is_err());
        assert!(matches!(
            parse_time("23:59:60"),
            Err(TimeError::LeapSecond { .. })
        ));
    }

    #[test]
    fn datetimes() {
        let v = parse_datetime("2026-11-22 10:00:00.5").expect("dt");
        assert_eq!(format_datetime(v), "2026-11-22T10:00:00.500000");
        assert_eq!(parse_datetime("2026-11-22T10:00:00.5"), Ok(v));
        assert_eq!(
            format_datetime(parse_datetime("2026-11-22").expect("d")),
            "2026-11-22T00:00:00"
        );
        assert_eq!(parse_datetime("0001-01-01 00:00:00"), Ok(MIN_MICROS));
        assert_eq!(parse_datetime("9999-12-31 23:59:59.999999"), Ok(MAX_MICROS));
        let e = parse_datetime("2026-11-22T10:00:00Z").expect_err("zone");
        assert!(matches!(e, TimeError::ZoneNotAllowed { .. }), "{e}");
        assert!(e.to_string().contains("no time zone"));
        assert!(matches!(
            parse_datetime("2026-11-22 10:00:00+01:00"),
            Err(TimeError::ZoneNotAllowed { .. })
        ));
        assert!(matches!(
            parse_datetime("2026-11-22 10:00:00 x"),
            Err(TimeError::Syntax { .. })
        ));
    }

    #[test]
    fn shard_suffix_and_now() {
        assert_eq!(yyyymmdd(ts("2026-11-22T23:59:59.999999Z")), "20261122");
        assert_eq!(yyyymmdd(ts("2026-11-22T23:59:59-01:00")), "20261123");
        assert_eq!(yyyymmdd(-1), "19691231");
        let now = now_micros();
        assert!(now > ts("2020-01-01") && now < MAX_MICROS);
    }
}
