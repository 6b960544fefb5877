//! A guest's stdio: the connection as stdin/stdout, and stderr as log lines.
//!
//! wasmtime-wasi's default adapters put a tokio task and a channel behind
//! every stdio stream (three tasks per connection) and read stdin ahead of
//! the guest without bound. Here the guest's streams go straight to the
//! socket instead: a write is one `write(2)`, waiting is tokio's readiness,
//! and nothing is spawned per connection. Reads go through one small buffer
//! per connection ([`READ_AHEAD`]): a guest reading a byte at a time costs
//! one `read(2)` per buffer, not per byte, and nothing is read ahead of the
//! guest beyond that one buffer. The socket is shared (`Arc`) with the
//! caller, who gets it back whole once the guest is gone, to flush what is
//! left, shut down the write side and drain the input.
//!
//! [`GuestLog`] turns stderr into one log line per guest line, tagged with
//! service and connection id, with bounded memory.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

use super::report::Report;

/// The most a single read or write moves, as wasmtime-wasi's own streams.
const MAX_CHUNK: usize = 64 * 1024;

/// A connected socket a guest can use as stdio: tokio's TCP and Unix
/// streams, whose readiness and non-blocking I/O work through `&self`.
pub trait Socket: Send + Sync + 'static {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Resolves once the peer is gone for good: the connection was reset
    /// (an error is pending on the socket). A peer that only shut down its
    /// write side is still there: it may be waiting for the answer.
    fn gone(&self) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}

impl Socket for tokio::net::TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        tokio::net::TcpStream::try_read(self, buf)
    }
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_write_ready(self, cx)
    }
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        tokio::net::TcpStream::try_write(self, buf)
    }
    fn gone(&self) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let _ = self.ready(tokio::io::Interest::ERROR).await;
        })
    }
}

impl Socket for tokio::net::UnixStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::UnixStream::poll_read_ready(self, cx)
    }
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        tokio::net::UnixStream::try_read(self, buf)
    }
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::UnixStream::poll_write_ready(self, cx)
    }
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        tokio::net::UnixStream::try_write(self, buf)
    }
    fn gone(&self) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let _ = self.ready(tokio::io::Interest::ERROR).await;
        })
    }
}

/// Non-blocking read that treats "would block" as no data yet.
fn try_read_some<S: Socket>(sock: &S, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match sock.try_read(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// How much is read from the client at once for the guest: the most that
/// is ever read ahead of what the guest asked for.
pub const READ_AHEAD: usize = 16 * 1024;

/// The connection's read side as the guest's stdin. Every view the guest
/// opens shares one buffer, so bytes are read in order, once.
pub struct SocketStdin<S> {
    sock: Arc<S>,
    ahead: Arc<Mutex<BytesMut>>,
}

impl<S> SocketStdin<S> {
    /// Stdin reading from `sock`.
    pub fn new(sock: Arc<S>) -> Self {
        Self {
            sock,
            ahead: Arc::default(),
        }
    }
}

impl<S> Clone for SocketStdin<S> {
    fn clone(&self) -> Self {
        Self {
            sock: self.sock.clone(),
            ahead: self.ahead.clone(),
        }
    }
}

impl<S: Socket> SocketStdin<S> {
    /// Up to `size` bytes: from what was read ahead, else from one
    /// `read(2)` of at most [`READ_AHEAD`] bytes. `Ok(None)`: nothing yet;
    /// `Ok(Some(empty))`: end of stream.
    fn take(&self, size: usize) -> io::Result<Option<Bytes>> {
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        if ahead.is_empty() {
            ahead.resize(READ_AHEAD, 0);
            match try_read_some(&*self.sock, &mut ahead) {
                Ok(Some(n)) => ahead.truncate(n),
                other => {
                    ahead.clear();
                    return other.map(|n| n.map(|_| Bytes::new()));
                }
            }
        }
        let n = size.min(ahead.len());
        Ok(Some(ahead.split_to(n).freeze()))
    }

    fn has_ahead(&self) -> bool {
        !self
            .ahead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

impl<S: Socket> InputStream for SocketStdin<S> {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if size == 0 {
            return Ok(Bytes::new());
        }
        match self.take(size.min(MAX_CHUNK)) {
            Ok(None) => Ok(Bytes::new()),
            Ok(Some(bytes)) if bytes.is_empty() => Err(StreamError::Closed),
            Ok(Some(bytes)) => Ok(bytes),
            Err(e) => Err(StreamError::LastOperationFailed(e.into())),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl<S: Socket> Pollable for SocketStdin<S> {
    async fn ready(&mut self) {
        if self.has_ahead() {
            return;
        }
        // An error is ready too: the next read reports it.
        let _ = poll_fn(|cx| self.sock.poll_read_ready(cx)).await;
    }
}

impl<S: Socket> AsyncRead for SocketStdin<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.has_ahead() {
                std::task::ready!(self.sock.poll_read_ready(cx))?;
            }
            if let Some(bytes) = self.take(buf.remaining())? {
                buf.put_slice(&bytes);
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S> IsTerminal for SocketStdin<S> {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl<S: Socket> StdinStream for SocketStdin<S> {
    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }
}

/// The connection's write side as the guest's stdout. Every view the guest
/// opens shares one state, so bytes leave in the order they were written.
pub struct SocketStdout<S> {
    sock: Arc<S>,
    state: Arc<Mutex<OutState>>,
}

impl<S> Clone for SocketStdout<S> {
    fn clone(&self) -> Self {
        Self {
            sock: self.sock.clone(),
            state: self.state.clone(),
        }
    }
}

#[derive(Default)]
struct OutState {
    /// Accepted from the guest but not yet taken by the kernel.
    pending: Bytes,
    /// The error that closed the stream, reported on every later call.
    failed: Option<io::ErrorKind>,
}

impl<S: Socket> SocketStdout<S> {
    /// Stdout writing to `sock`.
    pub fn new(sock: Arc<S>) -> Self {
        Self {
            sock,
            state: Arc::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, OutState> {
        // No code path can panic while holding the lock and leave it torn.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands what is pending to the kernel; true when nothing is left.
    fn push(&self, state: &mut OutState) -> bool {
        while !state.pending.is_empty() && state.failed.is_none() {
            match self.sock.try_write(&state.pending) {
                Ok(n) => state.pending.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => state.failed = Some(e.kind()),
            }
        }
        true
    }

    fn poll_drained(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state();
        loop {
            if self.push(&mut state) {
                return Poll::Ready(());
            }
            if let Err(e) = std::task::ready!(self.sock.poll_write_ready(cx)) {
                state.failed = Some(e.kind());
            }
        }
    }

    /// After the guest: writes out whatever it left pending, for at most
    /// `limit` (a client that stopped reading must not hold us forever).
    pub async fn finish(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, poll_fn(|cx| self.poll_drained(cx))).await;
    }
}

fn stream_error(kind: io::ErrorKind) -> StreamError {
    StreamError::LastOperationFailed(io::Error::from(kind).into())
}

impl<S: Socket> OutputStream for SocketStdout<S> {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let mut state = self.state();
        if let Some(kind) = state.failed {
            return Err(stream_error(kind));
        }
        if !state.pending.is_empty() {
            return Err(StreamError::trap(
                "write while the previous write is pending",
            ));
        }
        state.pending = bytes;
        self.push(&mut state);
        match state.failed {
            Some(kind) => Err(stream_error(kind)),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Bytes reach the kernel as soon as it takes them; `ready` waits.
        match self.state().failed {
            Some(kind) => Err(stream_error(kind)),
            None => Ok(()),
        }
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let mut state = self.state();
        let drained = self.push(&mut state);
        match state.failed {
            Some(kind) => Err(stream_error(kind)),
            None if drained => Ok(MAX_CHUNK),
            None => Ok(0),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl<S: Socket> Pollable for SocketStdout<S> {
    async fn ready(&mut self) {
        poll_fn(|cx| self.poll_drained(cx)).await
    }
}

impl<S: Socket> AsyncWrite for SocketStdout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_drained(cx));
        if let Some(kind) = self.state().failed {
            return Poll::Ready(Err(kind.into()));
        }
        loop {
            std::task::ready!(self.sock.poll_write_ready(cx))?;
            match self.sock.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_drained(cx).map(Ok)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_drained(cx).map(Ok)
    }
}

impl<S> IsTerminal for SocketStdout<S> {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl<S: Socket> StdoutStream for SocketStdout<S> {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

/// Reads and discards what the client sent and the guest did not read,
/// until end of stream, `limit` time or `max` bytes: closing a socket with
/// unread input makes the kernel send RST, and the client loses the answer.
pub async fn drain<S: Socket>(sock: &S, limit: Duration, max: u64) {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0u64;
    let read_all = poll_fn(|cx| {
        loop {
            if total >= max {
                return Poll::Ready(());
            }
            if std::task::ready!(sock.poll_read_ready(cx)).is_err() {
                return Poll::Ready(());
            }
            match try_read_some(sock, &mut buf) {
                Ok(Some(0)) | Err(_) => return Poll::Ready(()),
                Ok(Some(n)) => total += n as u64,
                Ok(None) => {}
            }
        }
    });
    let _ = tokio::time::timeout(limit, read_all).await;
}

/// Longest stderr line logged whole; longer ones are split.
const MAX_LINE: usize = 4096;
/// Stderr lines logged per connection before the rest is dropped.
const MAX_LINES: u32 = 1000;

/// A guest's stderr, cut into lines for its run's [`Report`].
#[derive(Clone)]
pub struct GuestLog(Arc<Mutex<LineBuf>>);

struct LineBuf {
    report: Arc<dyn Report>,
    pending: Vec<u8>,
    lines: u32,
}

impl GuestLog {
    /// A stderr whose lines go to `report`.
    pub fn new(report: Arc<dyn Report>) -> Self {
        Self(Arc::new(Mutex::new(LineBuf {
            report,
            pending: Vec::new(),
            lines: 0,
        })))
    }

    fn write(&self, bytes: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(bytes);
    }
}

impl LineBuf {
    fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let (take, line_ends) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) if i < room => (i + 1, true),
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
            self.report.stderr_line(text);
        } else if self.lines == MAX_LINES {
            self.report.stderr_dropped(MAX_LINES);
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

impl OutputStream for GuestLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        GuestLog::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_CHUNK)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        GuestLog::write(&self, buf);
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

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket with `input` to read, counting `read(2)` calls.
    struct Scripted {
        input: Mutex<Vec<u8>>,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl Socket for Scripted {
        fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut input = self.input.lock().unwrap();
            let n = buf.len().min(input.len());
            buf[..n].copy_from_slice(&input[..n]);
            input.drain(..n);
            Ok(n)
        }
        fn poll_write_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn gone(&self) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
            Box::pin(std::future::pending())
        }
    }

    #[test]
    fn byte_reads_take_one_read_per_buffer_and_no_more_than_one_ahead() {
        let sock = Arc::new(Scripted {
            input: Mutex::new(vec![7; READ_AHEAD + 10]),
            reads: Default::default(),
        });
        let mut stdin = SocketStdin::new(sock.clone());
        for _ in 0..READ_AHEAD {
            assert_eq!(&stdin.read(1).unwrap()[..], [7]);
        }
        assert_eq!(sock.reads.load(std::sync::atomic::Ordering::Relaxed), 1);
        // What the guest has not asked for is still with the client.
        assert_eq!(sock.input.lock().unwrap().len(), 10);
        let rest = stdin.clone().read(100).unwrap();
        assert_eq!(rest.len(), 10);
        assert!(matches!(stdin.read(1), Err(StreamError::Closed)));
    }

    /// The lines a run reported.
    #[derive(Default)]
    struct Heard(Mutex<Vec<String>>);

    impl Report for Heard {
        fn stderr_line(&self, text: &str) {
            self.0.lock().unwrap().push(text.to_owned());
        }

        fn stderr_dropped(&self, logged: u32) {
            self.0
                .lock()
                .unwrap()
                .push(format!("dropped after {logged}"));
        }

        fn egress_denied(&self, _: &'static str, _: std::net::SocketAddr) {}
    }

    #[test]
    fn long_lines_are_split_and_partial_lines_kept() {
        let heard = Arc::new(Heard::default());
        let log = GuestLog::new(heard.clone());
        {
            let mut buf = log.0.lock().unwrap();
            buf.write(b"abc");
            assert_eq!(buf.pending, b"abc");
            buf.write(b"def\r\nxy");
            assert_eq!(buf.lines, 1);
            assert_eq!(buf.pending, b"xy");
            buf.write(&vec![b'z'; MAX_LINE * 2]);
            assert_eq!(buf.lines, 3);
            assert_eq!(buf.pending.len(), 2);
        }
        drop(log);
        let lines = heard.0.lock().unwrap();
        assert_eq!(lines.len(), 4, "the partial line at the end too");
        assert_eq!(lines[0], "abcdef");
        assert_eq!(lines[1].len(), MAX_LINE);
        assert!(lines[1].starts_with("xyzz"));
        assert_eq!(lines[3], "zz");
    }

    #[test]
    fn past_the_line_limit_the_rest_is_dropped_once() {
        let heard = Arc::new(Heard::default());
        let log = GuestLog::new(heard.clone());
        for _ in 0..MAX_LINES + 10 {
            log.write(b"x\n");
        }
        let lines = heard.0.lock().unwrap();
        assert_eq!(lines.len(), MAX_LINES as usize + 1);
        assert_eq!(lines.last().unwrap(), &format!("dropped after {MAX_LINES}"));
    }
}
