//! A Prometheus histogram over fixed buckets, recorded with relaxed atomic
//! adds.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::{MAX_BUCKETS, nanos};

/// A Prometheus histogram over fixed buckets; counts are kept per bucket
/// and made cumulative when rendered.
pub(super) struct Histogram {
    bounds: &'static [f64],
    /// Bucket upper bounds in nanoseconds, for the hot path.
    bounds_ns: [u64; MAX_BUCKETS],
    /// One per bound, then the `+Inf` bucket.
    counts: [AtomicU64; MAX_BUCKETS + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    pub(super) fn new(bounds: &'static [f64]) -> Self {
        assert!(bounds.len() <= MAX_BUCKETS, "too many histogram buckets");
        let mut bounds_ns = [u64::MAX; MAX_BUCKETS];
        for (ns, s) in bounds_ns.iter_mut().zip(bounds) {
            *ns = (s * 1e9).round() as u64;
        }
        Self {
            bounds,
            bounds_ns,
            counts: Default::default(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub(super) fn observe(&self, d: Duration) {
        let ns = nanos(d);
        let i = self.bounds_ns[..self.bounds.len()].partition_point(|&b| b < ns);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Its samples under `labels` (a service's, as `service="NAME"`).
    pub(super) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}
