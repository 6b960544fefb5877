//! How many of its guests' stderr lines a service may log: a budget of
//! lines and bytes per window, per service and for the whole daemon, as
//! journald's `RateLimitIntervalSec=` / `RateLimitBurst=`. A guest's own
//! cap (a thousand lines per connection) does not stop many connections
//! from flooding the log together; this does.
//!
//! Past the budget, lines are suppressed until the window ends; the first
//! suppressed line is announced once, and the next line after the window
//! is preceded by how many were suppressed.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The window budgets are counted over.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Lines and bytes one service's guests may log per window.
pub const SERVICE_LINES: u64 = 1000;
pub const SERVICE_BYTES: u64 = 1 << 20;
/// Lines and bytes all guests together may log per window.
pub const DAEMON_LINES: u64 = 5000;
pub const DAEMON_BYTES: u64 = 4 << 20;

/// One budget's use in the running window.
#[derive(Debug)]
struct Window {
    started: Instant,
    lines: u64,
    bytes: u64,
    suppressed_lines: u64,
    suppressed_bytes: u64,
}

impl Window {
    fn new(now: Instant) -> Self {
        Window {
            started: now,
            lines: 0,
            bytes: 0,
            suppressed_lines: 0,
            suppressed_bytes: 0,
        }
    }
}

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` (lines, bytes) were dropped in the last window
    /// and are worth one line first.
    Log { suppressed: Option<(u64, u64)> },
    /// Drop it; `first` says this window's suppression starts here.
    Suppress { first: bool },
}

fn take(w: &mut Window, max_lines: u64, max_bytes: u64, bytes: u64, now: Instant) -> Verdict {
    let mut suppressed = None;
    if now.duration_since(w.started) >= WINDOW {
        if w.suppressed_lines > 0 {
            suppressed = Some((w.suppressed_lines, w.suppressed_bytes));
        }
        *w = Window::new(now);
    }
    if w.lines + 1 > max_lines || w.bytes + bytes > max_bytes {
        w.suppressed_lines += 1;
        w.suppressed_bytes += bytes;
        return Verdict::Suppress {
            first: w.suppressed_lines == 1,
        };
    }
    w.lines += 1;
    w.bytes += bytes;
    Verdict::Log { suppressed }
}

static SERVICES: LazyLock<Mutex<HashMap<Arc<str>, Window>>> = LazyLock::new(Mutex::default);
static DAEMON: LazyLock<Mutex<Option<Window>>> = LazyLock::new(Mutex::default);

/// The verdicts on one stderr line of `bytes` from a guest of `service`:
/// the service's budget, then the daemon's.
pub fn stderr_line(service: &str, bytes: u64, now: Instant) -> (Verdict, Verdict) {
    let mut services = SERVICES.lock().unwrap_or_else(|e| e.into_inner());
    let window = match services.get_mut(service) {
        Some(w) => w,
        None => services
            .entry(Arc::from(service))
            .or_insert_with(|| Window::new(now)),
    };
    let own = take(window, SERVICE_LINES, SERVICE_BYTES, bytes, now);
    drop(services);
    if let Verdict::Suppress { .. } = own {
        return (own, Verdict::Log { suppressed: None });
    }
    let mut daemon = DAEMON.lock().unwrap_or_else(|e| e.into_inner());
    let window = daemon.get_or_insert_with(|| Window::new(now));
    (own, take(window, DAEMON_LINES, DAEMON_BYTES, bytes, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_its_budget_then_suppresses_then_sums_up() {
        let t0 = Instant::now();
        let mut w = Window::new(t0);
        for _ in 0..3 {
            assert_eq!(
                take(&mut w, 3, 1000, 10, t0),
                Verdict::Log { suppressed: None }
            );
        }
        assert_eq!(
            take(&mut w, 3, 1000, 10, t0),
            Verdict::Suppress { first: true }
        );
        assert_eq!(
            take(&mut w, 3, 1000, 10, t0),
            Verdict::Suppress { first: false }
        );
        let next = t0 + WINDOW;
        assert_eq!(
            take(&mut w, 3, 1000, 10, next),
            Verdict::Log {
                suppressed: Some((2, 20))
            }
        );
        // Bytes count as much as lines.
        let mut w = Window::new(t0);
        assert_eq!(
            take(&mut w, 100, 15, 10, t0),
            Verdict::Log { suppressed: None }
        );
        assert_eq!(
            take(&mut w, 100, 15, 10, t0),
            Verdict::Suppress { first: true }
        );
    }
}
