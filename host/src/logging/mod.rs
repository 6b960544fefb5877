//! The daemon's log: set-up, and the one line each connection leaves.
//!
//! Which fields a connection's line carries follows xinetd's
//! `log_on_success` / `log_on_failure` flags. A guest stopped by a limit or
//! a trap is always logged, as a warning, whatever the flags say: that is
//! the sandbox doing its job, and an operator wants to see it.
//!
//! A service's lines (connections, refusals, its guests' stderr) go where
//! its `log_type` says: syslog or a file ([`sink`]), else stderr with the
//! daemon's own messages. `--log-format json` makes every line one JSON
//! object ([`json`]); the readiness lines (`listening service=...`) are
//! printed by `server` as plain text in both formats.
//!
//! Text lines are escaped ([`escape`]): nothing from outside can forge or
//! split one. A guest's stderr is rate-limited per service and for the
//! daemon ([`rate`]), and stderr is written by a thread of its own
//! ([`writer`]): logging never makes a connection wait.
//!
//! # Layout
//! - [`sink`]: `log_type` destinations: a file with limits, syslog
//! - [`json`]: the JSON form of a line, and of the daemon's own messages
//! - [`escape`]: control characters out of text lines
//! - [`rate`]: the budget of guests' stderr lines per service and daemon
//! - [`writer`]: stderr through a bounded queue and a thread
//! - `line`: one line about a service, its text and JSON forms
//! - `connection`: a connection's end, refusal or loss; `cps` pauses
//! - `guest`: guests' stderr lines within their budgets
//! - `notices`: a service's lines that are not a connection's end: a
//!   sensor's touch, a cut or unsent UDP reply, dropped datagrams
//! - `time`: timestamps for files, JSON and syslog

mod connection;
mod escape;
mod guest;
mod json;
mod line;
mod notices;
mod rate;
mod refusals;
pub(crate) mod sink;
pub(crate) mod time;
mod writer;

pub use connection::{
    connection_done, connection_lost, connection_refused, cps_reopened, cps_tripped,
};
pub use guest::guest_stderr;
pub use line::Traffic;
pub use notices::{
    GuestReport, connect_denied, guard_refused, reply_not_sent, reply_truncated, sensor_tripped,
};
pub use refusals::{LOG_EVERY, RefusalLog};

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `LEVEL message key=value...`, for people.
    Text,
    /// One JSON object per line, with structured fields.
    Json,
}

/// The format chosen at [`init`]; text until then.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();
/// The `WASINETD_LOG` filter, also applied to lines that bypass tracing.
static FILTER: OnceLock<Targets> = OnceLock::new();

/// Target of connection, refusal and `cps` lines.
const CONN: &str = "wasinetd::conn";
/// Target of guest stderr lines.
const GUEST: &str = "wasinetd::guest";

/// Installs the stderr logger in `format`. `WASINETD_LOG` takes tracing's
/// target list syntax (`info`, `warn,wasinetd::guest=off`, ...); without
/// it, lines at `default` and above are written (the daemon: `info`).
pub fn init(format: LogFormat, default: Level) {
    let asked = std::env::var("WASINETD_LOG").ok();
    let mut filter = asked
        .as_deref()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default));
    // wasmtime-wasi opens an `info` span around every preview 1 call: it
    // would prefix a guest's stderr lines (`fd_write{fd=Fd(2) ...}:`) and
    // cost a formatted span per host call. Only its warnings, unless the
    // filter names it.
    if !asked.is_some_and(|s| s.contains("wasmtime_wasi")) {
        filter = filter.with_target("wasmtime_wasi", Level::WARN);
    }
    // A second init (in tests) keeps the first subscriber; nothing to report.
    let _ = FORMAT.set(format);
    let _ = FILTER.set(filter.clone());
    writer::start();
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer::Stderr)
                    .fmt_fields(escape::Fields)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
        LogFormat::Json => registry.with(json::Layer).try_init(),
    };
}

/// The format chosen at start-up.
pub fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or(LogFormat::Text)
}

/// Writes out the log lines still queued; call before the process exits.
pub fn finish() {
    writer::finish();
}

/// A readiness line (`listening service=NAME addr=IP:PORT`): plain text in
/// every format, in order with the log lines around it, never dropped.
pub fn readiness(text: &str) {
    writer::line_waiting(format!("{text}\n").into_bytes());
}

/// Waits until every line logged so far is written out (the readiness
/// lines before systemd hears `READY=1`).
pub fn flush() {
    writer::flush();
}

/// Logs a config warning (`FILE:LINE: message`) the first time this
/// process meets it: a reload of the same files does not repeat it.
pub fn config_warning(warning: &crate::config::ConfigError) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    /// Enough for any config; past it, warnings may be said again.
    const MAX_SEEN: usize = 10_000;
    let line = format!(
        "{}:{}: {}",
        warning.file.display(),
        warning.line,
        warning.message
    );
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    if seen.len() >= MAX_SEEN {
        seen.clear();
    }
    if seen.insert(line.clone()) {
        tracing::warn!("{line}");
    }
}

/// Target of the state dump's lines (SIGUSR1).
const DUMP: &str = "wasinetd::dump";

/// A dump line, whose fields are only known at run time: `dump: k=v ...`
/// in text, and in JSON `"message":"dump"` with each field a key of its
/// own (a number stays a number).
pub fn dump_line(fields: &[(String, Value)]) {
    if !enabled(DUMP, Level::INFO) {
        return;
    }
    match format() {
        LogFormat::Text => {
            let mut text = "dump:".to_owned();
            for (key, value) in fields {
                match value {
                    Value::String(v) => write!(text, " {key}={v}"),
                    v => write!(text, " {key}={v}"),
                }
                .unwrap_or_default();
            }
            tracing::info!(target: DUMP, "{text}");
        }
        LogFormat::Json => {
            let mut map = json::head(Level::INFO, DUMP);
            map.insert("message".into(), "dump".into());
            for (key, value) in fields {
                map.insert(key.clone(), value.clone());
            }
            json::write_stderr(&map);
        }
    }
}

/// Prints the daemon's fatal error, once, in the log's format.
pub fn fatal(error: &anyhow::Error) {
    finish();
    match format() {
        LogFormat::Text => eprintln!("wasinetd: error: {error:#}"),
        LogFormat::Json => {
            let mut map = json::head(Level::ERROR, "wasinetd");
            map.insert("message".into(), format!("{error:#}").into());
            json::write_stderr(&map);
        }
    }
}

fn enabled(target: &str, level: Level) -> bool {
    FILTER.get().is_none_or(|f| f.would_enable(target, &level))
}
