//! The event loop of one instance: one mio `Poll`, a token per connection, edge-triggered.
//!
//! It reads requests with `http1`, hands complete ones to an [`App`], and writes the
//! replies back, pulling the next body chunk only when the previous one is written.
//! It must never touch Python (the app does, behind the `App` trait), never block on a
//! socket, and never wait for an event while a pipelined request sits in a buffer.

mod conn;
mod net;
mod output;
mod timers;

use std::io::{self, Read};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant, SystemTime};

use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::access_sink::AccessLog;
use crate::config::Timeouts;
use crate::contract::{Message, ALL_BUSY, HEARTBEAT_INTERVAL};
use crate::http1::{Head, Limits};
use crate::log;
use crate::metrics::http::{Answer, MetricsServer};
use crate::metrics::{self, Snapshot};

pub use net::{Listener, Peer};
pub use output::Output;

use conn::Conn;
use timers::Timers;

/// Stop signals that arrive within this of the first are the same stop delivered twice
/// (SIGTERM and SIGINT together, a terminal's Ctrl-C plus a wrapper forwarding it), not
/// a request to exit at once.
pub const SAME_STOP_WITHIN: Duration = Duration::from_millis(100);

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const REOPEN_SIGNALS: Token = Token(2);
const FIRST_CONN: usize = 3;

/// A request whose head and body have fully arrived.
pub struct Request<'a> {
    /// The bytes `head`'s spans point into.
    pub buf: &'a [u8],
    pub head: &'a Head,
    pub body: RequestBody<'a>,
}

pub enum RequestBody<'a> {
    Memory(&'a [u8]),
    /// A body too large to keep in memory, spooled to an anonymous file (rewound).
    File(&'a std::fs::File, u64),
}

/// A response body that is a real file, sent with `sendfile(2)`.
pub struct FileBody {
    pub file: std::fs::File,
    pub offset: u64,
    pub len: u64,
}

/// What the app produced for a request, before any byte is sent.
pub struct Reply<C> {
    pub status: u16,
    /// The status text and the app's header lines, each ending in CRLF:
    /// `200 OK\r\nContent-Type: text/plain\r\n`.
    pub head: Vec<u8>,
    /// The app's own Content-Length header, already in `head`.
    pub content_length: Option<u64>,
    /// The app asked for `Connection: close`.
    pub close: bool,
    /// The app sent its own Date header.
    pub has_date: bool,
    /// Body chunks already produced (all of them when the stream is `None`).
    pub chunks: Vec<C>,
    /// A file to send after `chunks`, instead of pulling the stream.
    pub file: Option<FileBody>,
}

impl<C> Reply<C> {
    fn new() -> Self {
        Reply {
            status: 0,
            head: Vec::with_capacity(256),
            content_length: None,
            close: false,
            has_date: false,
            chunks: Vec::with_capacity(4),
            file: None,
        }
    }

    fn reset(&mut self) {
        self.status = 0;
        self.head.clear();
        self.content_length = None;
        self.close = false;
        self.has_date = false;
        self.chunks.clear();
        self.file = None;
    }
}

/// The next piece of a streamed response.
pub enum Pull<C> {
    Chunk(C),
    End,
    /// The app raised after the headers went out: the connection is cut.
    Failed,
}

/// The app failed before producing a response; the server answers 500.
pub struct AppFailed;

/// What `App::call` hands back besides the reply.
pub struct Called<S> {
    /// Released (dropped) once the response is completely sent or abandoned.
    pub stream: Option<S>,
    /// Whether more chunks are to be pulled from `stream`; when false, `Reply::chunks`
    /// (and `Reply::file`) hold the whole body.
    pub more: bool,
}

/// What the server calls. Dropping a `Stream` must release it (WSGI: call `close()`).
pub trait App {
    type Chunk: AsRef<[u8]>;
    type Stream;
    /// What the app keeps for one connection, across its requests.
    type Session;

    /// Called before a connection's first request.
    fn open_session(&mut self, peer: &Peer) -> Self::Session;

    /// Runs the app for one request, filling `reply`.
    fn call(
        &mut self,
        session: &mut Self::Session,
        request: &Request<'_>,
        reply: &mut Reply<Self::Chunk>,
    ) -> Result<Called<Self::Stream>, AppFailed>;

    /// Pulls the next chunk of a streamed body.
    fn pull(&mut self, stream: &mut Self::Stream) -> Pull<Self::Chunk>;

    /// Runs `f` (the wait for events) with the app's lock released.
    fn unlocked<R: Send, F: FnOnce() -> R + Send>(&mut self, f: F) -> R;
}

pub struct Settings {
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub max_connections: usize,
    /// Other instances accept from the same listening socket. All of them wake for a
    /// burst of connections, and each should take its share instead of the first one
    /// draining the queue (keep-alive would then pin every connection to it): see
    /// `AcceptGate`.
    pub shares_listener: bool,
    pub access_log: Option<AccessLog>,
    /// Where heartbeats go when a launcher supervises this instance.
    pub heartbeat: Option<UnixDatagram>,
    /// Read end of the pipe the stop-signal handlers write to.
    pub signals: std::os::unix::net::UnixStream,
    /// `--static` mounts, answered without the app.
    pub static_site: crate::static_files::StaticSite,
    /// Read end of the pipe the SIGUSR1 handler writes to: reopen the log files.
    pub reopen_signals: Option<std::os::unix::net::UnixStream>,
    /// Send the metrics counters to the launcher beside the heartbeat (`--metrics`).
    pub report_stats: bool,
    /// `--metrics` of an instance run alone: served from this loop.
    pub metrics_listener: Option<std::net::TcpListener>,
}

/// The `Date` header value and the access-log time, remade once a second.
pub(crate) struct Clock {
    second: u64,
    date: Vec<u8>,
    log_time: String,
}

impl Clock {
    fn new() -> Self {
        let mut clock = Clock {
            second: u64::MAX,
            date: Vec::new(),
            log_time: String::new(),
        };
        clock.tick();
        clock
    }

    fn tick(&mut self) {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if second == self.second {
            return;
        }
        self.second = second;
        let text = httpdate::fmt_http_date(now);
        self.date.clear();
        self.date.extend_from_slice(text.as_bytes());
        // "Sun, 22 Nov 2026 03:05:19 GMT" -> "22/Nov/2026:03:05:19 +0000"
        self.log_time = match (
            text.get(5..7),
            text.get(8..11),
            text.get(12..16),
            text.get(17..25),
        ) {
            (Some(d), Some(m), Some(y), Some(t)) => format!("{d}/{m}/{y}:{t} +0000"),
            _ => text,
        };
    }
}

/// State every connection's handling shares.
pub(crate) struct Shared<C> {
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub clock: Clock,
    pub now: Instant,
    pub timers: Timers,
    /// Boxed so a connection holds one pointer, and moving buffers in and out is cheap.
    #[allow(clippy::vec_box)]
    pub pool: Vec<Box<conn::Work<C>>>,
    pub reply: Reply<C>,
    pub access_log: Option<AccessLog>,
    pub draining: bool,
    /// The stop-signal pipe, peeked so a response after a signal not yet read says close.
    pub stop_signals: Option<std::os::fd::OwnedFd>,
    pub requests_served: u64,
    /// `--static` mounts, answered without the app.
    pub static_site: crate::static_files::StaticSite,
    /// While the loop handles a turn's events, responses are queued and written together
    /// at the end of the turn: a client with several connections, or an nginx worker,
    /// then wakes once for the turn's answers instead of once per answer. A turn with one
    /// ready connection writes as soon as its answer is made, as before.
    pub defer_writes: bool,
    /// The metrics counters, bumped where responses and refusals happen.
    pub metrics: Snapshot,
    /// Responses are counted in `metrics` (`--metrics` is on): off, a response costs them
    /// nothing.
    pub count_metrics: bool,
    /// This process's id, for access-log lines (read once: `getpid` is a system call).
    pub pid: u32,
}

/// Serves until a stop signal and the drain after it. Returns once every connection is
/// closed (or the graceful timeout ran out).
pub fn run<A: App>(app: &mut A, listener: Listener, mut settings: Settings) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut app = Beating {
        app,
        heartbeat: Heartbeat::new(settings.heartbeat.take()),
    };
    let mut state = LoopState::new(&poll, listener, settings)?;
    loop {
        state.flush_access_log();
        if state.drained() {
            break;
        }
        let timeout = state.poll_timeout(app.heartbeat.socket.is_some());
        // Only a supervised instance measures its waits (one clock read per loop turn).
        let waiting_since = app.heartbeat.socket.is_some().then(Instant::now);
        let polled = app.unlocked(|| poll.poll(&mut events, timeout));
        if let Err(e) = polled {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        state.woke();
        if let Some(since) = waiting_since {
            app.heartbeat.waited += state.shared.now.saturating_duration_since(since);
        }
        state.beat(&mut app.heartbeat);
        state.shared.defer_writes = events.iter().nth(1).is_some();
        for event in events.iter() {
            if let Flow::Exit = state.on_event(&mut app, event, poll.registry()) {
                return Ok(());
            }
        }
        state.drive_again(&mut app);
        state.write_deferred(&mut app);
        state.expire_timers();
        state.accept(&mut app, poll.registry());
    }
    state.finish();
    Ok(())
}

/// The heartbeat to the launcher, when one supervises this instance.
struct Heartbeat {
    socket: Option<UnixDatagram>,
    last: Option<Instant>,
    /// Requests served and connections open, as of the loop's last wake-up.
    requests: u64,
    connections: u64,
    /// Time spent waiting in poll() since the last heartbeat (one clock read per loop
    /// turn, none per request).
    waited: Duration,
    /// When counting `waited` began: the previous heartbeat, or the start.
    since: Instant,
}

impl Heartbeat {
    fn new(socket: Option<UnixDatagram>) -> Self {
        Heartbeat {
            socket,
            last: None,
            requests: 0,
            connections: 0,
            waited: Duration::ZERO,
            since: Instant::now(),
        }
    }

    /// Thousandths of the time since the last heartbeat the loop did not wait in poll().
    fn busy_permille(&self, now: Instant) -> u16 {
        let span = now.saturating_duration_since(self.since).as_micros();
        if span == 0 {
            return 0;
        }
        let waited = self.waited.as_micros().min(span);
        let busy = (span - waited) * u128::from(ALL_BUSY) / span;
        u16::try_from(busy).unwrap_or(ALL_BUSY)
    }

    /// Sends a heartbeat unless one went out less than `HEARTBEAT_INTERVAL` before `now`;
    /// whether it did.
    fn beat_if_due(&mut self, now: Instant) -> bool {
        let Some(socket) = &self.socket else {
            return false;
        };
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < HEARTBEAT_INTERVAL)
        {
            return false;
        }
        let message = Message::Heartbeat {
            requests: self.requests,
            connections: self.connections,
            busy_permille: self.busy_permille(now),
        };
        let _ = socket.send(message.encode().as_bytes());
        self.last = Some(now);
        self.since = now;
        self.waited = Duration::ZERO;
        true
    }
}

/// The app, with the heartbeat checked just before each request runs: a request that gets
/// stuck started at most `HEARTBEAT_INTERVAL` after the last heartbeat, so the launcher,
/// which waits `--timeout` plus that interval, never kills it early. The check reads the
/// clock (no system call); a heartbeat goes out at most twice a second.
struct Beating<'a, A> {
    app: &'a mut A,
    heartbeat: Heartbeat,
}

impl<A: App> App for Beating<'_, A> {
    type Chunk = A::Chunk;
    type Stream = A::Stream;
    type Session = A::Session;

    #[inline]
    fn open_session(&mut self, peer: &Peer) -> Self::Session {
        self.app.open_session(peer)
    }

    #[inline]
    fn call(
        &mut self,
        session: &mut Self::Session,
        request: &Request<'_>,
        reply: &mut Reply<Self::Chunk>,
    ) -> Result<Called<Self::Stream>, AppFailed> {
        if self.heartbeat.socket.is_some() {
            let _ = self.heartbeat.beat_if_due(Instant::now());
        }
        self.app.call(session, request, reply)
    }

    #[inline]
    fn pull(&mut self, stream: &mut Self::Stream) -> Pull<Self::Chunk> {
        self.app.pull(stream)
    }

    #[inline]
    fn unlocked<R: Send, F: FnOnce() -> R + Send>(&mut self, f: F) -> R {
        self.app.unlocked(f)
    }
}

/// Whether the loop goes on after an event.
enum Flow {
    Continue,
    /// A second stop signal: exit without waiting for the connections.
    Exit,
}

/// Everything the event loop keeps between turns, except the poller and its event buffer.
struct LoopState<A: App> {
    listener: Option<Listener>,
    signals: mio::net::UnixStream,
    reopen_signals: Option<mio::net::UnixStream>,
    conns: Slab<Conn<A>>,
    shared: Shared<A::Chunk>,
    max_connections: usize,
    gate: AcceptGate,
    listener_ready: bool,
    accept_paused_until: Option<Instant>,
    /// Out of descriptors: said once per episode, not on every retry.
    starved_logged: bool,
    drain_deadline: Option<Instant>,
    /// When the (first) stop signal was read.
    stop_at: Option<Instant>,
    serial: u64,
    /// Connections with work left that no event will announce (a step budget ran out).
    again: Vec<usize>,
    again_next: Vec<usize>,
    /// Connections whose queued response waits for the end of the turn: slot, serial.
    deferred: Vec<(usize, u64)>,
    /// `--metrics`: the counters go to the launcher with each heartbeat of the loop.
    report_stats: bool,
    metrics_server: Option<MetricsServer>,
}

impl<A: App> LoopState<A> {
    fn new(poll: &Poll, listener: Listener, settings: Settings) -> io::Result<Self> {
        let mut listener = listener;
        listener.register(poll.registry(), LISTENER)?;
        settings.signals.set_nonblocking(true)?;
        let mut signals = mio::net::UnixStream::from_std(settings.signals);
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let stop_signals = rustix::io::fcntl_dupfd_cloexec(&signals, 0).ok();
        let reopen_signals = match settings.reopen_signals {
            Some(pipe) => Some(watch_reopen_signals(poll, pipe)?),
            None => None,
        };
        let metrics_server = match settings.metrics_listener {
            Some(l) => Some(MetricsServer::from_std(l, poll.registry()).map_err(io::Error::other)?),
            None => None,
        };
        Ok(LoopState {
            listener: Some(listener),
            signals,
            reopen_signals,
            conns: Slab::with_capacity(1024),
            shared: Shared {
                limits: settings.limits,
                timeouts: settings.timeouts,
                clock: Clock::new(),
                now: Instant::now(),
                timers: Timers::default(),
                pool: Vec::new(),
                reply: Reply::new(),
                access_log: settings.access_log,
                draining: false,
                stop_signals,
                requests_served: 0,
                static_site: settings.static_site,
                defer_writes: false,
                metrics: Snapshot::default(),
                count_metrics: settings.report_stats || metrics_server.is_some(),
                pid: std::process::id(),
            },
            max_connections: settings.max_connections,
            gate: AcceptGate::new(settings.shares_listener),
            listener_ready: true,
            accept_paused_until: None,
            starved_logged: false,
            drain_deadline: None,
            stop_at: None,
            serial: 0,
            again: Vec::new(),
            again_next: Vec::new(),
            deferred: Vec::new(),
            report_stats: settings.report_stats,
            metrics_server,
        })
    }

    /// Tells the launcher the loop turns, at most once per `HEARTBEAT_INTERVAL`, with the
    /// metrics counters (`--metrics`) beside the heartbeat.
    fn beat(&self, heartbeat: &mut Heartbeat) {
        heartbeat.requests = self.shared.requests_served;
        heartbeat.connections = self.conns.len() as u64;
        if !heartbeat.beat_if_due(self.shared.now) || !self.report_stats {
            return;
        }
        if let Some(socket) = &heartbeat.socket {
            let _ = socket.send(Message::Stats(self.snapshot()).encode().as_bytes());
        }
    }

    /// The counters as of now, with the gauges filled in.
    fn snapshot(&self) -> Snapshot {
        let mut s = self.shared.metrics;
        s.open = self.conns.len() as u64;
        s.in_flight = self.conns.iter().filter(|(_, c)| !c.is_idle()).count() as u64;
        s
    }

    /// An event on the `--metrics` listener of an instance run alone.
    fn serve_metrics(&mut self, registry: &mio::Registry) {
        let snapshot = self.snapshot();
        let Some(server) = self.metrics_server.as_mut() else {
            return;
        };
        server.serve(registry, |path| match path {
            "/metrics" => {
                let mut out = metrics::Exposition::default();
                metrics::render_instances(&mut out, &[("0".to_string(), snapshot)]);
                Answer::ok(metrics::CONTENT_TYPE, out.finish())
            }
            _ => Answer::not_found(),
        });
    }

    fn flush_access_log(&mut self) {
        if let Some(log) = self.shared.access_log.as_mut() {
            log.flush();
        }
    }

    /// Draining, and every connection is closed or the graceful timeout ran out.
    fn drained(&self) -> bool {
        self.shared.draining
            && (self.conns.is_empty() || self.drain_deadline.is_some_and(|d| self.shared.now >= d))
    }

    /// How long poll() may wait: until the next timer, at most a heartbeat interval, and
    /// not at all when work is waiting.
    fn poll_timeout(&mut self, beating: bool) -> Option<Duration> {
        let mut wake = self.shared.timers.next();
        for t in [self.accept_paused_until, self.drain_deadline]
            .into_iter()
            .flatten()
        {
            wake = Some(wake.map_or(t, |w| w.min(t)));
        }
        let mut timeout = wake.map(|w| w.saturating_duration_since(Instant::now()));
        if beating {
            timeout = Some(timeout.map_or(HEARTBEAT_INTERVAL, |t| t.min(HEARTBEAT_INTERVAL)));
        }
        let holding = self.gate.holding(&self.conns, self.shared.now);
        if let Some(until) = holding {
            let left = until.saturating_duration_since(self.shared.now);
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        let may_accept = self.listener.is_some()
            && self.listener_ready
            && holding.is_none()
            && self.accept_paused_until.is_none()
            && self.conns.len() < self.max_connections;
        if !self.again.is_empty() || may_accept {
            timeout = Some(Duration::ZERO);
        }
        timeout
    }

    /// Right after poll() returns.
    fn woke(&mut self) {
        self.shared.now = Instant::now();
        self.shared.clock.tick();
    }

    fn on_event(
        &mut self,
        app: &mut A,
        event: &mio::event::Event,
        registry: &mio::Registry,
    ) -> Flow {
        match event.token() {
            LISTENER => self.listener_ready = true,
            SIGNALS => {
                if read_signals(&mut self.signals) {
                    return self.on_stop_signal(registry);
                }
            }
            REOPEN_SIGNALS => {
                if self.reopen_signals.as_mut().is_some_and(read_signals) {
                    self.reopen_logs();
                }
            }
            token if MetricsServer::owns(token) => self.serve_metrics(registry),
            Token(t) => {
                let slot = t - FIRST_CONN;
                let Some(conn) = self.conns.get_mut(slot) else {
                    return Flow::Continue;
                };
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    conn.read_ready = true;
                }
                if event.is_read_closed() || event.is_error() {
                    conn.peer_closed = true;
                }
                if event.is_writable() || event.is_write_closed() || event.is_error() {
                    conn.write_ready = true;
                }
                self.drive(app, slot);
            }
        }
        Flow::Continue
    }

    /// SIGUSR1, between requests: the log files are opened again by name (after a rotation).
    fn reopen_logs(&mut self) {
        let reopened = match self.shared.access_log.as_mut().map(AccessLog::reopen) {
            Some(Err(e)) => Err(e),
            _ => Ok(()),
        };
        log::reopen_files();
        match reopened {
            Ok(()) => log::info("SIGUSR1: log files reopened"),
            Err(e) => log::error(&e),
        }
    }

    /// The first stop signal starts the drain; signals read together with it, or soon
    /// after, are the same stop; a later one exits at once.
    fn on_stop_signal(&mut self, registry: &mio::Registry) -> Flow {
        let now = self.shared.now;
        if let Some(first) = self.stop_at {
            if now.saturating_duration_since(first) >= SAME_STOP_WITHIN {
                log::info("second stop signal: exiting now");
                return Flow::Exit;
            }
            return Flow::Continue;
        }
        self.stop_at = Some(now);
        let in_flight = self.conns.iter().filter(|(_, c)| !c.is_idle()).count();
        log::info(&format!(
            "stop signal: no longer accepting; waiting up to {}s for {}",
            self.shared.timeouts.graceful.as_secs(),
            log::count(in_flight, "in-flight request", "in-flight requests")
        ));
        self.shared.draining = true;
        self.drain_deadline = Some(now + self.shared.timeouts.graceful);
        if let Some(mut l) = self.listener.take() {
            let _ = l.deregister(registry);
        }
        for (slot, conn) in self.conns.iter_mut() {
            conn.begin_drain(&mut self.shared, slot);
        }
        Flow::Continue
    }

    /// Moves one connection on; one that runs out of its step budget goes again next turn.
    fn drive(&mut self, app: &mut A, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        match conn.drive(app, &mut self.shared, slot) {
            conn::Drive::Wait => {}
            conn::Drive::Again => self.again_next.push(slot),
            conn::Drive::Deferred => self.deferred.push((slot, conn.serial)),
            conn::Drive::Close => close_conn(&mut self.conns, &mut self.shared, slot),
        }
    }

    /// Writes the responses deferred during this turn's events, each connection then going
    /// on as far as it can (a pipelined request next in its buffer is answered at once).
    fn write_deferred(&mut self, app: &mut A) {
        self.shared.defer_writes = false;
        for (slot, serial) in std::mem::take(&mut self.deferred) {
            if self.conns.get(slot).is_some_and(|c| c.serial == serial) {
                self.drive(app, slot);
            }
        }
    }

    /// Connections whose step budget ran out in the previous turn.
    fn drive_again(&mut self, app: &mut A) {
        for slot in std::mem::take(&mut self.again) {
            if self.conns.contains(slot) {
                self.drive(app, slot);
            }
        }
        std::mem::swap(&mut self.again, &mut self.again_next);
    }

    /// Closes the connections whose deadline passed; re-arms the ones whose moved.
    fn expire_timers(&mut self) {
        let shared = &mut self.shared;
        while let Some((_, slot, conn_serial)) = shared.timers.pop_due(shared.now) {
            let Some(conn) = self.conns.get_mut(slot) else {
                continue;
            };
            if conn.serial != conn_serial {
                continue;
            }
            conn.scheduled = None;
            match conn.deadline {
                Some(d) if d <= shared.now => {
                    conn.on_timeout(shared);
                    close_conn(&mut self.conns, shared, slot);
                }
                Some(d) => {
                    conn.scheduled = Some(d);
                    shared.timers.push(d, slot, conn_serial);
                }
                None => {}
            }
        }
    }

    /// Accepts up to `ACCEPT_BATCH` connections and serves each as far as it goes.
    fn accept(&mut self, app: &mut A, registry: &mio::Registry) {
        if self
            .accept_paused_until
            .is_some_and(|t| self.shared.now >= t)
        {
            self.accept_paused_until = None;
            self.listener_ready = true;
        }
        let Some(listener) = self.listener.as_mut() else {
            return;
        };
        let mut accepted = 0;
        while self.listener_ready
            && self.gate.holding(&self.conns, self.shared.now).is_none()
            && self.accept_paused_until.is_none()
            && self.conns.len() < self.max_connections
            && accepted < ACCEPT_BATCH
        {
            accepted += 1;
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.shared.metrics.accepted += 1;
                    self.starved_logged = false;
                    self.serial += 1;
                    let conn = Conn::new(stream, peer, self.serial, self.shared.now);
                    let slot = self.conns.insert(conn);
                    serve_new(
                        app,
                        &mut self.conns,
                        &mut self.shared,
                        slot,
                        registry,
                        &mut self.again,
                    );
                    self.gate.accepted(slot, self.serial, self.shared.now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listener_ready = false;
                    self.gate.drained();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_out_of_resources(&e) => {
                    if !self.starved_logged {
                        log::warn(&format!(
                            "cannot accept more connections ({e}) with {} open; retrying every 100 ms",
                            self.conns.len()
                        ));
                        self.starved_logged = true;
                    }
                    self.accept_paused_until = Some(self.shared.now + Duration::from_millis(100));
                }
                // The peer went away between SYN and accept, or similar: try the next.
                Err(_) => {}
            }
        }
    }

    /// Dropping the connections releases every response still in progress.
    fn finish(&mut self) {
        self.conns.clear();
        if let Some(log) = self.shared.access_log.as_mut() {
            log.flush();
        }
    }
}

fn watch_reopen_signals(
    poll: &Poll,
    pipe: std::os::unix::net::UnixStream,
) -> io::Result<mio::net::UnixStream> {
    pipe.set_nonblocking(true)?;
    let mut pipe = mio::net::UnixStream::from_std(pipe);
    poll.registry()
        .register(&mut pipe, REOPEN_SIGNALS, Interest::READABLE)?;
    Ok(pipe)
}

/// Reads what the signal handlers wrote; whether any signal arrived.
fn read_signals(signals: &mut mio::net::UnixStream) -> bool {
    let mut buf = [0u8; 16];
    let mut any = false;
    // Bounded: a signal storm cannot keep the loop here.
    for _ in 0..64 {
        match signals.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => any = true,
        }
    }
    any
}

/// Connections accepted per loop turn at most.
const ACCEPT_BATCH: usize = 64;
/// How long an instance sharing its listener waits for the connection it accepted last
/// to send something before it accepts another.
const FRESH_HOLD: Duration = Duration::from_millis(1);
/// Holds in a row that ran out on a silent connection before holding stops until the
/// accept queue is empty: a flood of connections that send nothing must not slow
/// accepting down to one per `FRESH_HOLD`, with real clients queued behind it.
const SILENT_HOLDS_MAX: u32 = 4;

/// When an instance sharing its listening socket may accept: not while the connection it
/// accepted last is open and silent (for at most `FRESH_HOLD`), so that taking a
/// connection costs the time to serve its first request and an idle instance gets the
/// next one.
struct AcceptGate {
    enabled: bool,
    /// The connection accepted last, while it may hold the gate: slot, serial, until.
    fresh: Option<(usize, u64, Instant)>,
    silent_holds: u32,
}

impl AcceptGate {
    fn new(shares_listener: bool) -> Self {
        AcceptGate {
            enabled: shares_listener,
            fresh: None,
            silent_holds: 0,
        }
    }

    /// Until when accepting waits, if it does.
    fn holding<A: App>(&mut self, conns: &Slab<Conn<A>>, now: Instant) -> Option<Instant> {
        let (slot, serial, until) = self.fresh?;
        let silent = conns
            .get(slot)
            .is_some_and(|c| c.serial == serial && c.is_fresh());
        if silent && now < until {
            return Some(until);
        }
        self.fresh = None;
        if silent {
            self.silent_holds += 1;
        } else {
            self.silent_holds = 0;
        }
        None
    }

    fn accepted(&mut self, slot: usize, serial: u64, now: Instant) {
        if self.enabled && self.silent_holds < SILENT_HOLDS_MAX {
            self.fresh = Some((slot, serial, now + FRESH_HOLD));
        }
    }

    /// The accept queue is empty.
    fn drained(&mut self) {
        self.silent_holds = 0;
    }
}

fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
            || code == rustix::io::Errno::NFILE.raw_os_error()
            || code == rustix::io::Errno::NOBUFS.raw_os_error()
            || code == rustix::io::Errno::NOMEM.raw_os_error()
    )
}

/// Serves a connection just accepted as far as it goes, and only then watches it: one
/// answered at once and closed (`Connection: close`) never costs the poller anything.
/// Registering after the reads is safe with edge-triggered readiness: registration
/// reports what is already pending.
fn serve_new<A: App>(
    app: &mut A,
    conns: &mut Slab<Conn<A>>,
    shared: &mut Shared<A::Chunk>,
    slot: usize,
    registry: &mio::Registry,
    again: &mut Vec<usize>,
) {
    let Some(conn) = conns.get_mut(slot) else {
        return;
    };
    let drive = conn.drive(app, shared, slot);
    if matches!(drive, conn::Drive::Close) {
        close_conn(conns, shared, slot);
        return;
    }
    if let Err(e) = conn.register(registry, Token(slot + FIRST_CONN)) {
        log::warn(&format!("cannot watch a new connection: {e}"));
        close_conn(conns, shared, slot);
        return;
    }
    if matches!(drive, conn::Drive::Again | conn::Drive::Deferred) {
        again.push(slot);
    }
}

/// Closing the socket also removes it from the poller (it is never duplicated), so no
/// separate deregistration call is spent per connection.
fn close_conn<A: App>(conns: &mut Slab<Conn<A>>, shared: &mut Shared<A::Chunk>, slot: usize) {
    if let Some(mut conn) = conns.try_remove(slot) {
        conn.release(shared);
    }
}

#[cfg(test)]
mod heartbeat_tests {
    use super::*;

    #[test]
    fn the_busy_share_is_the_time_not_spent_waiting_in_poll() {
        let mut beat = Heartbeat::new(None);
        let start = beat.since;
        beat.waited = Duration::from_millis(100);
        assert_eq!(beat.busy_permille(start + Duration::from_millis(400)), 750);
        beat.waited = Duration::ZERO;
        assert_eq!(beat.busy_permille(start + HEARTBEAT_INTERVAL), ALL_BUSY);
        // More waiting than time (clock granularity) is idle, never an underflow.
        beat.waited = Duration::from_secs(5);
        assert_eq!(beat.busy_permille(start + Duration::from_secs(1)), 0);
        assert_eq!(beat.busy_permille(start), 0);
    }
}
