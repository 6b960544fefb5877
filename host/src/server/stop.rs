//! How the daemon stops, once asked to: first the drain delay
//! (`--drain-delay`, none by default), in which it says it is not ready
//! (`/readyz` 503 `draining`, systemd's `STOPPING=1`) but goes on accepting
//! and serving, so that balancers and orchestrators, which only learn of
//! the stop through their next health check, take it out of rotation
//! before its listeners close; then the drain proper: it stops accepting
//! and lets running connections finish for `--shutdown-grace`, after which
//! their guests are ended.
//!
//! Each further stop request cuts the wait under way short, one step at a
//! time: during the delay it stops accepting at once, during the grace it
//! ends the running guests at once. Kubernetes and systemd send one
//! `SIGTERM` and then `SIGKILL`, so the steps only matter to a person
//! pressing Ctrl-C again, who gets the next step each time.
//!
//! The caller turns the daemon not ready before [`delay`] and flips the
//! accept loops' `stopping` between the two; this module owns the waits.

use std::time::Duration;

use tokio::sync::mpsc;

use super::{Daemon, Request, dump};

/// The drain delay: not ready, still serving, for `delay` or until another
/// stop request. Announces itself (log, `STOPPING=1`) only when there is a
/// delay; without one the daemon stops as it always did.
pub(super) async fn delay(
    daemon: &Daemon,
    delay: Duration,
    requests: &mut mpsc::Receiver<Request>,
) {
    if delay.is_zero() {
        return;
    }
    tracing::info!(
        "draining: not ready (/readyz 503), still accepting for {delay:?}, then stopping accepting"
    );
    daemon.notifier.draining(delay, &daemon.roster.borrow());
    let over = tokio::time::sleep(delay);
    tokio::pin!(over);
    let mut listening = true;
    loop {
        tokio::select! {
            _ = &mut over => {
                tracing::info!("drain delay of {delay:?} over");
                return;
            }
            request = requests.recv(), if listening => match request {
                Some(Request::Dump) => dump::dump(daemon, "draining"),
                Some(Request::Reload) => tracing::warn!(target: "wasinetd::server::reload", "reload ignored: the daemon is draining"),
                Some(Request::Upgrade) => tracing::warn!("upgrade ignored: the daemon is draining"),
                Some(Request::Stop) => {
                    tracing::warn!("another stop request; cutting the drain delay short, stopping accepting now");
                    return;
                }
                None => listening = false,
            },
        }
    }
}

/// The drain proper, once the accept loops were told to stop: waits for
/// them to close their listeners, then for the running connections for up
/// to `grace`, or until another stop request; then ends the guests still
/// running. `in_flight` closes when the last connection task is done.
pub(super) async fn drain(
    daemon: &mut Daemon,
    grace: Duration,
    mut requests: mpsc::Receiver<Request>,
    mut in_flight: mpsc::Receiver<()>,
) {
    let listeners = std::mem::take(&mut daemon.listeners);
    for task in listeners.into_tasks() {
        let _ = task.await;
    }
    tracing::info!("stopped accepting; waiting up to {grace:?} for running connections");
    // Only the connections' own senders keep the drain channel open now.
    let (unused, _) = mpsc::channel(1);
    drop(std::mem::replace(&mut daemon.shared.in_flight, unused));
    let over = tokio::time::sleep(grace);
    tokio::pin!(over);
    let mut listening = true;
    loop {
        tokio::select! {
            _ = in_flight.recv() => {
                tracing::info!("all connections finished; exiting");
                return;
            }
            _ = &mut over => {
                tracing::warn!("shutdown grace of {grace:?} over; ending running guests");
                daemon.sandbox.stop_all();
                return;
            }
            request = requests.recv(), if listening => match request {
                Some(Request::Dump) => dump::dump(daemon, "stopping"),
                Some(Request::Reload) => tracing::warn!(target: "wasinetd::server::reload", "reload ignored: the daemon is stopping"),
                Some(Request::Upgrade) => tracing::warn!("upgrade ignored: the daemon is stopping"),
                Some(Request::Stop) => {
                    tracing::warn!("another stop request; ending running guests");
                    daemon.sandbox.stop_all();
                    return;
                }
                None => listening = false,
            },
        }
    }
}
