//! Scoped network egress (`allow_connect`): a component guest may open TCP
//! connections to exactly the listed addresses, and do nothing else with
//! the network: no listening, no accepting, no UDP, no name lookup.
//!
//! wasmtime-wasi (p2) asks a `socket_addr_check` before every socket
//! operation; by default (and here whenever the list is empty) TCP is off
//! altogether. A preview 1 module has no sockets (and the config refuses
//! `allow_connect` for one), so this only matters to components. A denied
//! connect fails in the guest with `access-denied` (Rust's
//! `PermissionDenied`), and the first denial of a run is reported.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use super::report::Report;

/// Opens TCP connect to `allowed` (nothing if it is empty) on `b`; the
/// first denial goes to `report`.
pub(super) fn allow(b: &mut WasiCtxBuilder, allowed: Arc<[SocketAddr]>, report: Arc<dyn Report>) {
    if allowed.is_empty() {
        return;
    }
    let logged = AtomicBool::new(false);
    b.allow_tcp(true).socket_addr_check(move |addr, usage| {
        let ok = permitted(&allowed, addr, usage);
        if !ok && !logged.swap(true, Ordering::Relaxed) {
            report.egress_denied(verb(usage), addr);
        }
        Box::pin(std::future::ready(ok))
    });
}

/// Whether a guest may use `addr` for `usage`.
fn permitted(allowed: &[SocketAddr], addr: SocketAddr, usage: SocketAddrUse) -> bool {
    match usage {
        // Asked before a connect on a socket not yet bound, for the
        // kernel's implicit bind: the wildcard address, port 0.
        SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
        SocketAddrUse::TcpConnect => {
            let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
            allowed.contains(&addr)
        }
        _ => false,
    }
}

fn verb(usage: SocketAddrUse) -> &'static str {
    match usage {
        SocketAddrUse::TcpConnect => "a TCP connect to",
        SocketAddrUse::TcpBind => "a TCP bind to",
        SocketAddrUse::TcpListen => "a TCP listen on",
        SocketAddrUse::TcpAccept => "a TCP accept from",
        _ => "UDP with",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_connects_and_their_implicit_bind() {
        let allowed: Vec<SocketAddr> = vec!["127.0.0.1:5432".parse().unwrap()];
        let ok = |addr: &str, usage| permitted(&allowed, addr.parse().unwrap(), usage);
        assert!(ok("127.0.0.1:5432", SocketAddrUse::TcpConnect));
        assert!(ok("[::ffff:127.0.0.1]:5432", SocketAddrUse::TcpConnect));
        assert!(!ok("127.0.0.1:5433", SocketAddrUse::TcpConnect));
        assert!(!ok("127.0.0.2:5432", SocketAddrUse::TcpConnect));
        assert!(ok("0.0.0.0:0", SocketAddrUse::TcpBind));
        assert!(ok("[::]:0", SocketAddrUse::TcpBind));
        assert!(!ok("127.0.0.1:0", SocketAddrUse::TcpBind));
        assert!(!ok("0.0.0.0:8080", SocketAddrUse::TcpBind));
        assert!(!ok("0.0.0.0:0", SocketAddrUse::TcpListen));
        assert!(!ok("127.0.0.1:5432", SocketAddrUse::TcpAccept));
        assert!(!ok("127.0.0.1:5432", SocketAddrUse::UdpSend));
        assert!(!ok("0.0.0.0:0", SocketAddrUse::UdpBind));
    }
}
