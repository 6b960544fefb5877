//! The parts a [`ServiceSpec`](super::ServiceSpec) is made of: where it
//! listens and how (`Listen`, `UnixListen`, `SocketOptions`, `SocketType`), what it
//! runs (`GuestSource`, with `DenyTime` for a sensor), its budgets
//! (`Limits`, `MaxLoad`), its preopens and its logging (`LogFlags`,
//! `LogType`). Each is plain data, validated by the modules that read it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{DEFAULT_CPU, DEFAULT_MEMORY, DEFAULT_RUNTIME};

/// Where a service's connection lines and guest stderr lines go, from
/// `log_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogType {
    /// `SYSLOG facility [level]`, as RFC 3164 datagrams to `/dev/log`.
    Syslog {
        /// The facility's code (`daemon` is 3, `local3` is 19).
        facility: u8,
        /// The severity's code (`notice` is 5, `info` is 6).
        level: u8,
    },
    /// `FILE path [soft [hard]]`: appended to `path`.
    File {
        /// Joined to the config file's folder when relative; it opened at load.
        path: PathBuf,
        /// Size in bytes past which one warning is logged.
        soft: Option<u64>,
        /// Size in bytes past which the file is written no more.
        hard: Option<u64>,
    },
}

/// A Unix stream socket to listen on (`listen_unix`, `socket_mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixListen {
    /// An absolute path.
    pub path: PathBuf,
    /// The socket file's permission bits.
    pub mode: u32,
}

/// `socket_mode` when not set: systemd's `SocketMode=` default.
pub const DEFAULT_SOCKET_MODE: u32 = 0o666;

/// Listen backlog when `backlog` is not set. xinetd's fixed 64 drops
/// handshakes under a burst; the kernel caps any value at
/// `net.core.somaxconn` (4096 on current kernels).
pub const DEFAULT_BACKLOG: u32 = 4096;

/// Socket options of a service's listeners and accepted connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// TCP_NODELAY on accepted sockets (`flags = NODELAY`).
    pub nodelay: bool,
    /// SO_KEEPALIVE on accepted sockets (`flags = KEEPALIVE`).
    pub keepalive: bool,
    /// IPV6_V6ONLY on IPv6 listeners (`v6only`; by default off, unless the
    /// service also binds an IPv4 address).
    pub v6only: bool,
    /// The listen backlog (`backlog`).
    pub backlog: u32,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            nodelay: false,
            keepalive: false,
            v6only: false,
            backlog: DEFAULT_BACKLOG,
        }
    }
}

/// Where a service's guest comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GuestSource {
    /// A `.wasm` file from `server`, joined to the config file's folder when
    /// relative.
    File(PathBuf),
    /// A built-in service (`type = INTERNAL`), named by the service NAME.
    Internal(String),
    /// No guest: `redirect = HOST PORT` relays each connection to this
    /// address (a name resolved once, at load).
    Redirect(std::net::SocketAddr),
    /// No guest: `flags = SENSOR`, a tripwire. A connection puts its peer's
    /// address on the daemon-wide deny list for this long.
    Sensor(DenyTime),
}

impl GuestSource {
    /// Whether connections run a guest (not a `redirect` or a sensor).
    pub fn runs_guest(&self) -> bool {
        matches!(self, GuestSource::File(_) | GuestSource::Internal(_))
    }
}

/// How long a `flags = SENSOR` service denies an address that touched it
/// (`deny_time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyTime {
    /// `FOREVER`: until the daemon stops.
    Forever,
    /// `NEVER`: the address is only logged.
    Never,
    /// Minutes (xinetd's unit) or a duration with a unit.
    For(Duration),
}

impl fmt::Display for DenyTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyTime::Forever => f.write_str("FOREVER"),
            DenyTime::Never => f.write_str("NEVER"),
            DenyTime::For(d) => write!(f, "{d:?}"),
        }
    }
}

/// A one-minute load average, in hundredths (`/proc/loadavg` has two
/// decimals), so a spec stays comparable and hashable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MaxLoad(u32);

impl MaxLoad {
    /// `hundredths / 100`.
    pub fn from_hundredths(hundredths: u32) -> Self {
        MaxLoad(hundredths)
    }

    /// Whether `load` (a load average) is at or above this.
    pub fn reached_by(self, load: f64) -> bool {
        load * 100.0 >= f64::from(self.0) - 0.5
    }
}

impl fmt::Display for MaxLoad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl std::fmt::Display for GuestSource {
    /// The file's path, `internal:NAME`, `redirect:ADDR` or
    /// `sensor:deny_time=TIME`, as logs and `check` show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestSource::File(path) => write!(f, "{}", path.display()),
            GuestSource::Internal(name) => write!(f, "internal:{name}"),
            GuestSource::Redirect(addr) => write!(f, "redirect:{addr}"),
            GuestSource::Sensor(deny) => write!(f, "sensor:deny_time={deny}"),
        }
    }
}

/// How a service takes its clients.
/// A count the config may set (`instances`, `per_source`): left unset (the
/// daemon's default share applies), UNLIMITED, or a number. Set explicitly
/// (UNLIMITED included), it wins over the daemon's defaults, as xinetd's
/// users expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cap {
    #[default]
    Unset,
    Unlimited,
    At(u32),
}

impl Cap {
    /// The limit that applies: this one if set, else `default` (`None`:
    /// no limit).
    pub fn or(self, default: Option<u32>) -> Option<u32> {
        match self {
            Cap::Unset => default,
            Cap::Unlimited => None,
            Cap::At(n) => Some(n),
        }
    }

    /// As set in the config: a number, or `None` for UNLIMITED and unset.
    pub fn set(self) -> Option<u32> {
        match self {
            Cap::At(n) => Some(n),
            Cap::Unset | Cap::Unlimited => None,
        }
    }
}

/// `socket_type` (or `protocol`): what one guest answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SocketType {
    /// `socket_type = stream`, `protocol = tcp`: one guest per connection.
    #[default]
    Stream,
    /// `socket_type = dgram`, `protocol = udp`: one guest per datagram.
    Dgram,
}

/// One place a service listens, as its config says it. A service has one
/// or more: an IP address for each `bind` address (TCP or UDP, as its
/// `socket_type`), and its `listen_unix` socket. A socket systemd passes
/// is matched to a service by name or by one of these (`server::systemd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address: `bind` x `port` of a stream service.
    Tcp(SocketAddr),
    /// A UDP address: `bind` x `port` of a dgram service.
    Udp(SocketAddr),
    /// A Unix stream socket (`listen_unix`).
    Unix(UnixListen),
}

/// As the readiness line and `check` show it: `IP:PORT`, `unix:PATH`.
impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(addr) | Listen::Udp(addr) => addr.fmt(f),
            Listen::Unix(unix) => write!(f, "unix:{}", unix.path.display()),
        }
    }
}

impl Listen {
    /// The IP address of a TCP or UDP endpoint.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Listen::Tcp(addr) | Listen::Udp(addr) => Some(*addr),
            Listen::Unix(_) => None,
        }
    }
}

// The sandbox's own vocabulary; what a service gets when it says nothing
// (these `Default`s) is the config's.
pub use crate::sandbox::{Limits, Preopen, PreopenQuota};

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: DEFAULT_MEMORY,
            cpu: Some(DEFAULT_CPU),
            runtime: Some(DEFAULT_RUNTIME),
            files: None,
            idle: Some(super::DEFAULT_IDLE),
        }
    }
}

impl Default for PreopenQuota {
    fn default() -> Self {
        PreopenQuota {
            bytes: Some(super::DEFAULT_QUOTA_BYTES),
            entries: Some(super::DEFAULT_QUOTA_ENTRIES),
        }
    }
}

/// Fields of a connection's log line (`log_on_success`, `log_on_failure`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogFlags {
    /// The peer's address.
    pub host: bool,
    /// The instance id of the connection.
    pub pid: bool,
    /// How long the connection was served.
    pub duration: bool,
    /// The guest's exit status or trap.
    pub exit: bool,
    /// Why a connection was refused.
    pub attempt: bool,
    /// Bytes received from and sent to the client (`in=N out=N`).
    pub traffic: bool,
}
