//! The input layout the frame targets share: `[cfg][n][n × u8 cut delta][body]`,
//! `n = second byte % 9`. `cfg` steers the run; the deltas are the lengths of the pieces
//! the body is fed in (cumulative, clamped by the caller to what is left).

/// `(cfg, deltas, body)` off the front of `data`; missing bytes read as 0 or empty.
pub fn split_deltas(data: &[u8]) -> (u8, &[u8], &[u8]) {
    let cfg = data.first().copied().unwrap_or(0);
    let n = data.get(1).map_or(0, |b| (b % 9) as usize);
    let header = (2 + n).min(data.len());
    (cfg, &data[2.min(data.len())..header], &data[header..])
}
