//! Per-service counters and histograms, and their Prometheus text form.
//!
//! Each service owns one [`ServiceMetrics`]; the accept loop and the
//! connection record into it with relaxed atomic adds (no lock and no
//! allocation per connection), and the admin listener (`admin`) reads it to
//! render `/metrics` and `/status`. Counters only grow; a reader may see
//! one connection's counters half-updated, never a torn number. Bytes are
//! counted as they cross the socket, by [`CountedSocket`].
//!
//! This file holds the counters, and [`TenantTotals`]: what the connection
//! layer counts for a tenant, read out for the same readers; [`histogram`]
//! the histograms, [`socket`] the byte counting, and [`prometheus`] the
//! text form.

mod histogram;
mod prometheus;
mod socket;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::admission::Refusal;
use crate::sandbox::{Kind, Outcome, RunReport};

use histogram::Histogram;
pub use prometheus::{Daemon, Row, render};
pub use socket::CountedSocket;

/// Connection duration buckets (upper bounds, seconds).
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Instantiation time buckets (upper bounds, seconds).
const INSTANTIATE_BUCKETS: &[f64] = &[
    5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2,
];
const MAX_BUCKETS: usize = 16;

/// Distinct refusal reasons counted separately; more are counted as `other`.
const REFUSAL_SLOTS: usize = 8;

/// Everything counted for one service.
pub struct ServiceMetrics {
    accepted: AtomicU64,
    refused: [RefusalSlot; REFUSAL_SLOTS],
    refused_other: AtomicU64,
    /// Indexed like [`Kind::COUNTED`].
    outcomes: [AtomicU64; Kind::COUNTED.len()],
    exit_nonzero: AtomicU64,
    duration: Histogram,
    instantiate: Histogram,
    cpu_ns: AtomicU64,
    received: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
}

/// A refusal reason, named on first use, and its count.
#[derive(Default)]
struct RefusalSlot {
    reason: OnceLock<&'static str>,
    count: AtomicU64,
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        let m = Self {
            accepted: AtomicU64::new(0),
            refused: Default::default(),
            refused_other: AtomicU64::new(0),
            outcomes: Default::default(),
            exit_nonzero: AtomicU64::new(0),
            duration: Histogram::new(DURATION_BUCKETS),
            instantiate: Histogram::new(INSTANTIATE_BUCKETS),
            cpu_ns: AtomicU64::new(0),
            received: Arc::default(),
            sent: Arc::default(),
        };
        // Known from the start, so the series exists (at 0) before the
        // first refusal; reasons added later appear when first counted.
        let _ = m.refused[0].reason.set(Refusal::Instances.as_str());
        m
    }
}

impl ServiceMetrics {
    /// A connection was accepted (whether then refused or served).
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }

    /// An accepted connection was closed without running the guest.
    pub fn refused(&self, reason: Refusal) {
        let reason = reason.as_str();
        for slot in &self.refused {
            if *slot.reason.get_or_init(|| reason) == reason {
                slot.count.fetch_add(1, Relaxed);
                return;
            }
        }
        self.refused_other.fetch_add(1, Relaxed);
    }

    /// A served connection ended, `duration` after it was accepted.
    pub fn finished(&self, report: &RunReport, duration: Duration) {
        if let Outcome::Exited(code) = report.outcome
            && code != 0
        {
            self.exit_nonzero.fetch_add(1, Relaxed);
        }
        let kind = report.outcome.kind().counted_as();
        let index = Kind::COUNTED.iter().position(|k| *k == kind);
        self.outcomes[index.unwrap_or(0)].fetch_add(1, Relaxed);
        self.duration.observe(duration);
        if let Some(t) = report.instantiate {
            self.instantiate.observe(t);
        }
        self.cpu_ns.fetch_add(nanos(report.cpu), Relaxed);
    }

    /// A snapshot of the counters, for `/status`.
    pub fn snapshot(&self) -> Snapshot {
        let finished: u64 = self.outcomes.iter().map(|c| c.load(Relaxed)).sum();
        let exits = self.outcomes[0].load(Relaxed);
        let nonzero = self.exit_nonzero.load(Relaxed);
        Snapshot {
            accepted: self.accepted.load(Relaxed),
            refused: self.refusals(),
            finished,
            outcomes: std::array::from_fn(|i| {
                (Kind::COUNTED[i].label(), self.outcomes[i].load(Relaxed))
            }),
            exit_zero: exits.saturating_sub(nonzero),
            exit_nonzero: nonzero,
            received: self.received.load(Relaxed),
            sent: self.sent.load(Relaxed),
        }
    }

    fn refusals(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<_> = self
            .refused
            .iter()
            .filter_map(|s| Some((*s.reason.get()?, s.count.load(Relaxed))))
            .collect();
        let other = self.refused_other.load(Relaxed);
        if other > 0 {
            out.push(("other", other));
        }
        out
    }
}

/// Counters read at one moment (each on its own).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub accepted: u64,
    pub refused: Vec<(&'static str, u64)>,
    pub finished: u64,
    pub outcomes: [(&'static str, u64); Kind::COUNTED.len()],
    pub exit_zero: u64,
    pub exit_nonzero: u64,
    pub received: u64,
    pub sent: u64,
}

/// One tenant's totals, read at one moment (each on its own): what its
/// services share, for `/metrics`, `/status` and the dump. Defined here,
/// below the connection layer that counts them, so the text forms need
/// no access to the running tenant.
#[derive(Debug, Clone)]
pub struct TenantTotals {
    pub name: Arc<str>,
    /// Its guests running now, and its `instances` if set.
    pub active: u32,
    pub instances: Option<u32>,
    /// Connections its services accepted, whether then refused or served.
    pub accepted: u64,
    /// Refusals for its own bounds, by reason ([`Refusal::TenantInstances`],
    /// [`Refusal::TenantMemory`]), always both.
    pub refused: [(&'static str, u64); 2],
    /// CPU its guests have spent.
    pub cpu: Duration,
    /// Linear memory its live guests hold now, and its `memory` if set.
    pub memory: u64,
    pub memory_limit: Option<u64>,
    /// Its `cpu_share`.
    pub cpu_share: u32,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
