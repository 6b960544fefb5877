//! The daemon's log: set-up, and the one line each connection leaves.
//!
//! Which fields a connection's line carries follows xinetd's
//! `log_on_success` / `log_on_failure` flags. A guest stopped by a limit or
//! a trap is always logged, as a warning, whatever the flags say: that is
//! the sandbox doing its job, and an operator wants to see it.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

use crate::config::{Cps, LogFlags, ServiceSpec};
use crate::sandbox::Outcome;
use crate::service::Refusal;

/// Installs the stderr logger. `WASINETD_LOG` takes tracing's target list
/// syntax (`info`, `warn,wasinetd::guest=off`, ...); the default is `info`.
pub fn init() {
    let filter = std::env::var("WASINETD_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (in tests) keeps the first subscriber; nothing to report.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
}

/// Logs a finished connection: `exit=0 service=NAME conn=ID peer=... duration=...`.
pub fn connection_done(
    spec: &ServiceSpec,
    conn: u64,
    peer: SocketAddr,
    duration: Duration,
    outcome: &Outcome,
) {
    if outcome.is_abnormal() {
        let all = LogFlags {
            host: true,
            pid: true,
            duration: true,
            exit: true,
            attempt: true,
        };
        let line = line(
            &outcome.to_string(),
            &spec.name,
            conn,
            peer,
            Some(duration),
            all,
        );
        tracing::warn!(target: "wasinetd::conn", "{line}");
    } else if spec.log_on_success != LogFlags::default() {
        let flags = spec.log_on_success;
        let head = if flags.exit {
            outcome.to_string()
        } else {
            "done".to_owned()
        };
        let line = line(&head, &spec.name, conn, peer, Some(duration), flags);
        tracing::info!(target: "wasinetd::conn", "{line}");
    }
}

/// Logs a connection closed without running the guest: `refused: REASON ...`.
pub fn connection_refused(spec: &ServiceSpec, conn: u64, peer: SocketAddr, reason: Refusal) {
    let flags = spec.log_on_failure;
    if flags == LogFlags::default() {
        return;
    }
    let head = format!("refused: {}", reason.as_str());
    let line = line(&head, &spec.name, conn, peer, None, flags);
    tracing::warn!(target: "wasinetd::conn", "{line}");
}

/// Logs an admitted connection that ended before its guest started,
/// because the client did not take the banner.
pub fn connection_lost(spec: &ServiceSpec, conn: u64, peer: SocketAddr, error: &std::io::Error) {
    let head = format!("lost before the guest: the banner was not taken ({error})");
    let flags = LogFlags {
        host: spec.log_on_failure.host,
        ..LogFlags::default()
    };
    let line = line(&head, &spec.name, conn, peer, None, flags);
    tracing::info!(target: "wasinetd::conn", "{line}");
}

/// Logs a `cps` trip: the service refuses new connections for a while.
pub fn cps_tripped(spec: &ServiceSpec, cps: Cps) {
    tracing::warn!(
        target: "wasinetd::conn",
        "cps: more than {} new connections in one second; service={} refuses new connections for {:?}, then resumes by itself",
        cps.rate,
        spec.name,
        cps.pause
    );
}

/// Logs the end of a `cps` pause, seen at the first connection after it.
pub fn cps_reopened(spec: &ServiceSpec) {
    tracing::info!(target: "wasinetd::conn", "cps: pause over; service={} accepts new connections again", spec.name);
}

fn line(
    head: &str,
    service: &str,
    conn: u64,
    peer: SocketAddr,
    duration: Option<Duration>,
    flags: LogFlags,
) -> String {
    // A guest has no process id: the connection id stands for it, and is
    // always there, since the guest's stderr lines carry it too.
    let mut s = format!("{head} service={service} conn={conn}");
    if flags.host {
        let _ = write!(s, " peer={peer}");
    }
    if let Some(d) = duration.filter(|_| flags.duration) {
        let _ = write!(s, " duration={d:.3?}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_choose_the_fields() {
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let all = LogFlags {
            host: true,
            pid: true,
            duration: true,
            exit: true,
            attempt: true,
        };
        let d = Some(Duration::from_micros(1500));
        assert_eq!(
            line("exit=0", "hello", 7, peer, d, all),
            "exit=0 service=hello conn=7 peer=127.0.0.1:4000 duration=1.500ms"
        );
        let host_only = LogFlags {
            host: true,
            ..LogFlags::default()
        };
        assert_eq!(
            line("refused: instances", "hello", 7, peer, None, host_only),
            "refused: instances service=hello conn=7 peer=127.0.0.1:4000"
        );
    }
}
