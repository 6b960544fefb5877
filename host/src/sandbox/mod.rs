//! The sandbox: one shared wasmtime engine, guests compiled once, and one
//! fresh isolated instance per run.
//!
//! [`Sandbox`] owns the engine (pooling allocator, copy-on-write memory
//! images, epoch interruption) and the one thread that ticks the epoch.
//! [`Sandbox::load`] compiles a guest, tells a WASI preview 1 module from a
//! preview 2 component, links it against WASI and pre-instantiates it, so
//! that [`Guest::run`] costs a store, a WASI context and an instantiation
//! from the pool. A run sees only what its [`Invocation`] gives it: args,
//! environment, preopened directories, stdio; no network, no other files;
//! a component may also ask about its connection ([`connection`]).
//! Limits are enforced here: memory by the store limiter ([`meter`]), CPU
//! (charged per poll of the run by [`cpu`]) and the wall clock by the epoch
//! callback ([`watch`]) while the guest runs, and by a timeout around the
//! whole run while it waits. Compiled code is kept on disk by the [`cache`], when one is
//! configured. Accepting connections and logging are left to the caller.

mod cache;
mod compile;
mod connection;
mod cpu;
mod egress;
mod engine;
mod guard;
mod lane;
mod limits;
mod meter;
mod outcome;
mod report;
mod stdio;
mod watch;
mod world;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Engine, InstancePre, Linker, Module, Store};
use wasmtime_wasi::cli::{StdinStream, StdoutStream};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use cache::{Cache, CacheSetting, MAX_AGE, Origin};
pub use compile::{CompileLimits, child_main as compile_child};
pub use connection::{Connection, Endpoint, Transport};
use cpu::Charged;
use guard::p1::GuardedP1;
use guard::p2::{GuardedFs, GuardedSockets, GuardedView, P2Guard};
pub use guard::{DiskQuota, FdBudget, GuardCounts, Usage as DiskUsage, quotas};
use guard::{Guard, PreopenRules, Refusals};
use lane::BusyLane;
pub use limits::{Limits, Preopen, PreopenQuota};
pub use meter::Meter;
pub use outcome::{Kind, Outcome, RunReport};
pub use report::{Report, Unheard};
pub use stdio::{GuestLog, Socket, SocketStdin, SocketStdout, drain};
use watch::{StopAll, Watch};

/// Engine-wide settings, fixed at start-up.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Guests that may run at once across all services (pool slots).
    pub max_instances: u32,
    /// How often the epoch ticks: the granularity of CPU budgets and how
    /// long a busy guest runs before yielding its thread to others.
    pub tick: Duration,
    /// Where compiled guests are kept across restarts.
    pub cache: CacheSetting,
    /// Descriptors (files, directories, sockets) all guests together may
    /// hold: the daemon's own `RLIMIT_NOFILE` less its reserve.
    pub fd_budget: Arc<FdBudget>,
    /// What compiling one guest may cost, and whether it is done in a
    /// child process.
    pub compile: CompileLimits,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            max_instances: 1000,
            tick: Duration::from_millis(10),
            cache: CacheSetting::Off,
            fd_budget: Arc::new(FdBudget::unlimited()),
            compile: CompileLimits::default(),
        }
    }
}

/// The shared engine and its epoch ticker.
pub struct Sandbox {
    engine: Engine,
    lane: BusyLane,
    stop_all: StopAll,
    fd_budget: Arc<FdBudget>,
    ticker_stop: Arc<AtomicBool>,
    cache_setting: CacheSetting,
    compile: CompileLimits,
    /// Whether the engine pools instances (the compiler process makes its
    /// engine alike, so that the code fits).
    pooling: bool,
    /// Opened on the first load, so that a config with no loadable guest
    /// never creates a cache directory; `Some(None)`: no cache.
    cache: Mutex<Option<Option<Arc<Cache>>>>,
}

/// Everything one run gets: the whole of the guest's world.
pub struct Invocation<'a, I, O, E> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub preopens: &'a [Preopen],
    /// The quota of each of `preopens` (`None`: read-only, or UNLIMITED).
    pub quotas: &'a [Option<DiskQuota>],
    pub limits: Limits,
    pub stdin: I,
    pub stdout: O,
    pub stderr: E,
    /// What a component may ask through `wasinetd:handler/connection`.
    pub connection: Connection,
    /// The only addresses a component may open TCP connections to
    /// (`allow_connect`); empty: no network.
    pub allow_connect: Arc<[SocketAddr]>,
    /// Where the run's remarks go: stderr lines (through a
    /// [`GuestLog`]), a refused connect.
    pub report: Arc<dyn Report>,
    /// The caller's watch on the run from outside (its client gone, or
    /// quiet too long): when it resolves, the run ends with its outcome.
    pub watch: Option<std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>>>,
}

/// A compiled, linked, pre-instantiated guest. Cheap to clone.
#[derive(Clone)]
pub struct Guest {
    engine: Engine,
    lane: BusyLane,
    stop_all: StopAll,
    fd_budget: Arc<FdBudget>,
    kind: GuestKind,
    origin: Origin,
    /// Whether it imports `wasinetd:handler/connection`.
    asks_connection: bool,
}

#[derive(Clone)]
enum GuestKind {
    Module(InstancePre<State<GuardedP1>>),
    Component(CommandPre<State<P2Wasi>>),
}

/// Store data: the guest's WASI context, its memory meter, and the watch
/// on its CPU, deadline and turns.
struct State<W> {
    wasi: W,
    meter: Meter,
    watch: Watch,
}

struct P2Wasi {
    ctx: WasiCtx,
    table: ResourceTable,
    connection: Connection,
    guard: P2Guard,
}

impl WasiView for State<P2Wasi> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.ctx,
            table: &mut self.wasi.table,
        }
    }
}

impl GuardedView for State<P2Wasi> {
    fn guarded_fs(&mut self) -> GuardedFs<'_> {
        let wasi = &mut self.wasi;
        GuardedFs {
            fs: wasmtime_wasi::filesystem::WasiFilesystemCtxView {
                ctx: wasi.ctx.filesystem(),
                table: &mut wasi.table,
            },
            guard: &mut wasi.guard,
        }
    }

    fn guarded_sockets(&mut self) -> GuardedSockets<'_> {
        let wasi = &mut self.wasi;
        GuardedSockets {
            sockets: wasmtime_wasi::sockets::WasiSocketsCtxView {
                ctx: wasi.ctx.sockets(),
                table: &mut wasi.table,
            },
            guard: &mut wasi.guard,
        }
    }
}

/// Resources (open files, streams) a guest may hold at once when
/// `rlimit_files` does not say fewer: each holds host memory, and a file
/// a host descriptor.
const MAX_RESOURCES: usize = 10_000;

/// The size of a guest's resource table: `rlimit_files`, at most
/// [`MAX_RESOURCES`]. Stdin, stdout, stderr and preopened directories take
/// entries too, as descriptors 0-2 count for RLIMIT_NOFILE. A guest that
/// opens one more is ended, `Outcome::FilesLimit` (wasmtime-wasi has no
/// EMFILE for a full table: it fails the call).
fn max_resources(limits: Limits) -> usize {
    limits
        .files
        .map_or(MAX_RESOURCES, |n| (n as usize).min(MAX_RESOURCES))
}

impl Sandbox {
    /// Builds the engine and starts the epoch ticker.
    pub fn new(opts: &SandboxOptions) -> anyhow::Result<Self> {
        let (engine, pooling) = match Engine::new(&engine::engine_config(opts, true)) {
            Ok(engine) => (engine, true),
            Err(e) => {
                // The pool reserves address space up front; where that is
                // refused (a low `ulimit -v`), allocate per instance instead.
                tracing::warn!(
                    "pooling allocator unavailable ({e:#}); allocating each instance on demand"
                );
                let engine = Engine::new(&engine::engine_config(opts, false))
                    .map_err(anyhow::Error::from)
                    .context("failed to create the wasm engine")?;
                (engine, false)
            }
        };
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop = ticker_stop.clone();
        let tick = opts.tick;
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .context("failed to start the epoch ticker thread")?;
        Ok(Self {
            engine,
            lane: BusyLane::for_this_machine(),
            stop_all: StopAll::default(),
            fd_budget: opts.fd_budget.clone(),
            ticker_stop,
            cache_setting: opts.cache.clone(),
            compile: opts.compile.clone(),
            pooling,
            cache: Mutex::new(None),
        })
    }

    /// Compiles a guest (a core module or a component, binary or text) and
    /// prepares it for fast instantiation.
    pub fn load(&self, bytes: &[u8]) -> anyhow::Result<Guest> {
        self.load_or_not(bytes, true)?
            .context("the guest was neither compiled nor cached")
    }

    /// Like [`Sandbox::load`], but only from the compiled-code cache:
    /// `None` when the guest would have to be compiled.
    pub fn load_cached(&self, bytes: &[u8]) -> anyhow::Result<Option<Guest>> {
        self.load_or_not(bytes, false)
    }

    fn load_or_not(&self, bytes: &[u8], may_compile: bool) -> anyhow::Result<Option<Guest>> {
        use wasmtime::wasmparser::Parser;
        if may_compile {
            compile::check_shape(bytes, &self.compile)?;
        }
        let mut asks_connection = false;
        let (kind, origin) = if Parser::is_component(bytes) {
            let Some((component, origin)) = self
                .compile::<Component>(bytes, may_compile)
                .context("invalid component")?
            else {
                return Ok(None);
            };
            asks_connection = connection::is_imported(&self.engine, &component);
            let pre = link_component(&self.engine, &component)?;
            (GuestKind::Component(pre), origin)
        } else if let Some(what) = not_wasm(bytes) {
            bail!(
                "not a WebAssembly module or component (no `\\0asm` header: {what}); a guest \
                 is built for wasm32-wasip1 (a module) or wasm32-wasip2 (a component), e.g. \
                 `cargo build --release --target wasm32-wasip2`; a script runs under an \
                 interpreter guest, as the README's \"Scripts\" section shows"
            );
        } else if Parser::is_core_wasm(bytes) || std::str::from_utf8(bytes).is_ok() {
            // Text is accepted too: `.wat` guests are handy for tests.
            let Some((module, origin)) = self
                .compile::<Module>(bytes, may_compile)
                .context("invalid module")?
            else {
                return Ok(None);
            };
            let pre = link_module(&self.engine, &module)?;
            (GuestKind::Module(pre), origin)
        } else {
            bail!(
                "not a WebAssembly module or component (no `\\0asm` header); a guest is built \
                 for wasm32-wasip1 (a module) or wasm32-wasip2 (a component)"
            );
        };
        Ok(Some(Guest {
            engine: self.engine.clone(),
            lane: self.lane.clone(),
            stop_all: self.stop_all.clone(),
            fd_budget: self.fd_budget.clone(),
            kind,
            origin,
            asks_connection,
        }))
    }

    /// Native code for `bytes`, from the cache when there is one, else
    /// compiled within the compile limits (`None` if it may not be).
    fn compile<A: cache::Artefact>(
        &self,
        bytes: &[u8],
        may_compile: bool,
    ) -> anyhow::Result<Option<(A, Origin)>> {
        if !may_compile {
            let hit = self.cache().and_then(|c| c.get(&self.engine, bytes));
            return Ok(hit.map(|a| (a, Origin::Cached)));
        }
        let precompile = || match &self.compile.isolate {
            Some(exe) => {
                compile::precompile_isolated(exe, bytes, A::KIND, self.pooling, &self.compile)
            }
            None => A::precompile(&self.engine, bytes).map_err(anyhow::Error::from),
        };
        let compiled = match (self.cache(), &self.compile.isolate) {
            (Some(cache), _) => cache.get_or_compile(&self.engine, bytes, precompile)?,
            (None, Some(_)) => {
                let code = precompile()?;
                // SAFETY: `code` is the compiler process's output: this very
                // binary, for an engine of this one's settings; wasmtime
                // checks its header against the engine again.
                let artefact = unsafe { A::from_code(&self.engine, &code) }?;
                (artefact, Origin::Compiled)
            }
            (None, None) => (A::compile(&self.engine, bytes)?, Origin::Compiled),
        };
        Ok(Some(compiled))
    }

    /// The engine a compiler process makes (`wasinetd __compile`): the
    /// settings of a daemon's engine, `pooling` or not.
    pub fn compiler_engine(pooling: bool) -> anyhow::Result<Engine> {
        let opts = SandboxOptions {
            max_instances: 1,
            ..SandboxOptions::default()
        };
        Engine::new(&engine::engine_config(&opts, pooling)).map_err(anyhow::Error::from)
    }

    /// The compiled-code cache, if one is configured and safe to use. Its
    /// path is checked to still name the folder that was vetted at every
    /// load (start-up, reloads); if it does not, it is vetted afresh.
    fn cache(&self) -> Option<Arc<Cache>> {
        let mut slot = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Some(cache)) = &*slot
            && let Err(e) = cache.still_at_its_path()
        {
            tracing::warn!(
                "cache directory `{}` changed since it was vetted ({e:#}); vetting it again",
                cache.dir().display()
            );
            *slot = None;
        }
        slot.get_or_insert_with(|| Cache::open(&self.cache_setting).map(Arc::new))
            .clone()
    }

    /// What compiling one guest may cost.
    pub fn compile_limits(&self) -> &CompileLimits {
        &self.compile
    }

    /// Removes cached code unused for [`MAX_AGE`]; call once every guest of
    /// the config is loaded. Does nothing if no guest touched the cache.
    pub fn prune_cache(&self) {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(Some(cache)) = cache {
            let removed = cache.prune(MAX_AGE);
            if removed > 0 {
                tracing::info!(
                    "removed {removed} file(s) unused for {} days from cache `{}`",
                    MAX_AGE.as_secs() / 86_400,
                    cache.dir().display()
                );
            }
        }
    }
}

impl Sandbox {
    /// Ends every running guest: one running wasm code at its next tick,
    /// one waiting when its task is next polled or dropped. For a stop
    /// that does not wait any more.
    pub fn stop_all(&self) {
        self.stop_all.trigger();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn link_module(engine: &Engine, module: &Module) -> anyhow::Result<InstancePre<State<GuardedP1>>> {
    if module.get_export("_start").is_none() {
        bail!("the module exports no `_start`: it is not a WASI command");
    }
    let mut linker = Linker::new(engine);
    guard::p1::add_to_linker(&mut linker, |s: &mut State<GuardedP1>| &mut s.wasi)
        .map_err(anyhow::Error::from)?;
    linker
        .instantiate_pre(module)
        .map_err(anyhow::Error::from)
        .context("the module needs imports that wasinetd does not provide")
}

fn link_component(
    engine: &Engine,
    component: &Component,
) -> anyhow::Result<CommandPre<State<P2Wasi>>> {
    let mut linker = wasmtime::component::Linker::new(engine);
    guard::p2::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
    connection::add_to_linker(&mut linker, |s: &mut State<P2Wasi>| &mut s.wasi.connection)?;
    let pre = linker
        .instantiate_pre(component)
        .map_err(anyhow::Error::from)
        .context("the component needs imports that wasinetd does not provide")?;
    CommandPre::new(pre)
        .map_err(anyhow::Error::from)
        .context("the component is not a `wasi:cli/command`")
}

impl Guest {
    /// Whether this guest is a preview 2 component (else a preview 1 module).
    pub fn is_component(&self) -> bool {
        matches!(self.kind, GuestKind::Component(_))
    }

    /// Whether it asks about its connection (`wasinetd:handler/connection`):
    /// only then are the facts a system call away worth gathering.
    pub fn asks_connection(&self) -> bool {
        self.asks_connection
    }

    /// Whether the native code was compiled now or mapped from the cache.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Runs the guest once in a fresh instance; returns how it ended and
    /// what it used.
    ///
    /// Dropping the returned future stops the guest and frees its instance.
    pub async fn run<I, O, E>(&self, mut inv: Invocation<'_, I, O, E>) -> RunReport
    where
        I: StdinStream + 'static,
        O: StdoutStream + 'static,
        E: StdoutStream + 'static,
    {
        let limits = inv.limits;
        let outside = inv.watch.take();
        let started = Instant::now();
        // From now: the start function runs at instantiation, and the
        // deadline must cover it.
        let deadline = limits.runtime.and_then(|max| started.checked_add(max));
        let watch = Watch::new(
            limits.cpu,
            deadline,
            self.stop_all.clone(),
            self.lane.clone(),
        );
        let clock = watch.clock.clone();
        let seat = watch.seat.clone();
        let mut usage = Usage::default();
        let rules: Vec<PreopenRules> = inv
            .preopens
            .iter()
            .enumerate()
            .map(|(i, p)| PreopenRules {
                quota: inv.quotas.get(i).cloned().flatten(),
                symlinks: p.symlinks,
            })
            .collect();
        let preopens = rules.len();
        let refusals = Arc::new(Refusals::default());
        let run = async {
            // The preopened directories are descriptors too.
            let Some(guard) = Guard::new(
                self.fd_budget.clone(),
                rules,
                refusals.clone(),
                clock.clone(),
            ) else {
                return Outcome::Failed(format!(
                    "the guests' descriptor budget ({}) is spent",
                    self.fd_budget.total()
                ));
            };
            let (wasi, connection) = match world::wasi_builder(inv) {
                Ok(built) => built,
                Err(e) => return Outcome::Failed(format!("{e:#}")),
            };
            let parts = Parts {
                wasi,
                guard,
                limits,
                watch,
            };
            match &self.kind {
                GuestKind::Module(pre) => self.run_module(pre, parts, preopens, &mut usage).await,
                GuestKind::Component(pre) => {
                    self.run_component(pre, parts, connection, &mut usage).await
                }
            }
        };
        // A busy guest holds a lane only while it runs, not while it waits.
        let run = lane::Seated::new(run, seat);
        // Every poll of the run is the guest's CPU, host calls included.
        let run = Charged::new(run, clock.clone());
        // While it waits (on its client, a timer), only a timer can end it;
        // while it runs, the epoch callback checks the same deadline.
        let run = async {
            match deadline {
                Some(at) => tokio::time::timeout_at(at.into(), run)
                    .await
                    .unwrap_or(Outcome::RuntimeLimit),
                None => run.await,
            }
        };
        let outcome = match outside {
            Some(watch) => tokio::select! {
                outcome = run => outcome,
                outcome = watch => outcome,
            },
            None => run.await,
        };
        RunReport {
            outcome,
            instantiate: usage.instantiate,
            cpu: clock.used(),
            memory_peak: usage.memory_peak,
            refused: refusals.read(),
        }
    }

    async fn run_module(
        &self,
        pre: &InstancePre<State<GuardedP1>>,
        parts: Parts,
        preopens: usize,
        usage: &mut Usage,
    ) -> Outcome {
        let Parts {
            mut wasi,
            guard,
            limits,
            watch,
        } = parts;
        let mut p1 = wasi.build_p1();
        // Its files, directories and streams live in this table, as a
        // component's do in its own.
        wasmtime_wasi::WasiView::ctx(&mut p1)
            .table
            .set_max_capacity(max_resources(limits));
        let p1 = GuardedP1::new(p1, guard, preopens);
        let mut run = Metered {
            store: self.store(p1, limits, watch),
            usage,
        };
        let result = async {
            let started = Instant::now();
            let instance = pre.instantiate_async(&mut run.store).await?;
            run.usage.instantiate = Some(started.elapsed());
            let start = instance.get_typed_func::<(), ()>(&mut run.store, "_start")?;
            start.call_async(&mut run.store, ()).await
        }
        .await;
        match result {
            Ok(()) => Outcome::Exited(0),
            Err(e) => Outcome::from_error(&e, run.store.data()),
        }
    }

    async fn run_component(
        &self,
        pre: &CommandPre<State<P2Wasi>>,
        parts: Parts,
        connection: Connection,
        usage: &mut Usage,
    ) -> Outcome {
        let Parts {
            mut wasi,
            guard,
            limits,
            watch,
        } = parts;
        let mut table = ResourceTable::new();
        table.set_max_capacity(max_resources(limits));
        let ctx = P2Wasi {
            ctx: wasi.build(),
            table,
            connection,
            guard: P2Guard::new(guard),
        };
        let mut run = Metered {
            store: self.store(ctx, limits, watch),
            usage,
        };
        let result = async {
            let started = Instant::now();
            let command = pre.instantiate_async(&mut run.store).await?;
            run.usage.instantiate = Some(started.elapsed());
            command.wasi_cli_run().call_run(&mut run.store).await
        }
        .await;
        match result {
            Ok(Ok(())) => Outcome::Exited(0),
            // `wasi:cli/run` returning its error variant is exit status 1.
            Ok(Err(())) => Outcome::Exited(1),
            Err(e) => Outcome::from_error(&e, run.store.data()),
        }
    }

    fn store<W: Send + 'static>(&self, wasi: W, limits: Limits, watch: Watch) -> Store<State<W>> {
        let meter = Meter::new(limits.memory);
        let mut store = Store::new(&self.engine, State { wasi, meter, watch });
        store.limiter(|s| &mut s.meter);
        // Every tick a running guest is checked against its limits and
        // gives its thread back (see `watch`).
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut cx| cx.data_mut().watch.on_tick());
        store
    }
}

/// A run's parts before its store is made.
struct Parts {
    wasi: WasiCtxBuilder,
    guard: Guard,
    limits: Limits,
    watch: Watch,
}

/// What a run used so far, for its [`RunReport`].
#[derive(Default)]
struct Usage {
    instantiate: Option<Duration>,
    memory_peak: u64,
}

/// A run's store, which leaves its meter's readings in `usage` when it is
/// dropped: at the end of the run, or when the wall-clock limit cuts it off.
struct Metered<'u, W: 'static> {
    store: Store<State<W>>,
    usage: &'u mut Usage,
}

impl<W: 'static> Drop for Metered<'_, W> {
    fn drop(&mut self) {
        self.usage.memory_peak = self.store.data().meter.memory_peak();
    }
}

/// What a file that is plainly not a guest is, for the error: a native
/// program or a script (text that is not WebAssembly text).
fn not_wasm(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x7fELF") {
        Some("it is a native executable")
    } else if bytes.starts_with(b"#!") {
        Some("it is a script")
    } else if bytes.starts_with(b"MZ") || bytes.starts_with(&[0xcf, 0xfa, 0xed, 0xfe]) {
        Some("it is a native executable for another system")
    } else {
        None
    }
}
