//! Binding a listening socket: the one code path for a single instance (`--bind`) and for
//! the launcher (which binds every address itself and hands the sockets to its instances).
//!
//! Options are the same everywhere: SO_REUSEADDR; IPV6_V6ONLY on every IPv6 address, so
//! `[::]` means IPv6 only whatever the host's `net.ipv6.bindv6only` says (bind `0.0.0.0`
//! as well for IPv4); a Unix socket path may replace only a stale socket. It must never
//! remove or overwrite a file that is not a socket, nor a socket someone still listens on.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::BindAddr;

/// Binds `addr` and starts listening with `backlog`. The error is one line naming the address.
pub fn bind(addr: &BindAddr, backlog: u32) -> Result<Socket, String> {
    let fail = |e: io::Error| format!("cannot listen on {addr}: {}", describe_error(&e));
    let socket = match addr {
        BindAddr::Tcp(sa) => {
            let socket = Socket::new(Domain::for_address(*sa), Type::STREAM, None).map_err(fail)?;
            socket.set_reuse_address(true).map_err(fail)?;
            if sa.is_ipv6() {
                socket.set_only_v6(true).map_err(fail)?;
            }
            socket.bind(&SockAddr::from(*sa)).map_err(fail)?;
            socket
        }
        BindAddr::Unix(path) => {
            remove_stale_socket(path).map_err(|why| format!("cannot listen on {addr}: {why}"))?;
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(fail)?;
            socket
                .bind(&SockAddr::unix(path).map_err(fail)?)
                .map_err(fail)?;
            socket
        }
    };
    socket
        .listen(i32::try_from(backlog).unwrap_or(i32::MAX))
        .map_err(fail)?;
    Ok(socket)
}

/// "address already in use (another process listens there)" for the common case, else the
/// system's text.
fn describe_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => "address already in use (another process listens there)".into(),
        _ => e.to_string(),
    }
}

/// What is at a Unix socket path before binding it.
#[derive(Debug, PartialEq, Eq)]
pub enum UnixPathState {
    Free,
    /// A socket nobody answers on: left by a server that crashed.
    StaleSocket,
    /// A socket a process still listens on.
    LiveSocket,
    /// A regular file, directory, symlink or device: the user's, never touched.
    NotASocket(&'static str),
}

/// Looks at `path` without following a symlink.
pub fn unix_path_state(path: &Path) -> UnixPathState {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return UnixPathState::Free;
    };
    let kind = meta.file_type();
    if kind.is_socket() {
        return match UnixStream::connect(path) {
            Ok(_) => UnixPathState::LiveSocket,
            Err(_) => UnixPathState::StaleSocket,
        };
    }
    UnixPathState::NotASocket(if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "not a socket"
    })
}

/// Removes a stale socket at `path`; refuses (and touches nothing) for anything else there.
pub fn remove_stale_socket(path: &Path) -> Result<(), String> {
    match unix_path_state(path) {
        UnixPathState::Free => Ok(()),
        UnixPathState::StaleSocket => std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove the stale socket there: {e}")),
        UnixPathState::LiveSocket => Err("another server is listening there".into()),
        UnixPathState::NotASocket(what) => Err(format!(
            "{} is {what}, not a socket; not replacing it",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener};
    use std::os::unix::net::UnixListener;

    fn tcp(text: &str) -> BindAddr {
        BindAddr::Tcp(text.parse::<SocketAddr>().expect("test address"))
    }

    #[test]
    fn tcp_bind_sets_reuse_address() {
        let socket = bind(&tcp("127.0.0.1:0"), 16).expect("bind");
        assert!(socket.reuse_address().expect("getsockopt"));
    }

    #[test]
    fn ipv6_bind_is_ipv6_only() {
        // Hosts without IPv6 cannot run this check.
        let Ok(socket) = bind(&tcp("[::1]:0"), 16) else {
            return;
        };
        assert!(socket.only_v6().expect("getsockopt"));
    }

    #[test]
    fn a_port_in_use_is_one_line_naming_the_address() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = BindAddr::Tcp(taken.local_addr().expect("addr"));
        let error = bind(&addr, 16).expect_err("must fail");
        assert!(error.starts_with(&format!("cannot listen on {addr}: address already in use")));
        assert!(error.contains("http://127.0.0.1:"), "{error}");
        assert!(!error.contains('\n'));
    }

    #[test]
    fn a_regular_file_is_never_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.py");
        std::fs::write(&path, "print('mine')").expect("write");
        let error = bind(&BindAddr::Unix(path.clone()), 16).expect_err("must fail");
        assert!(error.contains("a regular file"), "{error}");
        assert_eq!(std::fs::read(&path).expect("still there"), b"print('mine')");
    }

    #[test]
    fn a_directory_and_a_symlink_are_never_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).expect("symlink");
        assert_eq!(
            unix_path_state(&sub),
            UnixPathState::NotASocket("a directory")
        );
        assert_eq!(
            unix_path_state(&link),
            UnixPathState::NotASocket("a symbolic link")
        );
        assert!(remove_stale_socket(&sub).is_err() && sub.is_dir());
        assert!(remove_stale_socket(&link).is_err());
        assert!(std::fs::symlink_metadata(&link).is_ok());
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.sock");
        drop(UnixListener::bind(&path).expect("bind"));
        assert_eq!(unix_path_state(&path), UnixPathState::StaleSocket);
        let socket = bind(&BindAddr::Unix(path.clone()), 16).expect("stale socket replaced");
        assert_eq!(unix_path_state(&path), UnixPathState::LiveSocket);
        let error = bind(&BindAddr::Unix(path.clone()), 16).expect_err("in use");
        assert!(
            error.contains("another server is listening there"),
            "{error}"
        );
        drop(socket);
    }
}
