//! The daemon's listening sockets, and how a reload moves them.
//!
//! Every socket has a [`Key`]: what it listens on, as the config says it.
//! A reload plans the new config's sockets against the live ones: a key
//! that is still wanted keeps its socket, and so its backlog, whatever
//! service now owns it (a changed service is handed the socket it already
//! had; a port that moves from one service to another stays open); only
//! new keys are bound, and only keys nobody wants any more are closed. So
//! a reload that does not change where a service listens never closes its
//! socket, and no client is refused meanwhile.
//!
//! Planning binds, and fails as a whole on a reload (the old config keeps
//! serving); at start-up a service that cannot bind is left out and the
//! rest are served. Committing cannot fail: it hands each kept socket its
//! service's new version, starts the new sockets' loops and retires the
//! rest.
//!
//! After an upgrade, the sockets the old process bound come back to their
//! keys ([`handover`]) before anything is bound.

mod handover;

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::{TcpListener, UdpSocket, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::unix_socket;
use crate::config::{Listen, ServiceSpec};
use crate::conn::listener::{self, Shared};
use crate::conn::service::Service;
use crate::conn::udp;
use crate::server::systemd::{Adopted, ListenFds};

/// What a socket listens on, as the config says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A TCP address. With port 0 (any free port) the key is the owning
    /// service's alone: two services' `port = 0` are two sockets.
    Tcp {
        addr: SocketAddr,
        v6only: bool,
        owner: Option<String>,
    },
    /// A UDP address; `owner` as for TCP.
    Udp {
        addr: SocketAddr,
        v6only: bool,
        owner: Option<String>,
    },
    /// A Unix stream socket's path.
    Unix(PathBuf),
    /// The `index`th socket systemd passed for `service`: systemd owns
    /// where it listens, so it stays the service's across reloads (as
    /// long as the service keeps its transport: `dgram` for UDP).
    Passed {
        service: String,
        index: usize,
        dgram: bool,
    },
}

/// A bound socket, not yet served.
enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
    Unix(UnixListener),
}

impl Socket {
    /// The address as the readiness line shows it: `IP:PORT` or `unix:PATH`.
    fn describe(&self) -> anyhow::Result<(String, Option<SocketAddr>)> {
        let ip = |a: std::io::Result<SocketAddr>| {
            let a = a.context("cannot read a socket's address")?;
            anyhow::Ok((a.to_string(), Some(a)))
        };
        match self {
            Socket::Tcp(l) => ip(l.local_addr()),
            Socket::Udp(s) => ip(s.local_addr()),
            Socket::Unix(l) => {
                let addr = l.local_addr().context("cannot read a socket's address")?;
                let path = addr.as_pathname().unwrap_or(std::path::Path::new(""));
                Ok((format!("unix:{}", path.display()), None))
            }
        }
    }

    fn dup(&self) -> std::io::Result<OwnedFd> {
        match self {
            Socket::Tcp(l) => l.as_fd().try_clone_to_owned(),
            Socket::Udp(s) => s.as_fd().try_clone_to_owned(),
            Socket::Unix(l) => l.as_fd().try_clone_to_owned(),
        }
    }
}

/// A socket being served.
struct Live {
    key: Key,
    /// As the readiness line showed it.
    addr: String,
    /// The bound address of an IP socket (its real port).
    local: Option<SocketAddr>,
    /// The service it serves now; `None` retires it.
    current: watch::Sender<Option<Arc<Service>>>,
    /// The same socket, to change its backlog in place.
    fd: Option<OwnedFd>,
    backlog: Option<u32>,
    /// A Unix socket file this daemon bound, with its mode as last set.
    unix: Option<UnixFile>,
    task: JoinHandle<()>,
}

/// A Unix socket file bound by this daemon (not passed by systemd).
#[derive(Debug, Clone, Copy)]
struct UnixFile {
    id: unix_socket::FileId,
    mode: u32,
}

/// Every socket being served.
#[derive(Default)]
pub struct Table {
    live: Vec<Live>,
}

/// Where each service of a config will listen; made by [`Table::plan`].
pub struct Plan {
    slots: Vec<(Arc<Service>, Slot)>,
    /// Services that cannot listen (start-up only: a reload's plan fails).
    pub not_listening: Vec<String>,
}

enum Slot {
    /// The live socket at this index.
    Keep(usize),
    /// A socket bound for the plan.
    New {
        key: Key,
        socket: Socket,
        addr: String,
        local: Option<SocketAddr>,
        unix: Option<UnixFile>,
    },
}

/// What [`Table::commit`] changed.
#[derive(Default)]
pub struct Changes {
    /// Sockets bound and now served: (service, address).
    pub opened: Vec<(String, String)>,
    /// Sockets closed: (service that had it, address).
    pub closed: Vec<(String, String)>,
}

impl Table {
    /// Binds what `services` need beyond the live sockets. A service that
    /// cannot listen is logged and left out when `may_fail` says so for its
    /// name (at start-up, every service; on a reload, those that were not
    /// listening before either); any other failure fails the plan.
    /// `passed` (start-up only) are the sockets systemd passed.
    pub fn plan(
        &self,
        services: &[Arc<Service>],
        passed: Option<&ListenFds>,
        may_fail: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Plan> {
        let mut plan = Plan {
            slots: Vec::new(),
            not_listening: Vec::new(),
        };
        for service in services {
            match self.plan_service(service, passed, &plan.slots) {
                Ok(slots) => plan
                    .slots
                    .extend(slots.into_iter().map(|s| (service.clone(), s))),
                Err((line, e)) if may_fail(service.name()) => {
                    listener::cannot_start(service, line, &e, &mut plan.not_listening)
                }
                Err((line, e)) => {
                    return Err(e.context(format!(
                        "{}:{line}: service `{}`",
                        service.spec.file.display(),
                        service.name()
                    )));
                }
            }
        }
        Ok(plan)
    }

    /// The slots of one service; or why not, with the line to blame (its
    /// `port` or `listen_unix`).
    fn plan_service(
        &self,
        service: &Service,
        passed: Option<&ListenFds>,
        taken: &[(Arc<Service>, Slot)],
    ) -> Result<Vec<Slot>, (u32, anyhow::Error)> {
        let spec = &service.spec;
        let is_free = |i: &usize| {
            !taken
                .iter()
                .any(|(_, s)| matches!(s, Slot::Keep(j) if j == i))
        };
        // Sockets systemd passed for this service stay with it.
        let dgram = spec.dgram();
        let kept: Vec<Slot> = (0..self.live.len())
            .filter(|i| matches!(&self.live[*i].key, Key::Passed { service, dgram: d, .. } if *service == spec.name && *d == dgram))
            .filter(is_free)
            .map(Slot::Keep)
            .collect();
        if !kept.is_empty() {
            return Ok(kept);
        }
        if let Some(passed) = passed {
            let at_port = |e| (spec.lines.port, e);
            let adopted = passed.take_for(spec).map_err(at_port)?;
            if !adopted.is_empty() {
                return adopted_slots(spec, adopted).map_err(at_port);
            }
        }
        let mut slots = Vec::new();
        // With `port = 0`, a service's other addresses take its first port.
        let mut first_port: Option<u16> = None;
        for key in wanted(spec) {
            let live = (0..self.live.len()).find(|i| self.live[*i].key == key && is_free(i));
            let slot = match live {
                Some(i) => Slot::Keep(i),
                None => {
                    let line = match key {
                        Key::Unix(_) => spec.lines.listen_unix,
                        _ => spec.lines.port,
                    };
                    match passed.and_then(|p| handover::inherited(spec, &key, p)) {
                        Some(slot) => slot.map_err(|e| (line, e))?,
                        None => bind(spec, key, first_port).map_err(|e| (line, e))?,
                    }
                }
            };
            if first_port.is_none() {
                first_port = match &slot {
                    Slot::Keep(i) => self.live[*i].local,
                    Slot::New { local, .. } => *local,
                }
                .map(|a| a.port());
            }
            slots.push(slot);
        }
        Ok(slots)
    }

    /// Serves the plan: kept sockets get their service's version of the
    /// plan, new ones start, and sockets the plan does not keep close.
    pub fn commit(&mut self, plan: Plan, shared: &Shared) -> Changes {
        let mut changes = Changes::default();
        let mut old: Vec<Option<Live>> = std::mem::take(&mut self.live)
            .into_iter()
            .map(Some)
            .collect();
        for (service, slot) in plan.slots {
            let live = match slot {
                Slot::Keep(i) => {
                    let mut live = old[i].take().expect("a live socket is kept once");
                    adjust(&mut live, &service.spec);
                    let same = live
                        .current
                        .borrow()
                        .as_ref()
                        .is_some_and(|s| Arc::ptr_eq(s, &service));
                    if !same {
                        live.current.send_replace(Some(service));
                    }
                    live
                }
                Slot::New {
                    key,
                    socket,
                    addr,
                    local,
                    unix,
                } => {
                    changes
                        .opened
                        .push((service.name().to_owned(), addr.clone()));
                    let mut live = start(key, socket, addr, local, service, shared);
                    live.unix = unix;
                    live
                }
            };
            self.live.push(live);
        }
        for live in old.into_iter().flatten() {
            let owner = live.current.send_replace(None);
            let name = owner.map_or_else(String::new, |s| s.name().to_owned());
            if let (Key::Unix(path), Some(unix)) = (&live.key, live.unix) {
                unix_socket::remove(path, unix.id);
            }
            changes.closed.push((name, live.addr));
        }
        changes
    }

    /// Every socket served and the service it serves now, in config order.
    pub fn roster(&self) -> Vec<(Arc<Service>, String)> {
        self.live
            .iter()
            .filter_map(|l| Some((l.current.borrow().clone()?, l.addr.clone())))
            .collect()
    }

    /// Whether no socket is served.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The loops of every socket, to wait for once the daemon stops.
    pub fn into_tasks(self) -> Vec<JoinHandle<()>> {
        self.live.into_iter().map(|l| l.task).collect()
    }
}

/// The keys a spec asks for: one per endpoint it listens on, in its order.
fn wanted(spec: &ServiceSpec) -> Vec<Key> {
    let owner = |addr: SocketAddr| (addr.port() == 0).then(|| spec.name.clone());
    let v6only = spec.socket.v6only;
    spec.listen
        .iter()
        .map(|listen| match *listen {
            Listen::Tcp(addr) => Key::Tcp {
                owner: owner(addr),
                addr,
                v6only,
            },
            Listen::Udp(addr) => Key::Udp {
                owner: owner(addr),
                addr,
                v6only,
            },
            Listen::Unix(ref unix) => Key::Unix(unix.path.clone()),
        })
        .collect()
}

/// Binds the socket of `key`; an IP address with port 0 takes `first_port`
/// when the service already has one.
fn bind(spec: &ServiceSpec, key: Key, first_port: Option<u16>) -> anyhow::Result<Slot> {
    let port_of = |addr: &SocketAddr| {
        let mut addr = *addr;
        if addr.port() == 0
            && let Some(port) = first_port
        {
            addr.set_port(port);
        }
        addr
    };
    let socket = match &key {
        Key::Tcp { addr, .. } => Socket::Tcp(listener::bind(port_of(addr), &spec.socket)?),
        Key::Udp { addr, .. } => Socket::Udp(udp::bind(port_of(addr), &spec.socket)?),
        Key::Unix(path) => {
            let unix = spec.unix().filter(|u| u.path == *path);
            let unix = unix.context("a Unix key names the service's socket")?;
            let (listener, id) = unix_socket::bind(unix, &spec.socket)?;
            // Bound in a private folder and moved into place: the socket's
            // own address names the folder, the config the place.
            return Ok(Slot::New {
                addr: format!("unix:{}", path.display()),
                key,
                socket: Socket::Unix(listener),
                local: None,
                unix: Some(UnixFile {
                    id,
                    mode: unix.mode,
                }),
            });
        }
        Key::Passed { .. } => anyhow::bail!("a passed socket cannot be bound again"),
    };
    let (addr, local) = socket.describe()?;
    Ok(Slot::New {
        key,
        socket,
        addr,
        local,
        unix: None,
    })
}

/// The slots of the sockets systemd passed for `spec`.
fn adopted_slots(spec: &ServiceSpec, adopted: Adopted) -> anyhow::Result<Vec<Slot>> {
    let sockets = (adopted.tcp.into_iter().map(Socket::Tcp))
        .chain(adopted.udp.into_iter().map(Socket::Udp))
        .chain(adopted.unix.into_iter().map(Socket::Unix));
    sockets
        .enumerate()
        .map(|(index, socket)| {
            let (addr, local) = socket.describe()?;
            let key = Key::Passed {
                service: spec.name.clone(),
                index,
                dgram: matches!(socket, Socket::Udp(_)),
            };
            Ok(Slot::New {
                key,
                socket,
                addr,
                local,
                unix: None,
            })
        })
        .collect()
}

/// Starts serving a new socket for `service`.
fn start(
    key: Key,
    socket: Socket,
    addr: String,
    local: Option<SocketAddr>,
    service: Arc<Service>,
    shared: &Shared,
) -> Live {
    let backlog = match socket {
        Socket::Udp(_) => None,
        _ => Some(service.spec.socket.backlog),
    };
    // Only fails when out of descriptors; then a backlog or mode change
    // on a reload is the one thing lost.
    let fd = match socket.dup() {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::warn!("cannot duplicate the socket on {addr}: {e}");
            None
        }
    };
    let (current, rx) = watch::channel(Some(service));
    let shared = shared.clone();
    let task = match socket {
        Socket::Tcp(l) => tokio::spawn(listener::accept_loop(rx, l, shared)),
        Socket::Unix(l) => tokio::spawn(listener::unix_accept_loop(rx, l, shared)),
        Socket::Udp(s) => tokio::spawn(udp::serve(rx, s, shared)),
    };
    Live {
        key,
        addr,
        local,
        current,
        fd,
        backlog,
        unix: None,
        task,
    }
}

/// Applies what may change on a kept socket: its backlog, a Unix
/// socket's mode. (`v6only` is part of the key: changing it binds anew.)
fn adjust(live: &mut Live, spec: &ServiceSpec) {
    if let (Some(fd), Some(old)) = (&live.fd, live.backlog)
        && old != spec.socket.backlog
    {
        let backlog = i32::try_from(spec.socket.backlog).unwrap_or(i32::MAX);
        match socket2::SockRef::from(fd).listen(backlog) {
            Ok(()) => live.backlog = Some(spec.socket.backlog),
            Err(e) => tracing::warn!("cannot change the backlog on {}: {e}", live.addr),
        }
    }
    if let (Key::Unix(path), Some(file)) = (&live.key, &mut live.unix)
        && let Some(unix) = spec.unix().filter(|u| u.path == *path)
        && file.mode != unix.mode
    {
        // Only the socket file this daemon bound: whoever may write its
        // folder could have put a link to another file there since.
        match unix_socket::set_mode(path, file.id, unix.mode) {
            Ok(()) => file.mode = unix.mode,
            Err(e) => tracing::warn!(
                "cannot set the mode of `{}` ({e}); its mode is left alone",
                path.display()
            ),
        }
    }
}
