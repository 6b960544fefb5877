//! Bytes counted as they cross a connection's socket ([`CountedSocket`]),
//! for the service's counters and the connection's own.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::logging::Traffic;
use crate::sandbox::Socket;

use super::ServiceMetrics;

/// A connection's socket that adds what it reads and writes to its
/// service's byte counters and its own: the guest's stdio (through
/// [`Socket`]), the bytes a `redirect` relays (through `AsyncRead` and
/// `AsyncWrite`), and the unread input drained at the end.
pub struct CountedSocket<S = TcpStream> {
    stream: S,
    received: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    /// This connection's own counts, for its log line (`TRAFFIC`) and its
    /// idle watch.
    conn: Arc<ConnCounts>,
}

/// One connection's bytes so far, shared with whoever watches it.
#[derive(Debug, Default)]
pub struct ConnCounts {
    received: AtomicU64,
    sent: AtomicU64,
}

impl ConnCounts {
    /// What the connection has read and written so far.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            bytes_in: self.received.load(Relaxed),
            bytes_out: self.sent.load(Relaxed),
        }
    }
}

impl<S> CountedSocket<S> {
    /// Counts `stream`'s bytes into `metrics`.
    pub fn new(stream: S, metrics: &ServiceMetrics) -> Self {
        Self {
            stream,
            received: metrics.received.clone(),
            sent: metrics.sent.clone(),
            conn: Arc::default(),
        }
    }

    /// What this connection has read and written so far.
    pub fn traffic(&self) -> Traffic {
        self.conn.traffic()
    }

    /// This connection's counts, to watch while the socket is in use.
    pub fn counts(&self) -> Arc<ConnCounts> {
        self.conn.clone()
    }
}

impl<S: Socket> Socket for CountedSocket<S> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_read_ready(cx)
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.try_read(buf)?;
        self.count_in(n);
        Ok(n)
    }

    fn try_read_buf(&self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        let n = self.stream.try_read_buf(buf)?;
        self.count_in(n);
        Ok(n)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_write_ready(cx)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stream.try_write(buf)?;
        self.count_out(n);
        Ok(n)
    }

    fn gone(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.stream.gone()
    }
}

impl<S> CountedSocket<S> {
    fn count_in(&self, n: usize) {
        self.received.fetch_add(n as u64, Relaxed);
        self.conn.received.fetch_add(n as u64, Relaxed);
    }

    fn count_out(&self, n: usize) {
        self.sent.fetch_add(n as u64, Relaxed);
        self.conn.sent.fetch_add(n as u64, Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountedSocket<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        this.count_in(buf.filled().len() - before);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountedSocket<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = std::task::ready!(Pin::new(&mut this.stream).poll_write(cx, buf))?;
        this.count_out(n);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl<S: AsFd> AsFd for CountedSocket<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}
