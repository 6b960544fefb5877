//! One line about a service ([`Line`]), and its two forms: the text form
//! (`exit=0 service=NAME conn=ID peer=...`) and the JSON object, written
//! where the service's lines go. Every kind of line (a connection's end, a
//! refusal, a guest's stderr, a notice) is a `Line` with its own head.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::Level;

use super::{CONN, GUEST, LogFormat, enabled, format, json, sink};
use crate::config::{LogFlags, ServiceSpec};

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
pub(super) struct Line<'a> {
    pub(super) warn: bool,
    pub(super) target: &'static str,
    /// The start of the text form: `exit=0`, `refused: address`, ...
    pub(super) head: String,
    pub(super) service: &'a str,
    pub(super) conn: Option<u64>,
    /// The daemon's process id (flag PID): guests run inside it.
    pub(super) pid: Option<u32>,
    pub(super) peer: Option<SocketAddr>,
    pub(super) duration: Option<Duration>,
    pub(super) traffic: Option<Traffic>,
    /// JSON only: how it ended (`exit`, `trap`, ..., `refused`, `lost`).
    pub(super) outcome: Option<&'static str>,
    pub(super) exit: Option<i32>,
    pub(super) reason: Option<&'a str>,
}

impl Line<'_> {
    /// The text form, without timestamp or level. A line about no
    /// connection names its service in its head.
    pub(super) fn text(&self) -> String {
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
    pub(super) fn fields(&self, map: &mut Map<String, Value>) {
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
    pub(super) fn emit(&self) {
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
    pub(super) fn json(&self, level: Level) -> Map<String, Value> {
        let mut map = json::head(level, self.target);
        self.fields(&mut map);
        map
    }

    /// The line for a file or syslog: JSON, or the text form.
    pub(super) fn render(&self, level: Level) -> String {
        match format() {
            LogFormat::Text => self.text(),
            LogFormat::Json => Value::Object(self.json(level)).to_string(),
        }
    }
}

/// The fields `flags` choose, on a line for connection `conn`.
pub(super) fn with_flags<'a>(
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
