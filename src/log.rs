//! The server's log: timestamped lines on stderr, in the style gunicorn users know.
//!
//! Must never panic on a write error (a closed stderr loses the line, nothing else).

use std::io::Write;

fn line(level: &str, message: &str) {
    let now = httpdate::fmt_http_date(std::time::SystemTime::now());
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "[{now}] [{}] [{level}] {message}", std::process::id());
}

pub fn info(message: &str) {
    line("INFO", message);
}

pub fn warn(message: &str) {
    line("WARNING", message);
}

pub fn error(message: &str) {
    line("ERROR", message);
}

/// The one line that says why evserve is exiting with an error.
pub fn fatal(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "evserve: error: {message}");
}
