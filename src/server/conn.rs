//! One client connection: read a request, run the app, write the reply, repeat.
//!
//! `drive` takes the connection as far as its socket allows and says whether to wait for
//! the next event, come back without one, or close. It never blocks and never waits for
//! an event while a complete request is already buffered.
//!
//! This file is the state machine ([`Phase`]); the pooled buffers are in `buffers`, the
//! responses the server writes itself in `canned`, the access log in `access_log`, the
//! answers to requests under a `--static` mount in `static_send`.

use std::io::{self, Read, Seek, Write};
use std::time::{Duration, Instant};

use mio::{Registry, Token};

use super::net::{byte_waiting, Closing, Peer, Stream};
use super::output::Output;
use super::{App, AppFailed, Called, FileBody, Pull, Request, RequestBody, Shared};
use crate::http1::{self, BodyDecoder, BodyKind, Version};
use crate::log;

mod access_log;
mod buffers;
mod canned;
mod static_send;
#[cfg(test)]
mod tests;

use access_log::{log_access, log_unparsed, reply_ready};
pub(crate) use buffers::Work;
use buffers::{recycle, store_body};
use canned::{write_canned, write_refusal};

/// Requests (or streamed chunks) handled for one connection before others get a turn.
const STEP_BUDGET: usize = 64;
/// After refusing a request, how long and how much to read before closing, so the
/// client sees the answer instead of a reset.
const LINGER_TIME: Duration = Duration::from_secs(2);
/// How long an idle keep-alive connection stays open once the instance drains, so that a
/// request already on its way is answered (with `Connection: close`) rather than meeting a
/// closed socket.
const DRAIN_IDLE_GRACE: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 1 << 20;
/// Largest piece of a file handed to one sendfile call.
const SENDFILE_MAX: usize = 1 << 20;
/// After pulling chunks from an app for this long since the loop woke, the loop gets a
/// turn: a slow generator must not starve other clients or the stop signal.
const PULL_SLICE: Duration = Duration::from_millis(2);
/// Busy this long since the loop woke, a response first looks for a stop signal the loop
/// has not read yet (see `draining`).
const SIGNAL_PEEK_AFTER: Duration = Duration::from_millis(1);

/// Where a connection is, each phase with the state only it has.
enum Phase<S> {
    /// Between requests: nothing of the next one has arrived.
    Idle,
    /// Part of a head has arrived.
    Head,
    /// The head is parsed (in `Work::head`); the body is being read.
    Body(BodyDecoder),
    /// The app ran; its response is being written.
    Writing(Responding<S>),
    /// A refusal is being written; the connection closes after it.
    Refusing,
    /// Refusal written and write side shut: reading what the client still sends.
    Lingering { read: usize },
    /// The last response is out and the connection is to close. The app's stream is held
    /// until the connection is dropped, after its socket: the client has the whole answer
    /// before the app's close() runs.
    Closing { _held: Option<S> },
}

#[derive(Clone, Copy)]
enum Framing {
    NoBody,
    Length(u64),
    Chunked,
    Close,
}

struct Responding<S> {
    /// Kept until the response is done, then dropped (which closes it).
    stream: Option<S>,
    /// Whether `stream` still has chunks to pull.
    more: bool,
    file: Option<FileBody>,
    framing: Framing,
    keep_alive: bool,
    status: u16,
}

pub(crate) enum Drive {
    Wait,
    Again,
    Close,
    /// A response is queued, its write deferred to the end of the loop turn
    /// (`Shared::defer_writes`): drive the connection again then.
    Deferred,
}

enum Step {
    Continue,
    Wait,
    Close,
    Deferred,
}

pub(crate) struct Conn<A: App> {
    /// Declared first, so it closes before a response still held is dropped.
    stream: Stream,
    pub serial: u64,
    peer: Peer,
    /// Declared after `stream`: a response held here is released after the socket closes.
    phase: Phase<A::Stream>,
    pub read_ready: bool,
    pub write_ready: bool,
    /// The poller said the peer closed its side: its FIN may sit behind data already
    /// announced, so a short read no longer proves the socket drained.
    pub peer_closed: bool,
    eof: bool,
    pub deadline: Option<Instant>,
    /// The earliest timer entry this connection has in the heap.
    pub scheduled: Option<Instant>,
    /// When the current phase began or last made progress: its timeout counts from here.
    since: Instant,
    /// When the current request's first byte was read (for its duration in the metrics).
    request_start: Instant,
    /// A request was answered on this connection (idle means keep-alive, not new).
    served: bool,
    work: Option<Box<Work<A::Chunk>>>,
    session: Option<A::Session>,
    /// The last step pulled a chunk from the app.
    pulled: bool,
    nagle: Nagle,
}

/// A connection's first write never waits under Nagle's algorithm (nothing is
/// unacknowledged), so TCP_NODELAY costs its syscall only on connections that write again
/// (keep-alive, pipelining, streaming).
#[derive(Default)]
struct Nagle {
    wrote: bool,
    off: bool,
}

impl Nagle {
    fn before_write(&mut self, stream: &Stream) {
        if self.wrote && !self.off {
            stream.set_nodelay();
            self.off = true;
        }
        self.wrote = true;
    }
}

impl<A: App> Conn<A> {
    pub fn new(stream: Stream, peer: Peer, serial: u64, now: Instant) -> Self {
        Conn {
            stream,
            serial,
            peer,
            phase: Phase::Idle,
            read_ready: true,
            write_ready: true,
            peer_closed: false,
            eof: false,
            deadline: None,
            scheduled: None,
            since: now,
            request_start: now,
            served: false,
            work: None,
            session: None,
            pulled: false,
            nagle: Nagle::default(),
        }
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        self.stream.register(registry, token)
    }

    /// Nothing in flight: no request bytes, no response.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Idle) && self.work.as_ref().is_none_or(|w| w.is_empty())
    }

    /// At the start of a drain: an idle connection is closed after `DRAIN_IDLE_GRACE`
    /// unless a request arrives first; that request is answered and the connection closed.
    pub fn begin_drain(&mut self, sh: &mut Shared<A::Chunk>, slot: usize) {
        if self.is_idle() && self.deadline.is_none_or(|d| sh.now + DRAIN_IDLE_GRACE < d) {
            // Idle from now on: `arm` gives a draining idle connection the grace.
            self.since = sh.now;
            self.arm(sh, slot);
        }
    }

    /// Accepted but silent so far: no request has begun on it.
    pub fn is_fresh(&self) -> bool {
        !self.served && self.is_idle()
    }

    /// Sets the deadline for the phase the connection waits in. Called only when it stops
    /// for now, so a request answered at once never touches the timer heap.
    fn arm(&mut self, sh: &mut Shared<A::Chunk>, slot: usize) {
        let t = &sh.timeouts;
        let limit = match self.phase {
            Phase::Idle if sh.draining => DRAIN_IDLE_GRACE,
            Phase::Idle if self.served => t.keep_alive,
            Phase::Idle | Phase::Head => t.header,
            Phase::Body(_) => t.body,
            Phase::Writing(_) | Phase::Refusing | Phase::Closing { .. } => t.write,
            Phase::Lingering { .. } => LINGER_TIME,
        };
        self.set_deadline(sh, slot, self.since + limit);
    }

    fn set_deadline(&mut self, sh: &mut Shared<A::Chunk>, slot: usize, when: Instant) {
        self.deadline = Some(when);
        if self.scheduled.is_none_or(|s| when < s) {
            sh.timers.push(when, slot, self.serial);
            self.scheduled = Some(when);
        }
    }

    /// Called when the deadline passed; the connection is closed right after.
    pub fn on_timeout(&mut self, sh: &mut Shared<A::Chunk>) {
        if let Phase::Writing(resp) = &self.phase {
            self.log_status(sh, resp.status);
        }
        if matches!(self.phase, Phase::Head | Phase::Body(_)) {
            sh.metrics.refused(408);
            self.log_status(sh, 408);
            // Best effort: one non-blocking write of the answer, then the close. It goes
            // after the rest of a `100 Continue` still queued, if any.
            let mut fresh: Output<A::Chunk> = Output::new();
            let out = match self.work.as_mut() {
                Some(work) => &mut work.out,
                None => &mut fresh,
            };
            write_refusal(out, 408, "request timed out", &sh.clock.date);
            let _ = out.write_to(&mut self.stream);
        }
    }

    /// Returns the connection's buffers to the pool. A response still held is left to be
    /// dropped with the connection, after its socket.
    pub fn release(&mut self, sh: &mut Shared<A::Chunk>) {
        if let Some(work) = self.work.take() {
            recycle(work, sh);
        }
    }

    pub fn drive(&mut self, app: &mut A, sh: &mut Shared<A::Chunk>, slot: usize) -> Drive {
        for _ in 0..STEP_BUDGET {
            let step = match self.phase {
                Phase::Writing(_) => self.write_response(app, sh),
                Phase::Refusing => self.write_refusal(sh),
                Phase::Lingering { .. } => self.linger(),
                Phase::Closing { .. } => Step::Close,
                Phase::Idle | Phase::Head | Phase::Body(_) => self.read_request(app, sh),
            };
            match step {
                Step::Continue => {
                    if self.pulled {
                        self.pulled = false;
                        if Instant::now().duration_since(sh.now) >= PULL_SLICE {
                            self.arm(sh, slot);
                            return Drive::Again;
                        }
                    }
                }
                Step::Wait => {
                    self.arm(sh, slot);
                    if matches!(self.phase, Phase::Idle)
                        && self.work.as_ref().is_some_and(|w| w.is_empty())
                    {
                        self.release(sh);
                    }
                    return Drive::Wait;
                }
                Step::Deferred => return Drive::Deferred,
                Step::Close => {
                    if let Phase::Writing(resp) = &self.phase {
                        // Cut short: the app failed mid-stream or the client went away.
                        self.log_status(sh, resp.status);
                    }
                    return Drive::Close;
                }
            }
        }
        self.arm(sh, slot);
        Drive::Again
    }

    fn read_request(&mut self, app: &mut A, sh: &mut Shared<A::Chunk>) -> Step {
        let work = self
            .work
            .get_or_insert_with(|| sh.pool.pop().unwrap_or_else(|| Box::new(Work::new())));
        // A `100 Continue` still on its way out.
        if !work.out.is_empty() && self.write_ready {
            match flush(&mut self.stream, &mut work.out, &mut self.write_ready) {
                Ok(()) => {}
                Err(_) => return Step::Close,
            }
        }
        if !matches!(self.phase, Phase::Body(_)) {
            if work.filled == 0 {
                return self.fill(sh);
            }
            if matches!(self.phase, Phase::Idle) {
                self.phase = Phase::Head;
                self.since = sh.now;
                self.request_start = sh.now;
            }
            let Some(work) = self.work.as_mut() else {
                return Step::Close;
            };
            match http1::parse_head(&work.rbuf[..work.filled], &sh.limits, &mut work.head) {
                Ok(false) => return self.fill(sh),
                Err(e) => return self.refuse(e.status, e.reason, sh),
                Ok(true) => {
                    self.phase = Phase::Body(BodyDecoder::new(work.head.body, sh.limits.max_body));
                    let wants_continue = work.head.expect_continue
                        && work.head.body != BodyKind::None
                        && work.head.body != BodyKind::Length(0)
                        && work.filled == work.head.len;
                    if wants_continue {
                        self.nagle.before_write(&self.stream);
                        work.out.push_bytes(b"HTTP/1.1 100 Continue\r\n\r\n");
                        if flush(&mut self.stream, &mut work.out, &mut self.write_ready).is_err() {
                            return Step::Close;
                        }
                    }
                    self.since = sh.now;
                }
            }
        }
        let Some(work) = self.work.as_mut() else {
            return Step::Close;
        };
        let Phase::Body(decoder) = &mut self.phase else {
            return Step::Close;
        };
        let start = work.head.len;
        let mut spill_error: Option<io::Error> = None;
        let progress = {
            let body = &mut work.body;
            let body_file = &mut work.body_file;
            let mut sink = |data: &[u8]| {
                if spill_error.is_some() {
                    return;
                }
                if let Err(e) = store_body(body, body_file, data) {
                    spill_error = Some(e);
                }
            };
            decoder.decode(&work.rbuf[start..work.filled], &mut sink)
        };
        if let Some(e) = spill_error {
            crate::log::error(&format!(
                "cannot spool a request body to a temporary file: {e}"
            ));
            return self.refuse(500, "cannot store the request body", sh);
        }
        let progress = match progress {
            Ok(p) => p,
            Err(e) => return self.refuse(e.status, e.reason, sh),
        };
        if progress.consumed > 0 {
            work.rbuf
                .copy_within(start + progress.consumed..work.filled, start);
            work.filled -= progress.consumed;
            if !progress.done {
                self.since = sh.now;
            }
        }
        if !progress.done {
            return self.fill(sh);
        }
        self.respond(app, sh);
        Step::Continue
    }

    /// Reads more request bytes, or says to wait for them.
    fn fill(&mut self, sh: &mut Shared<A::Chunk>) -> Step {
        let head_parsed = matches!(self.phase, Phase::Body(_));
        if self.eof {
            if head_parsed || self.work.as_ref().is_some_and(|w| w.filled > 0) {
                // The client went away with its request incomplete: nothing is answered,
                // but the log says what arrived (as a 400, the answer it could not get).
                self.log_status(sh, 400);
            }
            return Step::Close;
        }
        let Some(work) = self.work.as_mut() else {
            return Step::Close;
        };
        if !self.read_ready {
            if work.filled == 0 && !head_parsed {
                self.phase = Phase::Idle;
            }
            return Step::Wait;
        }
        let spare_wanted = if head_parsed { 16 * 1024 } else { 4 * 1024 };
        if work.rbuf.len() - work.filled < spare_wanted {
            let cap = if head_parsed {
                work.filled + 64 * 1024
            } else {
                // parse_head refuses heads over the limit, so this bounds the buffer.
                (sh.limits.max_head + 4096).max(work.rbuf.len())
            };
            let grown = (work.rbuf.len() * 2)
                .min(cap)
                .max(work.filled + spare_wanted.min(cap - work.filled));
            work.rbuf.resize(grown, 0);
        }
        let spare = work.rbuf.len() - work.filled;
        if spare == 0 {
            // Unreachable while parse_head enforces the head limit; never read into nothing.
            return self.refuse(431, "request head too large", sh);
        }
        match self.stream.read(&mut work.rbuf[work.filled..]) {
            Ok(0) => {
                self.eof = true;
                self.read_ready = false;
                if work.filled == 0 && !head_parsed {
                    return Step::Close;
                }
                Step::Continue
            }
            Ok(n) => {
                work.filled += n;
                if n < spare && !self.peer_closed {
                    // A short read means the socket is drained; the next byte brings an
                    // event. Not so for a FIN that came with the data: its event is spent,
                    // so keep reading until the read that returns 0.
                    self.read_ready = false;
                }
                Step::Continue
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.read_ready = false;
                if work.filled == 0 && !head_parsed {
                    self.phase = Phase::Idle;
                }
                Step::Wait
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Step::Continue,
            Err(_) => Step::Close,
        }
    }

    /// Queues an error answer; the connection closes once it is written.
    fn refuse(&mut self, status: u16, reason: &str, sh: &mut Shared<A::Chunk>) -> Step {
        sh.metrics.refused(status);
        self.log_status(sh, status);
        let Some(work) = self.work.as_mut() else {
            return Step::Close;
        };
        // Whatever is still queued is the rest of a `100 Continue` (earlier responses are
        // out before a request is read): it goes first, so the client sees a whole interim
        // response and then the refusal, never a mixture.
        write_refusal(&mut work.out, status, reason, &sh.clock.date);
        self.phase = Phase::Refusing;
        Step::Continue
    }

    /// Records a response answering the current request, with what is known of it: the
    /// parsed head once there is one, else what arrived.
    fn log_status(&self, sh: &mut Shared<A::Chunk>, status: u16) {
        let parsed = !matches!(self.phase, Phase::Idle | Phase::Head);
        self.record(sh, status, parsed);
    }

    /// A response in the metrics (`--metrics`) and the access log, when either is on; its
    /// duration, counted from the request's first byte, is read once for both. The method
    /// is the parsed head's, or before the head is parsed, what the request line begins with.
    fn record(&self, sh: &mut Shared<A::Chunk>, status: u16, parsed: bool) {
        let logging = sh.access_log.is_some();
        let (true, Some(work)) = (sh.count_metrics || logging, self.work.as_ref()) else {
            return;
        };
        let took = Instant::now().saturating_duration_since(self.request_start);
        if sh.count_metrics {
            let method = if parsed {
                work.head.method.of(&work.rbuf)
            } else {
                sniff_method(work.rbuf.get(..work.filled).unwrap_or_default())
            };
            let method = crate::metrics::method_index(method);
            sh.metrics.record(method, status, work.out.body_bytes, took);
        }
        if !logging {
            return;
        }
        if parsed {
            log_access(sh, &self.peer, work, status, took);
        } else {
            log_unparsed(sh, &self.peer, work, status);
        }
    }

    fn write_refusal(&mut self, sh: &mut Shared<A::Chunk>) -> Step {
        self.nagle.before_write(&self.stream);
        let Some(work) = self.work.as_mut() else {
            return Step::Close;
        };
        if flush(&mut self.stream, &mut work.out, &mut self.write_ready).is_err() {
            return Step::Close;
        }
        if !work.out.is_empty() {
            self.since = sh.now;
            return Step::Wait;
        }
        self.stream.shutdown_write();
        self.phase = Phase::Lingering { read: 0 };
        self.since = sh.now;
        Step::Continue
    }

    fn linger(&mut self) -> Step {
        let Phase::Lingering { read } = &mut self.phase else {
            return Step::Close;
        };
        let mut scratch = [0u8; 4096];
        loop {
            if *read > LINGER_BYTES {
                return Step::Close;
            }
            match self.stream.read(&mut scratch) {
                Ok(0) => return Step::Close,
                Ok(n) => *read += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
    }

    /// Runs the app on the complete request and queues the start of its reply.
    fn respond(&mut self, app: &mut A, sh: &mut Shared<A::Chunk>) {
        if self.serve_static(sh) {
            return;
        }
        let Some(work) = self.work.as_mut() else {
            return;
        };
        let body_len = match &self.phase {
            Phase::Body(decoder) => decoder.body_len(),
            _ => 0,
        };
        if let Some(f) = work.body_file.as_mut() {
            let _ = f.rewind();
        }
        let body = match work.body_file.as_ref() {
            Some(f) => RequestBody::File(f, body_len),
            None => RequestBody::Memory(&work.body),
        };
        let request = Request {
            buf: &work.rbuf[..work.head.len],
            head: &work.head,
            body,
        };
        sh.reply.reset();
        let peer = &self.peer;
        let session = self.session.get_or_insert_with(|| app.open_session(peer));
        let result = app.call(session, &request, &mut sh.reply);
        reply_ready(sh, &mut work.logged);
        sh.requests_served += 1;
        self.deadline = None;
        let head = &work.head;
        let is_head = head.method.of(&work.rbuf) == b"HEAD";
        let mut keep_alive = head.keep_alive && !draining(sh);
        let Called { stream, more } = match result {
            Ok(called) => called,
            Err(AppFailed) => {
                write_canned(
                    &mut work.out,
                    500,
                    "Internal Server Error\n",
                    keep_alive,
                    is_head,
                    &sh.clock.date,
                );
                self.phase = Phase::Writing(Responding {
                    stream: None,
                    more: false,
                    file: None,
                    framing: Framing::NoBody,
                    keep_alive,
                    status: 500,
                });
                return;
            }
        };
        let reply = &mut sh.reply;
        keep_alive &= !reply.close;
        let out = &mut work.out;
        let chunks_len: u64 = reply.chunks.iter().map(|c| c.as_ref().len() as u64).sum();
        let known_len: Option<u64> = match (&reply.file, more) {
            (Some(file), _) => Some(chunks_len + file.len),
            (None, false) => Some(chunks_len),
            (None, true) => None,
        };
        let from = out.own_buffer().len();
        let buf = out.own_buffer();
        buf.extend_from_slice(b"HTTP/1.1 ");
        buf.extend_from_slice(&reply.head);
        // A HEAD response's framing headers are the app's own or none: the body it
        // returned for HEAD (often empty) says nothing about the one a GET would get.
        let mut framing = if is_head || !http1::status_allows_body(reply.status) {
            Framing::NoBody
        } else if let Some(n) = reply.content_length {
            Framing::Length(n)
        } else if let Some(n) = known_len {
            buf.extend_from_slice(b"Content-Length: ");
            buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            buf.extend_from_slice(b"\r\n");
            Framing::Length(n)
        } else if head.version == Version::Http11 {
            buf.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            Framing::Chunked
        } else {
            keep_alive = false;
            Framing::Close
        };
        if !reply.has_date {
            buf.extend_from_slice(b"Date: ");
            buf.extend_from_slice(&sh.clock.date);
            buf.extend_from_slice(b"\r\n");
        }
        end_head(buf, keep_alive, head.version);
        out.commit_own(from);
        let mut more = more;
        let mut file = reply.file.take();
        if matches!(framing, Framing::NoBody) {
            reply.chunks.clear();
            more = false;
            file = None;
        }
        for chunk in reply.chunks.drain(..) {
            queue_chunk(out, &mut framing, chunk);
        }
        if let Framing::Length(0) = framing {
            // Content-Length reached: nothing more is pulled from the app.
            more = false;
            file = None;
        }
        if !more && file.is_none() {
            finish_framing(out, &mut framing, &mut keep_alive);
        }
        self.phase = Phase::Writing(Responding {
            stream,
            more,
            file,
            framing,
            keep_alive,
            status: reply.status,
        });
    }

    /// Answers a request under a `--static` mount (the app is not called); false when the
    /// request is not under one.
    fn serve_static(&mut self, sh: &mut Shared<A::Chunk>) -> bool {
        if sh.static_site.is_empty() {
            return false;
        }
        let Some(work) = self.work.as_mut() else {
            return false;
        };
        let keep_alive = work.head.keep_alive && !draining(sh);
        let Some(sent) = static_send::answer(&sh.static_site, work, &sh.clock.date, keep_alive)
        else {
            return false;
        };
        sh.requests_served += 1;
        self.deadline = None;
        let framing = match &sent.file {
            Some(file) => Framing::Length(file.len),
            None => Framing::NoBody,
        };
        self.phase = Phase::Writing(Responding {
            stream: None,
            more: false,
            file: sent.file,
            framing,
            keep_alive,
            status: sent.status,
        });
        true
    }

    fn write_response(&mut self, app: &mut A, sh: &mut Shared<A::Chunk>) -> Step {
        if sh.defer_writes && self.work.as_ref().is_some_and(|w| !w.out.is_empty()) {
            return Step::Deferred;
        }
        self.nagle.before_write(&self.stream);
        let (Some(work), Phase::Writing(resp)) = (self.work.as_mut(), &mut self.phase) else {
            return Step::Close;
        };
        let out = &mut work.out;
        if !out.is_empty() {
            // The connection closes once this is out, and nothing the client sent after
            // the request waits unread (close() would then reset instead, losing the
            // held segment).
            let last = !resp.keep_alive
                && !resp.more
                && resp.file.is_none()
                && !self.read_ready
                && work.filled <= work.head.len;
            let flushed = if last {
                flush(&mut Closing(&mut self.stream), out, &mut self.write_ready)
            } else {
                flush(&mut self.stream, out, &mut self.write_ready)
            };
            if flushed.is_err() {
                return Step::Close;
            }
            if !out.is_empty() {
                self.since = sh.now;
                return Step::Wait;
            }
        }
        if let Some(file) = resp.file.as_mut() {
            let want = match resp.framing {
                Framing::Length(left) => left.min(file.len),
                _ => file.len,
            };
            if want == 0 {
                resp.file = None;
                resp.more = false;
                finish_framing(out, &mut resp.framing, &mut resp.keep_alive);
                return Step::Continue;
            }
            if !self.write_ready {
                self.since = sh.now;
                return Step::Wait;
            }
            let count = want.min(SENDFILE_MAX as u64) as usize;
            return match rustix::fs::sendfile(
                &self.stream,
                &file.file,
                Some(&mut file.offset),
                count,
            ) {
                Ok(0) => {
                    // The file is shorter than announced: the body cannot be completed.
                    resp.file = None;
                    resp.more = false;
                    finish_framing(out, &mut resp.framing, &mut resp.keep_alive);
                    Step::Continue
                }
                Ok(n) => {
                    file.len -= n as u64;
                    out.body_bytes += n as u64;
                    if let Framing::Length(left) = &mut resp.framing {
                        *left -= n as u64;
                    }
                    if n < count {
                        self.write_ready = false;
                    }
                    self.since = sh.now;
                    Step::Continue
                }
                Err(rustix::io::Errno::AGAIN) => {
                    self.write_ready = false;
                    self.since = sh.now;
                    Step::Wait
                }
                Err(rustix::io::Errno::INTR) => Step::Continue,
                Err(_) => Step::Close,
            };
        }
        if let (true, Some(stream)) = (resp.more, resp.stream.as_mut()) {
            if let Framing::Length(0) = resp.framing {
                resp.more = false;
                return Step::Continue;
            }
            self.pulled = true;
            match app.pull(stream) {
                Pull::Chunk(chunk) => queue_chunk(out, &mut resp.framing, chunk),
                Pull::End => {
                    resp.more = false;
                    finish_framing(out, &mut resp.framing, &mut resp.keep_alive);
                }
                Pull::Failed => {
                    // Headers are out: cut the connection so the client sees the truncation.
                    return Step::Close;
                }
            }
            return Step::Continue;
        }
        self.finish_response(sh)
    }

    fn finish_response(&mut self, sh: &mut Shared<A::Chunk>) -> Step {
        if self.work.is_none() {
            return Step::Close;
        }
        let Phase::Writing(resp) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return Step::Close;
        };
        self.record(sh, resp.status, true);
        let Some(work) = self.work.as_mut() else {
            return Step::Close;
        };
        work.consume_request();
        // A response that promised keep-alive stays true to it even if a drain began while
        // it was written (its write deferred to the end of the turn, or slow): the
        // connection is then idle under a drain, with its grace, so the client's next
        // request is answered (with close) instead of meeting a closed socket.
        if !resp.keep_alive {
            self.phase = Phase::Closing { _held: resp.stream };
            return Step::Close;
        }
        self.served = true;
        self.since = sh.now;
        Step::Continue
    }
}

/// Whether the instance is draining, or is about to: a stop signal may have come while
/// the app ran, before the loop reads it (RFC 9112 9.6: a response produced after it
/// says `Connection: close`). The signal pipe is peeked only when the loop has been busy
/// for a while since it woke, so a fast request costs no system call.
fn draining<C>(sh: &Shared<C>) -> bool {
    sh.draining
        || (Instant::now().duration_since(sh.now) >= SIGNAL_PEEK_AFTER
            && sh.stop_signals.as_ref().is_some_and(byte_waiting))
}

/// Ends a response head with the `Connection` field the response's keep-alive and the
/// request's version call for, and the empty line.
fn end_head(buf: &mut Vec<u8>, keep_alive: bool, version: Version) {
    if !keep_alive {
        buf.extend_from_slice(b"Connection: close\r\n\r\n");
    } else if version == Version::Http10 {
        buf.extend_from_slice(b"Connection: keep-alive\r\n\r\n");
    } else {
        buf.extend_from_slice(b"\r\n");
    }
}

/// The first word of a request that was not parsed (empty lines before it skipped).
fn sniff_method(received: &[u8]) -> &[u8] {
    let start = received
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(received.len());
    let rest = &received[start..];
    let end = memchr::memchr(b' ', rest).unwrap_or(0);
    &rest[..end]
}

/// Writes queued bytes until done or the socket is full.
fn flush<C: AsRef<[u8]>, W: Write>(
    stream: &mut W,
    out: &mut Output<C>,
    write_ready: &mut bool,
) -> io::Result<()> {
    while !out.is_empty() && *write_ready {
        match out.write_to(stream) {
            Ok(_) => {
                if !out.is_empty() {
                    // A partial write means the socket buffer is full.
                    *write_ready = false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => *write_ready = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn queue_chunk<C: AsRef<[u8]>>(out: &mut Output<C>, framing: &mut Framing, chunk: C) {
    let len = chunk.as_ref().len();
    if len == 0 {
        return;
    }
    match framing {
        Framing::NoBody => {}
        Framing::Length(left) => {
            let take = (*left).min(len as u64);
            if take < len as u64 {
                log::warn(&format!(
                    "the app's body is longer than the Content-Length it set: {} bytes not sent",
                    len as u64 - take
                ));
            }
            *left -= take;
            out.body_bytes += take;
            out.push_chunk(chunk, take as usize);
        }
        Framing::Chunked => {
            let from = out.own_buffer().len();
            http1::write_chunk_size(len, out.own_buffer());
            out.commit_own(from);
            out.push_chunk(chunk, len);
            out.push_bytes(b"\r\n");
            out.body_bytes += len as u64;
        }
        Framing::Close => {
            out.push_chunk(chunk, len);
            out.body_bytes += len as u64;
        }
    }
}

/// The body is complete: end the chunked framing, or note a short Content-Length body.
fn finish_framing<C: AsRef<[u8]>>(
    out: &mut Output<C>,
    framing: &mut Framing,
    keep_alive: &mut bool,
) {
    match framing {
        Framing::Chunked => {
            out.push_bytes(http1::LAST_CHUNK);
            *framing = Framing::NoBody;
        }
        Framing::Length(left) if *left > 0 => {
            // Fewer bytes than the app announced: only closing tells the client.
            log::warn(&format!(
                "the app's body ended {left} bytes short of the Content-Length it set; \
                 the connection is closed so the client sees the response is incomplete"
            ));
            *keep_alive = false;
            *framing = Framing::NoBody;
        }
        Framing::Close => *keep_alive = false,
        _ => {}
    }
}
