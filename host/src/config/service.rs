//! One enabled `service` block, applied over what it inherits from
//! `defaults`, then the checks that need the whole block (a guest, a port,
//! `/etc/services`) -> a [`ServiceSpec`].

use std::path::{Path, PathBuf};

use super::admission;
use super::attrs::{self, Checked, Place, Seen};
use super::defaults::{self, Inherited};
use super::egress;
use super::etc_services::ServicesDb;
use super::guest;
use super::parse::{Op, RawAttr, RawBlock};
use super::preopen::Preopens;
use super::socket::{self, Flags};
use super::transport;
use super::values::{self, Types};
use super::{Env, GuestSource, Report, ServiceSpec, Transport, UnixListen};
use crate::access::{AddressRules, TimeWindow};

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
}

impl Draft {
    /// Whether a line that may have set `name` was in error.
    fn failed(&self, name: &str) -> bool {
        self.unreadable || self.failed.iter().any(|f| f == name)
    }

    fn apply(&mut self, checked: Checked, raw: &RawAttr, dir: &Path) -> Result<(), String> {
        let (name, words) = (raw.name.as_str(), &raw.values[..]);
        match checked.key {
            // Taken by `prescan`; checked here.
            "id" => {
                values::one(name, "one word", words)?;
            }
            "disable" => {
                values::yes_no(name, words)?;
            }
            "type" => {
                self.types = values::types(words)?;
                self.guest.internal = self.types.internal;
            }
            "socket_type" | "protocol" | "wait" => self.transport.apply(name, words, raw.line)?,
            "port" => self.port = Some((values::port(name, words)?, raw.line)),
            "server" => {
                let path = values::one(name, "the path of a .wasm file", words)?;
                self.guest.server = Some((dir.join(path), raw.line));
            }
            "redirect" => self.guest.redirect = Some((values::redirect(name, words)?, raw.line)),
            "deny_time" => self.guest.deny_time = Some((guest::deny_time(name, words)?, raw.line)),
            "server_args" => self.server_args = words.to_vec(),
            "preopen" => self.preopens.apply(raw, checked.replaces, dir)?,
            "access_times" => self.access_times = admission::access_times(name, words)?,
            "flags" => {
                self.flags = (socket::flags(words)?, raw.line);
                self.guest.sensor = self.flags.0.sensor.then_some(raw.line);
            }
            "listen_unix" => self.unix = Some((socket::unix_path(name, words)?, raw.line)),
            key => {
                let handled = self.inherited.apply(key, raw, checked.replaces, dir)?;
                debug_assert!(handled, "`{key}` passed screening but was not applied");
            }
        }
        Ok(())
    }

    /// The checks that need the whole block, then the spec.
    fn finish(
        self,
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
        let udp = transport == Some(Transport::Udp);
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
        let (guest, port, transport) = (guest?, port?, transport?);
        let (flags, flags_line) = self.flags;
        let inherited = &self.inherited;
        let listen = socket::listen(
            &inherited.bind,
            port,
            flags,
            inherited.v6only,
            inherited.backlog,
        );
        let (addr, extra_addrs, socket) = match listen {
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
            guest,
            transport,
            argv: std::iter::once(argv0)
                .chain(dgram)
                .chain(server_args)
                .collect(),
            env: vars,
            addr,
            extra_addrs,
            tcp,
            unix: self.unix.map(|(path, _)| UnixListen {
                path,
                mode: inherited.socket_mode,
            }),
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
            log_on_success: inherited.log_on_success,
            log_on_failure: inherited.log_on_failure,
            log_type: inherited.log_type,
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
mod tests {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::time::Duration;

    use super::super::tests::parse_env;
    use super::super::{Banners, Config, Limits, LogFlags, Preopen};
    use super::*;

    const SERVICES: &str = "echo 7/tcp\nhttp 80/tcp www\ndaytime 13/udp\n";

    fn parse(text: &str) -> Config {
        parse_env(text, SERVICES, &[("PATH", "/bin"), ("TZ", "UTC")])
    }

    /// `line: message` of every error.
    fn errors(config: &Config) -> Vec<String> {
        config
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.line, e.message))
            .collect()
    }

    fn only(config: Config) -> ServiceSpec {
        assert!(config.errors.is_empty(), "{:?}", errors(&config));
        assert_eq!(config.services.len(), 1);
        config.services.into_iter().next().unwrap()
    }

    #[test]
    fn a_minimal_service_gets_the_built_in_defaults() {
        let spec = only(parse(
            "service hello\n{\n server = /srv/hello.wasm\n server_args = -v x\n type = UNLISTED\n port = 9000\n}\n",
        ));
        let expected = ServiceSpec {
            name: "hello".into(),
            file: "t.conf".into(),
            line: 1,
            guest: GuestSource::File("/srv/hello.wasm".into()),
            transport: Transport::Tcp,
            argv: vec!["hello.wasm".into(), "-v".into(), "x".into()],
            env: vec![],
            addr: "0.0.0.0:9000".parse().unwrap(),
            extra_addrs: vec![],
            tcp: true,
            unix: None,
            socket: super::super::SocketOptions::default(),
            instances: None,
            addresses: AddressRules::default(),
            allow_connect: Default::default(),
            access_times: vec![],
            per_source: None,
            cps: None,
            max_load: None,
            banners: Banners::default(),
            limits: Limits::default(),
            preopens: vec![],
            log_on_success: LogFlags {
                host: true,
                pid: true,
                duration: true,
                exit: true,
                attempt: false,
                traffic: false,
            },
            log_on_failure: LogFlags {
                host: true,
                attempt: true,
                ..LogFlags::default()
            },
            log_type: None,
        };
        assert_eq!(spec, expected);
    }

    #[test]
    fn service_lines_replace_add_to_and_remove_from_defaults() {
        let text = "\
defaults
{
 log_on_success = HOST EXIT
 passenv = PATH
 env = A=1 B=2
 instances = 5
 rlimit_as = 1M
 bind = 127.0.0.1
}
service s
{
 type = UNLISTED
 port = 1
 server = s.wasm
 log_on_success += PID
 log_on_failure = HOST
 passenv += TZ MISSING
 env -= A
 env += C=3
 instances = UNLIMITED
 rlimit_cpu = 2
 runtime_max = 500ms
 socket_type = stream
 protocol = TCP
 wait = no
}
";
        let spec = only(parse(text));
        assert_eq!(
            spec.log_on_success,
            LogFlags {
                host: true,
                pid: true,
                exit: true,
                ..LogFlags::default()
            }
        );
        assert_eq!(
            spec.log_on_failure,
            LogFlags {
                host: true,
                ..LogFlags::default()
            }
        );
        let env: Vec<_> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(env, ["B=2", "C=3", "PATH=/bin", "TZ=UTC"]);
        assert_eq!(spec.instances, None);
        let limits = Limits {
            memory: 1 << 20,
            cpu: Some(Duration::from_secs(2)),
            runtime: Some(Duration::from_millis(500)),
            files: None,
        };
        assert_eq!(spec.limits, limits);
        assert_eq!(spec.addr, "127.0.0.1:1".parse::<SocketAddr>().unwrap());
    }

    #[test]
    fn passenv_wins_over_env_and_id_renames() {
        let text = "service s {\n id = other\n type = UNLISTED\n port = 1\n server = s.wasm\n env = TZ=x Z=1\n passenv = TZ\n}\n";
        let spec = only(parse(text));
        assert_eq!(spec.name, "other");
        assert_eq!(
            spec.env,
            [
                ("Z".to_string(), "1".to_string()),
                ("TZ".to_string(), "UTC".to_string())
            ]
        );
    }

    #[test]
    fn ports_come_from_the_services_file_unless_unlisted() {
        let port = |text: &str| only(parse(text)).addr.port();
        assert_eq!(port("service http {\n server = a.wasm\n}\n"), 80);
        assert_eq!(port("service www {\n server = a.wasm\n}\n"), 80);
        assert_eq!(
            port("service http {\n server = a.wasm\n port = 80\n}\n"),
            80
        );
        assert_eq!(port("service http {\n server = a.wasm\n port = 0\n}\n"), 0);
        assert_eq!(
            port("service http {\n server = a.wasm\n port = 8080\n type = UNLISTED\n}\n"),
            8080
        );
        assert_eq!(
            port("service mine {\n server = a.wasm\n port = 8080\n}\n"),
            8080
        );
        let config = parse(
            "service http {\n server = a.wasm\n port = 9999\n}\nservice daytime {\n server = a.wasm\n}\nservice u {\n type = unlisted\n server = a.wasm\n}\n",
        );
        assert!(config.services.is_empty());
        let e = errors(&config);
        assert!(
            e[0].starts_with("3: port 9999 differs from `http` in /")
                && e[0].ends_with(" (80): add `type = UNLISTED`"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("5: service `daytime` has no `port` and is not in /"),
            "{e:?}"
        );
        assert_eq!(
            e[2],
            "8: service `u` is `type = UNLISTED` but has no `port`"
        );
    }

    #[test]
    fn internal_services_are_built_in() {
        let spec = only(parse("service echo {\n type = INTERNAL\n}\n"));
        assert_eq!(
            (spec.guest, spec.argv, spec.addr.port()),
            (
                GuestSource::Internal("echo".into()),
                vec!["echo".to_string()],
                7
            )
        );
        let config = parse(
            "service echo {\n type = INTERNAL\n server = x.wasm\n}\nservice nothing {\n port = 5\n}\n",
        );
        assert_eq!(
            errors(&config),
            [
                "3: `server` cannot be used with `type = INTERNAL`: the service is built in",
                "5: service `nothing` has no `server`: give the path of its .wasm file (or `type = INTERNAL`)",
            ]
        );
    }

    #[test]
    fn an_unreadable_line_is_not_also_reported_as_missing() {
        let config = parse("service s {\n type = UNLISTED\n port 9000\n server = a.wasm\n}\n");
        assert_eq!(
            errors(&config),
            ["3: expected `NAME = VALUE` (or `+=`, `-=`), not `port 9000`"]
        );
        let config = parse("service s {\n type = UNLISTED\n port = 9000\n server = a b\n}\n");
        assert_eq!(errors(&config).len(), 1, "{:?}", errors(&config));
    }

    #[test]
    fn redirect_takes_the_place_of_server_with_its_host_resolved() {
        let config = parse(
            "service r {\n type = UNLISTED\n port = 1\n redirect = 10.0.0.2 8080\n}\nservice n {\n type = UNLISTED\n port = 2\n redirect = localhost 25\n}\n",
        );
        assert_eq!(errors(&config), Vec::<String>::new());
        assert_eq!(
            config.services[0].guest,
            GuestSource::Redirect(([10, 0, 0, 2], 8080).into())
        );
        let GuestSource::Redirect(addr) = config.services[1].guest else {
            panic!("not a redirect: {:?}", config.services[1].guest);
        };
        assert!(addr.ip().is_loopback() && addr.port() == 25, "{addr}");
    }

    #[test]
    fn a_bad_type_is_reported_once() {
        let config = parse("service rpcthing {\n type = RPC\n}\n");
        let errors = errors(&config);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("2: `type = RPC` is not supported: "));
    }

    #[test]
    fn relative_server_and_preopen_paths_join_the_config_folder() {
        let dir = std::env::temp_dir().join(format!("wasinetd-svc-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let text = "service s {\n type = UNLISTED\n port = 1\n server = g/s.wasm\n preopen = data:/data\n preopen += data:/w:rw /:/root\n preopen -= /root\n}\n";
        std::fs::write(dir.join("conf"), text).unwrap();
        let var = |_: &str| None;
        let env = Env {
            services_file: Path::new("/nonexistent"),
            var: &var,
        };
        let spec = only(super::super::load_with(&dir.join("conf"), &env).unwrap());
        assert_eq!(spec.guest, GuestSource::File(dir.join("g/s.wasm")));
        assert_eq!(
            spec.preopens,
            [
                Preopen {
                    host: dir.join("data"),
                    guest: "/data".into(),
                    writable: false
                },
                Preopen {
                    host: dir.join("data"),
                    guest: "/w".into(),
                    writable: true
                },
            ]
        );
    }

    #[test]
    fn unsupported_attributes_break_the_service_and_warnings_do_not() {
        let config = parse(
            "service a {\n libwrap = a\n type = UNLISTED\n port = 1\n server = a.wasm\n}\nservice b {\n user = nobody\n nice = 5\n type = UNLISTED\n port = 2\n server = b.wasm\n}\n",
        );
        assert!(
            errors(&config)[0].starts_with("2: `libwrap` is not supported: "),
            "{:?}",
            errors(&config)
        );
        assert_eq!(config.services.len(), 1);
        assert_eq!(config.warnings.len(), 2);
        assert_eq!(config.warnings[1].service.as_deref(), Some("b"));
        assert_eq!(
            config.warnings[1].message,
            "`nice` has no meaning for a WebAssembly guest (it runs on the daemon's threads, at the daemon's priority); ignored"
        );
    }
}
