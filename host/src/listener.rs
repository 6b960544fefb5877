//! Listening sockets (bound here, or adopted from systemd) and the accept
//! loop of one service.
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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::config::{ServiceSpec, SocketOptions};
use crate::logging;
use crate::service::Service;
use crate::systemd::ListenFds;

/// Binds a TCP listener on `addr` (port 0 picks a free port) with the
/// service's `backlog` and, for IPv6, its `v6only`.
pub fn bind(addr: SocketAddr, opts: &SocketOptions) -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .context("cannot create a socket")?;
    // A restarted daemon must be able to bind while old connections linger
    // in TIME_WAIT, as xinetd always allows (its REUSE flag is always on).
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // Set either way: the kernel's default (`net.ipv6.bindv6only`)
        // must not decide whether `[::]` takes IPv4 clients.
        socket
            .set_only_v6(opts.v6only)
            .context("cannot set IPV6_V6ONLY")?;
    }
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind {addr}"))?;
    let backlog = i32::try_from(opts.backlog).unwrap_or(i32::MAX);
    socket
        .listen(backlog)
        .with_context(|| format!("cannot listen on {addr}"))?;
    TcpListener::from_std(socket.into()).context("cannot register the listener")
}

/// The listeners of a service: the sockets systemd passed for it, if any
/// (then nothing is bound), else every address bound.
pub fn listen(spec: &ServiceSpec, passed: &ListenFds) -> anyhow::Result<Vec<TcpListener>> {
    let adopted = passed.take_for(spec)?;
    if adopted.is_empty() {
        bind_all(spec)
    } else {
        Ok(adopted)
    }
}

/// Binds every address of a service (`bind` may list several), all or none.
/// With `port = 0`, the first listener's free port is used for the others,
/// so one service has one port.
pub fn bind_all(spec: &ServiceSpec) -> anyhow::Result<Vec<TcpListener>> {
    let mut listeners: Vec<TcpListener> = Vec::new();
    for mut addr in spec.addrs() {
        if let Some(first) = listeners.first()
            && addr.port() == 0
        {
            addr.set_port(first.local_addr()?.port());
        }
        listeners.push(bind(addr, &spec.socket)?);
    }
    Ok(listeners)
}

/// Applies `flags = NODELAY` / `KEEPALIVE` to an accepted connection (Linux
/// does not carry them over from the listener).
fn tune(stream: &TcpStream, opts: &SocketOptions) -> std::io::Result<()> {
    if opts.nodelay {
        stream.set_nodelay(true)?;
    }
    if opts.keepalive {
        socket2::SockRef::from(stream).set_keepalive(true)?;
    }
    Ok(())
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
        if let Err(e) = tune(&stream, &service.spec.socket) {
            tracing::warn!(
                "cannot set socket options on service `{}`: {e}",
                service.name()
            );
        }
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
