//! What each subcommand does, from parsed arguments to an exit status.
//!
//! `serve` and `check` share the first steps (choose the config, parse and
//! validate it, compile every guest); `serve` then binds and serves, `check`
//! reports and stops. `run` (in [`run`]) runs one guest on this process's
//! own stdio; `build` (in [`build`]) builds a handler script into a guest.

mod build;
mod check;
mod generate;
mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::bundled;
use crate::cli::{Cli, Command};
use crate::config::{self, Config};
use crate::sandbox::{CacheSetting, CompileLimits, Sandbox, SandboxOptions};
use crate::server::systemd::ListenFds;
use crate::server::{self, Request, ServeOptions};

/// How long the guests' runtime may take to drop what still runs once the
/// daemon is done with it: a guest is polled for at most a tick and one
/// bounded host call, so this is a safety net, not a wait.
const GUESTS_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(1);

/// Guests running at once across all services, without `--limit`.
const DEFAULT_LIMIT: u32 = 1000;
/// How long running connections may finish after a stop, without
/// `--shutdown-grace`.
const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a config file is looked for when `-f` is not given.
const SYSTEM_CONFIG: &str = "/etc/wasinetd.conf";

/// Runs the command line; errors come back for `main` to print once.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let cache = cache_setting(&cli);
    let compile = compile_limits(&cli);
    match cli.command {
        None => serve(&cli, cache, compile),
        Some(Command::Check(args)) => check::check(&args, cache, compile),
        Some(Command::Build(args)) => build::build(&args, &cache),
        // 125, as `env` and `timeout` say that the command could not be
        // run: every other status is the guest's.
        Some(Command::Run(args)) => Ok(run::run(args, cache, compile).unwrap_or_else(|e| {
            crate::logging::fatal(&e);
            ExitCode::from(125)
        })),
        Some(Command::Generate { dir }) => {
            generate::generate(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Compile {
            kind,
            engine,
            memory_reservation,
            functions,
            function_bytes,
        }) => {
            let engine = Sandbox::compiler_engine(engine == "pooling", memory_reservation)?;
            Ok(crate::sandbox::compile_child(
                &kind,
                engine,
                functions,
                function_bytes,
            ))
        }
    }
}

/// What compiling one guest may cost, from the flags; compiled in a child
/// process of this binary.
fn compile_limits(cli: &Cli) -> CompileLimits {
    let defaults = CompileLimits::default();
    let args = &cli.compile;
    CompileLimits {
        max_bytes: args.max_guest_size.unwrap_or(defaults.max_bytes),
        max_functions: args.max_guest_functions.unwrap_or(defaults.max_functions),
        max_function_bytes: defaults.max_function_bytes,
        timeout: args.compile_timeout.unwrap_or(defaults.timeout),
        memory: args.compile_memory.unwrap_or(defaults.memory),
        // Without its own path, this process compiles in itself (the
        // shape checks still hold).
        isolate: std::env::current_exe().ok(),
    }
}

/// Where compiled guests are kept, from `--cache-dir` / `--no-cache`.
fn cache_setting(cli: &Cli) -> CacheSetting {
    match (&cli.cache.cache_dir, cli.cache.no_cache) {
        (_, true) => CacheSetting::Off,
        (Some(dir), false) => CacheSetting::Dir(dir.clone()),
        (None, false) => CacheSetting::Auto,
    }
}

/// Where the daemon's config comes from: `-f`, else the system file,
/// else the built-in default. Chosen once, at start: a reload reads the
/// same source again.
#[derive(Debug, Clone)]
enum ConfigSource {
    File(PathBuf),
    BuiltIn,
}

impl ConfigSource {
    fn choose(file: Option<&Path>) -> ConfigSource {
        match file {
            Some(path) => ConfigSource::File(path.to_owned()),
            None if Path::new(SYSTEM_CONFIG).exists() => {
                ConfigSource::File(PathBuf::from(SYSTEM_CONFIG))
            }
            None => ConfigSource::BuiltIn,
        }
    }

    fn load(&self) -> anyhow::Result<Config> {
        match self {
            ConfigSource::File(path) => config::load(path),
            ConfigSource::BuiltIn => Ok(config::parse_str(
                bundled::DEFAULT_CONFIG,
                Path::new("<built-in>"),
            )),
        }
    }
}

/// Reads the config the daemon should use: `-f`, else the system file, else
/// the built-in default; and where it came from.
fn load_config(file: Option<&Path>) -> anyhow::Result<(ConfigSource, Config)> {
    let source = ConfigSource::choose(file);
    if let ConfigSource::BuiltIn = source {
        tracing::info!(
            "no -f given and {SYSTEM_CONFIG} does not exist: serving the built-in default \
             config (bundled guests on 127.0.0.1; see examples/default.conf)"
        );
    }
    let config = source.load()?;
    Ok((source, config))
}

fn serve(cli: &Cli, cache: CacheSetting, compile: CompileLimits) -> anyhow::Result<ExitCode> {
    // SAFETY: no thread has started yet (the sandbox's epoch ticker and the
    // runtime's workers come later), so changing the environment is sound.
    let upgrade = unsafe { server::upgrade::Inherited::take() };
    // SAFETY: as above.
    let listen_fds = unsafe { ListenFds::take(upgrade.as_ref().map(|u| &u.bound[..])) };
    let grace = cli.serve.shutdown_grace.unwrap_or(DEFAULT_GRACE);
    if let Some(addr) = cli.serve.admin {
        crate::server::admin::check_addr(addr, cli.serve.admin_any)?;
    }
    let limit = cli.serve.limit.unwrap_or(DEFAULT_LIMIT).max(1);
    let share = |cap: Option<crate::config::Cap>| cap.map(|c| c.or(Some(limit)));
    let mut opts = ServeOptions {
        max_instances: limit,
        shares: Arc::new(crate::admission::Shares::new(
            limit,
            share(cli.serve.per_service_limit),
            share(cli.serve.per_source_limit),
            share(cli.serve.dgram_limit),
        )),
        shutdown_grace: grace,
        drain_delay: cli.serve.drain_delay.unwrap_or_default(),
        admin: cli.serve.admin,
        listen_fds,
        config_digest: String::new(),
        tenants: Vec::new(),
        exec: server::upgrade::Exec::current(),
        upgraded_from: upgrade.map(|u| u.ready).unwrap_or_default(),
    };
    let (source, config) = load_config(cli.file.as_deref())?;
    opts.config_digest.clone_from(&config.digest);
    for w in &config.warnings {
        crate::logging::config_warning(w);
    }
    for e in &config.errors {
        tracing::error!("{e}");
    }
    crate::logging::sink::install(crate::logging::sink::open(&config.services)?);
    opts.tenants = crate::conn::tenant::apply(&config.tenants);
    let listeners = config.services.len() + usize::from(opts.admin.is_some());
    let sandbox = Arc::new(Sandbox::new(&SandboxOptions {
        max_instances: opts.max_instances,
        cache,
        compile,
        fd_budget: server::descriptors::budget(opts.max_instances, listeners),
        ..SandboxOptions::default()
    })?);
    // What the cache holds starts at once; the rest is compiled while it
    // serves.
    let prepared = server::prepare_cached(&sandbox, config.services);
    for f in &prepared.failed {
        tracing::error!("{f}");
    }
    if !prepared.pending.is_empty() {
        tracing::info!(
            "compiling {} service(s) not in the cache while the others start: {}",
            prepared.pending.len(),
            prepared
                .pending
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    sandbox.prune_cache();
    // Two runtimes: guests run on worker threads of their own, one per
    // core; the daemon's own work (accepting, admission, signals, reloads,
    // the admin listener) runs on this thread, which no guest ever holds.
    let guests = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wasinetd-guest")
        .build()
        .context("failed to start the guests' runtime")?;
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the daemon's runtime")?;
    let served = control.block_on(async {
        let requests = signal_requests()?;
        let load: server::ConfigLoader = Box::new(move || source.load());
        server::run(
            sandbox,
            prepared,
            load,
            &opts,
            requests,
            guests.handle().clone(),
        )
        .await
    });
    // Whatever still runs is ended: a guest in wasm code at its next tick
    // (`stop_all` above), any other task at its next poll.
    guests.shutdown_timeout(GUESTS_SHUTDOWN);
    // A reload abandoned by the stop may still be compiling on one of this
    // runtime's blocking threads: it is not waited for (its compiler
    // process dies with this one).
    control.shutdown_background();
    served?;
    Ok(ExitCode::SUCCESS)
}

/// The daemon's signals as requests: SIGTERM and SIGINT stop (each further
/// one cuts the drain delay, then the grace, short), SIGHUP reloads the config, SIGUSR1 dumps the
/// state, SIGUSR2 upgrades (nginx's and HAProxy's signal for it). Handlers
/// are installed before this returns, so before readiness.
fn signal_requests() -> anyhow::Result<mpsc::Receiver<Request>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("cannot handle SIGUSR1")?;
    let mut usr2 = signal(SignalKind::user_defined2()).context("cannot handle SIGUSR2")?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let (name, request) = tokio::select! {
                _ = term.recv() => ("SIGTERM", Request::Stop),
                _ = int.recv() => ("SIGINT", Request::Stop),
                _ = hup.recv() => ("SIGHUP", Request::Reload),
                _ = usr1.recv() => ("SIGUSR1", Request::Dump),
                _ = usr2.recv() => ("SIGUSR2", Request::Upgrade),
            };
            tracing::info!("received {name}");
            if tx.send(request).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
