//! The engine's settings: epoch interruption for the CPU and wall-clock
//! limits, and the pooling allocator sized from `--limit`, with slots
//! reset in place.

use wasmtime::{Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::SandboxOptions;

/// Bytes of a freed linear memory reset in place rather than decommitted
/// (only resident pages, with PAGEMAP_SCAN): a small guest's whole
/// working set, bounded so a warm slot never pins much RSS.
const LINEAR_MEMORY_KEEP_RESIDENT: usize = 1 << 20;
/// The same for tables.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;
/// Decommits per batch. One: what a guest touched past the keep-resident
/// bytes above is given back to the kernel as soon as the guest ends. A
/// larger batch saves `madvise` rounds, but holds up to that many slots'
/// pages, of any size, until enough others end: an idle daemon would keep
/// whatever its last big guests touched.
const DECOMMIT_BATCH: usize = 1;

/// What one component may hold (pool caps per component instance).
const PER_COMPONENT_CORE_INSTANCES: u32 = 50;
const PER_COMPONENT_MEMORIES: u32 = 8;
const PER_COMPONENT_TABLES: u32 = 16;

/// The engine's configuration; `pooling` off where the pool's address
/// space is refused.
pub(super) fn engine_config(opts: &SandboxOptions, pooling: bool) -> Config {
    let mut cfg = Config::new();
    cfg.epoch_interruption(true);
    if pooling {
        let n = opts.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        // A p1 module is one core instance with one memory and one table; a
        // component made by the Rust toolchain holds a handful of each, one
        // made by componentize-py (CPython as shared libraries) a dozen
        // core instances. The totals are per guest on average, but never
        // below what one component may hold, so that a pool of one slot
        // (`wasinetd run`) can run any guest the per-component caps allow.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(4).max(PER_COMPONENT_CORE_INSTANCES))
            .total_memories(n.saturating_mul(2).max(PER_COMPONENT_MEMORIES))
            .total_tables(n.saturating_mul(4).max(PER_COMPONENT_TABLES))
            .total_stacks(n)
            .max_core_instances_per_component(PER_COMPONENT_CORE_INSTANCES)
            .max_memories_per_component(PER_COMPONENT_MEMORIES)
            .max_tables_per_component(PER_COMPONENT_TABLES)
            // Reset a slot by rewriting only the pages the last guest
            // touched (found with PAGEMAP_SCAN), keeping them mapped: no
            // madvise, so no TLB-shootdown IPIs to every core, and no page
            // faults when the next guest touches them again. Past this
            // much, the rest is decommitted in batches.
            .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            .pagemap_scan(Enabled::Auto)
            .decommit_batch_size(DECOMMIT_BATCH);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    cfg
}
