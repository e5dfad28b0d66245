//! What forking a process that runs Python needs from Python itself: freezing the objects
//! imported so far, `os.fork()` (which runs the interpreter's before- and after-fork hooks)
//! and `os._exit()`.
//!
//! It must never fork while another thread exists: callers check `other_threads` first.

use pyo3::prelude::*;

/// Moves every object tracked so far to the permanent generation, so the collector never
/// writes to their pages and forked children keep sharing them.
pub fn freeze(py: Python<'_>) -> Result<(), String> {
    let gc = py
        .import("gc")
        .map_err(|e| format!("cannot import gc: {e}"))?;
    gc.call_method0("collect")
        .and_then(|_| gc.call_method0("freeze"))
        .map(|_| ())
        .map_err(|e| format!("gc.freeze() failed: {e}"))
}

/// Threads Python knows of besides the calling one (started by the app at import).
pub fn other_threads(py: Python<'_>) -> usize {
    py.import("threading")
        .and_then(|t| t.call_method0("active_count"))
        .and_then(|n| n.extract::<usize>())
        .map_or(0, |n| n.saturating_sub(1))
}

/// `os.fork()`: the child's pid in the parent, 0 in the child.
pub fn fork(py: Python<'_>) -> Result<i32, String> {
    py.import("os")
        .and_then(|os| os.call_method0("fork"))
        .and_then(|pid| pid.extract::<i32>())
        .map_err(|e| format!("fork failed: {e}"))
}

/// `os._exit(code)`: leaves at once, without atexit handlers or flushing (for the short-lived
/// middle process of a double fork, which must not run the app's exit code).
pub fn exit_now(py: Python<'_>, code: i32) -> ! {
    let _ = py
        .import("os")
        .and_then(|os| os.call_method1("_exit", (code,)));
    std::process::abort()
}

/// Ends a forked process without returning to the Python code that forked it: runs the
/// `atexit` handlers (the app's included), flushes stdout and stderr, then `os._exit(code)`.
pub fn exit_after_atexit(py: Python<'_>, code: i32) -> ! {
    let _ = py
        .import("atexit")
        .and_then(|atexit| atexit.call_method0("_run_exitfuncs"));
    if let Ok(sys) = py.import("sys") {
        for stream in ["stdout", "stderr"] {
            let _ = sys.getattr(stream).and_then(|s| s.call_method0("flush"));
        }
    }
    exit_now(py, code)
}
