//! What one guest may use of memory, and what it has used: the per-store
//! limiter.
//!
//! Memory is counted across every linear memory of the instance (a component
//! has several), so `rlimit_as` is a total, as a process's address-space
//! limit is. CPU is counted by [`cpu`](super::cpu), per poll of the run.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use super::pool::Pool;

/// Per-connection memory limit and usage, kept in the store's data.
#[derive(Debug)]
pub struct Meter {
    memory_limit: u64,
    memory_used: u64,
    memory_peak: u64,
    memory_denied: bool,
    /// Whether the last refusal was the pool's sum, not `memory_limit`.
    pool_denied: bool,
    /// The tenant's pool the memory is also taken from, given back on drop.
    pool: Arc<Pool>,
}

/// Table elements one instance may hold; far above what compilers emit for
/// indirect calls, low enough that a hostile `table.grow` cannot hoard memory.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl Meter {
    /// A meter enforcing `memory_limit` bytes, and `pool`'s sum.
    pub fn new(memory_limit: u64, pool: Arc<Pool>) -> Self {
        Self {
            memory_limit,
            memory_used: 0,
            memory_peak: 0,
            memory_denied: false,
            pool_denied: false,
            pool,
        }
    }

    /// Whether a growth was refused because the tenant's summed `memory`
    /// had no room (rather than the guest's own `rlimit_as`).
    pub fn pool_denied(&self) -> bool {
        self.pool_denied
    }

    /// Whether a memory growth was refused for passing the limit.
    pub fn memory_denied(&self) -> bool {
        self.memory_denied
    }

    /// The most linear memory the instance held at once, in bytes.
    pub fn memory_peak(&self) -> u64 {
        self.memory_peak
    }
}
impl ResourceLimiter for Meter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // usize -> u64 is lossless on every target wasmtime supports.
        let grow = (desired - current) as u64;
        if self.memory_used + grow > self.memory_limit {
            // Refuse as the kernel refuses past RLIMIT_AS: `memory.grow`
            // returns -1 and the guest decides (most abort, which traps).
            self.memory_denied = true;
            return Ok(false);
        }
        if !self.pool.reserve(grow) {
            self.memory_denied = true;
            self.pool_denied = true;
            return Ok(false);
        }
        self.memory_used += grow;
        self.memory_peak = self.memory_peak.max(self.memory_used);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.pool.release(self.memory_used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_a_total_across_memories() {
        let mut m = Meter::new(100, Arc::default());
        assert!(m.memory_growing(0, 60, None).unwrap());
        assert!(!m.memory_growing(0, 60, None).unwrap());
        assert!(m.memory_denied());
        assert!(m.memory_growing(60, 100, None).unwrap());
        assert_eq!(m.memory_peak(), 100);
    }
}
