//! `hash`: keyed HMAC-SHA256 of a value, as 64 lowercase hex digits.
//!
//! The key is absorbed once, when the config is compiled: the HMAC state after the key (its
//! inner and outer padded blocks) is kept and cloned per value, so hashing a short string costs
//! two SHA-256 compressions, not four. The key is never kept as text, printed or logged.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// An HMAC-SHA256 keyed once.
#[derive(Clone)]
pub(crate) struct Hasher(Hmac<Sha256>);

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher(<keyed>)")
    }
}

impl Hasher {
    /// Keys the HMAC with the key's UTF-8 bytes.
    pub(crate) fn new(key: &str) -> Hasher {
        // HMAC takes a key of any length (longer ones are hashed first): this cannot fail.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        Hasher(mac)
    }

    /// Replaces `s` with the hex HMAC of its bytes, reusing its buffer.
    pub(crate) fn hash_in_place(&self, s: &mut String) {
        let digest = self.digest(s.as_bytes());
        s.clear();
        write_hex(&digest, s);
    }

    fn digest(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

fn write_hex(digest: &[u8; 32], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(digest.len() * 2);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::Hasher;

    #[test]
    fn matches_rfc_4231_test_case_2() {
        // RFC 4231, test case 2: key "Jefe".
        let want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let h = Hasher::new("Jefe");
        let mut s = String::from("what do ya want for nothing?");
        h.hash_in_place(&mut s);
        assert_eq!(s, want);
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let h = Hasher::new("a very secret key 123");
        assert_eq!(format!("{h:?}"), "Hasher(<keyed>)");
    }
}
