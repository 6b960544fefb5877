//! The guard in front of wasmtime-wasi's preview 2 filesystem and TCP
//! socket calls: wrappers around its filesystem and sockets views that
//! implement those interfaces by passing every call through, after the
//! guard's checks for the calls that open, close, grow, link or remove
//! (see [`super`]). They are added to a component's linker over
//! wasmtime-wasi's own ([`add_to_linker`]).
//!
//! Preview 2 names files by resources: the guard keeps, per descriptor,
//! directory stream and socket the guest holds, which preopen it lies in
//! and whether it was charged to the descriptor budget; a resource's drop
//! gives its descriptor back. A write through a stream is held to the
//! quota by the stream itself ([`QuotaStream`](quota::QuotaStream)).
//!
//! [`fs`] implements the filesystem interfaces call by call: the calls the
//! guard checks are in [`descriptors`] (opening: the descriptor budget,
//! only files and directories), [`quota`] (writes and sizes: the disk
//! quota) and [`entries`] (creating, linking, removing, renaming: entries
//! and symlinks); every other call is passed through. [`sockets`] does the
//! same for TCP.

mod descriptors;
mod entries;
mod fs;
mod quota;
mod sockets;

use std::collections::HashMap;

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
use wasmtime_wasi::p2::bindings::sockets::{tcp, tcp_create_socket};

pub use fs::GuardedFs;
pub use sockets::GuardedSockets;

use super::{Guard, Refused};

/// A run's guard and what it knows of the resources the guest holds.
pub struct P2Guard {
    guard: Guard,
    /// Descriptors and directory streams, by resource.
    held: HashMap<u32, Held>,
    /// Sockets, by resource: each one a descriptor.
    sockets: HashMap<u32, ()>,
}

/// One descriptor or directory stream the guest holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    preopen: Option<usize>,
    /// Charged to the descriptor budget when it was opened.
    counted: bool,
}

impl P2Guard {
    pub fn new(guard: Guard) -> Self {
        P2Guard {
            guard,
            held: HashMap::new(),
            sockets: HashMap::new(),
        }
    }

    fn preopen_of(&self, fd: &Resource<types::Descriptor>) -> Option<usize> {
        self.held.get(&fd.rep()).and_then(|h| h.preopen)
    }

    /// Gives back what the resource `rep` was charged.
    fn forget(&mut self, rep: u32) {
        if let Some(held) = self.held.remove(&rep)
            && held.counted
        {
            self.guard.close();
        }
    }
}

/// The preview 2 filesystem error for a refusal.
fn fs_error(refused: Refused) -> wasmtime_wasi::p2::FsError {
    match refused {
        // There is no EMFILE in `wasi:filesystem`: out of descriptors is
        // out of a resource.
        Refused::Descriptors => types::ErrorCode::InsufficientMemory.into(),
        Refused::Quota => types::ErrorCode::Quota.into(),
        Refused::Symlink => types::ErrorCode::NotPermitted.into(),
    }
}

/// A borrow of the resource `r` stands for, to pass it again.
fn again<T: 'static>(r: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(r.rep())
}

/// The guard's own state in a component's store, next to its WASI context.
pub trait GuardedView: WasiView {
    fn guarded_fs(&mut self) -> GuardedFs<'_>;
    fn guarded_sockets(&mut self) -> GuardedSockets<'_>;
}

struct Fs;
impl HasData for Fs {
    type Data<'a> = GuardedFs<'a>;
}

struct Sockets;
impl HasData for Sockets {
    type Data<'a> = GuardedSockets<'a>;
}

/// Adds WASI preview 2 to `linker`, with the filesystem and TCP sockets
/// behind the guard: wasmtime-wasi's own, then these in place of its
/// filesystem, preopens, TCP and TCP-socket-creation interfaces.
pub fn add_to_linker<T: GuardedView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    linker.allow_shadowing(true);
    types::add_to_linker::<T, Fs>(linker, T::guarded_fs)?;
    preopens::add_to_linker::<T, Fs>(linker, T::guarded_fs)?;
    tcp::add_to_linker::<T, Sockets>(linker, T::guarded_sockets)?;
    tcp_create_socket::add_to_linker::<T, Sockets>(linker, T::guarded_sockets)?;
    linker.allow_shadowing(false);
    Ok(())
}
