//! The command line: `wasinetd [-f FILE]` serves (the default), `check`
//! validates, `run` runs one guest on this process's own stdin/stdout,
//! `build` builds a handler script into a guest.
//! Each takes only the options it uses: the daemon's settings only when
//! serving, `-f` not for `run`; what every command shares (the cache, the
//! compile limits, the log format) may come before or after its name.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Cap;
use crate::logging;

/// A value parser for a size flag (`64M`), read as `rlimit_as` is.
fn size(flag: &'static str) -> impl Fn(&str) -> Result<u64, String> + Clone {
    move |word| crate::config::parse_size_flag(flag, word)
}

/// A value parser for a duration flag (`30s`, `500ms`); UNLIMITED is not one.
fn duration(flag: &'static str) -> impl Fn(&str) -> Result<std::time::Duration, String> + Clone {
    move |word| crate::config::parse_duration_flag(flag, word)
}

/// A limit flag's value: a duration, or UNLIMITED (`None`). (A bare
/// `Option<Option<_>>` would tell clap the flag's value is optional.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<std::time::Duration>);

/// A value parser for a limit flag (`500ms`, `30s`, or UNLIMITED).
fn limit(flag: &'static str) -> impl Fn(&str) -> Result<Limit, String> + Clone {
    move |word| crate::config::parse_limit_flag(flag, word).map(Limit)
}

/// The addresses one `--allow-connect` word names (a host name may
/// resolve to several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addrs(pub Vec<std::net::SocketAddr>);

fn addrs(word: &str) -> Result<Addrs, String> {
    crate::config::parse_allow_connect_flag(word).map(Addrs)
}

/// A value parser for a count flag: a number from 1 up, or UNLIMITED, read
/// as the config reads `instances`; errors name the flag.
fn count(flag: &'static str) -> impl Fn(&str) -> Result<Cap, String> + Clone {
    move |word| crate::config::parse_count_arg(flag, word)
}

/// What `wasinetd --help` says after the options.
const SERVE_HELP: &str = "\
Signals:
  SIGHUP        reload: read the same config again, compile what changed while
                the old config serves, then switch; on any error keep serving
                the old one (logged, and shown in /status and /metrics)
  SIGUSR1       log the state: every service, listener and running connection
  SIGUSR2       upgrade: start the binary at the same path again, hand it every
                socket, and once it is ready stop accepting and drain; if it
                fails, keep serving (docs/deploy.md)
  SIGTERM/INT   stop: with --drain-delay, first turn not ready (/readyz 503)
                while still serving for the delay; then stop accepting and
                let running connections finish for --shutdown-grace; each
                further signal cuts the wait under way short (the delay,
                then the grace: running connections are ended)

Environment:
  WASINETD_LOG  the log filter, e.g. `warn` or `info,wasinetd::guest=off`
                (default: info; `check` and `run`: warn)
  LISTEN_FDS    sockets passed by systemd (socket activation), matched to
                services by address

Examples:
  wasinetd                                 serve /etc/wasinetd.conf, or the
                                           built-in config if it is absent
  wasinetd -f my.conf --admin 127.0.0.1:9100
  wasinetd check -f my.conf --bind         validate, compile, try every port
  echo hi | wasinetd run upper.wasm        one guest on this terminal";

/// What `wasinetd run --help` says after the options.
const RUN_HELP: &str = "\
Exit status: the guest's own, or
  134  it trapped (or passed the 10,000 open handles limit)
  137  it passed its memory limit (--rlimit-as)
  152  it passed its CPU budget (--rlimit-cpu)
  124  it passed its wall-clock limit (--runtime-max) or sat idle too long
  141  the client went away
  143  it was stopped (SIGTERM)
  125  it could not be run (not a guest, does not compile)
  2    a bad option (the error names it), as for every command

When stdin is a socket, REMOTE_HOST, REMOTE_ADDR and REMOTE_PORT name the
peer. Nothing but the guest's own stderr and real errors is written to
stderr (inetd-style launchers put the connection there too).

Examples:
  echo hi | wasinetd run upper.wasm
  wasinetd run --rlimit-as 64M --runtime-max 30s --env GREETING=hi upper.wasm
  systemd-socket-activate --inetd -a -l 127.0.0.1:8080 wasinetd run hello.wasm";

/// What `wasinetd build --help` says after the options.
const BUILD_HELP: &str = "\
Python (.py): built with componentize-py 0.25.1 (CPython in WebAssembly),
fetched with pip on first use. Needs python3 (3.9 or later) with pip. The
script's top level runs once, at build time: its imports and constants cost
nothing per connection, but nothing secret may be made there (every
connection starts from the same snapshot). main() runs per connection.
CPython's shared libraries are then merged into one module (--no-merge keeps
them apart, at about twice the CPU per connection).

JavaScript (.js): built with componentize-qjs 0.4.5 (QuickJS-ng), fetched
with npm on first use. Needs node (18 or later) and npm. The script, written
for `quickjs.wasm --std`, is compiled at build time and its whole text runs
per connection, with std (in, out, err, getenv), print, console and
connection.

Each tool goes into the cache directory's tools/ folder (see --cache-dir),
checked against its pinned SHA-256 there and again before every build. A
connection's run gets the service's environment, preopens and limits. The
guest records the script's path and SHA-256: `wasinetd check` warns when the
script changed since.

Examples:
  wasinetd build app/hello.py -o hello.wasm
  wasinetd build app/hello.js -o hello-js.wasm
  wasinetd run hello.wasm < request.txt";

/// What `wasinetd check --help` says after the options.
const CHECK_HELP: &str = "\
Exit status: 0 when every service is valid and its guest compiles, else 1.
Without --bind, the ports are not tried: one in use fails only at start.

Examples:
  wasinetd check -f /etc/wasinetd.conf
  wasinetd check -v --bind -f my.conf";

/// xinetd's job, done with WebAssembly: one sandboxed WASI guest per connection.
#[derive(Debug, Parser)]
#[command(
    name = "wasinetd",
    version = crate::build_info::LONG,
    about,
    long_about = None,
    after_help = SERVE_HELP
)]
pub struct Cli {
    /// Config file (xinetd syntax). Default: /etc/wasinetd.conf if it
    /// exists, else the built-in config serving the bundled guests.
    #[arg(
        short = 'f',
        long = "config",
        value_name = "FILE",
        help_heading = "Config"
    )]
    pub file: Option<PathBuf>,

    #[command(flatten)]
    pub serve: ServeArgs,

    #[command(flatten)]
    pub cache: CacheArgs,

    #[command(flatten)]
    pub compile: CompileArgs,

    /// Log lines as text, or as one JSON object each (for log shippers).
    /// The readiness lines (`listening service=NAME addr=IP:PORT`) stay
    /// plain text.
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value_t = LogFormat::Text,
        global = true,
        help_heading = "Logging"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The options given that only serving uses, when a command is given
    /// too (`wasinetd -f FILE run ...`): the first one's name.
    pub fn misplaced(&self) -> Option<&'static str> {
        self.command.as_ref()?;
        let s = &self.serve;
        [
            (self.file.is_some(), "-f/--config"),
            (s.limit.is_some(), "--limit"),
            (s.per_service_limit.is_some(), "--per-service-limit"),
            (s.per_source_limit.is_some(), "--per-source-limit"),
            (s.dgram_limit.is_some(), "--dgram-limit"),
            (s.shutdown_grace.is_some(), "--shutdown-grace"),
            (s.drain_delay.is_some(), "--drain-delay"),
            (s.admin.is_some(), "--admin"),
            (s.admin_any, "--admin-any"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }

    /// The least severe log lines written when `WASINETD_LOG` does not say:
    /// the daemon logs from `info` up; `check` only warnings and errors
    /// unless `-v`; `run` warnings and errors, and only errors when its
    /// stderr is a socket (xinetd and inetd-style launchers give the guest
    /// the connection as fds 0, 1 and 2: a log line would reach the client).
    pub fn default_log_level(&self) -> tracing::Level {
        match &self.command {
            None => tracing::Level::INFO,
            Some(Command::Check(c)) if c.verbose => tracing::Level::INFO,
            Some(Command::Check(_)) => tracing::Level::WARN,
            Some(Command::Run(_)) if stderr_is_a_socket() => tracing::Level::ERROR,
            Some(Command::Run(_) | Command::Build(_)) => tracing::Level::WARN,
            Some(Command::Compile { .. } | Command::Generate { .. }) => tracing::Level::ERROR,
        }
    }
}

/// Whether fd 2 is a socket (getsockname fails with ENOTSOCK otherwise).
fn stderr_is_a_socket() -> bool {
    let stderr = std::io::stderr();
    socket2::SockRef::from(&stderr).local_addr().is_ok()
}

/// How log lines are written (`--log-format`): [`logging::LogFormat`] as
/// a flag's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `LEVEL message key=value...`, for people.
    Text,
    /// One JSON object per line, with structured fields.
    Json,
}

impl From<LogFormat> for logging::LogFormat {
    fn from(format: LogFormat) -> Self {
        match format {
            LogFormat::Text => logging::LogFormat::Text,
            LogFormat::Json => logging::LogFormat::Json,
        }
    }
}

// Parsed once at start-up, then taken apart: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and validate the config and compile every guest, then exit:
    /// 0 with one summary line per service, else every error as FILE:LINE.
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
    /// Run one guest on this process's stdin/stdout under the same sandbox,
    /// e.g. as the `server` of xinetd, tcpserver or a systemd Accept=yes unit.
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// Build a handler script (Python or JavaScript) into a guest that
    /// starts in milliseconds: the interpreter's start-up and the script's
    /// compilation are done once, here, and snapshotted.
    #[command(after_help = BUILD_HELP)]
    Build(BuildArgs),
    /// Write the manual pages and shell completions into DIR (for
    /// packagers: DIR/man, DIR/completions).
    #[command(name = "__generate", hide = true)]
    Generate {
        /// Where to write them.
        dir: PathBuf,
    },
    /// The compiler process the daemon starts for each guest it compiles
    /// (reads the guest on stdin, writes native code on stdout).
    #[command(name = "__compile", hide = true)]
    Compile {
        /// `module` or `component`.
        kind: String,
        /// `pooling` or `on-demand`: the engine the code is for.
        engine: String,
        /// Bytes each of the daemon's linear memories reserves (its
        /// `--limit` decides).
        memory_reservation: u64,
        /// The most functions the guest may have.
        functions: u64,
        /// The largest function body.
        function_bytes: u64,
    },
}

/// `wasinetd build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The handler script: a `.py` file whose `main()` answers one
    /// connection on stdin/stdout (its whole folder is built in: its
    /// modules can be imported), or a `.js` file in QuickJS's `--std` style.
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,

    /// Where to write the guest [default: SCRIPT with `.wasm` for its extension].
    #[arg(short = 'o', long = "output", value_name = "OUT.wasm")]
    pub output: Option<PathBuf>,

    /// Python: keep CPython's shared libraries as componentize-py linked
    /// them instead of merging them into one module. Only to compare: the
    /// guest is the same, at about twice the CPU per connection.
    #[arg(long)]
    pub no_merge: bool,
}

/// `wasinetd check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file (xinetd syntax). Default: /etc/wasinetd.conf if it
    /// exists, else the built-in config.
    #[arg(short = 'f', long = "config", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Also log what loading did (which guests were compiled or taken
    /// from the cache, and how long it took).
    #[arg(short, long)]
    pub verbose: bool,

    /// Also bind every listener and release it at once: a port in use, or
    /// one this user may not bind, is reported at its `port` line.
    #[arg(long)]
    pub bind: bool,
}

/// Where compiled guests are kept.
#[derive(Debug, Args)]
#[command(next_help_heading = "Compiled guests")]
pub struct CacheArgs {
    /// Keep compiled guests in DIR across restarts. Default:
    /// $CACHE_DIRECTORY or $STATE_DIRECTORY (systemd), else
    /// /var/cache/wasinetd for root, else $XDG_CACHE_HOME/wasinetd or
    /// ~/.cache/wasinetd.
    #[arg(long, value_name = "DIR", global = true)]
    pub cache_dir: Option<PathBuf>,

    /// Compile every guest in memory; read and write no cache.
    #[arg(long, global = true, conflicts_with = "cache_dir")]
    pub no_cache: bool,
}

/// What compiling one guest may cost: a guest is untrusted input, and a
/// small one can make a compiler work for minutes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Compiled guests")]
pub struct CompileArgs {
    /// The largest guest file, e.g. 128M.
    #[arg(long, value_name = "SIZE", global = true, value_parser = size("--max-guest-size"))]
    pub max_guest_size: Option<u64>,

    /// The most functions a guest may have (all its modules together);
    /// one function's body may be at most 1 MiB.
    #[arg(long, value_name = "N", global = true)]
    pub max_guest_functions: Option<u64>,

    /// How long compiling one guest may take, e.g. 60s.
    #[arg(long, value_name = "DURATION", global = true, value_parser = duration("--compile-timeout"))]
    pub compile_timeout: Option<std::time::Duration>,

    /// How much memory compiling one guest may use, e.g. 2G.
    #[arg(long, value_name = "SIZE", global = true, value_parser = size("--compile-memory"))]
    pub compile_memory: Option<u64>,
}

/// Daemon settings that are not per service.
#[derive(Debug, Args)]
#[command(next_help_heading = "Daemon")]
pub struct ServeArgs {
    /// Guests that may run at once across all services (xinetd's -limit);
    /// connections beyond it wait in the listen backlog [default: 1000].
    /// Past about 12,000, each guest's memory is capped below 4 GiB so the
    /// pool fits the address space (256 MiB at 100,000; logged at start).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,

    /// Guests one service may run when it leaves `instances` unset
    /// (default: half of --limit), or UNLIMITED.
    #[arg(long, value_name = "N", value_parser = count("--per-service-limit"))]
    pub per_service_limit: Option<Cap>,

    /// Guests one source address (an IPv6 /64, a Unix peer's uid) may hold
    /// across the services that leave `per_source` unset (default: an
    /// eighth of --limit), or UNLIMITED.
    #[arg(long, value_name = "N", value_parser = count("--per-source-limit"))]
    pub per_source_limit: Option<Cap>,

    /// Guests the datagram (UDP) services may run together (default: half
    /// of --limit), or UNLIMITED.
    #[arg(long, value_name = "N", value_parser = count("--dgram-limit"))]
    pub dgram_limit: Option<Cap>,

    /// How long running connections may finish after SIGTERM or SIGINT,
    /// e.g. 30s [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = duration("--shutdown-grace"))]
    pub shutdown_grace: Option<std::time::Duration>,

    /// After SIGTERM or SIGINT, stay not ready (/readyz 503) but go on
    /// accepting for this long before --shutdown-grace begins, so that
    /// balancers take the host out of rotation first, e.g. 5s [default: 0s].
    #[arg(long, value_name = "DURATION", value_parser = duration("--drain-delay"))]
    pub drain_delay: Option<std::time::Duration>,

    /// Serve /metrics, /health and /status over HTTP on ADDR, e.g.
    /// 127.0.0.1:9100 (off by default; loopback only unless --admin-any).
    #[arg(long, value_name = "IP:PORT")]
    pub admin: Option<SocketAddr>,

    /// Allow --admin on an address other than loopback.
    #[arg(long, requires = "admin")]
    pub admin_any: bool,
}

/// `wasinetd run`: the sandbox options of a service, as flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Memory cap (rlimit_as): a size like 64M, or UNLIMITED.
    #[arg(long, value_name = "SIZE", help_heading = "Sandbox", value_parser = size("--rlimit-as"))]
    pub rlimit_as: Option<u64>,

    /// CPU budget (rlimit_cpu): seconds or a duration like 500ms, or UNLIMITED.
    #[arg(long, value_name = "DURATION", help_heading = "Sandbox", value_parser = limit("--rlimit-cpu"))]
    pub rlimit_cpu: Option<Limit>,

    /// Wall-clock limit (runtime_max): a duration like 30s, or UNLIMITED.
    #[arg(long, value_name = "DURATION", help_heading = "Sandbox", value_parser = limit("--runtime-max"))]
    pub runtime_max: Option<Limit>,

    /// Set a variable in the guest's environment (repeatable).
    #[arg(long, value_name = "NAME=VALUE", help_heading = "Sandbox", value_parser = crate::config::parse_env_flag)]
    pub env: Vec<(String, String)>,

    /// Pass a variable of this process's environment through (repeatable).
    #[arg(long, value_name = "NAME", help_heading = "Sandbox")]
    pub passenv: Vec<String>,

    /// Let the guest see HOSTDIR as GUESTDIR (repeatable; ro by default).
    #[arg(
        long,
        value_name = "HOSTDIR:GUESTDIR[:ro|:rw]",
        help_heading = "Sandbox",
        value_parser = crate::config::parse_preopen_flag
    )]
    pub preopen: Vec<crate::config::Preopen>,

    /// Let a component guest open TCP connections to these addresses
    /// (allow_connect; repeatable, IP:PORT, [IPv6]:PORT or HOST:PORT).
    #[arg(long, value_name = "IP:PORT", help_heading = "Sandbox", value_parser = addrs)]
    pub allow_connect: Vec<Addrs>,

    /// The guest: a WASI preview 1 module or preview 2 component.
    #[arg(value_name = "GUEST.wasm")]
    pub guest: PathBuf,

    /// Arguments after the guest's name (its argv[1..]).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
