//! Reloading the config (SIGHUP) while serving, without refusing a client.
//!
//! The new config is read, validated and every new or changed guest
//! compiled on a blocking thread while the old one keeps serving; then the
//! sockets it needs beyond the live ones are bound. Only when all of that
//! worked does the daemon switch, in one step that cannot fail: unchanged
//! services go on as they are (the same version, counters, admission
//! state), a changed one (attributes, or its guest file's content) serves
//! new connections with its new version on the sockets it already had
//! while running connections finish on the old, a removed one stops
//! listening and its running connections finish, and an added one starts.
//! Any failure on the way leaves the old config serving, and says why;
//! except that a service already not listening in the running config (its
//! guest or its bind failed at start-up) that still fails is left out
//! again, so that it does not block every other change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::listeners::Changes;
use super::{Daemon, Guests, Prepared, prepare};
use crate::config::ServiceSpec;
use crate::conn::service::Service;
use crate::logging::sink;

/// A new config, compiled and with its log files open: what a switch
/// needs besides sockets.
pub(super) struct Staged {
    prepared: Prepared,
    /// The new config's digest.
    digest: String,
    routes: sink::Routes,
    /// Services left out again: not listening before, still failing.
    left_out: Vec<String>,
    /// The tenants the new config serves, with their budgets.
    tenants: Vec<Arc<crate::config::TenantSpec>>,
}

/// How the services of the new config relate to the old.
#[derive(Default)]
struct Counts {
    added: usize,
    changed: usize,
    unchanged: usize,
    removed: usize,
}

/// How long reading and compiling a new config may take; past it, the
/// reload fails like any bad reload (the work goes on on its thread and
/// its result is dropped).
pub(super) const RELOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// A reload under way: reading, validating and compiling the new config on
/// a blocking thread, while the daemon goes on serving and hearing
/// requests. [`finish`] switches to it.
pub(super) struct Staging {
    started: Instant,
    broken: Vec<String>,
    work: tokio::task::JoinHandle<anyhow::Result<Staged>>,
}

impl Staging {
    /// Waits for the new config to be staged, at most until
    /// [`RELOAD_TIMEOUT`] after the reload began.
    pub(super) async fn staged(&mut self) -> anyhow::Result<Staged> {
        let deadline = tokio::time::Instant::from_std(self.started + RELOAD_TIMEOUT);
        match tokio::time::timeout_at(deadline, &mut self.work).await {
            Ok(Ok(staged)) => staged,
            Ok(Err(e)) => Err(anyhow::anyhow!("the reload failed unexpectedly: {e}")),
            Err(_) => Err(anyhow::anyhow!(
                "reading and compiling the config took longer than {RELOAD_TIMEOUT:?}"
            )),
        }
    }
}

/// Starts a reload: the config is read and compiled on a blocking thread.
pub(super) fn begin(daemon: &Daemon) -> Staging {
    daemon.notifier.reloading();
    tracing::info!("reloading the config");
    let (load, sandbox, known) = (
        daemon.load.clone(),
        daemon.sandbox.clone(),
        daemon.guests.clone(),
    );
    let broken = daemon.roster.borrow().not_listening.clone();
    let running: Vec<ServiceSpec> = daemon.services.iter().map(|s| s.spec.clone()).collect();
    let work = {
        let broken = broken.clone();
        tokio::task::spawn_blocking(move || stage(&load, &sandbox, &known, &broken, running))
    };
    Staging {
        started: Instant::now(),
        broken,
        work,
    }
}

/// Ends a reload: switches to the staged config, or leaves the old one
/// serving and logs why. True if it switched.
pub(super) fn finish(
    daemon: &mut Daemon,
    staging: &Staging,
    staged: anyhow::Result<Staged>,
) -> bool {
    let (started, broken) = (staging.started, &staging.broken);
    let result = staged.and_then(|staged| switch(daemon, staged, broken));
    let switched = result.is_ok();
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    match result {
        Ok(counts) => {
            daemon.config.reloads_ok += 1;
            tracing::info!(
                "reloaded in {:.1?}: {} services ({} added, {} changed, {} removed, {} unchanged)",
                started.elapsed(),
                daemon.services.len(),
                counts.added,
                counts.changed,
                counts.removed,
                counts.unchanged
            );
        }
        Err(e) => {
            daemon.config.reloads_failed += 1;
            tracing::error!("reload failed: {e:#}; still serving the previous config");
        }
    }
    daemon.config.last_reload = Some(super::LastReload {
        at: std::time::SystemTime::now(),
        error,
    });
    // A failed reload changes no service, but monitoring must see it.
    let not_listening = daemon.roster.borrow().not_listening.clone();
    daemon.publish(not_listening);
    crate::logging::flush();
    daemon.notifier.reloaded(&daemon.roster.borrow());
    switched
}

/// Reads, validates and compiles the new config; nothing changes yet. A
/// service named in `broken` (not listening in the running config) whose
/// guest still does not load is left out again rather than failing the
/// reload: a service broken since start-up must not block every change.
/// A tenant with an error in its own files keeps serving what it serves
/// now (from `running`), and the other changes apply: one customer's typo
/// must not hold back every other customer's change.
fn stage(
    load: &super::ConfigLoader,
    sandbox: &crate::sandbox::Sandbox,
    known: &Guests,
    broken: &[String],
    running: Vec<ServiceSpec>,
) -> anyhow::Result<Staged> {
    let mut config = load().context("cannot read the config")?;
    for w in &config.warnings {
        crate::logging::config_warning(w);
    }
    for e in &config.errors {
        tracing::error!("{e}");
    }
    let admins = config.errors.iter().filter(|e| e.tenant.is_none()).count();
    if admins > 0 {
        bail!("the config has {admins} error(s), logged above");
    }
    keep_broken_tenants(&mut config, running);
    let routes = sink::open(&config.services)?;
    let prepared = prepare(sandbox, config.services, known);
    let mut left_out = Vec::new();
    let mut new_failures = 0;
    for f in &prepared.failed {
        tracing::error!("{f}");
        if broken.contains(&f.spec.name) {
            tracing::warn!(
                "service `{}` still cannot start; left out, as before",
                f.spec.name
            );
            left_out.push(f.spec.name.clone());
        } else {
            new_failures += 1;
        }
    }
    if new_failures > 0 {
        bail!("{new_failures} service(s) cannot load their guest, logged above");
    }
    Ok(Staged {
        prepared,
        digest: config.digest,
        routes,
        left_out,
        tenants: config.tenants,
    })
}

/// Puts back what each tenant with errors in its files serves now, in
/// place of what its files say.
fn keep_broken_tenants(config: &mut crate::config::Config, running: Vec<ServiceSpec>) {
    let broken = std::mem::take(&mut config.broken_tenants);
    let of = |s: &ServiceSpec| s.tenant.as_ref().map(|t| t.name.clone());
    let is_broken = |s: &ServiceSpec| of(s).is_some_and(|t| broken.contains(&t));
    config.services.retain(|s| !is_broken(s));
    config.tenants.retain(|t| !broken.contains(&t.name));
    for tenant in &broken {
        let kept: Vec<ServiceSpec> = (running.iter())
            .filter(|s| of(s).as_ref() == Some(tenant))
            .cloned()
            .collect();
        tracing::error!(
            "tenant {tenant}: its files have errors, logged above; its {} running service(s) \
             go on as they were",
            kept.len()
        );
        if let Some(spec) = kept.first().and_then(|s| s.tenant.clone()) {
            config.tenants.push(spec);
        }
        config.services.extend(kept);
    }
}

/// How a service of the new config relates to the running one.
enum Change {
    Unchanged,
    Changed,
    Added,
}

/// Binds what the new config needs, then switches to it.
fn switch(daemon: &mut Daemon, staged: Staged, broken: &[String]) -> anyhow::Result<Counts> {
    let mut planned: Vec<(Arc<Service>, Change)> = Vec::new();
    for service in staged.prepared.services {
        let old = daemon.services.iter().find(|s| s.name() == service.name());
        planned.push(match old {
            Some(old) if same(old, &service, &daemon.guests, &staged.prepared.guests) => {
                (old.clone(), Change::Unchanged)
            }
            Some(old) => (Arc::new(service.continuing(old)), Change::Changed),
            None => (Arc::new(service), Change::Added),
        });
    }
    let next: Vec<Arc<Service>> = planned.iter().map(|(s, _)| s.clone()).collect();
    // Binding is the last step that can fail: nothing has changed yet.
    let plan = daemon
        .listeners
        .plan(&next, None, |name| broken.iter().any(|b| b == name))?;

    let mut not_listening = staged.left_out;
    for name in &plan.not_listening {
        tracing::warn!("service `{name}` still cannot start; left out, as before");
        not_listening.push(name.clone());
    }
    let mut counts = Counts::default();
    let mut routes = staged.routes;
    let removed: Vec<&Arc<Service>> = (daemon.services.iter())
        .filter(|old| !next.iter().any(|s| s.name() == old.name()))
        .collect();
    sink::keep_for(&mut routes, removed.iter().map(|s| s.name()));
    sink::install(routes);
    let Changes { opened, closed } = daemon.listeners.commit(plan, &daemon.shared);
    for (service, change) in &planned {
        let name = service.name();
        match change {
            _ if not_listening.iter().any(|n| n == name) => {}
            Change::Unchanged => counts.unchanged += 1,
            Change::Changed => {
                counts.changed += 1;
                let old = daemon.services.iter().find(|s| s.name() == name);
                tracing::info!(
                    "service `{name}` changed: new connections get the new version; {} running \
                     finish on the old",
                    old.map_or(0, |s| s.active())
                );
            }
            Change::Added => {
                counts.added += 1;
                tracing::info!("service `{name}` added");
            }
        }
    }
    for old in removed {
        counts.removed += 1;
        tracing::info!(
            "service `{}` removed; {} running connections finish",
            old.name(),
            old.active()
        );
    }
    for (service, addr) in closed {
        tracing::info!("service `{service}` stopped listening on {addr}");
    }
    for (service, addr) in opened {
        // The readiness line, as at start-up.
        crate::logging::readiness(&format!("listening service={service} addr={addr}"));
    }
    daemon.services = next
        .into_iter()
        .filter(|s| !not_listening.iter().any(|n| n == s.name()))
        .collect();
    daemon.guests = staged.prepared.guests;
    daemon.config.tenants = crate::conn::tenant::apply(&staged.tenants);
    daemon.config.digest = staged.digest;
    daemon.config.loaded_at = std::time::SystemTime::now();
    // Every guest of the new config was compiled for it.
    daemon.compiling.clear();
    daemon.publish(not_listening);
    Ok(counts)
}

/// Whether `new` is `old` again: the same attributes (wherever in the
/// files they are written) and a guest compiled from the same bytes.
fn same(old: &Service, new: &Service, old_guests: &Guests, new_guests: &Guests) -> bool {
    let mut spec = new.spec.clone();
    spec.file.clone_from(&old.spec.file);
    spec.line = old.spec.line;
    spec.lines = old.spec.lines;
    if spec != old.spec {
        return false;
    }
    let print = |guests: &Guests| guests.get(&old.spec.guest).map(|(print, _)| *print);
    print(old_guests) == print(new_guests)
}
