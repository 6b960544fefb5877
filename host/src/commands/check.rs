//! `wasinetd check`: read and validate the config, compile every guest,
//! and with `--bind` bind every TCP and UDP listener and release it; one
//! summary line per service on stdout, every problem on stderr as
//! `FILE:LINE: message`. A guest `wasinetd build` made from a script that
//! has changed since is a warning at its `server` line.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use socket2::Type;

use super::load_config;
use crate::cli::CheckArgs;
use crate::config::{GuestSource, Listen, ServiceSpec};
use crate::conn::service::Service;
use crate::sandbox::{CacheSetting, CompileLimits, Sandbox, SandboxOptions};
use crate::server;

pub(super) fn check(
    args: &CheckArgs,
    cache: CacheSetting,
    compile: CompileLimits,
) -> anyhow::Result<ExitCode> {
    let (_, config) = load_config(args.file.as_deref())?;
    let mut ok = config.errors.is_empty();
    for line in config.diagnostics() {
        eprintln!("{line}");
    }
    let sandbox = Sandbox::new(&SandboxOptions {
        max_instances: 1,
        cache,
        compile,
        ..SandboxOptions::default()
    })?;
    let prepared = server::prepare(&sandbox, config.services, &Default::default());
    for f in &prepared.failed {
        eprintln!("{f}");
        ok = false;
    }
    let services = prepared.services;
    for s in &services {
        if let GuestSource::File(guest) = &s.spec.guest
            && let Some(why) = super::build::stale(guest)
        {
            eprintln!(
                "{}:{}: warning: service `{}`: {why}",
                s.spec.file.display(),
                s.spec.lines.server,
                s.spec.name
            );
        }
    }
    if args.bind {
        for problem in try_bind(services.iter().map(|s| &s.spec)) {
            eprintln!("{problem}");
            ok = false;
        }
    }
    for s in &services {
        println!("{}", summary(s));
    }
    if services.is_empty() {
        if ok {
            eprintln!("no service is enabled");
        }
        return Ok(ExitCode::FAILURE);
    }
    if ok && !args.bind {
        eprintln!("note: ports were not tried; `wasinetd check --bind` binds and releases each");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--bind`: binds every TCP and UDP address of `specs` in turn, holding
/// each until all are tried (two services on one address conflict as they
/// would when served), then releases them. One problem per address that
/// cannot be bound, at its service's `port` line. Port 0 (any free port)
/// is not tried, nor are Unix sockets: binding one replaces the file at
/// its path, which may be a running daemon's.
fn try_bind<'a>(specs: impl Iterator<Item = &'a ServiceSpec>) -> Vec<String> {
    let mut held = Vec::new();
    let mut problems = Vec::new();
    for spec in specs {
        for listen in &spec.listen {
            let (addr, ty) = match *listen {
                Listen::Tcp(addr) => (addr, Type::STREAM),
                Listen::Udp(addr) => (addr, Type::DGRAM),
                Listen::Unix(_) => continue,
            };
            if addr.port() == 0 {
                continue;
            }
            match bind_one(addr, ty, spec) {
                Ok(socket) => held.push(socket),
                Err(e) => problems.push(format!(
                    "{}:{}: service `{}`: {e:#}",
                    spec.file.display(),
                    spec.lines.port,
                    spec.name
                )),
            }
        }
    }
    problems
}

fn bind_one(addr: SocketAddr, ty: Type, spec: &ServiceSpec) -> anyhow::Result<socket2::Socket> {
    let socket = crate::conn::listener::bound_socket(addr, ty, &spec.socket)?;
    if ty == Type::STREAM {
        socket.listen(1)?;
    }
    Ok(socket)
}

/// One line describing a prepared service, as `check` prints it: sizes
/// and durations as a person writes them (`128M`, `500ms`).
fn summary(s: &Service) -> String {
    let spec = &s.spec;
    let kind = match (s.guest(), &spec.guest) {
        (Some(g), _) => g.kind_name(),
        (None, GuestSource::Sensor(_)) => "sensor",
        (None, _) => "redirect",
    };
    let or_unlimited = |d: Option<Duration>| d.map_or("UNLIMITED".to_owned(), duration);
    // Shown only when set: most services have neither.
    let max_load = spec.max_load.map(|l| format!(" max_load={l}"));
    let files = spec.limits.files.map(|n| format!(" rlimit_files={n}"));
    // The addresses names resolved to at load: what the guest may reach.
    let egress = (!spec.allow_connect.is_empty()).then(|| {
        let addrs: Vec<String> = spec.allow_connect.iter().map(|a| a.to_string()).collect();
        format!(" allow_connect={}", addrs.join(","))
    });
    format!(
        "{name} {addr} {kind} {source} rlimit_as={mem} rlimit_cpu={cpu} runtime_max={rt} \
         instances={inst}{load}{files}{egress}",
        name = spec.name,
        addr = spec
            .listen
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        source = spec.guest,
        mem = size(spec.limits.memory),
        cpu = or_unlimited(spec.limits.cpu),
        rt = or_unlimited(spec.limits.runtime),
        inst = spec
            .instances
            .set()
            .map_or("UNLIMITED".to_owned(), |n| n.to_string()),
        load = max_load.unwrap_or_default(),
        files = files.unwrap_or_default(),
        egress = egress.unwrap_or_default(),
    )
}

/// `128M`, `1536K`, `4G`: the largest unit that divides it, as
/// `rlimit_as` reads it back.
fn size(bytes: u64) -> String {
    for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// `30s`, `500ms`, `1500ms`: whole seconds, else milliseconds, as the
/// config reads them back.
fn duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_as_written() {
        assert_eq!(size(128 << 20), "128M");
        assert_eq!(size(1536 << 10), "1536K");
        assert_eq!(size(4 << 30), "4G");
        assert_eq!(size(1000), "1000");
        assert_eq!(duration(Duration::from_secs(30)), "30s");
        assert_eq!(duration(Duration::from_millis(500)), "500ms");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
    }
}
