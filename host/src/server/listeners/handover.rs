//! The table's side of an upgrade ([`crate::server::upgrade`]): every
//! socket served, handed over; and, in the new process, a config key's
//! socket taken back from those handed over rather than bound again.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::net::{TcpListener, UdpSocket, UnixListener};

use super::{Key, Slot, Socket, Table, UnixFile};
use crate::config::ServiceSpec;
use crate::server::systemd::{ListenFds, Local};
use crate::server::unix_socket::{self, FileId};
use crate::server::upgrade::Outgoing;

impl Table {
    /// A duplicate of every socket served, named after the service it
    /// serves, for an upgrade to hand over.
    pub fn handover(&self) -> anyhow::Result<Vec<Outgoing>> {
        (self.live.iter())
            .map(|live| {
                let fd = (live.fd.as_ref())
                    .context("it could not be duplicated when it was opened")
                    .and_then(|fd| Ok(fd.try_clone()?))
                    .with_context(|| format!("cannot hand over the socket on {}", live.addr))?;
                let current = live.current.borrow();
                Ok(Outgoing {
                    fd,
                    name: current.as_ref().map_or("", |s| s.name()).to_owned(),
                    bound: match live.key {
                        Key::Passed { .. } => None,
                        _ => Some(live.unix.map(|u| u.id)),
                    },
                })
            })
            .collect()
    }
}

/// The socket of `key` that the old process bound and handed over, if
/// it did: the same address (with port 0, the one the service's socket of
/// that IP got, found by its name), the same `v6only`; for a Unix one, the
/// very socket file now at the service's path.
pub(super) fn inherited(
    spec: &ServiceSpec,
    key: &Key,
    passed: &ListenFds,
) -> Option<anyhow::Result<Slot>> {
    let wanted =
        |addr: &SocketAddr, v6only: bool, at: &SocketAddr, name: &str, s: &socket2::Socket| {
            let same = match addr.port() {
                0 => name == spec.name && at.ip() == addr.ip(),
                _ => at == addr,
            };
            same && (addr.is_ipv4() || s.only_v6().is_ok_and(|v| v == v6only))
        };
    let socket = passed.take_inherited(|name, local, socket, file| match (key, local) {
        (Key::Tcp { addr, v6only, .. }, Local::Tcp(at))
        | (Key::Udp { addr, v6only, .. }, Local::Udp(at)) => {
            wanted(addr, *v6only, at, name, socket)
        }
        (Key::Unix(path), Local::Unix(_)) => file.is_some() && file == FileId::of(path),
        _ => false,
    })?;
    Some(slot(spec, key.clone(), socket))
}

/// A slot for an inherited socket, with this config's backlog (and a Unix
/// socket file's mode).
fn slot(spec: &ServiceSpec, key: Key, socket: socket2::Socket) -> anyhow::Result<Slot> {
    let backlog = i32::try_from(spec.socket.backlog).unwrap_or(i32::MAX);
    let mut unix = None;
    let socket = match &key {
        Key::Tcp { .. } => {
            socket.listen(backlog).context("cannot set the backlog")?;
            Socket::Tcp(TcpListener::from_std(socket.into()).context("cannot register a listener")?)
        }
        Key::Udp { .. } => {
            Socket::Udp(UdpSocket::from_std(socket.into()).context("cannot register a socket")?)
        }
        Key::Unix(path) => {
            socket.listen(backlog).context("cannot set the backlog")?;
            let listen = spec.unix().filter(|u| u.path == *path);
            let listen = listen.context("a Unix key names the service's socket")?;
            // Matched by its file: FileId::of found it.
            let id = FileId::of(path).context("the socket file is gone")?;
            if let Err(e) = unix_socket::set_mode(path, id, listen.mode) {
                tracing::warn!("cannot set the mode of `{}`: {e}", path.display());
            }
            unix = Some(UnixFile {
                id,
                mode: listen.mode,
            });
            let std: std::os::unix::net::UnixListener = std::os::fd::OwnedFd::from(socket).into();
            Socket::Unix(UnixListener::from_std(std).context("cannot register a listener")?)
        }
        Key::Passed { .. } => anyhow::bail!("a passed socket is not inherited"),
    };
    let (addr, local) = match &key {
        Key::Unix(path) => (format!("unix:{}", path.display()), None),
        _ => socket.describe()?,
    };
    tracing::info!(
        "service `{}`: adopted the socket {addr} the old process handed over",
        spec.name
    );
    Ok(Slot::New {
        key,
        socket,
        addr,
        local,
        unix,
    })
}
