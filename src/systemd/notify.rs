//! `sd_notify`: READY, RELOADING, STOPPING, STATUS, MAINPID and WATCHDOG messages to the
//! socket named by `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
//!
//! The messages are written by `sd-notify`'s `NotifyState`; the sending is here because that
//! crate's `notify` cannot reach an abstract socket. Without `NOTIFY_SOCKET` nothing is
//! ever sent. A failed send is said once and never stops the server.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::contract::HEARTBEAT_INTERVAL;
use crate::log;

const ENV_NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
const ENV_WATCHDOG_USEC: &str = "WATCHDOG_USEC";
const ENV_WATCHDOG_PID: &str = "WATCHDOG_PID";

/// Where notifications go, and the watchdog's rhythm; does nothing when disabled.
pub struct Notifier {
    target: Option<Target>,
    /// `WatchdogSec=`: ping at half of it.
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
    /// How much earlier than half the interval a ping may go: a ping that can only follow
    /// a heartbeat must not wait a whole heartbeat interval past it.
    slack: Duration,
    /// RELOADING=1 was sent and READY=1 has not followed yet.
    reloading: bool,
}

struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// A send failed and was reported: later failures stay quiet.
    failed: bool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, and removes them so the
    /// processes this one starts never notify in its name. Call before any thread starts.
    pub fn from_env() -> Notifier {
        let watchdog = sd_notify::watchdog_enabled();
        let path = std::env::var_os(ENV_NOTIFY_SOCKET);
        for var in [ENV_NOTIFY_SOCKET, ENV_WATCHDOG_USEC, ENV_WATCHDOG_PID] {
            std::env::remove_var(var);
        }
        let Some(path) = path else {
            return Notifier::disabled();
        };
        let target = match Target::open(path.as_bytes()) {
            Ok(target) => target,
            Err(e) => {
                log::warn(&format!(
                    "NOTIFY_SOCKET={}: {e}; systemd will not hear from evserve",
                    path.to_string_lossy()
                ));
                return Notifier::disabled();
            }
        };
        Notifier {
            target: Some(target),
            watchdog: watchdog.filter(|d| !d.is_zero()),
            last_ping: None,
            slack: Duration::ZERO,
            reloading: false,
        }
    }

    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
            last_ping: None,
            slack: Duration::ZERO,
            reloading: false,
        }
    }

    /// Start-up is complete: READY=1, with `status` and this process as the main pid.
    pub fn ready(&mut self, status: &str) {
        self.reloading = false;
        self.send(&[
            NotifyState::Ready,
            NotifyState::Status(&one_line(status)),
            NotifyState::MainPid(std::process::id()),
        ]);
    }

    /// A reload starts: RELOADING=1 with the monotonic time systemd >= 253 asks for. Sent
    /// once per reload, however many SIGHUPs come during it.
    pub fn reloading(&mut self, status: &str) {
        if self.reloading {
            self.status(status);
            return;
        }
        self.reloading = true;
        let now = sd_notify::NotifyState::monotonic_usec_now();
        let mut states = vec![NotifyState::Reloading];
        if let Ok(usec) = now {
            states.push(usec);
        }
        let status = one_line(status);
        states.push(NotifyState::Status(&status));
        self.send(&states);
    }

    /// RELOADING=1 was sent and READY=1 has not followed.
    pub fn is_reloading(&self) -> bool {
        self.reloading
    }

    /// The service stops: STOPPING=1.
    pub fn stopping(&mut self, status: &str) {
        self.reloading = false;
        self.send(&[
            NotifyState::Stopping,
            NotifyState::Status(&one_line(status)),
        ]);
    }

    pub fn status(&mut self, status: &str) {
        self.send(&[NotifyState::Status(&one_line(status))]);
    }

    /// WATCHDOG=1 when half of `WatchdogSec=` has passed since the last one. Called from
    /// the loop that must not hang, so a hung loop stops pinging.
    pub fn watchdog(&mut self, now: Instant) {
        let Some(interval) = self.watchdog else {
            return;
        };
        if self.last_ping.is_some_and(|t| {
            now.saturating_duration_since(t) < (interval / 2).saturating_sub(self.slack)
        }) {
            return;
        }
        self.last_ping = Some(now);
        self.send(&[NotifyState::Watchdog]);
    }

    /// `WatchdogSec=`, when systemd set one for this process and can be told.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.target.as_ref().and(self.watchdog)
    }

    /// A second notifier to the same socket, for another thread (disabled if the socket
    /// cannot be duplicated).
    pub fn try_clone(&self) -> Notifier {
        let Some(target) = &self.target else {
            return Notifier::disabled();
        };
        match target.socket.try_clone() {
            Ok(socket) => Notifier {
                target: Some(Target {
                    socket,
                    addr: target.addr.clone(),
                    failed: target.failed,
                }),
                watchdog: self.watchdog,
                last_ping: None,
                slack: Duration::ZERO,
                reloading: false,
            },
            Err(_) => Notifier::disabled(),
        }
    }

    /// For a loop that sends heartbeats (`contract::Message`) every `HEARTBEAT_INTERVAL`
    /// while it turns: the socket to send them to. A thread pings the watchdog as they
    /// arrive, so pings stop when the loop hangs. `None` without a watchdog.
    pub fn heartbeat_relay(&self) -> Option<UnixDatagram> {
        self.watchdog_interval()?;
        let mut relay = self.try_clone();
        relay.slack = HEARTBEAT_INTERVAL / 2;
        // Message boundaries like a datagram pair, but the relay reads end-of-file once the
        // loop's end is closed, and its thread ends.
        let (loop_end, relay_end) =
            socket2::Socket::pair(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None).ok()?;
        let loop_end = UnixDatagram::from(std::os::fd::OwnedFd::from(loop_end));
        let relay_end = UnixDatagram::from(std::os::fd::OwnedFd::from(relay_end));
        loop_end.set_nonblocking(true).ok()?;
        std::thread::Builder::new()
            .name("evserve-sd-watchdog".into())
            .spawn(move || {
                let mut buf = [0u8; 256];
                // Ends when the loop's end is closed.
                while matches!(relay_end.recv(&mut buf), Ok(n) if n > 0) {
                    relay.watchdog(Instant::now());
                }
            })
            .ok()?;
        Some(loop_end)
    }

    fn send(&mut self, states: &[NotifyState<'_>]) {
        let Some(target) = &mut self.target else {
            return;
        };
        let mut message = String::new();
        for state in states {
            let _ = writeln!(message, "{state}");
        }
        if let Err(e) = target.socket.send_to_addr(message.as_bytes(), &target.addr) {
            if !std::mem::replace(&mut target.failed, true) {
                log::warn(&format!("cannot notify systemd: {e}"));
            }
        }
    }
}

impl Target {
    /// `/run/systemd/notify`, or `@name` for an abstract socket.
    fn open(path: &[u8]) -> io::Result<Target> {
        let addr = match path.split_first() {
            Some((b'@', name)) => SocketAddr::from_abstract_name(name)?,
            Some((b'/', _)) => SocketAddr::from_pathname(OsStr::from_bytes(path))?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not an absolute path or an @abstract name",
                ))
            }
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Target {
            socket,
            addr,
            failed: false,
        })
    }
}

/// STATUS= ends at a newline: a status is kept to one line.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listening(target: &str) -> (UnixDatagram, Notifier) {
        let notifier = Notifier {
            target: Some(Target::open(target.as_bytes()).expect("target")),
            watchdog: Some(Duration::from_millis(200)),
            last_ping: None,
            slack: Duration::ZERO,
            reloading: false,
        };
        let receiver = match target.strip_prefix('@') {
            Some(name) => UnixDatagram::bind_addr(
                &SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract"),
            ),
            None => UnixDatagram::bind(target),
        }
        .expect("bind");
        receiver.set_nonblocking(true).expect("nonblocking");
        (receiver, notifier)
    }

    fn received(socket: &UnixDatagram) -> Vec<String> {
        let mut buf = [0u8; 4096];
        let mut all = Vec::new();
        while let Ok(n) = socket.recv(&mut buf) {
            all.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        all
    }

    #[test]
    fn ready_carries_status_and_main_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let (receiver, mut notifier) = listening(path.to_str().expect("utf-8"));
        notifier.ready("2 instances\nready");
        let pid = std::process::id();
        assert_eq!(
            received(&receiver),
            vec![format!(
                "READY=1\nSTATUS=2 instances ready\nMAINPID={pid}\n"
            )]
        );
    }

    #[test]
    fn an_abstract_socket_is_reached_and_reloading_is_sent_once() {
        let name = format!("@evserve-test-{}", std::process::id());
        let (receiver, mut notifier) = listening(&name);
        notifier.reloading("reloading: 0 of 2 replaced");
        notifier.reloading("reloading: 1 of 2 replaced");
        notifier.ready("2 instances ready");
        let got = received(&receiver);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            got[0].starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{got:?}"
        );
        assert_eq!(got[1], "STATUS=reloading: 1 of 2 replaced\n");
        assert!(got[2].starts_with("READY=1\n"));
    }

    #[test]
    fn the_watchdog_pings_at_half_its_interval() {
        let name = format!("@evserve-test-wd-{}", std::process::id());
        let (receiver, mut notifier) = listening(&name);
        let start = Instant::now();
        notifier.watchdog(start);
        notifier.watchdog(start + Duration::from_millis(50));
        notifier.watchdog(start + Duration::from_millis(100));
        assert_eq!(received(&receiver), vec!["WATCHDOG=1\n", "WATCHDOG=1\n"]);
    }

    #[test]
    fn a_disabled_notifier_sends_nothing_and_a_relative_path_is_refused() {
        let mut notifier = Notifier::disabled();
        notifier.ready("x");
        notifier.watchdog(Instant::now());
        assert!(notifier.watchdog_interval().is_none());
        assert!(Target::open(b"relative/path").is_err());
        assert!(Target::open(b"").is_err());
    }
}
