//! The connection's write side as the guest's stdout, gathering small
//! writes.
//!
//! A guest that writes its answer in pieces (Rust's line-buffered stdout,
//! Python's `print`: one write per line) would cost a `send(2)`, and a TCP
//! segment, per piece. So small writes are gathered in the connection's
//! buffer while the guest runs, and sent when it stops running: when it
//! waits for anything (its client's next bytes, a timer, a file; every
//! wait, through [`Gathered::send_gathered`], which the run calls whenever
//! the guest's future is pending), at every epoch tick while it computes
//! (it yields there: at most 10 ms), when [`GATHER`] bytes are waiting, and
//! when it ends, however it ends ([`SocketStdout::finish`]). An echo or a
//! line-at-a-time chat still sees each answer at once: the guest waits for
//! the next line right after writing this one's. A write of `GATHER` bytes
//! or more, with nothing gathered before it, goes out as it is (no copy).
//! What the kernel does not take waits for the next call; the guest is
//! told to wait (`check-write` gives 0) until it is taken.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use super::{MAX_CHUNK, Socket};

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

/// Bytes of small writes gathered before they are sent at once.
pub const GATHER: usize = 16 * 1024;

/// What a run calls whenever its guest waits: send what it gathered.
pub trait Gathered: Send + Sync {
    /// Hands the gathered bytes to the kernel, without waiting. What the
    /// socket cannot take yet (tokio has not seen it writable: a fresh
    /// connection, a full send buffer) wakes `cx`'s task once it can, and
    /// the run, polled again, sends it then.
    fn send_gathered(&self, cx: &mut Context<'_>);
}

#[derive(Default)]
struct OutState {
    /// Small writes gathered, not yet taken by the kernel; sent first.
    gathered: BytesMut,
    /// A write of [`GATHER`] bytes or more, not yet taken by the kernel.
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

    /// Hands what is gathered, then what is pending, to the kernel; true
    /// when nothing is left.
    fn push(&self, state: &mut OutState) -> bool {
        while state.failed.is_none() {
            let bytes = if !state.gathered.is_empty() {
                &state.gathered[..]
            } else if !state.pending.is_empty() {
                &state.pending[..]
            } else {
                break;
            };
            match self.sock.try_write(bytes) {
                Ok(0) => state.failed = Some(io::ErrorKind::WriteZero),
                Ok(n) if !state.gathered.is_empty() => state.gathered.advance(n),
                Ok(n) => state.pending.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => state.failed = Some(e.kind()),
            }
        }
        true
    }

    /// Whether the guest may write now: nothing big is waiting for the
    /// kernel and there is room to gather.
    fn writable(state: &OutState) -> bool {
        state.pending.is_empty() && state.gathered.len() < GATHER
    }

    /// Resolves once the guest may write again (or the stream failed).
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state();
        loop {
            if state.failed.is_some() || Self::writable(&state) || self.push(&mut state) {
                return Poll::Ready(());
            }
            if let Err(e) = std::task::ready!(self.sock.poll_write_ready(cx)) {
                state.failed = Some(e.kind());
            }
        }
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
        if !Self::writable(&state) {
            return Err(StreamError::trap(
                "write while the previous write is pending",
            ));
        }
        if state.gathered.is_empty() && bytes.len() >= GATHER {
            state.pending = bytes;
            self.push(&mut state);
        } else {
            state.gathered.extend_from_slice(&bytes);
            if state.gathered.len() >= GATHER {
                self.push(&mut state);
            }
        }
        match state.failed {
            Some(kind) => Err(stream_error(kind)),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Gathered bytes leave when the guest waits or ends: a flush after
        // every line (libc on wasip2, Rust's line-buffered stdout) must not
        // undo the gathering. The guest cannot tell the difference: nothing
        // reaches its client while it runs either way.
        match self.state().failed {
            Some(kind) => Err(stream_error(kind)),
            None => Ok(()),
        }
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let mut state = self.state();
        if !Self::writable(&state) {
            self.push(&mut state);
        }
        match state.failed {
            Some(kind) => Err(stream_error(kind)),
            None if Self::writable(&state) => Ok(MAX_CHUNK),
            None => Ok(0),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl<S: Socket> Pollable for SocketStdout<S> {
    async fn ready(&mut self) {
        poll_fn(|cx| self.poll_writable(cx)).await
    }
}

impl<S: Socket> Gathered for SocketStdout<S> {
    fn send_gathered(&self, cx: &mut Context<'_>) {
        let mut state = self.state();
        while !self.push(&mut state) {
            match self.sock.poll_write_ready(cx) {
                Poll::Pending => return,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => state.failed = Some(e.kind()),
            }
        }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    use super::*;

    /// A socket that takes at most `room` bytes, then would block (and
    /// keeps the waker of whoever waits for room); it counts `write(2)`
    /// calls and keeps what it took.
    #[derive(Default)]
    struct Taking {
        room: Mutex<usize>,
        writes: AtomicUsize,
        took: Mutex<Vec<u8>>,
        waiting: Mutex<Option<std::task::Waker>>,
    }

    impl Taking {
        fn make_room(&self) {
            *self.room.lock().unwrap() = usize::MAX;
            if let Some(waker) = self.waiting.lock().unwrap().take() {
                waker.wake();
            }
        }
    }

    impl Socket for Taking {
        fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
        fn try_read(&self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            if *self.room.lock().unwrap() > 0 {
                return Poll::Ready(Ok(()));
            }
            *self.waiting.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
        fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
            self.writes.fetch_add(1, Relaxed);
            let mut room = self.room.lock().unwrap();
            let n = buf.len().min(*room);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            *room -= n;
            self.took.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn gone(&self) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
            Box::pin(std::future::pending())
        }
    }

    fn taking(room: usize) -> (Arc<Taking>, SocketStdout<Taking>) {
        let sock = Arc::new(Taking {
            room: Mutex::new(room),
            ..Taking::default()
        });
        (sock.clone(), SocketStdout::new(sock))
    }

    #[test]
    fn small_writes_and_their_flushes_leave_in_one_write_when_the_guest_waits() {
        let (sock, mut out) = taking(usize::MAX);
        for i in 0..20 {
            assert_eq!(out.check_write().unwrap(), MAX_CHUNK);
            out.write(Bytes::from(format!("piece {i}\n"))).unwrap();
            out.flush().unwrap();
        }
        assert_eq!(sock.writes.load(Relaxed), 0, "nothing sent while it runs");
        out.send_gathered(&mut Context::from_waker(std::task::Waker::noop()));
        assert_eq!(sock.writes.load(Relaxed), 1);
        let want: String = (0..20).map(|i| format!("piece {i}\n")).collect();
        assert_eq!(sock.took.lock().unwrap()[..], *want.as_bytes());
        out.send_gathered(&mut Context::from_waker(std::task::Waker::noop()));
        assert_eq!(sock.writes.load(Relaxed), 1, "nothing left to send");
    }

    /// Counts its wakes.
    struct Wakes(AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    #[test]
    fn gathered_bytes_the_socket_cannot_take_yet_wake_the_run_when_it_can() {
        // As a fresh connection whose writability tokio has not yet seen.
        let (sock, mut out) = taking(0);
        out.write(Bytes::from_static(b"sleeping\n")).unwrap();
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(wakes.clone());
        out.send_gathered(&mut Context::from_waker(&waker));
        assert!(sock.took.lock().unwrap().is_empty());
        assert_eq!(wakes.0.load(Relaxed), 0);
        sock.make_room();
        assert_eq!(wakes.0.load(Relaxed), 1, "the run is polled again");
        out.send_gathered(&mut Context::from_waker(&waker));
        assert_eq!(sock.took.lock().unwrap()[..], b"sleeping\n"[..]);
    }

    #[test]
    fn a_full_gather_is_sent_at_once_and_a_big_write_is_not_gathered() {
        let (sock, mut out) = taking(usize::MAX);
        out.write(Bytes::from(vec![b'a'; GATHER - 1])).unwrap();
        assert_eq!(sock.writes.load(Relaxed), 0);
        out.write(Bytes::from_static(b"b")).unwrap();
        assert_eq!(sock.writes.load(Relaxed), 1, "sent at {GATHER} bytes");
        out.write(Bytes::from(vec![b'c'; GATHER])).unwrap();
        assert_eq!(sock.writes.load(Relaxed), 2, "a big write goes as it is");
        assert_eq!(sock.took.lock().unwrap().len(), 2 * GATHER);
    }

    #[test]
    fn what_the_kernel_does_not_take_holds_the_guest_until_it_is_taken() {
        let (sock, mut out) = taking(10);
        out.write(Bytes::from(vec![b'x'; GATHER + 5])).unwrap();
        assert_eq!(sock.took.lock().unwrap().len(), 10);
        assert_eq!(out.check_write().unwrap(), 0, "the guest must wait");
        assert!(out.write(Bytes::from_static(b"y")).is_err());
        *sock.room.lock().unwrap() = usize::MAX;
        assert_eq!(out.check_write().unwrap(), MAX_CHUNK);
        assert_eq!(sock.took.lock().unwrap().len(), GATHER + 5);
    }
}
