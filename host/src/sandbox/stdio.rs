//! A guest's stdio: the connection as stdin/stdout, and stderr as log lines.
//!
//! wasmtime-wasi asks a stdio source for a fresh stream view each time the
//! guest opens it, so every view must reach the same connection. [`Shared`]
//! is that: a slot holding one half of the connection, lent to the guest and
//! taken back by the caller once the guest is gone, to shut down and drain
//! the connection properly. [`GuestLog`] turns stderr into one log line per
//! guest line, tagged with service and connection id, with bounded memory.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};

/// One half of a connection, shared by every stream view the guest opens.
///
/// The lock is a plain mutex held only inside a single `poll_*` call, never
/// across an await, so views cannot deadlock each other.
pub struct Shared<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Shared<T> {
    /// Lends `io` to the guest.
    pub fn new(io: T) -> Self {
        Self(Arc::new(Mutex::new(Some(io))))
    }

    /// Takes the connection half back; views see end of stream afterwards.
    pub fn take(&self) -> Option<T> {
        self.slot().take()
    }

    fn slot(&self) -> MutexGuard<'_, Option<T>> {
        // A panic while polling cannot leave the Option half-written.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Shared<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.slot().as_mut() {
            Some(io) => Pin::new(io).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Shared<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.slot().as_mut() {
            Some(io) => Pin::new(io).poll_write(cx, buf),
            None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.slot().as_mut() {
            Some(io) => Pin::new(io).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.slot().as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<T> IsTerminal for Shared<T> {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl<T: AsyncRead + Unpin + Send + 'static> StdinStream for Shared<T> {
    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }
}

impl<T: AsyncWrite + Unpin + Send + 'static> StdoutStream for Shared<T> {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Longest stderr line logged whole; longer ones are split.
const MAX_LINE: usize = 4096;
/// Stderr lines logged per connection before the rest is dropped.
const MAX_LINES: u32 = 1000;

/// A guest's stderr, logged line by line under its service and connection.
#[derive(Clone)]
pub struct GuestLog(Arc<Mutex<LineBuf>>);

struct LineBuf {
    service: Arc<str>,
    conn: u64,
    pending: Vec<u8>,
    lines: u32,
}

impl GuestLog {
    /// A sink whose lines are tagged `service=... conn=...`.
    pub fn new(service: Arc<str>, conn: u64) -> Self {
        Self(Arc::new(Mutex::new(LineBuf {
            service,
            conn,
            pending: Vec::new(),
            lines: 0,
        })))
    }
}

impl LineBuf {
    fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let (take, line_ends) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) if i <= room => (i + 1, true),
                _ => (bytes.len().min(room), false),
            };
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if line_ends || self.pending.len() == MAX_LINE {
                self.emit();
            }
        }
    }

    fn emit(&mut self) {
        if self.lines < MAX_LINES {
            let text = String::from_utf8_lossy(&self.pending);
            let text = text.trim_end_matches(['\n', '\r']);
            tracing::info!(target: "wasinetd::guest", "stderr service={} conn={}: {}", self.service, self.conn, text);
        } else if self.lines == MAX_LINES {
            tracing::warn!(target: "wasinetd::guest", "stderr service={} conn={}: more than {MAX_LINES} lines; the rest is dropped", self.service, self.conn);
        }
        self.lines = self.lines.saturating_add(1);
        self.pending.clear();
    }
}

impl Drop for LineBuf {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit();
        }
    }
}

impl AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_split_and_partial_lines_kept() {
        let log = GuestLog::new("svc".into(), 1);
        let mut buf = log.0.lock().unwrap();
        buf.write(b"abc");
        assert_eq!(buf.pending, b"abc");
        buf.write(b"def\nxy");
        assert_eq!(buf.lines, 1);
        assert_eq!(buf.pending, b"xy");
        buf.write(&vec![b'z'; MAX_LINE * 2]);
        assert_eq!(buf.lines, 3);
        assert_eq!(buf.pending.len(), 2);
    }
}
