//! Services whose guests were not in the compiled-code cache at start-up.
//! Compiling takes from milliseconds to a minute (and a hostile guest is
//! made to take the longest it may), so start-up does not wait for it: the
//! services whose guests are cached listen at once, and the others are
//! compiled one guest at a time on a thread of their own and start as each
//! one is ready, with its readiness line. Until then `/health` and the
//! dump say they are compiling. A reload compiles whatever it needs itself
//! and makes this moot.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Daemon, Guests, Prepared, prepare};
use crate::config::{GuestSource, ServiceSpec};
use crate::conn::service::Service;
use crate::sandbox::Sandbox;

/// Guests being compiled after start-up.
pub(super) struct Compiling {
    ready: mpsc::UnboundedReceiver<Prepared>,
}

impl Compiling {
    /// Starts compiling the guests of `pending`, each guest once, in the
    /// order the config names them; `None` when there is nothing to do.
    pub(super) fn start(sandbox: Arc<Sandbox>, pending: Vec<ServiceSpec>) -> Option<Compiling> {
        if pending.is_empty() {
            return None;
        }
        let mut groups: Vec<(GuestSource, Vec<ServiceSpec>)> = Vec::new();
        let mut index: HashMap<GuestSource, usize> = HashMap::new();
        for spec in pending {
            let i = *index.entry(spec.guest.clone()).or_insert_with(|| {
                groups.push((spec.guest.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[i].1.push(spec);
        }
        let (tx, ready) = mpsc::unbounded_channel();
        let spawned = std::thread::Builder::new()
            .name("wasinetd-compile".into())
            .spawn(move || {
                for (_, specs) in groups {
                    let prepared = prepare(&sandbox, specs, &Guests::default());
                    // Gone: a reload compiled everything itself.
                    if tx.send(prepared).is_err() {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start compiling: {e}");
            return None;
        }
        Some(Compiling { ready })
    }

    /// The next guest's services, once compiled; `None` when all are.
    pub(super) async fn next(&mut self) -> Option<Prepared> {
        self.ready.recv().await
    }
}

/// Starts the services of a guest just compiled, beside those serving.
pub(super) fn admit(daemon: &mut Daemon, prepared: Prepared) {
    let mut not_listening = daemon.roster.borrow().not_listening.clone();
    for f in &prepared.failed {
        tracing::error!("{f}");
        not_listening.push(f.spec.name.clone());
    }
    let done: Vec<String> = (prepared.services.iter().map(|s| s.name().to_owned()))
        .chain(prepared.failed.iter().map(|f| f.spec.name.clone()))
        .collect();
    daemon.compiling.retain(|n| !done.contains(n));
    let added: Vec<Arc<Service>> = prepared.services.into_iter().map(Arc::new).collect();
    let next: Vec<Arc<Service>> = daemon.services.iter().chain(&added).cloned().collect();
    let is_added = |name: &str| added.iter().any(|s| s.name() == name);
    let plan = match daemon
        .listeners
        .plan(&next, daemon.passed.as_ref(), is_added)
    {
        Ok(plan) => plan,
        Err(e) => {
            // Only a service serving already can fail the plan, and none
            // binds anything new here: said, and left as it was.
            tracing::error!("cannot start the services of a compiled guest: {e:#}");
            daemon.publish(not_listening);
            return;
        }
    };
    not_listening.extend(plan.not_listening.iter().cloned());
    let changes = daemon.listeners.commit(plan, &daemon.shared);
    for (service, addr) in &changes.opened {
        crate::logging::readiness(&format!("listening service={service} addr={addr}"));
    }
    for (guest, entry) in prepared.guests.iter() {
        daemon.guests.insert(guest.clone(), entry.clone());
    }
    daemon.services = next
        .into_iter()
        .filter(|s| !not_listening.iter().any(|n| n == s.name()))
        .collect();
    daemon.publish(not_listening);
}
