//! The extension module `evserve._evserve`: what the Python package calls.
//!
//! `main` runs the command line, `serve` serves an app object, `server_flags` lists the
//! flags the Python API accepts. Each prepares Python once (`interpreter::prepare`),
//! releases the GIL and hands over to the Rust entry point, and returns an exit code:
//! nothing here exits the process, so Python finalizes normally afterwards.

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::{fork, interpreter};
use crate::config::{LauncherConfig, Mode};
use crate::contract::ExitCode;
use crate::{cli, entry, instance, log, supervisor};

/// Set by the first `serve`: the stop-signal handlers are installed once per process, so
/// a second server in the same process could not be stopped gracefully.
static SERVED: AtomicBool = AtomicBool::new(false);

/// The app object `serve` was given, for the instance to load (see `given_app`).
static GIVEN_APP: Mutex<Option<Py<PyAny>>> = Mutex::new(None);

fn given_slot() -> std::sync::MutexGuard<'static, Option<Py<PyAny>>> {
    GIVEN_APP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The app object handed to `serve`, as the instance loads it.
pub fn given_app(py: Python<'_>) -> Result<Bound<'_, PyAny>, String> {
    given_slot()
        .as_ref()
        .map(|app| app.clone_ref(py).into_bound(py))
        .ok_or_else(|| "cannot load app: no app object was given".to_string())
}

/// `module:qualname` of an app object, for the log; its repr when it has no name.
fn describe(app: &Bound<'_, PyAny>) -> String {
    let named = |obj: &Bound<'_, PyAny>| -> PyResult<String> {
        let module: String = obj.getattr("__module__")?.extract()?;
        let name: String = obj.getattr("__qualname__")?.extract()?;
        Ok(format!("{module}:{name}"))
    };
    named(app)
        .or_else(|_| named(&app.get_type().into_any()).map(|t| format!("{t} instance")))
        .or_else(|_| app.repr().map(|r| r.to_string()))
        .unwrap_or_else(|_| "the app object".into())
}

/// The command line: `argv` as `sys.argv`, `executable` as `sys.executable` (the
/// launcher starts its instances with it). Returns the exit code.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<OsString>, executable: PathBuf) -> i32 {
    // The process ends when this returns: Python's handlers need not come back.
    if let Err(message) = interpreter::prepare(py) {
        log::fatal(&message);
        return 1;
    }
    let args = argv.into_iter().skip(1).collect();
    py.detach(|| entry::main(args, executable))
}

/// Serves `app` with the server flags in `argv` (no program name, no APP). Bad flags
/// raise ValueError with the command line's message; otherwise blocks until the server
/// stops and returns its exit code.
#[pyfunction]
fn serve(py: Python<'_>, app: Bound<'_, PyAny>, argv: Vec<OsString>) -> PyResult<i32> {
    if !app.is_callable() {
        return Err(PyTypeError::new_err(format!(
            "serve() needs a WSGI callable, not {}",
            app.get_type().name()?
        )));
    }
    let mode = match entry::object_mode(argv, &describe(&app)) {
        Err(message) => return Err(PyValueError::new_err(message)),
        Ok(mode) => mode,
    };
    if SERVED.swap(true, Ordering::SeqCst) {
        return Err(PyRuntimeError::new_err(
            "serve() runs once per process: start another process for another server",
        ));
    }
    let python_handlers = interpreter::prepare(py).map_err(PyRuntimeError::new_err)?;
    *given_slot() = Some(app.unbind());
    let code = match mode {
        Mode::Instance(config) => py.detach(|| instance::run(*config)),
        Mode::Launcher(config) => serve_with_launcher(py, *config),
    };
    // The caller goes on: stop signals are Python's again and end nothing by themselves.
    instance::stand_down_watchdog();
    python_handlers.restore(py);
    given_slot().take();
    Ok(code)
}

/// Several instances of an app object: this process forks the preloader, which holds the
/// object and forks the instances, then runs the launcher. The forked processes never
/// return to the caller's code: they run the `atexit` handlers and exit.
fn serve_with_launcher(py: Python<'_>, config: LauncherConfig) -> i32 {
    let threads = fork::other_threads(py);
    if threads > 0 {
        log::fatal(&format!(
            "cannot fork the instances: {} running in this process",
            log::count(threads, "other thread is", "other threads are")
        ));
        return ExitCode::Failure.code();
    }
    if let Some(path) = &config.instance.log_config {
        // The launcher's messages; the preloader and the instances inherit the setup.
        if let Err(message) = super::logging::install(py, path) {
            log::fatal(&message);
            return ExitCode::Failure.code();
        }
    }
    let (ours, theirs) = match UnixDatagram::pair() {
        Ok(pair) => pair,
        Err(e) => {
            log::fatal(&format!("cannot create the preloader's socket: {e}"));
            return ExitCode::Failure.code();
        }
    };
    let pid = match fork::fork(py) {
        Ok(pid) => pid,
        Err(message) => {
            log::fatal(&message);
            return ExitCode::Failure.code();
        }
    };
    if pid == 0 {
        drop(ours);
        let code = instance::run_object_preloader(config.instance, theirs);
        fork::exit_after_atexit(py, code)
    }
    drop(theirs);
    super::title::set(&supervisor::title(&config), "evserve-launch");
    let given = supervisor::GivenPreloader {
        pid: pid.unsigned_abs(),
        socket: ours,
    };
    py.detach(|| supervisor::run_with_preloader(config, given))
}

/// `(name, takes_value, repeatable)` for every server flag, as `--name` without dashes.
#[pyfunction]
fn server_flags() -> Vec<(String, bool, bool)> {
    cli::server_flags()
        .into_iter()
        .map(|flag| (flag.name, flag.takes_value, flag.repeatable))
        .collect()
}

#[pymodule]
#[pyo3(name = "_evserve")]
fn evserve_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add_function(wrap_pyfunction!(serve, m)?)?;
    m.add_function(wrap_pyfunction!(server_flags, m)?)?;
    Ok(())
}
