//! Spare small payload buffers, one stash per thread: the decoder takes one for each new
//! message, and the output queue gives one back when it copies a small payload next to
//! its header. An echo or a reply then costs no allocation.
//!
//! Owns only the stash. It must stay small: at most [`KEEP`] buffers of at most
//! [`MAX_CAPACITY`] bytes, so an idle worker holds at most 32 KiB here.
//!
//! Why not leave it to malloc: a read delivers messages in batches (ten at a time in the
//! 32-byte echo benchmark), more than glibc's per-size cache holds, and callgrind put
//! malloc, free and realloc at ~240 of the ~1,265 instructions per echoed message.

use std::cell::RefCell;

/// Buffers kept per thread.
pub const KEEP: usize = 32;
/// Largest buffer kept (larger ones are freed as usual).
pub const MAX_CAPACITY: usize = 1024;

thread_local! {
    static STASH: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for `len` bytes: a spare one when `len` is small and the
/// stash has one, else a new one.
pub fn take(len: usize) -> Vec<u8> {
    if len <= MAX_CAPACITY {
        if let Some(mut v) = STASH.with_borrow_mut(Vec::pop) {
            v.reserve(len);
            return v;
        }
    }
    Vec::with_capacity(len)
}

/// Gives a buffer back (its contents are dropped); kept if small and the stash has room.
pub fn give(mut v: Vec<u8>) {
    let cap = v.capacity();
    if cap == 0 || cap > MAX_CAPACITY {
        return;
    }
    v.clear();
    STASH.with_borrow_mut(|s| {
        if s.len() < KEEP {
            s.push(v);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_and_the_stash_stays_bounded() {
        for _ in 0..KEEP * 2 {
            give(vec![1, 2, 3]);
        }
        give(Vec::with_capacity(MAX_CAPACITY + 1));
        assert_eq!(STASH.with_borrow(Vec::len), KEEP);
        let v = take(10);
        assert!(v.is_empty() && v.capacity() >= 10);
        assert_eq!(STASH.with_borrow(Vec::len), KEEP - 1);
        let big = take(MAX_CAPACITY + 1);
        assert!(big.capacity() > MAX_CAPACITY);
        assert_eq!(STASH.with_borrow(Vec::len), KEEP - 1);
    }
}
