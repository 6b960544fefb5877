//! What one guest may use, and what it has used: the per-store memory
//! limiter and CPU meter.
//!
//! Memory is counted across every linear memory of the instance (a component
//! has several), so `rlimit_as` is a total, as a process's address-space
//! limit is. CPU is the time spent executing guest code: wasmtime calls the
//! store's call hook on every crossing between guest and host (host calls,
//! libcalls, and the epoch check itself), so the time between "entering
//! wasm" and "leaving wasm" is exactly guest execution, and time blocked in
//! a host call (waiting for the client) is never charged.

use std::time::{Duration, Instant};

use wasmtime::{CallHook, ResourceLimiter};

/// Per-connection limits and usage, kept in the store's data.
#[derive(Debug)]
pub struct Meter {
    memory_limit: u64,
    memory_used: u64,
    memory_peak: u64,
    memory_denied: bool,
    cpu_budget: Option<Duration>,
    cpu_used: Duration,
    running_since: Option<Instant>,
    cpu_exceeded: bool,
}

/// Table elements one instance may hold; far above what compilers emit for
/// indirect calls, low enough that a hostile `table.grow` cannot hoard memory.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl Meter {
    /// A meter enforcing `memory_limit` bytes and, when given, a CPU budget.
    pub fn new(memory_limit: u64, cpu_budget: Option<Duration>) -> Self {
        Self {
            memory_limit,
            memory_used: 0,
            memory_peak: 0,
            memory_denied: false,
            cpu_budget,
            cpu_used: Duration::ZERO,
            running_since: None,
            cpu_exceeded: false,
        }
    }

    /// Accounts guest execution time at every guest/host crossing.
    pub fn on_call_hook(&mut self, hook: CallHook) {
        if hook.exiting_host() {
            self.running_since = Some(Instant::now());
        } else if let Some(since) = self.running_since.take() {
            self.cpu_used += since.elapsed();
        }
    }

    /// Called from the epoch callback (itself inside a host crossing, so
    /// `cpu_used` is current): true once the budget is spent.
    pub fn cpu_budget_spent(&mut self) -> bool {
        if let Some(budget) = self.cpu_budget
            && self.cpu_used > budget
        {
            self.cpu_exceeded = true;
        }
        self.cpu_exceeded
    }

    /// Whether the guest was stopped for spending its CPU budget.
    pub fn cpu_exceeded(&self) -> bool {
        self.cpu_exceeded
    }

    /// Whether a memory growth was refused for passing the limit.
    pub fn memory_denied(&self) -> bool {
        self.memory_denied
    }

    /// Guest CPU time used so far.
    pub fn cpu_used(&self) -> Duration {
        self.cpu_used
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_a_total_across_memories() {
        let mut m = Meter::new(100, None);
        assert!(m.memory_growing(0, 60, None).unwrap());
        assert!(!m.memory_growing(0, 60, None).unwrap());
        assert!(m.memory_denied());
        assert!(m.memory_growing(60, 100, None).unwrap());
        assert_eq!(m.memory_peak(), 100);
    }

    #[test]
    fn only_time_inside_the_guest_is_charged() {
        // Bounds from the test's own clock, not fixed figures: a loaded
        // machine stretches every sleep, and must not fail the test.
        let budget = Duration::from_millis(5);
        let mut m = Meter::new(0, Some(budget));
        let entered = Instant::now();
        m.on_call_hook(CallHook::CallingWasm);
        std::thread::sleep(Duration::from_millis(2));
        m.on_call_hook(CallHook::CallingHost);
        let in_guest = entered.elapsed();
        std::thread::sleep(Duration::from_millis(20));
        let back = Instant::now();
        m.on_call_hook(CallHook::ReturningFromHost);
        m.on_call_hook(CallHook::ReturningFromWasm);
        let back_in_guest = back.elapsed();
        let used = m.cpu_used();
        assert!(used >= Duration::from_millis(2), "{used:?}");
        // The 20 ms in the host are not charged: at most the guest's spans.
        assert!(
            used <= in_guest + back_in_guest,
            "{used:?} > {in_guest:?} + {back_in_guest:?}"
        );
        assert_eq!(m.cpu_budget_spent(), used > budget);
    }
}
