//! What the guests of one tenant share while they run: a memory budget
//! summed over its live guests, its weight when busy guests take turns on
//! the lanes, and the CPU they have spent.
//!
//! Every run belongs to one pool: a tenant's services share their
//! tenant's, and services outside any tenant share one implicit pool with
//! no memory budget. A guest's linear memory is reserved from its pool as
//! it grows (its instantiation included) and given back when its store is
//! dropped, so the sum is exact at every moment, not sampled.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// One tenant's shared budgets. Kept by the daemon across reloads (the
/// running guests of a tenant's old and new services count together).
#[derive(Debug)]
pub struct Pool {
    /// `u64::MAX`: no sum.
    memory_limit: AtomicU64,
    memory_used: AtomicU64,
    weight: AtomicU32,
    cpu_ns: AtomicU64,
}

impl Pool {
    /// A pool whose live guests may hold `memory_limit` bytes of linear
    /// memory together (`None`: no sum), weighted `weight` (at least 1)
    /// on the busy lanes.
    pub fn new(memory_limit: Option<u64>, weight: u32) -> Self {
        let pool = Self {
            memory_limit: AtomicU64::new(u64::MAX),
            memory_used: AtomicU64::new(0),
            weight: AtomicU32::new(1),
            cpu_ns: AtomicU64::new(0),
        };
        pool.set(memory_limit, weight);
        pool
    }

    /// New budgets for the same pool (a reload changed the tenant): what
    /// its live guests hold stays counted; a lower sum than they hold
    /// refuses growth and new guests until enough of them end.
    pub fn set(&self, memory_limit: Option<u64>, weight: u32) {
        self.memory_limit
            .store(memory_limit.unwrap_or(u64::MAX), Ordering::Release);
        self.weight.store(weight.max(1), Ordering::Release);
    }

    /// The pool of services outside every tenant: no memory sum, weight 1.
    pub fn implicit() -> Self {
        Self::new(None, 1)
    }

    /// Linear memory its live guests hold now, in bytes.
    pub fn memory_used(&self) -> u64 {
        self.memory_used.load(Ordering::Acquire)
    }

    /// The summed memory budget, if any.
    pub fn memory_limit(&self) -> Option<u64> {
        let limit = self.memory_limit.load(Ordering::Acquire);
        (limit != u64::MAX).then_some(limit)
    }

    /// Whether the budget has no room for even one more WebAssembly page:
    /// a new guest could not instantiate.
    pub fn memory_exhausted(&self) -> bool {
        self.memory_limit()
            .is_some_and(|limit| self.memory_used().saturating_add(64 << 10) > limit)
    }

    /// Its weight on the busy lanes (`cpu_share`): its share of their time
    /// against other pools with busy guests. The lanes read it at every
    /// turn, so a weight [`set`](Self::set) at a reload counts from the next.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Acquire)
    }

    /// CPU its guests have spent, finished runs and charged ticks.
    pub fn cpu_used(&self) -> Duration {
        Duration::from_nanos(self.cpu_ns.load(Ordering::Relaxed))
    }

    /// Adds `spent` to its CPU total.
    pub fn charge_cpu(&self, spent: Duration) {
        let ns = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.cpu_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Takes `bytes` from the memory budget; false (and nothing taken)
    /// when that would pass it.
    pub(super) fn reserve(&self, bytes: u64) -> bool {
        let Some(limit) = self.memory_limit() else {
            self.memory_used.fetch_add(bytes, Ordering::AcqRel);
            return true;
        };
        self.memory_used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&sum| sum <= limit)
            })
            .is_ok()
    }

    /// Gives back `bytes` taken by [`reserve`](Self::reserve).
    pub(super) fn release(&self, bytes: u64) {
        self.memory_used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl Default for Pool {
    fn default() -> Self {
        Self::implicit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_sum_holds_across_reservations() {
        let pool = Pool::new(Some(3 << 16), 1);
        assert!(pool.reserve(2 << 16));
        assert!(!pool.reserve(2 << 16), "past the sum");
        assert_eq!(pool.memory_used(), 2 << 16);
        assert!(!pool.memory_exhausted());
        assert!(pool.reserve(1 << 16));
        assert!(pool.memory_exhausted());
        pool.release(3 << 16);
        assert_eq!(pool.memory_used(), 0);
        let open = Pool::implicit();
        assert!(open.reserve(u64::MAX / 2) && !open.memory_exhausted());
    }
}
