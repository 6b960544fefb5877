//! Refusals on one listener, logged without letting a flood write the log:
//! the first of each second in full (`refused: REASON ...`), the others
//! counted by reason and summed up in one line when the second is over.
//! A client that opens connections as fast as it can (or a flood of
//! datagrams) is refused as cheaply, and leaves two lines a second.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::CONN;
use super::line::Line;
use crate::admission::Refusal;
use crate::config::ServiceSpec;

/// How often refusals are logged in full; the rest are counted.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

/// One listener's refusals in the current second.
#[derive(Debug)]
pub struct RefusalLog {
    /// What is refused, for the summary: `connections`, `datagrams`.
    unit: &'static str,
    /// How the summary says it: `refused`, `dropped`.
    verb: &'static str,
    /// When the current second started: its first refusal.
    since: Option<Instant>,
    /// Refusals since then not logged in full, by reason.
    counted: BTreeMap<&'static str, u64>,
}

impl RefusalLog {
    pub fn new(unit: &'static str, verb: &'static str) -> Self {
        RefusalLog {
            unit,
            verb,
            since: None,
            counted: BTreeMap::new(),
        }
    }

    /// Logs the refusal of `conn` in full if it is the first of its
    /// second, else counts it.
    pub fn refused(
        &mut self,
        spec: &ServiceSpec,
        conn: u64,
        peer: Option<SocketAddr>,
        reason: Refusal,
        now: Instant,
    ) {
        match self.since {
            Some(since) if now.duration_since(since) < LOG_EVERY => {
                *self.counted.entry(reason.as_str()).or_default() += 1;
            }
            _ => {
                self.flush(spec);
                self.since = Some(now);
                super::connection_refused(spec, conn, peer, reason);
            }
        }
    }

    /// When the summary line is due, if anything was counted.
    pub fn flush_at(&self) -> Option<Instant> {
        match self.since {
            Some(since) if !self.counted.is_empty() => Some(since + LOG_EVERY),
            _ => None,
        }
    }

    /// Logs the summary of what was counted, then starts afresh.
    pub fn flush(&mut self, spec: &ServiceSpec) {
        self.since = None;
        let counted = std::mem::take(&mut self.counted);
        if counted.is_empty() || spec.log_on_failure == Default::default() {
            return;
        }
        let total: u64 = counted.values().sum();
        let reasons: Vec<String> = counted.iter().map(|(r, n)| format!("{r}={n}")).collect();
        Line {
            warn: true,
            target: CONN,
            head: format!(
                "service={} {} {total} {} in the last second: refused {}",
                spec.name,
                self.verb,
                self.unit,
                reasons.join(" ")
            ),
            service: &spec.name,
            reason: Some("dropped"),
            ..Line::default()
        }
        .emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_once_a_second_then_summed_up() {
        let text = "service u\n{\n type = UNLISTED INTERNAL\n socket_type = dgram\n port = 0\n}\n";
        let config = crate::config::parse_str(text, std::path::Path::new("t.conf"));
        let spec = config.services.into_iter().next().unwrap();
        let mut drops = RefusalLog::new("datagrams", "dropped");
        let t0 = Instant::now();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        drops.refused(&spec, 1, Some(peer), Refusal::Instances, t0);
        assert_eq!(drops.flush_at(), None, "the first is logged, not counted");
        for conn in 2..100 {
            drops.refused(&spec, conn, Some(peer), Refusal::Instances, t0);
        }
        drops.refused(&spec, 100, Some(peer), Refusal::Address, t0);
        assert_eq!(drops.counted["instances"], 98);
        assert_eq!(drops.counted["address"], 1);
        assert_eq!(drops.flush_at(), Some(t0 + LOG_EVERY));
        // The next second's first refusal flushes and is logged in full.
        drops.refused(&spec, 101, Some(peer), Refusal::Instances, t0 + LOG_EVERY);
        assert!(drops.counted.is_empty());
        assert_eq!(drops.since, Some(t0 + LOG_EVERY));
    }
}
