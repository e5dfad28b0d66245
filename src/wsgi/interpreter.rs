//! Preparing the running Python for serving: the one place that does it.
//!
//! evserve runs inside the Python that imported it, so it never initialises or finalizes
//! the interpreter (Python finalizes after the entry point returns, running `atexit`
//! handlers and flushing output). It hands SIGINT back to the default action so the Rust
//! stop handlers see it instead of Python's, and puts the app's directories on
//! `sys.path`. It must never touch the network.

use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::config::PythonSetup;

/// Gives SIGINT back to its default action, before the Rust handlers are installed.
///
/// Python installed its own SIGINT handler at start-up; left in place, the Rust handler
/// would pass the signal on to it and a request in progress would get KeyboardInterrupt.
/// Python's `signal.signal` only works in the main thread: serving from another thread
/// is refused with a message saying so.
pub fn prepare(py: Python<'_>) -> Result<(), String> {
    let threading = py.import("threading").map_err(|e| e.to_string())?;
    let in_main = threading
        .call_method0("current_thread")
        .and_then(|current| Ok(current.is(&threading.call_method0("main_thread")?)))
        .map_err(|e| e.to_string())?;
    if !in_main {
        return Err("evserve must run in the main thread (it handles the stop signals)".into());
    }
    let signal = py.import("signal").map_err(|e| e.to_string())?;
    signal
        .getattr("SIGINT")
        .and_then(|sigint| signal.call_method1("signal", (sigint, signal.getattr("SIG_DFL")?)))
        .map(drop)
        .map_err(|e| format!("cannot take over SIGINT from Python: {e}"))
}

/// Puts the working directory first on `sys.path` (as gunicorn does), preceded by any
/// --pythonpath dirs. Call after --chdir.
pub fn set_sys_path(setup: &PythonSetup) -> Result<(), String> {
    Python::attach(|py| set_sys_path_with(py, setup))
        .map_err(|e| format!("cannot set sys.path: {e}"))
}

fn set_sys_path_with(py: Python<'_>, setup: &PythonSetup) -> PyResult<()> {
    let sys = py.import("sys")?;
    let path = sys.getattr("path")?;
    let path = path.cast::<PyList>()?;
    let cwd = std::env::current_dir()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| ".".into());
    path.insert(0, cwd)?;
    for dir in setup.pythonpath.iter().rev() {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        path.insert(0, dir.to_string_lossy().into_owned())?;
    }
    Ok(())
}
