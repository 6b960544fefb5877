//! `redirect = HOST PORT` (xinetd's): no guest; an admitted connection is
//! relayed to the backend, bytes both ways until both sides close.
//!
//! Admission (access rules, `instances`, `per_source`, `cps`, banners) is
//! the listener's and `service`'s, decided before connecting; this module
//! owns only the connect (bounded by [`CONNECT_TIMEOUT`]), the relay
//! (bounded by `runtime_max`) and the connection's log line.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::conn::service::{Admission, Peer};
use crate::logging::{self, Traffic};
use crate::sandbox::{Outcome, RunReport};

/// How long connecting to the backend may take before the client is closed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client whose backend cannot be reached is drained after its
/// end of stream, and how much of its input at most.
const DRAIN_TIME: Duration = Duration::from_secs(2);
const DRAIN_BYTES: usize = 4 << 20;

/// Relays one admitted connection to `target`; never fails, only logs.
pub async fn relay<S>(admission: Admission, client: S, peer: Peer, conn: u64, target: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let service = admission.service().clone();
    let started = Instant::now();
    let moved = Arc::new(Moved::default());
    let mut client = Counted {
        stream: client,
        moved: moved.clone(),
    };
    let outcome = match connect(target).await {
        Err(why) => {
            // No backend: the client still gets what every other path
            // gives, end of stream and its unread input drained, so it
            // sees FIN, not a reset.
            close_politely(&mut client).await;
            Outcome::RedirectFailed(why)
        }
        Ok(mut backend) => {
            // copy_bidirectional shuts down each side's write half when the
            // other side ends, so half-closes carry through.
            let copy = tokio::io::copy_bidirectional(&mut client, &mut backend);
            let copied = async {
                match service.spec.limits.runtime {
                    Some(limit) => tokio::time::timeout(limit, copy).await.ok(),
                    None => Some(copy.await),
                }
            };
            // A client gone quiet (or gone: a backend that never reads
            // keeps the relay from seeing the client's reset) frees the
            // slot after `idle_timeout`, not at `runtime_max`.
            let quiet = crate::conn::service::quiet(service.spec.limits.idle, || moved.traffic());
            tokio::select! {
                copied = copied => match copied {
                    None => Outcome::RuntimeLimit,
                    Some(Ok(_)) => Outcome::Redirected,
                    Some(Err(e)) => Outcome::RedirectFailed(format!("relay to {target}: {e}")),
                },
                () = quiet => Outcome::IdleTimeout,
            }
        }
    };
    let traffic = moved.traffic();
    drop(client);
    drop(admission);
    let duration = started.elapsed();
    let report = RunReport {
        outcome,
        instantiate: None,
        cpu: Duration::ZERO,
        memory_peak: 0,
        refused: Default::default(),
    };
    service.metrics().relayed(traffic);
    service.metrics().finished(&report, duration);
    logging::connection_done(
        &service.spec,
        conn,
        peer.tcp(),
        duration,
        &report.outcome,
        traffic,
    );
}

/// Shuts down the client's write side (it sees end of stream), then reads
/// and drops what it sent, for a bounded time, so closing never resets it.
async fn close_politely<S: AsyncRead + AsyncWrite + Unpin>(client: &mut S) {
    if tokio::time::timeout(DRAIN_TIME, client.shutdown())
        .await
        .is_err()
    {
        return;
    }
    let mut sink = [0; 4096];
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut left = DRAIN_BYTES;
        while left > 0 {
            match client.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

async fn connect(target: SocketAddr) -> Result<TcpStream, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(format!("cannot connect to {target}: {e}")),
        Err(_) => Err(format!(
            "cannot connect to {target}: no answer in {CONNECT_TIMEOUT:?}"
        )),
    }
}

/// The client's side of a relay, counting its bytes for `TRAFFIC` (what
/// was relayed up to the end, also when a limit or an error cut it short)
/// and for the idle watch.
struct Counted<S> {
    stream: S,
    moved: Arc<Moved>,
}

/// Bytes relayed to and from the client so far.
#[derive(Default)]
struct Moved {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Moved {
    fn traffic(&self) -> Traffic {
        Traffic {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        let n = (buf.filled().len() - before) as u64;
        self.moved.bytes_in.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.stream).poll_write(cx, buf))?;
        self.moved.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
