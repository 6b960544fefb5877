//! The Prometheus text exposition (format 0.0.4) of the daemon and its
//! services, for `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use super::{ServiceMetrics, Snapshot};

/// One service as `/metrics` shows it: its name, its counters, and the
/// guests it runs now.
pub struct Row<'a> {
    pub name: &'a str,
    pub metrics: &'a ServiceMetrics,
    pub active: u32,
}

/// The Prometheus text exposition (format 0.0.4) of the daemon and every
/// service.
pub fn render(services: &[Row<'_>], daemon: &Daemon) -> String {
    let rows: Vec<(String, &ServiceMetrics, Snapshot)> = services
        .iter()
        .map(|s| (escape(s.name), s.metrics, s.metrics.snapshot()))
        .collect();
    // Each family is written whole (HELP, TYPE, then every service's
    // samples), as the format requires.
    let mut out = String::with_capacity(4096 + 2048 * rows.len());
    daemon.render(&mut out);
    header(
        &mut out,
        "wasinetd_connections_accepted_total",
        "counter",
        "Connections accepted, whether then refused or served.",
    );
    for (svc, _, s) in &rows {
        sample(
            &mut out,
            "wasinetd_connections_accepted_total",
            svc,
            "",
            s.accepted,
        );
    }
    header(
        &mut out,
        "wasinetd_connections_refused_total",
        "counter",
        "Connections closed without running the guest, by reason.",
    );
    for (svc, _, s) in &rows {
        for (reason, n) in &s.refused {
            let label = format!(",reason=\"{}\"", escape(reason));
            sample(
                &mut out,
                "wasinetd_connections_refused_total",
                svc,
                &label,
                *n,
            );
        }
    }
    header(
        &mut out,
        "wasinetd_connections_active",
        "gauge",
        "Guests running now.",
    );
    for ((svc, _, _), service) in rows.iter().zip(services) {
        let active = u64::from(service.active);
        sample(&mut out, "wasinetd_connections_active", svc, "", active);
    }
    header(
        &mut out,
        "wasinetd_connections_finished_total",
        "counter",
        "Served connections that ended, by how the guest ended.",
    );
    for (svc, _, s) in &rows {
        for (outcome, n) in &s.outcomes {
            let label = format!(",outcome=\"{outcome}\"");
            sample(
                &mut out,
                "wasinetd_connections_finished_total",
                svc,
                &label,
                *n,
            );
        }
    }
    header(
        &mut out,
        "wasinetd_guest_exits_total",
        "counter",
        "Guests that exited, by exit status (zero or nonzero).",
    );
    for (svc, _, s) in &rows {
        let name = "wasinetd_guest_exits_total";
        sample(&mut out, name, svc, ",status=\"zero\"", s.exit_zero);
        sample(&mut out, name, svc, ",status=\"nonzero\"", s.exit_nonzero);
    }
    header(
        &mut out,
        "wasinetd_connection_duration_seconds",
        "histogram",
        "Time from accept to close of served connections.",
    );
    for (svc, m, _) in &rows {
        m.duration
            .render(&mut out, "wasinetd_connection_duration_seconds", svc);
    }
    header(
        &mut out,
        "wasinetd_instantiation_seconds",
        "histogram",
        "Time to instantiate the guest for a connection.",
    );
    for (svc, m, _) in &rows {
        m.instantiate
            .render(&mut out, "wasinetd_instantiation_seconds", svc);
    }
    header(
        &mut out,
        "wasinetd_guest_cpu_seconds_total",
        "counter",
        "CPU time spent running guest code.",
    );
    for (svc, m, _) in &rows {
        let secs = m.cpu_ns.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "wasinetd_guest_cpu_seconds_total{{service=\"{svc}\"}} {secs}"
        );
    }
    header(
        &mut out,
        "wasinetd_received_bytes_total",
        "counter",
        "Bytes read from clients for the guest's stdin.",
    );
    for (svc, _, s) in &rows {
        sample(
            &mut out,
            "wasinetd_received_bytes_total",
            svc,
            "",
            s.received,
        );
    }
    header(
        &mut out,
        "wasinetd_sent_bytes_total",
        "counter",
        "Bytes the guest wrote to clients on its stdout.",
    );
    for (svc, _, s) in &rows {
        sample(&mut out, "wasinetd_sent_bytes_total", svc, "", s.sent);
    }
    out
}

/// What the daemon reports about itself, beside its services: the build,
/// the config being served and the reloads.
pub struct Daemon<'a> {
    /// The served config's digest.
    pub config_digest: &'a str,
    /// When the served config was read.
    pub config_loaded: SystemTime,
    /// Reloads that switched, and reloads that left the old config.
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// When the last reload ended, and whether it switched.
    pub last_reload: Option<(SystemTime, bool)>,
}

impl Daemon<'_> {
    fn render(&self, out: &mut String) {
        let unix = |t: SystemTime| {
            let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            since.as_millis() as f64 / 1e3
        };
        let lines = [
            (
                "wasinetd_build_info",
                "gauge",
                "Always 1; the labels name this binary.",
                format!(
                    "{{version=\"{}\",wasmtime=\"{}\",commit=\"{}\"}} 1",
                    escape(crate::build_info::VERSION),
                    escape(crate::build_info::WASMTIME),
                    escape(crate::build_info::COMMIT)
                ),
            ),
            (
                "wasinetd_config_info",
                "gauge",
                "Always 1; `digest` names the config being served.",
                format!("{{digest=\"{}\"}} 1", escape(self.config_digest)),
            ),
            (
                "wasinetd_config_loaded_timestamp_seconds",
                "gauge",
                "When the config being served was read (Unix time).",
                format!(" {}", unix(self.config_loaded)),
            ),
            (
                "wasinetd_config_last_reload_successful",
                "gauge",
                "0 if the last reload failed and the previous config is still served, else 1.",
                format!(" {}", u8::from(self.last_reload.is_none_or(|(_, ok)| ok))),
            ),
        ];
        for (name, kind, help, rest) in lines {
            header(out, name, kind, help);
            let _ = writeln!(out, "{name}{rest}");
        }
        let name = "wasinetd_reloads_total";
        header(out, name, "counter", "Config reloads, by result.");
        let _ = writeln!(out, "{name}{{result=\"ok\"}} {}", self.reloads_ok);
        let _ = writeln!(out, "{name}{{result=\"failed\"}} {}", self.reloads_failed);
        if let Some((at, _)) = self.last_reload {
            let name = "wasinetd_config_last_reload_timestamp_seconds";
            header(
                out,
                name,
                "gauge",
                "When the last reload ended (Unix time).",
            );
            let _ = writeln!(out, "{name} {}", unix(at));
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, service: &str, labels: &str, value: u64) {
    let _ = writeln!(out, "{name}{{service=\"{service}\"{labels}}} {value}");
}

/// A label value as the text format wants it.
pub(super) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
