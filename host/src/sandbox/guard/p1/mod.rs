//! The guard in front of wasmtime-wasi's preview 1 calls: a wrapper
//! around its `WasiP1Ctx` that implements the preview 1 interface by
//! passing every call through, after the guard's checks for the calls that
//! open, close, grow, link or remove (see [`super`]).
//!
//! Preview 1 names files by small numbers: the guard keeps, per number the
//! guest holds, which preopen it lies in and whether it was charged to the
//! descriptor budget. Preopens are numbers 3, 4, ... in the order the
//! guest's world lists them (stdio is 0-2), as wasmtime-wasi numbers them.
//! A disk change is measured with the file's own size before and after,
//! so the quota counts what really changed.
//!
//! [`calls`] implements the interface call by call: the calls the guard
//! checks are in [`descriptors`] (opening, closing and renumbering: the
//! descriptor budget, only files and directories), [`quota`] (writes and
//! sizes: the disk quota) and [`entries`] (creating, linking, removing,
//! renaming: entries and symlinks); every other call is passed through.

mod calls;
mod descriptors;
mod entries;
mod quota;

use std::collections::HashMap;

use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::types;
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;
use wiggle::{GuestMemory, GuestPtr};

use super::{Guard, Refused};

/// A preview 1 context behind the guard.
pub struct GuardedP1 {
    pub wasi: WasiP1Ctx,
    guard: Guard,
    /// The numbers the guest holds beyond stdio, with what the guard knows.
    fds: HashMap<u32, Held>,
}

/// One number the guest holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// The preopen it lies in.
    preopen: Option<usize>,
    /// Charged to the descriptor budget when it was opened (preopens are
    /// charged for the whole run).
    counted: bool,
}

impl GuardedP1 {
    /// `wasi` behind `guard`, whose `preopens` are numbers 3 and up.
    pub fn new(wasi: WasiP1Ctx, guard: Guard, preopens: usize) -> Self {
        let fds = (0..preopens)
            .map(|i| {
                let held = Held {
                    preopen: Some(i),
                    counted: false,
                };
                (3 + i as u32, held)
            })
            .collect();
        GuardedP1 { wasi, guard, fds }
    }

    fn guard_ref(&self) -> &Guard {
        &self.guard
    }

    fn preopen_of(&self, fd: types::Fd) -> Option<usize> {
        self.fds.get(&u32::from(fd)).and_then(|h| h.preopen)
    }

    /// What is at `path` in `dirfd`, links not followed, if anything.
    async fn stat_at(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Option<types::Filestat> {
        self.wasi
            .path_filestat_get(memory, dirfd, types::Lookupflags::empty(), path)
            .await
            .ok()
    }
}

/// The preview 1 error for a refusal.
fn errno(refused: Refused) -> types::Error {
    match refused {
        Refused::Descriptors => types::Errno::Mfile.into(),
        Refused::Quota => types::Errno::Dquot.into(),
        Refused::Symlink => types::Errno::Perm.into(),
    }
}

/// Adds preview 1, behind the guard, to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::Linker<T>,
    get: impl Fn(&mut T) -> &mut GuardedP1 + Copy + Send + Sync + 'static,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::wasi_snapshot_preview1::add_to_linker(linker, get)
}
