//! Payload masking (RFC 6455 §5.3).
//!
//! Owns the XOR of a payload with its 4-byte masking key, a machine word at a time.
//! It knows nothing about frames: callers pass the key and where in the payload the
//! slice starts, so a payload that arrives across several reads unmasks piecewise.

/// XORs `buf` in place with `key`, as if `buf` started `offset` bytes into the payload.
///
/// Eight bytes at a time on a `u64` built from the key rotated to the right phase, with
/// unaligned loads (as cheap as aligned ones on the targets we run on; aligning first
/// cost more than it saved on small messages, per callgrind); the tail under eight
/// bytes goes byte by byte. `benches/codec.rs` compares this with
/// [`apply_mask_bytewise`].
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let phase = offset & 3;
    let k = [
        key[phase],
        key[(phase + 1) & 3],
        key[(phase + 2) & 3],
        key[(phase + 3) & 3],
    ];
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let v = u64::from_ne_bytes(w) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

/// The obvious byte-at-a-time version: the reference the fast path is tested and
/// benchmarked against.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn word_mask_equals_bytewise(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            key in any::<[u8; 4]>(),
            offset in 0usize..16,
            start in 0usize..8,
        ) {
            let start = start.min(data.len());
            let mut fast = data.clone();
            let mut slow = data;
            apply_mask(&mut fast[start..], key, offset);
            apply_mask_bytewise(&mut slow[start..], key, offset);
            prop_assert_eq!(fast, slow);
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..=255).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = data;
        let (a, b) = pieces.split_at_mut(13);
        apply_mask(a, key, 0);
        apply_mask(b, key, 13);
        assert_eq!(whole, pieces);
    }
}
