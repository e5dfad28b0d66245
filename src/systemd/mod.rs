//! systemd integration: sockets passed by socket activation (`activation`) and state
//! notifications to the service manager (`notify`).
//!
//! Both read their environment variables once, at start-up, and remove them, so no process
//! the launcher starts mistakes them for its own. Nothing here runs on the request path, and
//! without the variables nothing here does anything.

pub mod activation;
pub mod notify;

pub use activation::ActivatedSocket;
pub use notify::Notifier;
