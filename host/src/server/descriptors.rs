//! The daemon's file descriptors: how many it may have, and how many of
//! them its guests may hold.
//!
//! A process starts with the soft `RLIMIT_NOFILE` its parent gave it
//! (1024 under systemd's default), far below what a super-server with a
//! thousand connections needs, so the daemon raises it to the hard limit.
//! Guests then share what is left after a reserve for the daemon's own
//! descriptors: every accepted connection (and a `redirect`'s backend
//! socket), the listeners, polite refusals in progress, log files and the
//! cache. A guest past the guests' budget gets `EMFILE`; the daemon always
//! has room to accept.

use std::sync::Arc;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::sandbox::FdBudget;

/// Descriptors kept for the daemon beyond one per connection slot and one
/// per relay backend: listeners, refusals being closed, logs, the cache,
/// the runtime's own.
const BASE_RESERVE: u64 = 256;
/// Refusals one listener may be closing politely at once (as `admission`
/// bounds them).
const PER_LISTENER: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, logs the figures,
/// and returns the guests' budget for a daemon of `limit` guests on about
/// `listeners` sockets.
pub fn budget(limit: u32, listeners: usize) -> Arc<FdBudget> {
    let before = getrlimit(Resource::Nofile);
    let hard = before.maximum.unwrap_or_else(nr_open);
    let soft = before.current.unwrap_or(hard);
    let now = if soft < hard {
        let raised = Rlimit {
            current: Some(hard),
            maximum: before.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!("cannot raise the file descriptor limit from {soft} to {hard}: {e}");
                soft
            }
        }
    } else {
        soft
    };
    let reserve = BASE_RESERVE + 2 * u64::from(limit) + PER_LISTENER * listeners as u64;
    let guests = now.saturating_sub(reserve);
    let raised = if now > soft {
        format!(" (raised from {soft}, up to the hard limit)")
    } else {
        String::new()
    };
    tracing::info!(
        "file descriptors: {now}{raised}; {reserve} kept for connections and the daemon, \
         {guests} for guests' files and sockets"
    );
    if guests < u64::from(limit) {
        tracing::warn!(
            "file descriptors: {now} leave guests {guests} for --limit {limit} guests (fewer \
             than one each); raise the hard limit (systemd: LimitNOFILE=) or lower --limit"
        );
    }
    Arc::new(FdBudget::new(guests))
}

/// The kernel's most descriptors per process (`fs.nr_open`), for a hard
/// limit of "infinity".
fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}
