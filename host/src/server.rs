//! The daemon: prepares every service, binds every listener, supervises the
//! accept loops, and stops them gracefully.
//!
//! Order matters: a config is parsed and validated (by `config`), then every
//! guest is compiled, then sockets are bound; a service that fails at any
//! step is logged and left out, and the rest are served, as xinetd does.
//! Readiness (`listening service=NAME addr=IP:PORT`, one stderr line per
//! listener) is announced only once every listener is bound.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::net::{TcpListener, UdpSocket, UnixListener};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::admin;
use crate::bundled;
use crate::config::{GuestSource, ServiceSpec, Transport};
use crate::listener;
use crate::sandbox::{Guest, Sandbox};
use crate::service::Service;
use crate::systemd::{ListenFds, Notifier};
use crate::udp;

/// A service whose guest could not be prepared, with the reason.
#[derive(Debug)]
pub struct LoadError {
    pub spec: ServiceSpec,
    pub error: anyhow::Error,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: service `{}`: {:#}",
            self.spec.file.display(),
            self.spec.line,
            self.spec.name,
            self.error
        )
    }
}

/// Compiles every service's guest, once per distinct guest.
pub fn prepare(sandbox: &Sandbox, specs: Vec<ServiceSpec>) -> (Vec<Service>, Vec<LoadError>) {
    let mut compiled: HashMap<GuestSource, Result<Guest, String>> = HashMap::new();
    let mut ready = Vec::new();
    let mut failed = Vec::new();
    for spec in specs {
        if let GuestSource::Redirect(_) = spec.guest {
            ready.push(Service::new(spec, None));
            continue;
        }
        let guest = compiled
            .entry(spec.guest.clone())
            .or_insert_with(|| load_guest(sandbox, &spec.guest).map_err(|e| format!("{e:#}")))
            .clone();
        match guest {
            Ok(guest) => ready.push(Service::new(spec, Some(guest))),
            Err(error) => failed.push(LoadError {
                spec,
                error: anyhow::anyhow!(error),
            }),
        }
    }
    (ready, failed)
}

/// Loads a guest and logs whether its code was compiled or cached, and how
/// long that took.
fn load_guest(sandbox: &Sandbox, source: &GuestSource) -> anyhow::Result<Guest> {
    let started = Instant::now();
    let guest = compile_guest(sandbox, source)?;
    tracing::info!(
        "guest `{source}` {} in {:.1?}",
        guest.origin().as_str(),
        started.elapsed()
    );
    Ok(guest)
}

fn compile_guest(sandbox: &Sandbox, source: &GuestSource) -> anyhow::Result<Guest> {
    match source {
        GuestSource::File(path) => sandbox
            .load_file(path)
            .with_context(|| format!("cannot load guest `{}`", path.display())),
        GuestSource::Internal(name) => {
            let Some(bytes) = bundled::guest(name) else {
                bail!(
                    "no internal service `{name}`; the bundled ones are: {}",
                    bundled::NAMES.join(", ")
                );
            };
            sandbox
                .load(bytes)
                .with_context(|| format!("cannot load the bundled guest `{name}`"))
        }
        GuestSource::Redirect(addr) => bail!("`redirect` to {addr} runs no guest"),
    }
}

/// How the daemon runs, beyond the config file.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Guests that may run at once across all services.
    pub max_instances: u32,
    /// How long in-flight connections may finish after a stop request.
    pub shutdown_grace: Duration,
    /// Where the admin listener binds, if there is one.
    pub admin: Option<SocketAddr>,
    /// Services of the config that could not be prepared, by name (the
    /// admin listener reports them as not listening).
    pub failed: Vec<String>,
    /// Listening sockets systemd passed, taken by the services they match.
    pub listen_fds: ListenFds,
}

/// Binds and serves `services` until `shutdown` resolves, then drains
/// in-flight connections for up to the grace period, or until `force`.
///
/// Fails only when no service could start.
pub async fn run(
    services: Vec<Service>,
    opts: &ServeOptions,
    shutdown: impl Future<Output = ()>,
    force: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let admin_listener = opts.admin.map(admin::bind).transpose()?;
    let (datagram, services): (Vec<Service>, Vec<Service>) = services
        .into_iter()
        .partition(|s| s.spec.transport == Transport::Udp);
    let mut bound: Vec<(Arc<Service>, TcpListener)> = Vec::new();
    let mut unix_bound: Vec<(Arc<Service>, UnixListener)> = Vec::new();
    let mut not_listening = opts.failed.clone();
    for service in services {
        match listener::listen(&service.spec, &opts.listen_fds) {
            Ok(ls) => {
                let service = Arc::new(service);
                bound.extend(ls.tcp.into_iter().map(|l| (service.clone(), l)));
                unix_bound.extend(ls.unix.into_iter().map(|l| (service.clone(), l)));
            }
            Err(e) => listener::cannot_start(&service, &e, &mut not_listening),
        }
    }
    opts.listen_fds.close_unclaimed();
    let bound_udp: Vec<(Arc<Service>, UdpSocket)> = udp::bind_all(datagram, &mut not_listening);
    if bound.is_empty() && unix_bound.is_empty() && bound_udp.is_empty() {
        bail!("no service could start");
    }
    let mut listening = Vec::with_capacity(bound.len());
    for (service, l) in &bound {
        let addr = l.local_addr().context("cannot read a listener's address")?;
        listening.push((service.clone(), addr));
    }
    for (service, s) in &bound_udp {
        let addr = s.local_addr().context("cannot read a socket's address")?;
        listening.push((service.clone(), addr));
    }
    let mut unix_listening = Vec::with_capacity(unix_bound.len());
    for (service, l) in &unix_bound {
        let addr = l.local_addr().context("cannot read a listener's address")?;
        let path = addr.as_pathname().unwrap_or(std::path::Path::new(""));
        unix_listening.push((service.clone(), format!("unix:{}", path.display())));
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let notifier = Notifier::from_env();
    if let Some(l) = admin_listener {
        let addr = l.local_addr().context("cannot read the admin address")?;
        // One entry per service, at its first address.
        let mut services: Vec<(Arc<Service>, String)> = Vec::new();
        let all = (listening.iter().map(|(s, a)| (s, a.to_string())))
            .chain(unix_listening.iter().map(|(s, a)| (s, a.clone())));
        for (service, addr) in all {
            if !services
                .iter()
                .any(|(known, _)| Arc::ptr_eq(known, service))
            {
                services.push((service.clone(), addr));
            }
        }
        let view = admin::View {
            services,
            not_listening,
            stopping: stop_rx.clone(),
            started: Instant::now(),
        };
        tokio::spawn(admin::serve(l, view));
        // Not `listening service=`: that line is for services only.
        eprintln!("admin listening addr={addr}");
    }
    for (service, addr) in &listening {
        // The readiness line: tests and scripts wait for exactly this.
        eprintln!("listening service={} addr={addr}", service.name());
    }
    for (service, addr) in &unix_listening {
        eprintln!("listening service={} addr={addr}", service.name());
    }

    let (in_flight_tx, mut in_flight_rx) = mpsc::channel::<()>(1);
    let shared = listener::Shared {
        slots: Arc::new(Semaphore::new(opts.max_instances as usize)),
        next_conn: Arc::new(AtomicU64::new(1)),
        stopping: stop_rx,
        in_flight: in_flight_tx,
    };
    // The service of every listener, for systemd's STATUS=.
    let per_listener: Vec<Arc<Service>> = (listening.iter().map(|(s, _)| s))
        .chain(unix_bound.iter().map(|(s, _)| s))
        .cloned()
        .collect();
    let mut loops = Vec::new();
    for (service, l) in bound {
        loops.push(tokio::spawn(listener::accept_loop(
            service,
            l,
            shared.clone(),
        )));
    }
    for (service, l) in unix_bound {
        loops.push(tokio::spawn(listener::unix_accept_loop(
            service,
            l,
            shared.clone(),
        )));
    }
    for (service, s) in bound_udp {
        loops.push(tokio::spawn(udp::serve(service, s, shared.clone())));
    }
    // After the readiness lines: systemd's READY=1 means the same.
    notifier.ready(&per_listener, shared.stopping.clone());
    drop(shared);

    shutdown.await;
    let _ = stop_tx.send(true);
    notifier.stopping(&per_listener);
    for l in loops {
        let _ = l.await;
    }
    tracing::info!(
        "stopped accepting; waiting up to {:?} for running connections",
        opts.shutdown_grace
    );
    let drained = async { while in_flight_rx.recv().await.is_some() {} };
    tokio::select! {
        _ = drained => tracing::info!("all connections finished; exiting"),
        _ = tokio::time::sleep(opts.shutdown_grace) => {
            tracing::warn!("shutdown grace of {:?} over; ending running guests", opts.shutdown_grace);
        }
        _ = force => tracing::warn!("second stop request; ending running guests"),
    }
    Ok(())
}
