//! One enabled `service` block, applied over what it inherits from
//! `defaults`, then the checks that need the whole block (a guest, a port,
//! `/etc/services`) -> a [`ServiceSpec`].

use std::path::{Path, PathBuf};

use super::admission;
use super::attrs::{self, Checked, Key, Own, Place, Seen};
use super::defaults::{self, Inherited};
use super::egress;
use super::etc_services::ServicesDb;
use super::guest;
use super::parse::{Op, RawAttr, RawBlock};
use super::preopen::Preopens;
use super::proxy;
use super::socket::{self, Flags};
use super::transport;
use super::values::{self, Types};
use super::{Env, GuestSource, Listen, Report, ServiceSpec, SocketType, UnixListen};
use crate::config::access::{AddressRules, TimeWindow};

/// Validates one enabled `service NAME` block; `None` if it has an error.
pub(super) fn service(
    block: &RawBlock,
    name: &str,
    id: String,
    inherited: &Inherited,
    env: &Env,
    db: &mut ServicesDb,
    report: &mut Report,
) -> Option<ServiceSpec> {
    for (line, message) in &block.problems {
        report.error(*line, message.clone());
    }
    let dir = block.file.parent().unwrap_or(Path::new(""));
    let mut draft = Draft {
        inherited: inherited.clone(),
        types: Types::default(),
        failed: Vec::new(),
        unreadable: !block.problems.is_empty(),
        port: None,
        guest: guest::Said::default(),
        server_args: Vec::new(),
        preopens: Preopens::default(),
        access_times: Vec::new(),
        flags: (Flags::default(), 0),
        unix: None,
        transport: transport::Said::default(),
        proxy: proxy::Said::default(),
    };
    let mut seen = Seen::default();
    for raw in &block.attrs {
        let before = report.errors;
        if let Some(checked) = attrs::screen(raw, Place::Service, &mut seen, report)
            && let Err(message) = draft.apply(checked, raw, dir)
        {
            report.error(raw.line, message);
        }
        if report.errors > before {
            draft.failed.push(raw.name.clone());
        }
    }
    draft.finish(block, name, id, env, db, report)
}

/// A service block being read: what it inherited, and what it said so far.
struct Draft {
    inherited: Inherited,
    types: Types,
    /// Attributes with a line in error: the checks that depend on them are
    /// skipped, so one mistake is reported once.
    failed: Vec<String>,
    /// The block has lines that could not be read: any of them may have set
    /// what seems missing.
    unreadable: bool,
    /// With the line that set it.
    port: Option<(u16, u32)>,
    /// `server`, `redirect`, SENSOR and `deny_time`.
    guest: guest::Said,
    server_args: Vec<String>,
    preopens: Preopens,
    access_times: Vec<TimeWindow>,
    /// With the line that set it (0: none).
    flags: (Flags, u32),
    /// With the line that set it.
    unix: Option<(PathBuf, u32)>,
    transport: transport::Said,
    /// `proxy_protocol` and `proxy_from`.
    proxy: proxy::Said,
}

impl Draft {
    /// Whether a line that may have set `name` was in error.
    fn failed(&self, name: &str) -> bool {
        self.unreadable || self.failed.iter().any(|f| f == name)
    }

    fn apply(&mut self, checked: Checked, raw: &RawAttr, dir: &Path) -> Result<(), String> {
        let (name, words) = (raw.name.as_str(), &raw.values[..]);
        let key = match checked.key {
            Key::Own(key) => key,
            Key::Shared(key) => return self.inherited.apply(key, raw, checked.replaces, dir),
            // `screen` lets neither through in a service.
            Key::Listing(_) | Key::Refused => return Ok(()),
        };
        match key {
            // Taken by `prescan`; checked here.
            Own::Id => {
                values::one(name, "one word", words)?;
            }
            Own::Disable => {
                values::yes_no(name, words)?;
            }
            Own::Type => {
                self.types = values::types(words)?;
                self.guest.internal = self.types.internal;
            }
            Own::SocketType | Own::Protocol | Own::Wait => {
                self.transport.apply(name, words, raw.line)?
            }
            Own::Port => self.port = Some((values::port(name, words)?, raw.line)),
            Own::Server => {
                let path = values::one(name, "the path of a .wasm file", words)?;
                self.guest.server = Some((dir.join(path), raw.line));
            }
            Own::Redirect => self.guest.redirect = Some((values::redirect(name, words)?, raw.line)),
            Own::DenyTime => {
                self.guest.deny_time = Some((guest::deny_time(name, words)?, raw.line))
            }
            Own::ServerArgs => self.server_args = words.to_vec(),
            Own::Preopen => self.preopens.apply(raw, checked.replaces, dir)?,
            Own::AccessTimes => self.access_times = admission::access_times(name, words)?,
            Own::Flags => {
                self.flags = (socket::flags(words)?, raw.line);
                self.guest.sensor = self.flags.0.sensor.then_some(raw.line);
            }
            Own::ListenUnix => self.unix = Some((socket::unix_path(name, words)?, raw.line)),
            Own::ProxyProtocol => {
                self.proxy.versions = Some((proxy::versions(name, words)?, raw.line))
            }
            Own::ProxyFrom => self.proxy.from = Some((proxy::from(name, words)?, raw.line)),
        }
        Ok(())
    }

    /// The checks that need the whole block, then the spec.
    fn finish(
        mut self,
        block: &RawBlock,
        name: &str,
        id: String,
        env: &Env,
        db: &mut ServicesDb,
        report: &mut Report,
    ) -> Option<ServiceSpec> {
        let transport = if ["socket_type", "protocol", "wait"]
            .iter()
            .any(|a| self.failed(a))
        {
            None
        } else {
            self.transport.resolve(report)
        };
        let udp = transport == Some(SocketType::Dgram);
        let guest = self
            .guest
            .resolve(name, udp, block.line, |a| self.failed(a), report);
        if let (true, Some((_, line))) = (udp, &self.unix) {
            report.error(
                *line,
                "`listen_unix` is for stream services; a `dgram` service listens on UDP only",
            );
            return None;
        }
        if let (true, Some((_, line))) = (udp, &self.guest.redirect) {
            report.error(*line, "`redirect` is for stream services, not `dgram`");
            return None;
        }
        let said = std::mem::take(&mut self.proxy);
        let proxy = match said.resolve(udp, self.unix.is_some(), |a| self.failed(a)) {
            Ok(proxy) => proxy,
            Err((line, message)) => {
                report.error(line, message);
                return None;
            }
        };
        if let (Some(GuestSource::Sensor(_)), Some((_, line))) = (&guest, &self.unix) {
            report.error(
                *line,
                "`listen_unix` cannot be used with `flags = SENSOR`: a Unix peer has no address to deny",
            );
            return None;
        }
        if let Some((line, message)) = guest.as_ref().and_then(|g| egress::without_guest(block, g))
        {
            report.error(line, message);
            return None;
        }
        // `listen_unix` without `port`: a Unix socket only.
        let tcp = self.unix.is_none() && !self.failed("listen_unix") || self.port.is_some();
        let port = if tcp {
            self.port(name, udp, block.line, db, report)
        } else {
            Some(0)
        };
        let (guest, port, _) = (guest?, port?, transport?);
        let line_of = |line: Option<u32>| line.unwrap_or(block.line);
        let lines = super::SpecLines {
            server: line_of(self.guest.server.as_ref().map(|s| s.1)),
            port: line_of(self.port.map(|p| p.1)),
            listen_unix: line_of(self.unix.as_ref().map(|u| u.1)),
        };
        let (flags, flags_line) = self.flags;
        let inherited = &self.inherited;
        let listen = socket::listen(
            &inherited.bind,
            port,
            flags,
            inherited.v6only,
            inherited.backlog,
        );
        let (ips, socket) = match listen {
            Ok(listen) => listen,
            Err(message) => {
                report.error(flags_line, message);
                return None;
            }
        };
        let argv0 = match &guest {
            GuestSource::File(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            GuestSource::Internal(name) => name.clone(),
            GuestSource::Redirect(addr) => addr.to_string(),
            GuestSource::Sensor(_) => "sensor".into(),
        };
        let mut server_args = self.server_args.into_iter();
        let argv0 = if flags.name_in_args {
            // xinetd's NAMEINARGS: `server_args` is the whole argv.
            let Some(first) = server_args.next() else {
                report.error(
                    flags_line,
                    "`flags = NAMEINARGS` needs `server_args`: its first word becomes argv[0]",
                );
                return None;
            };
            first
        } else {
            argv0
        };
        // Tells a bundled guest its stdin is one datagram (chargen then
        // answers once, not forever).
        let dgram = (matches!(guest, GuestSource::Internal(_)) && udp).then(|| "--dgram".into());
        let inherited = self.inherited;
        let limits = inherited.limits();
        let mut vars = inherited.env;
        for var in &inherited.passenv {
            if let Some(value) = (env.var)(var) {
                defaults::combine(
                    &mut vars,
                    Op::Add,
                    false,
                    vec![(var.clone(), value)],
                    |a, b| a.0 == b.0,
                );
            }
        }
        Some(ServiceSpec {
            name: id,
            file: block.file.clone(),
            line: block.line,
            lines,
            guest,
            argv: std::iter::once(argv0)
                .chain(dgram)
                .chain(server_args)
                .collect(),
            env: vars,
            listen: ips
                .into_iter()
                .filter(|_| tcp)
                .map(if udp { Listen::Udp } else { Listen::Tcp })
                .chain(self.unix.map(|(path, _)| {
                    Listen::Unix(UnixListen {
                        path,
                        mode: inherited.socket_mode,
                    })
                }))
                .collect(),
            socket,
            instances: inherited.instances,
            addresses: AddressRules {
                only_from: inherited.only_from,
                no_access: inherited.no_access,
            },
            allow_connect: inherited.allow_connect.into(),
            access_times: self.access_times,
            per_source: inherited.per_source,
            cps: inherited.cps,
            max_load: inherited.max_load,
            limits,
            banners: inherited.banners,
            preopens: self.preopens.into_vec(),
            preopen_quota: inherited.preopen_quota,
            log_on_success: inherited.log_on_success,
            log_on_failure: inherited.log_on_failure,
            log_type: inherited.log_type,
            proxy,
            tenant: None,
        })
    }

    /// The port: given, or looked up by NAME (its tcp or, if `udp`, udp
    /// entry) unless UNLISTED; a given port must match the listed one (0,
    /// any free port, is exempt).
    fn port(
        &self,
        name: &str,
        udp: bool,
        block_line: u32,
        db: &mut ServicesDb,
        report: &mut Report,
    ) -> Option<u16> {
        let services = db.path().display().to_string();
        match self.port {
            Some((port, line)) => {
                if self.types.unlisted || self.failed("type") || port == 0 {
                    return Some(port);
                }
                match db.port(name, udp) {
                    Some(listed) if listed != port => {
                        let message = format!(
                            "port {port} differs from `{name}` in {services} ({listed}): add `type = UNLISTED`"
                        );
                        report.error(line, message);
                        None
                    }
                    _ => Some(port),
                }
            }
            None if self.failed("type") || self.failed("port") => None,
            None if self.types.unlisted => {
                report.error(
                    block_line,
                    format!("service `{name}` is `type = UNLISTED` but has no `port`"),
                );
                None
            }
            None => {
                let port = db.port(name, udp);
                if port.is_none() {
                    let message = format!(
                        "service `{name}` has no `port` and is not in {services}: add `port` and `type = UNLISTED`"
                    );
                    report.error(block_line, message);
                }
                port
            }
        }
    }
}

#[cfg(test)]
mod tests;
