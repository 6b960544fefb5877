//! A tenant's service against its tenant's bounds: what it asks for beyond
//! them is an error at the line that asks (`service NAME: ... outside
//! tenant acme's ...`), and what it leaves unset is brought within them
//! (the tenant's ceiling, or the daemon's default when lower; never
//! unlimited).
//!
//! Paths are compared resolved (`..` and symlinks), since a tenant owns
//! the folders it names and can put a symlink anywhere in them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::TenantSpec;
use crate::config::parse::RawBlock;
use crate::config::{Cap, GuestSource, Listen, LogType, Report, ServiceSpec};

/// Checks `spec` (built from `block`, a file of `tenant`) and fills in its
/// unset limits; reports every escalation. The caller drops the service
/// when this reported any error.
pub(in crate::config) fn police(
    spec: &mut ServiceSpec,
    block: &RawBlock,
    tenant: &TenantSpec,
    report: &mut Report,
) {
    let mut police = Police {
        name: spec.name.clone(),
        block,
        tenant,
        report,
    };
    police.guest(spec);
    police.listen(spec);
    police.paths(spec);
    police.egress(spec);
    police.limits(spec);
    police.log(spec);
}

struct Police<'a, 'r> {
    name: String,
    block: &'a RawBlock,
    tenant: &'a TenantSpec,
    report: &'a mut Report<'r>,
}

impl Police<'_, '_> {
    /// The line of attribute `attr` in the block, if the block sets it.
    fn said(&self, attr: &str) -> Option<u32> {
        self.block
            .attrs
            .iter()
            .rev()
            .find(|a| a.name == attr)
            .map(|a| a.line)
    }

    fn line(&self, attr: &str) -> u32 {
        self.said(attr).unwrap_or(self.block.line)
    }

    fn refuse(&mut self, line: u32, what: impl std::fmt::Display) {
        let message = format!("service {}: {what}", self.name);
        self.report.error(line, message);
    }

    fn guest(&mut self, spec: &ServiceSpec) {
        let tenant = &self.tenant.name;
        match &spec.guest {
            GuestSource::Sensor(_) => {
                let what = format!(
                    "`flags = SENSOR` adds to the daemon-wide deny list, outside tenant \
                     {tenant}'s reach"
                );
                self.refuse(self.line("flags"), what);
            }
            GuestSource::Redirect(to) if !self.tenant.allow_connect.contains(to) => {
                let what = format!(
                    "`redirect` to {to} is outside tenant {tenant}'s `allow_connect` ({})",
                    list(&self.tenant.allow_connect)
                );
                self.refuse(self.line("redirect"), what);
            }
            GuestSource::File(path) => {
                let inside = [
                    self.tenant.includedir.as_deref(),
                    self.tenant.preopen_root.as_deref(),
                ];
                let ok = resolved(path).is_some_and(|p| {
                    inside
                        .iter()
                        .flatten()
                        .any(|dir| resolved(dir).is_some_and(|d| p.starts_with(d)))
                });
                if !ok {
                    let what = format!(
                        "`server` `{}` is outside tenant {tenant}'s folders (its `includedir` and \
                         `preopen_root`)",
                        path.display()
                    );
                    self.refuse(self.line("server"), what);
                }
            }
            GuestSource::Redirect(_) | GuestSource::Internal(_) => {}
        }
        if let Some(line) = self.said("passenv") {
            let what = format!(
                "`passenv` reads the daemon's own environment, outside tenant {tenant}'s reach; \
                 set values with `env`"
            );
            self.refuse(line, what);
        }
    }

    fn listen(&mut self, spec: &mut ServiceSpec) {
        let tenant = self.tenant.name.clone();
        let bind_said = self.said("bind").or(self.said("interface"));
        let mut ports: Vec<u16> = Vec::new();
        for addr in spec.ip_addrs() {
            let port = addr.port();
            if !ports.contains(&port) {
                ports.push(port);
            }
            if let (Some(allowed), Some(line)) = (&self.tenant.bind, bind_said)
                && !allowed.contains(&addr.ip())
            {
                let what = format!(
                    "address {} is outside tenant {tenant}'s `bind` ({})",
                    addr.ip(),
                    list(allowed)
                );
                self.refuse(line, what);
            }
        }
        for port in ports {
            if !self.tenant.ports.iter().any(|r| r.contains(&port)) {
                let allowed = match self.tenant.ports_text() {
                    t if t.is_empty() => "none".to_string(),
                    t => t,
                };
                let line = spec.lines.port.max(self.block.line);
                self.refuse(
                    line,
                    format!("port {port} is outside tenant {tenant}'s ports ({allowed})"),
                );
            }
        }
        // A service that leaves `bind` unset listens on its tenant's
        // addresses, not on every address.
        if let (Some(allowed), None) = (&self.tenant.bind, bind_said) {
            let mut listen = Vec::new();
            for l in spec.listen.drain(..) {
                match l {
                    Listen::Tcp(a) | Listen::Udp(a) => {
                        let tcp = matches!(l, Listen::Tcp(_));
                        for ip in allowed {
                            let addr = SocketAddr::new(*ip, a.port());
                            let new = if tcp {
                                Listen::Tcp(addr)
                            } else {
                                Listen::Udp(addr)
                            };
                            if !listen.contains(&new) {
                                listen.push(new);
                            }
                        }
                    }
                    unix => listen.push(unix),
                }
            }
            spec.listen = listen;
        }
        if let Some(unix) = spec.unix() {
            let path = unix.path.clone();
            let inside = match (
                &self.tenant.listen_unix_dir,
                path.parent().and_then(resolved),
            ) {
                (Some(dir), Some(parent)) => parent.starts_with(dir),
                _ => false,
            };
            if !inside {
                let dir = (self.tenant.listen_unix_dir.as_ref())
                    .map_or("none".to_string(), |d| format!("`{}`", d.display()));
                let what = format!(
                    "`listen_unix` `{}` is outside tenant {tenant}'s `listen_unix_dir` ({dir})",
                    path.display()
                );
                self.refuse(spec.lines.listen_unix.max(self.block.line), what);
            }
        }
    }

    /// Preopens inside `preopen_root`, kept by their resolved path so that
    /// a symlink swapped in later names what was checked.
    fn paths(&mut self, spec: &mut ServiceSpec) {
        let tenant = self.tenant.name.clone();
        let line = self.line("preopen");
        for preopen in &mut spec.preopens {
            let host = resolved(&preopen.host);
            match (&self.tenant.preopen_root, host) {
                (Some(root), Some(host)) if host.starts_with(root) => {
                    preopen.host = host;
                    preopen.beneath = Some(root.clone());
                }
                (root, _) => {
                    let root = root
                        .as_ref()
                        .map_or("none".to_string(), |r| format!("`{}`", r.display()));
                    let what = format!(
                        "preopen `{}` is outside tenant {tenant}'s `preopen_root` ({root})",
                        preopen.host.display()
                    );
                    self.refuse(line, what);
                }
            }
        }
    }

    fn egress(&mut self, spec: &ServiceSpec) {
        let tenant = self.tenant.name.clone();
        let line = self.line("allow_connect");
        for addr in spec.allow_connect.iter() {
            if !self.tenant.allow_connect.contains(addr) {
                let what = format!(
                    "`allow_connect` {addr} is outside tenant {tenant}'s `allow_connect` ({})",
                    list(&self.tenant.allow_connect)
                );
                self.refuse(line, what);
            }
        }
    }

    fn limits(&mut self, spec: &mut ServiceSpec) {
        let tenant = self.tenant.name.clone();
        if let Some(ceiling) = self.tenant.rlimit_as {
            match self.said("rlimit_as") {
                Some(line) if spec.limits.memory > ceiling => {
                    let what = format!(
                        "`rlimit_as` {} is outside tenant {tenant}'s ceiling of {}",
                        mib(spec.limits.memory),
                        mib(ceiling)
                    );
                    self.refuse(line, what);
                }
                Some(_) => {}
                None => spec.limits.memory = spec.limits.memory.min(ceiling),
            }
        }
        let durations = [
            ("rlimit_cpu", self.tenant.rlimit_cpu, &mut spec.limits.cpu),
            (
                "runtime_max",
                self.tenant.runtime_max,
                &mut spec.limits.runtime,
            ),
        ];
        for (attr, ceiling, value) in durations {
            let Some(ceiling) = ceiling else { continue };
            match self.said(attr) {
                Some(line) if value.is_none_or(|v| v > ceiling) => {
                    let asked = value.map_or("UNLIMITED".to_string(), |v| format!("{v:?}"));
                    let what = format!(
                        "`{attr}` {asked} is outside tenant {tenant}'s ceiling of {ceiling:?}"
                    );
                    self.refuse(line, what);
                }
                Some(_) => {}
                None => *value = Some(value.map_or(ceiling, |v: Duration| v.min(ceiling))),
            }
        }
        if let (Some(ceiling), Some(line)) = (self.tenant.instances, self.said("instances")) {
            let over = match spec.instances {
                Cap::Unlimited => Some("UNLIMITED".to_string()),
                Cap::At(n) if n > ceiling => Some(n.to_string()),
                _ => None,
            };
            if let Some(asked) = over {
                let what = format!(
                    "`instances` {asked} is outside tenant {tenant}'s `instances` of {ceiling}"
                );
                self.refuse(line, what);
            }
        }
    }

    /// A tenant's lines go to its own log; a service may name a file of
    /// its own only in the folder of that log.
    fn log(&mut self, spec: &mut ServiceSpec) {
        let tenant = self.tenant.name.clone();
        let Some(line) = self.said("log_type") else {
            if self.tenant.log_type.is_some() {
                spec.log_type.clone_from(&self.tenant.log_type);
            }
            return;
        };
        let folder = match &self.tenant.log_type {
            Some(LogType::File { path, .. }) => path.parent().and_then(resolved),
            _ => None,
        };
        let inside = match (&spec.log_type, &folder) {
            (Some(LogType::File { path, .. }), Some(folder)) => path
                .parent()
                .and_then(resolved)
                .is_some_and(|p| p == *folder),
            _ => false,
        };
        if !inside {
            let folder = folder.map_or("none".to_string(), |f| format!("`{}`", f.display()));
            let what = format!("`log_type` is outside tenant {tenant}'s log folder ({folder})");
            self.refuse(line, what);
        }
    }
}

/// `path` resolved, if it (or, for a file not made yet, its folder) exists.
fn resolved(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn mib(bytes: u64) -> String {
    match bytes {
        b if b % (1 << 20) == 0 => format!("{}M", b >> 20),
        b => format!("{}K", b >> 10),
    }
}
