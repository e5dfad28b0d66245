//! The launcher: starts the instances, keeps them running, reloads and stops them, and
//! optionally runs nginx in front of them. Designed like gunicorn's arbiter.
//!
//! Signal handlers only write to a socket (see `signals`); one loop waits on those sockets,
//! the instances' control sockets and the status socket, with a short timer, and does all
//! the work: reaping, respawning, crash-loop limits, heartbeat deadlines, rolling reloads,
//! recycling and scaling, status and the control socket's commands. It never serves HTTP and never touches Python. It binds every listening socket
//! itself and keeps it open, so an instance's port never closes while it restarts.

mod child;
mod console;
mod control;
mod elastic;
mod exits;
mod listeners;
mod metrics_http;
mod nginx_proc;
mod policy;
mod preloader;
mod reload;
mod signals;
mod status;
mod watch;

use std::fmt::Write as _;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::cli::Command;
use crate::config::{BindAddr, LauncherConfig};
use crate::log;
use crate::systemd::{self, ActivatedSocket, Notifier};
use child::{Instance, Recipe, Role};
use control::ControlServer;
use listeners::Listener;
use nginx_proc::NginxProc;
use policy::{Ending, RecycleRules, RestartHistory, ScaleWatch};
pub use preloader::GivenPreloader;
use preloader::Preloader;
use reload::ReloadPlan;
use signals::{Request, Signals};

/// Longest the loop sleeps: timers (heartbeats, drains, nginx) are checked at least this often.
const TICK: Duration = Duration::from_millis(100);
/// Most instances started in one loop turn: a stop signal during start-up is read after at
/// most this many forks, not after all of them.
const SPAWNS_PER_TURN: usize = 8;
/// Extra time a draining instance gets beyond --graceful-timeout before SIGKILL.
const DRAIN_MARGIN: Duration = Duration::from_secs(1);
/// A second stop signal sooner than this after the first is the same stop, delivered twice.
const DUPLICATE_STOP_WITHIN: Duration = Duration::from_secs(1);
/// Idle upstream connections per nginx worker in the launcher's config: above the client
/// concurrency one host usually sees.
const LAUNCHER_UPSTREAM_KEEPALIVE: u32 = 1024;

/// Runs the launcher in the foreground until it is stopped; returns the exit code.
pub fn run(config: LauncherConfig) -> i32 {
    run_with(config, None)
}

/// The launcher for an app object: `preloader` is the process this one forked, holding
/// the object; every instance is forked from it (see `preloader::GivenPreloader`).
pub fn run_with_preloader(config: LauncherConfig, preloader: preloader::GivenPreloader) -> i32 {
    run_with(config, Some(preloader))
}

fn run_with(config: LauncherConfig, given: Option<preloader::GivenPreloader>) -> i32 {
    match Launcher::start(config, given) {
        Ok(mut launcher) => launcher.run_loop(),
        Err((code, message)) => {
            log::fatal(&message);
            code
        }
    }
}

/// The launcher's process title: `evserve: launcher hello:application 127.0.0.1:8001-8004`.
pub fn title(config: &LauncherConfig) -> String {
    format!(
        "evserve: launcher {} {}",
        config.instance.app.text,
        where_text(config)
    )
}

/// The console subcommands: `evserve status`, `reload`, `restart`, `signal`, `stop`.
pub fn console_command(command: Command) -> i32 {
    control::console_command(command)
}

/// One instance number, with its restart history. Its process is whichever instance in
/// `Launcher::instances` has this slot and role `Serving`.
struct Slot {
    /// Index into `Launcher::sockets`.
    socket: usize,
    /// Unexpected exits within --restart-window, and in all.
    history: RestartHistory,
    given_up: bool,
    /// An instance of it has been ready: nginx sends it requests.
    in_upstream: bool,
}

impl Slot {
    fn new(socket: usize) -> Slot {
        Slot {
            socket,
            history: RestartHistory::default(),
            given_up: false,
            in_upstream: false,
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
    reload: ReloadPlan,
    nginx: Option<NginxProc>,
    /// `--preload`: the process the instances are forked from.
    preloader: Option<Preloader>,
    /// The preloader holds an app object: it cannot be started again, and a reload forks
    /// the instances from it again.
    preloader_fixed: bool,
    /// Preloaders replaced by a reload, until they have exited.
    retired_preloaders: Vec<Preloader>,
    /// `--reload`: the watched source files.
    sources: Option<watch::SourceWatch>,
    /// Set once the "ready" line was printed.
    announced: bool,
    started: Instant,
    /// sd_notify to systemd (does nothing without NOTIFY_SOCKET).
    systemd: Notifier,
    /// Instances that were starting at a SIGUSR1 (they may not handle it yet): they get it
    /// once ready.
    reopen_when_ready: Vec<u32>,
    /// `--metrics`: the listener and what it reports.
    metrics: Option<metrics_http::Board>,
    /// --max-requests, --max-rss, --max-lifetime.
    recycle_rules: RecycleRules,
    /// When resident memory was last read for --max-rss.
    rss_checked: Instant,
    recycled: u64,
    last_recycle: Option<(Instant, String)>,
    scale_watch: ScaleWatch,
    last_scale: Option<(Instant, String)>,
    /// The sockets in nginx's upstream as last written.
    nginx_sockets: Vec<usize>,
}

type StartError = (i32, String);

/// Every listening socket of the launcher, bound before any instance starts, or the ones
/// systemd passed.
fn bind_sockets(
    config: &LauncherConfig,
    activated: Vec<ActivatedSocket>,
) -> Result<Vec<SocketEntry>, String> {
    if !activated.is_empty() {
        return Ok(activated
            .into_iter()
            .map(|socket| SocketEntry {
                addr: socket.addr.clone(),
                listener: Some(Listener::from_systemd(socket)),
            })
            .collect());
    }
    listeners::prepare_socket_dir(config)?;
    listeners::addresses(config)
        .into_iter()
        .map(|addr| {
            let listener = Listener::bind(&addr, config.instance.backlog)?;
            Ok(SocketEntry {
                addr,
                listener: Some(listener),
            })
        })
        .collect()
}

/// How many instances run at start: MIN when scaling, else all.
fn initial_instances(config: &LauncherConfig, sockets: usize) -> usize {
    elastic::scale_rules(config, sockets).min
}

fn recycle_rules(config: &LauncherConfig) -> RecycleRules {
    let e = &config.elastic;
    RecycleRules {
        max_requests: e.max_requests,
        max_requests_jitter: e.max_requests_jitter,
        max_rss: e.max_rss,
        max_lifetime: e.max_lifetime,
        max_lifetime_jitter: e.max_lifetime_jitter,
    }
}

/// Where the instances listen: `127.0.0.1:8001-8004`, `127.0.0.1:8000, shared`,
/// `unix:/run/app.sock, shared`.
fn where_text(config: &LauncherConfig) -> String {
    if let Some(dir) = &config.socket_dir {
        return listeners::socket_dir_text(dir, config.workers);
    }
    match (&config.instance.bind, config.ports) {
        (BindAddr::Tcp(sa), Some((first, last))) => format!("{}:{first}-{last}", sa.ip()),
        (BindAddr::Tcp(sa), None) => format!("{sa}, shared"),
        (BindAddr::Unix(p), _) => format!("unix:{}, shared", p.display()),
    }
}

/// Writes nginx's configuration for the instances on `sockets` (the first `min_instances`
/// of them: the ones started first).
fn write_nginx_config(
    config: &LauncherConfig,
    sockets: &[SocketEntry],
    setup: nginx_proc::Setup,
    bin: Option<std::path::PathBuf>,
) -> Result<NginxProc, StartError> {
    let targets: Vec<BindAddr> = sockets
        .iter()
        .filter_map(|s| s.listener.as_ref().map(Listener::local_target))
        .collect();
    setup.write(config, &targets).map_err(|e| (1, e))?;
    log::info(&format!(
        "wrote nginx configuration {}",
        setup.conf_path.display()
    ));
    Ok(NginxProc::new(setup, bin))
}

/// The sockets systemd passed, matched to the flags (one for `--workers`, one per port for
/// `--port-range`); `config`'s address becomes theirs, for the logs and nginx.
fn systemd_sockets(config: &mut LauncherConfig) -> Result<Vec<ActivatedSocket>, String> {
    let passed = systemd::activation::take_sockets()?;
    if passed.is_empty() {
        return Ok(passed);
    }
    let chosen = match config.ports {
        Some(range) => systemd::activation::one_per_port(passed, range)?,
        None => vec![systemd::activation::the_one(passed, "--workers")?],
    };
    config.instance.bind = chosen[0].addr.clone();
    for socket in &chosen {
        log::info(&format!(
            "using the socket systemd passed: {}",
            socket.describe()
        ));
    }
    Ok(chosen)
}

impl Launcher {
    fn start(
        mut config: LauncherConfig,
        given: Option<preloader::GivenPreloader>,
    ) -> Result<Launcher, StartError> {
        let systemd = Notifier::from_env();
        let activated = systemd_sockets(&mut config).map_err(|e| (1, e))?;
        let recipe = match given {
            // Nothing is started by exec: the instances are forked from the given process.
            Some(_) => Recipe::none(),
            None => child::recipe(&config.relaunch).map_err(|e| (1, e))?,
        };
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
        let control = ControlServer::bind(config.control_socket.as_deref(), &where_text(&config))
            .map_err(|e| (1, e))?;
        let sources = match &config.reload {
            Some(reload) => Some(watch::SourceWatch::start(reload).map_err(|e| (2, e))?),
            None => None,
        };
        let sockets = bind_sockets(&config, activated).map_err(|e| (1, e))?;
        let first = initial_instances(&config, sockets.len());
        let slots: Vec<Slot> = (0..first)
            .map(|index| Slot {
                // The configuration nginx starts with lists them.
                in_upstream: true,
                ..Slot::new(if config.socket_per_instance() {
                    index
                } else {
                    0
                })
            })
            .collect();
        let nginx = match nginx_setup {
            Some(setup) => Some(write_nginx_config(
                &config,
                &sockets[..first],
                setup,
                nginx_bin,
            )?),
            None => None,
        };
        let recycle_rules = recycle_rules(&config);
        let poll = Poll::new().map_err(|e| (1, format!("cannot create the event loop: {e}")))?;
        let metrics = match config.instance.metrics {
            Some(addr) => {
                Some(metrics_http::Board::bind(addr, poll.registry()).map_err(|e| (1, e))?)
            }
            None => None,
        };
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
            reload: ReloadPlan::default(),
            nginx,
            preloader: None,
            preloader_fixed: false,
            retired_preloaders: Vec::new(),
            sources,
            announced: false,
            reopen_when_ready: Vec::new(),
            started: Instant::now(),
            systemd,
            metrics,
            recycle_rules,
            rss_checked: Instant::now(),
            recycled: 0,
            last_recycle: None,
            scale_watch: ScaleWatch::default(),
            last_scale: None,
            nginx_sockets: (0..first).collect(),
        };
        let fds: Vec<RawFd> = launcher
            .signals
            .fds()
            .chain([launcher.control.fd()])
            .chain(launcher.sources.as_ref().map(watch::SourceWatch::fd))
            .collect();
        for fd in fds {
            launcher
                .watch(fd)
                .map_err(|e| (1, format!("cannot watch a socket: {e}")))?;
        }
        log::info(&format!(
            "starting {} of {} ({}); control socket {}",
            log::count(launcher.slots.len(), "instance", "instances"),
            launcher.config.instance.app.text,
            launcher.where_text(),
            launcher.control.path.display()
        ));
        match given {
            Some(given) => launcher.adopt_preloader(given)?,
            None if launcher.config.preload => launcher.start_preloader()?,
            None => {}
        }
        // The others follow once it is ready (see `respawn`).
        launcher.spawn(0, Role::Serving);
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

    fn where_text(&self) -> String {
        where_text(&self.config)
    }

    /// systemd's STATUS once serving: `4 instances ready on 127.0.0.1:8001-8004`.
    fn ready_status(&self) -> String {
        let mut text = format!(
            "{} ready on {}",
            log::count(self.slots.len(), "instance", "instances"),
            self.where_text()
        );
        if let Some(nginx) = self.nginx.as_ref().filter(|n| n.pid().is_some()) {
            let _ = write!(text, "; nginx on {}", nginx.url());
        }
        text
    }

    fn slot_port(&self, slot: usize) -> String {
        let Some(s) = self.slots.get(slot) else {
            return "-".into();
        };
        match &self.sockets[s.socket].addr {
            BindAddr::Tcp(sa) => sa.port().to_string(),
            BindAddr::Unix(path) => format!("unix:{}", path.display()),
        }
    }

    fn run_loop(&mut self) -> i32 {
        let mut more_to_start = false;
        loop {
            // Slots still waiting for an instance: look for signals, then start the next ones.
            let wait = if more_to_start { Duration::ZERO } else { TICK };
            if let Err(e) = self.poll.poll(&mut self.events, Some(wait)) {
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
            more_to_start = self.respawn();
            self.check_sources();
            self.advance_reload();
            self.check_started();
            self.tend_nginx();
            self.tend_elastic();
            self.serve_control();
            self.systemd.watchdog(Instant::now());
            self.serve_metrics();
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
            Request::Reload => {
                // The reload logs what it did.
                let _ = self.begin_reload();
            }
            Request::AddInstance => self.add_instance(),
            Request::RemoveInstance => self.remove_instance(),
            Request::ChildExited => {}
            Request::ReopenLogs => self.reopen_logs(),
        }
    }

    /// SIGUSR1: this process's log files, then each ready instance's (an instance not
    /// ready yet may not handle the signal yet, and opens its files after it started).
    fn reopen_logs(&mut self) {
        log::reopen_files();
        log::info(&format!(
            "SIGUSR1: reopened the launcher's log files; forwarding to {}",
            log::count(self.instances.len(), "instance", "instances")
        ));
        let instances = &self.instances;
        self.reopen_when_ready
            .retain(|pid| instances.iter().any(|i| i.pid == *pid));
        for inst in &self.instances {
            if inst.ready {
                inst.signal(rustix::process::Signal::USR1);
            } else if !self.reopen_when_ready.contains(&inst.pid) {
                self.reopen_when_ready.push(inst.pid);
            }
        }
    }

    /// Drains every instance (and nginx) and exits with `code` once they are gone.
    fn begin_stop(&mut self, code: i32, why: &str) {
        if matches!(self.phase, Phase::Stopping { .. }) {
            return;
        }
        let graceful = self.config.instance.timeouts.graceful;
        log::info(&format!(
            "{why}: stopping {} (draining up to {}s)",
            log::count(self.instances.len(), "instance", "instances"),
            graceful.as_secs()
        ));
        self.systemd.stopping(&format!(
            "stopping: draining {} (up to {}s)",
            log::count(self.instances.len(), "instance", "instances"),
            graceful.as_secs()
        ));
        let now = Instant::now();
        self.phase = Phase::Stopping {
            since: now,
            deadline: now + graceful,
            code,
        };
        self.reload = ReloadPlan::default();
        for inst in &mut self.instances {
            inst.retire(now);
        }
        if let Some(preloader) = &mut self.preloader {
            preloader.stop();
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
                self.not_started(slot, &format!("cannot pass its socket: {e}"));
                return;
            }
            None => return,
        };
        let started = if self.config.preload {
            self.fork_instance(slot, role, fd)
        } else {
            self.recipe.spawn(slot, role, fd)
        };
        match started {
            Ok(mut inst) => {
                inst.limits = self.recycle_rules.limits(|n| fastrand::u64(0..=n));
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
            Err(e) => self.not_started(slot, &format!("cannot start a process: {e}")),
        }
    }

    /// An instance whose process could not be started: at start-up nothing would ever
    /// serve, so the launcher stops; later it counts as a failure of the slot.
    fn not_started(&mut self, slot: usize, why: &str) {
        if self.phase == Phase::Starting {
            self.abort_start(1, &format!("instance {slot}: {why}; not starting"));
            return;
        }
        log::error(&format!("instance {slot}: {why}"));
        self.count_exit(
            slot,
            Ending::Failed,
            &format!("could not be started ({why})"),
        );
    }

    fn read_control_messages(&mut self) {
        let announce = self.phase == Phase::Running;
        for index in 0..self.instances.len() {
            let was_ready = self.instances[index].ready;
            self.instances[index].read_messages();
            let files = std::mem::take(&mut self.instances[index].source_files);
            if let Some(sources) = &mut self.sources {
                sources.add_files(files);
            }
            let inst = &self.instances[index];
            if !was_ready && inst.ready {
                self.reopen_when_ready.retain(|&pid| {
                    if pid == inst.pid {
                        inst.signal(rustix::process::Signal::USR1);
                    }
                    pid != inst.pid
                });
            }
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
                        Some(pid) => write!(nginx_where, "; nginx (pid {pid}) on {}", nginx.url()),
                        None => write!(
                            nginx_where,
                            "; nginx configuration for {} written (add --nginx to run it)",
                            nginx.url()
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
                "ready: {} of {} on {}{nginx_where}",
                log::count(self.slots.len(), "instance", "instances"),
                self.config.instance.app.text,
                self.where_text()
            ));
            let status = self.ready_status();
            self.systemd.ready(&status);
        }
    }

    /// SIGTTIN: one instance more, as `evserve scale +1` (same bounds).
    fn add_instance(&mut self) {
        self.resize_by_signal("SIGTTIN", "+1");
    }

    /// SIGTTOU: one instance fewer, as `evserve scale -1`.
    fn remove_instance(&mut self) {
        self.resize_by_signal("SIGTTOU", "-1");
    }

    fn resize_by_signal(&mut self, signal: &str, change: &str) {
        match self.scale_command(change) {
            Ok(done) => log::info(&format!("{signal}: {done}")),
            Err(e) => log::warn(&format!("{signal} ignored: {e}")),
        }
    }
}
