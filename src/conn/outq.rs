//! A connection's queue of outbound bytes, flushed with vectored writes.
//!
//! Owns the frames waiting to be written and how far the first one got. Small frames are
//! copied into one buffer with their header; large ones keep their payload as it came
//! (an owned message or a shared broadcast buffer) and go out next to their header in
//! one `writev`, so nothing large is copied on the way out.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use crate::ws::{spare, FrameHeader, OpCode};

/// Payloads up to this size are copied next to their header: one small buffer costs
/// less than an extra iovec entry.
const COPY_THRESHOLD: usize = 1024;

/// First capacity of the buffer small frames are coalesced into.
const TAIL_START: usize = 2048;

/// Small frames are coalesced into one buffer up to this size.
const COALESCE_LIMIT: usize = 64 * 1024;

/// Most buffers handed to one `writev` call (Linux allows 1024).
const MAX_IOVECS: usize = 64;

#[derive(Debug)]
enum Chunk {
    /// The header of a frame whose payload is the next chunk.
    Header(FrameHeader),
    /// The payload that follows a `Header`.
    Payload(Vec<u8>),
    /// A whole frame (or HTTP response) in one buffer.
    Owned(Vec<u8>),
    /// A whole frame shared with other connections.
    Shared(Arc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Header(h) => h.as_bytes(),
            Chunk::Payload(v) | Chunk::Owned(v) => v,
            Chunk::Shared(a) => a,
        }
    }

    fn starts_frame(&self) -> bool {
        !matches!(self, Chunk::Payload(_))
    }
}

/// Spare queue storage and a gather buffer, one pool per worker. A connection's queue gives its storage
/// back when a flush empties it and takes some when a frame is queued, so a message to
/// an idle connection costs a pop and a push here instead of an allocation and a free
/// (callgrind put the allocation at ~8% of a chat node's instructions).
#[derive(Debug, Default)]
pub struct StoragePool {
    spare: Vec<VecDeque<Chunk>>,
    /// Where a flush copies small frames to send them as one buffer.
    gather: Vec<u8>,
}

/// Storage kept in a pool: at most this many queues' worth (a broadcast to more
/// connections than this allocates for the rest). The pool only grows when queues
/// holding storage at the same time outnumber it, so this bounds a busy worker's
/// spare memory (16,384 × 16 chunks × 32 B = 8 MiB at worst); an idle worker frees it.
const POOL_MAX: usize = 16_384;
/// ...each of at most this many chunks (a queue that grew larger frees its storage).
const POOLED_CAPACITY_MAX: usize = 16;

impl StoragePool {
    /// Whether the pool holds any memory.
    pub fn holds_memory(&self) -> bool {
        self.spare.capacity() > 0 || self.gather.capacity() > 0
    }

    /// Frees what the pool holds; the worker calls it once it has been idle for a
    /// second, so an idle server keeps none of it (idle memory per connection is a
    /// target).
    pub fn clear(&mut self) {
        self.spare = Vec::new();
        self.gather = Vec::new();
    }

    fn put(&mut self, d: VecDeque<Chunk>) {
        if d.capacity() <= POOLED_CAPACITY_MAX && self.spare.len() < POOL_MAX {
            self.spare.push(d);
        }
    }
}

/// Outbound bytes for one connection.
#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the first chunk already written.
    head_written: u32,
    /// Bytes queued and not yet written. `u32` keeps idle connections small; the config
    /// caps message and queue sizes at 1 GiB each, so a queue stays under 4 GiB.
    len: u32,
}

impl OutQueue {
    /// Whether nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes queued and not yet written.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Queues raw bytes (an HTTP response).
    pub fn push_bytes(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len() as u32;
        self.chunks.push_back(Chunk::Owned(bytes));
    }

    /// Queues a whole frame already encoded and shared with other connections: a
    /// reference count and a slot in the queue; the bytes are copied once, when the
    /// queue is flushed (see [`OutQueue::flush`]).
    pub fn push_shared(&mut self, frame: Arc<[u8]>) {
        self.len += frame.len() as u32;
        self.chunks.push_back(Chunk::Shared(frame));
    }

    /// Queues one unmasked frame with `payload`.
    pub fn push_frame(&mut self, opcode: OpCode, payload: Vec<u8>) {
        self.push_with(FrameHeader::new(true, opcode, payload.len(), None), payload);
    }

    /// Queues one unmasked frame whose `payload` is a compressed message (RSV1 set).
    pub fn push_compressed(&mut self, opcode: OpCode, payload: Vec<u8>) {
        let header = FrameHeader::new(true, opcode, payload.len(), None).compressed();
        self.push_with(header, payload);
    }

    fn push_with(&mut self, header: FrameHeader, payload: Vec<u8>) {
        self.len += (header.as_bytes().len() + payload.len()) as u32;
        if payload.len() <= COPY_THRESHOLD {
            // Small frames are appended to the tail buffer when there is one, so a burst
            // of replies costs one allocation and one iovec, not one of each per frame.
            // Appending to the chunk being written is fine: only its end moves.
            if let Some(Chunk::Owned(tail)) = self.chunks.back_mut() {
                if tail.len() + header.as_bytes().len() + payload.len() <= COALESCE_LIMIT {
                    tail.extend_from_slice(header.as_bytes());
                    tail.extend_from_slice(&payload);
                    // The payload's buffer goes back for the next incoming message.
                    spare::give(payload);
                    return;
                }
            }
            // Room for a read's worth of small replies: growing it by doubling from a
            // few hundred bytes cost a realloc per batch (callgrind, 32-byte echo).
            let mut buf =
                Vec::with_capacity((header.as_bytes().len() + payload.len()).max(TAIL_START));
            buf.extend_from_slice(header.as_bytes());
            buf.extend_from_slice(&payload);
            spare::give(payload);
            self.chunks.push_back(Chunk::Owned(buf));
        } else {
            self.chunks.push_back(Chunk::Header(header));
            self.chunks.push_back(Chunk::Payload(payload));
        }
    }

    /// Drops every frame not yet started, keeping the one partly written (if any) so the
    /// byte stream stays well-framed. What a slow consumer's queue is cut back to before
    /// its close frame.
    pub fn discard_unsent(&mut self) {
        let mut keep = 0;
        for (i, c) in self.chunks.iter().enumerate() {
            let started = i == 0 && self.head_written > 0;
            if c.starts_frame() && !started {
                break;
            }
            keep = i + 1;
        }
        self.chunks.truncate(keep);
        let total: usize = self.chunks.iter().map(|c| c.bytes().len()).sum();
        self.len = (total - self.head_written as usize) as u32;
    }

    /// Writes as much as the socket takes: whether the queue is now empty (else the
    /// socket would block with bytes left), and how many bytes went out.
    ///
    /// Small frames at the front are first copied into the pool's gather buffer and
    /// leave as one buffer, as uWS's cork buffer does: the kernel pays per iovec
    /// (`perf`: `_copy_from_iter` was the top symbol of a broadcast to 10,000 with up to
    /// 16 frames per connection per turn), and the gather buffer is the same hot memory
    /// for every connection of the turn.
    pub fn flush(
        &mut self,
        w: &mut impl Write,
        pool: &mut StoragePool,
    ) -> io::Result<(bool, usize)> {
        let mut total = 0;
        while !self.chunks.is_empty() {
            match self.write_some(w, &mut pool.gather) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    total += written;
                    self.advance(written);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((false, total)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((true, total))
    }

    /// One `write` or `writev` of what is queued (see [`OutQueue::flush`]).
    fn write_some(&self, w: &mut impl Write, gather: &mut Vec<u8>) -> io::Result<usize> {
        let skip = self.head_written as usize;
        fn unsent_of(skip: usize, i: usize, c: &Chunk) -> &[u8] {
            let b = c.bytes();
            if i == 0 {
                &b[skip..]
            } else {
                b
            }
        }
        let unsent = |i, c| unsent_of(skip, i, c);
        if self.chunks.len() == 1 {
            return w.write(unsent(0, &self.chunks[0]));
        }
        // One pass: small chunks at the front are copied as they are met.
        gather.clear();
        let mut gathered = 0;
        if self.chunks[0].bytes().len() <= COPY_THRESHOLD {
            for (i, c) in self.chunks.iter().enumerate().take(MAX_IOVECS) {
                if c.bytes().len() > COPY_THRESHOLD {
                    break;
                }
                gather.extend_from_slice(unsent(i, c));
                gathered += 1;
            }
        }
        if gathered == self.chunks.len() {
            return w.write(gather);
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        if gathered > 0 {
            slices[0] = IoSlice::new(gather);
            n = 1;
        }
        for (i, c) in self.chunks.iter().enumerate().skip(gathered) {
            if n == MAX_IOVECS {
                break;
            }
            slices[n] = IoSlice::new(unsent(i, c));
            n += 1;
        }
        if n == 1 {
            w.write(&slices[0])
        } else {
            w.write_vectored(&slices[..n])
        }
    }

    /// Once a flush has emptied the queue, hands its storage to `pool` (or frees it), so
    /// an idle connection holds no buffer at all: keeping even a small one cost ~140
    /// bytes per idle connection, a quarter of its footprint.
    pub fn park_storage(&mut self, pool: &mut StoragePool) {
        if self.chunks.is_empty() && self.chunks.capacity() > 0 {
            pool.put(std::mem::take(&mut self.chunks));
        }
    }

    /// Takes storage from `pool` if the queue has none, so queuing a frame on an idle
    /// connection does not allocate.
    pub fn unpark_storage(&mut self, pool: &mut StoragePool) {
        if self.chunks.capacity() == 0 {
            if let Some(d) = pool.spare.pop() {
                self.chunks = d;
            }
        }
    }

    fn advance(&mut self, mut written: usize) {
        self.len -= written as u32;
        if self.len == 0 {
            // Everything went (the usual case): no need to walk the chunks' lengths.
            self.chunks.clear();
            self.head_written = 0;
            return;
        }
        while written > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - self.head_written as usize;
            if written >= left {
                written -= left;
                self.head_written = 0;
                self.chunks.pop_front();
            } else {
                self.head_written += written as u32;
                written = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call and counts calls.
    struct Trickle {
        out: Vec<u8>,
        cap: usize,
        calls: usize,
        block_every: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.block_every > 0 && self.calls % self.block_every == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.cap {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn expected() -> (OutQueue, Vec<u8>) {
        let mut q = OutQueue::default();
        let mut want = Vec::new();
        let big = vec![7u8; 5000];
        q.push_frame(OpCode::Text, b"hello".to_vec());
        want.extend(crate::ws::encode_frame(true, OpCode::Text, b"hello"));
        q.push_frame(OpCode::Binary, big.clone());
        want.extend(crate::ws::encode_frame(true, OpCode::Binary, &big));
        let shared: Arc<[u8]> = crate::ws::encode_frame(true, OpCode::Text, b"all").into();
        q.push_shared(shared.clone());
        want.extend_from_slice(&shared);
        // Copied next to the one before; then one after a frame that stays shared.
        let second: Arc<[u8]> = crate::ws::encode_frame(true, OpCode::Text, b"second").into();
        q.push_shared(second.clone());
        want.extend_from_slice(&second);
        let large: Arc<[u8]> = crate::ws::encode_frame(true, OpCode::Binary, &big).into();
        q.push_shared(large.clone());
        want.extend_from_slice(&large);
        q.push_shared(shared.clone());
        want.extend_from_slice(&shared);
        (q, want)
    }

    #[test]
    fn small_frames_behind_a_partly_written_one_are_gathered() {
        let first: Arc<[u8]> = crate::ws::encode_frame(true, OpCode::Text, b"first frame").into();
        let second: Arc<[u8]> = crate::ws::encode_frame(true, OpCode::Text, b"second").into();
        let mut q = OutQueue::default();
        let mut pool = StoragePool::default();
        q.push_shared(first.clone());
        let mut w = Trickle {
            out: Vec::new(),
            cap: 5,
            calls: 0,
            block_every: 2,
        };
        assert!(!q.flush(&mut w, &mut pool).unwrap().0);
        assert_eq!(w.out.len(), 5);
        q.push_shared(second.clone());
        q.push_shared(first.clone());
        w.cap = usize::MAX;
        w.block_every = 0;
        let calls = w.calls;
        assert!(q.flush(&mut w, &mut pool).unwrap().0);
        assert_eq!(w.calls, calls + 1);
        assert_eq!(w.out, [&first[..], &second[..], &first[..]].concat());
    }

    #[test]
    fn several_frames_leave_in_one_call() {
        let (mut q, want) = expected();
        let mut pool = StoragePool::default();
        let mut w = Trickle {
            out: Vec::new(),
            cap: usize::MAX,
            calls: 0,
            block_every: 0,
        };
        assert_eq!(q.flush(&mut w, &mut pool).unwrap(), (true, want.len()));
        assert_eq!(w.calls, 1);
        assert_eq!(w.out, want);
        assert!(q.is_empty());
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let (mut q, want) = expected();
        let mut pool = StoragePool::default();
        let mut w = Trickle {
            out: Vec::new(),
            cap: 7,
            calls: 0,
            block_every: 3,
        };
        let mut rounds = 0;
        while !q.flush(&mut w, &mut pool).unwrap().0 {
            rounds += 1;
        }
        assert!(rounds > 1);
        assert_eq!(w.out, want);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn discarding_keeps_the_frame_in_flight_whole() {
        let (mut q, want) = expected();
        let mut pool = StoragePool::default();
        // Stop inside the large frame's payload: its header and the small frame are out.
        let mut w = Trickle {
            out: Vec::new(),
            cap: 7 + 4 + 100,
            calls: 0,
            block_every: 2,
        };
        assert!(!q.flush(&mut w, &mut pool).unwrap().0);
        q.discard_unsent();
        let mut w2 = Trickle {
            out: std::mem::take(&mut w.out),
            cap: usize::MAX,
            calls: 0,
            block_every: 0,
        };
        assert!(q.flush(&mut w2, &mut pool).unwrap().0);
        // Everything up to the end of the big frame, and not the shared frame after it.
        let big_end = 7 + 4 + 5000;
        assert_eq!(w2.out, want[..big_end]);
    }
}
