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

/// Python's own handlers for the stop signals, as they were before `prepare`.
pub struct PythonHandlers {
    saved: Vec<(Py<PyAny>, Py<PyAny>)>,
}

impl PythonHandlers {
    /// Gives SIGINT and SIGTERM back to Python's handlers, for a caller that goes on
    /// after serving. Failures are only logged: the server has already stopped.
    pub fn restore(self, py: Python<'_>) {
        let restored = py.import("signal").and_then(|signal| {
            for (signum, handler) in &self.saved {
                signal.call_method1("signal", (signum, handler))?;
            }
            Ok(())
        });
        if let Err(e) = restored {
            crate::log::warn(&format!("cannot give the stop signals back to Python: {e}"));
        }
    }
}

/// Gives SIGINT back to its default action, before the Rust handlers are installed, and
/// returns Python's handlers for SIGINT and SIGTERM.
///
/// Python installed its own SIGINT handler at start-up; left in place, the Rust handler
/// would pass the signal on to it and a request in progress would get KeyboardInterrupt.
/// Python's `signal.signal` only works in the main thread: serving from another thread
/// is refused with a message saying so.
pub fn prepare(py: Python<'_>) -> Result<PythonHandlers, String> {
    let threading = py.import("threading").map_err(|e| e.to_string())?;
    let in_main = threading
        .call_method0("current_thread")
        .and_then(|current| Ok(current.is(&threading.call_method0("main_thread")?)))
        .map_err(|e| e.to_string())?;
    if !in_main {
        return Err("evserve must run in the main thread (it handles the stop signals)".into());
    }
    (|| -> PyResult<PythonHandlers> {
        let signal = py.import("signal")?;
        let mut saved = Vec::new();
        for name in ["SIGINT", "SIGTERM"] {
            let signum = signal.getattr(name)?;
            let handler = signal.call_method1("getsignal", (&signum,))?;
            saved.push((signum.unbind(), handler.unbind()));
        }
        signal.call_method1(
            "signal",
            (signal.getattr("SIGINT")?, signal.getattr("SIG_DFL")?),
        )?;
        Ok(PythonHandlers { saved })
    })()
    .map_err(|e| format!("cannot take over SIGINT from Python: {e}"))
}

/// `--reload`: the app's modules are not cached as `.pyc` files. Python trusts a cache whose
/// source has the same size and the same mtime second, so two saves of the same size within
/// one second would otherwise reload the first one's code.
pub fn write_no_bytecode(py: Python<'_>) {
    if let Err(e) = py
        .import("sys")
        .and_then(|sys| sys.setattr("dont_write_bytecode", true))
    {
        crate::log::warn(&format!("cannot turn off .pyc caching: {e}"));
    }
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
