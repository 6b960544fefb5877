//! Binding one listening socket, and the accept loop of one socket. Which
//! sockets a config needs, and which a reload keeps, is
//! `server::listeners`' business.
//!
//! The loop takes a global instance permit *before* accepting, so when every
//! pool slot is busy new connections wait in the kernel's backlog instead of
//! being accepted and dropped; a refusal (the checks of `admission`: a
//! sensor's deny list, address, time, load, `instances`, a share of
//! `--limit`, `per_source`, `cps`) is decided right after accept, before any
//! instantiation, and the refused connection is closed politely in a task
//! of its own. Accept errors (out of file descriptors, a peer that reset
//! first) are logged and survived.
//!
//! A `proxy_protocol` service's connection is admitted only after its
//! header: a sender not in `proxy_from` is refused at once; a trusted
//! one's header is read in a task of its own (`conn::proxy`, within its
//! bound, holding the connection's pool slot), which hands the connection
//! back to its loop; then the checks above run on the client the header
//! names, as they would on a direct client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::config::{GuestSource, SocketOptions};
use crate::conn::in_flight::{InFlight, Ticket};
use crate::conn::proxy;
use crate::conn::redirect;
use crate::conn::sensor;
use crate::conn::service::{Refusal, Service};
use crate::conn::stream::{Peer, Stream};
use crate::logging::{self, RefusalLog};

/// A socket bound to `addr` (port 0 picks a free port), non-blocking, with
/// the options every listener of a service shares, TCP or UDP.
pub fn bound_socket(addr: SocketAddr, ty: Type, opts: &SocketOptions) -> anyhow::Result<Socket> {
    let protocol = if ty == Type::DGRAM {
        Protocol::UDP
    } else {
        Protocol::TCP
    };
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))
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
    Ok(socket)
}

/// Binds a TCP listener on `addr` with the service's `backlog` and, for
/// IPv6, its `v6only`.
pub fn bind(addr: SocketAddr, opts: &SocketOptions) -> anyhow::Result<TcpListener> {
    let socket = bound_socket(addr, Type::STREAM, opts)?;
    let backlog = i32::try_from(opts.backlog).unwrap_or(i32::MAX);
    socket
        .listen(backlog)
        .with_context(|| format!("cannot listen on {addr}"))?;
    TcpListener::from_std(socket.into()).context("cannot register the listener")
}

/// Logs that `service` cannot start, and records it among those not
/// listening; the daemon serves the rest, as xinetd does.
/// `line` is the one to blame (its `port`, say).
pub fn cannot_start(
    service: &Service,
    line: u32,
    e: &anyhow::Error,
    not_listening: &mut Vec<String>,
) {
    tracing::error!(
        "{}:{line}: service `{}` cannot start: {e:#}",
        service.spec.file.display(),
        service.name()
    );
    not_listening.push(service.name().to_owned());
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
    /// The runtime connections are served on. Accept loops run on the
    /// daemon's own (control) runtime, which no guest ever runs on, so
    /// accepting, signals and the admin listener never wait behind a
    /// guest; each admitted connection moves to this one.
    pub guests: tokio::runtime::Handle,
    /// Pool slots: one permit per running guest, across all services.
    pub slots: Arc<Semaphore>,
    /// Source of connection ids, unique across services.
    pub next_conn: Arc<AtomicU64>,
    /// What one service, one source and the datagram services may hold of
    /// the pool by default.
    pub shares: Arc<crate::admission::Shares>,
    /// Becomes `true` when the daemon stops accepting.
    pub stopping: watch::Receiver<bool>,
    /// Held by every connection task; the daemon waits for all to drop.
    pub in_flight: mpsc::Sender<()>,
    /// The connections being served, for the state dump.
    pub registry: Arc<InFlight>,
}

impl Shared {
    /// Enters an admitted connection in the registry and the drain.
    pub fn track(&self, conn: u64, service: &Service, peer: &Peer) -> Ticket {
        self.registry
            .enter(conn, service.name_arc(), peer, self.in_flight.clone())
    }
}

/// The service a listener serves now: replaced by a reload that changes
/// the service (new connections get the new version, running ones finish
/// on theirs), `None` when a reload removes the listener.
pub type Current = watch::Receiver<Option<Arc<Service>>>;

/// Resolves at `at`; never without one.
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the listener is retired: its service set to `None`, or
/// the daemon gone.
pub async fn retired(current: &mut Current) {
    let _ = current.wait_for(Option::is_none).await;
}

/// The service behind `current` now; `None` once it is retired.
pub fn now(current: &Current) -> Option<Arc<Service>> {
    current.borrow().clone()
}

/// Accepts connections on a TCP listener until the daemon stops or a
/// reload retires it.
pub async fn accept_loop(current: Current, listener: TcpListener, shared: Shared) {
    serve_listener(current, Listener::Tcp(listener), shared).await;
}

/// Like [`accept_loop`], on a Unix stream socket.
pub async fn unix_accept_loop(current: Current, listener: UnixListener, shared: Shared) {
    serve_listener(current, Listener::Unix(listener), shared).await;
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A slot in the pool, then the next connection; `None` once the pool is
/// closed (shutting down). Dropped before it is done, it gives back the
/// slot and loses no connection (accept is cancel safe).
async fn next(
    slots: &Arc<Semaphore>,
    listener: &Listener,
) -> Option<(OwnedSemaphorePermit, std::io::Result<(Stream, Peer)>)> {
    let permit = slots.clone().acquire_owned().await.ok()?;
    let accepted = match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, p)| (Stream::Tcp(s), Peer::Ip(p))),
        Listener::Unix(l) => l.accept().await.map(|(s, p)| {
            let peer = Peer::unix(&s, &p);
            (Stream::Unix(s), peer)
        }),
    };
    Some((permit, accepted))
}

async fn serve_listener(mut current: Current, listener: Listener, mut shared: Shared) {
    let mut refusals = RefusalLog::new("connections", "refused");
    // Connections of a `proxy_protocol` service whose header was read in a
    // task of their own, back for admission. Each holds its pool slot, so
    // there are never more than the pool has.
    let (read_headers, mut headers) = mpsc::unbounded_channel::<Box<Proxied>>();
    loop {
        // A connection; or, as `Err`, one whose header was read, or the
        // refusals' summary being due.
        let (permit, accepted) = match tokio::select! {
            next = next(&shared.slots, &listener) => match next {
                Some(next) => Ok(next),
                None => return, // semaphore closed: shutting down
            },
            Some(proxied) = headers.recv() => Err(Some(proxied)),
            _ = sleep_until(refusals.flush_at()) => Err(None),
            _ = shared.stopping.wait_for(|&s| s) => return,
            _ = retired(&mut current) => return,
        } {
            Ok(next) => next,
            Err(Some(proxied)) => {
                admit_proxied(*proxied, &shared, &mut refusals);
                continue;
            }
            Err(None) => {
                if let Some(service) = now(&current) {
                    refusals.flush(&service.spec);
                }
                continue;
            }
        };
        // The version of the service that takes this connection.
        let Some(service) = now(&current) else { return };
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
        if let Stream::Tcp(tcp) = &stream
            && let Err(e) = tune(tcp, &service.spec.socket)
        {
            tracing::warn!(
                "cannot set socket options on service `{}`: {e}",
                service.name()
            );
        }
        let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        service.metrics().accepted();
        service.tenant().accept();
        match (&service.spec.proxy, stream) {
            (Some(proxy), Stream::Tcp(tcp)) => {
                if peer.ip().is_some_and(|p| proxy.trusts(p.ip())) {
                    read_header(service, permit, tcp, peer, conn, read_headers.clone());
                } else {
                    let why = Refusal::Proxy("sender not in proxy_from");
                    refuse(&service, Stream::Tcp(tcp), &peer, conn, why, &mut refusals);
                }
            }
            (_, stream) => handle(&service, &shared, permit, stream, peer, conn, &mut refusals),
        }
    }
}

/// A connection of a `proxy_protocol` service after its header.
struct Proxied {
    /// The version of the service that accepted it.
    service: Arc<Service>,
    permit: OwnedSemaphorePermit,
    stream: TcpStream,
    /// The socket's own peer.
    balancer: Peer,
    conn: u64,
    said: Result<proxy::Said, &'static str>,
}

/// Reads the header of a trusted sender's connection in a task of its
/// own, within its bound, and hands the connection back to `done`.
fn read_header(
    service: Arc<Service>,
    permit: OwnedSemaphorePermit,
    mut stream: TcpStream,
    balancer: Peer,
    conn: u64,
    done: mpsc::UnboundedSender<Box<Proxied>>,
) {
    tokio::spawn(async move {
        let within = proxy::bound(service.spec.limits.idle);
        let said = match &service.spec.proxy {
            Some(accepts) => proxy::read(&mut stream, accepts, within).await,
            None => Ok(proxy::Said::Balancer),
        };
        // The loop is gone only when the daemon stops: the connection is
        // dropped with it.
        let _ = done.send(Box::new(Proxied {
            service,
            permit,
            stream,
            balancer,
            conn,
            said,
        }));
    });
}

/// Admits a connection whose header was read, with the client the header
/// names as its peer (the balancer itself for a health check), or refuses
/// it for a bad header.
fn admit_proxied(proxied: Proxied, shared: &Shared, refusals: &mut RefusalLog) {
    let Proxied {
        service,
        permit,
        stream,
        balancer,
        conn,
        said,
    } = proxied;
    let stream = Stream::Tcp(stream);
    match said {
        Ok(proxy::Said::Client(client)) => {
            let peer = Peer::Ip(client);
            handle(&service, shared, permit, stream, peer, conn, refusals);
        }
        Ok(proxy::Said::Balancer) => {
            handle(&service, shared, permit, stream, balancer, conn, refusals)
        }
        Err(why) => refuse(
            &service,
            stream,
            &balancer,
            conn,
            Refusal::Proxy(why),
            refusals,
        ),
    }
}

/// Admits or refuses one accepted connection; an admitted one is served in
/// a task of its own, on the guests' runtime.
fn handle(
    service: &Arc<Service>,
    shared: &Shared,
    permit: OwnedSemaphorePermit,
    stream: Stream,
    peer: Peer,
    conn: u64,
    refusals: &mut RefusalLog,
) {
    match service.admit(permit, &peer, &shared.shares) {
        Ok(admission) => {
            if let GuestSource::Sensor(time) = service.spec.guest {
                sensor::trip(admission, stream, &peer, conn, time);
                return;
            }
            let ticket = shared.track(conn, service, &peer);
            let service = service.clone();
            let stream = match stream.into_std() {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!("cannot hand over a connection of `{}`: {e}", service.name());
                    return;
                }
            };
            shared.guests.spawn(async move {
                // Taken off the control runtime's reactor above, registered
                // with the guests' runtime's here, in the connection's task.
                let mut stream = match Stream::register(stream) {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::warn!("cannot take a connection of `{}`: {e}", service.name());
                        return;
                    }
                };
                match service.gate().greet(&mut stream).await {
                    Ok(()) => match service.spec.guest {
                        GuestSource::Redirect(target) => {
                            redirect::relay(admission, stream, peer, conn, target).await
                        }
                        _ => Service::serve(admission, stream, peer, conn).await,
                    },
                    Err(e) => {
                        drop(admission);
                        logging::connection_lost(&service.spec, conn, peer.ip(), &e);
                    }
                }
                drop(ticket);
            });
        }
        Err(reason) => refuse(service, stream, &peer, conn, reason, refusals),
    }
}

/// Counts, logs and politely closes a connection refused for `reason`.
fn refuse(
    service: &Service,
    stream: Stream,
    peer: &Peer,
    conn: u64,
    reason: Refusal,
    refusals: &mut RefusalLog,
) {
    service.metrics().refused(reason);
    // Logged (or counted, in a flood) before the close, so a client that
    // sees the close can rely on the line being there.
    refusals.refused(&service.spec, conn, peer.ip(), reason, Instant::now());
    super::close::turn_away(service.gate(), stream);
}
