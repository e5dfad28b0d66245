//! Listening sockets the launcher binds and hands to its instances as fd 3.
//!
//! The launcher keeps every socket open for its whole life, so a port is never closed while
//! an instance restarts: clients wait in the backlog instead of being refused. Never accepts.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use socket2::Socket;

use crate::config::BindAddr;

/// One bound, listening socket.
pub struct Listener {
    pub addr: BindAddr,
    socket: Socket,
    /// Passed by systemd (socket activation): never closed while the launcher lives,
    /// never unlinked.
    pub activated: bool,
}

impl Listener {
    /// Binds `addr` (see `crate::listen` for the options) and starts listening.
    pub fn bind(addr: &BindAddr, backlog: u32) -> Result<Listener, String> {
        Ok(Listener {
            addr: addr.clone(),
            socket: crate::listen::bind(addr, backlog)?,
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
        match &self.addr {
            BindAddr::Tcp(sa) => BindAddr::Tcp(loopback_if_unspecified(*sa)),
            other => other.clone(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let (BindAddr::Unix(path), false) = (&self.addr, self.activated) {
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
