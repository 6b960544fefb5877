//! One running service: its validated spec, its prepared guest, and what
//! happens to each connection it accepts.
//!
//! A connection runs the guest with the socket as stdin/stdout, then closes
//! the way a client expects: output flushed, write side shut down (the
//! client sees end of stream), unread input drained for a bounded time so
//! the kernel answers with FIN, never RST. Admission is decided here before
//! any instantiation (the checks and their order are `admission`'s, the
//! `instances` count is here); accepting is the listener's job.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use crate::admission::Gatekeeper;
pub use crate::admission::Refusal;
use crate::admission::{Shares, Source, SourceSlot};
use crate::config::{Cap, ServiceSpec};
use crate::logging::{self, Traffic};
use crate::metrics::{CountedSocket, ServiceMetrics};
use crate::sandbox::{
    Connection, DiskQuota, Endpoint, Guest, GuestLog, Invocation, Outcome, RunReport, Socket,
    SocketStdin, SocketStdout, Transport, drain,
};

use super::close;
use super::stream::{Peer, Stream};
use super::tenant::{Tenant, TenantSlot};

/// A service ready to take connections.
pub struct Service {
    pub spec: ServiceSpec,
    /// `None` for a `redirect` service.
    guest: Option<Guest>,
    name: Arc<str>,
    /// Shared with the service's earlier and later versions (a reload that
    /// changes it), so `instances` counts every running guest of the
    /// service, and its counters run on.
    active: Arc<AtomicU32>,
    gate: Gatekeeper,
    metrics: Arc<ServiceMetrics>,
    /// The quota of each preopen, over its directory's usage.
    quotas: Vec<Option<DiskQuota>>,
    /// What it shares with the other services of its tenant.
    tenant: Arc<Tenant>,
}

/// A slot in the service's `instances`, one in the global pool, one in
/// `per_source` for the peer's address (once counted), and one in its
/// source's share of the daemon when the service leaves `per_source`
/// unset; all freed on drop, as soon as the guest is gone.
pub struct Admission(
    Arc<Service>,
    #[allow(dead_code)] OwnedSemaphorePermit,
    Option<Source>,
    #[allow(dead_code)] Option<SourceSlot>,
    #[allow(dead_code)] Option<TenantSlot>,
);

impl Admission {
    /// The service admitted to.
    pub fn service(&self) -> &Arc<Service> {
        &self.0
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        if let Some(source) = self.2 {
            self.0.gate.release(source);
        }
    }
}

impl Service {
    /// A service running `guest` as `spec` says (`None`: a `redirect`).
    pub fn new(spec: ServiceSpec, guest: Option<Guest>) -> Self {
        Self {
            tenant: Tenant::of(spec.tenant.as_deref()),
            name: spec.name.as_str().into(),
            gate: Gatekeeper::new(&spec),
            quotas: crate::sandbox::quotas(&spec.preopens, spec.preopen_quota),
            spec,
            guest,
            active: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// `self` as the next version of `earlier` (a reload changed the
    /// service's attributes or its guest): the running-guest counts
    /// (`instances`, `per_source`) and the counters of the service carry
    /// on; banners and the `cps` rate are the new version's.
    pub fn continuing(self, earlier: &Service) -> Self {
        Self {
            active: earlier.active.clone(),
            metrics: earlier.metrics.clone(),
            gate: earlier.gate.continuing(&self.spec),
            ..self
        }
    }

    /// The service's name (its id).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The service's name, shared.
    pub fn name_arc(&self) -> Arc<str> {
        self.name.clone()
    }

    /// The prepared guest; `None` for a `redirect` service.
    pub fn guest(&self) -> Option<&Guest> {
        self.guest.as_ref()
    }

    /// What this service has counted so far.
    pub fn metrics(&self) -> &ServiceMetrics {
        &self.metrics
    }

    /// Guests of this service running now.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    /// The tenant it belongs to (the implicit one, "", if none).
    pub fn tenant(&self) -> &Arc<Tenant> {
        &self.tenant
    }

    /// The admission state: banners, `per_source` and `cps` counters.
    pub fn gate(&self) -> &Gatekeeper {
        &self.gate
    }

    /// Decides whether `peer` gets a guest: the slots it takes (with the
    /// pool slot `permit`), or why not. A service that leaves `instances`
    /// or `per_source` unset gets the daemon's `shares` of them.
    pub fn admit(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        peer: &Peer,
        shares: &Arc<Shares>,
    ) -> Result<Admission, Refusal> {
        let ip = peer.ip().map(|p| p.ip().to_canonical());
        let source = match peer {
            Peer::Ip(_) => ip.map(Source::Ip),
            Peer::Unix { uid, .. } => uid.map(Source::Uid),
        };
        let now = Instant::now();
        if self.gate.screen(&self.spec, ip, now)? {
            logging::cps_reopened(&self.spec);
        }
        let max = self
            .spec
            .instances
            .or(shares.per_service())
            .unwrap_or(u32::MAX);
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| Refusal::Instances)?;
        // Dropped on a refusal below, which frees the instance slot.
        let mut admission = Admission(self.clone(), permit, None, None, None);
        // After the service's own `instances`: a service at its own
        // limit does not count against its tenant's.
        admission.4 = Some(self.tenant.take()?);
        // Not for datagrams: a UDP source address can be forged, and a
        // flood in someone else's name must not use up their share.
        if self.spec.per_source == Cap::Unset
            && !self.spec.dgram()
            && let Some(source) = source
        {
            admission.3 = shares.take_source(source).ok_or(Refusal::PerSource)?;
        }
        if let Err(refusal) = self.gate.count(source, now) {
            if let (Refusal::Cps, Some(cps)) = (refusal, self.spec.cps) {
                logging::cps_tripped(&self.spec, cps);
            }
            return Err(refusal);
        }
        admission.2 = source;
        Ok(admission)
    }

    /// Serves one admitted connection to the end; never fails, only logs.
    pub async fn serve(admission: Admission, stream: Stream, peer: Peer, conn: u64) {
        let this = admission.0.clone();
        this.serve_admitted(admission, stream, peer, conn).await;
    }

    async fn serve_admitted(&self, admission: Admission, stream: Stream, peer: Peer, conn: u64) {
        let started = Instant::now();
        let connection = self.connection(&stream, &peer, conn);
        let sock = Arc::new(CountedSocket::new(stream, &self.metrics));
        let stdout = SocketStdout::new(sock.clone());
        let env = peer.env(&self.spec.env);
        let Some(guest) = &self.guest else {
            // The listener relays a `redirect` service's connections itself.
            return;
        };
        let mut run = self.invocation(
            &env,
            SocketStdin::new(sock.clone()),
            stdout.clone(),
            connection,
        );
        run.watch = Some(Box::pin(watch_client(&*sock, self.spec.limits.idle)));
        run.gathered = Some(&stdout);
        let report = guest.run(run).await;
        drop(admission);

        // The guest is gone; finish the connection the way a client expects:
        // its answer whole, then end of stream, then no reset.
        let end = close::AFTER_SERVING;
        stdout.finish(end.time).await;
        let _ = socket2::SockRef::from(&*sock).shutdown(std::net::Shutdown::Write);
        drain(&*sock, end.time, end.bytes).await;
        self.finished(conn, peer.ip(), started, &report, sock.traffic());
    }

    /// The run of this service's guest for one connection: its argv,
    /// environment (`env`: the service's and the peer's), preopens,
    /// limits and egress, with the connection's stdio; its stderr and
    /// remarks go to the log under the service and `connection`'s id.
    pub fn invocation<'a, I, O>(
        &'a self,
        env: &'a [(String, String)],
        stdin: I,
        stdout: O,
        connection: Connection,
    ) -> Invocation<'a, I, O, GuestLog> {
        let remarks = logging::GuestReport::new(self.name.clone(), connection.id);
        Invocation {
            argv: &self.spec.argv,
            env,
            preopens: &self.spec.preopens,
            quotas: &self.quotas,
            limits: self.spec.limits,
            stdin,
            stdout,
            stderr: GuestLog::new(remarks.clone()),
            connection,
            allow_connect: self.spec.allow_connect.clone(),
            report: remarks,
            watch: None,
            gathered: None,
            pool: self.tenant.pool().clone(),
        }
    }

    /// The end of connection `conn`, whatever served it (a guest, a
    /// relay): its counters, what the guard refused its guest, its line.
    pub fn finished(
        &self,
        conn: u64,
        peer: Option<SocketAddr>,
        started: Instant,
        report: &RunReport,
        traffic: Traffic,
    ) {
        let duration = started.elapsed();
        self.metrics.finished(report, duration);
        logging::guard_refused(&self.spec, conn, report.refused);
        logging::connection_done(&self.spec, conn, peer, duration, &report.outcome, traffic);
    }
}

impl Service {
    /// What a component may ask about the connection `conn` on `stream`
    /// from `peer` (`wasinetd:handler/connection`).
    fn connection(&self, stream: &Stream, peer: &Peer, conn: u64) -> Connection {
        let transport = stream.transport();
        // A system call per connection: only for a guest that asks. A
        // Unix socket this daemon bound is known by its configured path
        // (its own address names the private folder it was bound in).
        let local = if let (Transport::Unix, Some(unix)) = (transport, self.spec.unix()) {
            Some(Endpoint::Path(unix.path.display().to_string()))
        } else if self.guest.as_ref().is_some_and(Guest::asks_connection) {
            socket2::SockRef::from(stream)
                .local_addr()
                .ok()
                .and_then(|addr| Endpoint::of(&addr))
        } else {
            None
        };
        Connection {
            service: self.name.clone(),
            id: conn,
            transport,
            peer: peer.endpoint(),
            local,
        }
    }
}

/// Resolves when the connection should end from the client's side: the
/// client is gone (it reset the connection: nothing more can reach it), or
/// no byte moved either way for `idle` (checked every half of it, so it
/// fires between `idle` and one and a half times that after the last byte).
/// A client that only shut down its write side is neither: it may be
/// waiting for the answer.
pub async fn watch_client<S: Socket>(sock: &CountedSocket<S>, idle: Option<Duration>) -> Outcome {
    tokio::select! {
        () = sock.gone() => Outcome::ClientGone,
        () = quiet(idle, || sock.traffic()) => Outcome::IdleTimeout,
    }
}

/// Resolves once `traffic` has not changed for `idle` (checked every half
/// of it); never with no `idle`.
pub async fn quiet(idle: Option<Duration>, traffic: impl Fn() -> Traffic) {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    let step = (idle / 2).max(Duration::from_millis(1));
    let (mut seen, mut since) = (traffic(), Instant::now());
    loop {
        tokio::time::sleep(step).await;
        let now = traffic();
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() >= idle {
            return;
        }
    }
}
