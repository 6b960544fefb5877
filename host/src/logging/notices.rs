//! A service's lines that are not one connection's end: a sensor's touch,
//! a UDP reply cut short or not sent, the per-second sum of dropped
//! datagrams, a guest's network use outside `allow_connect`. Like every line about a service they go where its
//! `log_type` says ([`Line::emit`]), never straight to stderr.

use std::net::SocketAddr;

use super::CONN;
use super::line::{Line, with_flags};
use crate::admission::Refusal;
use crate::admission::deny::Denial;
use crate::config::{DenyTime, LogFlags, ServiceSpec};

/// Logs a connection to a `flags = SENSOR` service: its peer's address is
/// denied on every service for `time` (or only logged). Always logged, with
/// the peer: the address is the point.
pub fn sensor_tripped(
    spec: &ServiceSpec,
    conn: u64,
    peer: SocketAddr,
    time: DenyTime,
    denial: Denial,
) {
    let ip = peer.ip().to_canonical();
    let what = match (denial, time) {
        (Denial::LoggedOnly, _) => "logged only (deny_time = NEVER)".to_owned(),
        (Denial::Full, _) => format!(
            "not denied: the deny list is full ({} addresses)",
            crate::admission::deny::MAX_DENIED
        ),
        (Denial::Listed, DenyTime::Forever) => {
            "denied on every service until the daemon stops".to_owned()
        }
        (Denial::Listed, time) => format!("denied on every service for {time}"),
    };
    let flags = LogFlags {
        host: true,
        ..spec.log_on_failure
    };
    let mut line = with_flags(spec, conn, Some(peer), None, None, flags);
    line.warn = true;
    line.head = format!("sensor: {ip} {what}");
    line.outcome = Some("refused");
    line.reason = Some(Refusal::Sensor.as_str());
    line.emit();
}

/// Logs what the sandbox refused a guest on the way: opens past its share
/// of the guests' descriptors, writes past a preopen's quota, symlinks.
pub fn guard_refused(spec: &ServiceSpec, conn: u64, counts: crate::sandbox::GuardCounts) {
    let mut what = Vec::new();
    if counts.descriptors > 0 {
        what.push(format!(
            "{} open(s) past its share of the guests' descriptors",
            counts.descriptors
        ));
    }
    if counts.quota > 0 {
        what.push(format!(
            "{} change(s) past its `preopen_quota`",
            counts.quota
        ));
    }
    if counts.symlinks > 0 {
        what.push(format!("{} symlink(s) refused", counts.symlinks));
    }
    if what.is_empty() {
        return;
    }
    Line {
        warn: true,
        target: CONN,
        head: format!("refused the guest: {}", what.join(", ")),
        service: &spec.name,
        conn: Some(conn),
        ..Line::default()
    }
    .emit();
}

/// Logs a UDP reply cut at `max` bytes, the largest UDP payload.
pub fn reply_truncated(spec: &ServiceSpec, conn: u64, max: usize) {
    Line {
        warn: true,
        target: CONN,
        head: format!("reply truncated to {max} bytes (the largest UDP payload)"),
        service: &spec.name,
        conn: Some(conn),
        ..Line::default()
    }
    .emit();
}

/// Logs a UDP reply the kernel would not send.
pub fn reply_not_sent(spec: &ServiceSpec, conn: u64, error: &std::io::Error) {
    Line {
        warn: true,
        target: CONN,
        head: format!("reply not sent: {error}"),
        service: &spec.name,
        conn: Some(conn),
        ..Line::default()
    }
    .emit();
}

/// Logs that a guest's connection `conn` of `service` tried `what` (`a TCP
/// connect to`, ...) `addr`, which `allow_connect` does not allow: once
/// per connection, so a guest cannot flood the log.
pub fn connect_denied(service: &str, conn: u64, what: &str, addr: SocketAddr) {
    Line {
        warn: true,
        target: CONN,
        head: format!("denied: {what} {addr} (not in allow_connect; logged once per connection)"),
        service,
        conn: Some(conn),
        ..Line::default()
    }
    .emit();
}

/// A guest run's remarks ([`sandbox::Report`]) as this log's lines, under
/// its service and connection: stderr lines (`wasinetd::guest`), and a
/// refused connect.
pub struct GuestReport {
    service: std::sync::Arc<str>,
    conn: u64,
}

impl GuestReport {
    pub fn new(service: std::sync::Arc<str>, conn: u64) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self { service, conn })
    }
}

impl crate::sandbox::Report for GuestReport {
    fn stderr_line(&self, text: &str) {
        super::guest_stderr(&self.service, self.conn, text, false);
    }

    fn stderr_dropped(&self, logged: u32) {
        let text = format!("more than {logged} lines; the rest is dropped");
        super::guest_stderr(&self.service, self.conn, &text, true);
    }

    fn egress_denied(&self, what: &'static str, addr: SocketAddr) {
        connect_denied(&self.service, self.conn, what, addr);
    }
}
