//! Stable digests of a list of names: the same parts give the same bytes on every
//! run, which is what makes re-sent records dedupe.

use sha2::{Digest, Sha256};

/// SHA-256 over the parts, each length-prefixed so ("ab","c") and ("a","bc") differ.
pub fn of_parts(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

/// The first 8 bytes of `of_parts`, as a signed integer (an SQLite key).
pub fn key_of_parts(parts: &[&str]) -> i64 {
    let d = of_parts(parts);
    let mut k = [0u8; 8];
    k.copy_from_slice(&d[..8]);
    i64::from_le_bytes(k)
}
