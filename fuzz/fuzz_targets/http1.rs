//! Fuzz target for `evserve::http1`: arbitrary bytes, read as a pipelined request stream
//! (heads by `parse_head`, bodies by `BodyDecoder`), must never panic, every complete head
//! must lie inside the buffer, and reading the stream in random pieces must give exactly
//! what reading it whole gives.
//!
//! Run from the repository root (needs cargo-fuzz; never run in CI):
//!
//!     PYO3_PYTHON=/root/.pyenv/versions/3.11.7/bin/python3.11 RUSTC_BOOTSTRAP=1 \
//!         cargo fuzz run http1 -- -max_total_time=600
//!
//! The first 8 bytes of each input seed the read sizes; the rest is the stream.

#![no_main]

use evserve::http1::{parse_head, BodyDecoder, Head, Limits};
use libfuzzer_sys::fuzz_target;

/// Small limits, so that the fuzzer reaches them.
const LIMITS: Limits = Limits {
    max_request_line: 64,
    max_head: 512,
    max_headers: 8,
    max_body: 4096,
};

/// What a server would see of the stream.
#[derive(Debug, PartialEq)]
enum Event {
    Head(String),
    Body(Vec<u8>),
    /// Refused; which status may depend on how much had arrived (a long line is a 414
    /// before its bare LF shows up), so it is not compared.
    Refused,
}

/// Read sizes from a xorshift generator.
struct Reads(u64);

impl Reads {
    fn next(&mut self) -> usize {
        if self.0 == 0 {
            return usize::MAX;
        }
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 97) as usize + 1
    }
}

fn describe(head: &Head, buf: &[u8]) -> String {
    assert!(head.len <= buf.len(), "head longer than its buffer");
    for span in [head.method, head.target, head.path, head.query] {
        assert!(span.end as usize <= head.len, "span outside the head");
    }
    let mut text = format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {} {} {}",
        String::from_utf8_lossy(head.method.of(buf)),
        String::from_utf8_lossy(head.target.of(buf)),
        String::from_utf8_lossy(head.path.of(buf)),
        String::from_utf8_lossy(head.query.of(buf)),
        head.version,
        head.body,
        head.keep_alive,
        head.expect_continue,
        head.len,
    );
    for header in &head.headers {
        assert!(
            header.value.end as usize <= head.len,
            "header outside the head"
        );
        text.push_str(&format!(
            " {:?}={:?}",
            header.name.of(buf),
            header.value.of(buf)
        ));
    }
    text
}

fn serve(mut input: &[u8], mut reads: Reads) -> Vec<Event> {
    let mut events = Vec::new();
    let mut buf = Vec::new();
    let mut head = Head::default();
    let mut decoder: Option<BodyDecoder> = None;
    let mut body = Vec::new();
    loop {
        let mut progressed = false;
        if let Some(dec) = decoder.as_mut() {
            match dec.decode(&buf, &mut |data| body.extend_from_slice(data)) {
                Ok(progress) => {
                    assert!(progress.consumed <= buf.len());
                    assert_eq!(dec.body_len(), body.len() as u64);
                    buf.drain(..progress.consumed);
                    progressed = progress.consumed > 0;
                    if progress.done {
                        events.push(Event::Body(std::mem::take(&mut body)));
                        decoder = None;
                        progressed = true;
                    }
                }
                Err(_) => {
                    events.push(Event::Body(body));
                    events.push(Event::Refused);
                    return events;
                }
            }
        } else {
            match parse_head(&buf, &LIMITS, &mut head) {
                Ok(true) => {
                    events.push(Event::Head(describe(&head, &buf)));
                    decoder = Some(BodyDecoder::new(head.body, LIMITS.max_body));
                    buf.drain(..head.len);
                    progressed = true;
                }
                Ok(false) => {}
                Err(_) => {
                    events.push(Event::Refused);
                    return events;
                }
            }
        }
        if !progressed {
            if input.is_empty() {
                return events;
            }
            let n = reads.next().min(input.len());
            buf.extend_from_slice(&input[..n]);
            input = &input[n..];
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (seed, stream) = match data.split_first_chunk::<8>() {
        Some((seed, stream)) => (u64::from_le_bytes(*seed) | 1, stream),
        None => (1, data),
    };
    let whole = serve(stream, Reads(0));
    let pieces = serve(stream, Reads(seed));
    assert_eq!(whole, pieces, "reading in pieces changed the outcome");
});
