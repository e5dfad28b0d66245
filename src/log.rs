//! The server's log: timestamped lines on stderr, in the style gunicorn users know.
//!
//! Each line is built whole and goes out in one write(2) to fd 2, so the lines of
//! processes sharing a stderr (the launcher and its instances) never splice into each
//! other. Must never panic on a write error (a closed stderr loses the line, nothing else).
//!
//! With `--log-config`, the messages of the thread that routed them go to Python logging
//! instead (through hooks the WSGI bridge installs: this module never touches Python);
//! other threads (the watchdog, which runs while the app may hold the interpreter) still
//! write directly. The one-line fatal error always goes to stderr.

use std::io::Write;
use std::sync::OnceLock;
use std::thread::ThreadId;

/// Takes `(level, message)`, level being `INFO`, `WARNING` or `ERROR`.
pub type MessageHook = Box<dyn Fn(&str, &str) + Send + Sync>;

/// Where messages go once Python logging is configured.
struct Hooks {
    message: MessageHook,
    /// Reopens the log files of Python's handlers.
    reopen: Box<dyn Fn() + Send + Sync>,
    /// The thread whose messages take the hook.
    thread: ThreadId,
}

static HOOKS: OnceLock<Hooks> = OnceLock::new();

/// From now on, this thread's messages go to `message` and `reopen_files` calls `reopen`.
/// Only the first call of a process counts.
pub fn route_to(message: MessageHook, reopen: Box<dyn Fn() + Send + Sync>) {
    let _ = HOOKS.set(Hooks {
        message,
        reopen,
        thread: std::thread::current().id(),
    });
}

/// `[date] [pid] [LEVEL] message\n`, built in one buffer.
fn format_line(level: &str, message: &str) -> String {
    let now = httpdate::fmt_http_date(std::time::SystemTime::now());
    format!("[{now}] [{}] [{level}] {message}\n", std::process::id())
}

/// One write(2) for the whole line (a pipe takes up to PIPE_BUF bytes atomically); the
/// rest only if the kernel took part of a longer line.
fn write_whole(line: &str) {
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn line(level: &str, message: &str) {
    match HOOKS.get() {
        Some(hooks) if hooks.thread == std::thread::current().id() => {
            (hooks.message)(level, message)
        }
        _ => write_whole(&format_line(level, message)),
    }
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
    write_whole(&format!("evserve: error: {message}\n"));
}

/// After SIGUSR1: the log files Python logging writes to (`--log-config`) are opened
/// again, when a hook for that is installed.
pub fn reopen_files() {
    if let Some(hook) = HOOKS.get() {
        (hook.reopen)();
    }
}

/// `1 instance`, `3 instances`, `0 requests`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `once`, `twice`, `5 times`.
pub fn times(n: usize) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_whole_and_ends_in_one_newline() {
        let line = format_line("INFO", "Listening at: http://127.0.0.1:1");
        assert!(line.starts_with('[') && line.ends_with(" Listening at: http://127.0.0.1:1\n"));
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.contains(&format!("] [{}] [INFO] ", std::process::id())));
    }

    #[test]
    fn counts_read_as_english() {
        assert_eq!(count(1, "instance", "instances"), "1 instance");
        assert_eq!(count(0, "instance", "instances"), "0 instances");
        assert_eq!(count(4, "request", "requests"), "4 requests");
        assert_eq!(times(1), "once");
        assert_eq!(times(2), "twice");
        assert_eq!(times(7), "7 times");
    }
}
