//! What a guest costs in CPU: every nanosecond its run keeps a thread busy,
//! in guest code or in host calls made for it.
//!
//! A guest runs inside one future (its fiber); each poll of that future is
//! the guest running, on whichever worker thread polls it: its own code,
//! the host calls it makes (copying bytes, filling random buffers, opening
//! files, refusing a `memory.grow`), instantiation and its start function.
//! Between polls it is waiting (for its client, a timer, its turn), which
//! costs nothing. So the thread's own CPU clock (`CLOCK_THREAD_CPUTIME_ID`)
//! read at the start and end of every poll charges exactly what the guest
//! made the daemon spend, and a loop over cheap or expensive host calls
//! ends at its budget like a pure loop. Two clock reads per poll: a guest
//! that answers in one go is polled a handful of times.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

/// The CPU time one run has used, shared by the future that charges it and
/// the epoch callback that checks it (both on the polling thread, one at a
/// time: relaxed atomics suffice).
#[derive(Debug, Default)]
pub struct CpuClock {
    /// Nanoseconds charged by finished polls.
    charged: AtomicU64,
    /// The thread's CPU clock (nanoseconds, plus one so that zero means
    /// "not running") when the running poll began.
    since: AtomicU64,
    /// Nanoseconds already added to the run's pool (its tenant's total).
    pooled: AtomicU64,
}

impl CpuClock {
    /// CPU used so far, including the poll running now on this thread.
    pub fn used(&self) -> Duration {
        let mut ns = self.charged.load(Relaxed);
        let since = self.since.load(Relaxed);
        if since != 0 {
            ns += thread_cpu_ns().saturating_sub(since - 1);
        }
        Duration::from_nanos(ns)
    }

    /// CPU used since the last call (or since the run began): what is still
    /// to be added to the run's pool, so that a tenant's total runs on
    /// while its guests do, not only when they end.
    pub fn unpooled(&self) -> Duration {
        let used = u64::try_from(self.used().as_nanos()).unwrap_or(u64::MAX);
        let before = self.pooled.fetch_max(used, Relaxed);
        Duration::from_nanos(used.saturating_sub(before))
    }

    /// Charges `spent` done for the run on another thread (file work on
    /// the runtime's blocking threads, timed by the guard).
    pub fn charge(&self, spent: Duration) {
        let ns = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.charged.fetch_add(ns, Relaxed);
    }

    fn begin(&self) {
        self.since.store(thread_cpu_ns() + 1, Relaxed);
    }

    fn end(&self) {
        let since = self.since.swap(0, Relaxed);
        if since != 0 {
            let spent = thread_cpu_ns().saturating_sub(since - 1);
            self.charged.fetch_add(spent, Relaxed);
        }
    }
}

/// The calling thread's CPU time, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    // Both fields are non-negative for a CPU clock.
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// A guest's run, charging the CPU of each of its polls to `clock`.
pub struct Charged<F> {
    inner: Pin<Box<F>>,
    clock: Arc<CpuClock>,
}

impl<F> Charged<F> {
    pub fn new(inner: F, clock: Arc<CpuClock>) -> Self {
        Self {
            inner: Box::pin(inner),
            clock,
        }
    }
}

impl<F: Future> Future for Charged<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.clock.begin();
        let poll = self.inner.as_mut().poll(cx);
        self.clock.end();
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_goes_to_the_pool_is_counted_once() {
        let clock = CpuClock::default();
        clock.charge(Duration::from_millis(5));
        assert_eq!(clock.unpooled(), Duration::from_millis(5));
        assert_eq!(clock.unpooled(), Duration::ZERO);
        clock.charge(Duration::from_millis(2));
        assert_eq!(clock.unpooled(), Duration::from_millis(2));
    }

    fn burn(d: Duration) {
        let start = thread_cpu_ns();
        while thread_cpu_ns() - start < d.as_nanos() as u64 {
            std::hint::black_box(0u64);
        }
    }

    #[test]
    fn work_in_a_poll_is_charged_and_waiting_between_polls_is_not() {
        let clock = Arc::new(CpuClock::default());
        let mut polls = 0;
        let mut run = Charged::new(
            std::future::poll_fn(|cx| {
                polls += 1;
                burn(Duration::from_millis(5));
                if polls < 3 {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            }),
            clock.clone(),
        );
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        while Pin::new(&mut run).poll(&mut cx).is_pending() {
            // Sleeping costs no CPU, and is outside any poll.
            std::thread::sleep(Duration::from_millis(20));
        }
        let used = clock.used();
        assert!(used >= Duration::from_millis(15), "{used:?}");
        // The 40 ms asleep are not charged (a loaded machine may add some
        // scheduling noise, never tens of milliseconds of CPU).
        assert!(used < Duration::from_millis(35), "{used:?}");
    }
}
