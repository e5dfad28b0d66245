//! One instance process as the launcher sees it: how it is started (the launcher/instance
//! contract), its control socket, and what it last reported.
//!
//! Never blocks: the control socket is non-blocking and reads are bounded.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Instant;

use command_fds::{CommandFdExt, FdMapping};
use rustix::process::{kill_process, kill_process_group, Pid, Signal};

use super::policy::{RecycleLimits, BUSY_PERMILLE};
use crate::contract::{self, Message};

/// What the instance is to its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The slot's instance (starting or ready).
    Serving,
    /// Started by a rolling reload; takes over the slot once ready.
    Replacing,
    /// Told to drain (SIGTERM sent at `since`); killed if still there after the deadline.
    Retiring { since: Instant },
    /// Its slot was removed by scaling down while nginx still sends it requests: it serves
    /// on until nginx, reloaded without it at `since`, has closed its connections.
    Leaving { since: Instant },
}

pub struct Instance {
    /// The slot (instance number) it serves.
    pub slot: usize,
    pub role: Role,
    /// The process as started by the launcher; `None` for an instance forked by the
    /// preloader, which the launcher adopted (it is reaped by pid).
    child: Option<Child>,
    pub pid: u32,
    control: UnixDatagram,
    pub started: Instant,
    /// Last message (or start): the heartbeat deadline counts from here.
    pub last_heard: Instant,
    pub ready: bool,
    pub requests: u64,
    pub connections: u64,
    /// Its metrics counters as last reported (`--metrics`).
    pub stats: crate::metrics::Snapshot,
    /// Busy (a request to work on) at every heartbeat since then.
    pub busy_since: Option<Instant>,
    /// Share of its last heartbeat interval spent working, 0.0 to 1.0.
    pub busy_share: f64,
    /// Its --max-requests, --max-rss and --max-lifetime, jitter included.
    pub limits: RecycleLimits,
    /// Killed by the launcher for missing its heartbeat.
    pub hung: bool,
    /// SIGKILL already sent.
    pub killed: bool,
    /// Source files it reported (`--reload`), until the launcher takes them.
    pub source_files: Vec<std::path::PathBuf>,
}

/// How to start an instance: a program and its arguments.
pub struct Recipe {
    pub exe: std::path::PathBuf,
    pub args: Vec<OsString>,
}

impl Recipe {
    /// A recipe for a launcher that starts nothing by exec (its instances are forked).
    pub fn none() -> Recipe {
        Recipe {
            exe: std::path::PathBuf::new(),
            args: Vec::new(),
        }
    }

    /// Starts instance `slot` on `listen` (moved to fd 3), with its control socket on fd 4.
    pub fn spawn(&self, slot: usize, role: Role, listen: OwnedFd) -> io::Result<Instance> {
        let (ours, theirs) = UnixDatagram::pair()?;
        ours.set_nonblocking(true)?;
        let mut cmd = self.command();
        // The listening socket and the control socket, systemd-style.
        cmd.env(contract::ENV_LISTEN_FDS, contract::PASSED_FDS.to_string())
            .env(contract::ENV_INSTANCE_ID, slot.to_string());
        cmd.fd_mappings(vec![
            FdMapping {
                parent_fd: listen,
                child_fd: contract::LISTEN_FD,
            },
            FdMapping {
                parent_fd: theirs.into(),
                child_fd: contract::CONTROL_FD,
            },
        ])
        .map_err(|e| io::Error::other(e.to_string()))?;
        let child = cmd.spawn()?;
        // `cmd` owns the child's ends; dropping it closes them here.
        drop(cmd);
        Ok(Instance::new(slot, role, child.id(), Some(child), ours))
    }

    /// The command that runs this evserve again, as an instance (`EVSERVE_INSTANCE=1`) in
    /// its own process group, with nothing on stdin.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args)
            .env(contract::ENV_INSTANCE, "1")
            .env(contract::ENV_LAUNCHER_PID, std::process::id().to_string())
            .env_remove(contract::ENV_LISTEN_PID)
            .env_remove(contract::ENV_LISTEN_FDNAMES)
            .stdin(Stdio::null())
            // Its own process group: a terminal's Ctrl-C reaches the launcher only, which
            // then stops each instance exactly once.
            .process_group(0);
        cmd
    }
}

impl Instance {
    pub fn new(
        slot: usize,
        role: Role,
        pid: u32,
        child: Option<Child>,
        control: UnixDatagram,
    ) -> Instance {
        let now = Instant::now();
        Instance {
            slot,
            role,
            pid,
            child,
            control,
            started: now,
            last_heard: now,
            ready: false,
            requests: 0,
            connections: 0,
            stats: Default::default(),
            busy_since: None,
            busy_share: 0.0,
            limits: RecycleLimits::default(),
            hung: false,
            killed: false,
            source_files: Vec::new(),
        }
    }

    pub fn control_fd(&self) -> RawFd {
        self.control.as_raw_fd()
    }

    /// Reads the waiting messages (bounded) and records them.
    pub fn read_messages(&mut self) {
        let mut messages = Vec::new();
        let mut buf = vec![0u8; contract::MAX_DATAGRAM];
        for _ in 0..64 {
            match self.control.recv(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(m) = Message::parse(&buf[..n]) {
                        messages.push(m);
                    } else if let Some(files) = contract::parse_source_files(&buf[..n]) {
                        self.source_files.extend(files);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let now = Instant::now();
        if !messages.is_empty() {
            self.last_heard = now;
        }
        for m in &messages {
            match *m {
                Message::Ready => self.ready = true,
                Message::Heartbeat {
                    requests,
                    connections,
                    busy_permille,
                } => {
                    self.requests = requests;
                    self.connections = connections;
                    self.busy_share = f64::from(busy_permille) / f64::from(contract::ALL_BUSY);
                    if busy_permille < BUSY_PERMILLE {
                        self.busy_since = None;
                    } else if self.busy_since.is_none() {
                        // Busy through the interval this heartbeat covers.
                        self.busy_since = Some(now - contract::HEARTBEAT_INTERVAL);
                    }
                }
                Message::Stats(stats) => self.stats = stats,
            }
        }
    }

    /// SIGTERM: drain and exit. Sent once; the instance takes a second one as "exit now".
    pub fn retire(&mut self, now: Instant) {
        if !matches!(self.role, Role::Retiring { .. }) {
            self.role = Role::Retiring { since: now };
            self.signal(Signal::TERM);
        }
    }

    /// SIGKILL to the instance and anything it started in its process group.
    pub fn kill(&mut self) {
        if !self.killed {
            self.killed = true;
            self.signal_group(Signal::KILL);
        }
    }

    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = Pid::from_raw(self.pid as i32) {
            let _ = kill_process(pid, signal);
        }
    }

    fn signal_group(&self, signal: Signal) {
        if let Some(pid) = Pid::from_raw(self.pid as i32) {
            if kill_process_group(pid, signal).is_err() {
                let _ = kill_process(pid, signal);
            }
        }
    }

    /// The exit status, once the process has exited (reaps it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        match &mut self.child {
            Some(child) => child.try_wait().ok().flatten(),
            None => reap_adopted(self.pid),
        }
    }
}

/// The status of an adopted process that has exited. Before the middle process of the
/// preloader's double fork is gone, the instance is not yet the launcher's child: that
/// reads as still running.
pub(super) fn reap_adopted(pid: u32) -> Option<ExitStatus> {
    let pid = Pid::from_raw(i32::try_from(pid).ok()?)?;
    match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
        Ok(Some((_, status))) => Some(ExitStatus::from_raw(status.as_raw())),
        _ => None,
    }
}

/// "exited with code 1", "was killed by signal 9 (SIGKILL)".
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    match status.signal() {
        Some(sig) => {
            let name = signal_hook::low_level::signal_name(sig).unwrap_or("unknown");
            format!("was killed by signal {sig} ({name})")
        }
        None => format!("ended ({status})"),
    }
}

/// Instances are started as `python -m evserve` with the launcher's own flags, in the
/// launcher's Python.
pub fn recipe(relaunch: &crate::config::Relaunch) -> Result<Recipe, String> {
    if relaunch.python.as_os_str().is_empty() {
        return Err("cannot start instances: the Python interpreter is unknown".into());
    }
    let mut args: Vec<OsString> = vec!["-m".into(), "evserve".into()];
    args.extend(relaunch.args.iter().cloned());
    Ok(Recipe {
        exe: relaunch.python.clone(),
        args,
    })
}
