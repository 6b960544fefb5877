//! The Prometheus text exposition (format 0.0.4) of the daemon, its
//! services and its tenants, for `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use super::{ServiceMetrics, Snapshot, TenantTotals};

/// One service as `/metrics` shows it: its name, its tenant, its counters,
/// and the guests it runs now.
pub struct Row<'a> {
    pub name: &'a str,
    /// `None` outside every tenant: then no `tenant` label, so the series
    /// of a daemon without tenants keep the labels they always had.
    pub tenant: Option<&'a str>,
    pub metrics: &'a ServiceMetrics,
    pub active: u32,
}

/// The Prometheus text exposition (format 0.0.4) of the daemon, every
/// service, and every named tenant in `tenants`.
pub fn render(services: &[Row<'_>], tenants: &[TenantTotals], daemon: &Daemon) -> String {
    // Each row's labels, written once: `service="NAME"` and, for a
    // tenant's service, `,tenant="NAME"`.
    let rows: Vec<(String, &ServiceMetrics, Snapshot)> = services
        .iter()
        .map(|s| {
            let mut labels = format!("service=\"{}\"", escape(s.name));
            if let Some(tenant) = s.tenant {
                let _ = write!(labels, ",tenant=\"{}\"", escape(tenant));
            }
            (labels, s.metrics, s.metrics.snapshot())
        })
        .collect();
    // Each family is written whole (HELP, TYPE, then every service's
    // samples), as the format requires.
    let mut out = String::with_capacity(4096 + 2048 * rows.len() + 1024 * tenants.len());
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
        let _ = writeln!(out, "wasinetd_guest_cpu_seconds_total{{{svc}}} {secs}");
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
    render_tenants(&mut out, tenants);
    out
}

/// The tenants' families, each whole; none at all without a tenant, so a
/// daemon without tenants shows what it always showed. A limit's family
/// is left out when no tenant sets that limit.
fn render_tenants(out: &mut String, tenants: &[TenantTotals]) {
    if tenants.is_empty() {
        return;
    }
    let rows: Vec<(String, &TenantTotals)> = (tenants.iter())
        .map(|t| (format!("tenant=\"{}\"", escape(&t.name)), t))
        .collect();
    let family = |out: &mut String, name: &str, kind: &str, help: &str, value: Value| {
        if rows.iter().all(|(_, t)| value(t).is_none()) {
            return;
        }
        header(out, name, kind, help);
        for (labels, t) in &rows {
            if let Some(v) = value(t) {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
    };
    family(
        out,
        "wasinetd_tenant_connections_active",
        "gauge",
        "The tenant's guests running now.",
        |t| Some(t.active.to_string()),
    );
    family(
        out,
        "wasinetd_tenant_connections_accepted_total",
        "counter",
        "Connections the tenant's services accepted, whether then refused or served.",
        |t| Some(t.accepted.to_string()),
    );
    let name = "wasinetd_tenant_connections_refused_total";
    header(
        out,
        name,
        "counter",
        "Connections refused for the tenant's own bounds, by reason.",
    );
    for (labels, t) in &rows {
        for (reason, n) in t.refused {
            let reason = escape(reason);
            let _ = writeln!(out, "{name}{{{labels},reason=\"{reason}\"}} {n}");
        }
    }
    family(
        out,
        "wasinetd_tenant_cpu_seconds_total",
        "counter",
        "CPU time the tenant's guests spent.",
        |t| Some(t.cpu.as_secs_f64().to_string()),
    );
    family(
        out,
        "wasinetd_tenant_memory_bytes",
        "gauge",
        "Linear memory the tenant's live guests hold now.",
        |t| Some(t.memory.to_string()),
    );
    family(
        out,
        "wasinetd_tenant_memory_limit_bytes",
        "gauge",
        "The tenant's `memory`: the most its live guests may hold together.",
        |t| t.memory_limit.map(|n| n.to_string()),
    );
    family(
        out,
        "wasinetd_tenant_instances_limit",
        "gauge",
        "The tenant's `instances`: the most guests it may run at once.",
        |t| t.instances.map(|n| n.to_string()),
    );
}

/// A tenant family's value for one tenant; `None`: no sample.
type Value = fn(&TenantTotals) -> Option<String>;

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

/// One sample: `service` is the row's labels, `labels` any more (each
/// with its leading comma).
fn sample(out: &mut String, name: &str, service: &str, labels: &str, value: u64) {
    let _ = writeln!(out, "{name}{{{service}{labels}}} {value}");
}

/// A label value as the text format wants it.
pub(super) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
