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
//! - `notices`: a service's lines that are not a connection's end: a
//!   sensor's touch, a cut or unsent UDP reply, dropped datagrams
//! - `time`: timestamps for files, JSON and syslog

mod escape;
mod json;
mod notices;
mod rate;
mod refusals;
pub(crate) mod sink;
pub(crate) mod time;
mod writer;

pub use notices::{
    GuestReport, connect_denied, guard_refused, reply_not_sent, reply_truncated, sensor_tripped,
};
pub use refusals::{LOG_EVERY, RefusalLog};

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
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
use crate::admission::Refusal;
use crate::config::{Cps, LogFlags, ServiceSpec};
use crate::sandbox::Outcome;

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

/// Bytes that crossed one connection's socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Read from the client (by the guest, or drained after it).
    pub bytes_in: u64,
    /// Written to the client by the guest.
    pub bytes_out: u64,
}

/// One line about a service, before it is rendered as text or JSON.
#[derive(Debug, Default)]
struct Line<'a> {
    warn: bool,
    target: &'static str,
    /// The start of the text form: `exit=0`, `refused: address`, ...
    head: String,
    service: &'a str,
    conn: Option<u64>,
    /// The daemon's process id (flag PID): guests run inside it.
    pid: Option<u32>,
    peer: Option<SocketAddr>,
    duration: Option<Duration>,
    traffic: Option<Traffic>,
    /// JSON only: how it ended (`exit`, `trap`, ..., `refused`, `lost`).
    outcome: Option<&'static str>,
    exit: Option<i32>,
    reason: Option<&'a str>,
}

impl Line<'_> {
    /// The text form, without timestamp or level. A line about no
    /// connection names its service in its head.
    fn text(&self) -> String {
        let mut s = self.head.clone();
        if let Some(conn) = self.conn {
            let _ = write!(s, " service={} conn={conn}", self.service);
        }
        if let Some(peer) = self.peer {
            let _ = write!(s, " peer={peer}");
        }
        if let Some(d) = self.duration {
            let _ = write!(s, " duration={d:.3?}");
        }
        if let Some(t) = self.traffic {
            let _ = write!(s, " in={} out={}", t.bytes_in, t.bytes_out);
        }
        // Last: lines matched by their start keep their shape without it.
        if let Some(pid) = self.pid {
            let _ = write!(s, " pid={pid}");
        }
        s
    }

    /// The JSON form's fields, without timestamp, level or target.
    fn fields(&self, map: &mut Map<String, Value>) {
        map.insert("message".into(), self.head.clone().into());
        map.insert("service".into(), self.service.into());
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                map.insert(k.into(), v);
            }
        };
        put("conn", self.conn.map(Value::from));
        put("pid", self.pid.map(Value::from));
        put("peer", self.peer.map(|p| p.to_string().into()));
        put(
            "duration_ms",
            // In whole microseconds: `0.684`, not `0.6839529999999999`.
            self.duration
                .map(|d| (d.as_micros() as f64 / 1000.0).into()),
        );
        put("bytes_in", self.traffic.map(|t| t.bytes_in.into()));
        put("bytes_out", self.traffic.map(|t| t.bytes_out.into()));
        put("outcome", self.outcome.map(Value::from));
        put("exit", self.exit.map(Value::from));
        put("reason", self.reason.map(Value::from));
    }

    /// Writes the line (target [`CONN`] or [`GUEST`]) where its service's
    /// lines go.
    fn emit(&self) {
        let level = if self.warn { Level::WARN } else { Level::INFO };
        if !enabled(self.target, level) {
            return;
        }
        if let Some(route) = sink::route(self.service) {
            route.write_rendered(&self.render(level), level);
            return;
        }
        match format() {
            LogFormat::Text => {
                // Under the target it was filtered by (a guest's stderr
                // notices are `wasinetd::guest` lines).
                let text = self.text();
                match (self.target == GUEST, self.warn) {
                    (false, true) => tracing::warn!(target: CONN, "{text}"),
                    (false, false) => tracing::info!(target: CONN, "{text}"),
                    (true, true) => tracing::warn!(target: GUEST, "{text}"),
                    (true, false) => tracing::info!(target: GUEST, "{text}"),
                }
            }
            LogFormat::Json => json::write_stderr(&self.json(level)),
        }
    }

    /// The whole JSON object.
    fn json(&self, level: Level) -> Map<String, Value> {
        let mut map = json::head(level, self.target);
        self.fields(&mut map);
        map
    }

    /// The line for a file or syslog: JSON, or the text form.
    fn render(&self, level: Level) -> String {
        match format() {
            LogFormat::Text => self.text(),
            LogFormat::Json => Value::Object(self.json(level)).to_string(),
        }
    }
}

/// The fields `flags` choose, on a line for connection `conn`.
fn with_flags<'a>(
    spec: &'a ServiceSpec,
    conn: u64,
    peer: Option<SocketAddr>,
    duration: Option<Duration>,
    traffic: Option<Traffic>,
    flags: LogFlags,
) -> Line<'a> {
    // A guest has no process id of its own: the connection id stands for
    // it, and is always there, since the guest's stderr lines carry it too.
    Line {
        target: CONN,
        service: &spec.name,
        conn: Some(conn),
        pid: flags.pid.then(std::process::id),
        // A dual-stack listener's IPv4 client (`[::ffff:a.b.c.d]`) is
        // logged as `a.b.c.d`, as xinetd logs it and REMOTE_ADDR has it.
        peer: peer
            .filter(|_| flags.host)
            .map(|p| SocketAddr::new(p.ip().to_canonical(), p.port())),
        duration: duration.filter(|_| flags.duration),
        traffic: traffic.filter(|_| flags.traffic),
        ..Line::default()
    }
}

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
    line.head = format!("refused: {}", reason.as_str());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_choose_the_fields() {
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let line = |head: &str, duration, traffic, pid| Line {
            head: head.into(),
            service: "hello",
            conn: Some(7),
            pid,
            peer: Some(peer),
            duration,
            traffic,
            ..Line::default()
        };
        let d = Some(Duration::from_micros(1500));
        let t = Some(Traffic {
            bytes_in: 6,
            bytes_out: 12,
        });
        assert_eq!(
            line("exit=0", d, t, Some(42)).text(),
            "exit=0 service=hello conn=7 peer=127.0.0.1:4000 duration=1.500ms in=6 out=12 pid=42"
        );
        assert_eq!(
            line("refused: instances", None, None, None).text(),
            "refused: instances service=hello conn=7 peer=127.0.0.1:4000"
        );
        let mut map = Map::new();
        line("exit=0", d, t, None).fields(&mut map);
        assert_eq!(map["duration_ms"], 1.5);
        assert_eq!(map["bytes_out"], 12);
        assert_eq!(map["peer"], "127.0.0.1:4000");
    }
}
