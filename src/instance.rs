//! One instance: stop signals, Python, the app, the listening socket, the event loop,
//! in that order, and the clean exit after it.
//!
//! Glue only: it must never parse HTTP or call the app itself. Exit codes: 0 after a
//! graceful stop, 2 when the app cannot be loaded, 1 for other
//! start-up failures such as a port in use.

use std::io::{self, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use signal_hook::iterator::Signals;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::{BindAddr, InstanceConfig};
use crate::log;
use crate::server::{self, Listener};
use crate::wsgi;

/// Set by the launcher in the environment of the instances it starts.
pub const UNDER_LAUNCHER: &str = "EVSERVE_INSTANCE";

pub fn under_launcher() -> bool {
    std::env::var_os(UNDER_LAUNCHER).is_some_and(|v| v == "1")
}

/// Where the instance listens, and what to clean up at exit.
struct Bound {
    listener: Listener,
    server_name: String,
    server_port: String,
    shown: String,
    unix_path: Option<PathBuf>,
}

fn bind_tcp(addr: std::net::SocketAddr, backlog: u32) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket)
}

fn bind_unix(path: &Path, backlog: u32) -> Result<Socket, String> {
    if path.exists() {
        // A live server answers; a stale socket file from a crash does not.
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "cannot listen on unix:{}: another server is listening there",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
    }
    let fail = |e: io::Error| format!("cannot listen on unix:{}: {e}", path.display());
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(fail)?;
    let addr = SockAddr::unix(path).map_err(fail)?;
    socket.bind(&addr).map_err(fail)?;
    socket
        .listen(backlog.min(i32::MAX as u32) as i32)
        .map_err(fail)?;
    Ok(socket)
}

fn describe_tcp(listener: std::net::TcpListener) -> Result<Bound, String> {
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    Ok(Bound {
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
) -> Result<Bound, String> {
    let shown = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
        .unwrap_or_else(|| "unix:(inherited)".into());
    Ok(Bound {
        listener: Listener::from_std_unix(listener).map_err(|e| e.to_string())?,
        server_name: "localhost".into(),
        server_port: String::new(),
        shown,
        unix_path: owned,
    })
}

/// The socket handed over by the launcher (fd 3) and its control channel (fd 4), or
/// a socket of our own.
fn listen(config: &InstanceConfig, fds: &mut listenfd::ListenFd) -> Result<Bound, String> {
    if fds.len() > 0 {
        // A socket of the wrong kind stays in place, so TCP then Unix can both be tried.
        if let Ok(Some(l)) = fds.take_tcp_listener(0) {
            return describe_tcp(l);
        }
        return match fds.take_unix_listener(0) {
            Ok(Some(l)) => describe_unix(l, None),
            Ok(None) => Err("the inherited listening socket was already taken".into()),
            Err(e) => Err(format!("the inherited fd 3 is not a listening socket: {e}")),
        };
    }
    match &config.bind {
        BindAddr::Tcp(addr) => {
            let socket = bind_tcp(*addr, config.backlog)
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            describe_tcp(socket.into())
        }
        BindAddr::Unix(path) => {
            let socket = bind_unix(path, config.backlog)?;
            describe_unix(socket.into(), Some(path.clone()))
        }
    }
}

fn open_access_log(target: &Option<String>) -> Result<Option<Box<dyn Write>>, String> {
    match target.as_deref() {
        None => Ok(None),
        Some("-") => Ok(Some(Box::new(io::BufWriter::new(io::stdout())))),
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("--access-log: cannot open {path}: {e}"))?;
            Ok(Some(Box::new(io::BufWriter::new(file))))
        }
    }
}

/// How long the watchdog lets a clean shutdown run past `--graceful-timeout`.
const WATCHDOG_MARGIN: Duration = Duration::from_secs(1);
/// After a second stop signal, how long the event loop gets to exit by itself.
const SECOND_SIGNAL_GRACE: Duration = Duration::from_millis(500);

/// Bumped by `stand_down_watchdog`: a watchdog started before that does nothing more.
static WATCHDOG_GENERATION: AtomicU64 = AtomicU64::new(0);

/// For a caller that goes on after `run` returned (`evserve.serve()` from Python): the
/// watchdogs started so far no longer end the process.
pub fn stand_down_watchdog() {
    WATCHDOG_GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// The event loop cannot see a stop signal while the app is stuck inside a request. This
/// thread (it never touches Python) ends the process when the loop could not: at the
/// graceful timeout, or soon after a second signal.
fn start_watchdog(graceful: Duration) -> io::Result<()> {
    let mut signals = Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
    let generation = WATCHDOG_GENERATION.load(Ordering::SeqCst);
    let stood_down = move || WATCHDOG_GENERATION.load(Ordering::SeqCst) != generation;
    std::thread::Builder::new()
        .name("evserve-watchdog".into())
        .spawn(move || {
            if signals.forever().next().is_none() || stood_down() {
                return;
            }
            let deadline = Instant::now() + graceful + WATCHDOG_MARGIN;
            loop {
                if stood_down() {
                    return;
                }
                if signals.pending().next().is_some() {
                    std::thread::sleep(SECOND_SIGNAL_GRACE);
                    log::warn("second stop signal while a request is still running: exiting now");
                    std::process::exit(1);
                }
                if Instant::now() >= deadline {
                    log::warn("graceful timeout passed with a request still running: exiting now");
                    std::process::exit(1);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })?;
    Ok(())
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

pub fn run(config: InstanceConfig) -> i32 {
    // Stop signals go to a pipe. The entry point already gave SIGINT back to its default
    // action, so Python's handler (KeyboardInterrupt inside a request) is not chained.
    let (signal_read, signal_write) = match UnixStream::pair() {
        Ok(pair) => pair,
        Err(e) => {
            log::fatal(&format!("cannot create the signal pipe: {e}"));
            return 1;
        }
    };
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered = signal_write
            .try_clone()
            .and_then(|w| signal_hook::low_level::pipe::register(signal, w));
        if let Err(e) = registered {
            log::fatal(&format!("cannot handle signal {signal}: {e}"));
            return 1;
        }
    }
    if let Err(e) = start_watchdog(config.timeouts.graceful) {
        log::fatal(&format!("cannot start the shutdown watchdog: {e}"));
        return 1;
    }
    let mut fds = listenfd::ListenFd::from_env();
    if under_launcher() {
        // Go down with the launcher, never linger as an orphan.
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
    }
    if let Some(dir) = &config.python.chdir {
        if let Err(e) = std::env::set_current_dir(dir) {
            log::fatal(&format!("--chdir {}: {e}", dir.display()));
            return 1;
        }
    }
    raise_fd_limit();
    let access_log = match open_access_log(&config.access_log) {
        Ok(log) => log,
        Err(e) => {
            log::fatal(&e);
            return 1;
        }
    };
    if let Err(message) = wsgi::interpreter::set_sys_path(&config.python) {
        log::fatal(&message);
        return 2;
    }
    Python::attach(|py| serve(py, &config, &mut fds, access_log, signal_read))
}

fn serve(
    py: Python<'_>,
    config: &InstanceConfig,
    fds: &mut listenfd::ListenFd,
    access_log: Option<Box<dyn Write>>,
    signals: UnixStream,
) -> i32 {
    let app = match wsgi::load_app(py, &config.app) {
        Ok(app) => app,
        Err(message) => {
            log::fatal(&message);
            return 2;
        }
    };
    let bound = match listen(config, fds) {
        Ok(b) => b,
        Err(message) => {
            log::fatal(&message);
            return 1;
        }
    };
    let control: Option<UnixDatagram> = match fds.take_unix_datagram(1) {
        Ok(Some(sock)) => {
            let _ = sock.set_nonblocking(true);
            Some(sock)
        }
        _ => None,
    };
    let site = wsgi::Site {
        root_path: &config.root_path,
        server_name: &bound.server_name,
        server_port: &bound.server_port,
        multiprocess: config.multiprocess,
    };
    let mut wsgi_app = match wsgi::WsgiApp::new(py, app, &site) {
        Ok(a) => a,
        Err(e) => {
            e.display(py);
            log::fatal("cannot prepare the WSGI environ");
            return 1;
        }
    };
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
        let _ = c.send(b"ready");
    }
    let settings = server::Settings {
        limits: config.limits,
        timeouts: config.timeouts,
        max_connections: config.max_connections,
        shares_listener: config.shared_listener,
        access_log,
        heartbeat: control,
        signals,
    };
    let result = server::run(&mut wsgi_app, bound.listener, settings);
    drop(wsgi_app);
    if let Some(path) = &bound.unix_path {
        let _ = std::fs::remove_file(path);
    }
    match result {
        Ok(()) => {
            log::info("Shutdown complete");
            0
        }
        Err(e) => {
            log::error(&format!("event loop failed: {e}"));
            1
        }
    }
}
