//! The bench client's frame scanner (`bench::conn::next_frame`): it reads whatever a
//! server under test sends, so it must never panic or claim more bytes than it has.
//!
//! Checks: no panic; a returned frame lies within the input and within the capacity; the
//! same bytes with more appended give the same frame (a complete frame does not depend on
//! what follows it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::bench_support::next_frame;

fuzz_target!(|data: &[u8]| {
    let capacity = 1 << 16;
    let mut rest = data;
    loop {
        match next_frame(rest, capacity) {
            Ok(Some(f)) => {
                assert!(f.head >= 2 && f.head <= 10);
                assert!(f.head + f.len <= rest.len());
                assert!(f.head + f.len <= capacity);
                let mut longer = rest.to_vec();
                longer.extend_from_slice(&[0xaa; 16]);
                assert_eq!(next_frame(&longer, capacity), Ok(Some(f)));
                rest = &rest[f.head + f.len..];
            }
            Ok(None) => break,
            Err(_) => break,
        }
    }
});
