//! HTTP/1.1 message rules (RFC 9112), as pure functions: bytes in, parsed heads and body
//! data out.
//!
//! This module must never do IO, touch Python, allocate per header, or panic on any input.
//! It decides framing (Content-Length vs chunked), decodes chunked bodies, enforces the
//! size limits as bytes arrive, and refuses every ambiguous request (no smuggling).
//!
//! Choices where the RFCs leave room, all on the strict side:
//! - A `#` fragment in the request-target is refused with 400 (clients never send one).
//! - The asterisk-form `*` is accepted for `OPTIONS` only. `CONNECT` is answered 501: the
//!   server is no tunnel, and nothing after a CONNECT head is read as a request.
//! - The request-target is visible ASCII only (RFC 9112 3.2): any other byte is a 400.
//! - `HTTP/1.2` to `HTTP/1.9` are served as HTTP/1.1 (RFC 9110 2.5); other majors are 505.
//! - Content-Length is one plain decimal: a list (any comma) is 400, and so are repeated
//!   Content-Length fields unless they are byte for byte the same.
//! - Singleton fields whose repetition a proxy could read differently (`SINGLETONS`:
//!   Host, Content-Type, Authorization, ...) are 400 when repeated.
//! - A Transfer-Encoding that ends in `chunked` after other codings (`gzip, chunked`) is
//!   501: the server does not decode them. Empty list elements in Transfer-Encoding are
//!   refused with 400.
//! - At most 8 empty lines before the request line are skipped; more is a 400.
//! - Header fields are capped at [`MAX_HEADERS_CAP`] whatever `Limits::max_headers` says
//!   (httparse gets a stack array of that size), and `max_head` at `u32::MAX`.
//! - A chunk size has at most 16 hex digits; the chunk extensions of one size line at
//!   most 4 KiB (400 beyond); the trailer section at most 16 KiB (431 beyond).
//!   Whitespace (BWS) inside chunk extensions is accepted only where RFC 9112 allows it.

use std::mem::MaybeUninit;

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
    /// The authority of an absolute-form target (`host[:port]`), which stands for the
    /// Host field (RFC 9112 3.2.2); empty for the other forms.
    pub authority: Span,
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
    /// While the head is incomplete: how much of it was already checked (see
    /// `check_partial_head`). Zero once a head is complete.
    pub checked: usize,
}

impl Default for Head {
    fn default() -> Self {
        Head {
            method: Span::default(),
            target: Span::default(),
            path: Span::default(),
            query: Span::default(),
            authority: Span::default(),
            version: Version::Http11,
            headers: Vec::new(),
            body: BodyKind::None,
            keep_alive: false,
            expect_continue: false,
            len: 0,
            checked: 0,
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

impl Error {
    const fn new(status: u16, reason: &'static str) -> Error {
        Error { status, reason }
    }

    const fn bad(reason: &'static str) -> Error {
        Error::new(400, reason)
    }
}

/// Most header fields a head may carry, whatever `Limits::max_headers` says.
pub const MAX_HEADERS_CAP: usize = 256;
/// Empty lines skipped before a request line (RFC 9112 2.2 asks for at least one).
const MAX_LEADING_EMPTY_LINES: usize = 8;
/// Hex digits of a chunk size: enough for any u64.
const MAX_CHUNK_SIZE_DIGITS: u8 = 16;
/// Bytes of chunk extensions on one chunk-size line.
const MAX_CHUNK_EXT_LEN: u32 = 4096;
/// Bytes of the trailer section, final CRLF included.
const MAX_TRAILER_LEN: u32 = 16384;

const REQUEST_LINE_TOO_LONG: Error = Error::new(414, "request line too long");
const HEAD_TOO_LARGE: Error = Error::new(431, "request head too large");
const TOO_MANY_HEADERS: Error = Error::new(431, "too many header fields");
const VERSION_NOT_SUPPORTED: Error = Error::new(505, "HTTP version not supported");
const BODY_TOO_LARGE: Error = Error::new(413, "request body too large");
const CODING_NOT_IMPLEMENTED: Error = Error::new(501, "transfer coding not implemented");
const TRAILERS_TOO_LARGE: Error = Error::new(431, "chunked trailer section too large");
/// Fields that must appear at most once, each with its refusal: a proxy in front could act
/// on the first while the app would see the last (or a joined value). Content-Length has
/// its own rule (identical repeats are one value). Host comes first: its bit says a Host
/// was seen.
const SINGLETONS: [(&[u8], Error); 8] = [
    (b"host", DUPLICATE_HOST),
    (
        b"content-type",
        Error::bad("more than one Content-Type header"),
    ),
    (
        b"authorization",
        Error::bad("more than one Authorization header"),
    ),
    (
        b"proxy-authorization",
        Error::bad("more than one Proxy-Authorization header"),
    ),
    (b"range", Error::bad("more than one Range header")),
    (b"if-range", Error::bad("more than one If-Range header")),
    (
        b"if-modified-since",
        Error::bad("more than one If-Modified-Since header"),
    ),
    (
        b"if-unmodified-since",
        Error::bad("more than one If-Unmodified-Since header"),
    ),
];
const HOST_BIT: u16 = 1;
const BARE_CR: Error = Error::bad("bare CR in head");
const BARE_LF: Error = Error::bad("bare LF in head");
const TOO_MANY_EMPTY_LINES: Error = Error::bad("too many empty lines before request line");
const MALFORMED_REQUEST_LINE: Error = Error::bad("malformed request line");
const MALFORMED_VERSION: Error = Error::bad("malformed HTTP version");
const LINE_FOLDING: Error = Error::bad("header line starts with whitespace");
const BAD_HEADER_NAME: Error = Error::bad("invalid header field name");
const BAD_HEADER_VALUE: Error = Error::bad("invalid header field value");
const MALFORMED_HEAD: Error = Error::bad("malformed request head");
const MISSING_HOST: Error = Error::bad("HTTP/1.1 request without Host");
const DUPLICATE_HOST: Error = Error::bad("more than one Host header");
const BAD_CONTENT_LENGTH: Error = Error::bad("invalid Content-Length");
const CONTENT_LENGTH_LIST: Error = Error::bad("Content-Length is a list");
const CONNECT_NOT_IMPLEMENTED: Error = Error::new(501, "CONNECT is not supported");
const NON_ASCII_TARGET: Error = Error::bad("request-target has a byte outside visible ASCII");
const CONFLICTING_CONTENT_LENGTH: Error = Error::bad("conflicting Content-Length values");
const LENGTH_AND_CHUNKED: Error = Error::bad("both Content-Length and Transfer-Encoding");
const TE_ON_HTTP10: Error = Error::bad("Transfer-Encoding on an HTTP/1.0 request");
const BAD_TRANSFER_ENCODING: Error = Error::bad("invalid Transfer-Encoding");
const NOT_CHUNKED_LAST: Error = Error::bad("Transfer-Encoding does not end in chunked");
const BAD_TARGET: Error = Error::bad("invalid request-target");
const BAD_HOST: Error = Error::bad("invalid Host header");
const BAD_TARGET_AUTHORITY: Error = Error::bad("invalid authority in request-target");
const UNSUPPORTED_SCHEME: Error = Error::bad("request-target scheme is not http or https");
const FRAGMENT_IN_TARGET: Error = Error::bad("fragment in request-target");
const BAD_CHUNK_SIZE: Error = Error::bad("invalid chunk size");
const BAD_CHUNK_EXT: Error = Error::bad("invalid chunk extension");
const CHUNK_EXT_TOO_LONG: Error = Error::bad("chunk extensions too long");
const BAD_CHUNK_END: Error = Error::bad("chunk data not followed by CRLF");
const BAD_CHUNK_LINE_END: Error = Error::bad("chunk-size line not ended by CRLF");
const BAD_TRAILER: Error = Error::bad("invalid trailer field");

/// `table[b]`: whether byte `b` lies in one of the inclusive `ranges` or is one of
/// `also`, built at compile time.
const fn byte_table(ranges: &[(u8, u8)], also: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < ranges.len() {
        let (first, last) = ranges[i];
        let mut b = first as usize;
        while b <= last as usize {
            table[b] = true;
            b += 1;
        }
        i += 1;
    }
    let mut i = 0;
    while i < also.len() {
        table[also[i] as usize] = true;
        i += 1;
    }
    table
}

/// Bytes of a token (RFC 9110 5.6.2): ALPHA, DIGIT and a few marks.
static TCHAR: [bool; 256] = byte_table(
    &[(b'0', b'9'), (b'A', b'Z'), (b'a', b'z')],
    b"!#$%&'*+-.^_`|~",
);

/// Bytes of a field value (RFC 9110 5.5): HTAB, SP, VCHAR, obs-text.
static FIELD_VALUE: [bool; 256] = byte_table(&[(b' ', b'~'), (0x80, 0xff)], b"\t");

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// A byte allowed in a field value.
fn is_field_value_byte(b: u8) -> bool {
    FIELD_VALUE[b as usize]
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ows(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// The elements of a comma-separated field value, with surrounding whitespace removed.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    list_elements(value).any(|e| e.eq_ignore_ascii_case(token))
}

/// The span of `part`, a sub-slice of `buf`. Offsets fit in u32 because the head they come
/// from is at most `max_head` bytes, itself capped at `u32::MAX`.
fn span_in(buf: &[u8], part: &[u8]) -> Span {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    Span {
        start: start as u32,
        end: (start + part.len()) as u32,
    }
}

fn sub_span(span: Span, from: usize, to: usize) -> Span {
    Span {
        start: span.start + from as u32,
        end: span.start + to as u32,
    }
}

/// Where the head ends, found by a scan that checks line endings, line folding and the
/// limits on whatever part of the head has arrived.
struct HeadExtent {
    /// The final empty line has arrived.
    complete: bool,
    /// End of the head (after its final CRLF) when complete, else of the last complete
    /// line; counted from the start of the buffer.
    end: usize,
    /// End of the request line, without its CRLF; `None` while its CRLF has not arrived.
    request_line_end: Option<usize>,
    /// Complete header lines.
    fields: usize,
}

fn scan_head(
    buf: &[u8],
    start: usize,
    limits: &Limits,
    max_head: usize,
    max_headers: usize,
) -> Result<HeadExtent, Error> {
    let mut line_start = start;
    let mut request_line_end = None;
    let mut fields = 0;
    let partial = |line_start: usize, request_line_end: Option<usize>, fields: usize| {
        Ok(HeadExtent {
            complete: false,
            end: line_start,
            request_line_end,
            fields,
        })
    };
    loop {
        let line = buf.get(line_start..).unwrap_or(&[]);
        let is_request_line = line_start == start;
        if !is_request_line && line.first().is_some_and(|&b| is_ows(b)) {
            return Err(LINE_FOLDING);
        }
        let Some(cr) = memchr::memchr2(b'\r', b'\n', line) else {
            if is_request_line && line.len() > limits.max_request_line {
                return Err(REQUEST_LINE_TOO_LONG);
            }
            if buf.len() > max_head {
                return Err(HEAD_TOO_LARGE);
            }
            return partial(line_start, request_line_end, fields);
        };
        if line.get(cr) == Some(&b'\n') {
            return Err(BARE_LF);
        }
        if is_request_line && cr > limits.max_request_line {
            return Err(REQUEST_LINE_TOO_LONG);
        }
        match line.get(cr + 1) {
            None => {
                if buf.len() > max_head {
                    return Err(HEAD_TOO_LARGE);
                }
                return partial(line_start, request_line_end, fields);
            }
            Some(b'\n') => {}
            Some(_) => return Err(BARE_CR),
        }
        let line_end = line_start + cr + 2;
        if line_end > max_head {
            return Err(HEAD_TOO_LARGE);
        }
        if is_request_line {
            request_line_end = Some(line_start + cr);
        } else if cr == 0 {
            return Ok(HeadExtent {
                complete: true,
                end: line_end,
                request_line_end,
                fields,
            });
        } else {
            fields += 1;
            if fields > max_headers {
                return Err(TOO_MANY_HEADERS);
            }
        }
        line_start = line_end;
    }
}

/// Why httparse refused a complete head, as the status to answer with.
fn refusal(err: httparse::Error, request_line: &[u8]) -> Error {
    match err {
        httparse::Error::Version => {
            let version = request_line
                .rsplit(|&b| b == b' ')
                .next()
                .unwrap_or_default();
            match version {
                // Well-formed (and so not 1.0 or 1.1, which httparse takes), in a request
                // line of exactly three parts.
                [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                    if major.is_ascii_digit()
                        && minor.is_ascii_digit()
                        && request_line.iter().filter(|&&b| b == b' ').count() == 2 =>
                {
                    VERSION_NOT_SUPPORTED
                }
                _ => MALFORMED_VERSION,
            }
        }
        httparse::Error::HeaderName => BAD_HEADER_NAME,
        httparse::Error::HeaderValue => BAD_HEADER_VALUE,
        httparse::Error::Token => MALFORMED_REQUEST_LINE,
        httparse::Error::TooManyHeaders => TOO_MANY_HEADERS,
        _ => MALFORMED_HEAD,
    }
}

/// What the framing and connection headers said.
#[derive(Default)]
struct FieldFacts<'a> {
    /// Bit `i` set: `SINGLETONS[i]` was seen.
    singletons_seen: u16,
    host: Option<&'a [u8]>,
    content_length: Option<u64>,
    /// The first Content-Length value as sent: a repeat must be the same bytes.
    content_length_value: Option<&'a [u8]>,
    transfer_encoding: bool,
    /// The last transfer coding seen so far is `chunked`.
    chunked_last: bool,
    /// A coding other than `chunked` appeared.
    other_coding: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

/// The index of `name` in [`SINGLETONS`].
fn singleton(name: &[u8]) -> Option<usize> {
    SINGLETONS
        .iter()
        .position(|(s, _)| s.len() == name.len() && s.eq_ignore_ascii_case(name))
}

impl<'a> FieldFacts<'a> {
    fn add(&mut self, name: &[u8], value: &'a [u8]) -> Result<(), Error> {
        if let Some(i) = singleton(name) {
            let bit = 1 << i;
            if self.singletons_seen & bit != 0 {
                return Err(SINGLETONS[i].1);
            }
            self.singletons_seen |= bit;
            if bit == HOST_BIT {
                self.host = Some(value);
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if value.contains(&b',') {
                return Err(CONTENT_LENGTH_LIST);
            }
            if let Some(seen) = self.content_length_value {
                return if seen == value {
                    Ok(())
                } else {
                    Err(CONFLICTING_CONTENT_LENGTH)
                };
            }
            self.content_length = Some(parse_decimal(value).ok_or(BAD_CONTENT_LENGTH)?);
            self.content_length_value = Some(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
            for coding in list_elements(value) {
                if coding.is_empty() || !coding.iter().all(|&b| is_tchar(b)) {
                    return Err(BAD_TRANSFER_ENCODING);
                }
                if self.chunked_last {
                    return Err(NOT_CHUNKED_LAST);
                }
                self.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
                self.other_coding |= !self.chunked_last;
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            self.close |= has_token(value, b"close");
            self.keep_alive |= has_token(value, b"keep-alive");
        } else if name.eq_ignore_ascii_case(b"expect") {
            self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        }
        Ok(())
    }

    fn body(&self, version: Version, max_body: u64) -> Result<BodyKind, Error> {
        if self.transfer_encoding {
            if version == Version::Http10 {
                return Err(TE_ON_HTTP10);
            }
            if self.content_length.is_some() {
                return Err(LENGTH_AND_CHUNKED);
            }
            if !self.chunked_last {
                return Err(NOT_CHUNKED_LAST);
            }
            if self.other_coding {
                return Err(CODING_NOT_IMPLEMENTED);
            }
            return Ok(BodyKind::Chunked);
        }
        match self.content_length {
            Some(length) if length > max_body => Err(BODY_TOO_LARGE),
            Some(length) => Ok(BodyKind::Length(length)),
            None => Ok(BodyKind::None),
        }
    }
}

/// `1*DIGIT` as a u64; `None` when empty, not all digits, or too large.
pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Splits the request-target into path, query and (absolute-form only) authority,
/// according to its form.
fn split_target(buf: &[u8], method: &[u8], target: Span) -> Result<(Span, Span, Span), Error> {
    let bytes = target.of(buf);
    if bytes.is_empty() {
        return Err(BAD_TARGET);
    }
    for &b in bytes {
        match b {
            b'#' => return Err(FRAGMENT_IN_TARGET),
            0x21..=0x7e => {}
            _ => return Err(NON_ASCII_TARGET),
        }
    }
    if method == b"CONNECT" {
        return Err(CONNECT_NOT_IMPLEMENTED);
    }
    if bytes == b"*" {
        return if method == b"OPTIONS" {
            Ok((target, Span::default(), Span::default()))
        } else {
            Err(BAD_TARGET)
        };
    }
    let (path_start, authority) = if bytes.first() == Some(&b'/') {
        (0, Span::default())
    } else {
        let authority_start = absolute_form_authority(bytes).ok_or(BAD_TARGET)?;
        let scheme = bytes.get(..authority_start - 3).unwrap_or_default();
        if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
            return Err(UNSUPPORTED_SCHEME);
        }
        let authority_len = bytes
            .get(authority_start..)
            .unwrap_or_default()
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(bytes.len() - authority_start);
        let path_start = authority_start + authority_len;
        let authority = sub_span(target, authority_start, path_start);
        if !valid_target_authority(authority.of(buf)) {
            return Err(BAD_TARGET_AUTHORITY);
        }
        if bytes.get(path_start) != Some(&b'/') {
            // No path: "/" it is, borrowed from the "//" before the authority.
            let query = match bytes.get(path_start) {
                Some(b'?') => sub_span(target, path_start + 1, bytes.len()),
                _ => Span::default(),
            };
            let slash = authority_start - 1;
            return Ok((sub_span(target, slash, slash + 1), query, authority));
        }
        (path_start, authority)
    };
    let (path, query) = match bytes.iter().skip(path_start).position(|&b| b == b'?') {
        Some(q) => (
            sub_span(target, path_start, path_start + q),
            sub_span(target, path_start + q + 1, bytes.len()),
        ),
        None => (sub_span(target, path_start, bytes.len()), Span::default()),
    };
    Ok((path, query, authority))
}

/// Bytes of a reg-name (RFC 3986 3.2.2) besides `%`: unreserved and sub-delims.
static REG_NAME: [bool; 256] = byte_table(
    &[(b'0', b'9'), (b'A', b'Z'), (b'a', b'z')],
    b"-._~!$&'()*+,;=",
);

/// Whether a Host field value is `uri-host [ ":" port ]` (RFC 9112 3.2, RFC 3986 3.2.2
/// and 3.2.3): an IP-literal in brackets, or a reg-name (which covers IPv4) of unreserved,
/// sub-delims and percent-encoded bytes; the port digits only, possibly none. An empty
/// value is valid (a target without authority).
pub fn valid_host(value: &[u8]) -> bool {
    let (host, port) = match value {
        [b'[', rest @ ..] => {
            let Some(close) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let literal = rest.get(..close).unwrap_or_default();
            let after = rest.get(close + 1..).unwrap_or_default();
            if !valid_ip_literal(literal) {
                return false;
            }
            return match after {
                [] => true,
                [b':', port @ ..] => port.iter().all(u8::is_ascii_digit),
                _ => false,
            };
        }
        _ => match value.iter().position(|&b| b == b':') {
            Some(colon) => (
                value.get(..colon).unwrap_or_default(),
                value.get(colon + 1..).unwrap_or_default(),
            ),
            None => (value, &b""[..]),
        },
    };
    port.iter().all(u8::is_ascii_digit) && valid_reg_name(host)
}

/// The authority of an absolute-form target: a valid host part that is not empty, and no
/// userinfo (RFC 9110 4.2.1, 4.2.4).
fn valid_target_authority(authority: &[u8]) -> bool {
    !authority.is_empty() && !authority.starts_with(b":") && valid_host(authority)
}

fn valid_reg_name(name: &[u8]) -> bool {
    // The common case, a name without %-escapes, in one pass over a table.
    if name.iter().all(|&b| REG_NAME[b as usize]) {
        return true;
    }
    let mut rest = name;
    while let [b, tail @ ..] = rest {
        rest = match (b, tail) {
            (b'%', [h, l, after @ ..]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => after,
            (b, _) if REG_NAME[*b as usize] => tail,
            _ => return false,
        };
    }
    true
}

/// `IPv6address / IPvFuture`, the inside of an IP-literal (RFC 3986 3.2.2).
fn valid_ip_literal(literal: &[u8]) -> bool {
    match literal {
        [b'v' | b'V', rest @ ..] => {
            let dot = rest.iter().position(|&b| b == b'.').unwrap_or(0);
            let (version, tail) = rest.split_at(dot);
            let tail = tail.get(1..).unwrap_or_default();
            !version.is_empty()
                && version.iter().all(u8::is_ascii_hexdigit)
                && !tail.is_empty()
                && tail
                    .iter()
                    .all(|&b| b == b':' || (b != b'%' && REG_NAME[b as usize]))
        }
        _ => std::str::from_utf8(literal).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok()),
    }
}

/// For an absolute-form target (`scheme://authority...`), where the authority starts.
fn absolute_form_authority(target: &[u8]) -> Option<usize> {
    let colon = target.iter().position(|&b| b == b':')?;
    let scheme = target.get(..colon)?;
    let valid_scheme = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
    (valid_scheme && target.get(colon..colon + 3) == Some(b"://")).then_some(colon + 3)
}

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(true)` with `head` filled when the head is complete, `Ok(false)` when more
/// bytes are needed (and the limits still allow them), or the error to answer with.
/// Limits are enforced on partial input too: a request line longer than
/// `max_request_line` without its CRLF yet is already a 414.
pub fn parse_head(buf: &[u8], limits: &Limits, head: &mut Head) -> Result<bool, Error> {
    let max_head = limits.max_head.min(u32::MAX as usize);
    let max_headers = limits.max_headers.min(MAX_HEADERS_CAP);

    let mut start = 0;
    loop {
        match (buf.get(start), buf.get(start + 1)) {
            (None, _) | (Some(b'\r'), None) => return Ok(false),
            (Some(b'\r'), Some(b'\n')) => start += 2,
            (Some(b'\r'), Some(_)) => return Err(BARE_CR),
            (Some(b'\n'), _) => return Err(BARE_LF),
            (Some(_), _) => break,
        }
        if start / 2 > MAX_LEADING_EMPTY_LINES {
            return Err(TOO_MANY_EMPTY_LINES);
        }
        if start > max_head {
            return Err(HEAD_TOO_LARGE);
        }
    }
    let extent = scan_head(buf, start, limits, max_head, max_headers)?;
    if !extent.complete {
        head.checked = check_partial_head(buf, start, &extent, head.checked)?;
        return Ok(false);
    }
    head.checked = 0;
    let head_bytes = buf.get(start..extent.end).unwrap_or_default();
    let request_line = buf
        .get(start..extent.request_line_end.unwrap_or(start))
        .unwrap_or_default();
    let mut rewritten = Vec::new();
    let parsed = served_as_http11(head_bytes, request_line, &mut rewritten);
    let span_of = |part: &[u8]| {
        let span = span_in(parsed, part);
        Span {
            start: span.start + start as u32,
            end: span.end + start as u32,
        }
    };

    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS_CAP];
    let request = match httparse_request(parsed, &mut slots, extent.fields) {
        Ok((httparse::Status::Complete(n), request)) if n == parsed.len() => request,
        Ok(_) => return Err(MALFORMED_HEAD),
        Err(err) => return Err(refusal(err, request_line)),
    };
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(MALFORMED_HEAD);
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };

    let mut facts = FieldFacts::default();
    head.headers.clear();
    head.headers.reserve(request.headers.len());
    for field in request.headers.iter() {
        let name = field.name.as_bytes();
        let value = trim_ows(field.value);
        if !valid_header_name(name) {
            return Err(BAD_HEADER_NAME);
        }
        if !valid_header_value(value) {
            return Err(BAD_HEADER_VALUE);
        }
        facts.add(name, value)?;
        head.headers.push(Header {
            name: span_of(name),
            value: span_of(value),
        });
    }
    if facts.singletons_seen & HOST_BIT == 0 && version == Version::Http11 {
        return Err(MISSING_HOST);
    }
    if facts.host.is_some_and(|host| !valid_host(host)) {
        return Err(BAD_HOST);
    }
    let body = facts.body(version, limits.max_body)?;
    let method = span_of(method.as_bytes());
    let target = span_of(target.as_bytes());
    let (path, query, authority) = split_target(buf, method.of(buf), target)?;

    head.method = method;
    head.target = target;
    head.path = path;
    head.query = query;
    head.authority = authority;
    head.version = version;
    head.body = body;
    head.keep_alive = match version {
        Version::Http11 => !facts.close,
        Version::Http10 => facts.keep_alive && !facts.close,
    };
    head.expect_continue = version == Version::Http11 && facts.expect_continue;
    head.len = extent.end;
    Ok(true)
}

/// The head bytes httparse is given: httparse takes only 1.0 and 1.1, so a higher 1.x
/// minor is parsed from a copy (in `rewritten`) that says 1.1. Spans are then counted from
/// the copy, which stands where `head_bytes` does.
fn served_as_http11<'a>(
    head_bytes: &'a [u8],
    request_line: &[u8],
    rewritten: &'a mut Vec<u8>,
) -> &'a [u8] {
    match higher_minor_digit(request_line) {
        Some(at) => {
            rewritten.extend_from_slice(head_bytes);
            if let Some(digit) = rewritten.get_mut(at) {
                *digit = b'1';
            }
            rewritten
        }
        None => head_bytes,
    }
}

/// Checks the part of an incomplete head that has arrived, so that a malformed request
/// line or header line is refused at once rather than when the head would end (RFC 9112
/// 3). `checked` is how far an earlier call got; the new mark is returned. Each complete
/// line is checked once it ends (with the lines before it); until the request line ends,
/// only its method token is checked, each byte once.
fn check_partial_head(
    buf: &[u8],
    start: usize,
    extent: &HeadExtent,
    checked: usize,
) -> Result<usize, Error> {
    let checked = checked.max(start);
    let Some(request_line_end) = extent.request_line_end else {
        let unchecked = buf.get(checked..).unwrap_or_default();
        let method_part = unchecked
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(unchecked.len());
        let method = unchecked.get(..method_part).unwrap_or_default();
        if !method.iter().all(|&b| is_tchar(b)) {
            return Err(MALFORMED_REQUEST_LINE);
        }
        return Ok(checked + method_part);
    };
    if extent.end <= checked {
        return Ok(checked);
    }
    let lines = buf.get(start..extent.end).unwrap_or_default();
    let request_line = buf.get(start..request_line_end).unwrap_or_default();
    let mut rewritten = Vec::new();
    let parsed = served_as_http11(lines, request_line, &mut rewritten);
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS_CAP];
    match httparse_request(parsed, &mut slots, extent.fields) {
        Ok(_) => Ok(extent.end),
        Err(err) => Err(refusal(err, request_line)),
    }
}

/// httparse's reading of `parsed`, with room for `fields` header fields in `slots`.
fn httparse_request<'h, 'b>(
    parsed: &'b [u8],
    slots: &'h mut [MaybeUninit<httparse::Header<'b>>],
    fields: usize,
) -> Result<(httparse::Status<usize>, httparse::Request<'h, 'b>), httparse::Error> {
    let slots = slots.get_mut(..fields).unwrap_or_default();
    let mut request = httparse::Request::new(&mut []);
    let status = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        parsed,
        slots,
    )?;
    Ok((status, request))
}

/// Where the minor digit of `HTTP/1.2` to `HTTP/1.9` ends the request line, if it does.
fn higher_minor_digit(request_line: &[u8]) -> Option<usize> {
    match request_line {
        [.., b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9'] => {
            Some(request_line.len() - 1)
        }
        _ => None,
    }
}

/// How much of the input a body decoder used, and whether the body is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub consumed: usize,
    pub done: bool,
}

/// Where a body decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyState {
    /// Content-Length body: `remaining` bytes left.
    Length,
    /// Reading the hex digits of a chunk size into `remaining`.
    ChunkSize,
    ChunkExtension(ChunkExt),
    /// CR of the chunk-size line seen, LF expected.
    ChunkSizeLf,
    /// Chunk data: `remaining` bytes left.
    ChunkData,
    ChunkDataCr,
    ChunkDataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerLineStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
    Failed(Error),
}

/// Position inside the chunk extensions of a chunk-size line (RFC 9112 7.1.1):
/// `*( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] )`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkExt {
    /// After the size or an extension: `;` or CR next (CR only if no whitespace came).
    BeforeSemicolon {
        after_space: bool,
    },
    NameStart,
    Name,
    AfterName,
    ValueStart,
    TokenValue,
    QuotedValue,
    QuotedEscape,
}

/// Decodes a request body of a known kind, incrementally, enforcing `max_body`.
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    state: BodyState,
    max_body: u64,
    body_len: u64,
    /// Bytes left of a Content-Length body or of the current chunk; the chunk size while
    /// its digits are read.
    remaining: u64,
    size_digits: u8,
    /// Bytes of the current chunk extensions, or of the trailer section.
    framing_len: u32,
}

impl BodyDecoder {
    pub fn new(kind: BodyKind, max_body: u64) -> BodyDecoder {
        let (state, remaining) = match kind {
            BodyKind::None | BodyKind::Length(0) => (BodyState::Done, 0),
            BodyKind::Length(n) if n > max_body => (BodyState::Failed(BODY_TOO_LARGE), 0),
            BodyKind::Length(n) => (BodyState::Length, n),
            BodyKind::Chunked => (BodyState::ChunkSize, 0),
        };
        BodyDecoder {
            state,
            max_body,
            body_len: 0,
            remaining,
            size_digits: 0,
            framing_len: 0,
        }
    }

    /// Consumes body bytes from `input`, handing each run of body data to `sink` (chunk
    /// framing, extensions and trailers removed). Stops at the end of the body: bytes after
    /// it (a pipelined request) are not consumed.
    pub fn decode(&mut self, input: &[u8], sink: &mut dyn FnMut(&[u8])) -> Result<Progress, Error> {
        let mut consumed = 0;
        match self.run(input, &mut consumed, sink) {
            Ok(()) => Ok(Progress {
                consumed,
                done: self.state == BodyState::Done,
            }),
            Err(err) => {
                self.state = BodyState::Failed(err);
                Err(err)
            }
        }
    }

    /// Body bytes handed to the sink so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    fn run(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), Error> {
        loop {
            match self.state {
                BodyState::Done => return Ok(()),
                BodyState::Failed(err) => return Err(err),
                BodyState::Length | BodyState::ChunkData => {
                    if self.remaining == 0 {
                        self.state = match self.state {
                            BodyState::Length => BodyState::Done,
                            _ => BodyState::ChunkDataCr,
                        };
                        continue;
                    }
                    let available = input.get(*pos..).unwrap_or_default();
                    if available.is_empty() {
                        return Ok(());
                    }
                    let n = usize::try_from(self.remaining)
                        .unwrap_or(usize::MAX)
                        .min(available.len());
                    let data = available.get(..n).unwrap_or_default();
                    sink(data);
                    *pos += n;
                    self.remaining -= n as u64;
                    self.body_len += n as u64;
                }
                state => {
                    let Some(&byte) = input.get(*pos) else {
                        return Ok(());
                    };
                    *pos += 1;
                    self.state = self.step(state, byte)?;
                }
            }
        }
    }

    /// The state after one framing byte.
    fn step(&mut self, state: BodyState, byte: u8) -> Result<BodyState, Error> {
        use BodyState::*;
        Ok(match state {
            ChunkSize => match hex_value(byte) {
                Some(digit) => {
                    self.push_size_digit(digit)?;
                    ChunkSize
                }
                None if self.size_digits == 0 => return Err(BAD_CHUNK_SIZE),
                None => {
                    self.framing_len = 0;
                    chunk_ext(self::ChunkExt::BeforeSemicolon { after_space: false }, byte)?
                }
            },
            ChunkExtension(ext) => {
                self.framing_len += 1;
                if self.framing_len > MAX_CHUNK_EXT_LEN {
                    return Err(CHUNK_EXT_TOO_LONG);
                }
                chunk_ext(ext, byte)?
            }
            ChunkSizeLf if byte == b'\n' => {
                self.size_digits = 0;
                self.framing_len = 0;
                if self.remaining == 0 {
                    TrailerLineStart
                } else {
                    ChunkData
                }
            }
            ChunkSizeLf => return Err(BAD_CHUNK_LINE_END),
            ChunkDataCr if byte == b'\r' => ChunkDataLf,
            ChunkDataLf if byte == b'\n' => ChunkSize,
            ChunkDataCr | ChunkDataLf => return Err(BAD_CHUNK_END),
            TrailerLineStart | TrailerName | TrailerValue | TrailerLf | FinalLf => {
                self.framing_len += 1;
                if self.framing_len > MAX_TRAILER_LEN {
                    return Err(TRAILERS_TOO_LARGE);
                }
                match (state, byte) {
                    (TrailerLineStart, b'\r') => FinalLf,
                    (TrailerLineStart | TrailerName, b) if is_tchar(b) => TrailerName,
                    (TrailerName, b':') => TrailerValue,
                    (TrailerValue, b'\r') => TrailerLf,
                    (TrailerValue, b) if is_field_value_byte(b) => TrailerValue,
                    (TrailerLf, b'\n') => TrailerLineStart,
                    (FinalLf, b'\n') => Done,
                    _ => return Err(BAD_TRAILER),
                }
            }
            Length | ChunkData | Done | Failed(_) => state,
        })
    }

    fn push_size_digit(&mut self, digit: u8) -> Result<(), Error> {
        if self.size_digits == MAX_CHUNK_SIZE_DIGITS {
            return Err(BAD_CHUNK_SIZE);
        }
        self.size_digits += 1;
        self.remaining = (self.remaining << 4) | u64::from(digit);
        if self.body_len.saturating_add(self.remaining) > self.max_body {
            return Err(BODY_TOO_LARGE);
        }
        Ok(())
    }
}

/// The state after one byte of chunk extensions.
fn chunk_ext(ext: ChunkExt, byte: u8) -> Result<BodyState, Error> {
    use ChunkExt::*;
    let next = match (ext, byte) {
        (BeforeSemicolon { after_space: false } | Name | TokenValue, b'\r') => {
            return Ok(BodyState::ChunkSizeLf)
        }
        (BeforeSemicolon { .. } | Name | AfterName | TokenValue, b';') => NameStart,
        (BeforeSemicolon { .. } | TokenValue, b' ' | b'\t') => {
            BeforeSemicolon { after_space: true }
        }
        (NameStart, b' ' | b'\t') => NameStart,
        (NameStart | Name, b) if is_tchar(b) => Name,
        (Name | AfterName, b' ' | b'\t') => AfterName,
        (Name | AfterName, b'=') => ValueStart,
        (ValueStart, b' ' | b'\t') => ValueStart,
        (ValueStart, b'"') => QuotedValue,
        (ValueStart | TokenValue, b) if is_tchar(b) => TokenValue,
        (QuotedValue, b'"') => BeforeSemicolon { after_space: false },
        (QuotedValue, b'\\') => QuotedEscape,
        (QuotedValue | QuotedEscape, b) if is_field_value_byte(b) => QuotedValue,
        _ => return Err(BAD_CHUNK_EXT),
    };
    Ok(BodyState::ChunkExtension(next))
}

/// Appends one chunk (size line, data, CRLF) holding `data`; nothing when it is empty, as
/// an empty chunk would end the body (see [`LAST_CHUNK`]).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    write_chunk_size(data.len(), out);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Checks a WSGI status line such as `200 OK`: a code from 100 to 599 (RFC 9110 15), a
/// space, a reason phrase without control characters. Returns the code.
pub fn parse_status(status: &[u8]) -> Option<u16> {
    let [hundreds @ b'1'..=b'5', tens, units, b' ', reason @ ..] = status else {
        return None;
    };
    if !tens.is_ascii_digit() || !units.is_ascii_digit() {
        return None;
    }
    if !reason.iter().all(|&b| is_field_value_byte(b)) {
        return None;
    }
    Some(u16::from(hundreds - b'0') * 100 + u16::from(tens - b'0') * 10 + u16::from(units - b'0'))
}

/// A header field name is a token (RFC 9110 5.1).
pub fn valid_header_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| is_tchar(b))
}

/// A header field value has no CR, LF, NUL or other control byte (HTAB allowed).
pub fn valid_header_value(value: &[u8]) -> bool {
    value.iter().all(|&b| is_field_value_byte(b))
}

/// 1xx, 204 and 304 responses never carry a body.
pub fn status_allows_body(status: u16) -> bool {
    !(100..200).contains(&status) && status != 204 && status != 304
}

/// A response with this status may carry Content-Length: not a 1xx or 204 (RFC 9110 8.6).
/// Transfer-Encoding goes only where [`status_allows_body`] says a body may.
pub fn may_send_content_length(status: u16) -> bool {
    status >= 200 && status != 204
}

/// Appends the chunk-size line for a chunk of `len` bytes: hex digits and CRLF.
pub fn write_chunk_size(len: usize, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 2 * std::mem::size_of::<usize>()];
    let mut first = digits.len();
    let mut rest = len;
    for slot in digits.iter_mut().rev() {
        *slot = HEX[rest & 0xf];
        first -= 1;
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(first..).unwrap_or_default());
    out.extend_from_slice(b"\r\n");
}

/// The last chunk, with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Percent-decodes a path into `out` (cleared first). `%` not followed by two hex digits
/// is kept as is.
pub fn percent_decode(path: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(percent_encoding::percent_decode(path));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn field_value_bytes_are_htab_sp_vchar_and_obs_text() {
        for b in 0..=255u8 {
            let expected = b == b'\t' || b == b' ' || b.is_ascii_graphic() || b >= 0x80;
            assert_eq!(is_field_value_byte(b), expected, "byte {b:#04x}");
        }
    }

    #[test]
    fn token_characters_are_exactly_those_of_rfc_9110() {
        let specials = b"!#$%&'*+-.^_`|~";
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || specials.contains(&b);
            assert_eq!(is_tchar(b), expected, "byte {b:#04x}");
        }
    }

    /// Parses a complete head with default limits.
    fn parse(req: &[u8]) -> Result<Head, Error> {
        parse_with(req, &Limits::default())
    }

    fn parse_with(req: &[u8], limits: &Limits) -> Result<Head, Error> {
        let mut head = Head::default();
        match parse_head(req, limits, &mut head) {
            Ok(true) => Ok(head),
            Ok(false) => panic!("incomplete: {:?}", String::from_utf8_lossy(req)),
            Err(err) => Err(err),
        }
    }

    /// `parse_head`'s answer, with errors as their status.
    fn outcome(req: &[u8], limits: &Limits) -> Result<bool, u16> {
        parse_head(req, limits, &mut Head::default()).map_err(|e| e.status)
    }

    fn status(req: &[u8]) -> u16 {
        match parse(req) {
            Ok(_) => 0,
            Err(err) => err.status,
        }
    }

    fn header<'a>(req: &'a [u8], head: &Head, name: &str) -> Option<&'a [u8]> {
        head.headers
            .iter()
            .find(|h| h.name.of(req).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value.of(req))
    }

    /// Decodes all of `input` in one call.
    fn decode_all(
        kind: BodyKind,
        max_body: u64,
        input: &[u8],
    ) -> (Result<Progress, Error>, Vec<u8>) {
        let mut decoder = BodyDecoder::new(kind, max_body);
        let mut body = Vec::new();
        let result = decoder.decode(input, &mut |data| body.extend_from_slice(data));
        (result, body)
    }

    fn chunked_status(input: &[u8]) -> u16 {
        match decode_all(BodyKind::Chunked, 1 << 30, input).0 {
            Ok(p) if p.done => 0,
            Ok(_) => 1,
            Err(err) => err.status,
        }
    }

    /// The outcome of a chunked body whose first chunk has the size line `size`.
    fn with_chunk_size(size: &[u8]) -> u16 {
        let mut input = size.to_vec();
        input.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        chunked_status(&input)
    }

    /// Asserts that `check` gives `expected` for every input.
    fn assert_all(check: fn(&[u8]) -> u16, expected: u16, inputs: &[&[u8]]) {
        for input in inputs {
            let got = check(input);
            assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(input));
        }
    }

    const SIMPLE: &[u8] =
        b"GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\nX-Y:  spaced value \t\r\n\r\n";

    #[test]
    fn incomplete_input_needs_more_bytes() {
        for end in 0..SIMPLE.len() {
            let mut head = Head::default();
            assert_eq!(
                parse_head(&SIMPLE[..end], &Limits::default(), &mut head),
                Ok(false),
                "prefix of {end} bytes"
            );
        }
    }

    /// `parse_head`'s answer to each prefix of `req` in turn, one `Head` throughout, as a
    /// connection reading it byte by byte would get them; the first refusal ends it.
    fn drip(req: &[u8]) -> Result<bool, u16> {
        let mut head = Head::default();
        for end in 1..=req.len() {
            match parse_head(&req[..end], &Limits::default(), &mut head) {
                Ok(false) => {}
                other => return other.map_err(|e| e.status),
            }
        }
        Ok(false)
    }

    #[test]
    fn a_malformed_head_is_refused_before_its_final_empty_line() {
        for (req, expected) in [
            (&b"G@T / HTTP/1.1\r\n"[..], 400),
            (b"G@T", 400),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
            (b"GET / HTTP/7.0\r\n", 505),
            (b"GET / HTTQ/1.1\r\n", 400),
            (b"GET / HTTP/1.1\r\nBad Header: x\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n", 400),
            (b"\r\nGET / HTTP/1.2\r\nHost: a\r\n(: x\r\n", 400),
        ] {
            assert_eq!(
                drip(req),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(req)
            );
            let mut head = Head::default();
            assert_eq!(
                parse_head(req, &Limits::default(), &mut head).map_err(|e| e.status),
                Err(expected),
                "in one read: {:?}",
                String::from_utf8_lossy(req)
            );
        }
    }

    #[test]
    fn a_valid_head_dripped_byte_by_byte_is_never_refused_early() {
        for req in [
            SIMPLE,
            b"\r\nPOST /p HTTP/1.2\r\nHost: a\r\nContent-Length: 1\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
        ] {
            assert_eq!(drip(req), Ok(true), "{:?}", String::from_utf8_lossy(req));
        }
    }

    #[test]
    fn an_incomplete_head_is_rechecked_only_when_a_line_ends() {
        let mut head = Head::default();
        let req = b"GET /abc HTTP/1.1\r\nHost: a\r\nX-Long: vvvv";
        let limits = Limits::default();
        assert_eq!(parse_head(&req[..6], &limits, &mut head), Ok(false));
        assert_eq!(head.checked, 3, "the method, up to its space");
        assert_eq!(parse_head(&req[..19], &limits, &mut head), Ok(false));
        assert_eq!(head.checked, 19, "the request line once it ended");
        assert_eq!(parse_head(&req[..30], &limits, &mut head), Ok(false));
        assert_eq!(head.checked, 28, "up to the end of the Host line");
        assert_eq!(parse_head(req, &limits, &mut head), Ok(false));
        assert_eq!(head.checked, 28, "no new line ended");
    }

    #[test]
    fn complete_head_sets_every_field() {
        let mut req = SIMPLE.to_vec();
        req.extend_from_slice(b"next request");
        let head = parse(&req).unwrap();
        assert_eq!(head.method.of(&req), b"GET");
        assert_eq!(head.target.of(&req), b"/a/b?x=1&y");
        assert_eq!(head.path.of(&req), b"/a/b");
        assert_eq!(head.query.of(&req), b"x=1&y");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.headers.len(), 2);
        assert_eq!(header(&req, &head, "host"), Some(&b"example.com"[..]));
        assert_eq!(header(&req, &head, "x-y"), Some(&b"spaced value"[..]));
        assert_eq!(head.headers[1].name.of(&req), b"X-Y");
        assert_eq!(head.body, BodyKind::None);
        assert!(head.keep_alive);
        assert!(!head.expect_continue);
        assert_eq!(head.len, SIMPLE.len());
    }

    #[test]
    fn head_is_reused_without_stale_fields() {
        let mut head = Head::default();
        let first =
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
        assert_eq!(parse_head(first, &Limits::default(), &mut head), Ok(true));
        assert_eq!(parse_head(SIMPLE, &Limits::default(), &mut head), Ok(true));
        assert_eq!(head.body, BodyKind::None);
        assert!(!head.expect_continue);
        assert_eq!(head.headers.len(), 2);
        assert!(head.query.of(SIMPLE) == b"x=1&y");
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted() {
        let req = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let head = parse(req).unwrap();
        assert_eq!(head.len, req.len());
        assert_eq!(head.method.of(req), b"GET");
        let mut head = Head::default();
        assert_eq!(
            parse_head(b"\r\n\r", &Limits::default(), &mut head),
            Ok(false)
        );
        assert_eq!(status(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn too_many_leading_empty_lines_are_400() {
        let mut req = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES);
        req.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(parse(&req).is_ok());
        let mut req = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES + 1);
        assert_eq!(outcome(&req, &Limits::default()), Err(400));
        req.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(status(&req), 400);
    }

    #[test]
    fn request_line_over_limit_is_414_even_without_crlf() {
        let limits = Limits {
            max_request_line: 20,
            ..Limits::default()
        };
        let line = b"GET /0123456789abcd HTTP/1.1"; // 28 bytes
        assert_eq!(outcome(&line[..20], &limits), Ok(false));
        assert_eq!(outcome(&line[..21], &limits), Err(414));
        let fits = b"GET /0123 HTTP/1.1\r\nHost: a\r\n\r\n"; // 18-byte request line
        assert_eq!(outcome(fits, &limits), Ok(true));
        let mut at_limit = b"GET /01234 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(); // 19
        assert_eq!(outcome(&at_limit, &limits), Ok(true));
        at_limit.insert(5, b'x');
        at_limit.insert(5, b'x'); // 21
        assert_eq!(outcome(&at_limit, &limits), Err(414));
    }

    #[test]
    fn head_over_limit_is_431_before_its_end() {
        let limits = Limits {
            max_head: 64,
            ..Limits::default()
        };
        let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        req.resize(64, b'v');
        assert_eq!(outcome(&req, &limits), Ok(false));
        req.push(b'v');
        assert_eq!(outcome(&req, &limits), Err(431));
        let mut exact = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        exact.resize(60, b'v');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(outcome(&exact, &limits), Ok(true));
        exact.insert(30, b'v');
        assert_eq!(outcome(&exact, &limits), Err(431));
    }

    #[test]
    fn too_many_header_fields_is_431() {
        let limits = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        let three = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(parse_with(three, &limits).unwrap().headers.len(), 3);
        let four_partial = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n";
        assert_eq!(outcome(four_partial, &limits), Err(431));
        // The cap on the stack array bounds even a generous limit.
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for _ in 0..MAX_HEADERS_CAP {
            many.extend_from_slice(b"A: 1\r\n");
        }
        many.extend_from_slice(b"\r\n");
        let generous = Limits {
            max_headers: 10_000,
            ..Limits::default()
        };
        assert_eq!(outcome(&many, &generous), Err(431));
    }

    #[test]
    fn only_http10_and_http11_are_served_others_505() {
        assert_eq!(
            parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().version,
            Version::Http10
        );
        for version in ["HTTP/2.0", "HTTP/0.9", "HTTP/3.0", "HTTP/9.1"] {
            let req = format!("GET / {version}\r\nHost: a\r\n\r\n");
            assert_eq!(status(req.as_bytes()), 505, "{version}");
        }
    }

    #[test]
    fn a_higher_http_1_minor_version_is_served_as_http_1_1() {
        for minor in 2..=9 {
            let req =
                format!("\r\nPOST /p?q HTTP/1.{minor}\r\nHost: a\r\nContent-Length: 1\r\n\r\nx");
            let buf = req.as_bytes();
            let head = parse(buf).unwrap();
            assert_eq!(head.version, Version::Http11);
            assert_eq!(head.method.of(buf), b"POST");
            assert_eq!(head.target.of(buf), b"/p?q");
            assert_eq!(head.path.of(buf), b"/p");
            assert_eq!(header(buf, &head, "host"), Some(&b"a"[..]));
            assert_eq!(head.body, BodyKind::Length(1));
            assert_eq!(head.len, buf.len() - 1);
        }
        // Still one digit each, and the other rules still hold.
        for line in ["GET / HTTP/1.10", "GET / HTTP/1.2 x", "GET  / HTTP/1.2"] {
            let req = format!("{line}\r\nHost: a\r\n\r\n");
            assert_eq!(status(req.as_bytes()), 400, "{line}");
        }
        assert_eq!(status(b"GET / HTTP/1.2\r\n\r\n"), 400);
    }

    #[test]
    fn malformed_version_is_400() {
        for version in [
            "HTTP/1",
            "HTTP/1.1.1",
            "http/1.1",
            "HTTP/11",
            "HTTP/1.x",
            "HTTP/1.1 ",
            "FOO",
        ] {
            let req = format!("GET / {version}\r\nHost: a\r\n\r\n");
            assert_eq!(status(req.as_bytes()), 400, "{version:?}");
        }
    }

    #[test]
    fn malformed_request_lines_are_400() {
        let lines: &[&[u8]] = &[
            b"GET\r\n",
            b"GET HTTP/1.1\r\n",
            b"GET  / HTTP/1.1\r\n",
            b"GET /  HTTP/1.1\r\n",
            b"GET /  HTTP/2.0\r\n",
            b" GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1 extra\r\n",
            b"G(T / HTTP/1.1\r\n",
            b"GE\"T / HTTP/1.1\r\n",
            b"GET\t/ HTTP/1.1\r\n",
            b"GET /a b HTTP/1.1\r\n",
            b"GET /\x7f HTTP/1.1\r\n",
            b"GET /\x00 HTTP/1.1\r\n",
            b"/ HTTP/1.1\r\n",
        ];
        for line in lines {
            let mut req = line.to_vec();
            req.extend_from_slice(b"Host: a\r\n\r\n");
            assert_eq!(status(&req), 400, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn bare_lf_or_cr_in_head_is_400() {
        let reqs: &[&[u8]] = &[
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
            b"GET / HTTP/1.1\rHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n",
        ];
        for req in reqs {
            assert_eq!(status(req), 400, "{:?}", String::from_utf8_lossy(req));
        }
        // Refused as soon as it is seen, without waiting for the end of the head.
        let mut head = Head::default();
        assert!(parse_head(b"GET / HTTP/1.1\nHo", &Limits::default(), &mut head).is_err());
    }

    #[test]
    fn whitespace_between_header_name_and_colon_is_400() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX\t: b\r\n\r\n"), 400);
    }

    #[test]
    fn first_header_line_starting_with_whitespace_is_400() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\n\tHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn obs_fold_continuation_lines_are_400() {
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n"),
            400
        );
    }

    #[test]
    fn control_bytes_in_header_values_are_400_but_htab_is_allowed() {
        for bad in [0u8, 1, 0x0b, 0x0c, 0x1f, 0x7f] {
            let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nX: a".to_vec();
            req.push(bad);
            req.extend_from_slice(b"b\r\n\r\n");
            assert_eq!(status(&req), 400, "byte {bad:#x}");
        }
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\xc3\xa9\r\n\r\n";
        let head = parse(req).unwrap();
        assert_eq!(header(req, &head, "x"), Some(&b"a\tb\xc3\xa9"[..]));
    }

    #[test]
    fn empty_or_invalid_header_names_are_400() {
        for name in [
            &b""[..],
            b"X Y",
            b"X\"Y",
            b"X(Y",
            b"X/Y",
            b"\xc3\xa9",
            b"X\x00",
        ] {
            let mut req = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
            req.extend_from_slice(name);
            req.extend_from_slice(b": v\r\n\r\n");
            assert_eq!(status(&req), 400, "{:?}", String::from_utf8_lossy(name));
        }
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), 400);
    }

    #[test]
    fn http11_without_host_is_400() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nX: a\r\n\r\n").err(),
            Some(MISSING_HOST)
        );
        assert!(parse(b"GET / HTTP/1.0\r\nX: a\r\n\r\n").is_ok());
        assert!(parse(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").is_ok());
    }

    #[test]
    fn two_host_headers_are_400_in_any_version() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n").err(),
            Some(DUPLICATE_HOST)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n").err(),
            Some(DUPLICATE_HOST)
        );
    }

    fn with_headers(version: &str, fields: &str) -> Result<Head, Error> {
        let req = format!("POST / {version}\r\nHost: a\r\n{fields}\r\n");
        parse(req.as_bytes())
    }

    #[test]
    fn content_length_with_transfer_encoding_is_400() {
        let both = "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n";
        assert_eq!(
            with_headers("HTTP/1.1", both).err(),
            Some(LENGTH_AND_CHUNKED)
        );
        let reversed = "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n";
        assert_eq!(
            with_headers("HTTP/1.1", reversed).err(),
            Some(LENGTH_AND_CHUNKED)
        );
    }

    #[test]
    fn content_length_must_be_digits_only() {
        for value in ["+5", "-5", "5 5", "0x5", "5a", "", " ", "5.0", "١"] {
            let fields = format!("Content-Length: {value}\r\n");
            assert_eq!(
                with_headers("HTTP/1.1", &fields).unwrap_err().status,
                400,
                "{value:?}"
            );
        }
        let head = with_headers("HTTP/1.1", "Content-Length: 0005\r\n").unwrap();
        assert_eq!(head.body, BodyKind::Length(5));
        let head = with_headers("HTTP/1.1", "Content-Length:\t7 \r\n").unwrap();
        assert_eq!(head.body, BodyKind::Length(7));
    }

    #[test]
    fn identical_content_lengths_are_one_value() {
        let head = with_headers("HTTP/1.1", "Content-Length: 5\r\nContent-Length: 5\r\n").unwrap();
        assert_eq!(head.body, BodyKind::Length(5));
    }

    #[test]
    fn a_content_length_list_is_400() {
        for value in ["5, 5", "5,5", "5,", ",5", "5, 6"] {
            let fields = format!("Content-Length: {value}\r\n");
            assert_eq!(
                with_headers("HTTP/1.1", &fields).err(),
                Some(CONTENT_LENGTH_LIST),
                "{value:?}"
            );
        }
    }

    #[test]
    fn repeated_content_lengths_that_differ_in_bytes_are_400() {
        for fields in [
            "Content-Length: 5\r\nContent-Length: 05\r\n",
            "Content-Length: 05\r\nContent-Length: 5\r\n",
            "Content-Length: 5\r\nContent-Length: x\r\n",
        ] {
            assert_eq!(
                with_headers("HTTP/1.1", fields).err(),
                Some(CONFLICTING_CONTENT_LENGTH),
                "{fields:?}"
            );
        }
    }

    #[test]
    fn a_repeated_singleton_field_is_400() {
        for (name, error) in SINGLETONS.iter().skip(1) {
            let name = String::from_utf8_lossy(name).to_ascii_uppercase();
            let fields = format!("{name}: a\r\nX: b\r\n{name}: a\r\n");
            assert_eq!(with_headers("HTTP/1.1", &fields).err(), Some(*error));
            let once = format!("{name}: a\r\n");
            assert!(with_headers("HTTP/1.1", &once).is_ok(), "{name}");
        }
        assert!(with_headers("HTTP/1.1", "Accept: a\r\nAccept: b\r\n").is_ok());
    }

    #[test]
    fn differing_content_lengths_are_400() {
        for fields in [
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: 5, 6\r\n",
            "Content-Length: 5,\r\n",
            "Content-Length: 5,,5\r\n",
        ] {
            assert_eq!(
                with_headers("HTTP/1.1", fields).unwrap_err().status,
                400,
                "{fields:?}"
            );
        }
    }

    #[test]
    fn content_length_overflowing_u64_is_400() {
        let limits = Limits {
            max_body: u64::MAX,
            ..Limits::default()
        };
        let max = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            u64::MAX
        );
        assert_eq!(
            parse_with(max.as_bytes(), &limits).unwrap().body,
            BodyKind::Length(u64::MAX)
        );
        let over = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n";
        assert_eq!(
            parse_with(over.as_bytes(), &limits).err(),
            Some(BAD_CONTENT_LENGTH)
        );
    }

    #[test]
    fn transfer_encoding_on_http10_is_400() {
        assert_eq!(
            with_headers("HTTP/1.0", "Transfer-Encoding: chunked\r\n").err(),
            Some(TE_ON_HTTP10)
        );
    }

    #[test]
    fn transfer_encoding_must_end_in_exactly_chunked() {
        for value in ["chunked", "Chunked", "CHUNKED", "\tchunked", "chunked "] {
            let fields = format!("Transfer-Encoding:{value}\r\n");
            assert_eq!(
                with_headers("HTTP/1.1", &fields).unwrap().body,
                BodyKind::Chunked,
                "{value:?}"
            );
        }
        for value in [
            "xchunked",
            "chunked, identity",
            "identity",
            "chunked;x",
            "chunked; q=1",
            "chunk ed",
            "\"chunked\"",
            "chunked,",
            ",chunked",
            "chunked, chunked",
            "",
            "chunked\x0b",
            "chunkeD\x00",
        ] {
            let fields = format!("Transfer-Encoding: {value}\r\n");
            assert_eq!(
                with_headers("HTTP/1.1", &fields).unwrap_err().status,
                400,
                "{value:?}"
            );
        }
    }

    #[test]
    fn codings_before_chunked_are_501() {
        let head = with_headers("HTTP/1.1", "Transfer-Encoding: gzip, chunked\r\n");
        assert_eq!(head.err(), Some(CODING_NOT_IMPLEMENTED));
        let split = "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n";
        assert_eq!(
            with_headers("HTTP/1.1", split).err(),
            Some(CODING_NOT_IMPLEMENTED)
        );
    }

    #[test]
    fn content_length_over_max_body_is_413() {
        let limits = Limits {
            max_body: 10,
            ..Limits::default()
        };
        let ok = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n";
        assert_eq!(parse_with(ok, &limits).unwrap().body, BodyKind::Length(10));
        let big = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
        assert_eq!(parse_with(big, &limits).err(), Some(BODY_TOO_LARGE));
    }

    #[test]
    fn no_content_length_or_transfer_encoding_means_no_body() {
        assert_eq!(with_headers("HTTP/1.1", "").unwrap().body, BodyKind::None);
        assert_eq!(with_headers("HTTP/1.0", "").unwrap().body, BodyKind::None);
    }

    #[test]
    fn keep_alive_follows_version_and_connection_tokens() {
        let cases = [
            ("HTTP/1.1", "", true),
            ("HTTP/1.1", "Connection: close\r\n", false),
            ("HTTP/1.1", "Connection: Upgrade, CLOSE\r\n", false),
            ("HTTP/1.1", "Connection: closed\r\n", true),
            ("HTTP/1.1", "Connection: keep-alive\r\n", true),
            ("HTTP/1.0", "", false),
            ("HTTP/1.0", "Connection: keep-alive\r\n", true),
            ("HTTP/1.0", "Connection: foo,Keep-Alive\r\n", true),
            ("HTTP/1.0", "Connection: keep-alive, close\r\n", false),
            ("HTTP/1.0", "Connection: keep-alive-ish\r\n", false),
        ];
        for (version, fields, keep_alive) in cases {
            assert_eq!(
                with_headers(version, fields).unwrap().keep_alive,
                keep_alive,
                "{version} {fields:?}"
            );
        }
    }

    #[test]
    fn expect_100_continue_only_on_http11() {
        assert!(
            with_headers("HTTP/1.1", "Expect: 100-continue\r\n")
                .unwrap()
                .expect_continue
        );
        assert!(
            with_headers("HTTP/1.1", "Expect: 100-Continue\r\n")
                .unwrap()
                .expect_continue
        );
        assert!(
            !with_headers("HTTP/1.1", "Expect: 200-ok\r\n")
                .unwrap()
                .expect_continue
        );
        assert!(
            !with_headers("HTTP/1.0", "Expect: 100-continue\r\n")
                .unwrap()
                .expect_continue
        );
    }

    fn path_and_query(line: &str) -> Result<(String, String), u16> {
        let req = format!("{line}\r\nHost: a\r\n\r\n");
        let buf = req.as_bytes();
        let head = parse(buf).map_err(|e| e.status)?;
        let text = |s: Span| String::from_utf8_lossy(s.of(buf)).into_owned();
        Ok((text(head.path), text(head.query)))
    }

    #[test]
    fn target_forms_give_path_and_query() {
        let pq = |p: &str, q: &str| Ok((p.to_string(), q.to_string()));
        assert_eq!(path_and_query("GET /p?q HTTP/1.1"), pq("/p", "q"));
        assert_eq!(path_and_query("GET /p HTTP/1.1"), pq("/p", ""));
        assert_eq!(path_and_query("GET /p?a?b HTTP/1.1"), pq("/p", "a?b"));
        assert_eq!(path_and_query("GET /? HTTP/1.1"), pq("/", ""));
        assert_eq!(
            path_and_query("GET http://h:8080/p?q HTTP/1.1"),
            pq("/p", "q")
        );
        assert_eq!(path_and_query("GET http://h:8080 HTTP/1.1"), pq("/", ""));
        assert_eq!(path_and_query("GET https://h?q=1 HTTP/1.1"), pq("/", "q=1"));
        assert_eq!(path_and_query("OPTIONS * HTTP/1.1"), pq("*", ""));
    }

    fn host_status(value: &[u8]) -> u16 {
        let mut req = b"GET / HTTP/1.1\r\nHost: ".to_vec();
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n\r\n");
        status(&req)
    }

    #[test]
    fn an_invalid_host_value_is_400() {
        assert_all(
            host_status,
            400,
            &[
                b"a b",
                b"u:p@a",
                b"a/b",
                b"a, b",
                b"a:b",
                b"caf\xe9",
                b"a:80:90",
                b"a%2",
                b"a%zz",
                b"[::1",
                b"[::1]x",
                b"[::1]:8x",
                b"[nothex]",
                b"[v1]",
                b"[1.2.3.4]",
                b"a?b",
                b"a#b",
            ],
        );
        assert_all(
            host_status,
            0,
            &[
                b"",
                b"a",
                b"example.com:8080",
                b"a:",
                b"127.0.0.1:80",
                b"[::1]",
                b"[::1]:8000",
                b"[2001:db8::ffff:1.2.3.4]",
                b"[v1.fe:80]",
                b"caf%C3%A9.example",
                b"a-b_c~d!$&'()*+,;=",
            ],
        );
    }

    #[test]
    fn an_absolute_form_target_gives_its_authority_and_needs_http_or_https() {
        let req = b"GET http://other:99/x HTTP/1.1\r\nHost: a:1\r\n\r\n";
        let head = parse(req).unwrap();
        assert_eq!(head.authority.of(req), b"other:99");
        assert_eq!(head.path.of(req), b"/x");
        let req = b"GET HTTPS://h?q HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(parse(req).unwrap().authority.of(req), b"h");
        let req = b"GET http://[::1]:8080/p HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(parse(req).unwrap().authority.of(req), b"[::1]:8080");
        let req = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(parse(req).unwrap().authority.is_empty());
        for line in [
            "GET ftp://a/f HTTP/1.1",
            "GET ws://a/ HTTP/1.1",
            "GET http://u:p@a/ HTTP/1.1",
            "GET http://a b/ HTTP/1.1",
            "GET http://:80/ HTTP/1.1",
            "GET http://a:b/ HTTP/1.1",
        ] {
            assert_eq!(path_and_query(line), Err(400), "{line}");
        }
    }

    #[test]
    fn connect_is_501() {
        for line in ["CONNECT h:443 HTTP/1.1", "CONNECT h:80 HTTP/1.0"] {
            let req = format!("{line}\r\nHost: h\r\n\r\n");
            assert_eq!(parse(req.as_bytes()).err(), Some(CONNECT_NOT_IMPLEMENTED));
        }
    }

    #[test]
    fn a_target_byte_outside_visible_ascii_is_400() {
        for target in [&b"/caf\xc3\xa9"[..], b"/\x80", b"/?q=\xff", b"/a\x7f"] {
            let mut req = b"GET ".to_vec();
            req.extend_from_slice(target);
            req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
            let got = parse_head(&req, &Limits::default(), &mut Head::default());
            assert_eq!(got.unwrap_err().status, 400, "{target:?}");
        }
        assert!(parse(b"GET /%C3%A9~!$&'()*+,;=:@ HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
    }

    #[test]
    fn invalid_target_forms_are_400() {
        for line in [
            "GET * HTTP/1.1",
            "GET h:443 HTTP/1.1",
            "GET p HTTP/1.1",
            "GET http:///p HTTP/1.1",
            "GET 1http://h/ HTTP/1.1",
            "GET http:/h/ HTTP/1.1",
        ] {
            assert_eq!(path_and_query(line), Err(400), "{line}");
        }
    }

    #[test]
    fn fragment_in_target_is_400() {
        assert_eq!(path_and_query("GET /p#frag HTTP/1.1"), Err(400));
        assert_eq!(path_and_query("GET /p?q#frag HTTP/1.1"), Err(400));
    }

    #[test]
    fn empty_target_is_400() {
        assert_eq!(status(b"GET  HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        let buf = b"GET /x HTTP/1.1";
        let target = Span { start: 4, end: 4 };
        assert_eq!(split_target(buf, b"GET", target), Err(BAD_TARGET));
    }

    #[test]
    fn request_smuggling_attempts_are_refused() {
        let attacks: &[(&str, &[u8])] = &[
            ("CL.TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"),
            ("TE.CL", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            ("TE space colon", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"),
            ("TE xchunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"),
            ("TE duplicate", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ("TE then identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"),
            ("TE obs-fold", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"),
            ("TE vertical tab", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n"),
            ("TE leading space line", b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n"),
            ("TE bare LF", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\n\r\n"),
            ("CL plus sign", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"),
            ("CL list disagreeing", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n"),
            ("CL duplicate disagreeing", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            ("CL space colon", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n"),
            ("double Host", b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            ("HTTP/1.0 TE", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ];
        for (name, req) in attacks {
            assert_eq!(status(req), 400, "{name}");
        }
        let tab = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n";
        assert_eq!(parse(tab).unwrap().body, BodyKind::Chunked);
        assert_all(with_chunk_size, 400, &[b"0x5", b"-5", b"+5", b" 5", b"5 "]);
        assert_eq!(with_chunk_size(b"ffffffffffffffffff"), 413);
    }

    #[test]
    fn length_body_passes_exactly_n_bytes_and_leaves_the_rest() {
        let (result, body) = decode_all(BodyKind::Length(5), 100, b"helloGET / HTTP/1.1");
        assert_eq!(
            result,
            Ok(Progress {
                consumed: 5,
                done: true
            })
        );
        assert_eq!(body, b"hello");
        let mut decoder = BodyDecoder::new(BodyKind::Length(5), 100);
        let mut body = Vec::new();
        let mut sink = |d: &[u8]| body.extend_from_slice(d);
        assert_eq!(
            decoder.decode(b"he", &mut sink),
            Ok(Progress {
                consumed: 2,
                done: false
            })
        );
        assert_eq!(
            decoder.decode(b"", &mut sink),
            Ok(Progress {
                consumed: 0,
                done: false
            })
        );
        assert_eq!(
            decoder.decode(b"llo!", &mut sink),
            Ok(Progress {
                consumed: 3,
                done: true
            })
        );
        assert_eq!(
            decoder.decode(b"!", &mut sink),
            Ok(Progress {
                consumed: 0,
                done: true
            })
        );
        assert_eq!(body, b"hello");
        assert_eq!(decoder.body_len(), 5);
    }

    #[test]
    fn no_body_is_done_immediately() {
        for kind in [BodyKind::None, BodyKind::Length(0)] {
            let (result, body) = decode_all(kind, 100, b"GET /");
            assert_eq!(
                result,
                Ok(Progress {
                    consumed: 0,
                    done: true
                })
            );
            assert!(body.is_empty());
        }
    }

    #[test]
    fn length_over_max_body_is_413_in_the_decoder_too() {
        let (result, _) = decode_all(BodyKind::Length(11), 10, b"x");
        assert_eq!(result, Err(BODY_TOO_LARGE));
    }

    const CHUNKED: &[u8] = b"5;name=value;flag;q=\"a \\\"b\\\" c\" ; x = y\r\nhello\r\nA\r\n, world!!!\r\n0\r\nTrailer: yes\r\nOther:\tx y\r\n\r\nNEXT";

    #[test]
    fn chunked_body_decodes_with_extensions_and_trailers() {
        let (result, body) = decode_all(BodyKind::Chunked, 100, CHUNKED);
        assert_eq!(
            result,
            Ok(Progress {
                consumed: CHUNKED.len() - 4,
                done: true
            })
        );
        assert_eq!(body, b"hello, world!!!");
        let (result, body) = decode_all(BodyKind::Chunked, 100, b"0\r\n\r\n");
        assert_eq!(
            result,
            Ok(Progress {
                consumed: 5,
                done: true
            })
        );
        assert!(body.is_empty());
    }

    #[test]
    fn chunked_decodes_split_at_every_byte_boundary() {
        let whole = decode_all(BodyKind::Chunked, 100, CHUNKED);
        for split in 0..=CHUNKED.len() {
            let mut decoder = BodyDecoder::new(BodyKind::Chunked, 100);
            let mut body = Vec::new();
            let mut sink = |d: &[u8]| body.extend_from_slice(d);
            let first = decoder.decode(&CHUNKED[..split], &mut sink).unwrap();
            let second = decoder
                .decode(&CHUNKED[first.consumed..], &mut sink)
                .unwrap();
            assert_eq!(
                first.consumed + second.consumed,
                whole.0.unwrap().consumed,
                "split {split}"
            );
            assert!(second.done);
            assert_eq!(body, whole.1);
        }
        // One byte at a time.
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, 100);
        let mut body = Vec::new();
        for byte in CHUNKED.chunks(1) {
            let progress = decoder
                .decode(byte, &mut |d| body.extend_from_slice(d))
                .unwrap();
            if progress.done && progress.consumed == 0 {
                break;
            }
        }
        assert_eq!(body, whole.1);
    }

    #[test]
    fn chunk_data_must_be_followed_by_exactly_crlf() {
        assert_all(
            chunked_status,
            400,
            &[
                &b"5\r\nhelloX\r\n0\r\n\r\n"[..],
                b"5\r\nhello\n0\r\n\r\n",
                b"5\r\nhello\rX0\r\n\r\n",
                b"5\r\nhello\r\r\n0\r\n\r\n",
            ],
        );
    }

    #[test]
    fn chunk_size_must_be_bounded_plain_hex() {
        assert_all(
            with_chunk_size,
            400,
            &[
                b"0x5",
                b"-5",
                b"+5",
                b"",
                b" 5",
                b"5 ",
                b"5\t",
                b"g",
                b"00000000000000005",
            ],
        );
        assert_eq!(chunked_status(b"0000000000000005\r\nhello\r\n0\r\n\r\n"), 0);
        assert_eq!(chunked_status(b"5\r\nhello\r\n000\r\n\r\n"), 0);
        // Too many digits is refused even when max_body would allow any size.
        let (result, _) = decode_all(BodyKind::Chunked, u64::MAX, b"ffffffffffffffffff\r\n");
        assert_eq!(result, Err(BAD_CHUNK_SIZE));
        let (result, _) = decode_all(BodyKind::Chunked, 1 << 30, b"ffffffffffffffffff\r\n");
        assert_eq!(result.unwrap_err().status, 413);
    }

    #[test]
    fn chunk_extensions_must_be_well_formed_and_bounded() {
        for ext in [
            ";",
            "; ",
            ";=v",
            ";n=",
            ";n=\"unterminated",
            ";n=v w",
            ";n v",
            ";n=\"a\"b",
            ";n ",
            ";n\x00",
            ";n=\"\x01\"",
        ] {
            let input = format!("5{ext}\r\nhello\r\n0\r\n\r\n");
            assert_eq!(chunked_status(input.as_bytes()), 400, "{ext:?}");
        }
        for ext in [";n", ";n=v", " ;n", ";n = \"q\\\"\" ;m", "\t; n\t=\tv"] {
            let input = format!("5{ext}\r\nhello\r\n0\r\n\r\n");
            assert_eq!(chunked_status(input.as_bytes()), 0, "{ext:?}");
        }
        let long = format!(
            "5;n={}\r\nhello\r\n0\r\n\r\n",
            "v".repeat(MAX_CHUNK_EXT_LEN as usize)
        );
        assert_eq!(
            decode_all(BodyKind::Chunked, 100, long.as_bytes()).0,
            Err(CHUNK_EXT_TOO_LONG)
        );
    }

    #[test]
    fn bare_lf_in_chunked_framing_is_400() {
        assert_all(
            chunked_status,
            400,
            &[
                &b"5\nhello\r\n0\r\n\r\n"[..],
                b"5\r\nhello\r\n0\n\r\n",
                b"5\r\nhello\r\n0\r\n\n",
                b"5\r\nhello\r\n0\r\nT: v\n\r\n",
            ],
        );
    }

    #[test]
    fn chunked_trailers_are_validated_and_bounded() {
        for trailer in [
            "T : v",
            " T: v",
            "T",
            ": v",
            "T: v\x00",
            "T: a\r\n b",
            "T\x7f: v",
        ] {
            let input = format!("0\r\n{trailer}\r\n\r\n");
            assert_eq!(chunked_status(input.as_bytes()), 400, "{trailer:?}");
        }
        let big = format!("0\r\nT: {}\r\n\r\n", "v".repeat(MAX_TRAILER_LEN as usize));
        assert_eq!(chunked_status(big.as_bytes()), 431);
    }

    #[test]
    fn chunked_total_over_max_body_is_413_before_the_data() {
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, 10);
        let mut body = Vec::new();
        let mut sink = |d: &[u8]| body.extend_from_slice(d);
        assert!(decoder.decode(b"6\r\nabcdef\r\n", &mut sink).is_ok());
        assert_eq!(decoder.decode(b"5", &mut sink), Err(BODY_TOO_LARGE));
        let (result, body) = decode_all(
            BodyKind::Chunked,
            10,
            b"4\r\nabcd\r\n6\r\nabcdef\r\n0\r\n\r\n",
        );
        assert!(result.unwrap().done);
        assert_eq!(body.len(), 10);
    }

    #[test]
    fn decoder_stays_failed_after_an_error() {
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, 100);
        let mut sink = |_: &[u8]| {};
        assert_eq!(decoder.decode(b"x", &mut sink), Err(BAD_CHUNK_SIZE));
        assert_eq!(decoder.decode(b"0\r\n\r\n", &mut sink), Err(BAD_CHUNK_SIZE));
    }

    #[test]
    fn body_len_counts_data_handed_to_the_sink() {
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, 100);
        let mut total = 0;
        decoder
            .decode(&CHUNKED[..12], &mut |d| total += d.len())
            .unwrap();
        assert_eq!(decoder.body_len(), total as u64);
        decoder
            .decode(&CHUNKED[12..], &mut |d| total += d.len())
            .unwrap();
        assert_eq!(decoder.body_len(), total as u64);
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, 100);
        decoder.decode(CHUNKED, &mut |_| {}).unwrap();
        assert_eq!(decoder.body_len(), 15);
    }

    #[test]
    fn parse_status_needs_three_digits_a_space_and_a_clean_reason() {
        for (line, code) in [
            ("200 OK", 200),
            ("404 Not Found", 404),
            ("200 ", 200),
            ("100 Continue", 100),
            ("599 x\ty", 599),
            ("200 caf\u{e9}", 200),
        ] {
            assert_eq!(parse_status(line.as_bytes()), Some(code), "{line:?}");
        }
        for line in [
            &b"200"[..],
            b"20 OK",
            b"2000 OK",
            b"abc OK",
            b"099 x",
            b"200\tOK",
            b"200 OK\r\n",
            b"200 O\nK",
            b"\r200 OK",
            b"200 O\x00",
            b"200 O\x7f",
            b" 200 OK",
            b"",
        ] {
            assert_eq!(
                parse_status(line),
                None,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn a_status_code_above_599_is_refused() {
        for line in [&b"600 High"[..], b"999 Weird", b"700 x"] {
            assert_eq!(
                parse_status(line),
                None,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(parse_status(b"599 Last"), Some(599));
    }

    #[test]
    fn a_204_or_1xx_response_never_carries_content_length() {
        for status in [100, 101, 103, 199, 204] {
            assert!(!may_send_content_length(status), "{status}");
        }
        for status in [200, 205, 304, 404, 500] {
            assert!(may_send_content_length(status), "{status}");
        }
    }

    #[test]
    fn header_names_are_tokens() {
        assert!(valid_header_name(b"Content-Type"));
        assert!(valid_header_name(b"x!#$%&'*+-.^_`|~9"));
        for name in [
            &b""[..],
            b"a b",
            b"a:b",
            b"a\r",
            b"\xc3\xa9",
            b"(a)",
            b"a\"",
            b"a/b",
        ] {
            assert!(!valid_header_name(name), "{name:?}");
        }
    }

    #[test]
    fn header_values_have_no_control_bytes_but_htab() {
        assert!(valid_header_value(b"text/html; charset=utf-8"));
        assert!(valid_header_value(b"a\tb \xff"));
        assert!(valid_header_value(b""));
        for value in [
            &b"a\rb"[..],
            b"a\nb",
            b"a\x00b",
            b"\x01",
            b"a\x1f",
            b"a\x7f",
        ] {
            assert!(!valid_header_value(value), "{value:?}");
        }
    }

    #[test]
    fn bodies_are_forbidden_for_1xx_204_304() {
        for code in [100, 101, 199, 204, 304] {
            assert!(!status_allows_body(code));
        }
        for code in [200, 201, 301, 404, 500] {
            assert!(status_allows_body(code));
        }
    }

    #[test]
    fn chunk_size_line_is_lowercase_hex_and_crlf() {
        for (len, line) in [
            (0, "0\r\n"),
            (5, "5\r\n"),
            (255, "ff\r\n"),
            (4096, "1000\r\n"),
            (0xabcdef, "abcdef\r\n"),
        ] {
            let mut out = b"x".to_vec();
            write_chunk_size(len, &mut out);
            assert_eq!(out, format!("x{line}").as_bytes());
        }
        let mut out = Vec::new();
        write_chunk_size(usize::MAX, &mut out);
        assert_eq!(out, format!("{:x}\r\n", usize::MAX).as_bytes());
    }

    #[test]
    fn percent_decode_decodes_hex_pairs_only() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"/a%41b", b"/aAb"),
            (b"%2f%2F", b"//"),
            (b"%e2%82%ac", "€".as_bytes()),
            (b"a+b", b"a+b"),
            (b"%", b"%"),
            (b"%4", b"%4"),
            (b"%zz%4g", b"%zz%4g"),
            (b"100%%41", b"100%A"),
            (b"%00", b"\x00"),
            (b"", b""),
        ];
        let mut out = b"stale".to_vec();
        for (input, expected) in cases {
            percent_decode(input, &mut out);
            assert_eq!(&out, expected, "{:?}", String::from_utf8_lossy(input));
        }
    }

    /// One request of a generated pipelined stream.
    #[derive(Clone, Debug)]
    struct Request {
        target: String,
        body: Vec<u8>,
        chunk_sizes: Vec<usize>,
        chunked: bool,
    }

    fn encode(requests: &[Request]) -> Vec<u8> {
        let mut out = Vec::new();
        for req in requests {
            out.extend_from_slice(
                format!("POST {} HTTP/1.1\r\nHost: h\r\n", req.target).as_bytes(),
            );
            if req.chunked {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                encode_chunked(&req.body, &req.chunk_sizes, &mut out);
            } else if req.body.is_empty() {
                out.extend_from_slice(b"\r\n");
            } else {
                out.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", req.body.len()).as_bytes(),
                );
                out.extend_from_slice(&req.body);
            }
        }
        out
    }

    /// Chunk-encodes `data` into chunks of the given sizes (cycled; a 0 means 1).
    fn encode_chunked(data: &[u8], sizes: &[usize], out: &mut Vec<u8>) {
        let mut rest = data;
        let mut sizes = sizes.iter().cycle();
        while !rest.is_empty() {
            let size = sizes
                .next()
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            let (chunk, tail) = rest.split_at(size);
            encode_chunk(chunk, out);
            rest = tail;
        }
        out.extend_from_slice(LAST_CHUNK);
    }

    /// What a server would see: (target, body) per request, read through `reads`.
    /// One request as a server sees it.
    #[derive(Debug, PartialEq)]
    struct Seen {
        /// Every field of the head, spans resolved.
        head: String,
        target: Vec<u8>,
        body: Vec<u8>,
    }

    fn describe(head: &Head, buf: &[u8]) -> String {
        let text = |s: Span| String::from_utf8_lossy(s.of(buf)).into_owned();
        let fields: Vec<_> = head
            .headers
            .iter()
            .map(|h| (text(h.name), text(h.value)))
            .collect();
        format!(
            "{} {} {} {} {:?} {:?} {:?} {} {} {}",
            text(head.method),
            text(head.target),
            text(head.path),
            text(head.query),
            head.version,
            fields,
            head.body,
            head.keep_alive,
            head.expect_continue,
            head.len
        )
    }

    /// Reads `stream` in pieces of `read_sizes` (cycled) as a server would.
    fn serve(stream: &[u8], read_sizes: &[usize]) -> Result<Vec<Seen>, Error> {
        let limits = Limits::default();
        let mut buf = Vec::new();
        let mut input = stream;
        let mut sizes = read_sizes.iter().cycle();
        let mut out = Vec::new();
        let mut head = Head::default();
        let mut decoder: Option<BodyDecoder> = None;
        let mut body = Vec::new();
        let mut target = Vec::new();
        let mut described = String::new();
        loop {
            let mut progressed = false;
            if let Some(dec) = decoder.as_mut() {
                let progress = dec.decode(&buf, &mut |d| body.extend_from_slice(d))?;
                buf.drain(..progress.consumed);
                progressed |= progress.consumed > 0;
                if progress.done {
                    out.push(Seen {
                        head: std::mem::take(&mut described),
                        target: std::mem::take(&mut target),
                        body: std::mem::take(&mut body),
                    });
                    decoder = None;
                    progressed = true;
                }
            } else if parse_head(&buf, &limits, &mut head)? {
                target = head.target.of(&buf).to_vec();
                described = describe(&head, &buf);
                decoder = Some(BodyDecoder::new(head.body, limits.max_body));
                buf.drain(..head.len);
                progressed = true;
            }
            if !progressed {
                if input.is_empty() {
                    assert!(buf.is_empty() && decoder.is_none(), "leftover input");
                    return Ok(out);
                }
                let n = sizes
                    .next()
                    .copied()
                    .unwrap_or(input.len())
                    .clamp(1, input.len());
                buf.extend_from_slice(&input[..n]);
                input = &input[n..];
            }
        }
    }

    fn request_strategy() -> impl Strategy<Value = Request> {
        (
            "/[a-z0-9%?=&]{0,12}",
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::collection::vec(0usize..64, 1..5),
            any::<bool>(),
        )
            .prop_map(|(target, body, chunk_sizes, chunked)| Request {
                target,
                body,
                chunk_sizes,
                chunked,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn any_split_of_a_pipelined_stream_gives_the_same_requests(
            requests in proptest::collection::vec(request_strategy(), 1..4),
            read_sizes in proptest::collection::vec(1usize..40, 1..8),
        ) {
            let stream = encode(&requests);
            let whole = serve(&stream, &[stream.len()]).unwrap();
            let split = serve(&stream, &read_sizes).unwrap();
            prop_assert_eq!(&whole, &split);
            let seen: Vec<_> = whole.into_iter().map(|s| (s.target, s.body)).collect();
            let expected: Vec<_> = requests.iter().map(|r| (r.target.clone().into_bytes(), r.body.clone())).collect();
            prop_assert_eq!(seen, expected);
        }

        #[test]
        fn chunk_encode_then_decode_is_identity(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            sizes in proptest::collection::vec(0usize..300, 1..10),
        ) {
            let mut encoded = Vec::new();
            encode_chunked(&data, &sizes, &mut encoded);
            let (result, body) = decode_all(BodyKind::Chunked, u64::MAX, &encoded);
            prop_assert_eq!(result, Ok(Progress { consumed: encoded.len(), done: true }));
            prop_assert_eq!(body, data);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            input in proptest::collection::vec(any::<u8>(), 0..300),
            prefix in prop_oneof![Just(&b""[..]), Just(&b"GET / HTTP/1.1\r\n"[..]), Just(&b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"[..])],
            split in 0usize..300,
        ) {
            let mut buf = prefix.to_vec();
            buf.extend_from_slice(&input);
            let mut head = Head::default();
            if let Ok(true) = parse_head(&buf, &Limits::default(), &mut head) {
                prop_assert!(head.len <= buf.len());
                for span in [head.method, head.target, head.path, head.query] {
                    prop_assert!(span.end as usize <= head.len);
                }
            }
            for kind in [BodyKind::Chunked, BodyKind::Length(50), BodyKind::None] {
                let mut decoder = BodyDecoder::new(kind, 1000);
                let (a, b) = input.split_at(split.min(input.len()));
                if let Ok(p) = decoder.decode(a, &mut |_| {}) {
                    prop_assert!(p.consumed <= a.len());
                    if let Ok(p) = decoder.decode(&a[p.consumed..], &mut |_| {}).and_then(|_| decoder.decode(b, &mut |_| {})) {
                        prop_assert!(p.consumed <= b.len());
                    }
                }
            }
        }
    }
}
