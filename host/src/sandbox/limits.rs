//! What a run may use: its budgets ([`Limits`]) and the host directories
//! it sees ([`Preopen`], with a [`PreopenQuota`] for the writable ones).
//! The values a service gets when its config says nothing are the
//! config's (their `Default`s live there).

use std::path::PathBuf;
use std::time::Duration;

/// Budgets of one connection's guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear-memory ceiling in bytes (`rlimit_as`); UNLIMITED is 4 GiB,
    /// all a 32-bit guest can address.
    pub memory: u64,
    /// CPU time (`rlimit_cpu`); `None` is UNLIMITED.
    pub cpu: Option<Duration>,
    /// Wall-clock time (`runtime_max`); `None` is UNLIMITED.
    pub runtime: Option<Duration>,
    /// Handles (files, directories, streams) held at once, stdio included
    /// (`rlimit_files`); `None` is the daemon's own cap.
    pub files: Option<u32>,
    /// How long a connection may go with no byte received from or sent to
    /// its client (`idle_timeout`); `None` is UNLIMITED.
    pub idle: Option<Duration>,
}

/// A host directory the guest sees at `guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// The host directory, joined to the config file's folder when relative;
    /// it existed at load.
    pub host: PathBuf,
    /// The absolute path the guest opens it by.
    pub guest: String,
    /// `:rw`; the default `:ro` lets the guest read only.
    pub writable: bool,
    /// `:rw+symlinks`: the guest may create symlinks in it.
    pub symlinks: bool,
    /// A folder `host` must lie beneath when it is opened for each run (a
    /// tenant's `preopen_root`), whatever symlinks its owner swaps into
    /// the path after load; `None`: opened by its path.
    pub beneath: Option<PathBuf>,
}

/// What each writable preopen of a service may hold (`preopen_quota`):
/// bytes and entries (files, directories, links); `None` is UNLIMITED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreopenQuota {
    pub bytes: Option<u64>,
    pub entries: Option<u64>,
}
