/*!
Watermark keys and the keyed pseudo-random function.

The PRF is SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed hash
designed as a cryptographic PRF for short inputs. Each (context, token)
tuple is 12–16 bytes, which is exactly SipHash's design point. It runs at
about 20 ns per call, so a green-list test is one call and O(1) per token:
no permutation of the vocabulary is ever built.

Keys are 128-bit. A key file holds the key as 32 hex digits; blank lines
and `#` comments are allowed. A key is identified by its **fingerprint**,
the SipHash of a fixed label under the key, in 16 hex digits. The
fingerprint, never the key, goes into logs and evidence reports.
`derive("cohort-17")` gives a per-cohort key, so that a leak can be narrowed
to a cohort of accounts.
*/

use std::fmt;

/// A 128-bit watermark key. `Debug` shows the fingerprint, never the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key {
    k0: u64,
    k1: u64,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.fingerprint())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("line {line}: a key is 32 hex digits (128 bits), got {got} characters")]
    Length { line: usize, got: usize },
    #[error("line {line}: not a hex digit: {ch:?}")]
    NotHex { line: usize, ch: char },
    #[error("no key in the file (only blank lines and # comments)")]
    Empty,
}

#[inline]
fn rotl(x: u64, b: u32) -> u64 {
    x.rotate_left(b)
}

#[inline]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = rotl(v[1], 13);
    v[1] ^= v[0];
    v[0] = rotl(v[0], 32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = rotl(v[3], 16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = rotl(v[3], 21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = rotl(v[1], 17);
    v[1] ^= v[2];
    v[2] = rotl(v[2], 32);
}

impl Key {
    pub const fn from_parts(k0: u64, k1: u64) -> Key {
        Key { k0, k1 }
    }

    /// SipHash-2-4 of `msg` under this key.
    pub fn siphash(&self, msg: &[u8]) -> u64 {
        let mut v = [
            self.k0 ^ 0x736f_6d65_7073_6575,
            self.k1 ^ 0x646f_7261_6e64_6f6d,
            self.k0 ^ 0x6c79_6765_6e65_7261,
            self.k1 ^ 0x7465_6462_7974_6573,
        ];
        let mut chunks = msg.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            let m = u64::from_le_bytes(w);
            v[3] ^= m;
            round(&mut v);
            round(&mut v);
            v[0] ^= m;
        }
        let rest = chunks.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        let b = u64::from_le_bytes(last) | ((msg.len() as u64 & 0xff) << 56);
        v[3] ^= b;
        round(&mut v);
        round(&mut v);
        v[0] ^= b;
        v[2] ^= 0xff;
        for _ in 0..4 {
            round(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }

    /// The PRF on a (context, token) tuple: 12 bytes, no allocation.
    #[inline]
    pub fn prf(&self, context: u64, token: u32) -> u64 {
        let mut m = [0u8; 12];
        m[..8].copy_from_slice(&context.to_le_bytes());
        m[8..].copy_from_slice(&token.to_le_bytes());
        self.siphash(&m)
    }

    /// The PRF of a single token (for min-hash seeding).
    #[inline]
    pub fn prf_token(&self, token: u32) -> u64 {
        self.siphash(&token.to_le_bytes())
    }

    /// The key's public fingerprint (16 hex digits).
    pub fn fingerprint(&self) -> String {
        format!(
            "{:016x}",
            self.siphash(b"distillguard watermark key fingerprint v1")
        )
    }

    /// A key for one cohort of accounts, derived from this one.
    pub fn derive(&self, label: &str) -> Key {
        let mut m = Vec::with_capacity(label.len() + 16);
        m.extend_from_slice(b"derive/0/");
        m.extend_from_slice(label.as_bytes());
        let k0 = self.siphash(&m);
        m[7] = b'1';
        let k1 = self.siphash(&m);
        Key { k0, k1 }
    }

    /// Parses a key file's text.
    pub fn parse(text: &str) -> Result<Key, KeyError> {
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if t.chars().count() != 32 {
                return Err(KeyError::Length {
                    line: i + 1,
                    got: t.chars().count(),
                });
            }
            let mut bytes = [0u8; 16];
            for (j, ch) in t.chars().enumerate() {
                let d = ch
                    .to_digit(16)
                    .ok_or(KeyError::NotHex { line: i + 1, ch })?;
                bytes[j / 2] |= (d as u8) << (if j % 2 == 0 { 4 } else { 0 });
            }
            let (a, b) = bytes.split_at(8);
            let mut x = [0u8; 8];
            x.copy_from_slice(a);
            let mut y = [0u8; 8];
            y.copy_from_slice(b);
            return Ok(Key {
                k0: u64::from_le_bytes(x),
                k1: u64::from_le_bytes(y),
            });
        }
        Err(KeyError::Empty)
    }

    /// The key file text for this key (keep it secret).
    pub fn to_file_text(&self) -> String {
        let mut s = String::from("# distillguard watermark key (secret). Fingerprint: ");
        s.push_str(&self.fingerprint());
        s.push('\n');
        for b in self
            .k0
            .to_le_bytes()
            .iter()
            .chain(self.k1.to_le_bytes().iter())
        {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
        s
    }

    /// A key from 16 bytes of entropy.
    pub fn from_bytes(b: [u8; 16]) -> Key {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[..8]);
        let mut y = [0u8; 8];
        y.copy_from_slice(&b[8..]);
        Key {
            k0: u64::from_le_bytes(x),
            k1: u64::from_le_bytes(y),
        }
    }
}

/// A PRF output as a uniform number in [0, 1) (53 bits).
#[inline]
pub fn unit(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn paper_key() -> Key {
        Key::from_bytes([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
    }

    #[test]
    fn siphash_matches_the_reference_vectors() {
        // From the SipHash paper (Appendix A) and its reference code.
        let k = paper_key();
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(k.siphash(&msg), 0xa129_ca61_49be_45e5);
        assert_eq!(k.siphash(&[]), 0x726f_db47_dd0e_0e31);
        let m8: Vec<u8> = (0u8..8).collect();
        assert_eq!(k.siphash(&m8), 0x93f5_f579_9a93_2462);
    }

    #[test]
    fn key_files_round_trip_and_errors_name_the_line() {
        let k = paper_key();
        let text = k.to_file_text();
        assert!(text.contains(&k.fingerprint()));
        assert_eq!(Key::parse(&text).unwrap(), k);
        assert_eq!(
            Key::parse("# c\n\nabc\n"),
            Err(KeyError::Length { line: 3, got: 3 })
        );
        assert_eq!(
            Key::parse(&format!("{}z\n", "0".repeat(31))),
            Err(KeyError::NotHex { line: 1, ch: 'z' })
        );
        assert_eq!(Key::parse("# only\n"), Err(KeyError::Empty));
        // Debug never shows the key.
        assert!(!format!("{k:?}").contains("0001020304"));
    }

    #[test]
    fn cohorts_get_distinct_keys() {
        let k = paper_key();
        let a = k.derive("cohort-1");
        assert_eq!(a, k.derive("cohort-1"));
        assert_ne!(a, k.derive("cohort-2"));
        assert_ne!(a.fingerprint(), k.fingerprint());
    }
}
