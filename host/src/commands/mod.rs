//! What each subcommand does, from parsed arguments to an exit status.
//!
//! `serve` and `check` share the first steps (choose the config, parse and
//! validate it, compile every guest); `serve` then binds and serves, `check`
//! reports and stops. `run` (in [`run`]) runs one guest on this process's
//! own stdio.

mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::bundled;
use crate::cli::{Cli, Command};
use crate::config::{self, Config};
use crate::sandbox::{CacheSetting, Sandbox, SandboxOptions};
use crate::server::{self, ServeOptions};
use crate::systemd::ListenFds;

/// Where a config file is looked for when `-f` is not given.
const SYSTEM_CONFIG: &str = "/etc/wasinetd.conf";

/// Runs the command line; errors come back for `main` to print once.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let cache = cache_setting(&cli);
    match cli.command {
        None => serve(&cli, cache),
        Some(Command::Check) => check(cli.file.as_deref(), cache),
        Some(Command::Run(args)) => run::run(args, cache),
    }
}

/// Where compiled guests are kept, from `--cache-dir` / `--no-cache`.
fn cache_setting(cli: &Cli) -> CacheSetting {
    match (&cli.cache_dir, cli.no_cache) {
        (_, true) => CacheSetting::Off,
        (Some(dir), false) => CacheSetting::Dir(dir.clone()),
        (None, false) => CacheSetting::Auto,
    }
}

/// Reads the config the daemon should use: `-f`, else the system file, else
/// the built-in default.
fn load_config(file: Option<&Path>) -> anyhow::Result<Config> {
    let path = match file {
        Some(path) => path.to_owned(),
        None if Path::new(SYSTEM_CONFIG).exists() => PathBuf::from(SYSTEM_CONFIG),
        None => {
            tracing::info!(
                "no -f given and {SYSTEM_CONFIG} does not exist: serving the built-in default \
                 config (bundled guests on 127.0.0.1; see examples/default.conf)"
            );
            return Ok(config::parse_str(
                bundled::DEFAULT_CONFIG,
                Path::new("<built-in>"),
            ));
        }
    };
    config::load(&path)
}

fn serve(cli: &Cli, cache: CacheSetting) -> anyhow::Result<ExitCode> {
    // SAFETY: no thread has started yet (the sandbox's epoch ticker and the
    // runtime's workers come later), so changing the environment is sound.
    let listen_fds = unsafe { ListenFds::take() };
    let grace = config::parse_duration_arg(&cli.serve.shutdown_grace)
        .context("invalid --shutdown-grace")?;
    if let Some(addr) = cli.serve.admin {
        crate::admin::check_addr(addr, cli.serve.admin_any)?;
    }
    let mut opts = ServeOptions {
        max_instances: cli.serve.limit.max(1),
        shutdown_grace: grace,
        admin: cli.serve.admin,
        failed: Vec::new(),
        listen_fds,
    };
    let config = load_config(cli.file.as_deref())?;
    for w in &config.warnings {
        tracing::warn!("{}:{}: {}", w.file.display(), w.line, w.message);
    }
    for e in &config.errors {
        tracing::error!("{e}");
    }
    crate::logging::sink::open(&config.services)?;
    let sandbox = Sandbox::new(&SandboxOptions {
        max_instances: opts.max_instances,
        cache,
        ..SandboxOptions::default()
    })?;
    let (services, failed) = server::prepare(&sandbox, config.services);
    for f in &failed {
        tracing::error!("{f}");
    }
    opts.failed = failed.into_iter().map(|f| f.spec.name).collect();
    sandbox.prune_cache();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(async {
        let (shutdown, force) = stop_signals()?;
        server::run(services, &opts, shutdown, force).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Two futures: the first stop request (SIGTERM or SIGINT) and the second.
/// Handlers are installed before this returns, so before readiness.
fn stop_signals() -> anyhow::Result<(
    impl Future<Output = ()> + use<>,
    impl Future<Output = ()> + use<>,
)> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let (second_tx, second_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        for tx in [first_tx, second_tx] {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!("received {name}");
            let _ = tx.send(());
        }
    });
    Ok((
        async move {
            let _ = first_rx.await;
        },
        async move {
            let _ = second_rx.await;
        },
    ))
}

fn check(file: Option<&Path>, cache: CacheSetting) -> anyhow::Result<ExitCode> {
    let config = load_config(file)?;
    let mut ok = config.errors.is_empty();
    for line in config.diagnostics() {
        eprintln!("{line}");
    }
    let sandbox = Sandbox::new(&SandboxOptions {
        max_instances: 1,
        cache,
        ..SandboxOptions::default()
    })?;
    let (services, failed) = server::prepare(&sandbox, config.services);
    for f in &failed {
        eprintln!("{f}");
        ok = false;
    }
    for s in &services {
        println!("{}", summary(s));
    }
    Ok(if ok && !services.is_empty() {
        ExitCode::SUCCESS
    } else {
        if ok {
            eprintln!("no service is enabled");
        }
        ExitCode::FAILURE
    })
}

/// One line describing a prepared service, as `check` prints it.
fn summary(s: &crate::service::Service) -> String {
    let spec = &s.spec;
    let kind = match s.guest() {
        Some(g) if g.is_component() => "component",
        Some(_) => "module",
        None => "redirect",
    };
    let or_unlimited =
        |d: Option<std::time::Duration>| d.map_or("UNLIMITED".to_owned(), |d| format!("{d:?}"));
    format!(
        "{name} {addr} {kind} {source} rlimit_as={mem}K rlimit_cpu={cpu} runtime_max={rt} instances={inst}",
        name = spec.name,
        addr = spec
            .addrs()
            .map(|a| a.to_string())
            .chain(
                spec.unix
                    .iter()
                    .map(|u| format!("unix:{}", u.path.display()))
            )
            .collect::<Vec<_>>()
            .join(","),
        source = spec.guest,
        mem = spec.limits.memory >> 10,
        cpu = or_unlimited(spec.limits.cpu),
        rt = or_unlimited(spec.limits.runtime),
        inst = spec
            .instances
            .map_or("UNLIMITED".to_owned(), |n| n.to_string()),
    )
}
