//! Process titles, so `ps` tells the launcher from its instances (`ps -o args`,
//! /proc/PID/cmdline) and `top` shows a short name (`comm`). Set through the
//! `setproctitle` package, which evserve depends on.
//!
//! Never fails the caller: a title that cannot be set is a cosmetic loss, said once.

use pyo3::prelude::*;

/// Sets this process's title and its short name (at most 15 bytes are kept).
pub fn set(title: &str, short: &str) {
    let result = Python::attach(|py| -> PyResult<()> {
        let module = py.import("setproctitle")?;
        module.call_method1("setproctitle", (title,))?;
        module.call_method1("setthreadtitle", (short,))?;
        Ok(())
    });
    if let Err(e) = result {
        crate::log::warn(&format!("cannot set the process title: {e}"));
    }
}
