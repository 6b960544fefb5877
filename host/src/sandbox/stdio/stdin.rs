//! The connection's read side as the guest's stdin, through one small
//! read-ahead buffer per connection ([`READ_AHEAD`]).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};
use wasmtime_wasi::cli::{IsTerminal, StdinStream};
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError, StreamResult};

use super::{MAX_CHUNK, Socket};

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
            ahead.reserve(READ_AHEAD);
            match self.sock.try_read_buf(&mut ahead) {
                Ok(0) => return Ok(Some(Bytes::new())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
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
}
