//! How a guest's run ended. Each kind of end is defined once, here: its
//! words in a text log line ([`Outcome`]'s `Display`), its label (the
//! JSON log's `outcome` and the metrics' `outcome=`, [`Kind::label`]),
//! what the metrics count it as ([`Kind::counted_as`]) and the exit status
//! `wasinetd run` gives it ([`Outcome::exit_status`]).

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

/// What kind of end an [`Outcome`] is, without its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exit,
    Trap,
    CpuLimit,
    MemoryLimit,
    RuntimeLimit,
    Failed,
    FilesLimit,
    Stopped,
    IdleTimeout,
    ClientGone,
    Redirected,
    RedirectFailed,
}

impl Kind {
    /// What a finished connection is counted as, in the metrics' order.
    pub const COUNTED: [Kind; 10] = [
        Kind::Exit,
        Kind::Trap,
        Kind::CpuLimit,
        Kind::MemoryLimit,
        Kind::RuntimeLimit,
        Kind::Failed,
        Kind::FilesLimit,
        Kind::Stopped,
        Kind::IdleTimeout,
        Kind::ClientGone,
    ];

    /// The JSON log's `outcome` and the metrics' `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Exit => "exit",
            Kind::Trap => "trap",
            Kind::CpuLimit => "cpu_limit",
            Kind::MemoryLimit => "memory_limit",
            Kind::RuntimeLimit => "runtime_limit",
            Kind::Failed => "failed",
            Kind::FilesLimit => "files_limit",
            Kind::Stopped => "stopped",
            Kind::IdleTimeout => "idle_timeout",
            Kind::ClientGone => "client_gone",
            Kind::Redirected => "redirected",
            Kind::RedirectFailed => "redirect_failed",
        }
    }

    /// What the metrics count it as: a relay as a clean `exit`, a relay
    /// that failed as a guest that could not be run (`failed`); every
    /// other kind as itself. Always one of [`Kind::COUNTED`].
    pub fn counted_as(self) -> Kind {
        match self {
            Kind::Redirected => Kind::Exit,
            Kind::RedirectFailed => Kind::Failed,
            kind => kind,
        }
    }
}

impl Outcome {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Outcome::Exited(_) => Kind::Exit,
            Outcome::Trapped(_) => Kind::Trap,
            Outcome::CpuLimit => Kind::CpuLimit,
            Outcome::MemoryLimit => Kind::MemoryLimit,
            Outcome::RuntimeLimit => Kind::RuntimeLimit,
            Outcome::FilesLimit => Kind::FilesLimit,
            Outcome::IdleTimeout => Kind::IdleTimeout,
            Outcome::ClientGone => Kind::ClientGone,
            Outcome::Stopped => Kind::Stopped,
            Outcome::Failed(_) => Kind::Failed,
            Outcome::Redirected => Kind::Redirected,
            Outcome::RedirectFailed(_) => Kind::RedirectFailed,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_counted_as_a_counted_kind_with_a_label_of_its_own() {
        let all = [
            Outcome::Exited(3),
            Outcome::Trapped("x".into()),
            Outcome::CpuLimit,
            Outcome::MemoryLimit,
            Outcome::RuntimeLimit,
            Outcome::FilesLimit,
            Outcome::IdleTimeout,
            Outcome::ClientGone,
            Outcome::Stopped,
            Outcome::Failed("x".into()),
            Outcome::Redirected,
            Outcome::RedirectFailed("x".into()),
        ];
        let mut labels: Vec<&str> = all.iter().map(|o| o.kind().label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), all.len());
        for o in &all {
            assert!(Kind::COUNTED.contains(&o.kind().counted_as()), "{o}");
        }
    }
}
