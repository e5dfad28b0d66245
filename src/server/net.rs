//! Sockets the event loop serves: TCP or Unix-domain listeners and streams.
//!
//! Only wraps mio's types behind one enum each; no protocol logic here.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use mio::{Interest, Registry, Token};

pub enum Listener {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

/// The client end as the app sees it (REMOTE_ADDR, REMOTE_PORT). Kept as an address,
/// not text: most connections never need it formatted more than once.
#[derive(Clone, Copy)]
pub enum Peer {
    Tcp(std::net::SocketAddr),
    Unix,
}

impl Listener {
    pub fn from_std_tcp(l: std::net::TcpListener) -> io::Result<Listener> {
        l.set_nonblocking(true)?;
        Ok(Listener::Tcp(mio::net::TcpListener::from_std(l)))
    }

    pub fn from_std_unix(l: std::os::unix::net::UnixListener) -> io::Result<Listener> {
        l.set_nonblocking(true)?;
        Ok(Listener::Unix(mio::net::UnixListener::from_std(l)))
    }

    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => registry.register(l, token, Interest::READABLE),
            Listener::Unix(l) => registry.register(l, token, Interest::READABLE),
        }
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => registry.deregister(l),
            Listener::Unix(l) => registry.deregister(l),
        }
    }

    pub(crate) fn accept(&mut self) -> io::Result<(Stream, Peer)> {
        match self {
            Listener::Tcp(l) => {
                let (s, addr) = l.accept()?;
                Ok((Stream::Tcp(s), Peer::Tcp(addr)))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept()?;
                Ok((Stream::Unix(s), Peer::Unix))
            }
        }
    }
}

pub enum Stream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Stream {
    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self {
            Stream::Tcp(s) => registry.register(s, token, interest),
            Stream::Unix(s) => registry.register(s, token, interest),
        }
    }

    /// Turns Nagle's algorithm off (TCP only). A failure only costs latency.
    pub(crate) fn set_nodelay(&self) {
        if let Stream::Tcp(s) = self {
            let _ = s.set_nodelay(true);
        }
    }

    pub(crate) fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes that end the last response of a connection that closes right after. On TCP
/// they carry MSG_MORE: the kernel keeps the last partial segment back, and the close
/// that follows puts the FIN on it, so the client gets the end of the answer and the FIN
/// in one packet instead of two.
pub struct Closing<'a>(pub &'a mut Stream);

impl Write for Closing<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.0 {
            Stream::Tcp(s) => Ok(rustix::net::sendmsg(
                &*s,
                bufs,
                &mut rustix::net::SendAncillaryBuffer::default(),
                rustix::net::SendFlags::MORE | rustix::net::SendFlags::NOSIGNAL,
            )?),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

/// Whether a byte waits to be read on `socket`, left there for its reader: lets a
/// connection see a stop signal the event loop has not read yet. Never blocks.
pub fn byte_waiting(socket: &std::os::fd::OwnedFd) -> bool {
    let mut byte = [0u8; 1];
    let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
    matches!(rustix::net::recv(socket, &mut byte, flags), Ok((n, _)) if n > 0)
}
