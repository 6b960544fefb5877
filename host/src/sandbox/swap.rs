//! Swap and the reset of a pool slot between two guests.
//!
//! The fast reset (wasmtime's PAGEMAP_SCAN, see [`super::engine`]) asks the
//! kernel which pages of the slot are resident and written, and rewrites
//! only those. A written page the kernel has swapped out is neither: it is
//! not rewritten, and the next guest in the slot reads the last guest's
//! data when it touches that page (wasmtime 48; `tests/e2e/hostile/
//! memory.rs` shows it). So the fast reset is used only where no page of
//! this process can be swapped out: no swap is on, or a cgroup this
//! process is in allows it none (`memory.swap.max` 0, systemd's
//! `MemorySwapMax=0`). Elsewhere every slot is reset whole, which is
//! slower and safe.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the daemon looks for swap turned on after it started.
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Whether a page of this process's memory may be swapped out: some swap
/// is on and no cgroup of this process caps its swap at 0.
pub(super) fn may_swap() -> bool {
    swap_is_on(Path::new("/proc/swaps")) && !swap_capped_at_zero(Path::new("/sys/fs/cgroup"))
}

/// Whether `/proc/swaps` lists a swap area. A kernel without swap has no
/// such file; one that cannot be read counts as swap on.
fn swap_is_on(swaps: &Path) -> bool {
    match std::fs::read_to_string(swaps) {
        // The first line is the table's header.
        Ok(text) => text.lines().skip(1).any(|l| !l.trim().is_empty()),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// Whether this process's cgroup (v2), or one above it, has
/// `memory.swap.max` 0.
fn swap_capped_at_zero(root: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") else {
        return false;
    };
    let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
        return false;
    };
    cgroup_chain(root, path).iter().any(|dir| {
        std::fs::read_to_string(dir.join("memory.swap.max")).is_ok_and(|max| max.trim() == "0")
    })
}

/// The cgroup at `path` under `root`, then each one above it up to the
/// root.
fn cgroup_chain(root: &Path, path: &str) -> Vec<PathBuf> {
    let mut chain = vec![root.to_path_buf()];
    let mut dir = root.to_path_buf();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != "..") {
        dir.push(part);
        chain.push(dir.clone());
    }
    chain.reverse();
    chain
}

/// What the daemon says about swap at start, and a thread that says it
/// again if swap is turned on later while slots are reset the fast way.
pub(super) fn watch(reset_in_place: bool) {
    if !reset_in_place {
        tracing::warn!(
            "swap is on: pool slots are reset whole between guests, more slowly, as the faster \
             reset would miss pages swapped out and hand them to the next guest; give the daemon \
             no swap (cgroup memory.swap.max 0, systemd MemorySwapMax=0) to have it"
        );
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("swap-watch".into())
        .spawn(|| {
            let mut said = false;
            loop {
                std::thread::sleep(WATCH_EVERY);
                let now = may_swap();
                if now && !said {
                    tracing::error!(
                        "swap was turned on after start: a guest's pages swapped out while it \
                         runs would reach the next guest in its pool slot; restart wasinetd \
                         (it then resets slots whole) or give it no swap (cgroup \
                         memory.swap.max 0, systemd MemorySwapMax=0)"
                    );
                }
                said = now;
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch for swap turned on later: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swaps_table_with_only_its_header_is_no_swap() {
        let dir = tempfile::tempdir().unwrap();
        let swaps = dir.path().join("swaps");
        std::fs::write(&swaps, "Filename\tType\tSize\tUsed\tPriority\n").unwrap();
        assert!(!swap_is_on(&swaps));
        std::fs::write(
            &swaps,
            "Filename\tType\tSize\tUsed\tPriority\n/swapfile  file  262140  0  -2\n",
        )
        .unwrap();
        assert!(swap_is_on(&swaps));
        assert!(!swap_is_on(&dir.path().join("absent")));
    }

    #[test]
    fn the_cgroup_chain_runs_from_this_cgroup_up_to_the_root() {
        let chain = cgroup_chain(Path::new("/cg"), "/system.slice/wasinetd.service");
        assert_eq!(
            chain,
            [
                "/cg/system.slice/wasinetd.service",
                "/cg/system.slice",
                "/cg"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(cgroup_chain(Path::new("/cg"), "/"), [PathBuf::from("/cg")]);
        // A path cannot climb out of the cgroup tree.
        assert_eq!(
            cgroup_chain(Path::new("/cg"), "/../.."),
            [PathBuf::from("/cg")]
        );
    }
}
