//! The state dump (SIGUSR1), as xinetd's: every service with its
//! listeners and counters, every connection in flight with its age and
//! peer, to the log, one `dump:` line each (in JSON, each with its fields
//! as keys), between a header and `dump: end`.
//!
//! Services are grouped by tenant: those outside every tenant first (their
//! lines as they were before tenants), then per tenant a `dump: tenant=`
//! line with its totals, followed by its services' lines, which name it.

use std::sync::Arc;

use serde_json::Value;

use super::Daemon;
use crate::conn::service::Service;
use crate::metrics::TenantTotals;

/// Logs the daemon's state; `state` is `serving`, `draining` (the drain
/// delay: not ready, still accepting) or `stopping` (no longer accepting).
pub(super) fn dump(daemon: &Daemon, state: &str) {
    let roster = daemon.roster.borrow().clone();
    let conns = daemon.shared.registry.list();
    let config = &daemon.config;
    let mut header = vec![
        field("pid", std::process::id()),
        field("state", state),
        field(
            "uptime_s",
            (daemon.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        ),
        field("reloads_ok", config.reloads_ok),
        field("reloads_failed", config.reloads_failed),
    ];
    if let Some(last) = &config.last_reload {
        header.push(field(
            "last_reload",
            if last.error.is_some() { "failed" } else { "ok" },
        ));
    }
    header.extend([
        field("config", config.digest.as_str()),
        field("services", roster.services().len()),
        field("listeners", roster.listeners.len()),
        field("in_flight", conns.len()),
    ]);
    crate::logging::dump_line(&header);
    let grouped = roster.by_tenant();
    for (service, _) in &grouped.untenanted {
        service_line(&roster.listeners, service);
    }
    for (tenant, services) in &grouped.tenants {
        crate::logging::dump_line(&tenant_line(&tenant.totals()));
        for (service, _) in services {
            service_line(&roster.listeners, service);
        }
    }
    for name in &roster.not_listening {
        crate::logging::dump_line(&[
            field("service", name.as_str()),
            field("state", "not_listening"),
        ]);
    }
    for name in &roster.compiling {
        crate::logging::dump_line(&[field("service", name.as_str()), field("state", "compiling")]);
    }
    for (conn, entry) in &conns {
        let age = entry.since.elapsed().as_secs_f64();
        crate::logging::dump_line(&[
            field("conn", *conn),
            field("service", &*entry.service),
            field("peer", entry.peer()),
            field("age_s", (age * 1000.0).round() / 1000.0),
        ]);
    }
    tracing::info!(target: "wasinetd::dump", "dump: end");
}

/// A service's line: its listeners (of `listeners`), its tenant if any,
/// and its non-zero counts.
fn service_line(listeners: &[(Arc<Service>, String)], service: &Arc<Service>) {
    let addrs: Vec<&str> = (listeners.iter())
        .filter(|(s, _)| Arc::ptr_eq(s, service))
        .map(|(_, a)| a.as_str())
        .collect();
    let m = service.metrics().snapshot();
    let mut line = vec![field("service", service.name())];
    let tenant = service.tenant().name();
    if !tenant.is_empty() {
        line.push(field("tenant", tenant));
    }
    line.extend([
        field("guest", service.spec.guest.to_string()),
        field("listening", addrs.join(",")),
        field("active", service.active()),
        field("accepted", m.accepted),
        field("finished", m.finished),
    ]);
    for (reason, n) in m.refused.iter().filter(|(_, n)| *n > 0) {
        line.push(field(&format!("refused_{}", key(reason)), *n));
    }
    // `finished_exit=3`: three guests exited, whatever their status.
    for (kind, n) in m.outcomes.iter().filter(|(_, n)| *n > 0) {
        line.push(field(&format!("finished_{kind}"), *n));
    }
    crate::logging::dump_line(&line);
}

/// A tenant's line: its guests, memory and CPU, each limit beside what it
/// bounds (left out when unset), and its refusals for them.
fn tenant_line(t: &TenantTotals) -> Vec<(String, Value)> {
    let mut line = vec![field("tenant", &*t.name), field("active", t.active)];
    if let Some(n) = t.instances {
        line.push(field("instances", n));
    }
    line.push(field("memory", t.memory));
    if let Some(n) = t.memory_limit {
        line.push(field("memory_limit", n));
    }
    line.extend([
        field("cpu_s", (t.cpu.as_secs_f64() * 1000.0).round() / 1000.0),
        field("cpu_share", t.cpu_share),
        field("accepted", t.accepted),
    ]);
    for (reason, n) in t.refused {
        line.push(field(&format!("refused_{}", key(reason)), n));
    }
    line
}

/// A refusal reason as part of a key: `tenant instances` is
/// `tenant_instances`, so a text line stays `key=value` pairs.
fn key(reason: &str) -> String {
    reason.replace(' ', "_")
}

/// One field of a dump line.
fn field(key: &str, value: impl Into<Value>) -> (String, Value) {
    (key.to_owned(), value.into())
}
