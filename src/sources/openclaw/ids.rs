//! Ids made from names: the same inputs give the same id on every delivery,
//! restart and re-read, which is what makes repeated records merge or dedupe.

use crate::model::{SpanId, TraceId};
use crate::util::digest::of_parts as digest;

pub fn hash_trace_id(parts: &[&str]) -> TraceId {
    let d = digest(parts);
    let mut t = [0u8; 16];
    t.copy_from_slice(&d[..16]);
    if t == [0; 16] {
        t[15] = 1;
    }
    TraceId(t)
}

pub fn hash_span_id(parts: &[&str]) -> SpanId {
    let d = digest(parts);
    let mut s = [0u8; 8];
    s.copy_from_slice(&d[16..24]);
    if s == [0; 8] {
        s[7] = 1;
    }
    SpanId(s)
}

/// A record uid (UUID text, version 8 "custom") made from names.
pub fn stable_uid(parts: &[&str]) -> String {
    let d = digest(parts);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_custom_bytes(b).into_uuid().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_names_same_ids() {
        assert_eq!(hash_trace_id(&["a", "b"]), hash_trace_id(&["a", "b"]));
        assert_ne!(hash_trace_id(&["ab", "c"]), hash_trace_id(&["a", "bc"]));
        assert_eq!(stable_uid(&["x"]), stable_uid(&["x"]));
        assert_eq!(stable_uid(&["x"]).len(), 36);
        assert!(!hash_span_id(&["x"]).is_zero());
    }
}
