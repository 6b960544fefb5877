//! Replacing the running binary without refusing a connection (SIGUSR2, as
//! nginx and HAProxy do): the old process starts its binary again, from the
//! path it was started from and with the same arguments, and hands it every
//! listening socket (services' and the admin listener); the new process
//! adopts them, never binding them again (one socket, one kernel queue: a
//! client connecting meanwhile waits in it, whichever process accepts),
//! compiles its guests, and says it is ready; only then does the old one
//! stop accepting and drain, as on SIGTERM. If the new one exits or is not
//! ready in time, the old one logs why and goes on serving.
//!
//! The sockets pass as systemd passes them (`LISTEN_FDS` descriptors from
//! fd 3, `LISTEN_FDNAMES` naming each one's service), which
//! [`ListenFds::take`] adopts. Two things differ:
//! - No `LISTEN_PID`: systemd's check wants the new process's pid, known
//!   only after `fork`, and between `fork` and `exec` a threaded process may
//!   not allocate nor change its environment. `WASINETD_UPGRADE_FROM` names
//!   the old process instead, and the new one takes the sockets only if
//!   that is its parent (`getppid`); a grandchild that inherited the
//!   variables does not.
//! - `WASINETD_UPGRADE_BOUND` lists the descriptors the old process bound
//!   itself (the others came from systemd), each Unix one with its socket
//!   file (`FD=DEV.INO`): they go back to the config's listeners by address
//!   (or path), so a later reload may still move them, where systemd's
//!   stay with their service.
//!
//! Readiness comes back through a pipe whose write end the new process
//! inherits (`WASINETD_UPGRADE_READY`): it writes `READY=1` once every
//! service of its config listens or has failed; end of file before that
//! means it died. Under systemd the old process then names the new one
//! `MAINPID=` before it exits.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

use super::unix_socket::FileId;
use super::{Daemon, Request, dump};

/// The old process's pid, which must be the new one's parent.
const FROM: &str = "WASINETD_UPGRADE_FROM";
/// The descriptors the old process bound itself.
const BOUND: &str = "WASINETD_UPGRADE_BOUND";
/// The readiness pipe's write end.
const READY: &str = "WASINETD_UPGRADE_READY";
/// What the new process writes down the pipe when it is ready.
const READY_WORD: &[u8] = b"READY=1\n";
/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// The `LISTEN_FDNAMES` entry of the admin listener. Not a service's name
/// by convention only: the admin listener is taken before any service.
pub const ADMIN_NAME: &str = "wasinetd-admin";

/// How long the new process may take to be ready: compiling every guest
/// of a config anew (a new binary may not use the old one's cache) can take
/// a minute; meanwhile the old process serves.
pub const READY_WITHIN: Duration = Duration::from_secs(120);

/// How to start this binary again: the path it was started from (the file
/// there now, which an upgrade has replaced; `/proc/self/exe` would be the
/// old, deleted one) and its arguments. Read at start-up.
#[derive(Debug, Clone)]
pub struct Exec {
    exe: PathBuf,
    args: Vec<OsString>,
}

impl Exec {
    /// This process's binary and arguments; `None` (logged) when the
    /// binary's path cannot be read, and so no upgrade can start.
    pub fn current() -> Option<Exec> {
        match std::env::current_exe() {
            Ok(exe) => Some(Exec {
                exe,
                args: std::env::args_os().skip(1).collect(),
            }),
            Err(e) => {
                tracing::warn!("cannot read the path of this binary ({e}): SIGUSR2 cannot upgrade");
                None
            }
        }
    }
}

/// One listening socket to hand over.
pub struct Outgoing {
    /// A duplicate of it, which the new process gets.
    pub fd: OwnedFd,
    /// Its `LISTEN_FDNAMES` entry: the service it serves (no `:` in it).
    pub name: String,
    /// `Some` when this daemon bound it (not systemd), with its socket file
    /// if it is a Unix one.
    pub bound: Option<Option<FileId>>,
}

/// What the old process handed over, seen from the new one.
pub struct Inherited {
    /// The descriptors the old process bound itself, with their Unix
    /// socket file.
    pub bound: Vec<(RawFd, Option<FileId>)>,
    /// Tells the old process this one is ready.
    pub ready: ReadySignal,
}

impl Inherited {
    /// Takes the upgrade's variables out of the environment; `Some` when
    /// this process was started by an upgrade from its parent.
    ///
    /// # Safety
    ///
    /// Changes the environment: call it while the process has one thread.
    pub unsafe fn take() -> Option<Inherited> {
        let [from, bound, ready] = [FROM, BOUND, READY].map(|var| {
            let value = std::env::var(var).ok();
            // SAFETY: the caller guarantees no other thread reads the
            // environment now.
            unsafe { std::env::remove_var(var) };
            value
        });
        let from = from?;
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() };
        if from.parse::<libc::pid_t>().ok() != Some(parent) {
            tracing::warn!(
                "{FROM} names process {from}, not this one's parent ({parent}); \
                 the sockets it lists are not taken"
            );
            return None;
        }
        let bound = (bound.as_deref().unwrap_or("").split(','))
            .filter(|b| !b.is_empty())
            .filter_map(|b| {
                let (fd, file) = b.split_once('=').map_or((b, None), |(f, i)| (f, Some(i)));
                Some((fd.parse().ok()?, file.and_then(|f| f.parse().ok())))
            })
            .collect();
        let ready = ready
            .and_then(|r| r.parse::<RawFd>().ok())
            .filter(|fd| *fd >= FIRST_FD);
        let ready = ready.map(|fd| {
            // SAFETY: the old process passed this pipe's write end at this
            // number for this process to own.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // Not for this process's own children (the compiler): only
            // this one's exit may close it.
            // SAFETY: fcntl on a descriptor this process owns.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
            fd
        });
        tracing::info!("started by an upgrade from process {from}");
        Some(Inherited {
            bound,
            ready: ReadySignal(Arc::new(Mutex::new(ready))),
        })
    }
}

/// The new process's side of the handshake: says `READY=1` once, then
/// closes the pipe. Empty (silent) when no upgrade started this process.
#[derive(Debug, Clone, Default)]
pub struct ReadySignal(Arc<Mutex<Option<OwnedFd>>>);

impl ReadySignal {
    /// Tells the old process that every service listens (or has failed),
    /// so it may stop accepting; later calls do nothing.
    pub fn send(&self) {
        let fd = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(fd) = fd else { return };
        match std::fs::File::from(fd).write_all(READY_WORD) {
            Ok(()) => tracing::info!("ready: told the old process to stop accepting"),
            Err(e) => tracing::warn!("cannot tell the old process this one is ready: {e}"),
        }
    }
}

/// How an upgrade ended, for the serving loop.
pub(super) enum Outcome {
    /// The new process serves: stop accepting and drain.
    HandedOver,
    /// This process goes on serving; `reload` when a reload was asked for
    /// meanwhile.
    Failed { reload: bool },
    /// A stop was asked for meanwhile: the new process was stopped too.
    Stop,
}

/// Starts the new process and waits for it to be ready, while serving and
/// hearing requests: a dump is done, a reload is passed on to the new
/// process once it is ready (it may have read the config before the
/// change), or done here if the upgrade fails; a stop stops both.
pub(super) async fn upgrade(
    daemon: &Daemon,
    exec: Option<&Exec>,
    requests: &mut mpsc::Receiver<Request>,
) -> Outcome {
    let failed = |e: anyhow::Error, reload| {
        tracing::error!("upgrade failed: {e:#}; still serving");
        Outcome::Failed { reload }
    };
    let Some(exec) = exec else {
        return failed(anyhow::anyhow!("the path of this binary is unknown"), false);
    };
    let started = handover(daemon).and_then(|sockets| start(exec, sockets));
    let mut starting = match started {
        Ok(s) => s,
        Err(e) => return failed(e, false),
    };
    let pid = starting.child.id();
    tracing::info!(
        "upgrade: started `{}` as process {pid}; serving until it is ready",
        exec.exe.display()
    );
    let mut reload = false;
    let deadline = tokio::time::sleep(READY_WITHIN);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ready = starting.ready() => match ready {
                Ok(()) => break,
                Err(e) => {
                    let status = starting.reap().await;
                    return failed(e.context(format!("process {pid} {status}")), reload);
                }
            },
            _ = &mut deadline => {
                starting.stop();
                let e = anyhow::anyhow!("process {pid} was not ready within {READY_WITHIN:?}; stopped it");
                return failed(e, reload);
            }
            request = requests.recv() => match request {
                Some(Request::Dump) => dump::dump(daemon, "serving"),
                Some(Request::Reload) => reload = true,
                Some(Request::Upgrade) => tracing::warn!("upgrade already under way; SIGUSR2 ignored"),
                Some(Request::Stop) | None => {
                    tracing::warn!("upgrade abandoned: the daemon is stopping; stopping process {pid} too");
                    starting.stop();
                    return Outcome::Stop;
                }
            },
        }
    }
    tracing::info!("upgrade: process {pid} is ready; this one stops accepting and drains");
    daemon.notifier.main_pid(pid);
    if reload {
        tracing::info!("passing the reload asked for meanwhile on to process {pid}");
        // SAFETY: kill takes plain integers; the child is not reaped, so
        // its pid names it.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
    }
    // Not waited for: it outlives this process, which systemd or init
    // reaps it for.
    drop(starting);
    Outcome::HandedOver
}

/// Every listening socket the daemon holds, to hand over.
fn handover(daemon: &Daemon) -> anyhow::Result<Vec<Outgoing>> {
    let mut sockets = daemon.listeners.handover()?;
    if let Some(admin) = &daemon.admin_fd {
        sockets.push(Outgoing {
            fd: admin
                .try_clone()
                .context("cannot duplicate the admin listener")?,
            name: ADMIN_NAME.to_owned(),
            bound: Some(None),
        });
    }
    if let Some(passed) = &daemon.passed {
        sockets.extend(
            passed
                .dup_unclaimed()
                .context("cannot duplicate a passed socket")?,
        );
    }
    Ok(sockets)
}

/// A new process started, not yet ready.
struct Starting {
    child: Child,
    ready: tokio::net::unix::pipe::Receiver,
    heard: Vec<u8>,
}

/// Starts `exec` with `sockets` at fd 3 on and the readiness pipe after
/// them.
fn start(exec: &Exec, sockets: Vec<Outgoing>) -> anyhow::Result<Starting> {
    let count = RawFd::try_from(sockets.len()).context("too many sockets")?;
    let (read, write) = pipe().context("cannot make the readiness pipe")?;
    // Copies above every target number (3..=3+count), so that moving one
    // into place in the child never overwrites another; close-on-exec, so
    // only the moved ones reach the new binary.
    let above = FIRST_FD + count + 1;
    let sources = (sockets.iter().map(|s| &s.fd))
        .chain([&write])
        .map(|fd| {
            // SAFETY: fcntl on a descriptor this process owns; the result
            // is a new descriptor it owns.
            let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, above) };
            if copy < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: just made, owned by nothing else.
            Ok(unsafe { OwnedFd::from_raw_fd(copy) })
        })
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot duplicate the sockets")?;
    let raw: Vec<RawFd> = sources.iter().map(|fd| fd.as_raw_fd()).collect();
    // `:` separates the names: a service named with one passes unnamed
    // (its socket is then matched by address alone).
    let names: Vec<&str> = (sockets.iter())
        .map(|s| {
            if s.name.contains(':') {
                ""
            } else {
                s.name.as_str()
            }
        })
        .collect();
    let bound: Vec<String> = (sockets.iter().zip(FIRST_FD..))
        .filter_map(|(s, fd)| match s.bound? {
            Some(file) => Some(format!("{fd}={file}")),
            None => Some(fd.to_string()),
        })
        .collect();
    let mut cmd = Command::new(&exec.exe);
    cmd.args(&exec.args)
        .env("LISTEN_FDS", count.to_string())
        .env("LISTEN_FDNAMES", names.join(":"))
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_PIDFDID")
        .env(FROM, std::process::id().to_string())
        .env(BOUND, bound.join(","))
        .env(READY, (FIRST_FD + count).to_string());
    // SAFETY: between fork and exec the closure only calls dup2, which is
    // async-signal-safe, on descriptors the parent holds open until
    // `spawn` returns; it allocates nothing. dup2 clears close-on-exec on
    // the copy, so exactly these reach the new binary. (Should std's own
    // exec-error pipe sit at a target number, the child's copy is
    // replaced: `spawn` then returns at once, and an exec failure shows
    // as the pipe's end of file below.)
    unsafe {
        cmd.pre_exec(move || {
            for (target, fd) in (FIRST_FD..).zip(&raw) {
                if libc::dup2(*fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = (cmd.spawn()).with_context(|| format!("cannot start `{}`", exec.exe.display()))?;
    // The parent's copies go now: the pipe's end of file must mean the
    // child is gone.
    drop((sources, write, sockets));
    let ready = tokio::net::unix::pipe::Receiver::from_owned_fd(read)
        .context("cannot watch the readiness pipe")?;
    Ok(Starting {
        child,
        ready,
        heard: Vec::new(),
    })
}

impl Starting {
    /// Waits for `READY=1`; an error when the pipe closes without it.
    async fn ready(&mut self) -> anyhow::Result<()> {
        let mut buf = [0u8; 64];
        loop {
            if self
                .heard
                .windows(READY_WORD.len())
                .any(|w| w == READY_WORD)
            {
                return Ok(());
            }
            let n = (self.ready.read(&mut buf).await).context("cannot read the readiness pipe")?;
            if n == 0 || self.heard.len() > 1024 {
                anyhow::bail!("exited before it was ready");
            }
            self.heard.extend_from_slice(&buf[..n]);
        }
    }

    /// How the child ended, for the log, once its pipe closed.
    async fn reap(mut self) -> String {
        let waited = tokio::task::spawn_blocking(move || self.child.wait());
        match tokio::time::timeout(Duration::from_secs(2), waited).await {
            Ok(Ok(Ok(status))) => format!("ended: {status}"),
            _ => "closed its readiness pipe".to_owned(),
        }
    }

    /// Stops a child that is not ready (it may serve already: SIGTERM lets
    /// its connections finish) and reaps it when it exits.
    fn stop(self) {
        let mut child = self.child;
        // SAFETY: kill takes plain integers; the child is not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                tracing::info!("process {} ended: {status}", child.id());
            }
        });
    }
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just made, owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
