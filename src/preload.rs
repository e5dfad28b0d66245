//! `--preload`: one process imports the app, freezes what it imported, and forks the
//! instances, which then share its memory copy-on-write.
//!
//! The launcher starts the preloader (an evserve process with `ROLE_VAR=preloader`, its end
//! of a datagram socket on fd 3). The preloader answers `ready` once the app is imported,
//! then one fork request at a time: the launcher sends `fork SLOT` with the instance's
//! listening socket and control socket attached (SCM_RIGHTS); the preloader forks twice, so
//! that the instance is adopted by the launcher (a child subreaper) and the preloader keeps
//! no children, and answers `pid N` or `error TEXT`.
//!
//! Both sides use the message helpers here. The preloader never serves a request itself and
//! never holds a second thread: every fork happens from a single-threaded process.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use pyo3::prelude::*;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::process::{getppid, waitpid, WaitOptions};

use crate::contract::{ExitCode, Message};
use crate::log;
use crate::wsgi;

/// The environment variable that makes an evserve process the preloader.
pub const ROLE_VAR: &str = "EVSERVE_ROLE";
pub const ROLE_PRELOADER: &str = "preloader";
/// Longest message either side sends.
const MAX_MESSAGE: usize = 512;
/// How long a forked instance waits to be adopted by the launcher.
const ADOPTION_WAIT: Duration = Duration::from_secs(5);

pub fn is_preloader() -> bool {
    std::env::var_os(ROLE_VAR).is_some_and(|v| v == ROLE_PRELOADER)
}

/// A message with up to two fds attached.
pub fn send(socket: impl AsFd, text: &str, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many fds for one message"));
    }
    rustix::net::sendmsg(
        socket.as_fd(),
        &[IoSlice::new(text.as_bytes())],
        &mut control,
        SendFlags::empty(),
    )?;
    Ok(())
}

/// One message and the fds attached to it; `None` for an empty message.
pub fn receive(socket: impl AsFd) -> io::Result<Option<(String, Vec<OwnedFd>)>> {
    let mut buf = [0u8; MAX_MESSAGE];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        match rustix::net::recvmsg(
            socket.as_fd(),
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if got.bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&buf[..got.bytes.min(MAX_MESSAGE)]).into_owned();
    Ok(Some((text, fds)))
}

/// What the preloader's loop ends with.
pub enum Outcome {
    /// The preloader is done (the launcher closed the socket): exit with this code.
    Exit(i32),
    /// This process is a forked instance: serve `slot` on these sockets.
    Instance(Forked),
}

/// The sockets a forked instance was given.
pub struct Forked {
    pub slot: usize,
    pub listener: OwnedFd,
    pub control: OwnedFd,
}

/// Answers fork requests on `socket` until the launcher closes it. Returns in the parent
/// with the exit code, or in a forked instance with what it is to serve.
pub fn serve_fork_requests(py: Python<'_>, socket: UnixDatagram) -> Outcome {
    if let Err(e) = send(&socket, &Message::Ready.encode(), &[]) {
        log::fatal(&format!("preloader: cannot reach the launcher: {e}"));
        return Outcome::Exit(ExitCode::Failure.code());
    }
    loop {
        let request = py.detach(|| receive(&socket));
        let (text, fds) = match request {
            Ok(Some(message)) => message,
            Ok(None) => return Outcome::Exit(ExitCode::Graceful.code()),
            Err(e) => {
                log::error(&format!("preloader: control socket failed: {e}"));
                return Outcome::Exit(ExitCode::Failure.code());
            }
        };
        let Some(slot) = parse_fork_request(&text) else {
            let _ = send(&socket, &format!("error unknown request {text:?}"), &[]);
            continue;
        };
        let mut fds = fds.into_iter();
        let (Some(listener), Some(control), None) = (fds.next(), fds.next(), fds.next()) else {
            let _ = send(&socket, "error a fork request carries two fds", &[]);
            continue;
        };
        match fork_instance(py) {
            Ok(Some(pid)) => {
                let _ = send(&socket, &format!("pid {pid}"), &[]);
            }
            Ok(None) => {
                drop(socket);
                return Outcome::Instance(Forked {
                    slot,
                    listener,
                    control,
                });
            }
            Err(e) => {
                let _ = send(&socket, &format!("error {e}"), &[]);
            }
        }
    }
}

pub fn fork_request(slot: usize) -> String {
    format!("fork {slot}")
}

fn parse_fork_request(text: &str) -> Option<usize> {
    text.strip_prefix("fork ")?.trim().parse().ok()
}

/// The launcher's reading of the preloader's answer to a fork request.
pub fn parse_fork_reply(text: &str) -> Result<u32, String> {
    if let Some(pid) = text.strip_prefix("pid ") {
        return pid
            .trim()
            .parse()
            .map_err(|_| format!("bad pid in {text:?}"));
    }
    Err(text.strip_prefix("error ").unwrap_or(text).to_string())
}

/// Forks twice: `Ok(Some(pid))` of the instance in the preloader, `Ok(None)` in the instance.
/// The middle process exits at once, so the instance is adopted by the launcher.
fn fork_instance(py: Python<'_>) -> Result<Option<i32>, String> {
    let threads = wsgi::fork::other_threads(py);
    if threads > 0 {
        return Err(format!(
            "the app started {threads} thread(s) at import; a process with threads cannot fork safely"
        ));
    }
    let (pid_read, pid_write) = UnixDatagram::pair().map_err(|e| format!("socketpair: {e}"))?;
    let middle = wsgi::fork::fork(py)?;
    if middle == 0 {
        drop(pid_read);
        match wsgi::fork::fork(py) {
            Ok(0) => return Ok(None),
            Ok(pid) => {
                let _ = pid_write.send(pid.to_string().as_bytes());
                wsgi::fork::exit_now(py, ExitCode::Graceful.code())
            }
            Err(_) => wsgi::fork::exit_now(py, ExitCode::Failure.code()),
        }
    }
    drop(pid_write);
    let middle_pid = rustix::process::Pid::from_raw(middle);
    let _ = py.detach(|| waitpid(middle_pid, WaitOptions::empty()));
    let mut buf = [0u8; 32];
    let _ = pid_read.set_read_timeout(Some(ADOPTION_WAIT));
    let n = pid_read
        .recv(&mut buf)
        .map_err(|e| format!("no pid from the forked instance: {e}"))?;
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|t| t.parse().ok())
        .map(Some)
        .ok_or_else(|| "the forked instance could not be started".to_string())
}

/// In a forked instance: waits until the launcher has adopted it, so that the parent-death
/// signal set afterwards follows the launcher. Returns false if the launcher is gone.
pub fn wait_for_adoption(launcher_pid: Option<u32>) -> bool {
    let deadline = std::time::Instant::now() + ADOPTION_WAIT;
    loop {
        let parent = getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
        if Some(parent) == launcher_pid {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_messages_round_trip() {
        assert_eq!(parse_fork_request(&fork_request(3)), Some(3));
        assert_eq!(parse_fork_request("fork x"), None);
        assert_eq!(parse_fork_reply("pid 1234"), Ok(1234));
        assert_eq!(parse_fork_reply("error no memory"), Err("no memory".into()));
    }

    #[test]
    fn fds_travel_with_a_message() {
        let (a, b) = UnixDatagram::pair().unwrap();
        let (x, _y) = UnixDatagram::pair().unwrap();
        send(&a, "fork 1", &[x.as_fd(), x.as_fd()]).unwrap();
        let (text, fds) = receive(&b).unwrap().unwrap();
        assert_eq!(text, "fork 1");
        assert_eq!(fds.len(), 2);
    }
}
