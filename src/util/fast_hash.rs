//! A fast hasher for in-process maps whose keys no outsider chooses to collide: trace ids
//! (random, or with a random tail) and attribute keys in a bounded per-thread cache.
//! SipHash showed in the writer's and the redactor's profiles.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default)]
pub struct FastHasher(u64);

impl FastHasher {
    fn mix(&mut self, word: u64) {
        // A multiply spreads each word over the high bits; the rotation carries earlier
        // words' high bits down into the next round.
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in words.by_ref() {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn finish(&self) -> u64 {
        // MurmurHash3's finalizer: every input bit reaches the low bits a table indexes by.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// For `HashMap<K, V, FastHashing>`.
pub type FastHashing = BuildHasherDefault<FastHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hash};

    /// Distinct low 10 bits (the bucket of a 1,024-slot table) over 1,024 keys.
    fn buckets<T: Hash>(keys: impl Iterator<Item = T>) -> usize {
        let b = FastHashing::default();
        keys.map(|k| b.hash_one(k) & 1023)
            .collect::<HashSet<_>>()
            .len()
    }

    #[test]
    fn keys_differing_anywhere_spread_over_buckets() {
        // Random keys fill about 63 % of the slots; a hash whose low bits ignored the
        // varying bytes would put them all in one.
        let ids = (0..1024u32).map(|i| {
            let mut id = [0u8; 16];
            id[12..].copy_from_slice(&i.to_be_bytes());
            id
        });
        assert!(buckets(ids) > 550);
        let leading = (0..1024u32).map(|i| {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id
        });
        assert!(buckets(leading) > 550);
        let keys = (0..1024).map(|i| format!("gen_ai.usage.attribute_{i:04}"));
        assert!(buckets(keys) > 550);
    }
}
