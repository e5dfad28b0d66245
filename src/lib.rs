//! evserve: single-threaded event-loop WSGI instances and the launcher that runs them.
//!
//! Module map: `http1` (pure HTTP/1.1 rules), `server` (mio event loop, no Python),
//! `wsgi` (the Python bridge: the extension module `evserve._evserve`, the app, the
//! environ and responses, forking and process titles), `instance` (one instance, glued),
//! `preload` (the process that imports the app once and forks instances), `supervisor`
//! (the launcher), `contract` (what the launcher and its instances agree on), `listen`
//! (binding sockets), `static_files` (which file a request names and how it is
//! answered), `systemd` (socket activation and sd_notify), `forwarded` (which peers'
//! X-Forwarded-* headers count), `nginx`
//! (config text), `cli`/`config` (flags), `entry` (the command line's dispatch), `log`,
//! `metrics` (request counters, the Prometheus text and the `--metrics` listener).
//!
//! `unsafe` is refused everywhere but in the Python bridge, and every `unsafe` block there
//! says why it is sound.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod access_format;
pub mod access_sink;
pub mod cli;
pub mod config;
pub mod contract;
pub mod entry;
pub mod forwarded;
pub mod http1;
pub mod instance;
pub mod listen;
pub mod log;
pub mod metrics;
pub mod nginx;
pub mod preload;
pub mod server;
pub mod static_files;
pub mod supervisor;
pub mod systemd;
#[allow(unsafe_code)]
pub mod wsgi;
