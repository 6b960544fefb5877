//! Listening sockets and the accept loop of one service.
//!
//! The loop takes a global instance permit *before* accepting, so when every
//! pool slot is busy new connections wait in the kernel's backlog instead of
//! being accepted and dropped; a per-service refusal (address, time,
//! instances, per_source, cps) is decided right after accept, before any
//! instantiation, and the refused connection is closed politely in a task
//! of its own. Accept errors (out of file descriptors, a peer that reset
//! first) are logged and survived.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::logging;
use crate::service::Service;

/// Listen backlog. xinetd's fixed 64 drops handshakes under a burst; the
/// kernel caps this at `net.core.somaxconn` (4096 on current kernels).
const BACKLOG: i32 = 4096;

/// Binds a TCP listener on `addr` (port 0 picks a free port).
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .context("cannot create a socket")?;
    // A restarted daemon must be able to bind while old connections linger
    // in TIME_WAIT, as xinetd always allows.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind {addr}"))?;
    socket
        .listen(BACKLOG)
        .with_context(|| format!("cannot listen on {addr}"))?;
    TcpListener::from_std(socket.into()).context("cannot register the listener")
}

/// What every accept loop shares.
#[derive(Clone)]
pub struct Shared {
    /// Pool slots: one permit per running guest, across all services.
    pub slots: Arc<Semaphore>,
    /// Source of connection ids, unique across services.
    pub next_conn: Arc<AtomicU64>,
    /// Becomes `true` when the daemon stops accepting.
    pub stopping: watch::Receiver<bool>,
    /// Held by every connection task; the daemon waits for all to drop.
    pub in_flight: mpsc::Sender<()>,
}

/// Accepts connections for `service` until `shared.stopping` turns true.
pub async fn accept_loop(service: Arc<Service>, listener: TcpListener, mut shared: Shared) {
    loop {
        let permit = tokio::select! {
            permit = shared.slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return, // semaphore closed: shutting down
            },
            _ = shared.stopping.wait_for(|&s| s) => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shared.stopping.wait_for(|&s| s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("accept failed on service `{}`: {e}", service.name());
                // Out of descriptors or memory: give the running guests a
                // moment to finish instead of spinning on the error.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        service.metrics().accepted();
        match service.admit(permit, peer) {
            Ok(admission) => {
                let in_flight = shared.in_flight.clone();
                let service = service.clone();
                tokio::spawn(async move {
                    let mut stream = stream;
                    match service.gate().greet(&mut stream).await {
                        Ok(()) => Service::serve(admission, stream, peer, conn).await,
                        Err(e) => {
                            drop(admission);
                            logging::connection_lost(&service.spec, conn, peer, &e);
                        }
                    }
                    drop(in_flight);
                });
            }
            Err(reason) => {
                service.metrics().refused(reason);
                // Logged before the close, so a client that sees the close
                // can rely on the line being there.
                logging::connection_refused(&service.spec, conn, peer, reason);
                service.gate().turn_away(stream);
            }
        }
    }
}
