//! The access log: one line per answered request, in combined log format.
//!
//! It must never write anything the client sent unescaped (quotes, control bytes), and
//! never touch the socket.

use std::io::Write;

use super::{Peer, Shared, Version, Work};

/// One line in combined log format.
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
    let bytes = if work.out.body_bytes == 0 {
        "-".to_string()
    } else {
        work.out.body_bytes.to_string()
    };
    let line = format!(
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"\n",
        match peer {
            Peer::Tcp(addr) => addr.ip().to_string(),
            Peer::Unix => "-".to_string(),
        },
        sh.clock.log_time,
        escape(head.method.of(buf)),
        escape(head.target.of(buf)),
        version,
        status,
        bytes,
        header(b"referer"),
        header(b"user-agent"),
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
