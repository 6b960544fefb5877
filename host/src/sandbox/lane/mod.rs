//! The busy lane: CPU-hungry guests take turns on fewer threads than the
//! runtime has, so short connections always find a free one.
//!
//! Guests run as tasks on a few worker threads and yield at every epoch
//! tick. That alone is not enough: four busy-looping guests on two workers
//! put every short connection behind several 10 ms slices at each step of
//! its life. So a guest that has spent more than [`BUSY_AFTER`] of CPU must
//! hold a lane to run, and there is one lane fewer than there are worker
//! threads: busy guests share the lanes round-robin (the semaphore is fair),
//! waiting ones are parked, not spinning, and at least one worker is always
//! left to everything else. A guest that finishes within its first tick,
//! which is nearly every connection, never touches the lane.
//!
//! A lane is held only while the guest runs: when it waits (on its client,
//! a file, a timer) its run returns `Pending`, and [`Seated`] gives the
//! lane back. Otherwise a guest that computed for a moment and then waited
//! for its client would keep the lane, and every other busy guest would
//! wait for it to end (found by the descriptor test: a holder that opened
//! its files, charged as CPU, then read its stdin for ever).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// CPU a guest may spend before it counts as busy.
pub const BUSY_AFTER: Duration = Duration::from_millis(10);

/// The lanes busy guests share. Cheap to clone.
#[derive(Clone)]
pub struct BusyLane(Arc<Semaphore>);

/// The lane one guest holds while it runs busy; released when it waits
/// ([`Seated`]) or its store is dropped.
#[derive(Default, Clone)]
pub struct Seat(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

impl Seat {
    /// Gives the lane back, if held.
    fn leave(&self) {
        drop(lock(&self.0).take());
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
    /// `lanes` lanes (at least one).
    pub fn new(lanes: usize) -> Self {
        Self(Arc::new(Semaphore::new(lanes.max(1))))
    }

    /// The number of lanes that leaves one worker thread free on this
    /// machine (tokio starts one worker per core).
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores.saturating_sub(1))
    }

    /// At a tick of a busy guest: gives its lane back and returns the wait
    /// for its next turn, for the guest to yield on.
    pub fn next_turn(&self, seat: &Seat) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let slot = seat.0.clone();
        drop(lock(&slot).take());
        let lanes = self.0.clone();
        Box::pin(async move {
            // The semaphore is never closed, so acquiring cannot fail.
            if let Ok(permit) = lanes.acquire_owned().await {
                *lock(&slot) = Some(permit);
            }
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing can panic while the lock is held.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn busy_guests_take_turns_on_the_lanes() {
        let lane = BusyLane::new(1);
        let (a, b) = (Seat::default(), Seat::default());
        lane.next_turn(&a).await;
        // The only lane is a's: b waits until a's next tick gives it back.
        let mut b_turn = lane.next_turn(&b);
        assert!(futures_poll_once(&mut b_turn).is_pending());
        let mut a_turn = lane.next_turn(&a);
        assert!(futures_poll_once(&mut b_turn).is_ready());
        assert!(futures_poll_once(&mut a_turn).is_pending());
        drop(b);
        drop(b_turn);
    }

    #[tokio::test]
    async fn a_waiting_guest_gives_its_lane_back() {
        let lane = BusyLane::new(1);
        let (a, b) = (Seat::default(), Seat::default());
        // a takes the only lane at a tick, then waits on its client.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (a_lane, a_seat) = (lane.clone(), a.clone());
        let mut a_run = Box::pin(Seated::new(
            async move {
                a_lane.next_turn(&a_seat).await;
                let _ = rx.await;
            },
            a,
        ));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        // a gets the lane, then waits.
        assert!(a_run.as_mut().poll(&mut cx).is_pending());
        // b gets the lane while a waits.
        let mut b_turn = lane.next_turn(&b);
        assert!(futures_poll_once(&mut b_turn).is_ready());
        drop(tx);
    }

    fn futures_poll_once(f: &mut Pin<Box<dyn Future<Output = ()> + Send>>) -> std::task::Poll<()> {
        let waker = std::task::Waker::noop();
        f.as_mut().poll(&mut std::task::Context::from_waker(waker))
    }
}
