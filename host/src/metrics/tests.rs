//! The tests of `metrics`: counting, and the Prometheus text.

use super::prometheus::escape;
use super::*;

#[test]
fn histogram_buckets_are_cumulative_and_le_inclusive() {
    let h = Histogram::new(&[0.001, 0.01]);
    h.observe(Duration::from_millis(1)); // exactly on a bound: le="0.001"
    h.observe(Duration::from_millis(5));
    h.observe(Duration::from_secs(1));
    let mut out = String::new();
    h.render(&mut out, "x", "s");
    assert_eq!(
        out,
        "x_bucket{service=\"s\",le=\"0.001\"} 1\n\
         x_bucket{service=\"s\",le=\"0.01\"} 2\n\
         x_bucket{service=\"s\",le=\"+Inf\"} 3\n\
         x_sum{service=\"s\"} 1.006\n\
         x_count{service=\"s\"} 3\n"
    );
}

#[test]
fn refusal_reasons_get_their_own_series() {
    let m = ServiceMetrics::default();
    assert_eq!(m.refusals(), [("instances", 0)]);
    m.refused(Refusal::Instances);
    m.refused(Refusal::Instances);
    assert_eq!(m.refusals(), [("instances", 2)]);
}

#[test]
fn outcomes_and_exit_statuses_are_counted_apart() {
    let m = ServiceMetrics::default();
    let report = |outcome| RunReport {
        outcome,
        instantiate: None,
        cpu: Duration::ZERO,
        memory_peak: 0,
        refused: Default::default(),
    };
    m.finished(&report(Outcome::Exited(0)), Duration::ZERO);
    m.finished(&report(Outcome::Exited(3)), Duration::ZERO);
    m.finished(&report(Outcome::CpuLimit), Duration::ZERO);
    let s = m.snapshot();
    assert_eq!(s.finished, 3);
    assert_eq!(s.outcomes[0], ("exit", 2));
    assert_eq!(s.outcomes[2], ("cpu_limit", 1));
    assert_eq!((s.exit_zero, s.exit_nonzero), (1, 1));
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}
