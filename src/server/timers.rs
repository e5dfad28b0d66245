//! Connection deadlines: a min-heap of (when, slot, serial) with lazy deletion.
//!
//! A connection's current deadline lives in the connection; the heap only says when to
//! look. An entry whose connection has gone, or whose deadline moved later, is dropped or
//! pushed again when it comes up. Never scans all connections.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl Timers {
    pub fn push(&mut self, when: Instant, slot: usize, serial: u64) {
        self.heap.push(Reverse((when, slot, serial)));
    }

    /// The earliest time anything may be due.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((when, _, _))| *when)
    }

    /// Takes one entry due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize, u64)> {
        match self.heap.peek() {
            Some(Reverse((when, _, _))) if *when <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}
