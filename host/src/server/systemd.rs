//! Speaking to systemd, without libsystemd: listening sockets it passed
//! (`LISTEN_FDS`, socket activation), and readiness notifications
//! (`NOTIFY_SOCKET`, `Type=notify`: [`notify`]).
//!
//! Passed sockets are taken once, before any thread starts, and handed to
//! services by name (`FileDescriptorName=` == the service id), then by local
//! address (== the service's `bind` and `port`): TCP listening sockets
//! (`ListenStream=`) and Unix ones to stream services, UDP sockets
//! (`ListenDatagram=`) to `dgram` services. Binding the rest, and the
//! accept loops, are the listener's and the server's.
//!
//! An upgrade (SIGUSR2, [`super::upgrade`]) passes sockets the same way,
//! from the old process to the new one; those the old process bound itself
//! (not systemd) are marked, and go back to the config's keys
//! ([`ListenFds::take_inherited`]) rather than to systemd's rules.

mod notify;

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::net::{TcpListener, UdpSocket, UnixListener};

pub use self::notify::Notifier;
use crate::config::ServiceSpec;
use crate::server::unix_socket::FileId;
use crate::server::upgrade::Outgoing;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// One passed listening socket.
#[derive(Debug)]
struct Passed {
    fd: RawFd,
    /// Its `LISTEN_FDNAMES` entry, if any.
    name: Option<String>,
    local: Local,
    socket: socket2::Socket,
    /// Bound by the daemon itself before an upgrade handed it over: it
    /// belongs to a config key, not to systemd's naming rules.
    inherited: bool,
    /// The socket file of an inherited Unix socket, as the old process
    /// knew it.
    file: Option<FileId>,
}

/// Where a passed socket listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    Tcp(SocketAddr),
    /// A UDP socket (`ListenDatagram=`).
    Udp(SocketAddr),
    /// A Unix socket bound to a path.
    Unix(PathBuf),
}

impl Local {
    /// Whether a service of `spec`'s transport can serve on it.
    fn fits(&self, spec: &ServiceSpec) -> bool {
        matches!(self, Local::Udp(_)) == spec.dgram()
    }
}

impl std::fmt::Display for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Local::Tcp(addr) => write!(f, "{addr}"),
            Local::Udp(addr) => write!(f, "udp:{addr}"),
            Local::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The passed sockets a service takes.
#[derive(Debug, Default)]
pub struct Adopted {
    pub tcp: Vec<TcpListener>,
    pub udp: Vec<UdpSocket>,
    pub unix: Vec<UnixListener>,
}

impl Adopted {
    /// Whether systemd passed nothing for the service.
    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.udp.is_empty() && self.unix.is_empty()
    }
}

/// Listening sockets passed by systemd, not yet given to a service.
#[derive(Debug, Clone, Default)]
pub struct ListenFds(Arc<Mutex<Vec<Passed>>>);

impl ListenFds {
    /// Takes the sockets systemd passed to this process: `LISTEN_FDS`
    /// descriptors from fd 3, if `LISTEN_PID` is this process, or if an
    /// upgrade handed them over (`upgrade`: the old process is this one's
    /// parent, checked by [`super::upgrade::Inherited::take`]; its list
    /// names the descriptors the old process bound itself). Each is made
    /// close-on-exec; one that is not a TCP or Unix (path) stream listening
    /// socket, nor a UDP socket, is logged and closed. The variables are
    /// removed from the environment, so `passenv` never hands them on.
    ///
    /// # Safety
    ///
    /// Changes the environment: call it while the process has one thread.
    pub unsafe fn take(upgrade: Option<&[(RawFd, Option<FileId>)]>) -> ListenFds {
        let count = std::env::var("LISTEN_FDS").ok();
        let pid = std::env::var("LISTEN_PID").ok();
        let names = std::env::var("LISTEN_FDNAMES").ok();
        for var in [
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
            "LISTEN_PIDFDID",
        ] {
            // SAFETY: the caller guarantees no other thread reads the
            // environment now.
            unsafe { std::env::remove_var(var) };
        }
        let Some(count) = count else {
            return ListenFds::default();
        };
        if upgrade.is_none() && pid.as_deref() != Some(&std::process::id().to_string()) {
            tracing::warn!(
                "LISTEN_FDS is set for process {}, not this one ({}); ignored",
                pid.as_deref().unwrap_or("(no LISTEN_PID)"),
                std::process::id()
            );
            return ListenFds::default();
        }
        let Ok(count) = count.parse::<RawFd>() else {
            tracing::warn!("LISTEN_FDS is not a number: `{count}`; ignored");
            return ListenFds::default();
        };
        let mut names = names.as_deref().unwrap_or("").split(':');
        let mut passed = Vec::new();
        for fd in FIRST_FD..FIRST_FD.saturating_add(count.max(0)) {
            let name = names.next().filter(|n| !n.is_empty()).map(str::to_owned);
            // SAFETY: systemd passes these descriptors to this process for
            // it to own; nothing else in the process uses them.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let bound =
                upgrade.and_then(|b| b.iter().find(|(f, _)| *f == fd).map(|(_, file)| *file));
            match adopt(owned) {
                Ok((local, socket)) => passed.push(Passed {
                    fd,
                    name,
                    local,
                    socket,
                    inherited: bound.is_some(),
                    file: bound.flatten(),
                }),
                Err(e) => tracing::warn!(
                    "passed fd {fd} (name `{}`): {e:#}; closed",
                    name.as_deref().unwrap_or("")
                ),
            }
        }
        ListenFds(Arc::new(Mutex::new(passed)))
    }

    /// The passed sockets that belong to `spec`: every one named after the
    /// service, else every one bound to one of its addresses (or its
    /// `listen_unix` path); only sockets of its transport (TCP and Unix
    /// for stream, UDP for dgram). They are removed from the set.
    pub fn take_for(&self, spec: &ServiceSpec) -> anyhow::Result<Adopted> {
        let mut passed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let named = |p: &Passed| {
            !p.inherited && p.name.as_deref() == Some(&spec.name) && p.local.fits(spec)
        };
        let by_name = passed.iter().any(named);
        let (mine, rest): (Vec<_>, Vec<_>) = passed.drain(..).partition(|p| {
            if p.inherited {
                false
            } else if by_name {
                named(p)
            } else if !p.local.fits(spec) {
                false
            } else {
                match &p.local {
                    Local::Tcp(addr) | Local::Udp(addr) => spec.ip_addrs().any(|a| a == *addr),
                    Local::Unix(path) => spec.unix().is_some_and(|u| u.path == *path),
                }
            }
        });
        *passed = rest;
        let mut adopted = Adopted::default();
        for p in mine {
            tracing::info!(
                "service `{}`: adopted the socket {} passed by systemd (fd {}, {})",
                spec.name,
                p.local,
                p.fd,
                match &p.name {
                    Some(name) if by_name => format!("name `{name}`"),
                    _ => "matched by address".to_owned(),
                }
            );
            match p.local {
                Local::Tcp(_) => adopted.tcp.push(
                    TcpListener::from_std(p.socket.into())
                        .context("cannot register a passed listener")?,
                ),
                Local::Udp(_) => adopted.udp.push(
                    UdpSocket::from_std(p.socket.into())
                        .context("cannot register a passed socket")?,
                ),
                Local::Unix(_) => adopted.unix.push(
                    UnixListener::from_std(OwnedFd::from(p.socket).into())
                        .context("cannot register a passed listener")?,
                ),
            }
        }
        Ok(adopted)
    }

    /// Takes the first socket the daemon bound itself before an upgrade
    /// handed it over for which `matches(name, local, socket, file)` holds
    /// (`file`: a Unix socket's file, as the old process knew it).
    pub fn take_inherited(
        &self,
        matches: impl Fn(&str, &Local, &socket2::Socket, Option<FileId>) -> bool,
    ) -> Option<socket2::Socket> {
        let mut passed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let at = passed.iter().position(|p| {
            let name = p.name.as_deref().unwrap_or("");
            p.inherited && matches(name, &p.local, &p.socket, p.file)
        })?;
        Some(passed.remove(at).socket)
    }

    /// The admin listener an upgrade handed over, if it listens on `addr`
    /// (any port when `addr`'s is 0).
    pub fn take_admin(&self, addr: SocketAddr) -> Option<TcpListener> {
        let socket = self.take_inherited(|name, local, _, _| {
            name == crate::server::upgrade::ADMIN_NAME
                && matches!(local, Local::Tcp(at) if *at == addr || (addr.port() == 0 && at.ip() == addr.ip()))
        })?;
        match TcpListener::from_std(socket.into()) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!("cannot register the admin listener handed over: {e}");
                None
            }
        }
    }

    /// Duplicates of the sockets not taken yet (those of services still
    /// compiling), with their names and whether the daemon bound them, for
    /// an upgrade to hand on.
    pub fn dup_unclaimed(&self) -> std::io::Result<Vec<Outgoing>> {
        let passed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (passed.iter())
            .map(|p| {
                Ok(Outgoing {
                    fd: p.socket.try_clone()?.into(),
                    name: p.name.clone().unwrap_or_default(),
                    bound: p.inherited.then_some(p.file),
                })
            })
            .collect()
    }

    /// Logs and closes every passed socket no service took.
    pub fn close_unclaimed(&self) {
        let mut passed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for p in passed.drain(..) {
            if p.inherited {
                tracing::warn!(
                    "fd {} ({}, name `{}`), handed over by the old process, fits no \
                     listener of the config; closed",
                    p.fd,
                    p.local,
                    p.name.as_deref().unwrap_or("")
                );
                continue;
            }
            tracing::warn!(
                "passed fd {} ({}, name `{}`) matches no service by name or address \
                 (TCP and Unix sockets go to stream services, UDP ones to dgram services); closed",
                p.fd,
                p.local,
                p.name.as_deref().unwrap_or("")
            );
        }
    }
}

/// Checks that `fd` is a TCP or Unix (path) stream listening socket, or a
/// bound UDP socket, and readies it for tokio.
fn adopt(fd: OwnedFd) -> anyhow::Result<(Local, socket2::Socket)> {
    // SAFETY: fcntl on a descriptor this process owns.
    let cloexec = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    if cloexec < 0 {
        return Err(std::io::Error::last_os_error()).context("cannot set FD_CLOEXEC");
    }
    let socket = socket2::Socket::from(fd);
    let kind = socket.r#type().context("not a socket")?;
    let local = socket.local_addr().ok().and_then(|a| match a.as_socket() {
        Some(addr) if kind == socket2::Type::DGRAM => Some(Local::Udp(addr)),
        Some(addr) => Some(Local::Tcp(addr)),
        None => a.as_pathname().map(|p| Local::Unix(p.to_owned())),
    });
    let addr = local
        .filter(|l| kind == socket2::Type::STREAM || matches!(l, Local::Udp(_)))
        .context("not a TCP or Unix (path) stream socket, nor a UDP socket")?;
    if let Local::Udp(addr) = addr {
        // `ListenDatagram=`: bound, nothing to accept.
        socket.set_nonblocking(true)?;
        return Ok((Local::Udp(addr), socket));
    }
    let mut listening: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `listening`.
    let ok = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut listening).cast(),
            &mut len,
        )
    };
    if ok != 0 || listening == 0 {
        anyhow::bail!("{addr} is not a listening socket");
    }
    socket.set_nonblocking(true)?;
    Ok((addr, socket))
}
