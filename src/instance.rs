//! One instance: stop signals, Python, the app, the listening socket, the event loop,
//! in that order, and the clean exit after it.
//!
//! Glue only: it must never parse HTTP or call the app itself. Its exit codes are
//! `contract::ExitCode`: graceful stop, app not loadable, other failures.

use std::io;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use signal_hook::iterator::Signals;
use socket2::{Domain, Socket};

use crate::access_sink::AccessLog;
use crate::config::{BindAddr, InstanceConfig};
use crate::contract::{self, ExitCode, Message};
use crate::log;
use crate::server::{self, Listener};
use crate::static_files::StaticSite;
use crate::systemd::{self, ActivatedSocket, Notifier};
use crate::wsgi;

pub use crate::contract::under_launcher;

/// Where the instance listens, and what to clean up at exit.
struct Listening {
    listener: Listener,
    server_name: String,
    server_port: String,
    shown: String,
    unix_path: Option<PathBuf>,
}

fn describe_tcp(listener: std::net::TcpListener) -> Result<Listening, String> {
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    Ok(Listening {
        listener: Listener::from_std_tcp(listener).map_err(|e| e.to_string())?,
        server_name: local.ip().to_string(),
        server_port: local.port().to_string(),
        shown: format!("http://{local}"),
        unix_path: None,
    })
}

fn describe_unix(
    listener: std::os::unix::net::UnixListener,
    owned: Option<PathBuf>,
) -> Result<Listening, String> {
    let shown = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
        .unwrap_or_else(|| "unix:(inherited)".into());
    Ok(Listening {
        listener: Listener::from_std_unix(listener).map_err(|e| e.to_string())?,
        server_name: "localhost".into(),
        server_port: String::new(),
        shown,
        unix_path: owned,
    })
}

/// `evserve: instance 2 hello:application :8003` under the launcher, else
/// `evserve: instance hello:application http://127.0.0.1:8000`.
fn set_title(app: &str, bound: &Listening) {
    match contract::instance_id() {
        Some(id) if under_launcher() => {
            let place = if bound.server_port.is_empty() {
                bound.shown.clone()
            } else {
                format!(":{}", bound.server_port)
            };
            wsgi::title::set(
                &format!("evserve: instance {id} {app} {place}"),
                &format!("evserve-inst-{id}"),
            );
        }
        _ => wsgi::title::set(
            &format!("evserve: instance {app} {}", bound.shown),
            "evserve-inst",
        ),
    }
}

/// The socket systemd passed, the socket handed over by the launcher (fd 3) and its
/// control channel (fd 4), or a socket of our own.
fn listen(
    config: &InstanceConfig,
    fds: &mut listenfd::ListenFd,
    activated: Option<ActivatedSocket>,
) -> Result<Listening, String> {
    if let Some(socket) = activated {
        log::info(&format!(
            "using the socket systemd passed: {}",
            socket.describe()
        ));
        return match socket.addr {
            BindAddr::Tcp(_) => describe_tcp(socket.socket.into()),
            BindAddr::Unix(_) => describe_unix(socket.socket.into(), None),
        };
    }
    if fds.len() > 0 {
        // A socket of the wrong kind stays in place, so TCP then Unix can both be tried.
        if let Ok(Some(l)) = fds.take_tcp_listener(0) {
            return describe_tcp(l);
        }
        return match fds.take_unix_listener(0) {
            Ok(Some(l)) => describe_unix(l, None),
            Ok(None) => Err("the inherited listening socket was already taken".into()),
            Err(e) => Err(format!(
                "the inherited fd {} is not a listening socket: {e}",
                contract::LISTEN_FD
            )),
        };
    }
    let socket = crate::listen::bind(&config.bind, config.backlog)?;
    match &config.bind {
        BindAddr::Tcp(_) => describe_tcp(socket.into()),
        BindAddr::Unix(path) => describe_unix(socket.into(), Some(path.clone())),
    }
}

/// With `--log-config`: Python logging configured from the file, evserve's messages routed
/// to it, and the access lines to "evserve.access" (in place of `access_log`).
fn python_logging(
    py: Python<'_>,
    config: &InstanceConfig,
    access_log: &mut Option<AccessLog>,
) -> Result<(), String> {
    let Some(path) = &config.log_config else {
        return Ok(());
    };
    let access = wsgi::logging::install(py, path)?;
    *access_log = Some(AccessLog::to_python(config.access_style.clone(), access));
    Ok(())
}

fn open_access_log(config: &InstanceConfig) -> Result<Option<AccessLog>, String> {
    config
        .access_log
        .as_deref()
        .map(|target| AccessLog::open(target, config.access_style.clone()))
        .transpose()
}

/// How long the watchdog lets a clean shutdown run past `--graceful-timeout`.
const WATCHDOG_MARGIN: Duration = Duration::from_secs(1);
/// After a second stop signal, how long the event loop gets to exit by itself.
const SECOND_SIGNAL_GRACE: Duration = Duration::from_millis(500);
/// How often the watchdog looks for a second signal and the deadline.
const WATCHDOG_CHECK: Duration = Duration::from_millis(20);

/// The event loop cannot see a stop signal while the app is stuck inside a request. This
/// thread (it never touches Python) ends the process when the loop could not: at the
/// graceful timeout, or soon after a second signal. Signals that arrive together (SIGTERM
/// and SIGINT at once, or one signal delivered twice) are one stop, as in the event loop.
fn start_watchdog(graceful: Duration, mut systemd: Notifier) -> io::Result<()> {
    let mut signals = Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
    let generation = WATCHDOG_GENERATION.load(Ordering::SeqCst);
    let stood_down = move || WATCHDOG_GENERATION.load(Ordering::SeqCst) != generation;
    std::thread::Builder::new()
        .name("evserve-watchdog".into())
        .spawn(move || {
            if signals.forever().next().is_none() || stood_down() {
                return;
            }
            systemd.stopping(&format!(
                "stopping: draining connections (up to {}s)",
                graceful.as_secs()
            ));
            let first = Instant::now();
            let deadline = first + graceful + WATCHDOG_MARGIN;
            let mut checked = first;
            loop {
                if stood_down() {
                    return;
                }
                // A signal seen now arrived after the previous check: one that may have
                // arrived within `SAME_STOP_WITHIN` of the first is part of the same stop.
                let arrived = signals.pending().count() > 0;
                if arrived && checked.duration_since(first) >= server::SAME_STOP_WITHIN {
                    std::thread::sleep(SECOND_SIGNAL_GRACE);
                    log::warn("second stop signal while a request is still running: exiting now");
                    std::process::exit(ExitCode::Failure.code());
                }
                checked = Instant::now();
                if checked >= deadline {
                    log::warn("graceful timeout passed with a request still running: exiting now");
                    std::process::exit(ExitCode::Failure.code());
                }
                std::thread::sleep(WATCHDOG_CHECK);
            }
        })?;
    Ok(())
}

/// Bumped by `stand_down_watchdog`: a watchdog started before that does nothing more.
static WATCHDOG_GENERATION: AtomicU64 = AtomicU64::new(0);

/// For a caller that goes on after `run` returned (`evserve.serve()` from Python): the
/// watchdogs started so far no longer end the process.
pub fn stand_down_watchdog() {
    WATCHDOG_GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// As many open files as the hard limit allows: each connection is one.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
}

/// The read ends of the pipes the signal handlers write to, watched by the event loop.
struct SignalPipes {
    /// SIGINT, SIGTERM.
    stop: UnixStream,
    /// SIGUSR1: reopen the log files.
    reopen: UnixStream,
}

/// Stop signals go to a pipe, read by the event loop; a watchdog thread ends the process
/// when the loop cannot (stuck app, second signal). Installed before Python starts, so
/// Python never installs its own SIGINT handler (which would raise KeyboardInterrupt
/// inside a request). SIGUSR1 (reopen the log files) goes to a pipe of its own, so that
/// it is never taken for a stop.
fn install_stop_signals(graceful: Duration, systemd: Notifier) -> Result<SignalPipes, String> {
    let (signal_read, signal_write) =
        UnixStream::pair().map_err(|e| format!("cannot create the signal pipe: {e}"))?;
    let (reopen_read, reopen_write) =
        UnixStream::pair().map_err(|e| format!("cannot create the signal pipe: {e}"))?;
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_write
            .try_clone()
            .and_then(|w| signal_hook::low_level::pipe::register(signal, w))
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGUSR1, reopen_write)
        .map_err(|e| format!("cannot handle SIGUSR1: {e}"))?;
    start_watchdog(graceful, systemd)
        .map_err(|e| format!("cannot start the shutdown watchdog: {e}"))?;
    Ok(SignalPipes {
        stop: signal_read,
        reopen: reopen_read,
    })
}

/// Working directory and file limit, before Python starts.
fn prepare_process(config: &InstanceConfig) -> Result<(), String> {
    if under_launcher() {
        // Go down with the launcher, never linger as an orphan; a launcher that died before
        // this line could not send the signal any more.
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
        let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get().unsigned_abs());
        if contract::launcher_pid().is_some_and(|launcher| parent != Some(launcher)) {
            return Err("the launcher that started this instance is gone".into());
        }
    }
    if let Some(dir) = &config.python.chdir {
        std::env::set_current_dir(dir).map_err(|e| format!("--chdir {}: {e}", dir.display()))?;
    }
    raise_fd_limit();
    Ok(())
}

pub fn run(config: InstanceConfig) -> i32 {
    if crate::preload::is_preloader() {
        return run_preloader(config);
    }
    // Read before any thread starts; under the launcher, it speaks to systemd.
    let (systemd, activated) = match systemd_start() {
        Ok(taken) => taken,
        Err(message) => {
            log::fatal(&message);
            return ExitCode::Failure.code();
        }
    };
    let prepared =
        install_stop_signals(config.timeouts.graceful, systemd.try_clone()).and_then(|signals| {
            prepare_process(&config)?;
            Ok((signals, open_access_log(&config)?))
        });
    let (signal_read, mut access_log) = match prepared {
        Ok(p) => p,
        Err(message) => {
            log::fatal(&message);
            return ExitCode::Failure.code();
        }
    };
    let mut fds = listenfd::ListenFd::from_env();
    if let Err(message) = wsgi::interpreter::set_sys_path(&config.python) {
        log::fatal(&message);
        return ExitCode::AppLoadFailure.code();
    }
    let code = Python::attach(|py| {
        if let Err(message) = python_logging(py, &config, &mut access_log) {
            log::fatal(&message);
            return ExitCode::Failure.code();
        }
        let app = match load(py, &config) {
            Ok(app) => app,
            Err(code) => return code,
        };
        let sockets = match listen(&config, &mut fds, activated) {
            Ok(bound) => (
                bound,
                take_control(&mut fds).or_else(|| systemd.heartbeat_relay()),
            ),
            Err(message) => {
                log::fatal(&message);
                return ExitCode::Failure.code();
            }
        };
        serve(py, &config, app, sockets, access_log, signal_read, systemd)
    });
    code
}

/// A single instance's systemd side: its notifier and the one socket systemd passed, if
/// any. An instance the launcher started has neither (the launcher speaks to systemd).
fn systemd_start() -> Result<(Notifier, Option<ActivatedSocket>), String> {
    if under_launcher() {
        return Ok((Notifier::disabled(), None));
    }
    let passed = systemd::activation::take_sockets()?;
    let activated = if passed.is_empty() {
        None
    } else {
        Some(systemd::activation::the_one(passed, "a single instance")?)
    };
    Ok((Notifier::from_env(), activated))
}

/// The app, or the exit code after saying why it cannot be loaded.
fn load<'py>(py: Python<'py>, config: &InstanceConfig) -> Result<Bound<'py, PyAny>, i32> {
    if config.report_source_files {
        wsgi::interpreter::write_no_bytecode(py);
    }
    wsgi::load_app(py, &config.app).map_err(|message| {
        log::fatal(&message);
        ExitCode::AppLoadFailure.code()
    })
}

fn take_control(fds: &mut listenfd::ListenFd) -> Option<UnixDatagram> {
    match fds.take_unix_datagram(contract::CONTROL_FD_INDEX) {
        Ok(Some(sock)) => {
            let _ = sock.set_nonblocking(true);
            Some(sock)
        }
        _ => None,
    }
}

/// The `--preload` process: imports the app once, freezes it, and forks instances for the
/// launcher (see `preload`). It holds no thread and no signal handler of its own, so each
/// forked instance starts clean and installs its own.
fn run_preloader(config: InstanceConfig) -> i32 {
    if let Err(message) = prepare_process(&config) {
        log::fatal(&message);
        return ExitCode::Failure.code();
    }
    let mut fds = listenfd::ListenFd::from_env();
    let socket = match fds.take_unix_datagram(0) {
        Ok(Some(s)) => s,
        _ => {
            log::fatal("the preloader was started without its socket (fd 3)");
            return ExitCode::Failure.code();
        }
    };
    if let Err(message) = wsgi::interpreter::set_sys_path(&config.python) {
        log::fatal(&message);
        return ExitCode::AppLoadFailure.code();
    }
    set_preloader_title(&config);
    preload_and_fork(&config, socket)
}

fn set_preloader_title(config: &InstanceConfig) {
    wsgi::title::set(
        &format!("evserve: preloader {}", config.app.text),
        "evserve-preload",
    );
}

/// The preloader of an app object (`evserve.serve(app, workers=N)`): this process was
/// forked by the launcher, which is its parent; `socket` is its end of their channel.
pub fn run_object_preloader(config: InstanceConfig, socket: UnixDatagram) -> i32 {
    std::env::set_var(contract::ENV_INSTANCE, "1");
    if let Some(launcher) = rustix::process::getppid() {
        std::env::set_var(
            contract::ENV_LAUNCHER_PID,
            launcher.as_raw_nonzero().to_string(),
        );
    }
    // Its own process group: a terminal's Ctrl-C reaches the launcher only.
    let _ = rustix::process::setpgid(None, None);
    if let Err(message) = prepare_process(&config) {
        log::fatal(&message);
        return ExitCode::Failure.code();
    }
    set_preloader_title(&config);
    preload_and_fork(&config, socket)
}

/// The preloader's work once its process is set up: loads the app, freezes it, and answers
/// fork requests on `socket`. Returns the preloader's exit code, or in a forked instance
/// the instance's.
pub fn preload_and_fork(config: &InstanceConfig, socket: UnixDatagram) -> i32 {
    Python::attach(|py| {
        let app = match load(py, config) {
            Ok(app) => app,
            Err(code) => return code,
        };
        if let Err(message) = wsgi::fork::freeze(py) {
            log::fatal(&message);
            return ExitCode::Failure.code();
        }
        match crate::preload::serve_fork_requests(py, socket) {
            crate::preload::Outcome::Exit(code) => code,
            crate::preload::Outcome::Instance(forked) => serve_forked(py, config, app, forked),
        }
    })
}

/// A forked instance: waits to be adopted by the launcher, then serves like any instance.
fn serve_forked(
    py: Python<'_>,
    config: &InstanceConfig,
    app: Bound<'_, PyAny>,
    forked: crate::preload::Forked,
) -> i32 {
    std::env::set_var(contract::ENV_INSTANCE_ID, forked.slot.to_string());
    let launcher = contract::launcher_pid();
    if !crate::preload::wait_for_adoption(launcher) {
        log::fatal("the launcher is gone");
        return ExitCode::Failure.code();
    }
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
    let prepared = install_stop_signals(config.timeouts.graceful, Notifier::disabled())
        .and_then(|signals| Ok((signals, open_access_log(config)?)));
    let (signal_read, mut access_log) = match prepared {
        Ok(p) => p,
        Err(message) => {
            log::fatal(&message);
            return ExitCode::Failure.code();
        }
    };
    if let Err(message) = python_logging(py, config, &mut access_log) {
        log::fatal(&message);
        return ExitCode::Failure.code();
    }
    let control = UnixDatagram::from(forked.control);
    let _ = control.set_nonblocking(true);
    let bound = match describe_inherited(forked.listener) {
        Ok(b) => b,
        Err(message) => {
            log::fatal(&message);
            return ExitCode::Failure.code();
        }
    };
    serve(
        py,
        config,
        app,
        (bound, Some(control)),
        access_log,
        signal_read,
        Notifier::disabled(),
    )
}

/// `--reload`: sends the launcher the app's source files (a few datagrams; a full queue
/// gets a few short retries, as the launcher reads it on its next turn).
fn report_source_files(control: &UnixDatagram, paths: &[String]) {
    for datagram in contract::encode_source_files(paths) {
        for _ in 0..50 {
            match control.send(datagram.as_bytes()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break,
            }
        }
    }
}

/// A listening socket handed over as an fd, TCP or Unix.
fn describe_inherited(fd: std::os::fd::OwnedFd) -> Result<Listening, String> {
    let socket = Socket::from(fd);
    match socket.domain() {
        Ok(d) if d == Domain::UNIX => describe_unix(socket.into(), None),
        Ok(_) => describe_tcp(socket.into()),
        Err(e) => Err(format!(
            "the inherited socket is not a listening socket: {e}"
        )),
    }
}

fn serve(
    py: Python<'_>,
    config: &InstanceConfig,
    app: Bound<'_, PyAny>,
    (bound, control): (Listening, Option<UnixDatagram>),
    access_log: Option<AccessLog>,
    signals: SignalPipes,
    mut systemd: Notifier,
) -> i32 {
    let site = wsgi::Site {
        root_path: &config.root_path,
        server_name: &bound.server_name,
        server_port: &bound.server_port,
        multiprocess: config.multiprocess,
        trusted_proxies: &config.trusted_proxies,
    };
    let mut wsgi_app = match wsgi::WsgiApp::new(py, app, &site) {
        Ok(a) => a,
        Err(e) => {
            e.display(py);
            log::fatal("cannot prepare the WSGI environ");
            return ExitCode::Failure.code();
        }
    };
    set_title(&config.app.text, &bound);
    log::info(&format!(
        "Listening at: {} ({})",
        bound.shown,
        std::process::id()
    ));
    log::info(&format!(
        "Serving {} with Python {}",
        config.app.text,
        Python::version_str()
            .split_whitespace()
            .next()
            .unwrap_or("?")
    ));
    if let Some(c) = &control {
        if config.report_source_files {
            report_source_files(c, &wsgi::app_source_files(py));
        }
        let _ = c.send(Message::Ready.encode().as_bytes());
    }
    let metrics_listener = match config.metrics.filter(|_| !under_launcher()) {
        Some(addr) => match std::net::TcpListener::bind(addr) {
            Ok(l) => Some(l),
            Err(e) => {
                log::fatal(&format!("--metrics {addr}: cannot listen: {e}"));
                return ExitCode::Failure.code();
            }
        },
        None => None,
    };
    systemd.ready(&format!("serving {} on {}", config.app.text, bound.shown));
    let settings = server::Settings {
        limits: config.limits,
        timeouts: config.timeouts,
        max_connections: config.max_connections,
        shares_listener: config.shared_listener,
        access_log,
        report_stats: under_launcher() && control.is_some() && config.metrics.is_some(),
        heartbeat: control,
        signals: signals.stop,
        reopen_signals: Some(signals.reopen),
        static_site: StaticSite::new(config.static_mounts.clone(), &config.root_path),
        metrics_listener,
    };
    let result = server::run(&mut wsgi_app, bound.listener, settings);
    drop(wsgi_app);
    if let Some(path) = &bound.unix_path {
        let _ = std::fs::remove_file(path);
    }
    match result {
        Ok(()) => {
            log::info("Shutdown complete");
            ExitCode::Graceful.code()
        }
        Err(e) => {
            log::error(&format!("event loop failed: {e}"));
            ExitCode::Failure.code()
        }
    }
}
