//! Event ids: UUIDv7 (RFC 9562) of the time `log()` took the event, used as BigQuery's
//! `insertId`. An event logged through its thread's lane gets its id when the flush thread
//! reads it (from the `received_at` the record carries, so the id is the same as if made in
//! `log()`); one through the shared queue, in `log()`.
//!
//! The random bits come from a wyrand generator seeded from the OS: per thread ([`random_u64`],
//! reseeded after a fork), or per flush thread ([`Rng`], which a forked child makes anew), so a
//! parent and its child never produce the same sequence.

use std::cell::Cell;

use crate::fork;

thread_local! {
    static RNG: Cell<(u64, u64)> = const { Cell::new((u64::MAX, 0)) };
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        // No OS randomness: mix time and thread identity; ids stay unique with the timestamp part.
        let t = crate::time::now_micros() as u64;
        let addr = &b as *const _ as u64;
        return t ^ addr.rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
    }
    u64::from_le_bytes(b)
}

/// 64 random bits (wyrand).
#[inline]
pub fn random_u64() -> u64 {
    RNG.with(|cell| {
        let (gen, mut state) = cell.get();
        let now_gen = fork::generation();
        if gen != now_gen {
            state = seed();
        }
        let out = wyrand(&mut state);
        cell.set((now_gen, state));
        out
    })
}

/// One wyrand step.
#[inline(always)]
fn wyrand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0xa076_1d64_78bd_642f);
    let t = u128::from(*state) * u128::from(*state ^ 0xe703_7ed1_a0b4_28db);
    ((t >> 64) ^ t) as u64
}

/// A generator of [`random_u64`]'s kind held by its owner instead of the thread: the flush
/// thread's reader of the lanes keeps one and makes the ids of the events it reads, so an id
/// costs no thread-local access (in a loaded library each is a `__tls_get_addr` call) and
/// nothing on the caller's path. Seeded from the OS when made; a forked child starts its own
/// flush thread, so parent and child never share a sequence.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Default for Rng {
    fn default() -> Self {
        Self::new()
    }
}

impl Rng {
    pub(crate) fn new() -> Self {
        Self(seed())
    }

    /// A UUIDv7 as [`uuid_v7`], its random bits from this generator.
    #[inline]
    pub(crate) fn uuid_v7(&mut self, unix_micros: i64) -> u128 {
        uuid_v7_with(unix_micros, wyrand(&mut self.0))
    }
}

/// A UUIDv7 for the given Unix time in microseconds. `rand_a` carries the sub-millisecond part
/// of the time (RFC 9562 §6.2, method 3), so ids from one thread sort by time to the
/// microsecond; `rand_b` is 62 random bits.
#[inline]
pub(crate) fn uuid_v7(unix_micros: i64) -> u128 {
    uuid_v7_with(unix_micros, random_u64())
}

#[inline(always)]
fn uuid_v7_with(unix_micros: i64, random: u64) -> u128 {
    let micros = unix_micros.max(0) as u64;
    let millis = u128::from(micros / 1000) & 0xFFFF_FFFF_FFFF;
    let rand_a = u128::from((micros % 1000) * 4096 / 1000);
    let rand_b = u128::from(random) & 0x3FFF_FFFF_FFFF_FFFF;
    (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
}

/// Formats a UUID as 36 lowercase hex characters with hyphens.
pub(crate) fn format_uuid(u: u128) -> String {
    let mut out = String::with_capacity(36);
    push_uuid(&mut out, u);
    out
}

/// Appends [`format_uuid`]'s text to `out`.
pub(crate) fn push_uuid(out: &mut String, u: u128) {
    push_ascii(out, &uuid_text(u));
}

/// Appends [`format_uuid`]'s text to `out` as a JSON string (quotes included), in one store: the
/// forward sink frames one per event.
pub(crate) fn push_uuid_json(out: &mut String, u: u128) {
    let mut quoted = [b'"'; 38];
    quoted[1..37].copy_from_slice(&uuid_text(u));
    push_ascii(out, &quoted);
}

/// The 36 characters of a UUID's text, built on the stack eight hex digits at a time.
#[inline]
fn uuid_text(u: u128) -> [u8; 36] {
    let hi = hex16((u >> 64) as u64);
    let lo = hex16(u as u64);
    let mut text = [b'-'; 36];
    text[..8].copy_from_slice(&hi[..8]);
    text[9..13].copy_from_slice(&hi[8..12]);
    text[14..18].copy_from_slice(&hi[12..16]);
    text[19..23].copy_from_slice(&lo[..4]);
    text[24..].copy_from_slice(&lo[4..]);
    text
}

/// 16 lowercase hex digits of `v`, most significant first.
#[inline]
fn hex16(v: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&hex8((v >> 32) as u32).to_be_bytes());
    out[8..].copy_from_slice(&hex8(v as u32).to_be_bytes());
    out
}

/// Eight hex digits of `v` in one word (most significant digit in the highest byte), without a
/// table: each nibble is spread into a byte of its own, then `'0'` is added, and `'a' - '0' -
/// 10` more where the nibble is 10 or above. A table lookup per digit and a UTF-8 check of the
/// result cost a fifth of framing an event in forward mode (callgrind).
#[inline]
fn hex8(v: u32) -> u64 {
    let mut x = u64::from(v);
    x = ((x & 0xFFFF_0000) << 16) | (x & 0xFFFF);
    x = ((x & 0x0000_FF00_0000_FF00) << 8) | (x & 0x0000_00FF_0000_00FF);
    x = ((x & 0x00F0_00F0_00F0_00F0) << 4) | (x & 0x000F_000F_000F_000F);
    // 1 in each byte whose nibble is 10 or above (nibble + 6 carries into bit 4).
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    x + 0x3030_3030_3030_3030 + letters * u64::from(b'a' - b'0' - 10)
}

/// Appends bytes known to be ASCII.
#[inline]
fn push_ascii(out: &mut String, text: &[u8]) {
    debug_assert!(text.is_ascii());
    // SAFETY: callers pass only ASCII (hex digits, hyphens and quotes), which is UTF-8.
    #[allow(unsafe_code)]
    unsafe { out.as_mut_vec() }.extend_from_slice(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_is_the_hex_digits_in_order_with_hyphens() {
        assert_eq!(
            format_uuid(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
            "01234567-89ab-cdef-fedc-ba9876543210"
        );
        assert_eq!(format_uuid(0), "00000000-0000-0000-0000-000000000000");
        assert_eq!(
            format_uuid(u128::MAX),
            "ffffffff-ffff-ffff-ffff-ffffffffffff"
        );
    }

    #[test]
    fn uuid_text_matches_format_hex_for_any_value() {
        let mut x: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
        for i in 0..10_000u32 {
            // Every nibble value in every position over the run, and single-bit values.
            x = x.wrapping_mul(0x2545_f491_4f6c_dd1d_9e37_79b9_7f4a_7c15) ^ u128::from(i);
            for u in [x, 1u128 << (i % 128)] {
                let hex = format!("{u:032x}");
                let want = format!(
                    "{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..]
                );
                assert_eq!(format_uuid(u), want);
                let mut json = String::from("x");
                push_uuid_json(&mut json, u);
                assert_eq!(json, format!("x\"{want}\""));
            }
        }
    }

    #[test]
    fn uuid_v7_layout() {
        let u = uuid_v7(1_795_341_600_123_456);
        let s = format_uuid(u);
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "7", "{s}");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
        // 48-bit millisecond timestamp in front.
        assert_eq!(
            u64::from_str_radix(&s[..8], 16).unwrap(),
            1_795_341_600_123 >> 16
        );
        // The sub-millisecond part (456 µs) in rand_a: 456 * 4096 / 1000 = 0x74b.
        assert_eq!(&s[15..18], "74b", "{s}");
        assert!(
            uuid_v7(1_000_999) > uuid_v7(1_000_998),
            "µs order within a ms"
        );
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(uuid_v7(0)));
        }
    }
}
