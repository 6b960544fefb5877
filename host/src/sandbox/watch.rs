//! The watch kept on a running guest at every epoch tick: its CPU budget,
//! its wall-clock deadline, the daemon's stop, and whose turn it is.
//!
//! The epoch ticks every [`SandboxOptions::tick`](super::SandboxOptions);
//! a guest in wasm code notices within one tick and runs the callback
//! here. A guest over a limit is ended right there; otherwise it gives its
//! thread back to the executor, every tick, whatever it is doing, so that
//! timers, signals and other connections never wait behind it for more
//! than a tick (plus one bounded host call). Past [`lane::BUSY_AFTER`] of
//! CPU it also waits for a turn on the busy lane, where its pool is
//! charged the CPU it used on the lane.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Trap, UpdateDeadline};

use super::cpu::CpuClock;
use super::lane::{self, BusyLane, Seat};
use super::pool::Pool;

/// What ended a guest from outside its own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// It spent its CPU budget (`rlimit_cpu`).
    Cpu,
    /// It reached its deadline (`runtime_max`).
    Runtime,
    /// The daemon ended every guest (a second stop signal).
    Daemon,
}

/// Set once to end every running guest at its next tick.
#[derive(Debug, Clone, Default)]
pub struct StopAll(Arc<AtomicBool>);

impl StopAll {
    pub fn trigger(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn triggered(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// One run's watch, kept in its store.
pub struct Watch {
    pub clock: Arc<CpuClock>,
    cpu_budget: Option<Duration>,
    deadline: Option<Instant>,
    stop_all: StopAll,
    lane: BusyLane,
    /// The tenant's pool the run belongs to.
    pub pool: Arc<Pool>,
    /// The lane this run holds while busy; [`lane::Seated`] gives it back
    /// whenever the run waits.
    pub seat: Seat,
    /// Why the run was ended, once it was.
    pub stopped: Option<Stop>,
}

impl Watch {
    pub fn new(
        cpu_budget: Option<Duration>,
        deadline: Option<Instant>,
        stop_all: StopAll,
        lane: BusyLane,
        pool: Arc<Pool>,
    ) -> Self {
        Self {
            clock: Arc::default(),
            cpu_budget,
            deadline,
            stop_all,
            lane,
            pool,
            seat: Seat::default(),
            stopped: None,
        }
    }

    /// The epoch callback: end the run, or yield and carry on.
    pub fn on_tick(&mut self) -> wasmtime::Result<UpdateDeadline> {
        let used = self.clock.used();
        self.pool.charge_cpu(self.clock.unpooled());
        let stop = if self.stop_all.triggered() {
            Some(Stop::Daemon)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(Stop::Runtime)
        } else if self.cpu_budget.is_some_and(|b| used > b) {
            Some(Stop::Cpu)
        } else {
            None
        };
        if let Some(stop) = stop {
            self.stopped = Some(stop);
            return Err(Trap::Interrupt.into());
        }
        if used < lane::BUSY_AFTER {
            // wasmtime's own yield returns `Pending` once: the task goes to
            // the back of its worker's queue.
            Ok(UpdateDeadline::Yield(1))
        } else {
            Ok(UpdateDeadline::YieldCustom(1, self.next_turn()))
        }
    }

    fn next_turn(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let turn = self.lane.next_turn(&self.seat, &self.pool, &self.clock);
        Box::pin(async move {
            // Yield even when a lane is free at once: a future that is
            // ready at once would let the guest run on without ever giving
            // its thread back, and the executor's timers (`runtime_max`)
            // and other tasks would wait for as long as it runs.
            tokio::task::yield_now().await;
            turn.await;
        })
    }
}
