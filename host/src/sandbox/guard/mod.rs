//! What a guest's files and sockets may cost the daemon, checked at the
//! WASI calls that open, grow, link and close them:
//!
//! - **Descriptors.** Every file, directory and socket a guest opens is a
//!   descriptor of the daemon's own process. They are counted against one
//!   daemon-wide budget ([`FdBudget`]: the daemon's `RLIMIT_NOFILE` less a
//!   reserve for its listeners, connections and logs), so guests together
//!   can never leave the daemon unable to accept; and one guest holds at
//!   most a quarter of that budget ([`SHARE`]), so it cannot leave other
//!   guests with none. A guest past either gets `EMFILE`
//!   (`new-socket-limit` for a socket), not the daemon.
//! - **Disk.** A writable preopen may hold at most its quota of bytes and
//!   of entries (files, directories, links), counted for the directory
//!   across every guest that writes to it ([`DiskQuota`]). A write, a
//!   `set-size`, a create or a link past it fails in the guest (`EDQUOT`),
//!   and the file does not grow. What is there when the service is loaded
//!   counts; what outside processes change later is seen at the next load.
//! - **Only files and directories are opened.** File operations run on
//!   tokio's blocking threads: opening a FIFO or a device someone left in a
//!   preopen would hold one for as long as no one writes to it (the guest
//!   ends at its deadline, the thread does not), and enough of them would
//!   stall every guest's file work. Opening anything but a regular file or
//!   a directory is refused (`EACCES`).
//! - **Symlinks.** Creating one inside a preopen is refused (`EPERM`)
//!   unless that preopen allows it (`:rw+symlinks`): a link a guest plants
//!   may point outside its preopen, and host tools (backups, log scrapers)
//!   that walk the directory would follow it.
//!
//! [`p1`] and [`p2`] put these checks in front of wasmtime-wasi's own
//! preview 1 and preview 2 filesystem and socket calls; everything else is
//! passed through untouched.

pub mod p1;
pub mod p2;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use super::cpu::CpuClock;

/// The part of the guests' budget one guest may hold: a quarter.
pub const SHARE: u64 = 4;

/// File work being timed for the guest's CPU: from its start until it is
/// dropped (the call returns, fails early, or is cancelled), when the time
/// is added to the guest's CPU. Hold it for the whole call:
/// `let _work = guard.file_work(true);`.
pub struct FileWork(Option<(Arc<CpuClock>, Instant)>);

impl Drop for FileWork {
    fn drop(&mut self) {
        if let Some((clock, started)) = self.0.take() {
            clock.charge(started.elapsed());
        }
    }
}

/// Descriptors all guests together may hold at once.
#[derive(Debug)]
pub struct FdBudget {
    left: AtomicI64,
    total: u64,
}

impl FdBudget {
    /// A budget of `total` descriptors.
    pub fn new(total: u64) -> Self {
        FdBudget {
            left: AtomicI64::new(i64::try_from(total).unwrap_or(i64::MAX)),
            total,
        }
    }

    /// A budget that never runs out (`wasinetd run`, tests).
    pub fn unlimited() -> Self {
        FdBudget::new(i64::MAX as u64)
    }

    /// The whole budget.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Descriptors guests hold now.
    pub fn held(&self) -> u64 {
        let left = self.left.load(Ordering::Relaxed).max(0) as u64;
        self.total.saturating_sub(left)
    }

    fn take(&self, n: u32) -> bool {
        let n = i64::from(n);
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                (left >= n).then_some(left - n)
            })
            .is_ok()
    }

    fn give(&self, n: u32) {
        self.left.fetch_add(i64::from(n), Ordering::AcqRel);
    }
}

/// What a writable directory holds: bytes in its files and entries, as
/// counted at load and kept up to date by the guests' own changes. One per
/// directory, shared by every service and guest that writes to it.
#[derive(Debug)]
pub struct Usage {
    bytes: AtomicU64,
    entries: AtomicU64,
}

/// Every directory's usage, by canonical path, while a service uses it.
static USAGE: Mutex<Vec<(PathBuf, Weak<Usage>)>> = Mutex::new(Vec::new());

impl Usage {
    /// The usage of `dir`: the one already counted for it, else counted
    /// now by walking it (at most `max_entries + 1` entries are looked at:
    /// past the quota, the exact figure does not matter).
    pub fn of(dir: &Path, max_entries: u64) -> Arc<Usage> {
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        let mut all = USAGE.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|(_, u)| u.strong_count() > 0);
        if let Some(usage) = all
            .iter()
            .find(|(p, _)| *p == key)
            .and_then(|(_, u)| u.upgrade())
        {
            return usage;
        }
        let (bytes, entries) = walk(&key, max_entries.saturating_add(1));
        let usage = Arc::new(Usage {
            bytes: AtomicU64::new(bytes),
            entries: AtomicU64::new(entries),
        });
        all.push((key, Arc::downgrade(&usage)));
        usage
    }

    /// Bytes and entries counted now.
    pub fn now(&self) -> (u64, u64) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.entries.load(Ordering::Relaxed),
        )
    }
}

/// The bytes (file sizes, sparse ones at their full size) and entries
/// under `dir`, looking at no more than `max` entries; symlinks are not
/// followed.
fn walk(dir: &Path, max: u64) -> (u64, u64) {
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(list) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in list.flatten() {
            entries += 1;
            if entries >= max {
                return (bytes, entries);
            }
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                bytes = bytes.saturating_add(meta.len());
            }
        }
    }
    (bytes, entries)
}

/// A writable preopen's limits over its directory's usage.
#[derive(Debug, Clone)]
pub struct DiskQuota {
    pub max_bytes: Option<u64>,
    pub max_entries: Option<u64>,
    pub usage: Arc<Usage>,
}

/// The quota of each of `preopens` under `quota`: `None` for a read-only
/// one, or when `quota` is UNLIMITED both ways. Counts what each writable
/// directory holds now, unless a service already counted it.
pub fn quotas(preopens: &[super::Preopen], quota: super::PreopenQuota) -> Vec<Option<DiskQuota>> {
    preopens
        .iter()
        .map(|p| {
            let limited = quota.bytes.is_some() || quota.entries.is_some();
            (p.writable && limited).then(|| DiskQuota {
                max_bytes: quota.bytes,
                max_entries: quota.entries,
                usage: Usage::of(&p.host, quota.entries.unwrap_or(u64::MAX)),
            })
        })
        .collect()
}

/// Why a change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over the daemon's descriptor budget (or the guest's own share).
    Descriptors,
    /// Over the preopen's quota of bytes or entries.
    Quota,
    /// A symlink, in a preopen that does not allow them.
    Symlink,
}

/// What the guard refused one run, counted as it happens, for the
/// connection's log line.
#[derive(Debug, Default)]
pub struct Refusals {
    descriptors: AtomicU64,
    quota: AtomicU64,
    symlinks: AtomicU64,
}

/// [`Refusals`] read at the end of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardCounts {
    /// Opens (files, directories, sockets) past the descriptor budget.
    pub descriptors: u64,
    /// Writes, creates and links past a preopen's quota.
    pub quota: u64,
    /// Symlinks refused.
    pub symlinks: u64,
}

impl Refusals {
    fn count(&self, refused: Refused) {
        let counter = match refused {
            Refused::Descriptors => &self.descriptors,
            Refused::Quota => &self.quota,
            Refused::Symlink => &self.symlinks,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn read(&self) -> GuardCounts {
        GuardCounts {
            descriptors: self.descriptors.load(Ordering::Relaxed),
            quota: self.quota.load(Ordering::Relaxed),
            symlinks: self.symlinks.load(Ordering::Relaxed),
        }
    }
}

/// What one preopen of one run allows.
#[derive(Debug, Clone)]
pub struct PreopenRules {
    /// `None`: read-only, or no quota.
    pub quota: Option<DiskQuota>,
    /// Whether the guest may create symlinks in it.
    pub symlinks: bool,
}

/// One run's guard, kept in its store.
#[derive(Debug)]
pub struct Guard {
    budget: Arc<FdBudget>,
    /// Descriptors charged to the budget now.
    held: u32,
    /// By preopen, in the order the guest's world lists them.
    preopens: Vec<PreopenRules>,
    refusals: Arc<Refusals>,
    /// The run's CPU clock: file operations run on the runtime's blocking
    /// threads, not the guest's own, and are charged here by their time.
    clock: Arc<CpuClock>,
}

impl Guard {
    /// The guard of a run with `preopens`, whose directories (one
    /// descriptor each) are charged now; `None` if the budget has no room
    /// for them.
    pub fn new(
        budget: Arc<FdBudget>,
        preopens: Vec<PreopenRules>,
        refusals: Arc<Refusals>,
        clock: Arc<CpuClock>,
    ) -> Option<Guard> {
        let n = u32::try_from(preopens.len()).unwrap_or(u32::MAX);
        if !budget.take(n) {
            refusals.count(Refused::Descriptors);
            return None;
        }
        Some(Guard {
            budget,
            held: n,
            preopens,
            refusals,
            clock,
        })
    }

    /// Starts timing file work for the guest's CPU; nothing when `counted`
    /// is false (stdio: waiting on the client is free).
    pub fn file_work(&self, counted: bool) -> FileWork {
        FileWork(counted.then(|| (self.clock.clone(), Instant::now())))
    }

    /// Charges one more descriptor.
    fn open(&mut self) -> Result<(), Refused> {
        if u64::from(self.held) >= self.budget.total() / SHARE || !self.budget.take(1) {
            return Err(self.refused(Refused::Descriptors));
        }
        self.held += 1;
        Ok(())
    }

    /// Counts `refused`, and returns it.
    fn refused(&self, refused: Refused) -> Refused {
        self.refusals.count(refused);
        refused
    }

    /// Gives one descriptor back.
    fn close(&mut self) {
        if self.held > 0 {
            self.held -= 1;
            self.budget.give(1);
        }
    }

    fn quota(&self, preopen: Option<usize>) -> Option<&DiskQuota> {
        self.preopens.get(preopen?)?.quota.as_ref()
    }

    /// Whether the guest may make a symlink in `preopen` (a refusal is
    /// counted).
    fn allows_symlinks(&self, preopen: Option<usize>) -> bool {
        let allowed = preopen.is_some_and(|p| self.preopens.get(p).is_some_and(|r| r.symlinks));
        if !allowed {
            self.refused(Refused::Symlink);
        }
        allowed
    }

    /// Takes `bytes` more from `preopen`'s quota.
    fn grow(&self, preopen: Option<usize>, bytes: u64) -> Result<(), Refused> {
        let Some(q) = self.quota(preopen) else {
            return Ok(());
        };
        add(&q.usage.bytes, bytes, q.max_bytes).map_err(|r| self.refused(r))
    }

    /// Gives `bytes` back to `preopen`'s quota.
    fn shrink(&self, preopen: Option<usize>, bytes: u64) {
        if let Some(q) = self.quota(preopen) {
            sub(&q.usage.bytes, bytes);
        }
    }

    /// One more entry in `preopen`.
    fn add_entry(&self, preopen: Option<usize>) -> Result<(), Refused> {
        let Some(q) = self.quota(preopen) else {
            return Ok(());
        };
        add(&q.usage.entries, 1, q.max_entries).map_err(|r| self.refused(r))
    }

    /// One entry fewer in `preopen`.
    fn remove_entry(&self, preopen: Option<usize>) {
        if let Some(q) = self.quota(preopen) {
            sub(&q.usage.entries, 1);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.budget.give(self.held);
    }
}

fn add(counter: &AtomicU64, n: u64, max: Option<u64>) -> Result<(), Refused> {
    let max = max.unwrap_or(u64::MAX);
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            v.checked_add(n).filter(|&t| t <= max)
        })
        .map(|_| ())
        .map_err(|_| Refused::Quota)
}

fn sub(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        Some(v.saturating_sub(n))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let budget = Arc::new(FdBudget::new(12));
        let refusals = Arc::new(Refusals::default());
        let clock = Arc::new(CpuClock::default());
        let mut a = Guard::new(budget.clone(), vec![], refusals.clone(), clock.clone()).unwrap();
        let mut b = Guard::new(budget.clone(), vec![], refusals.clone(), clock.clone()).unwrap();
        // One guest holds at most a quarter of the budget.
        for _ in 0..3 {
            a.open().unwrap();
        }
        assert_eq!(a.open(), Err(Refused::Descriptors));
        let mut others: Vec<Guard> = (0..3)
            .map(|_| Guard::new(budget.clone(), vec![], refusals.clone(), clock.clone()).unwrap())
            .collect();
        for g in &mut others {
            for _ in 0..3 {
                g.open().unwrap();
            }
        }
        // All 12 held: no one gets more, whatever their share.
        assert_eq!(budget.held(), 12);
        b.open().unwrap_err();
        a.close();
        b.open().unwrap();
        drop(a);
        drop(b);
        drop(others);
        assert_eq!(budget.held(), 0);
        assert_eq!(refusals.read().descriptors, 2);
    }

    #[test]
    fn a_quota_caps_bytes_and_entries() {
        let usage = Arc::new(Usage {
            bytes: AtomicU64::new(90),
            entries: AtomicU64::new(1),
        });
        let rules = PreopenRules {
            quota: Some(DiskQuota {
                max_bytes: Some(100),
                max_entries: Some(2),
                usage: usage.clone(),
            }),
            symlinks: false,
        };
        let g = Guard::new(
            Arc::new(FdBudget::unlimited()),
            vec![rules],
            Arc::default(),
            Arc::default(),
        )
        .unwrap();
        g.grow(Some(0), 10).unwrap();
        assert_eq!(g.grow(Some(0), 1), Err(Refused::Quota));
        g.shrink(Some(0), 50);
        g.grow(Some(0), 1).unwrap();
        g.add_entry(Some(0)).unwrap();
        assert_eq!(g.add_entry(Some(0)), Err(Refused::Quota));
        // Outside any preopen (or read-only): nothing is counted.
        g.grow(None, u64::MAX).unwrap();
        assert!(!g.allows_symlinks(Some(0)));
        assert_eq!(usage.now(), (51, 2));
    }
}
