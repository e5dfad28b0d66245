//! The buffers a connection holds while it has a request in hand, pooled between
//! requests: read buffer, parsed head, request body (in memory or spooled to a file) and
//! queued output.
//!
//! Nothing here reads or writes a socket or knows the connection's phase; a pooled set of
//! buffers must never keep more memory than the caps below.

use std::fs::File;
use std::io::{self, Write};

use super::super::output::Output;
use super::Shared;
use crate::http1::Head;

/// Bodies larger than this are spooled to an anonymous temporary file.
const SPILL_THRESHOLD: usize = 1 << 20;
/// Read buffer a connection starts with (taken from the pool while it has work).
const READ_BUFFER: usize = 16 * 1024;
/// Idle buffers kept for reuse (a burst of connections must not pin its memory).
const POOL_MAX: usize = 64;
/// Larger body buffers are freed rather than pooled.
const POOLED_BODY_MAX: usize = 64 * 1024;

/// Buffers a connection needs only while it has a request in hand; pooled between.
pub(crate) struct Work<C> {
    /// Initialised bytes; `filled` of them hold data.
    pub(super) rbuf: Vec<u8>,
    pub(super) filled: usize,
    pub(super) head: Head,
    pub(super) body: Vec<u8>,
    pub(super) body_file: Option<File>,
    pub(super) out: Output<C>,
    /// What the access log needs of the request in hand (untouched when it is off).
    pub(super) logged: super::access_log::Pending,
}

impl<C: AsRef<[u8]>> Work<C> {
    pub(super) fn new() -> Self {
        Work {
            rbuf: vec![0; READ_BUFFER],
            filled: 0,
            head: Head::default(),
            body: Vec::new(),
            body_file: None,
            out: Output::new(),
            logged: Default::default(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.filled == 0 && self.out.is_empty()
    }

    /// Forgets the current request's head and body, keeping any pipelined bytes.
    pub(super) fn consume_request(&mut self) {
        let len = self.head.len.min(self.filled);
        self.rbuf.copy_within(len..self.filled, 0);
        self.filled -= len;
        self.body_file = None;
        if self.body.capacity() > SPILL_THRESHOLD {
            self.body = Vec::new();
        } else {
            self.body.clear();
        }
        self.out.body_bytes = 0;
    }
}

pub(super) fn recycle<C: AsRef<[u8]>>(mut work: Box<Work<C>>, sh: &mut Shared<C>) {
    if sh.pool.len() >= POOL_MAX {
        return;
    }
    work.filled = 0;
    work.head.checked = 0;
    work.body_file = None;
    work.out.clear();
    work.out.shrink();
    if work.rbuf.len() > READ_BUFFER {
        work.rbuf = vec![0; READ_BUFFER];
    }
    if work.body.capacity() > POOLED_BODY_MAX {
        work.body = Vec::new();
    }
    work.body.clear();
    if work.head.headers.capacity() > 128 {
        work.head.headers = Vec::new();
    }
    sh.pool.push(work);
}

pub(super) fn store_body(
    body: &mut Vec<u8>,
    body_file: &mut Option<File>,
    data: &[u8],
) -> io::Result<()> {
    if let Some(f) = body_file.as_mut() {
        return f.write_all(data);
    }
    if body.len() + data.len() > SPILL_THRESHOLD {
        let mut f = tempfile::tempfile()?;
        f.write_all(body)?;
        f.write_all(data)?;
        body.clear();
        *body_file = Some(f);
        return Ok(());
    }
    body.extend_from_slice(data);
    Ok(())
}
