//! The fixed key hash: XXH3-64 with seed 0, over the key's raw bytes.
//!
//! XXH3 is a well-known, fast, portable 64-bit hash; the `xxhash-rust`
//! implementation gives the same value on x86_64 and wasm32, so the page and
//! the backend place every key identically. Test vectors below pin it.

/// Hash of a key (or any byte string) as used by every placement algorithm.
#[inline]
pub fn key_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Position of a key on the ring as a fraction of a full turn, in `[0, 1)`.
pub fn ring_fraction(hash: u64) -> f64 {
    // The top 53 bits fit an f64 exactly, so the result stays below 1.
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh3_test_vectors_are_pinned() {
        // Reference values from the xxHash C library (python-xxhash's
        // xxh3_64_intdigest), covering its short, medium and long paths.
        assert_eq!(key_hash(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(key_hash(b"a"), 0xe6c6_32b6_1e96_4e1f);
        assert_eq!(key_hash(b"abc"), 0x78af_5f94_892f_3950);
        assert_eq!(key_hash(b"key-0"), 0x819f_6b51_706f_0178);
        let sixteen: Vec<u8> = (0..16).collect();
        assert_eq!(key_hash(&sixteen), 0x8355_e3a6_f617_70db);
        assert_eq!(key_hash(&[b'x'; 300]), 0xa5d1_b460_7dc8_3554);
    }

    #[test]
    fn ring_fraction_spans_the_unit_interval() {
        assert_eq!(ring_fraction(0), 0.0);
        assert!(ring_fraction(u64::MAX) < 1.0);
        assert!((ring_fraction(u64::MAX / 2) - 0.5).abs() < 1e-12);
    }
}
