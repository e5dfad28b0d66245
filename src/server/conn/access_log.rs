//! The access log: one line per response, in combined log format: answered requests,
//! responses cut short, and refusals (with what is known of a request refused early).
//!
//! It must never write anything the client sent unescaped (quotes, control bytes), and
//! never touch the socket.

use std::io::Write;

use super::{Peer, Shared, Version, Work};

/// One line in combined log format for a request whose head was parsed.
pub(super) fn log_access<C: AsRef<[u8]>>(
    sh: &mut Shared<C>,
    peer: &Peer,
    work: &Work<C>,
    status: u16,
) {
    let buf = &work.rbuf;
    let head = &work.head;
    let header = |name: &[u8]| -> String {
        head.headers
            .iter()
            .find(|h| h.name.of(buf).eq_ignore_ascii_case(name))
            .map(|h| escape(h.value.of(buf)))
            .unwrap_or_else(|| "-".to_string())
    };
    let version = match head.version {
        Version::Http10 => "HTTP/1.0",
        Version::Http11 => "HTTP/1.1",
    };
    let request = format!(
        "{} {} {}",
        escape(head.method.of(buf)),
        escape(head.target.of(buf)),
        version
    );
    let fields = LineFields {
        request: &request,
        status,
        body_bytes: work.out.body_bytes,
        referer: &header(b"referer"),
        user_agent: &header(b"user-agent"),
    };
    write_line(sh, peer, &fields);
}

/// The line for a request refused before its head was parsed: its request line as sent
/// when that line has arrived, else `-`.
pub(super) fn log_unparsed<C: AsRef<[u8]>>(
    sh: &mut Shared<C>,
    peer: &Peer,
    work: &Work<C>,
    status: u16,
) {
    let received = work.rbuf.get(..work.filled).unwrap_or_default();
    let mut rest = received;
    while let [b'\r', b'\n', tail @ ..] = rest {
        rest = tail;
    }
    let request = match memchr::memchr2(b'\r', b'\n', rest) {
        Some(end) => escape(rest.get(..end).unwrap_or_default()),
        None => "-".to_string(),
    };
    let fields = LineFields {
        request: &request,
        status,
        body_bytes: 0,
        referer: "-",
        user_agent: "-",
    };
    write_line(sh, peer, &fields);
}

/// What one line says, each text already escaped.
struct LineFields<'a> {
    request: &'a str,
    status: u16,
    body_bytes: u64,
    referer: &'a str,
    user_agent: &'a str,
}

fn write_line<C>(sh: &mut Shared<C>, peer: &Peer, fields: &LineFields<'_>) {
    let bytes = if fields.body_bytes == 0 {
        "-".to_string()
    } else {
        fields.body_bytes.to_string()
    };
    let line = format!(
        "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\"\n",
        match peer {
            Peer::Tcp(addr) => addr.ip().to_string(),
            Peer::Unix => "-".to_string(),
        },
        sh.clock.log_time,
        fields.request,
        fields.status,
        bytes,
        fields.referer,
        fields.user_agent,
    );
    if let Some(out) = sh.access_log.as_mut() {
        let _ = out.write_all(line.as_bytes());
        sh.log_dirty = true;
    }
}

/// Log-safe text: quotes, backslashes and non-printable bytes escaped.
fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}
