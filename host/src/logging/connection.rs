//! A connection's lines: its end (`exit=0 ...`, a limit, a trap), its
//! refusal, a client lost before its guest started, and a service's `cps`
//! pause and its end.

use std::net::SocketAddr;
use std::time::Duration;

use super::CONN;
use super::line::{Line, Traffic, with_flags};
use crate::admission::Refusal;
use crate::config::{Cps, LogFlags, ServiceSpec};
use crate::sandbox::Outcome;

/// Logs a finished connection: `exit=0 service=NAME conn=ID peer=... duration=...`.
pub fn connection_done(
    spec: &ServiceSpec,
    conn: u64,
    peer: impl Into<Option<SocketAddr>>,
    duration: Duration,
    outcome: &Outcome,
    traffic: Traffic,
) {
    let abnormal = outcome.is_abnormal();
    let flags = if abnormal {
        LogFlags {
            host: true,
            pid: true,
            duration: true,
            exit: true,
            attempt: true,
            traffic: true,
        }
    } else if spec.log_on_success != LogFlags::default() {
        spec.log_on_success
    } else {
        return;
    };
    let mut line = with_flags(
        spec,
        conn,
        peer.into(),
        Some(duration),
        Some(traffic),
        flags,
    );
    line.warn = abnormal;
    line.head = if flags.exit {
        outcome.to_string()
    } else {
        "done".to_owned()
    };
    line.outcome = Some(outcome.kind().label());
    if let (Outcome::Exited(code), true) = (outcome, flags.exit) {
        line.exit = Some(*code);
    }
    line.emit();
}

/// Logs a connection closed without running the guest: `refused: REASON ...`.
pub fn connection_refused(
    spec: &ServiceSpec,
    conn: u64,
    peer: impl Into<Option<SocketAddr>>,
    reason: Refusal,
) {
    let flags = spec.log_on_failure;
    if flags == LogFlags::default() {
        return;
    }
    let mut line = with_flags(spec, conn, peer.into(), None, None, flags);
    line.warn = true;
    line.head = match reason.detail() {
        Some(detail) => format!("refused: {} ({detail})", reason.as_str()),
        None => format!("refused: {}", reason.as_str()),
    };
    line.outcome = Some("refused");
    line.reason = Some(reason.as_str());
    line.emit();
}

/// Logs an admitted connection that ended before its guest started,
/// because the client did not take the banner.
pub fn connection_lost(
    spec: &ServiceSpec,
    conn: u64,
    peer: impl Into<Option<SocketAddr>>,
    error: &std::io::Error,
) {
    let flags = LogFlags {
        host: spec.log_on_failure.host,
        ..LogFlags::default()
    };
    let mut line = with_flags(spec, conn, peer.into(), None, None, flags);
    line.head = format!("lost before the guest: the banner was not taken ({error})");
    line.outcome = Some("lost");
    line.reason = Some("banner");
    line.emit();
}

/// Logs a `cps` trip: the service refuses new connections for a while.
pub fn cps_tripped(spec: &ServiceSpec, cps: Cps) {
    Line {
        warn: true,
        target: CONN,
        head: format!(
            "cps: more than {} new connections in one second; service={} refuses new connections for {:?}, then resumes by itself",
            cps.rate, spec.name, cps.pause
        ),
        service: &spec.name,
        reason: Some("cps"),
        ..Line::default()
    }
    .emit();
}

/// Logs the end of a `cps` pause, seen at the first connection after it.
pub fn cps_reopened(spec: &ServiceSpec) {
    Line {
        target: CONN,
        head: format!(
            "cps: pause over; service={} accepts new connections again",
            spec.name
        ),
        service: &spec.name,
        ..Line::default()
    }
    .emit();
}
