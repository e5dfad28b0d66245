//! The access log's view of a connection: the fields of one line per response (answered
//! requests, responses cut short, and refusals, with what is known of a request refused
//! early), handed to the access log, which renders and writes them.
//!
//! Runs only when access logging is on (callers check `Shared::access_log` first), and
//! never touches the socket.

use std::time::Duration;

use super::{Peer, Shared, Work};
use crate::access_format::Fields;

/// What a line needs beyond the head: the response's header lines when the format shows
/// some (`{name}o`). Kept in the connection's buffers.
#[derive(Default)]
pub(crate) struct Pending {
    response_head: Vec<u8>,
}

/// After the app ran: keeps its header lines when the format shows some.
pub(super) fn reply_ready<C>(sh: &Shared<C>, logged: &mut Pending) {
    if let Some(log) = sh.access_log.as_ref() {
        logged.response_head.clear();
        if log.wants_response_headers() {
            logged.response_head.extend_from_slice(&sh.reply.head);
        }
    }
}

fn peer_addr(peer: &Peer) -> Option<std::net::SocketAddr> {
    match peer {
        Peer::Tcp(addr) => Some(*addr),
        Peer::Unix => None,
    }
}

/// The line for a request whose head was parsed.
pub(super) fn log_access<C: AsRef<[u8]>>(
    sh: &mut Shared<C>,
    peer: &Peer,
    work: &Work<C>,
    status: u16,
    duration: Duration,
) {
    let Some(log) = sh.access_log.as_mut() else {
        return;
    };
    log.record(&Fields {
        peer: peer_addr(peer),
        request: Some((&work.rbuf, &work.head)),
        unparsed_line: None,
        status,
        body_bytes: work.out.body_bytes,
        duration,
        response_head: &work.logged.response_head,
        time: &sh.clock.log_time,
        pid: sh.pid,
    });
}

/// The line for a request refused before its head was parsed: its request line as sent
/// when that line has arrived, else `-`.
pub(super) fn log_unparsed<C: AsRef<[u8]>>(
    sh: &mut Shared<C>,
    peer: &Peer,
    work: &Work<C>,
    status: u16,
) {
    let Some(log) = sh.access_log.as_mut() else {
        return;
    };
    let received = work.rbuf.get(..work.filled).unwrap_or_default();
    let mut rest = received;
    while let [b'\r', b'\n', tail @ ..] = rest {
        rest = tail;
    }
    let line = memchr::memchr2(b'\r', b'\n', rest).and_then(|end| rest.get(..end));
    log.record(&Fields {
        peer: peer_addr(peer),
        request: None,
        unparsed_line: line,
        status,
        body_bytes: 0,
        duration: Default::default(),
        response_head: b"",
        time: &sh.clock.log_time,
        pid: sh.pid,
    });
}
