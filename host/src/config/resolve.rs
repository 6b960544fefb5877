//! Host names in a config (`only_from` / `no_access`, `redirect`,
//! `allow_connect`), resolved once, at load, so that a name that does not
//! resolve is an error at its line, never a failure per connection.
//! Tests put a stub in place of the system's resolver (the fuzz test must
//! not wait on DNS for the names it makes up).

use std::cell::Cell;
use std::net::{IpAddr, ToSocketAddrs as _};

/// A resolver standing in for the system's.
type Resolver = fn(&str) -> Vec<IpAddr>;

thread_local! {
    static STUB: Cell<Option<Resolver>> = const { Cell::new(None) };
}

/// Every address `host` has, in the resolver's order, without repeats;
/// empty when it does not resolve.
pub fn addresses(host: &str) -> Vec<IpAddr> {
    if let Some(stub) = STUB.with(Cell::get) {
        return stub(host);
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    for addr in (host, 0).to_socket_addrs().into_iter().flatten() {
        if !ips.contains(&addr.ip()) {
            ips.push(addr.ip());
        }
    }
    ips
}

/// Runs `f` with `stub` resolving names on this thread.
#[cfg(test)]
pub fn with_stub<R>(stub: Resolver, f: impl FnOnce() -> R) -> R {
    let before = STUB.with(|s| s.replace(Some(stub)));
    let out = f();
    STUB.with(|s| s.set(before));
    out
}
