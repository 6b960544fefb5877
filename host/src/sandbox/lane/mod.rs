//! The busy lane: CPU-hungry guests take turns on fewer threads than the
//! runtime has, so short connections always find a free one, and tenants
//! share those turns by weight.
//!
//! Guests run as tasks on a few worker threads and yield at every epoch
//! tick. That alone is not enough: four busy-looping guests on two workers
//! put every short connection behind several 10 ms slices at each step of
//! its life. So a guest that has spent more than [`BUSY_AFTER`] of CPU must
//! hold a lane to run, and there is one lane fewer than there are worker
//! threads: waiting guests are parked, not spinning, and at least one
//! worker is always left to everything else. A guest that finishes within
//! its first tick, which is nearly every connection, never touches the
//! lane.
//!
//! Who gets a free lane is weighted fair queueing by [`Pool`] ([`wfq`]):
//! each pool gets lane time in proportion to its weight (`cpu_share`),
//! charged by the CPU its guests used, and a pool's own guests take turns
//! round-robin. Without it a tenant with a hundred busy guests would get a
//! hundred turns for each one of a tenant with a single busy guest.
//!
//! A lane is held only while the guest runs: when it waits (on its client,
//! a file, a timer) its run returns `Pending`, and [`Seated`] gives the
//! lane back. Otherwise a guest that computed for a moment and then waited
//! for its client would keep the lane, and every other busy guest would
//! wait for it to end (found by the descriptor test: a holder that opened
//! its files, charged as CPU, then read its stdin for ever).

#[cfg(test)]
mod sim;
mod wfq;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::cpu::CpuClock;
use super::pool::Pool;
use wfq::{Grant, Wfq};

/// CPU a guest may spend before it counts as busy.
pub const BUSY_AFTER: Duration = Duration::from_millis(10);

/// The lanes busy guests share, and whose turn it is. Cheap to clone.
#[derive(Clone)]
pub struct BusyLane(Arc<Mutex<Wfq>>);

/// The lane one guest holds while it runs busy; released when it waits
/// ([`Seated`]), at its next tick, or when its store is dropped.
#[derive(Default, Clone)]
pub struct Seat(Arc<Mutex<Option<Held>>>);

impl Seat {
    /// Gives the lane back, if held.
    fn leave(&self) {
        // Out of the seat's lock before the scheduler's is taken.
        let held = lock(&self.0).take();
        drop(held);
    }
}

/// A lane in a seat: when dropped, its pool is charged the CPU its guest
/// used since it sat down, and the lane goes to the next in line.
struct Held {
    lane: Arc<Mutex<Wfq>>,
    grant: Grant,
    clock: Arc<CpuClock>,
    start: Duration,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Dropped inside the run's poll (at a tick, or by `Seated`), the
        // clock includes that poll so far; outside, what earlier polls
        // charged.
        let used = self.clock.used().saturating_sub(self.start);
        let mut wake = Vec::new();
        lock(&self.lane).release(self.grant, used, &mut wake);
        wake.into_iter().for_each(Waker::wake);
    }
}

/// A guest's run that gives its lane back whenever it waits.
pub struct Seated<F> {
    inner: Pin<Box<F>>,
    seat: Seat,
}

impl<F> Seated<F> {
    pub fn new(inner: F, seat: Seat) -> Self {
        Self {
            inner: Box::pin(inner),
            seat,
        }
    }
}

impl<F: Future> Future for Seated<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let poll = self.inner.as_mut().poll(cx);
        if poll.is_pending() {
            self.seat.leave();
        }
        poll
    }
}

impl BusyLane {
    /// `lanes` lanes (at least one); `turn` is how long a busy guest runs
    /// before its next tick (the epoch's tick), the estimate a grant
    /// charges in advance.
    pub fn new(lanes: usize, turn: Duration) -> Self {
        Self(Arc::new(Mutex::new(Wfq::new(lanes.max(1), turn))))
    }

    /// The number of lanes that leaves one worker thread free on this
    /// machine (tokio starts one worker per core).
    pub fn for_this_machine(turn: Duration) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores.saturating_sub(1), turn)
    }

    /// At a tick of a busy guest of `pool` whose CPU `clock` counts: gives
    /// its lane back and returns the wait for its next turn, for the guest
    /// to yield on.
    pub fn next_turn(&self, seat: &Seat, pool: &Arc<Pool>, clock: &Arc<CpuClock>) -> Turn {
        let mut wake = Vec::new();
        // In line before the lane goes back, so that a pool whose turn it
        // still is (its one guest, weighted above the others) gets it
        // again instead of losing it to whoever waits.
        let id = lock(&self.0).join(pool, &mut wake);
        seat.leave();
        wake.into_iter().for_each(Waker::wake);
        Turn {
            lane: self.0.clone(),
            id,
            seat: seat.clone(),
            clock: clock.clone(),
            done: false,
        }
    }
}

/// A busy guest's wait for its next turn: ready with the lane in its seat.
/// Dropped before that (the run ended or was cancelled), it leaves the
/// line, or passes on a lane it was given but never took.
pub struct Turn {
    lane: Arc<Mutex<Wfq>>,
    id: u64,
    seat: Seat,
    clock: Arc<CpuClock>,
    done: bool,
}

impl Future for Turn {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(());
        }
        let Poll::Ready(grant) = lock(&this.lane).poll(this.id, cx.waker()) else {
            return Poll::Pending;
        };
        this.done = true;
        if let Some(grant) = grant {
            let held = Held {
                lane: this.lane.clone(),
                grant,
                clock: this.clock.clone(),
                start: this.clock.used(),
            };
            // A lane still in the seat (none should be) goes back, outside
            // the seat's lock.
            let before = lock(&this.seat.0).replace(held);
            drop(before);
        }
        Poll::Ready(())
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut wake = Vec::new();
        lock(&self.lane).cancel(self.id, &mut wake);
        wake.into_iter().for_each(Waker::wake);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing can panic while the lock is held.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::sim::{Flag, TURN, poll_with};
    use super::*;

    fn poll_once(turn: &mut Turn) -> Poll<()> {
        Pin::new(turn).poll(&mut Context::from_waker(Waker::noop()))
    }

    /// One lane, one pool, one clock: the lane as it was before pools.
    fn one_lane() -> (BusyLane, Arc<Pool>, Arc<CpuClock>) {
        (BusyLane::new(1, TURN), Arc::default(), Arc::default())
    }

    #[tokio::test]
    async fn busy_guests_take_turns_on_the_lanes() {
        let (lane, pool, clock) = one_lane();
        let (a, b) = (Seat::default(), Seat::default());
        lane.next_turn(&a, &pool, &clock).await;
        // The only lane is a's: b waits until a's next tick gives it back.
        let mut b_turn = lane.next_turn(&b, &pool, &clock);
        assert!(poll_once(&mut b_turn).is_pending());
        let mut a_turn = lane.next_turn(&a, &pool, &clock);
        assert!(poll_once(&mut b_turn).is_ready());
        assert!(poll_once(&mut a_turn).is_pending());
        drop(b);
        drop(b_turn);
    }

    #[tokio::test]
    async fn a_waiting_guest_gives_its_lane_back() {
        let (lane, pool, clock) = one_lane();
        let (a, b) = (Seat::default(), Seat::default());
        // a takes the only lane at a tick, then waits on its client.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (a_lane, a_seat, a_pool, a_clock) =
            (lane.clone(), a.clone(), pool.clone(), clock.clone());
        let mut a_run = Box::pin(Seated::new(
            async move {
                a_lane.next_turn(&a_seat, &a_pool, &a_clock).await;
                let _ = rx.await;
            },
            a,
        ));
        let mut cx = Context::from_waker(Waker::noop());
        // a gets the lane, then waits.
        assert!(a_run.as_mut().poll(&mut cx).is_pending());
        // b gets the lane while a waits.
        let mut b_turn = lane.next_turn(&b, &pool, &clock);
        assert!(poll_once(&mut b_turn).is_ready());
        drop(tx);
    }

    #[tokio::test]
    async fn a_seat_released_between_ticks_wakes_the_next_in_line() {
        let (lane, pool, clock) = one_lane();
        let (a, b) = (Seat::default(), Seat::default());
        lane.next_turn(&a, &pool, &clock).await;
        let b_flag = Arc::new(Flag::default());
        let mut b_turn = lane.next_turn(&b, &pool, &clock);
        assert!(poll_with(&mut b_turn, &b_flag).is_pending());
        // a's run waits on something (no tick): `Seated` gives the lane
        // back and b, parked, is woken to take it.
        let mut a_run = Seated::new(std::future::pending::<()>(), a.clone());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut a_run).poll(&mut cx).is_pending());
        assert!(b_flag.take(), "b was not woken");
        assert!(poll_with(&mut b_turn, &b_flag).is_ready());
        // b's run ends: its store and seat go, and so does its lane.
        let c_flag = Arc::new(Flag::default());
        let mut c_turn = lane.next_turn(&a, &pool, &clock);
        assert!(poll_with(&mut c_turn, &c_flag).is_pending());
        drop(b);
        drop(b_turn);
        assert!(c_flag.take(), "the next was not woken");
        assert!(poll_with(&mut c_turn, &c_flag).is_ready());
    }

    #[tokio::test]
    async fn a_waiter_dropped_in_line_or_with_its_lane_holds_up_no_one() {
        let (lane, pool, clock) = one_lane();
        let seats: Vec<Seat> = (0..4).map(|_| Seat::default()).collect();
        let flags: Vec<Arc<Flag>> = (0..4).map(|_| Arc::default()).collect();
        lane.next_turn(&seats[0], &pool, &clock).await;
        let mut b = lane.next_turn(&seats[1], &pool, &clock);
        let mut c = lane.next_turn(&seats[2], &pool, &clock);
        assert!(poll_with(&mut b, &flags[1]).is_pending());
        assert!(poll_with(&mut c, &flags[2]).is_pending());
        // b's run is cancelled while it is first in line.
        drop(b);
        let mut a = lane.next_turn(&seats[0], &pool, &clock);
        assert!(flags[2].take(), "c was not woken");
        assert!(poll_with(&mut c, &flags[2]).is_ready());
        assert!(poll_with(&mut a, &flags[0]).is_pending());
        // a is given the lane at c's tick, but its run ends before it
        // takes it: the lane passes on to d.
        let mut d = lane.next_turn(&seats[3], &pool, &clock);
        assert!(poll_with(&mut d, &flags[3]).is_pending());
        let mut c_next = lane.next_turn(&seats[2], &pool, &clock);
        assert!(flags[0].take(), "a was not given the lane");
        drop(a);
        assert!(flags[3].take(), "d was not woken");
        assert!(poll_with(&mut d, &flags[3]).is_ready());
        // And the lane count is whole: when d waits, c runs again.
        seats[3].leave();
        assert!(poll_with(&mut c_next, &flags[2]).is_ready());
    }
}
