//! The connection state machine driven directly, without a poller: a mock [`App`] over a
//! Unix socket pair, the test playing the client. Every protocol rule of `conn` that does
//! not need Python is checked here in milliseconds.
//!
//! Readiness is simulated: before each run the connection is told it may read and write,
//! as an edge-triggered poller would after the client acted.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::{Conn, Drive, Phase};
use crate::config::Timeouts;
use crate::http1::{BodyDecoder, BodyKind, Limits};
use crate::server::net::{Peer, Stream};
use crate::server::timers::Timers;
use crate::server::{App, AppFailed, Called, Clock, Pull, Reply, Request, RequestBody, Shared};

/// A request as the app saw it.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// What the mock app answers.
#[derive(Default)]
struct Answer {
    status: u16,
    content_length: Option<u64>,
    chunks: Vec<Vec<u8>>,
    /// Chunks pulled one by one after `chunks`.
    streamed: Option<VecDeque<Vec<u8>>>,
    fail: bool,
}

/// `200` with the target as its body and its own Content-Length.
fn echo_target(seen: &Seen) -> Answer {
    let body = format!("target={}", seen.target).into_bytes();
    Answer {
        status: 200,
        content_length: Some(body.len() as u64),
        chunks: vec![body],
        ..Answer::default()
    }
}

struct MockApp {
    calls: Vec<Seen>,
    pulls: usize,
    /// Every pull fails, as an iterable raising mid-stream.
    pulls_fail: bool,
    answer: fn(&Seen) -> Answer,
}

impl App for MockApp {
    type Chunk = Vec<u8>;
    type Stream = VecDeque<Vec<u8>>;
    type Session = ();

    fn open_session(&mut self, _peer: &Peer) {}

    fn call(
        &mut self,
        _session: &mut (),
        request: &Request<'_>,
        reply: &mut Reply<Vec<u8>>,
    ) -> Result<Called<Self::Stream>, AppFailed> {
        let text = |s: crate::http1::Span| String::from_utf8_lossy(s.of(request.buf)).into_owned();
        let body = match request.body {
            RequestBody::Memory(data) => data.to_vec(),
            RequestBody::File(mut file, _) => {
                let mut data = Vec::new();
                file.read_to_end(&mut data).map_err(|_| AppFailed)?;
                data
            }
        };
        let seen = Seen {
            method: text(request.head.method),
            target: text(request.head.target),
            body,
        };
        let answer = (self.answer)(&seen);
        self.calls.push(seen);
        if answer.fail {
            return Err(AppFailed);
        }
        reply.status = answer.status;
        reply
            .head
            .extend_from_slice(format!("{} Whatever\r\n", answer.status).as_bytes());
        if let Some(n) = answer.content_length {
            reply
                .head
                .extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
            reply.content_length = Some(n);
        }
        reply.chunks.extend(answer.chunks);
        Ok(Called {
            more: answer.streamed.is_some(),
            stream: answer.streamed,
        })
    }

    fn pull(&mut self, stream: &mut Self::Stream) -> Pull<Vec<u8>> {
        self.pulls += 1;
        if self.pulls_fail {
            return Pull::Failed;
        }
        match stream.pop_front() {
            Some(chunk) => Pull::Chunk(chunk),
            None => Pull::End,
        }
    }

    fn unlocked<R: Send, F: FnOnce() -> R + Send>(&mut self, f: F) -> R {
        f()
    }
}

const HEADER_TIMEOUT: Duration = Duration::from_secs(11);
const BODY_TIMEOUT: Duration = Duration::from_secs(12);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(13);
const WRITE_TIMEOUT: Duration = Duration::from_secs(14);

#[derive(Debug, PartialEq)]
enum Outcome {
    Wait,
    Closed,
    /// A response is queued and waits for the end of the loop turn.
    Deferred,
}

struct Harness {
    conn: Option<Conn<MockApp>>,
    app: MockApp,
    sh: Shared<Vec<u8>>,
    client: UnixStream,
    /// The server closed its side (or shut its writing down).
    eof: bool,
}

impl Harness {
    fn new(answer: fn(&Seen) -> Answer) -> Harness {
        let (server, client) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        client.set_nonblocking(true).unwrap();
        let stream = Stream::Unix(mio::net::UnixStream::from_std(server));
        let sh = Shared {
            limits: Limits {
                max_body: 1 << 20,
                ..Limits::default()
            },
            timeouts: Timeouts {
                header: HEADER_TIMEOUT,
                body: BODY_TIMEOUT,
                keep_alive: KEEP_ALIVE_TIMEOUT,
                write: WRITE_TIMEOUT,
                graceful: Duration::from_secs(15),
            },
            clock: Clock::new(),
            now: Instant::now(),
            timers: Timers::default(),
            pool: Vec::new(),
            reply: Reply::new(),
            access_log: None,
            draining: false,
            stop_signals: None,
            requests_served: 0,
            static_site: Default::default(),
            defer_writes: false,
            metrics: Default::default(),
            count_metrics: true,
            pid: std::process::id(),
        };
        Harness {
            conn: Some(Conn::new(stream, Peer::Unix, 1, sh.now)),
            app: MockApp {
                calls: Vec::new(),
                pulls: 0,
                pulls_fail: false,
                answer,
            },
            sh,
            client,
            eof: false,
        }
    }

    fn conn(&self) -> &Conn<MockApp> {
        self.conn.as_ref().expect("connection closed")
    }

    fn send(&mut self, bytes: &[u8]) {
        self.client.write_all(bytes).unwrap();
    }

    /// Drives the connection until it waits for the client or closes.
    fn run(&mut self) -> Outcome {
        let Some(conn) = self.conn.as_mut() else {
            return Outcome::Closed;
        };
        conn.read_ready = true;
        conn.write_ready = true;
        for _ in 0..1000 {
            self.sh.now = Instant::now();
            match conn.drive(&mut self.app, &mut self.sh, 0) {
                Drive::Wait => return Outcome::Wait,
                Drive::Again => {}
                Drive::Deferred => return Outcome::Deferred,
                Drive::Close => {
                    if let Some(mut conn) = self.conn.take() {
                        conn.release(&mut self.sh);
                    }
                    return Outcome::Closed;
                }
            }
        }
        panic!("the connection never stopped");
    }

    /// Everything the server has written so far.
    fn received(&mut self) -> Vec<u8> {
        let mut data = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match self.client.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return data;
                }
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return data,
                Err(e) => panic!("client read: {e}"),
            }
        }
    }

    /// Sends `bytes`, runs, and parses what came back.
    fn exchange(&mut self, bytes: &[u8], head_requests: &[bool]) -> (Outcome, Vec<Response>) {
        self.send(bytes);
        let outcome = self.run();
        let data = self.received();
        (outcome, parse_responses(&data, head_requests))
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits a response stream; `head_requests[i]` says the i-th final response answers HEAD.
/// Interim (1xx) responses are returned as responses of their own. Panics on anything
/// malformed or cut short.
fn parse_responses(mut data: &[u8], head_requests: &[bool]) -> Vec<Response> {
    let mut out = Vec::new();
    let mut finals = 0;
    while !data.is_empty() {
        let end = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("incomplete head: {:?}", String::from_utf8_lossy(data)));
        let head = std::str::from_utf8(&data[..end]).unwrap();
        data = &data[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line:?}");
        let status: u16 = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_string(), v.trim().to_string())
            })
            .collect();
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) {
            out.push(resp);
            continue;
        }
        let is_head = head_requests.get(finals).copied().unwrap_or(false);
        finals += 1;
        if is_head || status == 204 || status == 304 {
        } else if resp.header("Transfer-Encoding") == Some("chunked") {
            let mut decoder = BodyDecoder::new(BodyKind::Chunked, u64::MAX);
            let mut body = Vec::new();
            let progress = decoder
                .decode(data, &mut |d| body.extend_from_slice(d))
                .unwrap();
            assert!(progress.done, "chunked body cut short");
            data = &data[progress.consumed..];
            resp.body = body;
        } else if let Some(n) = resp.header("Content-Length") {
            let n: usize = n.parse().unwrap();
            resp.body = data[..n.min(data.len())].to_vec();
            data = &data[n.min(data.len())..];
        } else {
            resp.body = data.to_vec();
            data = &[];
        }
        out.push(resp);
    }
    out
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

#[test]
fn a_deferred_response_is_written_only_when_the_turn_ends_then_the_next_request_goes_on() {
    let mut h = Harness::new(echo_target);
    h.sh.defer_writes = true;
    let mut stream = get("/1");
    stream.extend(get("/2"));
    let (outcome, responses) = h.exchange(&stream, &[]);
    assert_eq!(outcome, Outcome::Deferred);
    assert!(responses.is_empty(), "written before the turn ended");
    assert_eq!(h.app.calls.len(), 1);
    h.sh.defer_writes = false;
    let outcome = h.run();
    let responses = parse_responses(&h.received(), &[]);
    assert_eq!(outcome, Outcome::Wait);
    let bodies: Vec<_> = responses.iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies, [&b"target=/1"[..], b"target=/2"]);
}

#[test]
fn a_keep_alive_response_written_after_a_drain_began_leaves_the_connection_open_for_one_more_answer(
) {
    let mut h = Harness::new(echo_target);
    h.sh.defer_writes = true;
    let (outcome, _) = h.exchange(&get("/1"), &[]);
    assert_eq!(outcome, Outcome::Deferred);
    // The stop signal is read in the same turn, before the deferred write.
    h.sh.draining = true;
    h.sh.defer_writes = false;
    assert_eq!(h.run(), Outcome::Wait);
    let first = parse_responses(&h.received(), &[]);
    assert_eq!(first.len(), 1);
    assert_ne!(first[0].header("Connection"), Some("close"));
    assert!(
        !h.eof,
        "closed right after a response that promised keep-alive"
    );
    let (outcome, responses) = h.exchange(&get("/2"), &[]);
    assert_eq!(outcome, Outcome::Closed);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].header("Connection"), Some("close"));
}

#[test]
fn pipelined_requests_in_one_read_are_answered_in_order() {
    let mut h = Harness::new(echo_target);
    let mut stream = get("/1");
    stream.extend(b"POST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    stream.extend(b"POST /3 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    stream.extend(b"3\r\nabc\r\n0\r\n\r\n");
    stream.extend(get("/4"));
    let (outcome, responses) = h.exchange(&stream, &[]);
    assert_eq!(outcome, Outcome::Wait);
    let bodies: Vec<_> = responses.iter().map(|r| r.body.clone()).collect();
    assert_eq!(
        bodies,
        [&b"target=/1"[..], b"target=/2", b"target=/3", b"target=/4"]
    );
    let seen: Vec<_> = h.app.calls.iter().map(|s| s.body.clone()).collect();
    assert_eq!(seen, [&b""[..], b"hello", b"abc", b""]);
    assert_eq!(h.sh.requests_served, 4);
}

#[test]
fn a_request_split_across_reads_is_served_once_complete() {
    let mut h = Harness::new(echo_target);
    let request = b"POST /split HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody";
    for piece in request.chunks(7) {
        assert!(h.app.calls.is_empty());
        h.send(piece);
        assert_eq!(h.run(), Outcome::Wait);
    }
    let responses = parse_responses(&h.received(), &[]);
    assert_eq!(responses.len(), 1);
    assert_eq!(h.app.calls[0].body, b"body");
}

#[test]
fn expect_100_continue_is_sent_only_while_the_body_is_awaited() {
    let mut h = Harness::new(echo_target);
    let head = b"POST /c HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    h.send(head);
    assert_eq!(h.run(), Outcome::Wait);
    assert_eq!(h.received(), b"HTTP/1.1 100 Continue\r\n\r\n");
    let (_, responses) = h.exchange(b"hello", &[]);
    assert_eq!(responses.len(), 1);
    assert_eq!(h.app.calls[0].body, b"hello");

    // The body came with the head: no interim response.
    let mut with_body = head.to_vec();
    with_body.extend(b"hello");
    let (_, responses) = h.exchange(&with_body, &[]);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 200);
}

#[test]
fn a_body_refused_after_100_continue_follows_the_whole_interim_response() {
    let mut h = Harness::new(echo_target);
    h.send(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(h.run(), Outcome::Wait);
    let (_, responses) = h.exchange(b"zz\r\n", &[]);
    let statuses: Vec<_> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [100, 400]);
    assert!(h.app.calls.is_empty());
}

#[test]
fn a_refused_request_is_answered_then_the_connection_lingers_and_closes() {
    let mut h = Harness::new(echo_target);
    let mut stream = b"GET /no-host HTTP/1.1\r\n\r\n".to_vec();
    stream.extend(get("/smuggled"));
    let (outcome, responses) = h.exchange(&stream, &[]);
    assert_eq!(outcome, Outcome::Wait);
    assert!(h.eof, "the write side is shut after the refusal");
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 400);
    assert_eq!(responses[0].header("Connection"), Some("close"));
    assert!(h.app.calls.is_empty());
    assert!(matches!(h.conn().phase, Phase::Lingering { .. }));
    assert_eq!(h.conn().deadline, Some(h.conn().since + super::LINGER_TIME));

    // What the client still sends is read and dropped; its close ends the connection.
    h.send(&get("/more"));
    assert_eq!(h.run(), Outcome::Wait);
    h.client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(h.run(), Outcome::Closed);
    assert!(h.app.calls.is_empty());
}

#[test]
fn connect_is_refused_with_501_without_calling_the_app() {
    let mut h = Harness::new(echo_target);
    let mut stream = b"CONNECT h:80 HTTP/1.1\r\nHost: h:80\r\n\r\n".to_vec();
    stream.extend(get("/smuggled"));
    let (_, responses) = h.exchange(&stream, &[]);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 501);
    assert!(h.app.calls.is_empty());
}

#[test]
fn head_gets_no_content_length_computed_from_the_body() {
    let mut h = Harness::new(|seen| Answer {
        status: 200,
        chunks: if seen.method == "HEAD" {
            Vec::new()
        } else {
            vec![b"hello".to_vec()]
        },
        ..Answer::default()
    });
    let mut stream = b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    stream.extend(get("/h"));
    let (outcome, responses) = h.exchange(&stream, &[true, false]);
    assert_eq!(outcome, Outcome::Wait);
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[0].header("Content-Length"), None);
    assert_eq!(responses[0].header("Transfer-Encoding"), None);
    assert_eq!(responses[1].header("Content-Length"), Some("5"));
    assert_eq!(responses[1].body, b"hello");
}

#[test]
fn head_keeps_the_content_length_the_app_set_and_sends_no_body() {
    let mut h = Harness::new(echo_target);
    let mut stream = b"HEAD /abc HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    stream.extend(get("/next"));
    let (_, responses) = h.exchange(&stream, &[true, false]);
    assert_eq!(responses.len(), 2, "{responses:?}");
    assert_eq!(responses[0].header("Content-Length"), Some("11"));
    assert_eq!(responses[1].body, b"target=/next");
}

#[test]
fn a_body_shorter_than_the_apps_content_length_closes_the_connection() {
    let mut h = Harness::new(|_| Answer {
        status: 200,
        content_length: Some(10),
        chunks: vec![b"short".to_vec()],
        ..Answer::default()
    });
    let mut stream = get("/short");
    stream.extend(get("/never"));
    h.send(&stream);
    assert_eq!(h.run(), Outcome::Closed);
    let data = h.received();
    assert!(h.eof);
    assert!(
        data.ends_with(b"\r\n\r\nshort"),
        "{:?}",
        String::from_utf8_lossy(&data)
    );
    assert_eq!(h.app.calls.len(), 1);
}

#[test]
fn a_body_longer_than_the_apps_content_length_is_cut_and_the_connection_kept() {
    let mut h = Harness::new(|_| Answer {
        status: 200,
        content_length: Some(3),
        chunks: vec![b"hel".to_vec(), b"lo".to_vec()],
        streamed: Some(VecDeque::from([b"never pulled".to_vec()])),
        ..Answer::default()
    });
    let mut stream = get("/long");
    stream.extend(get("/again"));
    let (outcome, responses) = h.exchange(&stream, &[]);
    assert_eq!(outcome, Outcome::Wait);
    let bodies: Vec<_> = responses.iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies, [b"hel", b"hel"]);
    assert_eq!(h.app.pulls, 0);
}

#[test]
fn a_streamed_body_is_pulled_only_as_the_socket_takes_it() {
    const CHUNKS: usize = 64;
    const CHUNK: usize = 64 * 1024;
    let mut h = Harness::new(|_| Answer {
        status: 200,
        streamed: Some((0..CHUNKS).map(|i| vec![i as u8; CHUNK]).collect()),
        ..Answer::default()
    });
    h.send(&get("/big"));
    assert_eq!(h.run(), Outcome::Wait);
    assert!(h.app.pulls < CHUNKS / 2, "pulled {} chunks", h.app.pulls);
    let conn = h.conn();
    assert!(matches!(conn.phase, Phase::Writing(_)));
    assert_eq!(conn.deadline, Some(conn.since + WRITE_TIMEOUT));
    let mut data = Vec::new();
    for _ in 0..10_000 {
        data.extend(h.received());
        if h.app.pulls > CHUNKS {
            break;
        }
        assert_eq!(h.run(), Outcome::Wait);
    }
    data.extend(h.received());
    let responses = parse_responses(&data, &[]);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].body.len(), CHUNKS * CHUNK);
    assert!(responses[0].body.ends_with(&[CHUNKS as u8 - 1; 8]));
}

#[test]
fn each_wait_has_the_deadline_of_its_phase() {
    let mut h = Harness::new(echo_target);
    h.send(b"POST /slow HTTP/1.1\r\nHost");
    assert_eq!(h.run(), Outcome::Wait);
    let conn = h.conn();
    assert_eq!(conn.deadline, Some(conn.since + HEADER_TIMEOUT));
    assert_eq!(h.sh.timers.next(), conn.deadline);

    h.send(b": t\r\nContent-Length: 4\r\n\r\nab");
    assert_eq!(h.run(), Outcome::Wait);
    let conn = h.conn();
    assert!(matches!(conn.phase, Phase::Body(_)));
    assert_eq!(conn.deadline, Some(conn.since + BODY_TIMEOUT));

    h.send(b"cd");
    assert_eq!(h.run(), Outcome::Wait);
    let conn = h.conn();
    assert!(conn.is_idle() && !conn.is_fresh());
    assert_eq!(conn.deadline, Some(conn.since + KEEP_ALIVE_TIMEOUT));
}

#[test]
fn a_request_timing_out_gets_a_408() {
    let mut h = Harness::new(echo_target);
    h.send(b"GET /slow HTTP/1.1\r\n");
    assert_eq!(h.run(), Outcome::Wait);
    let mut conn = h.conn.take().unwrap();
    conn.on_timeout(&mut h.sh);
    drop(conn);
    let responses = parse_responses(&h.received(), &[]);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 408);
    assert!(h.eof);
}

#[test]
fn an_app_failure_is_a_500_and_the_connection_goes_on() {
    let mut h = Harness::new(|seen| {
        if seen.target == "/fail" {
            Answer {
                fail: true,
                ..Answer::default()
            }
        } else {
            echo_target(seen)
        }
    });
    let mut stream = get("/fail");
    stream.extend(get("/ok"));
    let (outcome, responses) = h.exchange(&stream, &[]);
    assert_eq!(outcome, Outcome::Wait);
    let statuses: Vec<_> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 200]);
}

#[test]
fn http10_without_keep_alive_is_closed_after_its_response() {
    let mut h = Harness::new(echo_target);
    h.send(b"GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(h.run(), Outcome::Closed);
    let responses = parse_responses(&h.received(), &[]);
    assert_eq!(responses[0].header("Connection"), Some("close"));
    assert_eq!(responses[0].body, b"target=/old");
}

#[test]
fn a_malformed_request_line_is_refused_without_waiting_for_the_rest_of_the_head() {
    for (partial, status) in [
        (&b"G@T / HTTP/1.1\r\n"[..], 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
        (b"GET / HTTP/7.0\r\n", 505),
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n", 400),
    ] {
        let mut h = Harness::new(echo_target);
        let (outcome, responses) = h.exchange(partial, &[]);
        assert_eq!(outcome, Outcome::Wait);
        assert_eq!(responses.len(), 1, "{:?}", String::from_utf8_lossy(partial));
        assert_eq!(responses[0].status, status);
        assert!(h.app.calls.is_empty());
    }
}

/// An access log the test reads back.
#[derive(Clone, Default)]
struct SharedLog(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl Write for SharedLog {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Harness {
    fn with_access_log(answer: fn(&Seen) -> Answer) -> (Harness, SharedLog) {
        let mut h = Harness::new(answer);
        let log = SharedLog::default();
        h.sh.access_log = Some(crate::access_sink::AccessLog::to_stream(
            Default::default(),
            Box::new(log.clone()),
        ));
        (h, log)
    }
}

impl SharedLog {
    /// The request and status of each line: `"GET / HTTP/1.1" 200`.
    fn requests_and_statuses(&self) -> Vec<String> {
        let text = String::from_utf8(self.0.borrow().clone()).unwrap();
        text.lines()
            .map(|line| {
                let from = line.find('"').unwrap();
                let status_end = line[from..].find("\" ").unwrap() + from + 5;
                line[from..status_end].to_string()
            })
            .collect()
    }
}

#[test]
fn a_request_refused_before_its_head_was_parsed_gets_an_access_log_line() {
    for (sent, expected) in [
        (&b"G@T / HTTP/1.1\r\n"[..], "\"G@T / HTTP/1.1\" 400"),
        (b"\x16\x03\x01\x02\x00", "\"-\" 400"),
        (b"GET / HTTP/1.1\r\n\r\n", "\"GET / HTTP/1.1\" 400"),
        (
            b"POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n",
            "\"POST /big HTTP/1.1\" 413",
        ),
    ] {
        let (mut h, log) = Harness::with_access_log(echo_target);
        h.exchange(sent, &[]);
        assert_eq!(log.requests_and_statuses(), [expected]);
    }
}

#[test]
fn a_body_refused_or_a_request_timing_out_gets_an_access_log_line() {
    let (mut h, log) = Harness::with_access_log(echo_target);
    h.exchange(
        b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        &[],
    );
    let (mut slow, slow_log) = Harness::with_access_log(echo_target);
    slow.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n");
    assert_eq!(slow.run(), Outcome::Wait);
    let mut conn = slow.conn.take().unwrap();
    conn.on_timeout(&mut slow.sh);
    assert_eq!(log.requests_and_statuses(), ["\"POST /c HTTP/1.1\" 400"]);
    assert_eq!(
        slow_log.requests_and_statuses(),
        ["\"GET /slow HTTP/1.1\" 408"]
    );
}

#[test]
fn a_response_cut_when_the_app_fails_mid_stream_gets_an_access_log_line() {
    let (mut h, log) = Harness::with_access_log(|_| Answer {
        status: 200,
        chunks: vec![b"first".to_vec()],
        streamed: Some(VecDeque::from([b"second".to_vec()])),
        ..Answer::default()
    });
    h.app.pulls_fail = true;
    h.send(&get("/cut"));
    assert_eq!(h.run(), Outcome::Closed);
    assert_eq!(log.requests_and_statuses(), ["\"GET /cut HTTP/1.1\" 200"]);
}

#[test]
fn access_logging_writes_one_line_per_answered_request() {
    let (mut h, log) = Harness::with_access_log(echo_target);
    let mut stream = get("/1");
    stream.extend(get("/2"));
    h.exchange(&stream, &[]);
    assert_eq!(
        log.requests_and_statuses(),
        ["\"GET /1 HTTP/1.1\" 200", "\"GET /2 HTTP/1.1\" 200"]
    );
}

#[test]
fn every_response_produced_while_draining_says_connection_close_even_when_pipelined() {
    let mut h = Harness::new(echo_target);
    h.sh.draining = true;
    let mut stream = get("/1");
    stream.extend(get("/2"));
    let (outcome, responses) = h.exchange(&stream, &[]);
    assert_eq!(outcome, Outcome::Closed);
    assert!(!responses.is_empty());
    for r in &responses {
        assert_eq!(r.header("Connection"), Some("close"), "{r:?}");
    }
}

/// `echo_target` from an app that takes a few milliseconds.
fn slow_echo(seen: &Seen) -> Answer {
    std::thread::sleep(Duration::from_millis(3));
    echo_target(seen)
}

/// A harness whose stop-signal pipe holds a byte when `signalled`.
fn with_stop_pipe(signalled: bool) -> (Harness, UnixStream) {
    let mut h = Harness::new(slow_echo);
    let (read_end, mut write_end) = UnixStream::pair().unwrap();
    if signalled {
        write_end.write_all(b"!").unwrap();
    }
    h.sh.stop_signals = Some(read_end.into());
    (h, write_end)
}

#[test]
fn a_stop_signal_that_came_while_the_app_ran_makes_the_response_say_connection_close() {
    let (mut h, _pipe) = with_stop_pipe(true);
    let mut stream = get("/1");
    stream.extend(get("/2"));
    let (outcome, responses) = h.exchange(&stream, &[]);
    assert_eq!(outcome, Outcome::Closed);
    assert_eq!(
        responses.len(),
        1,
        "the pipelined request is left unanswered"
    );
    assert_eq!(responses[0].header("Connection"), Some("close"));

    let (mut quiet, _pipe) = with_stop_pipe(false);
    let (outcome, responses) = quiet.exchange(&get("/1"), &[]);
    assert_eq!(outcome, Outcome::Wait);
    assert_eq!(responses[0].header("Connection"), None);
}

/// A response of `status` whose body is streamed.
fn streamed_with_status(status: u16) -> Answer {
    Answer {
        status,
        streamed: Some(VecDeque::from([b"x".to_vec()])),
        ..Answer::default()
    }
}

#[test]
fn a_streamed_204_or_304_never_gets_transfer_encoding() {
    let answers: [fn(&Seen) -> Answer; 2] =
        [|_| streamed_with_status(204), |_| streamed_with_status(304)];
    for answer in answers {
        let mut h = Harness::new(answer);
        let mut stream = get("/1");
        stream.extend(get("/2"));
        let (_, responses) = h.exchange(&stream, &[]);
        assert_eq!(responses.len(), 2);
        for r in &responses {
            assert_eq!(r.header("Transfer-Encoding"), None, "{r:?}");
            assert_eq!(r.header("Content-Length"), None, "{r:?}");
            assert!(r.body.is_empty());
        }
    }
}

/// A harness whose `/static/` is a directory holding `a.css` (`body{}`) and `big.bin`
/// (`size` bytes, each its offset modulo 251).
fn with_static(size: usize) -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.css"), b"body{}").unwrap();
    let big: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("big.bin"), big).unwrap();
    let mount = crate::config::StaticMount {
        url_prefix: "/static/".into(),
        dir: std::fs::canonicalize(dir.path()).unwrap(),
    };
    let mut h = Harness::new(echo_target);
    h.sh.static_site = crate::static_files::StaticSite::new(vec![mount], "");
    (h, dir)
}

#[test]
fn a_static_file_pipelined_between_app_requests_is_answered_in_order_without_the_app() {
    let (mut h, _dir) = with_static(10);
    let mut stream = get("/1");
    stream.extend(get("/static/a.css"));
    stream.extend(b"HEAD /static/a.css HTTP/1.1\r\nHost: t\r\n\r\n");
    stream.extend(get("/static/missing.css"));
    stream.extend(get("/4"));
    let (outcome, responses) = h.exchange(&stream, &[false, false, true]);
    assert_eq!(outcome, Outcome::Wait);
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 404, 200]);
    assert_eq!(responses[1].body, b"body{}");
    assert_eq!(
        responses[1].header("Content-Type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(responses[2].header("Content-Length"), Some("6"));
    assert!(responses[2].body.is_empty());
    assert_eq!(responses[4].body, b"target=/4");
    let seen: Vec<_> = h.app.calls.iter().map(|s| s.target.clone()).collect();
    assert_eq!(seen, ["/1", "/4"]);
}

#[test]
fn a_static_file_larger_than_the_socket_buffer_is_sent_as_the_client_reads() {
    const SIZE: usize = 8 << 20;
    let (mut h, _dir) = with_static(SIZE);
    h.send(&get("/static/big.bin"));
    assert_eq!(h.run(), Outcome::Wait);
    let conn = h.conn();
    assert!(
        matches!(conn.phase, Phase::Writing(_)),
        "waits for the reader"
    );
    assert_eq!(conn.deadline, Some(conn.since + WRITE_TIMEOUT));
    let mut data = Vec::new();
    for _ in 0..100_000 {
        data.extend(h.received());
        if matches!(h.conn().phase, Phase::Idle) {
            break;
        }
        assert_eq!(h.run(), Outcome::Wait);
    }
    data.extend(h.received());
    let responses = parse_responses(&data, &[]);
    assert_eq!(responses.len(), 1);
    let body = &responses[0].body;
    assert_eq!(body.len(), SIZE);
    assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    assert!(h.app.calls.is_empty());
}

#[test]
fn a_static_post_is_405_and_the_connection_goes_on() {
    let (mut h, _dir) = with_static(10);
    let mut stream =
        b"POST /static/a.css HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi".to_vec();
    stream.extend(get("/static/a.css"));
    let (outcome, responses) = h.exchange(&stream, &[]);
    assert_eq!(outcome, Outcome::Wait);
    assert_eq!(responses[0].status, 405);
    assert_eq!(responses[0].header("Allow"), Some("GET, HEAD"));
    assert_eq!(responses[1].status, 200);
    assert!(h.app.calls.is_empty());
}

#[test]
fn a_static_answer_gets_an_access_log_line() {
    let (mut h, _dir) = with_static(10);
    let log = SharedLog::default();
    h.sh.access_log = Some(crate::access_sink::AccessLog::to_stream(
        Default::default(),
        Box::new(log.clone()),
    ));
    h.exchange(&get("/static/a.css"), &[]);
    h.exchange(&get("/static/../x"), &[]);
    let text = String::from_utf8(log.0.borrow().clone()).unwrap();
    assert!(
        text.contains("\"GET /static/a.css HTTP/1.1\" 200 6 "),
        "{text}"
    );
    assert!(
        text.contains("\"GET /static/../x HTTP/1.1\" 404 "),
        "{text}"
    );
}

#[test]
fn responses_and_refusals_are_counted_in_the_metrics() {
    let mut h = Harness::new(echo_target);
    let mut stream = get("/1");
    stream.extend(b"POST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    let (_, responses) = h.exchange(&stream, &[]);
    assert_eq!(responses.len(), 2);
    let body_bytes: usize = responses.iter().map(|r| r.body.len()).sum();
    let m = &h.sh.metrics;
    assert_eq!(m.requests[0][1], 1, "{m:?}");
    assert_eq!(m.requests[2][1], 1, "{m:?}");
    assert_eq!(m.response_bytes, body_bytes as u64);
    assert_eq!(m.duration_buckets.iter().sum::<u64>(), 2);
    let (_, refused) = h.exchange(b"PUT /no-host HTTP/1.1\r\n\r\n", &[]);
    assert_eq!(refused[0].status, 400);
    let m = &h.sh.metrics;
    assert_eq!(m.refused[0], 1);
    assert_eq!(
        m.requests[3][3], 1,
        "the refusal counts under its method: {m:?}"
    );
}
