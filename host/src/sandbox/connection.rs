//! `wasinetd:handler/connection` (`wit/handler.wit`): what a component
//! guest may ask about the connection it answers.
//!
//! The bindings are generated from `../wit` by wasmtime's `bindgen!`
//! (part of wasmtime's `component-model` feature, which the daemon needs
//! for wasip2 guests anyway: no extra feature or crate). The interface is
//! added to every component's linker; a component that does not import it
//! never sees it, and a preview 1 module cannot import it (it reads the
//! same facts from `REMOTE_*` in its environment, which callers set).
//!
//! The facts are kept as the caller knows them (addresses, not text) and
//! rendered only if the guest asks, so a connection whose guest never asks
//! pays nothing for them.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasinetd:handler/imports",
    });
}

use bindings::wasinetd::handler::connection as wit;

/// How the client reached the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
    Unix,
    /// Not a socket: `wasinetd run` on a terminal, pipe or file.
    Stdio,
}

/// One end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// An IP socket address, shown as the log shows `peer=` (an IPv4
    /// client of a dual-stack listener as plain IPv4).
    Ip(SocketAddr),
    /// A Unix socket's path (`@name` for an abstract one).
    Path(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Ip(addr) => SocketAddr::new(addr.ip().to_canonical(), addr.port()).fmt(f),
            Endpoint::Path(path) => f.write_str(path),
        }
    }
}

impl Endpoint {
    /// A socket address as an endpoint: an IP one, a Unix path (`@name`
    /// for an abstract one); `None` for an unnamed Unix socket.
    pub fn of(addr: &socket2::SockAddr) -> Option<Endpoint> {
        if let Some(ip) = addr.as_socket() {
            return Some(Endpoint::Ip(ip));
        }
        if let Some(path) = addr.as_pathname() {
            return Some(Endpoint::Path(path.display().to_string()));
        }
        addr.as_abstract_namespace()
            .map(|name| Endpoint::Path(format!("@{}", String::from_utf8_lossy(name))))
    }
}

/// The facts of one connection (or datagram), as a guest may ask for them.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The service's id, as in the log's `service=`.
    pub service: Arc<str>,
    /// The connection's number, as in the log's `conn=`.
    pub id: u64,
    pub transport: Transport,
    /// The client; `None` when it has no address (an unbound Unix client).
    pub peer: Option<Endpoint>,
    /// The address the client reached.
    pub local: Option<Endpoint>,
}

impl wit::Host for Connection {
    fn peer_address(&mut self) -> Option<String> {
        self.peer.as_ref().map(ToString::to_string)
    }

    fn local_address(&mut self) -> Option<String> {
        self.local.as_ref().map(ToString::to_string)
    }

    fn service_name(&mut self) -> String {
        self.service.to_string()
    }

    fn protocol(&mut self) -> wit::Transport {
        match self.transport {
            Transport::Tcp => wit::Transport::Tcp,
            Transport::Udp => wit::Transport::Udp,
            Transport::Unix => wit::Transport::Unix,
            Transport::Stdio => wit::Transport::Stdio,
        }
    }

    fn connection_id(&mut self) -> u64 {
        self.id
    }
}

/// Adds the interface to a component linker whose store data holds the
/// run's [`Connection`] where `get` finds it.
pub(super) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut Connection,
) -> anyhow::Result<()> {
    wit::add_to_linker::<T, HasSelf<Connection>>(linker, get).map_err(anyhow::Error::from)
}

/// Whether `component` imports the connection interface.
pub fn is_imported(engine: &Engine, component: &Component) -> bool {
    (component.component_type().imports(engine))
        .any(|(name, _)| name.starts_with("wasinetd:handler/connection"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_client_of_a_dual_stack_listener_shows_as_ipv4() {
        let shown = |addr: &str| Endpoint::Ip(addr.parse().unwrap()).to_string();
        assert_eq!(shown("[::ffff:127.0.0.1]:5000"), "127.0.0.1:5000");
        assert_eq!(shown("[::1]:5000"), "[::1]:5000");
        assert_eq!(shown("10.0.0.1:80"), "10.0.0.1:80");
    }
}
