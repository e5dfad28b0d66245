//! Listening sockets the launcher binds and hands to its instances as fd 3.
//!
//! The launcher keeps every socket open for its whole life, so a port is never closed while
//! an instance restarts: clients wait in the backlog instead of being refused. Never accepts.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::BindAddr;

/// One bound, listening socket.
pub struct Listener {
    pub addr: BindAddr,
    socket: Socket,
}

impl Listener {
    /// Binds `addr` with SO_REUSEADDR and starts listening with `backlog`.
    pub fn bind(addr: &BindAddr, backlog: u32) -> Result<Listener, String> {
        let fail = |e: std::io::Error| format!("cannot listen on {addr}: {e}");
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        let socket = match addr {
            BindAddr::Tcp(sa) => {
                let socket =
                    Socket::new(Domain::for_address(*sa), Type::STREAM, None).map_err(fail)?;
                socket.set_reuse_address(true).map_err(fail)?;
                if sa.is_ipv6() {
                    socket.set_only_v6(true).map_err(fail)?;
                }
                socket.bind(&SockAddr::from(*sa)).map_err(fail)?;
                socket
            }
            BindAddr::Unix(path) => {
                remove_stale_unix_socket(path)?;
                let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(fail)?;
                socket
                    .bind(&SockAddr::unix(path).map_err(fail)?)
                    .map_err(fail)?;
                socket
            }
        };
        socket.listen(backlog).map_err(fail)?;
        Ok(Listener {
            addr: addr.clone(),
            socket,
        })
    }

    /// A duplicate of the socket for one child (the launcher keeps its own).
    pub fn dup(&self) -> std::io::Result<OwnedFd> {
        Ok(self.socket.try_clone()?.into())
    }

    /// Where a client on this host connects: the loopback address for a wildcard bind.
    pub fn local_target(&self) -> BindAddr {
        match &self.addr {
            BindAddr::Tcp(sa) => BindAddr::Tcp(loopback_if_unspecified(*sa)),
            other => other.clone(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let BindAddr::Unix(path) = &self.addr {
            let _ = std::fs::remove_file(path);
        }
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

/// Removes a Unix socket file nobody listens on any more; refuses to touch one in use or a
/// file that is not a socket.
pub fn remove_stale_unix_socket(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{} exists and is not a socket; not replacing it",
            path.display()
        ));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(format!("{} is in use by another process", path.display()));
    }
    std::fs::remove_file(path).map_err(|e| format!("cannot remove stale {}: {e}", path.display()))
}

/// The addresses the launcher binds: one per port with `--port-range`, else the one shared
/// address.
pub fn addresses(bind: &BindAddr, ports: Option<(u16, u16)>) -> Vec<BindAddr> {
    match (bind, ports) {
        (BindAddr::Tcp(sa), Some((first, last))) => (first..=last)
            .map(|port| BindAddr::Tcp(SocketAddr::new(sa.ip(), port)))
            .collect(),
        (other, _) => vec![other.clone()],
    }
}
