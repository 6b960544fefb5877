//! What a run has to say while it runs, handed to its caller: the sandbox
//! writes no log line of its own (it knows nothing of logging, services or
//! metrics). The caller passes a [`Report`] in the
//! [`Invocation`](super::Invocation).

use std::net::SocketAddr;

/// Where a run's remarks go.
pub trait Report: Send + Sync {
    /// A line the guest wrote to its stderr (through
    /// [`GuestLog`](super::GuestLog)), without its line end.
    fn stderr_line(&self, text: &str);
    /// The guest wrote more than `logged` stderr lines, the most one run
    /// may log: the rest are dropped (said once).
    fn stderr_dropped(&self, logged: u32);
    /// The first network use refused to the guest in this run: `what` (`a
    /// TCP connect to`, ...) `addr`, which `allow_connect` does not allow.
    fn egress_denied(&self, what: &'static str, addr: SocketAddr);
}

/// A report that keeps nothing: for runs nobody reads (benchmarks).
pub struct Unheard;

impl Report for Unheard {
    fn stderr_line(&self, _: &str) {}

    fn stderr_dropped(&self, _: u32) {}

    fn egress_denied(&self, _: &'static str, _: SocketAddr) {}
}
