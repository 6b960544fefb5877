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
//!
//! This file holds the sandbox's types; [`load`] turns bytes into a
//! [`Guest`] (compile or cache, link), and [`run`] runs one.

mod cache;
mod compile;
mod connection;
mod cpu;
mod egress;
mod engine;
mod guard;
mod lane;
mod limits;
mod load;
mod meter;
mod outcome;
mod pool;
mod report;
mod ruby;
mod run;
mod stdio;
mod watch;
mod world;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, InstancePre};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use cache::{Cache, CacheSetting, MAX_AGE, Origin, tools_dir};
pub use compile::{CompileLimits, child_main as compile_child};
pub use connection::{Connection, Endpoint, Transport};
use guard::p1::GuardedP1;
use guard::p2::{GuardedFs, GuardedSockets, GuardedView, P2Guard};
pub use guard::{DiskQuota, FdBudget, GuardCounts, Usage as DiskUsage, quotas};
use lane::BusyLane;
pub use limits::{Limits, Preopen, PreopenQuota};
pub use meter::Meter;
pub use outcome::{Kind, Outcome, RunReport};
pub use pool::Pool;
pub use report::{Report, Unheard};
pub use stdio::{GATHER, Gathered, GuestLog, Socket, SocketStdin, SocketStdout, drain};
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
    /// Whether the engine pools instances, and for how many guests (the
    /// compiler process makes its engine alike, so that the code fits).
    pooling: bool,
    max_instances: u32,
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
    /// The stdout that gathers small writes ([`SocketStdout`]), told to
    /// send them whenever the guest waits.
    pub gathered: Option<&'a dyn Gathered>,
    /// The tenant's pool the run belongs to (memory sum, lane weight).
    pub pool: Arc<Pool>,
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
    /// A CRuby reactor (see [`ruby`]): the same world as a module.
    Ruby(InstancePre<State<GuardedP1>>),
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

impl Sandbox {
    /// Builds the engine and starts the epoch ticker.
    pub fn new(opts: &SandboxOptions) -> anyhow::Result<Self> {
        engine::check_map_count(opts.max_instances);
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
        if let Some(cap) = engine::memory_cap(opts) {
            tracing::info!(
                "each guest's linear memory is capped at {} MiB: --limit {} leaves each memory that much of the address space",
                cap >> 20,
                opts.max_instances
            );
        }
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
            lane: BusyLane::for_this_machine(opts.tick),
            stop_all: StopAll::default(),
            fd_budget: opts.fd_budget.clone(),
            ticker_stop,
            cache_setting: opts.cache.clone(),
            compile: opts.compile.clone(),
            pooling,
            max_instances: opts.max_instances,
            cache: Mutex::new(None),
        })
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

impl Guest {
    /// Whether this guest is a preview 2 component (else a preview 1 module).
    pub fn is_component(&self) -> bool {
        matches!(self.kind, GuestKind::Component(_))
    }

    /// What it is, as `check` and `/status` say: `component`, `module`, or
    /// `ruby` (a CRuby reactor the daemon drives, see [`ruby`]).
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            GuestKind::Component(_) => "component",
            GuestKind::Module(_) => "module",
            GuestKind::Ruby(_) => "ruby",
        }
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
}
