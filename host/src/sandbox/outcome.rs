//! How a guest's run ended, in words fit for a log line and as an exit status.

use std::fmt;

use wasmtime::Trap;
use wasmtime::component::ResourceTableError;
use wasmtime_wasi::I32Exit;

use super::State;
use super::watch::Stop;

/// The end of one guest run. A trap or a limit is an event, not an error:
/// it is logged and never reaches the accept loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest exited (or returned from `_start` / `run`) with this status.
    Exited(i32),
    /// The guest trapped (a Rust panic is `unreachable`).
    Trapped(String),
    /// Stopped after spending its `rlimit_cpu`.
    CpuLimit,
    /// Ended abnormally after a memory growth past `rlimit_as` was refused.
    MemoryLimit,
    /// Still running (or blocked) at its `runtime_max`.
    RuntimeLimit,
    /// Ended when it opened one handle (file, directory, stream) more than
    /// `rlimit_files` allows: wasmtime-wasi fails the call, it has no EMFILE.
    FilesLimit,
    /// Ended because no byte moved to or from its client for
    /// `idle_timeout`.
    IdleTimeout,
    /// Ended because its client was gone (the connection was reset).
    ClientGone,
    /// Ended by the daemon, which stopped without waiting any longer (a
    /// second stop signal, or the end of `--shutdown-grace`).
    Stopped,
    /// Could not be run at all (instantiation failed); the host's reason.
    Failed(String),
    /// No guest: the connection was relayed to a `redirect` backend until
    /// both sides closed.
    Redirected,
    /// No guest: the `redirect` backend could not be reached (or the relay
    /// broke); the reason.
    RedirectFailed(String),
}

impl Outcome {
    /// Classifies the error a run ended with, using what the store's
    /// memory meter and watch saw.
    pub(super) fn from_error<W>(err: &wasmtime::Error, state: &State<W>) -> Self {
        match state.watch.stopped {
            Some(Stop::Cpu) => return Outcome::CpuLimit,
            Some(Stop::Runtime) => return Outcome::RuntimeLimit,
            Some(Stop::Daemon) => return Outcome::Stopped,
            None => {}
        }
        let meter = &state.meter;
        let exit = err.downcast_ref::<I32Exit>().map(|e| e.0);
        if meter.memory_denied() && exit != Some(0) {
            // A guest that ends badly after being refused memory ended
            // because of the limit, whether it trapped or exited non-zero.
            return Outcome::MemoryLimit;
        }
        if let Some(code) = exit {
            return Outcome::Exited(code);
        }
        if let Some(ResourceTableError::Full) = err.downcast_ref::<ResourceTableError>() {
            return Outcome::FilesLimit;
        }
        if let Some(trap) = err.downcast_ref::<Trap>() {
            let text = trap.to_string();
            let text = text.strip_prefix("wasm trap: ").unwrap_or(&text);
            return Outcome::Trapped(text.to_owned());
        }
        Outcome::Failed(format!("{err:#}"))
    }

    /// Whether this is a clean end: exit status 0.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Exited(0) | Outcome::Redirected)
    }

    /// Whether a sandbox limit or a trap ended the guest (worth a warning).
    pub fn is_abnormal(&self) -> bool {
        !matches!(self, Outcome::Exited(_) | Outcome::Redirected)
    }

    /// The exit status `wasinetd run` reports, following shell conventions:
    /// the guest's own status, 134 for a trap or the files limit (SIGABRT),
    /// 137 for the memory limit (SIGKILL, as the OOM killer), 152 for the
    /// CPU limit (SIGXCPU, as RLIMIT_CPU), 124 for the runtime limit (as
    /// timeout(1); the idle timeout too), 141 when its client was gone
    /// (SIGPIPE), 143 when the daemon stopped it (SIGTERM), 125 when the
    /// guest could not be run.
    pub fn exit_status(&self) -> i32 {
        match self {
            Outcome::Exited(code) => *code,
            Outcome::Trapped(_) | Outcome::FilesLimit => 134,
            Outcome::MemoryLimit => 137,
            Outcome::CpuLimit => 152,
            Outcome::RuntimeLimit | Outcome::IdleTimeout => 124,
            Outcome::ClientGone => 141,
            Outcome::Stopped => 143,
            Outcome::Failed(_) | Outcome::RedirectFailed(_) => 125,
            Outcome::Redirected => 0,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(code) => write!(f, "exit={code}"),
            Outcome::Trapped(trap) => write!(f, "trap: {trap}"),
            Outcome::CpuLimit => f.write_str("cpu limit"),
            Outcome::MemoryLimit => f.write_str("memory limit"),
            Outcome::RuntimeLimit => f.write_str("runtime limit"),
            Outcome::FilesLimit => f.write_str("files limit"),
            Outcome::Stopped => f.write_str("stopped"),
            Outcome::IdleTimeout => f.write_str("idle timeout"),
            Outcome::ClientGone => f.write_str("client gone"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
            Outcome::Redirected => f.write_str("redirected"),
            Outcome::RedirectFailed(why) => write!(f, "redirect failed: {why}"),
        }
    }
}

/// How a run ended and what it cost, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub outcome: Outcome,
    /// Time to instantiate the guest; `None` if it never got that far.
    pub instantiate: Option<std::time::Duration>,
    /// The CPU the run made the daemon spend: guest code and the host
    /// calls it made.
    pub cpu: std::time::Duration,
    /// The most linear memory the instance held at once, in bytes.
    pub memory_peak: u64,
    /// What the guard refused it: descriptors, quota, symlinks.
    pub refused: super::guard::GuardCounts,
}
