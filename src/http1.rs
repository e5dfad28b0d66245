//! HTTP/1.1 message rules (RFC 9112), as pure functions: bytes in, parsed heads and body
//! data out.
//!
//! This module must never do IO, touch Python, allocate per header, or panic on any input.
//! It decides framing (Content-Length vs chunked), decodes chunked bodies, enforces the
//! size limits as bytes arrive, and refuses every ambiguous request (no smuggling).

/// Size limits, each answered with its own status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request line, without CRLF: 414 beyond.
    pub max_request_line: usize,
    /// Whole head including the final CRLF CRLF: 431 beyond.
    pub max_head: usize,
    /// Header fields: 431 beyond.
    pub max_headers: usize,
    /// Body bytes (Content-Length, or de-chunked total): 413 beyond.
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8192,
            max_head: 65536,
            max_headers: 100,
            max_body: 1 << 30,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A byte range of the buffer the head was parsed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub name: Span,
    /// Without surrounding whitespace.
    pub value: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head. Reused across requests: `parse_head` overwrites every field.
#[derive(Clone, Debug)]
pub struct Head {
    pub method: Span,
    /// The request-target as sent.
    pub target: Span,
    /// Path part of the target (still percent-encoded). For absolute-form targets, the
    /// path after the authority ("/" if none). For `*`, the `*`.
    pub path: Span,
    /// After the first `?`, without it; empty when there is none.
    pub query: Span,
    pub version: Version,
    /// Every header field in order, as sent (names not lower-cased).
    pub headers: Vec<Header>,
    pub body: BodyKind,
    /// Whether the connection may stay open after this request, from the version and the
    /// `Connection` header's tokens (`close`, `keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// Bytes of the head, including any leading empty lines and the final empty line.
    pub len: usize,
}

impl Default for Head {
    fn default() -> Self {
        Head {
            method: Span::default(),
            target: Span::default(),
            path: Span::default(),
            query: Span::default(),
            version: Version::Http11,
            headers: Vec::new(),
            body: BodyKind::None,
            keep_alive: false,
            expect_continue: false,
            len: 0,
        }
    }
}

/// A request that must be refused: the status to answer with, then the connection closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    /// 400, 413, 414, 431, 501 or 505.
    pub status: u16,
    /// Short text for the log and the response body.
    pub reason: &'static str,
}

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(true)` with `head` filled when the head is complete, `Ok(false)` when more
/// bytes are needed (and the limits still allow them), or the error to answer with.
/// Limits are enforced on partial input too: a request line longer than
/// `max_request_line` without its CRLF yet is already a 414.
pub fn parse_head(buf: &[u8], limits: &Limits, head: &mut Head) -> Result<bool, Error> {
    let _ = (buf, limits, head);
    todo!()
}

/// How much of the input a body decoder used, and whether the body is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub consumed: usize,
    pub done: bool,
}

/// Decodes a request body of a known kind, incrementally, enforcing `max_body`.
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    _private: (),
}

impl BodyDecoder {
    pub fn new(kind: BodyKind, max_body: u64) -> BodyDecoder {
        let _ = (kind, max_body);
        todo!()
    }

    /// Consumes body bytes from `input`, handing each run of body data to `sink` (chunk
    /// framing, extensions and trailers removed). Stops at the end of the body: bytes after
    /// it (a pipelined request) are not consumed.
    pub fn decode(&mut self, input: &[u8], sink: &mut dyn FnMut(&[u8])) -> Result<Progress, Error> {
        let _ = (input, sink);
        todo!()
    }

    /// Body bytes handed to the sink so far.
    pub fn body_len(&self) -> u64 {
        todo!()
    }
}

/// Checks a WSGI status line such as `200 OK`: three digits, a space, a reason phrase
/// without control characters. Returns the code.
pub fn parse_status(status: &[u8]) -> Option<u16> {
    let _ = status;
    todo!()
}

/// A header field name is a token (RFC 9110 5.1).
pub fn valid_header_name(name: &[u8]) -> bool {
    let _ = name;
    todo!()
}

/// A header field value has no CR, LF, NUL or other control byte (HTAB allowed).
pub fn valid_header_value(value: &[u8]) -> bool {
    let _ = value;
    todo!()
}

/// 1xx, 204 and 304 responses never carry a body.
pub fn status_allows_body(status: u16) -> bool {
    !(100..200).contains(&status) && status != 204 && status != 304
}

/// Appends the chunk-size line for a chunk of `len` bytes: hex digits and CRLF.
pub fn write_chunk_size(len: usize, out: &mut Vec<u8>) {
    let _ = (len, out);
    todo!()
}

/// The last chunk, with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Percent-decodes a path into `out` (cleared first). `%` not followed by two hex digits
/// is kept as is.
pub fn percent_decode(path: &[u8], out: &mut Vec<u8>) {
    let _ = (path, out);
    todo!()
}
