//! The connection path's two words for a stream connection, whatever its
//! transport: [`Stream`], the accepted socket (TCP or Unix), and [`Peer`],
//! who is at its other end (a UDP datagram's sender is a `Peer` too).
//! Everything after accept (admission, the guest's stdio, a relay, a
//! sensor, the polite close) takes these, so a transport is added here and
//! in its accept loop, not along the path.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::sandbox::{Endpoint, Socket, Transport};

/// An accepted stream connection.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Runs `$body` with `$s` bound to the stream inside, whichever it is.
macro_rules! each {
    ($stream:expr, $s:ident => $body:expr) => {
        match $stream {
            Stream::Tcp($s) => $body,
            Stream::Unix($s) => $body,
        }
    };
}

impl Stream {
    /// Takes the stream off the runtime that accepted it, to move it to
    /// the guests' runtime (see [`Stream::register`]).
    pub fn into_std(self) -> io::Result<StdStream> {
        Ok(match self {
            Stream::Tcp(s) => StdStream::Tcp(s.into_std()?),
            Stream::Unix(s) => StdStream::Unix(s.into_std()?),
        })
    }

    /// Registers a stream taken off another runtime with the current one.
    pub fn register(std: StdStream) -> io::Result<Stream> {
        Ok(match std {
            StdStream::Tcp(s) => Stream::Tcp(TcpStream::from_std(s)?),
            StdStream::Unix(s) => Stream::Unix(UnixStream::from_std(s)?),
        })
    }

    /// The transport, as a component guest is told it.
    pub fn transport(&self) -> Transport {
        match self {
            Stream::Tcp(_) => Transport::Tcp,
            Stream::Unix(_) => Transport::Unix,
        }
    }
}

/// A [`Stream`] between runtimes.
#[derive(Debug)]
pub enum StdStream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        each!(self, s => s.as_fd())
    }
}

impl Socket for Stream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read_ready(cx))
    }
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        each!(self, s => s.try_read(buf))
    }
    fn try_read_buf(&self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        each!(self, s => s.try_read_buf(buf))
    }
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_write_ready(cx))
    }
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        each!(self, s => s.try_write(buf))
    }
    fn gone(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        // A pending error on the socket: the connection was reset.
        Box::pin(async move {
            let _ = each!(self, s => s.ready(tokio::io::Interest::ERROR).await);
        })
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Who is on the other end of a connection (or sent a datagram).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client, or a UDP sender.
    Ip(SocketAddr),
    /// A client of a Unix socket.
    Unix {
        /// The path it is bound to (`@name` for an abstract one), if it
        /// bound one; most clients do not.
        path: Option<String>,
        /// Its user id (SO_PEERCRED), for `per_source`.
        uid: Option<u32>,
    },
}

impl Peer {
    /// The client's IP address and port; `None` for a Unix socket's peer.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Peer::Ip(addr) => Some(*addr),
            Peer::Unix { .. } => None,
        }
    }

    /// A Unix socket's peer, from what `accept` gave.
    pub fn unix(stream: &UnixStream, addr: &tokio::net::unix::SocketAddr) -> Peer {
        use std::os::linux::net::SocketAddrExt as _;
        let std_addr: std::os::unix::net::SocketAddr = addr.clone().into();
        let path = if let Some(path) = std_addr.as_pathname() {
            Some(path.display().to_string())
        } else {
            std_addr
                .as_abstract_name()
                .map(|name| format!("@{}", String::from_utf8_lossy(name)))
        };
        let uid = stream.peer_cred().ok().map(|cred| cred.uid());
        Peer::Unix { path, uid }
    }

    /// The peer as a component guest is told it; `None` for a Unix client
    /// that bound no path.
    pub fn endpoint(&self) -> Option<Endpoint> {
        match self {
            Peer::Ip(addr) => Some(Endpoint::Ip(*addr)),
            Peer::Unix { path, .. } => path.clone().map(Endpoint::Path),
        }
    }

    /// The service's environment `base` plus the peer: for an IP peer as
    /// xinetd (`REMOTE_HOST`) and systemd (`REMOTE_ADDR`, `REMOTE_PORT`)
    /// set it; for a Unix peer as systemd (257) does: `REMOTE_ADDR` is its
    /// path, unset when it has none, and no `REMOTE_HOST` or `REMOTE_PORT`.
    pub fn env(&self, base: &[(String, String)]) -> Vec<(String, String)> {
        match self {
            Peer::Ip(addr) => ip_env(base, *addr),
            Peer::Unix { path, .. } => {
                let mut env = base.to_vec();
                if let Some(path) = path {
                    env.push(("REMOTE_ADDR".into(), path.clone()));
                }
                env
            }
        }
    }
}

/// The environment `base` plus an IP peer's `REMOTE_HOST`, `REMOTE_ADDR`
/// and `REMOTE_PORT` (an IPv4 client of a dual-stack socket as plain
/// IPv4); also what `wasinetd run` gives a guest on a socket.
pub fn ip_env(base: &[(String, String)], peer: SocketAddr) -> Vec<(String, String)> {
    let ip = peer.ip().to_canonical().to_string();
    let mut env = Vec::with_capacity(base.len() + 3);
    env.extend_from_slice(base);
    env.push(("REMOTE_HOST".into(), ip.clone()));
    env.push(("REMOTE_ADDR".into(), ip));
    env.push(("REMOTE_PORT".into(), peer.port().to_string()));
    env
}
