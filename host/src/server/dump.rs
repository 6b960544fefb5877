//! The state dump (SIGUSR1), as xinetd's: every service with its
//! listeners and counters, every connection in flight with its age and
//! peer, to the log, one `dump:` line each, between a header and `dump:
//! end`.

use std::fmt::Write as _;

use super::Daemon;

/// Logs the daemon's state.
pub(super) fn dump(daemon: &Daemon, stopping: bool) {
    let roster = daemon.roster.borrow().clone();
    let conns = daemon.shared.registry.list();
    tracing::info!(
        "dump: pid={} state={} uptime={:.1}s reloads={} services={} listeners={} in_flight={}",
        std::process::id(),
        if stopping { "stopping" } else { "serving" },
        daemon.started.elapsed().as_secs_f64(),
        daemon.reloads,
        roster.services().len(),
        roster.listeners.len(),
        conns.len(),
    );
    for (service, _) in roster.services() {
        let addrs: Vec<&str> = (roster.listeners.iter())
            .filter(|(s, _)| std::sync::Arc::ptr_eq(s, &service))
            .map(|(_, a)| a.as_str())
            .collect();
        let m = service.metrics().snapshot();
        let mut line = format!(
            "dump: service={} guest={} listening={} active={} accepted={} finished={}",
            service.name(),
            service.spec.guest,
            addrs.join(","),
            service.active(),
            m.accepted,
            m.finished
        );
        for (reason, n) in m.refused.iter().filter(|(_, n)| *n > 0) {
            let _ = write!(line, " refused_{reason}={n}");
        }
        for (kind, n) in &m.outcomes {
            if *n > 0 {
                let _ = write!(line, " {kind}={n}");
            }
        }
        tracing::info!("{line}");
    }
    for name in &roster.not_listening {
        tracing::info!("dump: service={name} not listening");
    }
    for name in &roster.compiling {
        tracing::info!("dump: service={name} compiling");
    }
    for (conn, entry) in &conns {
        tracing::info!(
            "dump: conn={conn} service={} peer={} age={:.3}s",
            entry.service,
            entry.peer,
            entry.since.elapsed().as_secs_f64()
        );
    }
    tracing::info!("dump: end");
}
