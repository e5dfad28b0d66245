//! The launcher: starts the instances, keeps them running, reloads and stops them, and
//! optionally runs nginx in front of them. Designed like gunicorn's arbiter.
//!
//! Signal handlers only write to a socket (see `signals`); one loop waits on those sockets,
//! the instances' control sockets and the status socket, with a short timer, and does all
//! the work: reaping, respawning, crash-loop limits, heartbeat deadlines, rolling reloads,
//! status. It never serves HTTP and never touches Python. It binds every listening socket
//! itself and keeps it open, so an instance's port never closes while it restarts.

mod child;
mod control;
mod listeners;
mod nginx_proc;
mod signals;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::cli::StatusArgs;
use crate::config::{BindAddr, LauncherConfig};
use crate::log;
use child::{describe_exit, Instance, Recipe, Role};
use control::ControlServer;
use listeners::Listener;
use nginx_proc::NginxProc;
use signals::{Request, Signals};

/// Longest the loop sleeps: timers (heartbeats, drains, nginx) are checked at least this often.
const TICK: Duration = Duration::from_millis(100);
/// Extra time a draining instance gets beyond --graceful-timeout before SIGKILL.
const DRAIN_MARGIN: Duration = Duration::from_secs(1);
/// A second stop signal sooner than this after the first is the same stop, delivered twice.
const DUPLICATE_STOP_WITHIN: Duration = Duration::from_secs(1);
/// Idle upstream connections per nginx worker in the launcher's config: above the client
/// concurrency one host usually sees.
const LAUNCHER_UPSTREAM_KEEPALIVE: u32 = 1024;
/// Exit code when the app cannot be imported at start (the instance's own code for it).
const EXIT_IMPORT_ERROR: i32 = 2;

/// Runs the launcher in the foreground until it is stopped; returns the exit code.
pub fn run(config: LauncherConfig) -> i32 {
    match Launcher::start(config) {
        Ok(mut launcher) => launcher.run_loop(),
        Err((code, message)) => {
            log::fatal(&message);
            code
        }
    }
}

/// `evserve status`.
pub fn status_command(args: &StatusArgs) -> i32 {
    control::status_command(args)
}

/// One instance number, with its restart history. Its process is whichever instance in
/// `Launcher::instances` has this slot and role `Serving`.
struct Slot {
    /// Index into `Launcher::sockets`.
    socket: usize,
    /// Unexpected exits within --restart-window.
    restarts: VecDeque<Instant>,
    total_restarts: u32,
    given_up: bool,
}

impl Slot {
    fn new(socket: usize) -> Slot {
        Slot {
            socket,
            restarts: VecDeque::new(),
            total_restarts: 0,
            given_up: false,
        }
    }
}

/// A listening address and its socket; `None` while closed (all its instances given up).
struct SocketEntry {
    addr: BindAddr,
    listener: Option<Listener>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for every instance's first `ready`.
    Starting,
    Running,
    Stopping {
        since: Instant,
        deadline: Instant,
        code: i32,
    },
}

#[derive(Default)]
struct Reload {
    queue: VecDeque<usize>,
    /// The slot whose replacement is starting.
    current: Option<usize>,
    /// Another SIGHUP arrived during this reload: go round once more.
    again: bool,
}

struct Launcher {
    config: LauncherConfig,
    recipe: Recipe,
    sockets: Vec<SocketEntry>,
    slots: Vec<Slot>,
    instances: Vec<Instance>,
    signals: Signals,
    control: ControlServer,
    poll: Poll,
    events: Events,
    phase: Phase,
    reload: Reload,
    nginx: Option<NginxProc>,
    /// Set once the "ready" line was printed.
    announced: bool,
    started: Instant,
}

type StartError = (i32, String);

impl Launcher {
    fn start(config: LauncherConfig) -> Result<Launcher, StartError> {
        let recipe = child::recipe(&config.relaunch).map_err(|e| (1, e))?;
        let nginx_setup = match &config.nginx_conf {
            Some(path) => Some(nginx_proc::Setup::new(&config, path).map_err(|e| (2, e))?),
            None => None,
        };
        let nginx_bin = if config.run_nginx {
            Some(crate::nginx::find_nginx().ok_or((1, crate::nginx::NOT_INSTALLED.to_string()))?)
        } else {
            None
        };
        let signals =
            Signals::install().map_err(|e| (1, format!("cannot install signal handlers: {e}")))?;
        let control = ControlServer::bind(config.control_socket.as_deref()).map_err(|e| (1, e))?;
        let mut sockets = Vec::new();
        for addr in listeners::addresses(&config.instance.bind, config.ports) {
            let listener = Listener::bind(&addr, config.instance.backlog).map_err(|e| (1, e))?;
            sockets.push(SocketEntry {
                addr,
                listener: Some(listener),
            });
        }
        let slots: Vec<Slot> = match config.ports {
            Some(_) => (0..sockets.len()).map(Slot::new).collect(),
            None => (0..config.workers).map(|_| Slot::new(0)).collect(),
        };
        let nginx = match nginx_setup {
            Some(setup) => {
                let targets: Vec<BindAddr> = sockets
                    .iter()
                    .filter_map(|s| s.listener.as_ref().map(Listener::local_target))
                    .collect();
                setup.write(&config, &targets).map_err(|e| (1, e))?;
                log::info(&format!(
                    "wrote nginx configuration {}",
                    setup.conf_path.display()
                ));
                Some(NginxProc::new(setup, nginx_bin))
            }
            None => None,
        };
        let poll = Poll::new().map_err(|e| (1, format!("cannot create the event loop: {e}")))?;
        let mut launcher = Launcher {
            config,
            recipe,
            sockets,
            slots,
            instances: Vec::new(),
            signals,
            control,
            poll,
            events: Events::with_capacity(64),
            phase: Phase::Starting,
            reload: Reload::default(),
            nginx,
            announced: false,
            started: Instant::now(),
        };
        let fds: Vec<RawFd> = launcher
            .signals
            .fds()
            .chain([launcher.control.fd()])
            .collect();
        for fd in fds {
            launcher
                .watch(fd)
                .map_err(|e| (1, format!("cannot watch a socket: {e}")))?;
        }
        log::info(&format!(
            "starting {} instances of {} ({}); control socket {}",
            launcher.slots.len(),
            launcher.config.instance.app.text,
            launcher.where_text(),
            launcher.control.path.display()
        ));
        for slot in 0..launcher.slots.len() {
            launcher.spawn(slot, Role::Serving);
        }
        Ok(launcher)
    }

    fn watch(&self, fd: RawFd) -> std::io::Result<()> {
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), Token(0), Interest::READABLE)
    }

    fn unwatch(&self, fd: RawFd) {
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
    }

    /// `127.0.0.1:8001-8004`, `127.0.0.1:8000`, `unix:/run/app.sock`.
    fn where_text(&self) -> String {
        match (&self.config.instance.bind, self.config.ports) {
            (BindAddr::Tcp(sa), Some((first, last))) => format!("{}:{first}-{last}", sa.ip()),
            (BindAddr::Tcp(sa), None) => format!("{sa}, shared"),
            (BindAddr::Unix(p), _) => format!("unix:{}, shared", p.display()),
        }
    }

    fn slot_port(&self, slot: usize) -> String {
        let Some(s) = self.slots.get(slot) else {
            return "-".into();
        };
        match &self.sockets[s.socket].addr {
            BindAddr::Tcp(sa) => sa.port().to_string(),
            BindAddr::Unix(_) => "unix".into(),
        }
    }

    fn run_loop(&mut self) -> i32 {
        loop {
            if let Err(e) = self.poll.poll(&mut self.events, Some(TICK)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error(&format!("event loop: {e}"));
                    std::thread::sleep(TICK);
                }
            }
            for request in self.signals.drain() {
                self.on_signal(request);
            }
            self.read_control_messages();
            self.reap();
            self.check_deadlines();
            self.respawn();
            self.advance_reload();
            self.check_started();
            self.tend_nginx();
            self.control.serve(|| self.status_report());
            if let Phase::Stopping { code, .. } = self.phase {
                if self.instances.is_empty() && self.nginx.as_ref().is_none_or(|n| !n.running()) {
                    log::info("stopped");
                    return code;
                }
            }
        }
    }

    fn on_signal(&mut self, request: Request) {
        match request {
            Request::Stop => match self.phase {
                // The same stop reaching us twice (a terminal's Ctrl-C to the process group
                // plus a wrapper script forwarding it) is not a request to hurry.
                Phase::Stopping { since, .. } if since.elapsed() < DUPLICATE_STOP_WITHIN => {}
                Phase::Stopping { .. } => {
                    log::warn("second stop signal: instances stop now, without draining");
                    for inst in &self.instances {
                        inst.signal(rustix::process::Signal::TERM);
                    }
                    if let Some(nginx) = &mut self.nginx {
                        nginx.stop_fast();
                    }
                }
                _ => self.begin_stop(0, "stop signal received"),
            },
            Request::Reload => self.begin_reload(),
            Request::AddInstance => self.add_instance(),
            Request::RemoveInstance => self.remove_instance(),
            Request::ChildExited => {}
        }
    }

    /// Drains every instance (and nginx) and exits with `code` once they are gone.
    fn begin_stop(&mut self, code: i32, why: &str) {
        if matches!(self.phase, Phase::Stopping { .. }) {
            return;
        }
        let graceful = self.config.instance.timeouts.graceful;
        log::info(&format!(
            "{why}: stopping {} instances (draining up to {}s)",
            self.instances.len(),
            graceful.as_secs()
        ));
        let now = Instant::now();
        self.phase = Phase::Stopping {
            since: now,
            deadline: now + graceful,
            code,
        };
        self.reload = Reload::default();
        for inst in &mut self.instances {
            inst.retire(now);
        }
        if let Some(nginx) = &mut self.nginx {
            nginx.stop_gracefully();
        }
    }

    /// Gives up at start: nothing is serving yet, so nothing is drained.
    fn abort_start(&mut self, code: i32, message: &str) {
        log::fatal(message);
        for inst in &mut self.instances {
            inst.kill();
        }
        self.begin_stop(code, "not starting");
    }

    fn spawn(&mut self, slot: usize, role: Role) {
        let socket = self.slots[slot].socket;
        let fd = match self.sockets[socket].listener.as_ref().map(Listener::dup) {
            Some(Ok(fd)) => fd,
            Some(Err(e)) => {
                log::error(&format!("instance {slot}: cannot pass its socket: {e}"));
                self.count_failure(slot, &format!("could not be started ({e})"));
                return;
            }
            None => return,
        };
        match self.recipe.spawn(slot, role, fd) {
            Ok(inst) => {
                if let Err(e) = self.watch(inst.control_fd()) {
                    log::warn(&format!("instance {slot}: control socket not watched: {e}"));
                }
                log::info(&format!(
                    "instance {slot} starting (pid {}, port {})",
                    inst.pid,
                    self.slot_port(slot)
                ));
                self.instances.push(inst);
            }
            Err(e) => {
                log::error(&format!("instance {slot}: cannot start a process: {e}"));
                self.count_failure(slot, &format!("could not be started ({e})"));
            }
        }
    }

    fn read_control_messages(&mut self) {
        let announce = self.phase == Phase::Running;
        for index in 0..self.instances.len() {
            let was_ready = self.instances[index].ready;
            self.instances[index].read_messages();
            let inst = &self.instances[index];
            if announce && !was_ready && inst.ready {
                log::info(&format!(
                    "instance {} ready (pid {}, port {})",
                    inst.slot,
                    inst.pid,
                    self.slot_port(inst.slot)
                ));
            }
        }
    }

    /// Collects exited instances and decides what each exit means.
    fn reap(&mut self) {
        let mut i = 0;
        while i < self.instances.len() {
            match self.instances[i].try_exit() {
                Some(status) => {
                    let mut inst = self.instances.remove(i);
                    // Messages sent just before exiting (a late `ready`) still count.
                    inst.read_messages();
                    self.unwatch(inst.control_fd());
                    self.on_exit(inst, status);
                }
                None => i += 1,
            }
        }
        if let Some(nginx) = &mut self.nginx {
            if let Some(message) = nginx.reap(matches!(self.phase, Phase::Stopping { .. })) {
                if self.phase == Phase::Starting || !self.announced {
                    self.abort_start(1, &message);
                } else {
                    log::error(&message);
                }
            }
        }
    }

    fn on_exit(&mut self, inst: Instance, status: std::process::ExitStatus) {
        let slot = inst.slot;
        let what = describe_exit(status);
        let import_error = status.code() == Some(EXIT_IMPORT_ERROR);
        match inst.role {
            Role::Retiring { .. } => {
                log::info(&format!(
                    "instance {slot} (pid {}) stopped: {what}",
                    inst.pid
                ));
            }
            Role::Replacing => {
                let why = if import_error {
                    "the reloaded app fails to import (traceback above)".to_string()
                } else {
                    format!("its new process {what} before it was ready")
                };
                log::error(&format!(
                    "reload stopped at instance {slot}: {why}; the running instances keep serving"
                ));
                self.reload = Reload::default();
            }
            Role::Serving => match self.phase {
                Phase::Stopping { .. } => {}
                Phase::Starting => {
                    if import_error {
                        self.abort_start(
                            EXIT_IMPORT_ERROR,
                            &format!(
                                "the app {} failed to import (traceback above); not starting",
                                self.config.instance.app.text
                            ),
                        );
                    } else {
                        let why = if inst.hung {
                            format!(
                                "did not become ready within --timeout {}s",
                                self.config.timeout.as_secs()
                            )
                        } else {
                            what
                        };
                        self.abort_start(
                            1,
                            &format!(
                                "instance {slot} (pid {}) {why} at start; not starting",
                                inst.pid
                            ),
                        );
                    }
                }
                Phase::Running => {
                    if slot >= self.slots.len() {
                        return;
                    }
                    let why = if inst.hung {
                        format!(
                            "was stuck (no heartbeat for {}s) and was killed",
                            self.config.timeout.as_secs()
                        )
                    } else if import_error {
                        format!("{what}: the app fails to import")
                    } else {
                        what
                    };
                    self.count_failure(slot, &format!("pid {}: {why}", inst.pid));
                }
            },
        }
    }

    /// Records an unexpected exit of `slot`'s instance; gives the slot up past the limit.
    fn count_failure(&mut self, slot: usize, why: &str) {
        let now = Instant::now();
        let window = self.config.restart_window;
        let max = self.config.max_restarts;
        let port = self.slot_port(slot);
        let s = &mut self.slots[slot];
        while s
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            s.restarts.pop_front();
        }
        if s.restarts.len() >= max as usize {
            s.given_up = true;
            log::error(&format!(
                "instance {slot} (port {port}, {why}); it was restarted {} times within {}s \
                 (--max-restarts {max} per --restart-window {}s): not restarting it; \
                 fix the app and send SIGHUP to try again",
                s.restarts.len(),
                window.as_secs(),
                window.as_secs()
            ));
            self.close_unused_sockets();
            if self.slots.iter().all(|s| s.given_up) {
                self.begin_stop(1, "every instance was given up");
            }
            return;
        }
        s.restarts.push_back(now);
        s.total_restarts += 1;
        log::warn(&format!(
            "instance {slot} (port {port}, {why}); restarting it ({} of {max} restarts within {}s)",
            s.restarts.len(),
            window.as_secs()
        ));
    }

    /// Closes sockets no live slot uses, so clients (and nginx) are refused at once instead
    /// of waiting in a backlog nobody accepts from.
    fn close_unused_sockets(&mut self) {
        for (index, entry) in self.sockets.iter_mut().enumerate() {
            let used = self.slots.iter().any(|s| s.socket == index && !s.given_up);
            if !used && entry.listener.is_some() {
                log::warn(&format!("closing {} (no instance left on it)", entry.addr));
                entry.listener = None;
            }
        }
    }

    fn check_deadlines(&mut self) {
        let now = Instant::now();
        let timeout = self.config.timeout;
        let drain_limit = self.config.instance.timeouts.graceful + DRAIN_MARGIN;
        for inst in &mut self.instances {
            if inst.killed {
                continue;
            }
            match inst.role {
                Role::Serving | Role::Replacing => {
                    if now.duration_since(inst.last_heard) > timeout {
                        let what = if inst.ready {
                            format!(
                                "sent no heartbeat for {}s (stuck in a request?)",
                                timeout.as_secs()
                            )
                        } else {
                            format!("did not become ready within {}s", timeout.as_secs())
                        };
                        log::error(&format!(
                            "instance {} (pid {}) {what}; killing it (--timeout)",
                            inst.slot, inst.pid
                        ));
                        inst.hung = true;
                        inst.kill();
                    }
                }
                Role::Retiring { since } => {
                    if now.duration_since(since) > drain_limit {
                        log::warn(&format!(
                            "instance {} (pid {}) did not finish draining within --graceful-timeout; killing it",
                            inst.slot, inst.pid
                        ));
                        inst.kill();
                    }
                }
            }
        }
        if let Phase::Stopping { deadline, .. } = self.phase {
            if now >= deadline {
                for inst in &mut self.instances {
                    if !inst.killed {
                        log::warn(&format!(
                            "instance {} (pid {}) still running at the end of --graceful-timeout; killing it",
                            inst.slot, inst.pid
                        ));
                        inst.kill();
                    }
                }
                if let Some(nginx) = &mut self.nginx {
                    nginx.kill();
                }
            }
        }
    }

    /// Starts an instance for every slot that has none (and is not given up).
    fn respawn(&mut self) {
        if matches!(self.phase, Phase::Stopping { .. }) {
            return;
        }
        for slot in 0..self.slots.len() {
            if self.slots[slot].given_up {
                continue;
            }
            let covered = self
                .instances
                .iter()
                .any(|i| i.slot == slot && matches!(i.role, Role::Serving | Role::Replacing));
            if !covered {
                self.spawn(slot, Role::Serving);
            }
        }
    }

    fn check_started(&mut self) {
        if self.phase != Phase::Starting {
            return;
        }
        let all_ready = (0..self.slots.len()).all(|slot| {
            self.instances
                .iter()
                .any(|i| i.slot == slot && i.role == Role::Serving && i.ready)
        });
        if !all_ready {
            return;
        }
        self.phase = Phase::Running;
        for inst in &self.instances {
            log::info(&format!(
                "instance {}: port {}, pid {}",
                inst.slot,
                self.slot_port(inst.slot),
                inst.pid
            ));
        }
        if let Some(nginx) = &mut self.nginx {
            if let Err(e) = nginx.start() {
                self.abort_start(1, &e);
            }
        }
    }

    /// nginx: notices when it answers (then says the launcher is ready), restarts it.
    fn tend_nginx(&mut self) {
        if matches!(self.phase, Phase::Stopping { .. }) || self.phase == Phase::Starting {
            return;
        }
        let mut nginx_where = String::new();
        if let Some(nginx) = &mut self.nginx {
            match nginx.tend() {
                Ok(true) => {
                    let _ = match nginx.pid() {
                        Some(pid) => write!(
                            nginx_where,
                            "; nginx (pid {pid}) on http://{}",
                            nginx.listen()
                        ),
                        None => write!(
                            nginx_where,
                            "; nginx configuration for http://{} written (add --nginx to run it)",
                            nginx.listen()
                        ),
                    };
                }
                Ok(false) => return,
                Err(message) => {
                    if self.announced {
                        log::error(&message);
                    } else {
                        self.abort_start(1, &message);
                    }
                    return;
                }
            }
        }
        if !self.announced {
            self.announced = true;
            log::info(&format!(
                "ready: {} instances of {} on {}{nginx_where}",
                self.slots.len(),
                self.config.instance.app.text,
                self.where_text()
            ));
        }
    }

    fn begin_reload(&mut self) {
        match self.phase {
            Phase::Stopping { .. } => return,
            Phase::Starting => {
                log::warn("SIGHUP ignored: the instances are still starting");
                return;
            }
            Phase::Running => {}
        }
        if self.reload.current.is_some() || !self.reload.queue.is_empty() {
            log::info("SIGHUP: a reload is under way; another round follows it");
            self.reload.again = true;
            return;
        }
        self.queue_reload();
    }

    fn queue_reload(&mut self) {
        let mut retried = 0;
        for slot in &mut self.slots {
            if slot.given_up {
                slot.given_up = false;
                slot.restarts.clear();
                retried += 1;
            }
        }
        for entry in &mut self.sockets {
            if entry.listener.is_none() {
                match Listener::bind(&entry.addr, self.config.instance.backlog) {
                    Ok(l) => entry.listener = Some(l),
                    Err(e) => log::error(&format!("reload: {e}")),
                }
            }
        }
        self.reload.queue = (0..self.slots.len()).collect();
        log::info(&format!(
            "SIGHUP: reloading {} instances one at a time{}",
            self.slots.len(),
            if retried > 0 {
                format!(" ({retried} given-up instances are tried again)")
            } else {
                String::new()
            }
        ));
    }

    /// Rolling reload: one slot at a time, the new instance ready before the old one drains.
    fn advance_reload(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        // Bounded: at most one step per slot per turn.
        for _ in 0..=self.slots.len() {
            if let Some(slot) = self.reload.current {
                let new_ready = self
                    .instances
                    .iter()
                    .position(|i| i.slot == slot && i.role == Role::Replacing);
                match new_ready {
                    Some(n) if self.instances[n].ready => {
                        let now = Instant::now();
                        let new_pid = self.instances[n].pid;
                        self.instances[n].role = Role::Serving;
                        let mut old_pids = Vec::new();
                        for (k, inst) in self.instances.iter_mut().enumerate() {
                            if k != n && inst.slot == slot && inst.role == Role::Serving {
                                old_pids.push(inst.pid.to_string());
                                inst.retire(now);
                            }
                        }
                        log::info(&format!(
                            "reload: instance {slot} now pid {new_pid}; old pid {} draining",
                            if old_pids.is_empty() {
                                "-".to_string()
                            } else {
                                old_pids.join(",")
                            }
                        ));
                        self.reload.current = None;
                        if self.reload.queue.is_empty() && !self.reload.again {
                            log::info("reload: done");
                        }
                    }
                    Some(_) => return,
                    None => self.reload.current = None,
                }
            }
            let Some(slot) = self.reload.queue.pop_front() else {
                if self.reload.again {
                    self.reload.again = false;
                    self.queue_reload();
                    continue;
                }
                return;
            };
            if slot >= self.slots.len() || self.slots[slot].given_up {
                continue;
            }
            let has_old = self
                .instances
                .iter()
                .any(|i| i.slot == slot && i.role == Role::Serving);
            if !has_old {
                // Restarting anyway: its new process imports the new code.
                continue;
            }
            self.reload.current = Some(slot);
            self.spawn(slot, Role::Replacing);
        }
    }

    /// Whether SIGTTIN/SIGTTOU may change the instance count now.
    fn may_resize(&self, signal: &str) -> bool {
        if self.config.ports.is_some() {
            log::warn(&format!(
                "{signal} ignored: the instance count changes only with --workers"
            ));
            return false;
        }
        !matches!(self.phase, Phase::Stopping { .. })
    }

    fn add_instance(&mut self) {
        if !self.may_resize("SIGTTIN") {
            return;
        }
        self.slots.push(Slot::new(0));
        log::info(&format!(
            "SIGTTIN: adding instance {} ({} instances)",
            self.slots.len() - 1,
            self.slots.len()
        ));
    }

    fn remove_instance(&mut self) {
        if !self.may_resize("SIGTTOU") {
            return;
        }
        if self.slots.len() <= 1 {
            log::warn("SIGTTOU ignored: keeping the last instance");
            return;
        }
        self.slots.pop();
        let gone = self.slots.len();
        self.reload.queue.retain(|s| *s != gone);
        if self.reload.current == Some(gone) {
            self.reload.current = None;
        }
        let now = Instant::now();
        for inst in &mut self.instances {
            if inst.slot == gone {
                inst.retire(now);
            }
        }
        log::info(&format!(
            "SIGTTOU: removing instance {gone} ({} instances)",
            self.slots.len()
        ));
    }

    fn status_report(&self) -> String {
        let now = Instant::now();
        let phase = match self.phase {
            Phase::Starting => "starting",
            Phase::Running if self.reload.current.is_some() => "reloading",
            Phase::Running => "running",
            Phase::Stopping { .. } => "stopping",
        };
        let mut out = format!(
            "evserve launcher pid {}: {} on {}, {phase}, up {}",
            std::process::id(),
            self.config.instance.app.text,
            self.where_text(),
            control::human_duration(now.duration_since(self.started))
        );
        if let Some(nginx) = &self.nginx {
            let _ = write!(out, "; nginx {}", nginx.describe());
        }
        out.push('\n');
        control::table_row(
            &mut out,
            [
                "INST", "PID", "PORT", "STATE", "RESTARTS", "UPTIME", "REQUESTS", "CONNS", "RSS",
            ]
            .map(String::from),
        );
        let mut rows: Vec<&Instance> = self.instances.iter().collect();
        rows.sort_by_key(|i| (i.slot, i.started));
        for inst in rows {
            let state = match inst.role {
                Role::Retiring { .. } => "draining",
                Role::Replacing if inst.ready => "ready",
                Role::Replacing => "reloading",
                Role::Serving if inst.ready => "ready",
                Role::Serving => "starting",
            };
            let restarts = self.slots.get(inst.slot).map_or(0, |s| s.total_restarts);
            control::table_row(
                &mut out,
                [
                    inst.slot.to_string(),
                    inst.pid.to_string(),
                    self.slot_port(inst.slot),
                    state.to_string(),
                    restarts.to_string(),
                    control::human_duration(now.duration_since(inst.started)),
                    inst.requests.to_string(),
                    inst.connections.to_string(),
                    control::human_bytes(control::rss_bytes(inst.pid)),
                ],
            );
        }
        for (index, slot) in self.slots.iter().enumerate() {
            if slot.given_up {
                let mut cells = ["-"; 9].map(String::from);
                cells[0] = index.to_string();
                cells[2] = self.slot_port(index);
                cells[3] = "given-up".into();
                cells[4] = slot.total_restarts.to_string();
                control::table_row(&mut out, cells);
            }
        }
        out
    }
}
