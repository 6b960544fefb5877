//! The xinetd configuration language, read into validated [`ServiceSpec`]s.
//!
//! A config is xinetd's: `defaults { ... }`, `service NAME { ... }`,
//! `includefile FILE` and `includedir DIR` at the top level, one
//! `name op value...` attribute per line inside a block. Every attribute is
//! documented once, in the README's attribute table.
//!
//! A value changes type as it gets more certain:
//! text -> `RawBlock` (what the file said, with file:line for every
//! attribute) -> [`ServiceSpec`] (validated, defaults applied). Loading never
//! stops at the first problem: every error and warning is collected, a service
//! with an error is left out of [`Config::services`], the others still load.
//!
//! # Layout
//! - `parse`: one file's text -> raw blocks and include lines
//! - `parts`: the value types a [`ServiceSpec`] is made of
//! - `include`: reads files, follows `includefile` / `includedir`
//! - `attrs`: the table of every known attribute, and the checks it drives
//! - `values`: parsers for one attribute's words (sizes, durations, ...)
//! - `defaults`: the `defaults` block and what services inherit from it
//! - `spec`: every block -> [`ServiceSpec`]s (one `defaults`, unique ids, disabling)
//! - `service`: one `service` block + what it inherits -> [`ServiceSpec`]
//! - `preopen`: `HOSTDIR:GUESTDIR[:ro|:rw]` -> [`Preopen`], host dir checked
//! - `egress`: `allow_connect` words -> the addresses a guest may connect to
//! - `admission`: address lists, `access_times`, `cps`, banners (read at load)
//! - `guest`: what a service runs: `server`, INTERNAL, `redirect`, SENSOR
//! - `proxy`: `proxy_protocol` / `proxy_from`: a service behind a balancer
//! - `socket`: `bind` words, `flags`, `v6only`, `backlog` -> addresses and options
//! - `etc_services`: port lookup by service name in `/etc/services`
//! - `log_type`: `SYSLOG facility [level]` / `FILE path [soft [hard]]`
//! - `tenant`: `tenant NAME` blocks, and each tenant's service checked
//!   against its bounds (`tenant::policy`)
//! - `diags`: problems as they are found, put in file order at the end
//!
//! Left to others: compiling the guest (`server` is not opened here),
//! binding sockets, the built-in services behind `type = INTERNAL`.

pub mod access;
mod admission;
mod attrs;
mod defaults;
mod diags;
mod egress;
mod etc_services;
pub mod files;
#[cfg(test)]
mod fuzz;
mod guest;
mod include;
mod log_type;
mod parse;
mod parts;
mod preopen;
mod proxy;
pub mod resolve;
mod service;
mod socket;
mod spec;
mod tenant;
mod transport;
mod values;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

pub use admission::{Banners, Cps};
use diags::{Diags, Report};
use parts::SocketType;
pub use parts::{
    Cap, DEFAULT_BACKLOG, DEFAULT_SOCKET_MODE, DenyTime, GuestSource, Limits, Listen, LogFlags,
    LogType, MaxLoad, Preopen, PreopenQuota, SocketOptions, UnixListen,
};
pub use proxy::ProxyProtocol;
pub use tenant::TenantSpec;

use crate::config::access::{AddressRules, TimeWindow};

/// Linear memory a guest gets when `rlimit_as` is not set: 128 MiB.
pub const DEFAULT_MEMORY: u64 = 128 << 20;
/// CPU time a connection gets when `rlimit_cpu` is not set.
pub const DEFAULT_CPU: Duration = Duration::from_secs(10);
/// Wall-clock time a connection gets when `runtime_max` is not set.
pub const DEFAULT_RUNTIME: Duration = Duration::from_secs(60);
/// How long a connection may sit with no byte moving when `idle_timeout`
/// is not set: a client that connects and says nothing (or a guest that
/// waits on a client gone quiet) gives its slot back after this, not only
/// at `runtime_max`.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30);
/// What a writable preopen may hold when `preopen_quota` is not set: room
/// for a handler's data, not for a guest filling the disk.
pub const DEFAULT_QUOTA_BYTES: u64 = 64 << 20;
pub const DEFAULT_QUOTA_ENTRIES: u64 = 1000;
/// wasm32's address-space ceiling, 4 GiB: what `rlimit_as = UNLIMITED` means.
pub const MAX_MEMORY: u64 = 4 << 30;
/// The smallest `rlimit_as`: one 64 KiB WebAssembly page.
pub const MIN_MEMORY: u64 = 64 << 10;

/// The outcome of loading a config: the services that are valid and on,
/// and every problem found on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Valid, enabled services, in file order.
    pub services: Vec<ServiceSpec>,
    /// Every error, in file order; a service with one is not in `services`.
    pub errors: Vec<ConfigError>,
    /// Things that load but do nothing (e.g. `user`), in file order.
    pub warnings: Vec<ConfigError>,
    /// Every valid `tenant` block, in file order.
    pub tenants: Vec<Arc<TenantSpec>>,
    /// Tenants with an error in their own files (or their folder): a reload
    /// keeps their previous services rather than failing.
    pub broken_tenants: Vec<String>,
    /// What was read, in 16 hex digits: the first 64 bits of a SHA-256 of
    /// every file's path and text in the order read. Equal digests mean
    /// the same files said the same things (the services database and the
    /// environment `passenv` reads are not in it).
    pub digest: String,
}

impl Config {
    /// Errors and warnings as `check` prints them, one line each, warnings
    /// as `FILE:LINE: warning: message`. Ordered by file, then line (the
    /// warnings of a file that has no error come after every error).
    pub fn diagnostics(&self) -> Vec<String> {
        let rank = |file: &Path| {
            self.errors
                .iter()
                .position(|e| e.file == file)
                .unwrap_or(self.errors.len())
        };
        let mut all: Vec<(usize, u32, usize, String)> = Vec::new();
        for (i, e) in self.errors.iter().enumerate() {
            all.push((rank(&e.file), e.line, i, e.to_string()));
        }
        for (i, w) in self.warnings.iter().enumerate() {
            let text = format!("{}:{}: warning: {}", w.file.display(), w.line, w.message);
            all.push((rank(&w.file), w.line, self.errors.len() + i, text));
        }
        // Within one file errors and warnings interleave by line; the index
        // keeps the generation order of messages on the same line.
        all.sort_by_key(|(rank, line, i, _)| (*rank, *line, *i));
        all.into_iter().map(|(.., text)| text).collect()
    }
}

/// One problem in a config file, at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as it was given or joined from an include (not canonicalised).
    pub file: PathBuf,
    /// 1-based line.
    pub line: u32,
    /// The id of the service whose block holds the line, if any.
    pub service: Option<String>,
    /// The tenant whose files hold the line (or whose folder could not be
    /// read), if any: its problem, not the admin's.
    pub tenant: Option<String>,
    /// Lowercase, with names and values in backticks.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A validated service, defaults applied: everything needed to bind its
/// listener and run its guest once per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The service id (`id`, default the block's NAME); unique in a config.
    pub name: String,
    /// Where the `service` block starts.
    pub file: PathBuf,
    /// Line of the `service NAME` header.
    pub line: u32,
    /// The lines of `file` that problems found after loading point at.
    pub lines: SpecLines,
    /// The guest to run.
    pub guest: GuestSource,
    /// `argv[0]` is the file name of `server` (the service name for INTERNAL),
    /// then the words of `server_args`.
    pub argv: Vec<String>,
    /// `env` pairs then `passenv` values read from the daemon's environment
    /// at load; one entry per name (the later one wins). No `REMOTE_*`: those
    /// are added per connection.
    pub env: Vec<(String, String)>,
    /// Where it listens, one socket each, never empty: TCP (or UDP, for a
    /// `dgram` service) on each `bind` address (default 0.0.0.0, or `[::]`
    /// with `flags = IPv6`) at `port` (0: any free port), in `bind`'s
    /// order; then its `listen_unix` socket. A `listen_unix` service
    /// without `port` has no IP endpoint.
    pub listen: Vec<Listen>,
    /// Listening and accepted socket options: `flags`, `v6only`, `backlog`.
    pub socket: SocketOptions,
    /// Most connections served at once; `None` is UNLIMITED.
    pub instances: Cap,
    /// Who may connect: `only_from` and `no_access`.
    pub addresses: AddressRules,
    /// The only TCP addresses a component guest may connect to
    /// (`allow_connect`); empty: no network at all.
    pub allow_connect: std::sync::Arc<[SocketAddr]>,
    /// When the service is open (`access_times`); empty is always.
    pub access_times: Vec<TimeWindow>,
    /// Most connections served at once per client address; `None` is UNLIMITED.
    pub per_source: Cap,
    /// The new-connection rate limit; `None` is none.
    pub cps: Option<Cps>,
    /// New connections are refused while the one-minute load average is
    /// at or above this (`max_load`); `None` is never.
    pub max_load: Option<MaxLoad>,
    /// `banner`, `banner_success`, `banner_fail`.
    pub banners: Banners,
    /// Memory, CPU and wall-clock budgets of one connection's guest.
    pub limits: Limits,
    /// Host directories the guest sees, from `preopen`.
    pub preopens: Vec<Preopen>,
    /// What each writable preopen may hold (`preopen_quota`).
    pub preopen_quota: PreopenQuota,
    /// What is logged when a connection is served.
    pub log_on_success: LogFlags,
    /// What is logged when a connection is refused or its guest fails.
    pub log_on_failure: LogFlags,
    /// Where its connection lines go (`log_type`); `None` is stderr.
    pub log_type: Option<LogType>,
    /// The PROXY protocol header its TCP connections start with
    /// (`proxy_protocol`, `proxy_from`); `None`: none, the socket's peer is
    /// the client.
    pub proxy: Option<ProxyProtocol>,
    /// The tenant whose files hold it, if any.
    pub tenant: Option<Arc<TenantSpec>>,
}

/// Where a service's `server`, `port` and `listen_unix` are written, so
/// that a guest that does not load or a port that cannot be bound is
/// reported at the line that names it. Each is the `service` line when
/// the block does not say (a port from `/etc/services`, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpecLines {
    pub server: u32,
    pub port: u32,
    pub listen_unix: u32,
}

impl ServiceSpec {
    /// Every IP address it listens on (TCP, or UDP for a `dgram` service).
    pub fn ip_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.listen.iter().filter_map(Listen::ip)
    }

    /// Its `listen_unix` socket, if any.
    pub fn unix(&self) -> Option<&UnixListen> {
        self.listen.iter().find_map(|l| match l {
            Listen::Unix(unix) => Some(unix),
            _ => None,
        })
    }

    /// Whether it answers datagrams (`socket_type = dgram`: one guest per
    /// datagram) rather than connections.
    pub fn dgram(&self) -> bool {
        self.listen.iter().any(|l| matches!(l, Listen::Udp(_)))
    }
}

// Flags read as the attribute of the same name reads it, so the command
// line and the config file agree; errors name the flag.

/// A size given on the command line (`--compile-memory 1G`); errors name
/// `flag`.
pub fn parse_size_flag(flag: &str, word: &str) -> Result<u64, String> {
    values::size(flag, &[word.to_owned()])
}

/// A duration given on the command line where UNLIMITED makes no sense;
/// errors name `flag`.
pub fn parse_duration_flag(flag: &str, word: &str) -> Result<Duration, String> {
    values::duration_word(flag, word, false)?
        .ok_or_else(|| format!("`{flag}` takes a duration like 30s, not `{word}`"))
}

/// A limit given on the command line (`--rlimit-cpu`): a duration, or
/// UNLIMITED (`None`); errors name `flag`.
pub fn parse_limit_flag(flag: &str, word: &str) -> Result<Option<Duration>, String> {
    values::duration_word(flag, word, true)
}

/// `--env NAME=VALUE`.
pub fn parse_env_flag(word: &str) -> Result<(String, String), String> {
    match word.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`--env` takes NAME=VALUE, not `{word}`")),
    }
}

/// A count given on the command line (`--per-source-limit`): a number from
/// 1 up, or UNLIMITED; errors name `flag`.
pub fn parse_count_arg(flag: &str, word: &str) -> Result<Cap, String> {
    values::instances(flag, &[word.to_owned()])
}

/// An `--allow-connect` word, read as an `allow_connect` word.
pub fn parse_allow_connect_flag(word: &str) -> Result<Vec<SocketAddr>, String> {
    egress::allow_connect("--allow-connect", &[word.to_owned()])
}

/// A `--preopen HOSTDIR:GUESTDIR[:ro|:rw]`, HOSTDIR relative to the
/// current directory.
pub fn parse_preopen_flag(word: &str) -> Result<Preopen, String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    preopen::single(word, &cwd).map_err(|e| format!("invalid `--preopen {word}`: {e}"))
}

/// Reads `path` and everything it includes. Err only when the top file itself
/// cannot be read; every other problem is in [`Config::errors`].
pub fn load(path: &Path) -> anyhow::Result<Config> {
    load_with(path, &Env::system())
}

/// Parses text already in memory (the built-in default config); `origin` is
/// the name shown in errors and the base for relative paths.
pub fn parse_str(text: &str, origin: &Path) -> Config {
    parse_str_with(text, origin, &Env::system())
}

/// What a load reads besides config files: the services database and the
/// daemon's environment (for `passenv`). Tests pass their own.
pub(crate) struct Env<'a> {
    /// Usually `/etc/services`.
    pub services_file: &'a Path,
    /// Looks up one of the daemon's environment variables.
    pub var: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'static> {
    fn system() -> Self {
        Env {
            services_file: Path::new("/etc/services"),
            var: &|name| std::env::var(name).ok(),
        }
    }
}

/// [`load`] with its services file and environment given.
pub(crate) fn load_with(path: &Path, env: &Env) -> anyhow::Result<Config> {
    let text = files::read_text(path, include::MAX_FILE)
        .with_context(|| format!("failed to read config file `{}`", path.display()))?;
    Ok(parse_str_with(&text, path, env))
}

/// [`parse_str`] with its services file and environment given.
pub(crate) fn parse_str_with(text: &str, origin: &Path, env: &Env) -> Config {
    let mut diags = Diags::default();
    let read = include::read_all(text, origin, &mut diags);
    let (services, tenants) = spec::build(read.blocks, read.tenants, env, &mut diags);
    let mut config = diags.into_config(services, read.digest);
    config.tenants = tenants;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` with an empty environment and the given services file.
    pub(super) fn parse_env(text: &str, services: &str, vars: &[(&str, &str)]) -> Config {
        let dir = std::env::temp_dir().join(format!("wasinetd-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("services-{}", fastrand_name()));
        std::fs::write(&file, services).unwrap();
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let var = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let env = Env {
            services_file: &file,
            var: &var,
        };
        let config = parse_str_with(text, Path::new("t.conf"), &env);
        std::fs::remove_file(&file).unwrap();
        config
    }

    fn fastrand_name() -> String {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        N.fetch_add(1, Ordering::Relaxed).to_string()
    }

    #[test]
    fn error_display_is_file_line_message() {
        let e = ConfigError {
            file: PathBuf::from("conf.d/echo"),
            line: 7,
            service: Some("echo".into()),
            tenant: None,
            message: "unknown attribute `x`".into(),
        };
        assert_eq!(e.to_string(), "conf.d/echo:7: unknown attribute `x`");
    }

    #[test]
    fn only_an_unreadable_top_file_is_an_err() {
        let e = load(Path::new("/nonexistent/wasinetd.conf")).unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.starts_with("failed to read config file `/nonexistent/wasinetd.conf`: "),
            "{text}"
        );
    }

    #[test]
    fn parse_str_resolves_paths_against_the_origin_folder() {
        let text = "service hello {\n type = UNLISTED\n port = 7000\n server = hello.wasm\n}\n";
        let config = parse_str(text, Path::new("built-in/default.conf"));
        assert!(config.errors.is_empty(), "{:?}", config.errors);
        let expected = GuestSource::File(PathBuf::from("built-in/hello.wasm"));
        assert_eq!(config.services[0].guest, expected);
        let config = parse_str("bogus\n", Path::new("built-in/default.conf"));
        assert_eq!(
            config.errors[0].to_string().split(": ").next(),
            Some("built-in/default.conf:1")
        );
    }

    #[test]
    fn diagnostics_interleave_warnings_by_line() {
        let text = "service a\n{\n user = root\n rlimit_as = lots\n group = x\n port = 9000\n}\n";
        let config = parse_env(text, "", &[]);
        assert_eq!(
            config.diagnostics(),
            [
                "t.conf:1: service `a` has no `server`: give the path of its .wasm file (or `type = INTERNAL`)",
                "t.conf:3: warning: `user` has no meaning for a WebAssembly guest (it runs with no uid); ignored",
                "t.conf:4: `rlimit_as` takes a size like 64M or UNLIMITED, not `lots`",
                "t.conf:5: warning: `group` has no meaning for a WebAssembly guest (it runs with no gid); ignored",
            ]
        );
    }
}
