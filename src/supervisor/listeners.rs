//! Listening sockets the launcher binds and hands to its instances as fd 3.
//!
//! The launcher keeps every socket open for its whole life, so a port is never closed while
//! an instance restarts: clients wait in the backlog instead of being refused. Never accepts,
//! and never removes a file at a socket path unless it is a socket (see `crate::listen`).

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use socket2::Socket;

use crate::config::{BindAddr, LauncherConfig};

/// One bound, listening socket.
pub struct Listener {
    pub addr: BindAddr,
    socket: Socket,
    /// Passed by systemd (socket activation): never closed while the launcher lives,
    /// never unlinked.
    pub activated: bool,
}

impl Listener {
    /// Binds `addr` (see `crate::listen` for the options) and starts listening. A Unix
    /// socket is made connectable by every user (mode 0666), as loopback TCP is: nginx's
    /// workers may run as another user; the socket's directory decides who reaches it.
    pub fn bind(addr: &BindAddr, backlog: u32) -> Result<Listener, String> {
        let socket = crate::listen::bind(addr, backlog)?;
        if let BindAddr::Unix(path) = addr {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
                .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
        }
        Ok(Listener {
            addr: addr.clone(),
            socket,
            activated: false,
        })
    }

    /// A socket systemd passed (see `crate::systemd::activation`).
    pub fn from_systemd(socket: crate::systemd::ActivatedSocket) -> Listener {
        Listener {
            addr: socket.addr,
            socket: socket.socket,
            activated: true,
        }
    }

    /// A duplicate of the socket for one child (the launcher keeps its own).
    pub fn dup(&self) -> std::io::Result<OwnedFd> {
        Ok(self.socket.try_clone()?.into())
    }

    /// Where a client on this host connects: the loopback address for a wildcard bind.
    pub fn local_target(&self) -> BindAddr {
        local_target(&self.addr)
    }
}

impl Drop for Listener {
    /// Removes the socket file, unless something else has taken its place since.
    fn drop(&mut self) {
        if let (BindAddr::Unix(path), false) = (&self.addr, self.activated) {
            let still_a_socket = std::fs::symlink_metadata(path)
                .map(|meta| meta.file_type().is_socket())
                .unwrap_or(false);
            if still_a_socket {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Where a client on this host connects to reach `addr`.
pub fn local_target(addr: &BindAddr) -> BindAddr {
    match addr {
        BindAddr::Tcp(sa) => BindAddr::Tcp(loopback_if_unspecified(*sa)),
        other => other.clone(),
    }
}

/// `0.0.0.0:P` and `[::]:P` become the loopback address on port P.
pub fn loopback_if_unspecified(sa: SocketAddr) -> SocketAddr {
    if !sa.ip().is_unspecified() {
        return sa;
    }
    match sa {
        SocketAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], sa.port())),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, sa.port())),
    }
}

/// Instance `n`'s socket under `--socket-dir`.
pub fn instance_socket(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("instance-{n}.sock"))
}

/// The addresses the launcher binds: one per port with `--port-range`, one socket per
/// instance with `--socket-dir`, else the one shared address.
pub fn addresses(config: &LauncherConfig) -> Vec<BindAddr> {
    if let Some(dir) = &config.socket_dir {
        return (0..config.workers)
            .map(|n| BindAddr::Unix(instance_socket(dir, n)))
            .collect();
    }
    match (&config.instance.bind, config.ports) {
        (BindAddr::Tcp(sa), Some((first, last))) => (first..=last)
            .map(|port| BindAddr::Tcp(SocketAddr::new(sa.ip(), port)))
            .collect(),
        (other, _) => vec![other.clone()],
    }
}

/// `--socket-dir`: creates the directory (mode 0755) if it is missing; refuses a path that
/// is not a directory.
pub fn prepare_socket_dir(config: &LauncherConfig) -> Result<(), String> {
    let Some(dir) = &config.socket_dir else {
        return Ok(());
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!("--socket-dir {}: not a directory", dir.display())),
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| format!("--socket-dir {}: cannot create it: {e}", dir.display())),
    }
}

/// `unix:/run/app/instance-{0..3}.sock` for the log and the status headline.
pub fn socket_dir_text(dir: &Path, workers: u32) -> String {
    format!(
        "unix:{}/instance-{{0..{}}}.sock",
        dir.display(),
        workers.saturating_sub(1)
    )
}
