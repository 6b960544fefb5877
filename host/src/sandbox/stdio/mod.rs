//! A guest's stdio: the connection as stdin/stdout, and stderr as log lines.
//!
//! wasmtime-wasi's default adapters put a tokio task and a channel behind
//! every stdio stream (three tasks per connection) and read stdin ahead of
//! the guest without bound. Here the guest's streams go straight to the
//! socket instead: a write is one `write(2)`, waiting is tokio's readiness,
//! and nothing is spawned per connection. Reads go through one small buffer
//! per connection ([`READ_AHEAD`](stdin::READ_AHEAD)): a guest reading a
//! byte at a time costs one `read(2)` per buffer, not per byte, and nothing
//! is read ahead of the guest beyond that one buffer. The socket is shared (`Arc`) with the
//! caller, who gets it back whole once the guest is gone, to flush what is
//! left, shut down the write side and drain the input.
//!
//! [`GuestLog`] turns stderr into one log line per guest line, tagged with
//! service and connection id, with bounded memory.
//!
//! This file holds what the three share, the [`Socket`] and [`drain`];
//! [`stdin`], [`stdout`] and [`stderr`] are one stream each.

mod stderr;
mod stdin;
mod stdout;

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
pub use stderr::GuestLog;
pub use stdin::SocketStdin;
pub use stdout::{GATHER, Gathered, SocketStdout};

/// The most a single read or write moves, as wasmtime-wasi's own streams.
const MAX_CHUNK: usize = 64 * 1024;

/// A connected socket a guest can use as stdio, whose readiness and
/// non-blocking I/O work through `&self`, as tokio's streams do (the
/// connection path's `conn::stream::Stream` is one).
pub trait Socket: Send + Sync + 'static {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// [`try_read`](Self::try_read) into `buf`'s spare capacity, appended:
    /// a socket that can read into memory not yet written (tokio's
    /// `try_read_buf`) saves zeroing the buffer first, and the pages a
    /// short read leaves untouched stay out of the process's memory.
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let start = buf.len();
        buf.resize(buf.capacity(), 0);
        let read = self.try_read(&mut buf[start..]);
        buf.truncate(start + *read.as_ref().unwrap_or(&0));
        read
    }
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Resolves once the peer is gone for good: the connection was reset
    /// (an error is pending on the socket). A peer that only shut down its
    /// write side is still there: it may be waiting for the answer.
    fn gone(&self) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}

/// Bytes [`drain`] reads at once once there is more than its first read.
const DRAIN_CHUNK: usize = 16 * 1024;
/// Bytes of [`drain`]'s first read, on the stack.
const DRAIN_FIRST: usize = 256;

/// Reads and discards what the client sent and the guest did not read,
/// until end of stream, `limit` time or `max` bytes: closing a socket with
/// unread input makes the kernel send RST, and the client loses the answer.
///
/// Most connections end with nothing unread: the first read is a small one
/// on the stack, and a heap buffer is taken only when it found bytes. (An
/// array in the future itself would make every connection's task 16 KiB
/// larger for its whole life: a held connection's memory, and a copy of it
/// at each spawn.)
pub async fn drain<S: Socket>(sock: &S, limit: Duration, max: u64) {
    let mut buf = BytesMut::new();
    let mut total = 0u64;
    let read_all = poll_fn(|cx| {
        loop {
            if total >= max {
                return Poll::Ready(());
            }
            if std::task::ready!(sock.poll_read_ready(cx)).is_err() {
                return Poll::Ready(());
            }
            let read = if buf.capacity() == 0 {
                let mut first = [0u8; DRAIN_FIRST];
                let read = sock.try_read(&mut first);
                if matches!(read, Ok(n) if n > 0) {
                    buf.reserve(DRAIN_CHUNK);
                }
                read
            } else {
                buf.clear();
                sock.try_read_buf(&mut buf)
            };
            match read {
                Ok(0) => return Poll::Ready(()),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Poll::Ready(()),
            }
        }
    });
    let _ = tokio::time::timeout(limit, read_all).await;
}
