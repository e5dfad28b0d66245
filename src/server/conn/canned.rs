//! Responses the server writes itself: refusals of bad requests and the 500 for an app
//! that failed before it answered.
//!
//! They never depend on the request beyond its status and HEAD-ness, and never allocate
//! beyond the output buffer they append to.

use super::Output;

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

pub(super) fn write_refusal<C: AsRef<[u8]>>(
    out: &mut Output<C>,
    status: u16,
    reason: &str,
    date: &[u8],
) {
    let mut body = String::with_capacity(64);
    body.push_str(reason_phrase(status));
    body.push_str(": ");
    body.push_str(reason);
    body.push('\n');
    write_canned(out, status, &body, false, false, date);
}

/// A complete plain-text response written by the server itself.
pub(super) fn write_canned<C: AsRef<[u8]>>(
    out: &mut Output<C>,
    status: u16,
    body: &str,
    keep_alive: bool,
    is_head: bool,
    date: &[u8],
) {
    let from = out.own_buffer().len();
    let buf = out.own_buffer();
    buf.extend_from_slice(b"HTTP/1.1 ");
    buf.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(reason_phrase(status).as_bytes());
    buf.extend_from_slice(b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    buf.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    buf.extend_from_slice(b"\r\nDate: ");
    buf.extend_from_slice(date);
    if keep_alive {
        buf.extend_from_slice(b"\r\n\r\n");
    } else {
        buf.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    }
    if !is_head {
        buf.extend_from_slice(body.as_bytes());
    }
    out.commit_own(from);
}
