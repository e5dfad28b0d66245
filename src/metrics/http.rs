//! The `--metrics` listener: a small HTTP/1.1 server for a few pages (the metrics, the
//! status page), run inside an existing mio loop (the launcher's or an instance's).
//!
//! Every socket is non-blocking and every loop bounded; one request per connection, then
//! close. Only GET and HEAD; anything malformed gets a 4xx. It never blocks, never calls
//! the app, and holds at most `MAX_CLIENTS` connections (the oldest is dropped for a new
//! one), each for at most `CLIENT_TIME`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

/// Tokens from here on belong to the metrics listener and its connections; far above any
/// connection slot an instance uses.
pub const FIRST_TOKEN: usize = usize::MAX / 2;
const MAX_CLIENTS: usize = 32;
const CLIENT_TIME: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 8192;
const ACCEPTS_PER_CALL: usize = 64;

/// What a page handler answers.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    pub fn ok(content_type: &'static str, body: String) -> Answer {
        Answer {
            status: 200,
            content_type,
            body,
        }
    }

    pub fn not_found() -> Answer {
        Answer::text(404, "not found\n")
    }

    fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
        }
    }
}

struct Client {
    stream: TcpStream,
    head: Vec<u8>,
    out: Vec<u8>,
    written: usize,
    since: Instant,
}

pub struct MetricsServer {
    listener: TcpListener,
    clients: Vec<Client>,
    next_token: usize,
}

impl MetricsServer {
    /// Binds `addr` and watches it in `registry`.
    pub fn bind(addr: SocketAddr, registry: &Registry) -> Result<MetricsServer, String> {
        let std_listener = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("--metrics {addr}: cannot listen: {e}"))?;
        MetricsServer::from_std(std_listener, registry)
    }

    pub fn from_std(
        listener: std::net::TcpListener,
        registry: &Registry,
    ) -> Result<MetricsServer, String> {
        let fail = |e: io::Error| format!("--metrics: {e}");
        listener.set_nonblocking(true).map_err(fail)?;
        let mut listener = TcpListener::from_std(listener);
        registry
            .register(&mut listener, Token(FIRST_TOKEN), Interest::READABLE)
            .map_err(fail)?;
        Ok(MetricsServer {
            listener,
            clients: Vec::new(),
            next_token: 0,
        })
    }

    /// Whether an event's token is this server's.
    pub fn owns(token: Token) -> bool {
        token.0 >= FIRST_TOKEN
    }

    /// Accepts, reads, answers and writes as far as the sockets allow; `page` answers a
    /// GET or HEAD for a path.
    pub fn serve(&mut self, registry: &Registry, mut page: impl FnMut(&str) -> Answer) {
        let now = Instant::now();
        self.clients
            .retain(|c| now.saturating_duration_since(c.since) < CLIENT_TIME);
        self.accept(registry, now);
        self.clients.retain_mut(|c| c.advance(&mut page));
    }

    fn accept(&mut self, registry: &Registry, now: Instant) {
        for _ in 0..ACCEPTS_PER_CALL {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => continue,
            };
            if self.clients.len() >= MAX_CLIENTS {
                self.clients.remove(0);
            }
            self.next_token = (self.next_token + 1) % (1 << 20);
            let token = Token(FIRST_TOKEN + 1 + self.next_token);
            let interest = Interest::READABLE | Interest::WRITABLE;
            if registry.register(&mut stream, token, interest).is_err() {
                continue;
            }
            self.clients.push(Client {
                stream,
                head: Vec::with_capacity(512),
                out: Vec::new(),
                written: 0,
                since: now,
            });
        }
    }
}

impl Client {
    /// Moves the exchange on; false once the connection is done with.
    fn advance(&mut self, page: &mut impl FnMut(&str) -> Answer) -> bool {
        if self.out.is_empty() {
            match self.read() {
                Ok(true) => {}
                Ok(false) => return true,
                Err(()) => return false,
            }
            let answer = match parse(&self.head) {
                Parsed::Partial if self.head.len() >= MAX_HEAD => {
                    (Answer::text(431, "request head too large\n"), false)
                }
                Parsed::Partial => return true,
                Parsed::Bad => (Answer::text(400, "bad request\n"), false),
                Parsed::Method => (Answer::text(405, "only GET and HEAD\n"), false),
                Parsed::Get { path, head } => (page(&path), head),
            };
            self.out = response(&answer.0, answer.1);
        }
        self.write()
    }

    /// Reads what arrived; `Ok(true)` when there is something new to look at.
    fn read(&mut self) -> Result<bool, ()> {
        let mut buf = [0u8; 2048];
        let mut got = false;
        while self.head.len() < MAX_HEAD {
            match self.stream.read(&mut buf) {
                Ok(0) => return if got { Ok(true) } else { Err(()) },
                Ok(n) => {
                    let room = MAX_HEAD - self.head.len();
                    self.head.extend_from_slice(&buf[..n.min(room)]);
                    got = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
        Ok(got)
    }

    /// Writes the answer; false once it is all out (or cannot be).
    fn write(&mut self) -> bool {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return false,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        false
    }
}

enum Parsed {
    Partial,
    Bad,
    Method,
    Get { path: String, head: bool },
}

fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => Parsed::Bad,
        Ok(httparse::Status::Complete(_)) => {
            let (Some(method), Some(target)) = (request.method, request.path) else {
                return Parsed::Bad;
            };
            if method != "GET" && method != "HEAD" {
                return Parsed::Method;
            }
            let path = target.split('?').next().unwrap_or_default();
            if !path.starts_with('/') {
                return Parsed::Bad;
            }
            Parsed::Get {
                path: path.to_string(),
                head: method == "HEAD",
            }
        }
    }
}

fn response(answer: &Answer, head_only: bool) -> Vec<u8> {
    let reason = match answer.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        answer.status,
        answer.content_type,
        answer.body.len()
    );
    if answer.status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&answer.body);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_sorted_into_get_head_bad_and_other_methods() {
        assert!(matches!(
            parse(b"GET /metrics HTTP/1.1\r\n"),
            Parsed::Partial
        ));
        assert!(matches!(
            parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Parsed::Get { ref path, head: false } if path == "/metrics"
        ));
        assert!(matches!(
            parse(b"HEAD / HTTP/1.0\r\n\r\n"),
            Parsed::Get { head: true, .. }
        ));
        assert!(matches!(parse(b"POST / HTTP/1.1\r\n\r\n"), Parsed::Method));
        assert!(matches!(parse(b"GET\x01 / HTTP/1.1\r\n\r\n"), Parsed::Bad));
        assert!(matches!(parse(b"GET * HTTP/1.1\r\n\r\n"), Parsed::Bad));
    }

    #[test]
    fn a_head_answer_has_the_length_but_no_body() {
        let answer = Answer::ok("text/plain", "hello".into());
        let text = String::from_utf8(response(&answer, true)).unwrap();
        assert!(text.contains("Content-Length: 5\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let refused = String::from_utf8(response(&Answer::text(405, "no\n"), false)).unwrap();
        assert!(refused.contains("Allow: GET, HEAD\r\n"));
    }
}
