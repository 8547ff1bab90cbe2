//! A hasher for maps keyed by trace ids: the ids are already random (or carry a random
//! tail), so folding their bytes is enough; SipHash showed in the writer's profile.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            // A multiply spreads every byte over the high bits the table indexes by.
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// `HashMap<TraceId, V, IdHashing>`.
pub type IdHashing = BuildHasherDefault<IdHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn distinct_ids_stay_distinct() {
        let mut m: HashMap<[u8; 16], usize, IdHashing> = HashMap::default();
        for i in 0..10_000u32 {
            let mut id = [0u8; 16];
            id[12..].copy_from_slice(&i.to_be_bytes());
            m.insert(id, i as usize);
        }
        assert_eq!(m.len(), 10_000);
        let mut id = [0u8; 16];
        id[12..].copy_from_slice(&77u32.to_be_bytes());
        assert_eq!(m.get(&id), Some(&77));
    }
}
