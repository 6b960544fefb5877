//! `wasinetd run`: one guest on this process's stdin/stdout, under the same
//! sandbox and limits a service's guest gets.
//!
//! This is how a handler is developed (`echo hi | wasinetd run upper.wasm`),
//! and how wasinetd becomes the `server` of xinetd, tcpserver or a systemd
//! `Accept=yes` unit: when stdin is a socket, its peer fills `REMOTE_HOST`,
//! `REMOTE_ADDR` and `REMOTE_PORT` as if wasinetd had accepted it.
//!
//! A component asking `wasinetd:handler/connection` learns the same: the
//! socket's protocol and both its addresses when stdin is a socket,
//! protocol `stdio` and no addresses when it is not. The service name is
//! the guest file's name (argv[0]), and the connection id this process's
//! id, which is what xinetd and tcpserver log for the connection.
//! `--allow-connect` is the service attribute `allow_connect`, refused for
//! a preview 1 module as the config refuses it.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::RunArgs;
use crate::config::{self, Limits};
use crate::conn::stream::ip_env;
use crate::sandbox::{
    CacheSetting, CompileLimits, Connection, Endpoint, Invocation, Sandbox, SandboxOptions,
    Transport,
};

pub fn run(args: RunArgs, cache: CacheSetting, compile: CompileLimits) -> anyhow::Result<ExitCode> {
    let defaults = Limits::default();
    let limits = Limits {
        memory: args.rlimit_as.unwrap_or(defaults.memory),
        cpu: args.rlimit_cpu.map_or(defaults.cpu, |l| l.0),
        files: defaults.files,
        // The launcher owns the connection (and stdin may be a terminal).
        idle: None,
        runtime: args.runtime_max.map_or(defaults.runtime, |l| l.0),
    };
    let mut env = args.env;
    for name in &args.passenv {
        if let Ok(v) = std::env::var(name) {
            env.push((name.clone(), v));
        }
    }
    let preopens = args.preopen;
    let mut allow_connect = Vec::new();
    for addr in args.allow_connect.into_iter().flat_map(|a| a.0) {
        if !allow_connect.contains(&addr) {
            allow_connect.push(addr);
        }
    }
    let mut argv = vec![
        args.guest
            .file_name()
            .map_or_else(|| "guest".into(), |n| n.to_string_lossy().into_owned()),
    ];
    argv.extend(args.args.iter().cloned());
    if let Some(peer) = stdin_peer() {
        env = ip_env(&env, peer);
    }
    let connection = stdin_connection(&argv[0]);

    let max_bytes = compile.max_bytes;
    let sandbox = Sandbox::new(&SandboxOptions {
        max_instances: 1,
        cache,
        compile,
        ..SandboxOptions::default()
    })?;
    let guest = config::files::read(&args.guest, max_bytes)
        .context("cannot read the guest file")
        .and_then(|bytes| sandbox.load(&bytes))
        .with_context(|| format!("cannot load guest `{}`", args.guest.display()))?;
    if !allow_connect.is_empty() && !guest.is_component() {
        anyhow::bail!(
            "--allow-connect needs a component (wasm32-wasip2) guest, and `{}` is a preview 1 \
             module, which has no sockets",
            args.guest.display()
        );
    }
    // The connection id is this process's, as xinetd and tcpserver log it.
    let remarks =
        crate::logging::GuestReport::new(connection.service.clone(), std::process::id().into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let outcome = runtime
        .block_on(guest.run(Invocation {
            argv: &argv,
            env: &env,
            preopens: &preopens,
            quotas: &crate::sandbox::quotas(&preopens, Default::default()),
            limits,
            stdin: tokio::io::stdin(),
            stdout: tokio::io::stdout(),
            stderr: tokio::io::stderr(),
            connection,
            allow_connect: allow_connect.into(),
            report: remarks,
            watch: None,
            gathered: None,
            pool: Default::default(),
        }))
        .outcome;
    if outcome.is_abnormal() {
        tracing::warn!("{} {outcome}", args.guest.display());
    }
    // The runtime's stdin reader thread may be blocked in read(2); do not
    // wait for it.
    runtime.shutdown_background();
    Ok(ExitCode::from(
        u8::try_from(outcome.exit_status()).unwrap_or(1),
    ))
}

/// The peer of stdin, when stdin is a connected socket.
fn stdin_peer() -> Option<std::net::SocketAddr> {
    let stdin = std::io::stdin();
    socket2::SockRef::from(&stdin).peer_addr().ok()?.as_socket()
}

/// What a component learns about its "connection": stdin's socket, if it
/// is one (as under xinetd, tcpserver or a systemd `Accept=yes` unit).
fn stdin_connection(service: &str) -> Connection {
    let stdin = std::io::stdin();
    let sock = socket2::SockRef::from(&stdin);
    let mut connection = Connection {
        service: service.into(),
        id: u64::from(std::process::id()),
        transport: Transport::Stdio,
        peer: None,
        local: None,
    };
    // getsockname fails (ENOTSOCK) unless stdin is a socket.
    let Ok(local) = sock.local_addr() else {
        return connection;
    };
    connection.transport = match (local.is_unix(), sock.r#type()) {
        (true, _) => Transport::Unix,
        (false, Ok(socket2::Type::DGRAM)) => Transport::Udp,
        (false, _) => Transport::Tcp,
    };
    connection.local = Endpoint::of(&local);
    // An unconnected UDP socket (xinetd's `wait = yes`) has no peer.
    connection.peer = sock.peer_addr().ok().and_then(|a| Endpoint::of(&a));
    connection
}
