//! The daemon: prepares every service, binds every listener, serves until
//! told to stop, reloads its config on request, dumps its state, and stops
//! gracefully.
//!
//! Order matters: a config is parsed and validated (by `config`), then every
//! guest is compiled, then sockets are bound; at start-up a service that
//! fails at any step is logged and left out, and the rest are served, as
//! xinetd does. Readiness (`listening service=NAME addr=IP:PORT`, one stderr
//! line per listener) is announced only once every listener is bound.
//!
//! Requests come as [`Request`]s (the command turns signals into them):
//! `Reload` ([`reload`]) switches to the config read anew only once all of
//! it is compiled and bound, `Dump` ([`dump`]) logs the state, `Upgrade`
//! ([`upgrade`]) hands every socket to a new process of the binary and,
//! once it is ready, stops as on `Stop`, and `Stop` stops as [`stop`]
//! says: not ready for the drain delay while still serving, then no longer
//! accepting while running connections finish for the grace period; each
//! further `Stop` cuts the wait under way short.

pub mod admin;
pub mod descriptors;
mod dump;
mod late;
mod listeners;
mod prepare;
mod reload;
mod stop;
pub mod systemd;
pub mod unix_socket;
pub mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use tokio::sync::{Semaphore, mpsc, watch};

pub use self::prepare::{Guests, Prepared, prepare, prepare_cached};
use crate::config::Config;
use crate::conn::in_flight::InFlight;
use crate::conn::listener::Shared;
use crate::conn::service::Service;
use crate::conn::tenant::Tenant;
use crate::sandbox::Sandbox;
use crate::server::systemd::{ListenFds, Notifier};

/// What the daemon is asked to do while it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Stop accepting and drain; a second one ends running guests at once.
    Stop,
    /// Read the config again and switch to it (SIGHUP).
    Reload,
    /// Log the daemon's state (SIGUSR1).
    Dump,
    /// Hand the sockets to a new process of the binary, then stop once it
    /// is ready (SIGUSR2).
    Upgrade,
}

/// Reads the config again, for a reload: the same file (or built-in text)
/// the daemon started with.
pub type ConfigLoader = Box<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

/// How the daemon runs, beyond the config file.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Guests that may run at once across all services.
    pub max_instances: u32,
    /// What one service, one source and the datagram services may hold of
    /// them by default.
    pub shares: Arc<crate::admission::Shares>,
    /// How long in-flight connections may finish after a stop request.
    pub shutdown_grace: Duration,
    /// How long the daemon stays not ready but still accepting after a
    /// stop request, for balancers to take it out of rotation first.
    pub drain_delay: Duration,
    /// Where the admin listener binds, if there is one.
    pub admin: Option<SocketAddr>,
    /// Listening sockets systemd passed, taken by the services they match.
    pub listen_fds: ListenFds,
    /// The digest of the config read at start-up ([`Config::digest`]).
    pub config_digest: String,
    /// The tenants of the config read at start-up, by name.
    pub tenants: Vec<Arc<Tenant>>,
    /// How to start this binary again for an upgrade (`None`: it cannot).
    pub exec: Option<upgrade::Exec>,
    /// Tells the process that started this one by an upgrade that this one
    /// is ready (silent otherwise).
    pub upgraded_from: upgrade::ReadySignal,
}

/// What the admin endpoints, systemd's `STATUS=` and the dump report on:
/// the config being served now, replaced whole by each reload.
#[derive(Default)]
pub struct Roster {
    /// Every listener and the service it serves, with its address as its
    /// readiness line showed it (`IP:PORT` or `unix:/path`).
    pub listeners: Vec<(Arc<Service>, String)>,
    /// Services of the config that are not listening (failed to load or to
    /// bind), by name.
    pub not_listening: Vec<String>,
    /// Services whose guests are still compiling (start-up), by name.
    pub compiling: Vec<String>,
    /// The config being served and how reloads went.
    pub config: ConfigStatus,
}

/// The config being served, and the reloads since start-up: what
/// monitoring needs to see that a reload failed while the previous config
/// goes on serving.
#[derive(Debug, Clone)]
pub struct ConfigStatus {
    /// The served config's digest ([`Config::digest`]).
    pub digest: String,
    /// When the served config was read: start-up or the last reload that
    /// switched to it.
    pub loaded_at: SystemTime,
    /// Reloads that switched to the new config.
    pub reloads_ok: u64,
    /// Reloads that left the previous config serving.
    pub reloads_failed: u64,
    /// The last reload, if there was one.
    pub last_reload: Option<LastReload>,
    /// The served config's tenants, by name (not the implicit one).
    pub tenants: Vec<Arc<Tenant>>,
}

impl Default for ConfigStatus {
    fn default() -> Self {
        ConfigStatus {
            digest: String::new(),
            loaded_at: SystemTime::now(),
            reloads_ok: 0,
            reloads_failed: 0,
            last_reload: None,
            tenants: Vec::new(),
        }
    }
}

impl ConfigStatus {
    /// Why the last reload failed, while no later one has worked.
    pub fn reload_error(&self) -> Option<&str> {
        self.last_reload.as_ref()?.error.as_deref()
    }
}

/// How the last reload ended.
#[derive(Debug, Clone)]
pub struct LastReload {
    /// When it ended.
    pub at: SystemTime,
    /// Why it failed (the first line of the error), or `None` if it
    /// switched.
    pub error: Option<String>,
}

impl Roster {
    /// Each service once, at its first address.
    pub fn services(&self) -> Listed {
        let mut services: Vec<(Arc<Service>, String)> = Vec::new();
        for (service, addr) in &self.listeners {
            if !services.iter().any(|(s, _)| Arc::ptr_eq(s, service)) {
                services.push((service.clone(), addr.clone()));
            }
        }
        services
    }

    /// Its services outside every tenant, then each tenant (by name) with
    /// its services, each list in [`services`](Self::services)' order.
    pub fn by_tenant(&self) -> ByTenant {
        let services = self.services();
        let of = |tenant: &str| -> Listed {
            (services.iter())
                .filter(|(s, _)| s.tenant().name() == tenant)
                .cloned()
                .collect()
        };
        // The config's tenants, and (should a service outlive its
        // tenant's block) any other tenant a service names.
        let mut tenants = self.config.tenants.clone();
        for (service, _) in &services {
            let tenant = service.tenant();
            if !tenant.name().is_empty() && !tenants.iter().any(|t| t.name() == tenant.name()) {
                tenants.push(tenant.clone());
            }
        }
        tenants.sort_by(|a, b| a.name().cmp(b.name()));
        ByTenant {
            untenanted: of(""),
            tenants: tenants
                .into_iter()
                .map(|t| {
                    let s = of(t.name());
                    (t, s)
                })
                .collect(),
        }
    }

    /// Guests running now, across the services.
    pub fn running(&self) -> u64 {
        self.services()
            .iter()
            .map(|(s, _)| u64::from(s.active()))
            .sum()
    }
}

/// Services, each with its first address, as [`Roster::services`] lists them.
pub type Listed = Vec<(Arc<Service>, String)>;

/// [`Roster::by_tenant`]: the services, grouped by tenant.
pub struct ByTenant {
    /// The services outside every tenant, with their first address.
    pub untenanted: Listed,
    /// Each tenant, with its services.
    pub tenants: Vec<(Arc<Tenant>, Listed)>,
}

/// The daemon at work: what a reload replaces, and what stays.
struct Daemon {
    sandbox: Arc<Sandbox>,
    load: Arc<ConfigLoader>,
    /// The guests of the config being served, by content.
    guests: Guests,
    /// The services being served, in config order.
    services: Vec<Arc<Service>>,
    listeners: listeners::Table,
    shared: Shared,
    roster: watch::Sender<Arc<Roster>>,
    notifier: Notifier,
    started: Instant,
    /// The config being served, and how reloads went.
    config: ConfigStatus,
    /// Sockets systemd passed, kept for services still compiling.
    passed: Option<ListenFds>,
    /// Services whose guests are still compiling, by name.
    compiling: Vec<String>,
    /// The admin listener, to hand over on an upgrade.
    admin_fd: Option<std::os::fd::OwnedFd>,
}

impl Daemon {
    /// Publishes the state after a start, a reload or a late service.
    fn publish(&self, not_listening: Vec<String>) {
        self.roster.send_replace(Arc::new(Roster {
            listeners: self.listeners.roster(),
            not_listening,
            compiling: self.compiling.clone(),
            config: self.config.clone(),
        }));
    }
}

/// Binds and serves the prepared config until a [`Request::Stop`], then
/// stops as [`stop`] says (the drain delay, then the grace period) and
/// ends the guests still running.
///
/// Runs on the daemon's own runtime: accept loops, the admin listener and
/// requests; every connection is served on `guests`, a runtime of its own,
/// so that no guest can keep the daemon from accepting or from hearing a
/// signal.
///
/// Fails only when no service could start.
pub async fn run(
    sandbox: Arc<Sandbox>,
    prepared: Prepared,
    load: ConfigLoader,
    opts: &ServeOptions,
    mut requests: mpsc::Receiver<Request>,
    guests: tokio::runtime::Handle,
) -> anyhow::Result<()> {
    // The admin listener an upgrade handed over, or a new one.
    let admin_listener = (opts.admin)
        .map(|addr| match opts.listen_fds.take_admin(addr) {
            Some(l) => Ok(l),
            None => admin::bind(addr),
        })
        .transpose()?;
    let mut not_listening: Vec<String> = prepared
        .failed
        .iter()
        .map(|f| f.spec.name.clone())
        .collect();
    let services: Vec<Arc<Service>> = prepared.services.into_iter().map(Arc::new).collect();
    let table = listeners::Table::default();
    let plan = table.plan(&services, Some(&opts.listen_fds), |_| true)?;
    not_listening.extend(plan.not_listening.iter().cloned());
    let compiling_names: Vec<String> = prepared.pending.iter().map(|s| s.name.clone()).collect();
    let mut compiling = late::Compiling::start(sandbox.clone(), prepared.pending);
    // Sockets systemd passed wait for their services still compiling.
    let passed = match compiling {
        Some(_) => Some(opts.listen_fds.clone()),
        None => {
            opts.listen_fds.close_unclaimed();
            None
        }
    };

    // `draining`: not ready (a stop was asked for); `stop`: not accepting.
    let (draining_tx, draining_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (in_flight_tx, in_flight_rx) = mpsc::channel::<()>(1);
    let shared = Shared {
        guests,
        shares: opts.shares.clone(),
        slots: Arc::new(Semaphore::new(opts.max_instances as usize)),
        next_conn: Arc::new(AtomicU64::new(1)),
        stopping: stop_rx.clone(),
        in_flight: in_flight_tx,
        registry: Arc::new(InFlight::default()),
    };
    let (roster, roster_rx) = watch::channel(Arc::new(Roster::default()));
    let mut daemon = Daemon {
        sandbox,
        load: Arc::new(load),
        guests: prepared.guests,
        services: Vec::new(),
        listeners: table,
        shared,
        roster,
        notifier: Notifier::from_env(),
        started: Instant::now(),
        config: ConfigStatus {
            digest: opts.config_digest.clone(),
            tenants: opts.tenants.clone(),
            ..ConfigStatus::default()
        },
        passed,
        compiling: compiling_names,
        admin_fd: None,
    };
    let started = daemon.listeners.commit(plan, &daemon.shared);
    if daemon.listeners.is_empty() && compiling.is_none() {
        bail!("no service could start");
    }
    daemon.services = services
        .into_iter()
        .filter(|s| !not_listening.iter().any(|n| n == s.name()))
        .collect();
    daemon.publish(not_listening);

    let mut admin_task = None;
    if let Some(l) = admin_listener {
        let addr = l.local_addr()?;
        daemon.admin_fd = std::os::fd::AsFd::as_fd(&l).try_clone_to_owned().ok();
        let view = admin::View {
            roster: roster_rx.clone(),
            draining: draining_rx.clone(),
            stopping: stop_rx.clone(),
            started: daemon.started,
        };
        admin_task = Some(tokio::spawn(admin::serve(l, view)));
        // Not `listening service=`: that line is for services only.
        crate::logging::readiness(&format!("admin listening addr={addr}"));
    }
    for (service, addr) in &started.opened {
        // The readiness line: tests and scripts wait for exactly this.
        crate::logging::readiness(&format!("listening service={service} addr={addr}"));
    }
    // After the readiness lines: systemd's READY=1 means the same.
    crate::logging::flush();
    daemon.notifier.ready(roster_rx.clone(), draining_rx);
    if compiling.is_none() {
        opts.upgraded_from.send();
    }

    let mut reload_asked = false;
    let mut handed_over = false;
    'serving: loop {
        let request = if reload_asked {
            Some(Request::Reload)
        } else {
            tokio::select! {
                request = requests.recv() => request,
                compiled = next_compiled(&mut compiling) => {
                    match compiled {
                        Some(prepared) => late::admit(&mut daemon, prepared),
                        None => {
                            compiling = None;
                            if let Some(passed) = daemon.passed.take() {
                                passed.close_unclaimed();
                            }
                            if daemon.listeners.is_empty() {
                                bail!("no service could start");
                            }
                            opts.upgraded_from.send();
                        }
                    }
                    continue;
                }
            }
        };
        match request {
            Some(Request::Reload) => {
                // Requests are heard while the new config compiles: a stop
                // abandons the reload; another reload runs once this one
                // is done (the config may have changed again since it was
                // read).
                reload_asked = false;
                let mut staging = reload::begin(&daemon);
                let staged = loop {
                    tokio::select! {
                        staged = staging.staged() => break staged,
                        request = requests.recv() => match request {
                            Some(Request::Dump) => dump::dump(&daemon, "serving"),
                            Some(Request::Reload) => reload_asked = true,
                            Some(Request::Upgrade) => tracing::warn!("upgrade ignored: a reload is under way; ask again once it is done"),
                            Some(Request::Stop) | None => {
                                tracing::warn!(target: "wasinetd::server::reload", "reload abandoned: the daemon is stopping");
                                break 'serving;
                            }
                        },
                    }
                };
                if reload::finish(&mut daemon, &staging, staged) {
                    // The reload compiled every guest itself.
                    compiling = None;
                    opts.upgraded_from.send();
                }
            }
            Some(Request::Upgrade) => {
                match upgrade::upgrade(&daemon, opts.exec.as_ref(), &mut requests).await {
                    upgrade::Outcome::HandedOver => {
                        handed_over = true;
                        break;
                    }
                    upgrade::Outcome::Failed { reload } => reload_asked = reload,
                    upgrade::Outcome::Stop => break,
                }
            }
            Some(Request::Dump) => dump::dump(&daemon, "serving"),
            Some(Request::Stop) | None => break,
        }
    }

    // Not ready from here on, whatever follows.
    let _ = draining_tx.send(true);
    if handed_over {
        // The new process answers the admin endpoints now; this one's
        // running requests finish.
        if let Some(task) = admin_task.take() {
            task.abort();
        }
    } else {
        // Not after an upgrade: the service goes on, in the new process,
        // on the same sockets, so there is nothing to drain away from.
        stop::delay(&daemon, opts.drain_delay, &mut requests).await;
        daemon.notifier.stopping(&daemon.roster.borrow());
    }
    let _ = stop_tx.send(true);
    stop::drain(&mut daemon, opts.shutdown_grace, requests, in_flight_rx).await;
    Ok(())
}

/// The next guest compiled after start-up; never, when none is compiling.
async fn next_compiled(compiling: &mut Option<late::Compiling>) -> Option<Prepared> {
    match compiling {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}
