//! Readiness and status messages to systemd (`sd_notify`, `Type=notify`),
//! without libsystemd: one datagram per message to `NOTIFY_SOCKET`. What
//! the messages say (`READY=1`, `RELOADING=1`, `MAINPID=`, `STOPPING=1`,
//! `STATUS=`) and when is decided here; when the daemon reaches each step
//! is the server's business.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::server::Roster;

/// Readiness and status messages to systemd (`sd_notify`), when it set
/// `NOTIFY_SOCKET`; silent otherwise.
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<std::os::unix::net::SocketAddr>,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` asks for: a path, or `@name` for an
    /// abstract socket.
    pub fn from_env() -> Notifier {
        let Some(var) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::default();
        };
        let bytes = var.as_encoded_bytes();
        let target = match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
            }
            None => std::os::unix::net::SocketAddr::from_pathname(&var),
        };
        match target {
            Ok(target) => Notifier {
                target: Some(target),
            },
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET `{}`: {e}; not notifying", var.display());
                Notifier::default()
            }
        }
    }

    /// Sends `message` (`KEY=VALUE` lines) as one datagram; a failure is
    /// logged, never fatal.
    pub fn send(&self, message: &str) {
        let Some(target) = &self.target else { return };
        let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(message.as_bytes(), target));
        if let Err(e) = sent {
            tracing::warn!("cannot notify systemd: {e}");
        }
    }

    /// Whether systemd listens.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1` with a first `STATUS=`, then a fresh `STATUS=` every
    /// [`STATUS_EVERY`] until `draining` turns true (a stop was asked for:
    /// from then on the stop's own messages say what happens).
    pub fn ready(&self, roster: watch::Receiver<Arc<Roster>>, mut draining: watch::Receiver<bool>) {
        if !self.enabled() {
            return;
        }
        self.send(&format!("READY=1\nSTATUS={}", status(&roster.borrow())));
        let notifier = Notifier {
            target: self.target.clone(),
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(STATUS_EVERY) => {}
                    _ = draining.wait_for(|&s| s) => return,
                }
                notifier.send(&format!("STATUS={}", status(&roster.borrow())));
            }
        });
    }

    /// `RELOADING=1` as `Type=notify-reload` expects it: with the time
    /// the reload began (`CLOCK_MONOTONIC`, in microseconds).
    pub fn reloading(&self) {
        if self.enabled() {
            let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            let usec = (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1_000;
            self.send(&format!(
                "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the config"
            ));
        }
    }

    /// `READY=1` after a reload, whether it worked or not (the old config
    /// still serving is ready too).
    pub fn reloaded(&self, roster: &Roster) {
        if self.enabled() {
            self.send(&format!("READY=1\nSTATUS={}", status(roster)));
        }
    }

    /// `MAINPID=`: an upgrade's new process is the service's main process
    /// now (systemd then follows it, not this one, which exits). Its own
    /// notifications are heard only with `NotifyAccess=all`.
    pub fn main_pid(&self, pid: u32) {
        if self.enabled() {
            self.send(&format!(
                "MAINPID={pid}\nSTATUS=upgraded: process {pid} serves; draining the old one"
            ));
        }
    }

    /// `STOPPING=1` at the start of a drain delay (`--drain-delay`): the
    /// unit is deactivating from the first signal on, though it still
    /// serves for `delay`.
    pub fn draining(&self, delay: Duration, roster: &Roster) {
        if self.enabled() {
            self.send(&format!(
                "STOPPING=1\nSTATUS=draining: not ready, still accepting for {delay:?}; {} connections running",
                roster.running()
            ));
        }
    }

    /// `STOPPING=1` once it stops accepting, with the connections still
    /// running (the first signal's, without a drain delay; a repeat after
    /// one, which systemd takes as the same).
    pub fn stopping(&self, roster: &Roster) {
        if self.enabled() {
            self.send(&format!(
                "STOPPING=1\nSTATUS=stopping; {} connections running",
                roster.running()
            ));
        }
    }
}

/// How often `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The one-line `STATUS=`: services, listeners, running connections, and
/// a failed last reload.
fn status(roster: &Roster) -> String {
    let count =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut line = format!(
        "{} on {}; {} running",
        count(roster.services().len(), "service", "services"),
        count(roster.listeners.len(), "listener", "listeners"),
        count(roster.running() as usize, "connection", "connections"),
    );
    if roster.config.reload_error().is_some() {
        line.push_str("; last reload failed, serving the previous config");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("wasinetd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            target: Some(std::os::unix::net::SocketAddr::from_pathname(&path).unwrap()),
        };
        notifier.send("READY=1\nSTATUS=ok");
        let mut buf = [0; 64];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!Notifier::default().enabled());
    }

    #[test]
    fn notifications_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("wasinetd-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        // As `NOTIFY_SOCKET=@name` gives it.
        let notifier = Notifier { target: Some(addr) };
        notifier.send("STOPPING=1");
        let mut buf = [0; 64];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
