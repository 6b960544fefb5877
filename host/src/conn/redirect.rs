//! `redirect = HOST PORT` (xinetd's): no guest; an admitted connection is
//! relayed to the backend, bytes both ways until both sides close.
//!
//! Admission (access rules, `instances`, `per_source`, `cps`, banners) is
//! the listener's and `service`'s, decided before connecting; this module
//! owns only the connect (bounded by [`CONNECT_TIMEOUT`]), the relay
//! (bounded by `runtime_max`) and the connection's log line.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::close;
use crate::conn::service::Admission;
use crate::conn::stream::Peer;
use crate::metrics::CountedSocket;
use crate::sandbox::{Outcome, RunReport};

/// How long connecting to the backend may take before the client is closed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Relays one admitted connection to `target`; never fails, only logs.
pub async fn relay<S>(admission: Admission, client: S, peer: Peer, conn: u64, target: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let service = admission.service().clone();
    let started = Instant::now();
    // Its bytes count as a guest's stdio would: live, for the idle watch,
    // and up to the end when a limit or an error cuts the relay short.
    let mut client = CountedSocket::new(client, service.metrics());
    let outcome = match connect(target).await {
        Err(why) => {
            // No backend: the client still gets what every other path
            // gives, end of stream and its unread input drained, so it
            // sees FIN, not a reset.
            let end = close::AFTER_SERVING;
            close::politely(&mut client, &[], end.time, end).await;
            Outcome::RedirectFailed(why)
        }
        Ok(mut backend) => {
            let counts = client.counts();
            // copy_bidirectional shuts down each side's write half when the
            // other side ends, so half-closes carry through.
            let copy = tokio::io::copy_bidirectional(&mut client, &mut backend);
            let copied = async {
                match service.spec.limits.runtime {
                    Some(limit) => tokio::time::timeout(limit, copy).await.ok(),
                    None => Some(copy.await),
                }
            };
            tokio::pin!(copied);
            // A client gone quiet (or gone: a backend that never reads
            // keeps the relay from seeing the client's reset) frees the
            // slot after `idle_timeout`, not at `runtime_max`.
            let quiet = crate::conn::service::quiet(service.spec.limits.idle, || counts.traffic());
            tokio::select! {
                copied = &mut copied => match copied {
                    None => Outcome::RuntimeLimit,
                    Some(Ok(_)) => Outcome::Redirected,
                    Some(Err(e)) => Outcome::RedirectFailed(format!("relay to {target}: {e}")),
                },
                () = quiet => Outcome::IdleTimeout,
            }
        }
    };
    let traffic = client.traffic();
    drop(client);
    drop(admission);
    let report = RunReport {
        outcome,
        instantiate: None,
        cpu: Duration::ZERO,
        memory_peak: 0,
        refused: Default::default(),
    };
    service.finished(conn, peer.ip(), started, &report, traffic);
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
