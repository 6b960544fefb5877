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

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// CPU a guest may spend before it counts as busy.
pub const BUSY_AFTER: Duration = Duration::from_millis(10);

/// The lanes busy guests share. Cheap to clone.
#[derive(Clone)]
pub struct BusyLane(Arc<Semaphore>);

/// The lane one guest holds while it runs busy; released when the guest's
/// store is dropped.
#[derive(Default)]
pub struct Seat(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

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

    fn futures_poll_once(f: &mut Pin<Box<dyn Future<Output = ()> + Send>>) -> std::task::Poll<()> {
        let waker = std::task::Waker::noop();
        f.as_mut().poll(&mut std::task::Context::from_waker(waker))
    }
}
