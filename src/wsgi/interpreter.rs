//! Starting and stopping the embedded CPython: the one place that initialises it.
//!
//! It picks the interpreter (a venv's python, or the one evserve was built against),
//! refuses a venv of another Python version, initialises with signal handling left to
//! Rust, and finalizes at the end so `atexit` handlers run and buffered output is
//! flushed. It must never be called twice, nor touch the network.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::config::PythonSetup;

/// The interpreter evserve was built against, and its version ("3.11").
const BUILD_PYTHON: &str = env!("EVSERVE_BUILD_PYTHON");
const BUILD_VERSION: &str = env!("EVSERVE_BUILD_PYTHON_VERSION");

/// Reads `version` (or `version_info`) from a venv's pyvenv.cfg as "major.minor".
fn venv_version(venv: &Path) -> Result<String, String> {
    let cfg = venv.join("pyvenv.cfg");
    let text = std::fs::read_to_string(&cfg).map_err(|e| {
        format!(
            "{} is not a virtualenv: cannot read {}: {e}",
            venv.display(),
            cfg.display()
        )
    })?;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key == "version" || key == "version_info" {
            let mut parts = value.trim().split('.');
            if let (Some(major), Some(minor)) = (parts.next(), parts.next()) {
                return Ok(format!("{major}.{minor}"));
            }
        }
    }
    Err(format!("{} names no Python version", cfg.display()))
}

/// The python executable CPython should consider itself to be.
fn choose_executable(setup: &PythonSetup) -> Result<PathBuf, String> {
    let Some(venv) = &setup.venv else {
        return Ok(PathBuf::from(BUILD_PYTHON));
    };
    let venv = std::path::absolute(venv).unwrap_or_else(|_| venv.clone());
    let version = venv_version(&venv)?;
    if version != BUILD_VERSION {
        return Err(format!(
            "the virtualenv {} was made with Python {version}, but evserve embeds Python {BUILD_VERSION}; \
             recreate it with python{BUILD_VERSION} -m venv",
            venv.display()
        ));
    }
    for name in ["python", "python3", &format!("python{BUILD_VERSION}")] {
        let candidate = venv.join("bin").join(name);
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "the virtualenv {} has no bin/python",
        venv.display()
    ))
}

/// Initialises CPython for this process. Call once, from the thread that will run the
/// event loop, after the Rust signal handlers are installed and the working directory
/// is set. On return no thread holds the GIL.
pub fn start(setup: &PythonSetup) -> Result<(), String> {
    let executable = choose_executable(setup)?;
    let executable = CString::new(executable.as_os_str().as_encoded_bytes())
        .map_err(|_| "the python path contains a NUL byte".to_string())?;
    // SAFETY: PyConfig is a plain C struct that PyConfig_InitPythonConfig fully
    // initialises before any other use; every call below follows the documented
    // init-configure-initialise-clear sequence on this one thread, before any other
    // Python API is used, and the CString outlives the call that copies it.
    unsafe {
        let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::zeroed();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let mut config = config.assume_init();
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        let status =
            ffi::PyConfig_SetBytesString(&mut config, &mut config.executable, executable.as_ptr());
        if ffi::PyStatus_Exception(status) != 0 {
            ffi::PyConfig_Clear(&mut config);
            return Err("cannot configure the Python executable".into());
        }
        let status = ffi::Py_InitializeFromConfig(&config);
        ffi::PyConfig_Clear(&mut config);
        if ffi::PyStatus_Exception(status) != 0 {
            let message = if status.err_msg.is_null() {
                "unknown error".to_string()
            } else {
                std::ffi::CStr::from_ptr(status.err_msg)
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(format!("cannot start Python: {message}"));
        }
        // Initialisation left this thread holding the GIL; pyo3 takes it per use.
        ffi::PyEval_SaveThread();
    }
    Python::attach(|py| set_sys_path(py, setup)).map_err(|e| format!("cannot set sys.path: {e}"))
}

/// The working directory first (as gunicorn does), preceded by any --pythonpath dirs.
fn set_sys_path(py: Python<'_>, setup: &PythonSetup) -> PyResult<()> {
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

/// Runs `atexit` handlers, flushes stdio and tears the interpreter down. Every Python
/// object must already be released; nothing may use Python afterwards.
pub fn finalize() -> i32 {
    // SAFETY: called once, at the end of the process, from the thread that
    // initialised Python, after every pyo3 handle was dropped; PyGILState_Ensure gives
    // this thread the GIL that Py_FinalizeEx requires, and no pyo3 guard is alive that
    // would touch the interpreter afterwards.
    unsafe {
        if ffi::Py_IsInitialized() == 0 {
            return 0;
        }
        ffi::PyGILState_Ensure();
        ffi::Py_FinalizeEx()
    }
}
