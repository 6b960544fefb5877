//! A guest's stderr lines (target `wasinetd::guest`), within the budgets of
//! its service and of the daemon ([`super::rate`]), with one notice when
//! lines start being dropped.

use std::time::Instant;

use serde_json::Value;
use tracing::Level;

use super::line::Line;
use super::{GUEST, LogFormat, enabled, format, json, rate, sink};

/// Logs one line of a guest's stderr (`warn` for the notice that the rest
/// of its lines are dropped), within the service's and the daemon's
/// budget of stderr lines.
pub fn guest_stderr(service: &str, conn: u64, text: &str, warn: bool) {
    if !warn && !within_rate(service, text.len() as u64) {
        return;
    }
    let line = Line {
        warn,
        target: GUEST,
        head: "stderr".into(),
        service,
        conn: Some(conn),
        ..Line::default()
    };
    let level = if warn { Level::WARN } else { Level::INFO };
    if !enabled(GUEST, level) {
        return;
    }
    // The text form keeps the guest's words last, after a colon.
    let text_form = || format!("{}: {text}", line.text());
    let json_form = || {
        let mut map = line.json(level);
        map.insert("message".into(), text.into());
        map
    };
    match (sink::route(service), format()) {
        (Some(route), LogFormat::Text) => route.write_rendered(&text_form(), level),
        (Some(route), LogFormat::Json) => {
            route.write_rendered(&Value::Object(json_form()).to_string(), level)
        }
        (None, LogFormat::Text) if warn => {
            tracing::warn!(target: "wasinetd::guest", "{}", text_form())
        }
        (None, LogFormat::Text) => tracing::info!(target: "wasinetd::guest", "{}", text_form()),
        (None, LogFormat::Json) => json::write_stderr(&json_form()),
    }
}

/// Applies the stderr budgets to one line of `service`'s guests; logs the
/// notices they call for. False: drop the line.
fn within_rate(service: &str, bytes: u64) -> bool {
    use rate::Verdict::{Log, Suppress};
    let (own, daemon) = rate::stderr_line(service, bytes, Instant::now());
    let notice = |head: String| {
        Line {
            warn: true,
            target: GUEST,
            head,
            service,
            ..Line::default()
        }
        .emit()
    };
    let window = rate::WINDOW;
    match own {
        Suppress { first } => {
            if first {
                notice(format!(
                    "stderr: service={service} logged more than {} lines or {} bytes in {window:?}; \
                     its guests' lines are suppressed until the window ends",
                    rate::SERVICE_LINES,
                    rate::SERVICE_BYTES
                ));
            }
            return false;
        }
        Log {
            suppressed: Some((lines, bytes)),
        } => notice(format!(
            "stderr: suppressed {lines} lines ({bytes} bytes) of service={service} in the last {window:?}"
        )),
        Log { suppressed: None } => {}
    }
    match daemon {
        Suppress { first } => {
            if first {
                tracing::warn!(
                    target: "wasinetd::guest",
                    "stderr: all guests together logged more than {} lines or {} bytes in {window:?}; \
                     their lines are suppressed until the window ends",
                    rate::DAEMON_LINES,
                    rate::DAEMON_BYTES
                );
            }
            false
        }
        Log {
            suppressed: Some((lines, bytes)),
        } => {
            tracing::warn!(
                target: "wasinetd::guest",
                "stderr: suppressed {lines} lines ({bytes} bytes) of all guests in the last {window:?}"
            );
            true
        }
        Log { suppressed: None } => true,
    }
}
