//! Fuzzes payload masking: `apply_mask` (word at a time) against `apply_mask_bytewise`.
//!
//! Input layout: `[key: 4][offset][start][cut][data]`. The data is copied into a fresh
//! buffer and masked from `start % 8` on, so the word loop sees every alignment; `offset`
//! is the position of the slice inside the payload. Checked: fast == bytewise, masking
//! in two pieces (split at `cut`) == masking whole, and masking twice restores the data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::ws::mask::{apply_mask, apply_mask_bytewise};

fuzz_target!(|data: &[u8]| {
    if data.len() < 7 {
        return;
    }
    let key = [data[0], data[1], data[2], data[3]];
    let offset = data[4] as usize;
    let start = (data[5] % 8) as usize;
    let payload = &data[7..];
    let start = start.min(payload.len());
    let cut = (data[6] as usize) % (payload.len() - start + 1);

    let mut fast = payload.to_vec();
    let mut slow = payload.to_vec();
    apply_mask(&mut fast[start..], key, offset);
    apply_mask_bytewise(&mut slow[start..], key, offset);
    assert_eq!(
        fast, slow,
        "apply_mask != apply_mask_bytewise (key {key:?}, offset {offset}, start {start})"
    );

    let mut pieces = payload.to_vec();
    let (a, b) = pieces[start..].split_at_mut(cut);
    apply_mask(a, key, offset);
    apply_mask(b, key, offset + cut);
    assert_eq!(pieces, fast, "piecewise masking differs (cut {cut})");

    apply_mask(&mut fast[start..], key, offset);
    assert_eq!(fast, payload, "masking twice does not restore the data");
});
