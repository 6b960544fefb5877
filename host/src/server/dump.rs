//! The state dump (SIGUSR1), as xinetd's: every service with its
//! listeners and counters, every connection in flight with its age and
//! peer, to the log, one `dump:` line each (in JSON, each with its fields
//! as keys), between a header and `dump: end`.

use serde_json::Value;

use super::Daemon;

/// Logs the daemon's state.
pub(super) fn dump(daemon: &Daemon, stopping: bool) {
    let roster = daemon.roster.borrow().clone();
    let conns = daemon.shared.registry.list();
    let config = &daemon.config;
    let mut header = vec![
        field("pid", std::process::id()),
        field("state", if stopping { "stopping" } else { "serving" }),
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
    for (service, _) in roster.services() {
        let addrs: Vec<&str> = (roster.listeners.iter())
            .filter(|(s, _)| std::sync::Arc::ptr_eq(s, &service))
            .map(|(_, a)| a.as_str())
            .collect();
        let m = service.metrics().snapshot();
        let mut line = vec![
            field("service", service.name()),
            field("guest", service.spec.guest.to_string()),
            field("listening", addrs.join(",")),
            field("active", service.active()),
            field("accepted", m.accepted),
            field("finished", m.finished),
        ];
        for (reason, n) in m.refused.iter().filter(|(_, n)| *n > 0) {
            line.push(field(&format!("refused_{reason}"), *n));
        }
        // `finished_exit=3`: three guests exited, whatever their status.
        for (kind, n) in m.outcomes.iter().filter(|(_, n)| *n > 0) {
            line.push(field(&format!("finished_{kind}"), *n));
        }
        crate::logging::dump_line(&line);
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

/// One field of a dump line.
fn field(key: &str, value: impl Into<Value>) -> (String, Value) {
    (key.to_owned(), value.into())
}
