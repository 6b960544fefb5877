//! A test bench for the lanes: busy guests of a few pools driven turn by
//! turn with explicit CPU charges, and wakers that say whether they were
//! woken, so the scheduler's choices are checked exactly, without threads
//! or timing.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use super::super::cpu::CpuClock;
use super::super::pool::Pool;
use super::{BusyLane, Seat, Turn};

/// The epoch tick: a busy guest's turn when it does not wait.
pub const TURN: Duration = Duration::from_millis(10);

/// A waker that remembers being woken, so a test polls a waiter only
/// when the lane said to (as the executor would).
#[derive(Default)]
pub struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Flag {
    /// Whether it was woken since the last call.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

pub fn poll_with(turn: &mut Turn, flag: &Arc<Flag>) -> Poll<()> {
    let waker = Waker::from(flag.clone());
    Pin::new(turn).poll(&mut Context::from_waker(&waker))
}

/// A busy guest of the simulation.
pub struct Guest {
    pub pool: usize,
    seat: Seat,
    pub clock: Arc<CpuClock>,
    flag: Arc<Flag>,
    /// The CPU it uses on the lane in each turn.
    cost: Duration,
    turn: Option<Turn>,
    /// At the end of its next turn it waits on its client instead of
    /// ticking, and leaves the line.
    pub rests: bool,
}

/// Busy guests of a few pools on the lanes, driven turn by turn: the
/// turn granted first ends first, its guest charged its cost; a guest
/// in line is polled only when woken, and must then have its lane.
pub struct Sim {
    lane: BusyLane,
    pub pools: Vec<Arc<Pool>>,
    pub guests: Vec<Guest>,
    pub running: VecDeque<usize>,
    /// Per pool, since the last `count`: turns, and CPU on the lane.
    pub turns: Vec<u32>,
    cpu: Vec<Duration>,
    /// The pool of each turn since the last `count`.
    pub order: Vec<usize>,
}

impl Sim {
    pub fn new(lanes: usize, weights: &[u32]) -> Self {
        Self {
            lane: BusyLane::new(lanes, TURN),
            pools: weights
                .iter()
                .map(|&w| Arc::new(Pool::new(None, w)))
                .collect(),
            guests: Vec::new(),
            running: VecDeque::new(),
            turns: vec![0; weights.len()],
            cpu: vec![Duration::ZERO; weights.len()],
            order: Vec::new(),
        }
    }

    /// `n` busy guests of `pool` using `cost` a turn, put in line.
    pub fn add(&mut self, pool: usize, n: usize, cost: Duration) -> Vec<usize> {
        (0..n)
            .map(|_| {
                self.guests.push(Guest {
                    pool,
                    seat: Seat::default(),
                    clock: Arc::default(),
                    flag: Arc::default(),
                    cost,
                    turn: None,
                    rests: false,
                });
                let g = self.guests.len() - 1;
                self.tick(g);
                g
            })
            .collect()
    }

    /// Guest `g` ticks: back in line, its lane given back.
    pub fn tick(&mut self, g: usize) {
        let guest = &mut self.guests[g];
        let pool = &self.pools[guest.pool];
        guest.turn = Some(self.lane.next_turn(&guest.seat, pool, &guest.clock));
        // Its lane may have come straight back to it.
        self.poll(g);
    }

    fn poll(&mut self, g: usize) -> bool {
        let guest = &mut self.guests[g];
        let Some(turn) = guest.turn.as_mut() else {
            return false;
        };
        if poll_with(turn, &guest.flag).is_pending() {
            return false;
        }
        guest.turn = None;
        self.running.push_back(g);
        true
    }

    /// The oldest turn ends; returns its guest.
    pub fn step(&mut self) -> usize {
        let g = self
            .running
            .pop_front()
            .expect("no guest holds a lane: a lane was lost, or its waiter never woken");
        let guest = &mut self.guests[g];
        guest.clock.charge(guest.cost);
        self.turns[guest.pool] += 1;
        self.cpu[guest.pool] += guest.cost;
        self.order.push(guest.pool);
        if guest.rests {
            guest.seat.leave();
        } else {
            self.tick(g);
        }
        for w in 0..self.guests.len() {
            if self.guests[w].flag.take() {
                // Parked until given a lane: never woken for nothing.
                assert!(self.poll(w), "guest {w} woken without a lane");
            }
        }
        g
    }

    pub fn run(&mut self, turns: usize) {
        for _ in 0..turns {
            self.step();
        }
    }

    /// Starts counting afresh.
    pub fn count(&mut self) {
        self.turns.iter_mut().for_each(|t| *t = 0);
        self.cpu.iter_mut().for_each(|c| *c = Duration::ZERO);
        self.order.clear();
    }

    /// Pool `p`'s share of the turns and of the CPU, in percent.
    pub fn share(&self, p: usize) -> (f64, f64) {
        let turns: u32 = self.turns.iter().sum();
        let cpu: Duration = self.cpu.iter().sum();
        (
            100.0 * f64::from(self.turns[p]) / f64::from(turns),
            100.0 * self.cpu[p].as_secs_f64() / cpu.as_secs_f64(),
        )
    }
}
