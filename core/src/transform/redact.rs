//! `redact`: finds emails, IP addresses and card numbers inside a string and replaces each with a
//! fixed marker.
//!
//! Scanners, by hand (no regex engine in the runtime build), each linear in the string:
//! - `email` → `[email]`: `local@domain`, the local part of ASCII letters, digits and `._%+-`
//!   (not starting or ending with `.`), the domain two or more labels of letters, digits and `-`
//!   with an alphabetic last label of two or more letters. Internationalized addresses are not
//!   recognized.
//! - `ipv6` → `[ipv6]`: a run of hex digits, `:` and `.` with at least two `:` that
//!   [`std::net::Ipv6Addr`] accepts (`::1`, `fe80::1`, `::ffff:192.0.2.1`); zone suffixes
//!   (`%eth0`) stay.
//! - `ipv4` → `[ipv4]`: four dotted decimal octets that [`std::net::Ipv4Addr`] accepts (no
//!   leading zeros); a version string such as `1.2.3.4` is redacted too.
//! - `card` → `[card]`: 13 to 19 digits, optionally in groups separated by single spaces or
//!   dashes, that pass the Luhn check. About one in ten random 13–19 digit numbers passes Luhn
//!   (a millisecond timestamp may), so name the fields that hold free text, not ids.
//!
//! A match never starts or ends inside a word (the characters beside it are not letters or
//! digits). The scanners run in that fixed order whatever order the rule lists them in, so an
//! IPv4-mapped IPv6 address is one `[ipv6]` and an email's domain is never half an IP.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The patterns one `redact` rule asks for, as a bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Patterns(u8);

type Finder = fn(&str, usize) -> Option<(usize, usize)>;

/// Names, markers and finders, in the order they run.
const SCANNERS: [(&str, &str, Finder); 4] = [
    ("email", "[email]", find_email),
    ("ipv6", "[ipv6]", find_ipv6),
    ("ipv4", "[ipv4]", find_ipv4),
    ("card", "[card]", find_card),
];

/// The pattern names `redact` accepts.
pub(crate) const NAMES: [&str; 4] = ["email", "ipv6", "ipv4", "card"];

impl Patterns {
    /// Adds the pattern `name`; `false` when there is no such pattern.
    pub(crate) fn add(&mut self, name: &str) -> bool {
        match SCANNERS.iter().position(|(n, _, _)| *n == name) {
            Some(i) => {
                self.0 |= 1 << i;
                true
            }
            None => false,
        }
    }

    /// `s` with every match replaced by its marker; `None` when nothing matched.
    pub(crate) fn redact(self, s: &str) -> Option<String> {
        let mut cur = Cow::Borrowed(s);
        for (i, (_, marker, find)) in SCANNERS.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if let Some(next) = replace(&cur, *find, marker) {
                    cur = Cow::Owned(next);
                }
            }
        }
        match cur {
            Cow::Owned(s) => Some(s),
            Cow::Borrowed(_) => None,
        }
    }
}

/// Replaces every match of `find` with `marker`; `None` (no allocation) when there is none.
/// Finders return byte ranges that start and end beside ASCII bytes, so slicing is safe.
fn replace(s: &str, find: Finder, marker: &str) -> Option<String> {
    let mut out: Option<String> = None;
    let mut last = 0;
    while let Some((a, b)) = find(s, last) {
        let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
        o.push_str(&s[last..a]);
        o.push_str(marker);
        last = b;
    }
    out.map(|mut o| {
        o.push_str(&s[last..]);
        o
    })
}

/// Whether the byte before `i` lets a match start at `i` (start of text, or not a word byte).
fn starts_word(b: &[u8], i: usize) -> bool {
    i == 0 || !b[i - 1].is_ascii_alphanumeric()
}

/// Whether a match may end at `end` (end of text, or not a word byte after it).
fn ends_word(b: &[u8], end: usize) -> bool {
    end >= b.len() || !b[end].is_ascii_alphanumeric()
}

fn find_email(s: &str, from: usize) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let is_local =
        |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
    let is_domain = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-');
    let mut search = from;
    while let Some(rel) = b[search..].iter().position(|&c| c == b'@') {
        let at = search + rel;
        search = at + 1;
        let mut start = at;
        while start > from && is_local(b[start - 1]) {
            start -= 1;
        }
        while start < at && b[start] == b'.' {
            start += 1;
        }
        let mut end = at + 1;
        while end < b.len() && is_domain(b[end]) {
            end += 1;
        }
        while end > at + 1 && matches!(b[end - 1], b'.' | b'-') {
            end -= 1;
        }
        if start < at
            && b[at - 1] != b'.'
            && starts_word(b, start)
            && ends_word(b, end)
            && valid_domain(&s[at + 1..end])
        {
            return Some((start, end));
        }
    }
    None
}

fn valid_domain(d: &str) -> bool {
    let mut labels = 0;
    let mut last = "";
    for label in d.split('.') {
        if label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-') {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2 && last.len() >= 2 && last.bytes().all(|c| c.is_ascii_alphabetic())
}

/// The maximal run of bytes `in_run` from `i`, less trailing dots.
fn run(b: &[u8], i: usize, in_run: impl Fn(u8) -> bool) -> usize {
    let mut end = i;
    while end < b.len() && in_run(b[end]) {
        end += 1;
    }
    while end > i && b[end - 1] == b'.' {
        end -= 1;
    }
    end
}

fn find_ipv4(s: &str, from: usize) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let mut i = from;
    while i < b.len() {
        if !(b[i].is_ascii_digit() && starts_word(b, i) && (i == 0 || b[i - 1] != b'.')) {
            i += 1;
            continue;
        }
        let end = run(b, i, |c| c.is_ascii_digit() || c == b'.');
        if ends_word(b, end) && s[i..end].parse::<Ipv4Addr>().is_ok() {
            return Some((i, end));
        }
        i = end.max(i + 1);
    }
    None
}

fn find_ipv6(s: &str, from: usize) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    if !b[from..].contains(&b':') {
        return None;
    }
    let in_run = |c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.';
    let mut i = from;
    while i < b.len() {
        if !(in_run(b[i])
            && b[i] != b'.'
            && (i == 0 || !(in_run(b[i - 1]) || b[i - 1].is_ascii_alphanumeric())))
        {
            i += 1;
            continue;
        }
        let mut end = run(b, i, in_run);
        if b[i..end].iter().filter(|&&c| c == b':').count() >= 2 && ends_word(b, end) {
            if s[i..end].parse::<Ipv6Addr>().is_ok() {
                return Some((i, end));
            }
            // "fe80::1:" at the end of a clause: one trailing ':' is punctuation.
            if b[end - 1] == b':' && b[end - 2] != b':' {
                end -= 1;
                if s[i..end].parse::<Ipv6Addr>().is_ok() {
                    return Some((i, end));
                }
            }
        }
        i = end.max(i + 1);
    }
    None
}

fn find_card(s: &str, from: usize) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let mut i = from;
    while i < b.len() {
        if !(b[i].is_ascii_digit() && starts_word(b, i)) {
            i += 1;
            continue;
        }
        // Whole digit groups from `i` while they may still be one number: the longest that
        // passes wins.
        let mut digits = 0;
        let mut end = i;
        let mut first_end = None;
        let mut best = None;
        loop {
            let start = end;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            first_end.get_or_insert(end);
            digits += end - start;
            if digits > 19 {
                break;
            }
            if digits >= 13 && ends_word(b, end) && luhn(&b[i..end]) {
                best = Some((i, end));
            }
            let more =
                end + 1 < b.len() && matches!(b[end], b' ' | b'-') && b[end + 1].is_ascii_digit();
            if !more {
                break;
            }
            end += 1;
        }
        if best.is_some() {
            return best;
        }
        // The next candidate starts at the next group.
        i = first_end.unwrap_or(i).max(i + 1);
    }
    None
}

/// The Luhn check over the digits of `b` (separators skipped).
fn luhn(b: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, d) in b.iter().rev().filter(|c| c.is_ascii_digit()).enumerate() {
        let mut d = u32::from(d - b'0');
        if k % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

#[cfg(test)]
mod tests;
