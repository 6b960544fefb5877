//! Running a guest once: a fresh store and instance from the pool, its
//! limits watched (memory, CPU, wall clock) and the descriptors it may
//! hold guarded, until it ends; then what it used, as a [`RunReport`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{InstancePre, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{StdinStream, StdoutStream};
use wasmtime_wasi::p2::bindings::CommandPre;

use super::cpu::Charged;
use super::guard::p1::GuardedP1;
use super::guard::p2::P2Guard;
use super::guard::{Guard, PreopenRules, Refusals};
use super::watch::Watch;
use super::{
    Connection, Guest, GuestKind, Invocation, Limits, Meter, Outcome, P2Wasi, RunReport, State,
    lane, ruby, world,
};

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

impl Guest {
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
        let gathered = inv.gathered.take();
        let started = Instant::now();
        // From now: the start function runs at instantiation, and the
        // deadline must cover it.
        let deadline = limits.runtime.and_then(|max| started.checked_add(max));
        let watch = Watch::new(
            limits.cpu,
            deadline,
            self.stop_all.clone(),
            self.lane.clone(),
            inv.pool.clone(),
        );
        let pool = inv.pool.clone();
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
        // A Ruby guest is given the script and its arguments by its driver.
        let argv = inv.argv.get(1..).unwrap_or_default().to_vec();
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
                GuestKind::Module(pre) => {
                    self.run_module(pre, Entry::Start, parts, preopens, &mut usage)
                        .await
                }
                GuestKind::Ruby(pre) => {
                    let entry = Entry::Ruby(argv);
                    self.run_module(pre, entry, parts, preopens, &mut usage)
                        .await
                }
                GuestKind::Component(pre) => {
                    self.run_component(pre, parts, connection, &mut usage).await
                }
            }
        };
        // Whatever the guest waits for, what it wrote goes out first.
        let mut run = Box::pin(run);
        let run = std::future::poll_fn(move |cx| {
            let poll = run.as_mut().poll(cx);
            if let (true, Some(out)) = (poll.is_pending(), gathered) {
                out.send_gathered(cx);
            }
            poll
        });
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
        let cpu = clock.used();
        pool.charge_cpu(clock.unpooled());
        RunReport {
            outcome,
            instantiate: usage.instantiate,
            cpu,
            memory_peak: usage.memory_peak,
            refused: refusals.read(),
        }
    }

    async fn run_module(
        &self,
        pre: &InstancePre<State<GuardedP1>>,
        entry: Entry,
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
            match entry {
                Entry::Start => {
                    let start = instance.get_typed_func::<(), ()>(&mut run.store, "_start")?;
                    start.call_async(&mut run.store, ()).await
                }
                Entry::Ruby(args) => ruby::run(&mut run.store, instance, &args).await,
            }
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
            // `wasi:cli/run` returning its error variant is exit status 1;
            // after a refused grow, the limit is why (as for a trap).
            Ok(Err(())) if run.store.data().meter.memory_denied() => Outcome::MemoryLimit,
            Ok(Err(())) => Outcome::Exited(1),
            Err(e) => Outcome::from_error(&e, run.store.data()),
        }
    }

    fn store<W: Send + 'static>(&self, wasi: W, limits: Limits, watch: Watch) -> Store<State<W>> {
        let meter = Meter::new(limits.memory, watch.pool.clone());
        let mut store = Store::new(&self.engine, State { wasi, meter, watch });
        store.limiter(|s| &mut s.meter);
        // Every tick a running guest is checked against its limits and
        // gives its thread back (see `watch`).
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut cx| cx.data_mut().watch.on_tick());
        store
    }
}

/// How a module guest is run once instantiated.
enum Entry {
    /// A WASI command: its `_start`.
    Start,
    /// A Ruby reactor, driven with the script and its arguments.
    Ruby(Vec<String>),
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
