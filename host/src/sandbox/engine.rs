//! The engine's settings: epoch interruption for the CPU and wall-clock
//! limits, and the pooling allocator sized from `--limit`, with slots
//! reset in place and each linear memory's reservation sized so the whole
//! pool fits the process's address space.

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

/// Address space all linear memories together may reserve: three quarters
/// of the 128 TiB a process has with 4-level page tables (x86-64,
/// aarch64), the rest left to stacks, tables, instances and the heap.
const MEMORY_ADDRESS_SPACE: u64 = 96 << 40;
/// wasmtime's reservation on 64-bit hosts: a 32-bit memory's whole 4 GiB,
/// so compiled code needs no bounds checks and a memory never moves.
const FULL_RESERVATION: u64 = 4 << 30;
/// wasmtime's guard after each memory (its default on 64-bit hosts).
const MEMORY_GUARD: u64 = 32 << 20;
/// The least a memory may reserve however large `--limit` is.
const MIN_RESERVATION: u64 = 64 << 20;

/// What one component may hold (pool caps per component instance).
const PER_COMPONENT_CORE_INSTANCES: u32 = 50;
const PER_COMPONENT_MEMORIES: u32 = 8;
const PER_COMPONENT_TABLES: u32 = 16;

/// The engine's configuration; `pooling` off where the pool's address
/// space is refused.
pub(super) fn engine_config(opts: &SandboxOptions, pooling: bool) -> Config {
    config_with(opts, pooling, reservation_for(opts.max_instances))
}

/// [`engine_config`] with each memory reserving `reservation` bytes: a
/// compiler process makes a pool of one slot, and its code must fit the
/// daemon's reservation, not its own.
pub(super) fn config_with(opts: &SandboxOptions, pooling: bool, reservation: u64) -> Config {
    let mut cfg = Config::new();
    cfg.epoch_interruption(true);
    let n = opts.max_instances;
    let total_memories = total_memories(n);
    if reservation < FULL_RESERVATION {
        // Bounds-checked code, and memories capped at the reservation (in
        // the pool) or moved when they grow past it (on demand).
        cfg.memory_reservation(reservation);
    }
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        // A p1 module is one core instance with one memory and one table; a
        // component made by the Rust toolchain holds a handful of each, one
        // made by componentize-py (CPython as shared libraries) a dozen
        // core instances. The totals are per guest on average, but never
        // below what one component may hold, so that a pool of one slot
        // (`wasinetd run`) can run any guest the per-component caps allow.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(4).max(PER_COMPONENT_CORE_INSTANCES))
            .total_memories(total_memories)
            .total_tables(n.saturating_mul(4).max(PER_COMPONENT_TABLES))
            .total_stacks(n)
            .max_core_instances_per_component(PER_COMPONENT_CORE_INSTANCES)
            .max_memories_per_component(PER_COMPONENT_MEMORIES)
            .max_tables_per_component(PER_COMPONENT_TABLES)
            // Reset a slot by rewriting only the pages the last guest
            // touched (found with PAGEMAP_SCAN), keeping them mapped: no
            // madvise, so no TLB-shootdown IPIs to every core, and no page
            // faults when the next guest touches them again. Past this
            // much, the rest is decommitted in batches. (wasmtime is
            // patched for it, vendor/README.md: as published it missed
            // pages swapped out, which reached the next guest, and
            // decommitted whatever lay past 32 runs of dirty pages.)
            .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            .pagemap_scan(Enabled::Auto)
            .decommit_batch_size(DECOMMIT_BATCH);
        if reservation < FULL_RESERVATION {
            pool.max_memory_size(usize::try_from(reservation).unwrap_or(usize::MAX));
        }
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    cfg
}

/// Memory areas (VMAs) one live guest maps: its memory's accessible part
/// and image, its stack and guard page, its table: 6 for a module
/// (`bench/extras.sh hold`: 114,086 areas at 19,000 held), more for a
/// component.
const AREAS_PER_GUEST: u64 = 8;
/// Areas the daemon maps besides its guests'.
const AREAS_BASE: u64 = 1024;

/// Warns when the kernel's `vm.max_map_count` (65,530 by default: about
/// 8,000 guests) is too low for `max_instances` live guests: past it a
/// new guest's memory cannot be mapped and its connection fails.
pub(super) fn check_map_count(max_instances: u32) {
    let Some(max) = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return;
    };
    let need = AREAS_BASE + AREAS_PER_GUEST * u64::from(max_instances);
    if max < need {
        tracing::warn!(
            "vm.max_map_count {max} maps about {} live guests ({AREAS_PER_GUEST} memory areas \
             each), fewer than --limit {max_instances}; past it new guests fail: raise it \
             (sysctl -w vm.max_map_count={need})",
            max.saturating_sub(AREAS_BASE) / AREAS_PER_GUEST
        );
    }
}

/// The cap on each guest's linear memory when `opts.max_instances` shrinks
/// the reservation below wasmtime's full one; `None` when it does not.
pub(super) fn memory_cap(opts: &SandboxOptions) -> Option<u64> {
    let r = reservation_for(opts.max_instances);
    (r < FULL_RESERVATION).then_some(r)
}

/// Bytes each linear memory reserves in a pool for `n` guests.
pub(super) fn reservation_for(n: u32) -> u64 {
    memory_reservation(total_memories(n))
}

/// Linear memories the pool holds for `n` guests.
fn total_memories(n: u32) -> u32 {
    n.saturating_mul(2).max(PER_COMPONENT_MEMORIES)
}

/// Bytes each linear memory reserves when `total` of them may be live at
/// once: wasmtime's full 4 GiB while they all fit [`MEMORY_ADDRESS_SPACE`]
/// (up to about 24,000 memories, `--limit` 12,000), else the largest power
/// of two that fits (256 MiB for `--limit` 100,000), never below
/// [`MIN_RESERVATION`]. Past the full reservation a guest's memory cannot
/// grow beyond it, whatever its `rlimit_as`.
pub(super) fn memory_reservation(total: u32) -> u64 {
    let share = MEMORY_ADDRESS_SPACE / u64::from(total.max(1));
    if share >= FULL_RESERVATION + MEMORY_GUARD {
        return FULL_RESERVATION;
    }
    let room = share.saturating_sub(MEMORY_GUARD).max(1);
    (1u64 << room.ilog2()).max(MIN_RESERVATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_keep_their_full_reservation_while_the_pool_fits() {
        assert_eq!(memory_reservation(2_000), FULL_RESERVATION);
        assert_eq!(memory_reservation(20_000), FULL_RESERVATION);
    }

    #[test]
    fn a_large_pool_shrinks_each_reservation_to_fit_the_address_space() {
        assert_eq!(memory_reservation(200_000), 256 << 20);
        for total in [30_000, 200_000, 2_000_000] {
            let r = memory_reservation(total);
            assert!(r.is_power_of_two());
            assert!(
                u64::from(total) * (r + MEMORY_GUARD) <= MEMORY_ADDRESS_SPACE
                    || r == MIN_RESERVATION
            );
        }
        assert_eq!(memory_reservation(u32::MAX), MIN_RESERVATION);
    }
}
