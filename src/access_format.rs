//! `--access-logformat`: gunicorn's access-log format (`%(h)s %(l)s %(u)s %(t)s "%(r)s" ...`)
//! parsed once into a plan, then rendered per request into a reused buffer.
//!
//! Pure: no IO, no clock, no Python. The rendering of each atom is gunicorn's, byte for
//! byte (text decoded as Latin-1 and written as UTF-8, `"` escaped as `\"`, a missing value
//! as `-`), with one deliberate difference: control characters other than tab, which only a
//! percent-decoded path can carry, are written as `\xNN` so that a request can never start
//! a line of its own. Must never panic on any request.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;

use crate::http1::Head;

/// One value a format can name.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Atom {
    RemoteAddr,
    Ident,
    User,
    Time,
    RequestLine,
    Method,
    Path,
    Query,
    Protocol,
    Status,
    BodyBytes,
    BodyBytesOrDash,
    Referer,
    UserAgent,
    Seconds,
    Millis,
    Micros,
    SecondsDecimal,
    Pid,
    /// `{name}i`, the name lower-cased.
    RequestHeader(Vec<u8>),
    /// `{name}o`, the name lower-cased.
    ResponseHeader(Vec<u8>),
    /// `{name}e`, the environ key upper-cased.
    Environ(String),
    /// An unknown atom: gunicorn writes `-`.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Atom(Atom),
}

/// How each access-log line is written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AccessStyle {
    /// Combined log format (the default).
    #[default]
    Combined,
    /// `--access-logformat`.
    Format(Plan),
    /// `--access-log-json`: one JSON object a line.
    Json,
}

/// A parsed format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pieces: Vec<Piece>,
}

/// What one access-log line can show about a request and its response.
pub struct Fields<'a> {
    pub peer: Option<SocketAddr>,
    /// The parsed head and the bytes its spans point into; `None` for a request refused
    /// before its head was complete.
    pub request: Option<(&'a [u8], &'a Head)>,
    /// For a request without a parsed head: its request line as sent, if it arrived.
    pub unparsed_line: Option<&'a [u8]>,
    pub status: u16,
    pub body_bytes: u64,
    pub duration: Duration,
    /// The status text and response header lines (`200 OK\r\nName: value\r\n`), when kept.
    pub response_head: &'a [u8],
    /// `01/Dec/2026:13:51:46 +0000`.
    pub time: &'a str,
    pub pid: u32,
}

impl Plan {
    /// Parses a format as Python's `%` operator with a mapping reads it: `%(name)s` and
    /// `%%`; anything else after a `%` is refused, with the reason.
    pub fn parse(format: &str) -> Result<Plan, String> {
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut rest = format;
        while let Some(at) = rest.find('%') {
            text.extend_from_slice(&rest.as_bytes()[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('%') {
                text.push(b'%');
                rest = tail;
                continue;
            }
            let Some(inner) = after.strip_prefix('(') else {
                return Err(format!(
                    "'%' at byte {at} of the format: write atoms as %(name)s and a literal % as %%"
                ));
            };
            let (name, tail) = split_key(inner)
                .ok_or_else(|| format!("'%({inner}': the atom's name has no closing ')'"))?;
            let Some(tail) = tail.strip_prefix('s') else {
                return Err(format!(
                    "'%({name})' must be followed by 's' (only %(name)s atoms are supported)"
                ));
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Atom(atom(name)));
            rest = tail;
        }
        text.extend_from_slice(rest.as_bytes());
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Plan { pieces })
    }

    /// Whether a line needs the response's headers (`{name}o`).
    pub fn wants_response_headers(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Atom(Atom::ResponseHeader(_))))
    }

    /// Appends the line for `fields` to `out` (without the newline).
    pub fn render(&self, fields: &Fields<'_>, out: &mut Vec<u8>) {
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Atom(a) => render_atom(a, fields, out),
            }
        }
    }
}

/// The key of `%(key)`: up to the `)` that balances the opening one, as Python counts.
fn split_key(inner: &str) -> Option<(&str, &str)> {
    let mut depth = 1usize;
    for (i, c) in inner.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&inner[..i], &inner[i + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}

/// Single letters are case-sensitive; `{...}` keys are matched lower-cased.
fn atom(name: &str) -> Atom {
    match name {
        "h" => Atom::RemoteAddr,
        "l" => Atom::Ident,
        "u" => Atom::User,
        "t" => Atom::Time,
        "r" => Atom::RequestLine,
        "m" => Atom::Method,
        "U" => Atom::Path,
        "q" => Atom::Query,
        "H" => Atom::Protocol,
        "s" => Atom::Status,
        "B" => Atom::BodyBytes,
        "b" => Atom::BodyBytesOrDash,
        "f" => Atom::Referer,
        "a" => Atom::UserAgent,
        "T" => Atom::Seconds,
        "M" => Atom::Millis,
        "D" => Atom::Micros,
        "L" => Atom::SecondsDecimal,
        "p" => Atom::Pid,
        _ if name.starts_with('{') => braced(&name.to_lowercase()),
        _ => Atom::Unknown,
    }
}

fn braced(lower: &str) -> Atom {
    let Some(body) = lower.strip_prefix('{') else {
        return Atom::Unknown;
    };
    match body.rsplit_once('}') {
        Some((name, "i")) => Atom::RequestHeader(name.as_bytes().to_vec()),
        Some((name, "o")) => Atom::ResponseHeader(name.as_bytes().to_vec()),
        Some((name, "e")) => Atom::Environ(name.to_uppercase()),
        _ => Atom::Unknown,
    }
}

fn render_atom(atom: &Atom, f: &Fields<'_>, out: &mut Vec<u8>) {
    let head = f.request;
    let secs = f.duration.as_secs();
    let micros = f.duration.subsec_micros();
    match atom {
        Atom::RemoteAddr => remote_addr(f, out),
        Atom::Ident | Atom::Unknown => out.push(b'-'),
        Atom::User => match head.and_then(|(buf, h)| basic_user(header(buf, h, b"authorization")?))
        {
            Some(user) => push_str(out, &user),
            None => out.push(b'-'),
        },
        Atom::Time => {
            out.push(b'[');
            out.extend_from_slice(f.time.as_bytes());
            out.push(b']');
        }
        Atom::RequestLine => request_line(f, out),
        Atom::Method => part(head, out, |buf, h| h.method.of(buf)),
        Atom::Query => part(head, out, |buf, h| h.query.of(buf)),
        Atom::Path => match head {
            Some((buf, h)) => push_path(out, h.path.of(buf)),
            None => out.push(b'-'),
        },
        Atom::Protocol => match head {
            Some((_, h)) => out.extend_from_slice(protocol(h).as_bytes()),
            None => out.push(b'-'),
        },
        Atom::Status => push_num(out, f.status),
        Atom::BodyBytes | Atom::BodyBytesOrDash => push_num(out, f.body_bytes),
        Atom::Referer => header_or_dash(head, b"referer", out),
        Atom::UserAgent => header_or_dash(head, b"user-agent", out),
        Atom::Seconds => push_num(out, secs),
        Atom::Millis => push_num(out, secs * 1000 + u64::from(micros / 1000)),
        Atom::Micros => push_num(out, secs * 1_000_000 + u64::from(micros)),
        Atom::SecondsDecimal => {
            let _ = write!(out, "{secs}.{micros:06}");
        }
        Atom::Pid => {
            let _ = write!(out, "<{}>", f.pid);
        }
        Atom::RequestHeader(name) => header_or_dash(head, name, out),
        Atom::ResponseHeader(name) => match response_header(f.response_head, name) {
            Some(v) => push_latin1(out, v),
            None => out.push(b'-'),
        },
        Atom::Environ(key) => environ(key, f, out),
    }
}

fn part(
    head: Option<(&[u8], &Head)>,
    out: &mut Vec<u8>,
    pick: for<'b> fn(&'b [u8], &Head) -> &'b [u8],
) {
    match head {
        Some((buf, h)) => push_latin1(out, pick(buf, h)),
        None => out.push(b'-'),
    }
}

fn remote_addr(f: &Fields<'_>, out: &mut Vec<u8>) {
    match f.peer {
        Some(addr) => {
            let _ = write!(out, "{}", addr.ip());
        }
        None => out.push(b'-'),
    }
}

fn request_line(f: &Fields<'_>, out: &mut Vec<u8>) {
    match (f.request, f.unparsed_line) {
        (Some((buf, h)), _) => {
            push_latin1(out, h.method.of(buf));
            out.push(b' ');
            push_latin1(out, h.target.of(buf));
            out.push(b' ');
            out.extend_from_slice(protocol(h).as_bytes());
        }
        (None, Some(line)) => push_latin1(out, line),
        (None, None) => out.push(b'-'),
    }
}

pub fn protocol(head: &Head) -> &'static str {
    match head.version {
        crate::http1::Version::Http10 => "HTTP/1.0",
        crate::http1::Version::Http11 => "HTTP/1.1",
    }
}

/// The last field named `name` (lower-case), as a dict of the fields would keep it.
pub fn header<'b>(buf: &'b [u8], head: &Head, name: &[u8]) -> Option<&'b [u8]> {
    head.headers
        .iter()
        .rev()
        .find(|h| h.name.of(buf).eq_ignore_ascii_case(name))
        .map(|h| h.value.of(buf))
}

fn header_or_dash(head: Option<(&[u8], &Head)>, name: &[u8], out: &mut Vec<u8>) {
    match head.and_then(|(buf, h)| header(buf, h, name)) {
        Some(v) => push_latin1(out, v),
        None => out.push(b'-'),
    }
}

/// The value of the last response header named `name` in `200 OK\r\nName: value\r\n`.
fn response_header<'b>(response_head: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
    response_head
        .split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = memchr::memchr(b':', line)?;
            let (n, v) = line.split_at(colon);
            n.eq_ignore_ascii_case(name).then(|| v[1..].trim_ascii())
        })
        .last()
}

/// The user of `Authorization: Basic <base64 user:password>`, when it decodes to UTF-8.
fn basic_user(value: &[u8]) -> Option<String> {
    if value.len() < 5 || !value[..5].eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let space = memchr::memchr(b' ', value)?;
    let encoded: Vec<u8> = value[space + 1..]
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        .collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let user = decoded.split(|&b| b == b':').next().unwrap_or_default();
    String::from_utf8(user.to_vec())
        .ok()
        .filter(|u| !u.is_empty())
}

/// The CGI variables a WSGI environ holds for the request; `-` for any other key.
fn environ(key: &str, f: &Fields<'_>, out: &mut Vec<u8>) {
    let Some((buf, h)) = f.request else {
        out.push(b'-');
        return;
    };
    match key {
        "REQUEST_METHOD" => push_latin1(out, h.method.of(buf)),
        "RAW_URI" => push_latin1(out, h.target.of(buf)),
        "PATH_INFO" => push_path(out, h.path.of(buf)),
        "QUERY_STRING" => push_latin1(out, h.query.of(buf)),
        "SERVER_PROTOCOL" => out.extend_from_slice(protocol(h).as_bytes()),
        "SCRIPT_NAME" => {}
        "REMOTE_ADDR" => remote_addr(f, out),
        "REMOTE_PORT" => match f.peer {
            Some(addr) => push_num(out, addr.port()),
            None => out.push(b'-'),
        },
        "CONTENT_TYPE" => header_or_dash(f.request, b"content-type", out),
        "CONTENT_LENGTH" => header_or_dash(f.request, b"content-length", out),
        _ => match key.strip_prefix("HTTP_") {
            Some(name) => joined_header(buf, h, name, out),
            None => out.push(b'-'),
        },
    }
}

/// `HTTP_X_NAME`: every field named `x-name`, joined with `,` as the environ holds them.
fn joined_header(buf: &[u8], head: &Head, environ_name: &str, out: &mut Vec<u8>) {
    let matches = |n: &[u8]| {
        n.len() == environ_name.len()
            && n.iter().zip(environ_name.bytes()).all(|(&a, b)| {
                let a = if a == b'-' {
                    b'_'
                } else {
                    a.to_ascii_uppercase()
                };
                a == b
            })
    };
    let mut found = false;
    for h in head.headers.iter().filter(|h| matches(h.name.of(buf))) {
        if found {
            out.push(b',');
        }
        push_latin1(out, h.value.of(buf));
        found = true;
    }
    if !found {
        out.push(b'-');
    }
}

fn push_num(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The path percent-decoded, as PATH_INFO holds it.
fn push_path(out: &mut Vec<u8>, path: &[u8]) {
    let decoded: Vec<u8> = percent_encoding::percent_decode(path).collect();
    push_latin1(out, &decoded);
}

/// Bytes read as Latin-1 and written as UTF-8, `"` as `\"`, controls but tab as `\xNN`.
fn push_latin1(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\t' | 0x20..=0x7e => out.push(b),
            0x80..=0xff => {
                let mut utf8 = [0u8; 2];
                out.extend_from_slice(char::from(b).encode_utf8(&mut utf8).as_bytes());
            }
            _ => push_hex(out, b),
        }
    }
}

/// Text already decoded (a Basic user): `"` as `\"`, controls but tab as `\xNN`.
fn push_str(out: &mut Vec<u8>, text: &str) {
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\t' => out.push(b'\t'),
            c if (c as u32) < 0x20 || c == '\x7f' => push_hex(out, c as u8),
            c => {
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
}

fn push_hex(out: &mut Vec<u8>, b: u8) {
    let _ = write!(out, "\\x{b:02x}");
}

#[cfg(test)]
mod tests;
