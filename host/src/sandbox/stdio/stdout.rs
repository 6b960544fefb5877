//! The connection's write side as the guest's stdout: a write is one
//! `write(2)`, and what the kernel did not take waits for the next call.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
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
