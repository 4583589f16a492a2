//! The input layout the HTTP targets share: `[n][n × u16 LE cut][data]`, `n = first byte %
//! max_cuts`. The cuts (taken modulo `data.len() + 1`, sorted) are where the data is split
//! into reads.

/// Reads the cut count and positions off the front of `input`; missing bytes read as 0.
pub fn split_input(input: &[u8], max_cuts: u8) -> (Vec<usize>, &[u8]) {
    let n = input.first().map_or(0, |b| (b % max_cuts) as usize);
    let header = (1 + 2 * n).min(input.len());
    let raw = &input[1.min(input.len())..header];
    let data = &input[header..];
    let mut cuts: Vec<usize> = raw
        .chunks(2)
        .map(|c| {
            let v = u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]) as usize;
            v % (data.len() + 1)
        })
        .collect();
    cuts.sort_unstable();
    (cuts, data)
}
