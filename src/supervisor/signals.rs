//! The launcher's signals, delivered as bytes on one socket per signal.
//!
//! The handlers (installed by signal-hook) only write a byte; the launcher's loop reads and
//! counts them. Nothing here runs launcher logic in a signal handler.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1};

/// What the launcher does on a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM or SIGINT: drain every instance and exit.
    Stop,
    /// SIGHUP: rolling reload.
    Reload,
    /// SIGTTIN: one more instance (`--workers` mode).
    AddInstance,
    /// SIGTTOU: one instance fewer (`--workers` mode).
    RemoveInstance,
    /// SIGCHLD: a child changed state; the loop reaps on every turn anyway.
    ChildExited,
    /// SIGUSR1: reopen the log files here and in every instance (after a rotation).
    ReopenLogs,
}

const HANDLED: [(i32, Request); 7] = [
    (SIGTERM, Request::Stop),
    (SIGINT, Request::Stop),
    (SIGHUP, Request::Reload),
    (SIGTTIN, Request::AddInstance),
    (SIGTTOU, Request::RemoveInstance),
    (SIGCHLD, Request::ChildExited),
    (SIGUSR1, Request::ReopenLogs),
];

/// What the launcher does on `signal`; `None` for a signal it does not handle.
pub fn handled(signal: i32) -> Option<Request> {
    HANDLED
        .iter()
        .find(|(s, _)| *s == signal)
        .map(|(_, request)| *request)
}

/// Read ends of the signal sockets, one per handled signal.
pub struct Signals {
    readers: Vec<(UnixStream, Request)>,
}

impl Signals {
    /// Installs the handlers. Each signal writes to its own socket so none is mistaken for another.
    pub fn install() -> io::Result<Signals> {
        let mut readers = Vec::with_capacity(HANDLED.len());
        for (signal, request) in HANDLED {
            let (reader, writer) = UnixStream::pair()?;
            reader.set_nonblocking(true)?;
            signal_hook::low_level::pipe::register(signal, writer)?;
            readers.push((reader, request));
        }
        Ok(Signals { readers })
    }

    pub fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.readers.iter().map(|(r, _)| r.as_raw_fd())
    }

    /// The requests that arrived since the last call, one per signal received (signals of one
    /// kind that arrive together may count once).
    pub fn drain(&mut self) -> Vec<Request> {
        let mut requests = Vec::new();
        let mut buf = [0u8; 64];
        for (reader, request) in &mut self.readers {
            // Bounded: a signal storm cannot keep the loop here.
            for _ in 0..16 {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => requests.extend(std::iter::repeat_n(*request, n)),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        }
        requests
    }
}
