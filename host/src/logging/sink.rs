//! Where a service's lines go when it has a `log_type`: a file, appended
//! with a soft and a hard size limit, or syslog as RFC 3164 datagrams.
//!
//! Both are opened once, before serving ([`open`]), and shared by the
//! services that name the same file. A line is one buffered write and a
//! flush under a short lock (file) or one non-blocking `send(2)` (syslog,
//! where a full receiver drops the line and counts it): a worker never
//! waits on a slow reader. The daemon's own messages, these sinks'
//! warnings included, stay on stderr.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write as _};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::SystemTime;

use anyhow::Context as _;
use tracing::Level;

use super::{LogFormat, format, time};
use crate::config::{LogType, ServiceSpec};

/// Where syslog datagrams go.
const DEV_LOG: &str = "/dev/log";
/// Replaces [`DEV_LOG`]; for tests only, which bind their own socket.
pub const SYSLOG_SOCKET_VAR: &str = "WASINETD_SYSLOG_SOCKET";

/// Each service's destination, by service name; set by [`install`], at
/// start and by each reload.
static ROUTES: LazyLock<RwLock<Arc<Routes>>> = LazyLock::new(RwLock::default);

/// The destinations of a config's services, opened by [`open`].
pub type Routes = HashMap<String, Arc<Route>>;

/// One service's destination.
pub enum Route {
    File(Arc<FileLog>),
    Syslog {
        socket: Arc<Syslog>,
        facility: u8,
        level: u8,
    },
}

/// The destination of `service`'s lines; `None` is stderr.
pub(super) fn route(service: &str) -> Option<Arc<Route>> {
    let routes = ROUTES.read().unwrap_or_else(|e| e.into_inner());
    routes.get(service).cloned()
}

/// Makes `routes` the destinations of every line from now on. The files of
/// the routes replaced close once their last line is written.
pub fn install(routes: Routes) {
    *ROUTES.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(routes);
}

/// Adds to `routes` the destinations `names` have now: services a reload
/// removes, whose running connections still write their last lines (until
/// the next reload).
pub fn keep_for<'a>(routes: &mut Routes, names: impl IntoIterator<Item = &'a str>) {
    let current = ROUTES.read().unwrap_or_else(|e| e.into_inner()).clone();
    for name in names {
        if let Some(route) = current.get(name)
            && !routes.contains_key(name)
        {
            routes.insert(name.to_owned(), route.clone());
        }
    }
}

/// Opens the destination of every service with a `log_type`, each file
/// once (a reload opens them anew: a file moved away by logrotate is
/// replaced). Syslog that cannot be reached is one warning, and those
/// services log to stderr.
pub fn open(specs: &[ServiceSpec]) -> anyhow::Result<Routes> {
    let mut files: HashMap<&Path, Arc<FileLog>> = HashMap::new();
    let mut syslog: Option<Option<Arc<Syslog>>> = None;
    let mut routes = HashMap::new();
    for spec in specs {
        let route = match &spec.log_type {
            None => continue,
            Some(LogType::File { path, soft, hard }) => {
                let file = match files.get(path.as_path()) {
                    Some(file) => file.clone(),
                    None => {
                        let file = Arc::new(
                            FileLog::open(path, *soft, *hard)
                                .with_context(|| format!("service `{}`: `log_type`", spec.name))?,
                        );
                        files.insert(path, file.clone());
                        file
                    }
                };
                Route::File(file)
            }
            Some(LogType::Syslog { facility, level }) => {
                let socket = syslog.get_or_insert_with(Syslog::connect);
                let Some(socket) = socket else { continue };
                Route::Syslog {
                    socket: socket.clone(),
                    facility: *facility,
                    level: *level,
                }
            }
        };
        routes.insert(spec.name.clone(), Arc::new(route));
    }
    Ok(routes)
}

impl Route {
    /// Writes one rendered line (text or JSON) at `level`; a text line
    /// with its control characters escaped.
    pub(super) fn write_rendered(&self, line: &str, level: Level) {
        let line = match format() {
            LogFormat::Text => super::escape::escape(line),
            LogFormat::Json => line.into(),
        };
        let line = &*line;
        match self {
            Route::File(file) => file.write(line, level),
            Route::Syslog {
                socket,
                facility,
                level: configured,
            } => {
                // Warnings are never sent less severe than `warning`.
                let severity = if level == Level::WARN {
                    (*configured).min(4)
                } else {
                    *configured
                };
                socket.send(facility * 8 + severity, line);
            }
        }
    }
}

/// A `log_type = FILE` destination.
pub struct FileLog {
    path: PathBuf,
    soft: Option<u64>,
    hard: Option<u64>,
    state: Mutex<FileState>,
}

struct FileState {
    out: BufWriter<File>,
    /// The file's size: what it had when opened, plus what was written.
    size: u64,
    soft_passed: bool,
    /// The hard limit was reached, or a write failed: no more lines.
    stopped: bool,
}

impl FileLog {
    fn open(path: &Path, soft: Option<u64>, hard: Option<u64>) -> anyhow::Result<FileLog> {
        let file = File::options()
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("cannot open log file `{}` for appending", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let full = hard.is_some_and(|h| size >= h);
        if full {
            tracing::warn!(
                "log file `{}` is already at its hard limit: no lines are written to it",
                path.display()
            );
        }
        Ok(FileLog {
            path: path.to_owned(),
            soft,
            hard,
            state: Mutex::new(FileState {
                out: BufWriter::new(file),
                size,
                soft_passed: soft.is_some_and(|s| size > s),
                stopped: full,
            }),
        })
    }

    fn write(&self, line: &str, level: Level) {
        let text = match format() {
            LogFormat::Text => format!(
                "{} {:>5} {line}\n",
                time::rfc3339(SystemTime::now()),
                level.as_str()
            ),
            LogFormat::Json => format!("{line}\n"),
        };
        // A panic cannot happen while the lock is held with the state torn.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.stopped {
            return;
        }
        let len = text.len() as u64;
        if let Some(hard) = self.hard
            && state.size + len > hard
        {
            state.stopped = true;
            tracing::warn!(
                "log file `{}` reached its hard limit of {hard} bytes: no more lines are written to it",
                self.path.display()
            );
            return;
        }
        if let Err(e) = write_line(&mut state.out, text.as_bytes()) {
            state.stopped = true;
            tracing::warn!(
                "cannot write to log file `{}`: {e}; no more lines are written to it",
                self.path.display()
            );
            return;
        }
        state.size += len;
        if let Some(soft) = self.soft
            && state.size > soft
            && !state.soft_passed
        {
            state.soft_passed = true;
            tracing::warn!(
                "log file `{}` passed its soft limit of {soft} bytes",
                self.path.display()
            );
        }
    }
}

fn write_line(out: &mut BufWriter<File>, bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

/// The syslog socket, shared by every `log_type = SYSLOG` service.
pub struct Syslog {
    socket: UnixDatagram,
    path: PathBuf,
    /// Lines not sent (receiver gone or full).
    dropped: AtomicU64,
}

impl Syslog {
    /// Connects to `/dev/log` (or [`SYSLOG_SOCKET_VAR`]); `None`, after one
    /// warning, when that cannot be done.
    fn connect() -> Option<Arc<Syslog>> {
        let path =
            std::env::var_os(SYSLOG_SOCKET_VAR).map_or_else(|| DEV_LOG.into(), PathBuf::from);
        let connected = UnixDatagram::unbound().and_then(|s| {
            s.connect(&path)?;
            // A full receiver drops a line instead of stalling a worker.
            s.set_nonblocking(true)?;
            Ok(s)
        });
        match connected {
            Ok(socket) => Some(Arc::new(Syslog {
                socket,
                path,
                dropped: AtomicU64::new(0),
            })),
            Err(e) => {
                tracing::warn!(
                    "cannot reach syslog at `{}` ({e}): services with `log_type = SYSLOG` log to stderr",
                    path.display()
                );
                None
            }
        }
    }

    /// Sends `<PRI>TIMESTAMP wasinetd[PID]: MSG`.
    fn send(&self, pri: u8, msg: &str) {
        let datagram = format!(
            "<{pri}>{} wasinetd[{}]: {msg}",
            time::rfc3164(SystemTime::now()),
            std::process::id()
        );
        let mut sent = self.socket.send(datagram.as_bytes());
        if let Err(e) = &sent
            && matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotConnected
            )
        {
            // The syslog daemon restarted: its new socket takes the line.
            sent = self
                .socket
                .connect(&self.path)
                .and_then(|()| self.socket.send(datagram.as_bytes()));
        }
        if let Err(e) = sent {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped == 1 || dropped.is_multiple_of(1000) {
                tracing::warn!(
                    "cannot send to syslog at `{}` ({e}): {dropped} lines dropped so far",
                    self.path.display()
                );
            }
        }
    }
}
