//! The bytes a connection still has to send: framing and head bytes the server wrote,
//! interleaved with the app's own body chunks, sent with one `writev` per call.
//!
//! Never copies an app chunk: chunks are queued by value and written from their own memory.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// At most this many pieces go into one `writev`.
const MAX_IOV: usize = 64;

enum Piece<C> {
    /// `bytes[start..end]` of the output's own buffer.
    Own { start: usize, end: usize },
    /// `chunk[start..end]`.
    Chunk { chunk: C, start: usize, end: usize },
}

pub struct Output<C> {
    bytes: Vec<u8>,
    pieces: VecDeque<Piece<C>>,
    /// Body bytes queued or written for the current response (for the access log).
    pub body_bytes: u64,
}

impl<C: AsRef<[u8]>> Output<C> {
    pub fn new() -> Self {
        Output {
            bytes: Vec::with_capacity(1024),
            pieces: VecDeque::with_capacity(8),
            body_bytes: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The buffer the next own bytes are appended to; call `commit_own` after writing to it.
    pub fn own_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Queues the own bytes appended since `from` (a length of `own_buffer()` taken before).
    pub fn commit_own(&mut self, from: usize) {
        let end = self.bytes.len();
        if end <= from {
            return;
        }
        if let Some(Piece::Own { end: last_end, .. }) = self.pieces.back_mut() {
            if *last_end == from {
                *last_end = end;
                return;
            }
        }
        self.pieces.push_back(Piece::Own { start: from, end });
    }

    pub fn push_bytes(&mut self, data: &[u8]) {
        let from = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.commit_own(from);
    }

    /// Queues `chunk[..len]` (len at most the chunk's length).
    pub fn push_chunk(&mut self, chunk: C, len: usize) {
        let len = len.min(chunk.as_ref().len());
        if len > 0 {
            self.pieces.push_back(Piece::Chunk {
                chunk,
                start: 0,
                end: len,
            });
        }
    }

    /// Drops everything queued (the connection is going away).
    pub fn clear(&mut self) {
        self.pieces.clear();
        self.bytes.clear();
        self.body_bytes = 0;
    }

    /// Writes as much as one `writev` takes. Returns the bytes written; `Ok(0)` only when
    /// nothing was queued.
    pub fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<usize> {
        if self.pieces.is_empty() {
            return Ok(0);
        }
        let written = {
            let mut slices: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for piece in self.pieces.iter().take(MAX_IOV) {
                slices[n] = IoSlice::new(match piece {
                    Piece::Own { start, end } => &self.bytes[*start..*end],
                    Piece::Chunk { chunk, start, end } => &chunk.as_ref()[*start..*end],
                });
                n += 1;
            }
            if n == 1 {
                w.write(&slices[0])?
            } else {
                w.write_vectored(&slices[..n])?
            }
        };
        self.advance(written);
        Ok(written)
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            let (start, end) = match front {
                Piece::Own { start, end } => (start, *end),
                Piece::Chunk { start, end, .. } => (start, *end),
            };
            let left = end - *start;
            if n < left {
                *start += n;
                return;
            }
            n -= left;
            self.pieces.pop_front();
        }
        if self.pieces.is_empty() {
            self.bytes.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `limit` bytes per call.
    struct Trickle {
        out: Vec<u8>,
        limit: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.limit);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_order_and_content() {
        let mut out: Output<Vec<u8>> = Output::new();
        out.push_bytes(b"HEAD\r\n");
        out.push_chunk(b"chunk-one".to_vec(), 5);
        out.push_bytes(b"|");
        out.push_chunk(b"two".to_vec(), 3);
        out.push_bytes(b"|end");
        let mut w = Trickle {
            out: Vec::new(),
            limit: 3,
        };
        for _ in 0..100 {
            if out.is_empty() {
                break;
            }
            out.write_to(&mut w).unwrap();
        }
        assert!(out.is_empty());
        assert_eq!(w.out, b"HEAD\r\nchunk|two|end");
    }

    #[test]
    fn adjacent_own_bytes_share_one_piece() {
        let mut out: Output<Vec<u8>> = Output::new();
        out.push_bytes(b"a");
        out.push_bytes(b"b");
        assert_eq!(out.pieces.len(), 1);
    }
}
