//! The preloader (`--preload`): imports the app once, freezes the GC, and forks
//! instances from that process on request, so they share its memory copy-on-write.
//!
//! Contract with the launcher (started as `python -m evserve FLAGS` with
//! `EVSERVE_ROLE=preloader` and a SOCK_SEQPACKET socket on fd 3): the preloader sends
//! `ready` once the app is imported (or exits 2 when it cannot be); each request
//! `fork SLOT` carries two fds (the listening socket, the instance's control socket); the
//! answer is `forked SLOT PID` or `failed SLOT REASON`. Instances are double-forked, so a
//! launcher that is a child subreaper becomes their parent; each finds its sockets on fds
//! 3 and 4 as an exec'd instance does. End of file on fd 3 ends the preloader.
//!
//! It must never hold a second thread when it forks, and forks only through Python's
//! `os.fork` (which runs the interpreter's before/after-fork hooks).

use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::{interpreter, load_app, module};
use crate::config::{AppSpec, InstanceConfig};
use crate::{instance, log};

/// Set by the launcher in the preloader's environment.
pub const ROLE: &str = "EVSERVE_ROLE";
pub const ROLE_PRELOADER: &str = "preloader";
/// The preloader's request channel.
const CHANNEL_FD: i32 = 3;
/// How long a forked instance waits to be handed over to the launcher.
const REPARENT_WAIT: Duration = Duration::from_secs(5);

/// Whether this process was started as the preloader.
pub fn is_preloader() -> bool {
    std::env::var(ROLE).is_ok_and(|role| role == ROLE_PRELOADER)
}

/// Runs the preloader for `config` (the launcher's instance settings) until the launcher
/// closes the channel. Returns the exit code.
pub fn run(config: InstanceConfig) -> i32 {
    if let Some(dir) = &config.python.chdir {
        if let Err(e) = std::env::set_current_dir(dir) {
            log::fatal(&format!("--chdir {}: {e}", dir.display()));
            return 1;
        }
    }
    if let Err(message) = interpreter::set_sys_path(&config.python) {
        log::fatal(&message);
        return 2;
    }
    Python::attach(|py| match preload(py, &config) {
        Ok(code) => code,
        Err(e) => {
            e.display(py);
            log::fatal("the preloader failed");
            1
        }
    })
}

fn preload(py: Python<'_>, config: &InstanceConfig) -> PyResult<i32> {
    let app = match load_app(py, &config.app) {
        Ok(app) => app,
        Err(message) => {
            log::fatal(&message);
            return Ok(2);
        }
    };
    module::set_given_app(app.unbind());
    let socket = py.import("socket")?;
    let os = py.import("os")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("fileno", CHANNEL_FD)?;
    let channel = socket.getattr("socket")?.call((), Some(&kwargs))?;
    py.import("gc")?.call_method0("freeze")?;
    channel.call_method1("send", (PyBytes::new(py, b"ready"),))?;
    log::info(&format!(
        "preloaded {} ({})",
        config.app.text,
        std::process::id()
    ));
    loop {
        let received = socket.call_method1("recv_fds", (&channel, 256, 2))?;
        let message: Vec<u8> = received.get_item(0)?.extract()?;
        let fds: Vec<i32> = received.get_item(1)?.extract()?;
        if message.is_empty() {
            return Ok(0);
        }
        let text = String::from_utf8_lossy(&message).into_owned();
        let slot = text.strip_prefix("fork ").unwrap_or("").trim().to_string();
        let reply = match (slot.parse::<usize>(), fds.as_slice()) {
            (Ok(_), &[listen, control]) => {
                let request = ForkRequest {
                    slot: &slot,
                    listen,
                    control,
                };
                match fork_instance(py, config, &request) {
                    Ok(pid) => format!("forked {slot} {pid}"),
                    Err(e) => format!("failed {slot} {e}"),
                }
            }
            _ => format!("failed {slot} bad request '{text}' with {} fds", fds.len()),
        };
        for fd in fds {
            let _ = os.call_method1("close", (fd,));
        }
        channel.call_method1("send", (PyBytes::new(py, reply.as_bytes()),))?;
    }
}

/// One `fork SLOT` request: the slot and the two fds it came with.
struct ForkRequest<'a> {
    slot: &'a str,
    listen: i32,
    control: i32,
}

/// Double-forks an instance for `request`; returns its pid. Only the preloader returns
/// from here: the forked processes end with `os._exit`.
fn fork_instance(
    py: Python<'_>,
    config: &InstanceConfig,
    request: &ForkRequest<'_>,
) -> PyResult<i32> {
    let os = py.import("os")?;
    // Output still buffered here would otherwise be written by every child as well.
    flush_stdio(py)?;
    let (read_end, write_end): (i32, i32) = os.call_method0("pipe")?.extract()?;
    let middle: i32 = os.call_method0("fork")?.extract()?;
    if middle == 0 {
        // The middle process: fork the instance, tell its pid, exit so it is reparented.
        let code = (|| -> PyResult<i32> {
            os.call_method1("close", (read_end,))?;
            let middle: i32 = os.call_method0("getpid")?.extract()?;
            let pid: i32 = os.call_method0("fork")?.extract()?;
            if pid == 0 {
                os.call_method1("close", (write_end,))?;
                become_instance(py, config, request, middle)
            } else {
                let told = PyBytes::new(py, pid.to_string().as_bytes());
                os.call_method1("write", (write_end, told))?;
                Ok(0)
            }
        })()
        .unwrap_or_else(|e| {
            e.display(py);
            1
        });
        let _ = os.call_method1("_exit", (code,));
        std::process::exit(code);
    }
    os.call_method1("close", (write_end,))?;
    let told: Vec<u8> = os.call_method1("read", (read_end, 32))?.extract()?;
    os.call_method1("close", (read_end,))?;
    os.call_method1("waitpid", (middle, 0))?;
    String::from_utf8_lossy(&told)
        .parse()
        .map_err(|_| pyo3::exceptions::PyOSError::new_err("the instance did not start"))
}

/// In the forked instance: wait to be handed to the launcher, put the sockets on fds 3
/// and 4, serve the preloaded app, run `atexit` handlers, flush. Returns the exit code.
/// `middle` is the pid of the process that forked it, which exits at once.
fn become_instance(
    py: Python<'_>,
    config: &InstanceConfig,
    request: &ForkRequest<'_>,
    middle: i32,
) -> PyResult<i32> {
    let ForkRequest {
        slot,
        listen,
        control,
    } = *request;
    let os = py.import("os")?;
    let deadline = Instant::now() + REPARENT_WAIT;
    while os.call_method0("getppid")?.extract::<i32>()? == middle && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    os.call_method1("setpgid", (0, 0))?;
    let fcntl = py.import("fcntl")?;
    let dup_high = |fd: i32| -> PyResult<i32> {
        let cmd = fcntl.getattr("F_DUPFD_CLOEXEC")?;
        fcntl.call_method1("fcntl", (fd, cmd, 10))?.extract()
    };
    let (high_listen, high_control) = (dup_high(listen)?, dup_high(control)?);
    os.call_method1("dup2", (high_listen, 3))?;
    os.call_method1("dup2", (high_control, 4))?;
    for fd in [high_listen, high_control, listen, control] {
        if fd > 4 {
            os.call_method1("close", (fd,))?;
        }
    }
    let environ = os.getattr("environ")?;
    for (name, value) in [
        ("LISTEN_FDS", "2"),
        (instance::UNDER_LAUNCHER, "1"),
        ("EVSERVE_INSTANCE_ID", slot),
    ] {
        environ.set_item(name, value)?;
    }
    for name in ["LISTEN_PID", "LISTEN_FDNAMES", ROLE] {
        environ.call_method1("pop", (name, py.None()))?;
    }
    let mut instance_config = config.clone();
    instance_config.app = AppSpec::object(&config.app.text);
    // Already in the --chdir directory.
    instance_config.python.chdir = None;
    let code = py.detach(|| instance::run(instance_config));
    py.import("atexit")?.call_method0("_run_exitfuncs")?;
    flush_stdio(py)?;
    Ok(code)
}

fn flush_stdio(py: Python<'_>) -> PyResult<()> {
    let sys = py.import("sys")?;
    for stream in ["stdout", "stderr"] {
        let _ = sys.getattr(stream)?.call_method0("flush");
    }
    Ok(())
}
