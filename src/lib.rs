//! evserve: single-threaded event-loop WSGI instances and the launcher that runs them.
//!
//! Module map: `http1` (pure HTTP/1.1 rules), `server` (mio event loop, no Python),
//! `wsgi` (the only module that touches pyo3), `instance` (one instance, glued),
//! `supervisor` (the launcher), `nginx` (config text), `cli`/`config` (flags), `entry` (the
//! command line's dispatch). The Python package `evserve` calls in through `wsgi`'s extension
//! module `evserve._evserve`.

pub mod cli;
pub mod config;
pub mod contract;
pub mod entry;
pub mod http1;
pub mod instance;
pub mod listen;
pub mod log;
pub mod nginx;
pub mod preload;
pub mod proctitle;
pub mod server;
pub mod supervisor;
pub mod wsgi;
