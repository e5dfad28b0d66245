//! Python logging (`--log-config`): the configuration file applied in this process,
//! evserve's messages routed to the "evserve.error" logger and access lines to
//! "evserve.access", with the line's fields as attributes of the record.
//!
//! Used only with `--log-config`: without it nothing here runs and no line costs any
//! Python. A configuration that fails is one line of error, never a traceback.

use std::ffi::CString;
use std::path::Path;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule};

use crate::access_sink::{PythonAccess, Record};
use crate::log;

const SOURCE: &str = include_str!("logging.py");

/// Applies the file and routes evserve's messages to Python logging; returns where access
/// lines go.
pub fn install(py: Python<'_>, path: &Path) -> Result<Box<dyn PythonAccess>, String> {
    let module = (|| -> PyResult<Bound<'_, PyModule>> {
        let code = CString::new(SOURCE)?;
        PyModule::from_code(py, &code, c"evserve_logging.py", c"evserve_logging")
    })()
    .map_err(|e| format!("--log-config: internal module failed: {e}"))?;
    module
        .call_method1("configure", (path,))
        .map_err(|e| format!("--log-config: {}", e.value(py)))?;
    let function = |name: &str| {
        module
            .getattr(name)
            .map(Bound::unbind)
            .map_err(|e| format!("--log-config: internal module failed: {e}"))
    };
    let message = function("log_message")?;
    let reopen = function("reopen_files")?;
    log::route_to(
        Box::new(move |level, text| {
            Python::attach(|py| {
                if let Err(e) = message.call1(py, (level, text)) {
                    e.print(py);
                }
            })
        }),
        Box::new(move || {
            Python::attach(|py| {
                if let Err(e) = reopen.call0(py) {
                    e.print(py);
                }
            })
        }),
    );
    Ok(Box::new(AccessLogger {
        log_access: function("log_access")?,
    }))
}

/// The launcher's part: its own messages go to Python logging (it writes no access lines).
pub fn install_in_launcher(path: &Path) -> Result<(), String> {
    Python::attach(|py| install(py, path).map(drop))
}

struct AccessLogger {
    log_access: Py<PyAny>,
}

impl PythonAccess for AccessLogger {
    fn log(&mut self, line: &str, record: &Record<'_>) {
        Python::attach(|py| {
            let logged = fields(py, record)
                .and_then(|extra| self.log_access.call1(py, (line, extra)).map(drop));
            if let Err(e) = logged {
                e.print(py);
            }
        })
    }
}

fn fields<'py>(py: Python<'py>, r: &Record<'_>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("remote_addr", r.remote_addr.as_deref())?;
    d.set_item("method", r.method.as_deref())?;
    d.set_item("path", r.path.as_deref())?;
    d.set_item("query", r.query.as_deref())?;
    d.set_item("protocol", r.protocol)?;
    d.set_item("status", r.status)?;
    d.set_item("bytes", r.bytes)?;
    d.set_item("duration", r.duration)?;
    d.set_item("referer", r.referer.as_deref())?;
    d.set_item("user_agent", r.user_agent.as_deref())?;
    d.set_item("request_id", r.request_id.as_deref())?;
    Ok(d)
}
