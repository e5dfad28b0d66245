//! The launcher's side of `--preload`: starts the preloader process (the app imported once,
//! then frozen), asks it to fork each instance, and retires it after a reload has moved
//! every instance to a newer one.
//!
//! Waits are bounded: the import by `--timeout`, a fork answer by `FORK_ANSWER_WAIT`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use rustix::process::Signal;

use super::child::{describe_exit, reap_adopted, Instance, Recipe, Role};
use super::Launcher;
use crate::contract::{ExitCode, Message};
use crate::{log, preload};

/// How long the preloader has to answer one fork request.
const FORK_ANSWER_WAIT: Duration = Duration::from_secs(5);
/// How often the launcher looks at a starting preloader.
const START_POLL: Duration = Duration::from_millis(50);

fn is_wait_over(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// A preloader this process forked itself (for an app object): its pid and the launcher's
/// end of its socket.
pub struct GivenPreloader {
    pub pid: u32,
    pub socket: UnixDatagram,
}

pub struct Preloader {
    /// `None` for a preloader this process forked (reaped by pid).
    child: Option<Child>,
    pub pid: u32,
    socket: UnixDatagram,
    stopped: bool,
}

impl Preloader {
    /// Starts a preloader and waits until it has imported the app. On failure the exit code
    /// the launcher should give (2 when the app fails to import) and the one-line reason.
    pub fn start(recipe: &Recipe, wait: Duration) -> Result<Preloader, (i32, String)> {
        let (ours, theirs) =
            UnixDatagram::pair().map_err(|e| (1, format!("cannot create a socket: {e}")))?;
        let mut cmd = recipe.command();
        cmd.env(preload::ROLE_VAR, preload::ROLE_PRELOADER)
            .env("LISTEN_FDS", "1");
        cmd.fd_mappings(vec![FdMapping {
            parent_fd: theirs.into(),
            child_fd: 3,
        }])
        .map_err(|e| (1, format!("cannot pass the preloader its socket: {e}")))?;
        let child = cmd
            .spawn()
            .map_err(|e| (1, format!("cannot start the preloader: {e}")))?;
        drop(cmd);
        let preloader = Preloader {
            pid: child.id(),
            child: Some(child),
            socket: ours,
            stopped: false,
        };
        preloader.until_ready(wait)
    }

    /// Takes on a preloader this process forked, once it says it is ready.
    pub fn adopt(given: GivenPreloader, wait: Duration) -> Result<Preloader, (i32, String)> {
        let preloader = Preloader {
            pid: given.pid,
            child: None,
            socket: given.socket,
            stopped: false,
        };
        preloader.until_ready(wait)
    }

    fn until_ready(mut self, wait: Duration) -> Result<Preloader, (i32, String)> {
        match self.wait_ready(wait) {
            Ok(()) => Ok(self),
            Err(e) => {
                self.kill();
                Err(e)
            }
        }
    }

    fn wait_ready(&mut self, wait: Duration) -> Result<(), (i32, String)> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let poll_until = (Instant::now() + START_POLL).min(deadline);
            match self.receive(poll_until) {
                Ok(answer) if Message::parse(answer.as_bytes()) == Some(Message::Ready) => {
                    return Ok(())
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) => return Err((1, format!("preloader socket: {e}"))),
            }
            if let Some(status) = self.try_exit() {
                let load_failure = ExitCode::AppLoadFailure.code();
                return Err(match status.code() {
                    Some(code) if code == load_failure => (
                        load_failure,
                        "the app failed to import in the preloader (traceback above)".into(),
                    ),
                    _ => (1, format!("the preloader {}", describe_exit(status))),
                });
            }
        }
        Err((
            1,
            format!(
                "the preloader did not import the app within --timeout {}s",
                wait.as_secs()
            ),
        ))
    }

    /// Asks the preloader to fork the instance of `slot`, serving on `listen`.
    pub fn fork(&mut self, slot: usize, role: Role, listen: OwnedFd) -> io::Result<Instance> {
        self.discard_stale_answers();
        let (ours, theirs) = UnixDatagram::pair()?;
        ours.set_nonblocking(true)?;
        preload::send(
            &self.socket,
            &preload::fork_request(slot),
            &[listen.as_fd(), theirs.as_fd()],
        )?;
        drop((listen, theirs));
        let answer = self.receive(Instant::now() + FORK_ANSWER_WAIT)?;
        let pid = preload::parse_fork_reply(&answer).map_err(io::Error::other)?;
        Ok(Instance::new(slot, role, pid, None, ours))
    }

    /// The next message from the preloader, waiting until `deadline` (signals do not cut
    /// the wait short).
    fn receive(&self, deadline: Instant) -> io::Result<String> {
        let mut buf = [0u8; 512];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the preloader did not answer",
                ));
            }
            self.socket.set_read_timeout(Some(left.min(START_POLL)))?;
            match self.socket.recv(&mut buf) {
                Ok(n) => return Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if is_wait_over(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Answers left over from a request that timed out: the instance forked for it is
    /// nobody's, so it is stopped.
    fn discard_stale_answers(&self) {
        let mut buf = [0u8; 512];
        let _ = self.socket.set_nonblocking(true);
        for _ in 0..16 {
            let Ok(n) = self.socket.recv(&mut buf) else {
                break;
            };
            if let Ok(pid) = preload::parse_fork_reply(&String::from_utf8_lossy(&buf[..n])) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(pid, Signal::TERM);
                }
            }
        }
        let _ = self.socket.set_nonblocking(false);
    }

    /// SIGTERM: it forks nothing more and exits; instances it forked keep running.
    pub fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            self.signal(Signal::TERM);
        }
    }

    fn kill(&mut self) {
        self.stopped = true;
        self.signal(Signal::KILL);
        match &mut self.child {
            Some(child) => {
                let _ = child.wait();
            }
            None => {
                if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
                    let _ =
                        rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
                }
            }
        }
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Whether it was told to stop.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The exit status once it has exited (reaps it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        match &mut self.child {
            Some(child) => child.try_wait().ok().flatten(),
            None => reap_adopted(self.pid),
        }
    }
}

impl Launcher {
    /// `--preload` at start: the preloader imports the app before any instance is forked.
    /// Forked instances are adopted by the launcher when the preloader's middle process
    /// exits, so it reaps and supervises them like any other.
    pub(super) fn start_preloader(&mut self) -> Result<(), (i32, String)> {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| (1, format!("--preload: cannot adopt forked instances: {e}")))?;
        let preloader = Preloader::start(&self.recipe, self.config.timeout)?;
        log::info(&format!(
            "preloader (pid {}) imported {}; instances are forked from it",
            preloader.pid, self.config.instance.app.text
        ));
        self.preloader = Some(preloader);
        Ok(())
    }

    /// An app object's preloader, forked by this process before the launcher started.
    pub(super) fn adopt_preloader(&mut self, given: GivenPreloader) -> Result<(), (i32, String)> {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| (1, format!("cannot adopt forked instances: {e}")))?;
        let preloader = Preloader::adopt(given, self.config.timeout)?;
        log::info(&format!(
            "preloader (pid {}) holds {}; instances are forked from it",
            preloader.pid, self.config.instance.app.text
        ));
        self.preloader = Some(preloader);
        self.preloader_fixed = true;
        self.config.preload = true;
        Ok(())
    }

    /// The instance forked by the preloader, which is started again first if it has gone.
    pub(super) fn fork_instance(
        &mut self,
        slot: usize,
        role: Role,
        fd: OwnedFd,
    ) -> io::Result<Instance> {
        if self.preloader.is_none() && self.preloader_fixed {
            return Err(io::Error::other(
                "the preloader holding the app object has exited: no instance can be forked",
            ));
        }
        if self.preloader.is_none() {
            let preloader = Preloader::start(&self.recipe, self.config.timeout)
                .map_err(|(_, message)| io::Error::other(message))?;
            // It imported the code as it is now, which may be newer than the running
            // instances': every instance is replaced from it, so that all run the same code.
            log::warn(&format!(
                "preloader started again (pid {}); the other instances are replaced from it \
                 one at a time, so that every instance runs the code it imported",
                preloader.pid
            ));
            self.preloader = Some(preloader);
            self.reload.request(self.slots.len());
        }
        match &mut self.preloader {
            Some(preloader) => preloader.fork(slot, role, fd),
            None => Err(io::Error::other("no preloader")),
        }
    }

    /// Reload: a new preloader imports the new code; the old one is retired. False when
    /// the new code does not import (nothing changes then).
    pub(super) fn replace_preloader(&mut self) -> bool {
        if self.preloader_fixed {
            log::info("reload: the instances are forked again from the app object");
            return true;
        }
        match Preloader::start(&self.recipe, self.config.timeout) {
            Ok(new) => {
                log::info(&format!(
                    "reload: preloader (pid {}) imported the app again",
                    new.pid
                ));
                if let Some(mut old) = self.preloader.replace(new) {
                    old.stop();
                    self.retired_preloaders.push(old);
                }
                true
            }
            Err((_, message)) => {
                log::error(&format!(
                    "reload not done: {message}; the running instances keep serving"
                ));
                false
            }
        }
    }

    /// Reaps preloaders that have exited; an unexpected exit is replaced when next needed.
    pub(super) fn reap_preloaders(&mut self) {
        self.retired_preloaders
            .retain_mut(|p| p.try_exit().is_none());
        let Some(preloader) = &mut self.preloader else {
            return;
        };
        if let Some(status) = preloader.try_exit() {
            if !preloader.stopped() {
                log::warn(&format!(
                    "preloader (pid {}) {}; a new one is started when an instance is needed",
                    preloader.pid,
                    describe_exit(status)
                ));
            }
            self.preloader = None;
        }
    }
}
