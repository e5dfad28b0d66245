//! Socket activation: the listening sockets systemd passes as fds 3.. with `LISTEN_FDS`,
//! `LISTEN_PID` (which must be this process) and `LISTEN_FDNAMES`.
//!
//! The variables are parsed by `sd-notify` and the fds taken over by `listenfd`; this module
//! checks what they are (listening stream sockets, TCP or Unix) and matches them to what the
//! flags ask for. A mismatch is a one-line error, never a silent fallback to binding. It
//! never closes or unlinks what it did not create.

use std::os::fd::RawFd;

use socket2::Socket;

use crate::config::BindAddr;
use crate::contract::{ENV_LISTEN_FDNAMES, ENV_LISTEN_FDS, ENV_LISTEN_PID};
use crate::log;

/// One socket systemd passed, listening.
#[derive(Debug)]
pub struct ActivatedSocket {
    pub fd: RawFd,
    /// Its `FileDescriptorName=` (systemd's default is the socket unit's name).
    pub name: String,
    pub addr: BindAddr,
    pub socket: Socket,
}

impl ActivatedSocket {
    /// `http://127.0.0.1:8001 (fd 3, "web")`.
    pub fn describe(&self) -> String {
        format!("{} (fd {}, {:?})", self.addr, self.fd, self.name)
    }
}

/// Takes the sockets systemd passed to this process (none without `LISTEN_FDS`) and removes
/// the three variables. Call before any thread starts.
pub fn take_sockets() -> Result<Vec<ActivatedSocket>, String> {
    let taken = take_from_env();
    for var in [ENV_LISTEN_FDS, ENV_LISTEN_PID, ENV_LISTEN_FDNAMES] {
        std::env::remove_var(var);
    }
    taken
}

fn take_from_env() -> Result<Vec<ActivatedSocket>, String> {
    let shown = |var| std::env::var(var).unwrap_or_else(|_| "(unset)".into());
    let fail = |e: std::io::Error| {
        format!(
            "socket activation: {e} (LISTEN_FDS={}, LISTEN_PID={}, LISTEN_FDNAMES={})",
            shown(ENV_LISTEN_FDS),
            shown(ENV_LISTEN_PID),
            shown(ENV_LISTEN_FDNAMES)
        )
    };
    let passed: Vec<(RawFd, String)> = sd_notify::listen_fds_with_names().map_err(fail)?.collect();
    if passed.is_empty() {
        warn_about_foreign_variables();
        return Ok(Vec::new());
    }
    let mut fds = listenfd::ListenFd::from_env();
    passed
        .into_iter()
        .enumerate()
        .map(|(index, (fd, name))| take_one(&mut fds, index, fd, name))
        .collect()
}

/// `LISTEN_FDS` meant for another process (a wrapper that did not exec evserve) is ignored,
/// as systemd's own library does, but said.
fn warn_about_foreign_variables() {
    if std::env::var_os(ENV_LISTEN_FDS).is_none_or(|n| n == "0") {
        return;
    }
    let owner = std::env::var(ENV_LISTEN_PID).unwrap_or_else(|_| "unset".into());
    log::warn(&format!(
        "LISTEN_FDS is set but LISTEN_PID is {owner}, not this process ({}): the sockets are \
         not for evserve (start it by exec for socket activation); binding its own",
        std::process::id()
    ));
}

fn take_one(
    fds: &mut listenfd::ListenFd,
    index: usize,
    fd: RawFd,
    name: String,
) -> Result<ActivatedSocket, String> {
    let what = format!("socket activation: fd {fd} ({name:?})");
    // A socket of the wrong kind stays in place, so TCP then Unix can both be tried.
    let socket: Socket = match fds.take_tcp_listener(index) {
        Ok(Some(l)) => l.into(),
        _ => match fds.take_unix_listener(index) {
            Ok(Some(l)) => l.into(),
            Ok(None) => return Err(format!("{what} was already taken")),
            Err(e) => return Err(format!("{what} is not a TCP or Unix stream socket ({e})")),
        },
    };
    if !socket.is_listener().unwrap_or(false) {
        return Err(format!(
            "{what} is not listening: evserve takes listening sockets (Accept=no in the \
             .socket unit)"
        ));
    }
    let addr = bound_address(&socket).map_err(|why| format!("{what}: {why}"))?;
    Ok(ActivatedSocket {
        fd,
        name,
        addr,
        socket,
    })
}

/// Where the socket is bound: a TCP address or a Unix socket path.
fn bound_address(socket: &Socket) -> Result<BindAddr, String> {
    let local = socket
        .local_addr()
        .map_err(|e| format!("cannot read its address: {e}"))?;
    if let Some(sa) = local.as_socket() {
        return Ok(BindAddr::Tcp(sa));
    }
    match local.as_pathname() {
        Some(path) => Ok(BindAddr::Unix(path.to_path_buf())),
        None => {
            Err("an abstract or unnamed Unix socket: use a path (ListenStream=/run/...)".into())
        }
    }
}

fn listing(sockets: &[ActivatedSocket]) -> String {
    let all: Vec<String> = sockets.iter().map(ActivatedSocket::describe).collect();
    all.join(", ")
}

/// The one socket a single instance or `--workers` serves; `who` names the mode in errors.
pub fn the_one(mut sockets: Vec<ActivatedSocket>, who: &str) -> Result<ActivatedSocket, String> {
    if sockets.len() != 1 {
        return Err(format!(
            "socket activation: {who} serves one socket, but systemd passed {}: {}",
            sockets.len(),
            listing(&sockets)
        ));
    }
    sockets
        .pop()
        .ok_or_else(|| "socket activation: no socket".into())
}

/// `--port-range FIRST-LAST`: one TCP socket per port, matched by the port it is bound to,
/// in port order. A missing, doubled or extra socket is an error.
pub fn one_per_port(
    mut sockets: Vec<ActivatedSocket>,
    (first, last): (u16, u16),
) -> Result<Vec<ActivatedSocket>, String> {
    let port_of = |s: &ActivatedSocket| match s.addr {
        BindAddr::Tcp(sa) => Some(sa.port()),
        BindAddr::Unix(_) => None,
    };
    let range = format!("--port-range {first}-{last}");
    if let Some(unix) = sockets.iter().find(|s| port_of(s).is_none()) {
        return Err(format!(
            "socket activation: {range} takes TCP sockets, but systemd passed {}",
            unix.describe()
        ));
    }
    let mut chosen = Vec::new();
    for port in first..=last {
        let matching: Vec<usize> = (0..sockets.len())
            .filter(|&i| port_of(&sockets[i]) == Some(port))
            .collect();
        match matching[..] {
            [one] => chosen.push(sockets.remove(one)),
            [] => {
                return Err(format!(
                    "socket activation: {range} needs a socket on port {port}, and systemd \
                     passed none (it passed {})",
                    listing(&sockets)
                ))
            }
            _ => {
                return Err(format!(
                    "socket activation: systemd passed {} sockets on port {port}; {range} \
                     serves one per port",
                    matching.len()
                ))
            }
        }
    }
    if !sockets.is_empty() {
        return Err(format!(
            "socket activation: systemd passed sockets outside {range}: {}",
            listing(&sockets)
        ));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener};

    fn tcp_socket(port_hint: &mut Vec<TcpListener>) -> ActivatedSocket {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr: SocketAddr = l.local_addr().expect("addr");
        let socket = Socket::from(l.try_clone().expect("dup"));
        port_hint.push(l);
        ActivatedSocket {
            fd: 3,
            name: "web".into(),
            addr: BindAddr::Tcp(addr),
            socket,
        }
    }

    fn port(s: &ActivatedSocket) -> u16 {
        match s.addr {
            BindAddr::Tcp(sa) => sa.port(),
            BindAddr::Unix(_) => 0,
        }
    }

    /// `n` sockets on consecutive ports, or `None` when the ports next to a free one are
    /// taken.
    fn consecutive(n: usize, keep: &mut Vec<TcpListener>) -> Option<Vec<ActivatedSocket>> {
        let first = tcp_socket(keep);
        let base = port(&first);
        let mut all = vec![first];
        for k in 1..n {
            let sa = SocketAddr::from(([127, 0, 0, 1], base.checked_add(k as u16)?));
            let l = TcpListener::bind(sa).ok()?;
            all.push(ActivatedSocket {
                fd: 3 + k as RawFd,
                name: "web".into(),
                addr: BindAddr::Tcp(sa),
                socket: Socket::from(l),
            });
        }
        Some(all)
    }

    #[test]
    fn one_socket_is_taken_and_two_are_refused_in_one_line() {
        let mut keep = Vec::new();
        let one = the_one(vec![tcp_socket(&mut keep)], "--workers").expect("one socket");
        assert_eq!(one.name, "web");
        let error = the_one(
            vec![tcp_socket(&mut keep), tcp_socket(&mut keep)],
            "--workers",
        )
        .expect_err("two sockets");
        assert!(error.contains("systemd passed 2"), "{error}");
        assert!(!error.contains('\n'));
    }

    #[test]
    fn port_range_sockets_are_matched_by_port_in_any_order() {
        let mut keep = Vec::new();
        let Some(mut sockets) = consecutive(3, &mut keep) else {
            return;
        };
        let first = port(&sockets[0]);
        sockets.reverse();
        let chosen = one_per_port(sockets, (first, first + 2)).expect("matched");
        let ports: Vec<u16> = chosen.iter().map(port).collect();
        assert_eq!(ports, vec![first, first + 1, first + 2]);
    }

    #[test]
    fn a_missing_or_extra_port_is_an_error() {
        let mut keep = Vec::new();
        let Some(sockets) = consecutive(2, &mut keep) else {
            return;
        };
        let first = port(&sockets[0]);
        let error = one_per_port(sockets, (first, first + 2)).expect_err("one missing");
        assert!(
            error.contains(&format!("needs a socket on port {}", first + 2)),
            "{error}"
        );
        let Some(sockets) = consecutive(2, &mut keep) else {
            return;
        };
        let first = port(&sockets[0]);
        let error = one_per_port(sockets, (first, first)).expect_err("one extra");
        assert!(error.contains("outside --port-range"), "{error}");
        assert!(!error.contains('\n'));
    }
}
