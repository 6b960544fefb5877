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
    h.render(&mut out, "x", "service=\"s\"");
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

fn daemon() -> Daemon<'static> {
    Daemon {
        config_digest: "d",
        config_loaded: std::time::SystemTime::UNIX_EPOCH,
        reloads_ok: 0,
        reloads_failed: 0,
        last_reload: None,
    }
}

fn acme() -> TenantTotals {
    TenantTotals {
        name: "acme".into(),
        active: 1,
        instances: Some(4),
        accepted: 3,
        refused: [("tenant instances", 2), ("tenant memory", 0)],
        cpu: Duration::from_millis(1500),
        memory: 1 << 17,
        memory_limit: Some(64 << 20),
        cpu_share: 2,
    }
}

#[test]
fn a_tenants_service_carries_its_tenant_and_others_do_not() {
    let (shop, plain) = (ServiceMetrics::default(), ServiceMetrics::default());
    shop.accepted();
    shop.instantiate.observe(Duration::from_micros(1));
    let rows = [
        Row {
            name: "plain",
            tenant: None,
            metrics: &plain,
            active: 0,
        },
        Row {
            name: "shop",
            tenant: Some("ac\"me"),
            metrics: &shop,
            active: 1,
        },
    ];
    let out = render(&rows, &[], &daemon());
    let lines: Vec<&str> = out.lines().collect();
    for line in [
        "wasinetd_connections_accepted_total{service=\"plain\"} 0",
        "wasinetd_connections_accepted_total{service=\"shop\",tenant=\"ac\\\"me\"} 1",
        "wasinetd_connections_active{service=\"shop\",tenant=\"ac\\\"me\"} 1",
        "wasinetd_connections_refused_total{service=\"shop\",tenant=\"ac\\\"me\",reason=\"instances\"} 0",
        "wasinetd_instantiation_seconds_bucket{service=\"shop\",tenant=\"ac\\\"me\",le=\"+Inf\"} 1",
        "wasinetd_instantiation_seconds_count{service=\"shop\",tenant=\"ac\\\"me\"} 1",
        "wasinetd_instantiation_seconds_count{service=\"plain\"} 0",
        "wasinetd_guest_cpu_seconds_total{service=\"shop\",tenant=\"ac\\\"me\"} 0",
        "wasinetd_guest_cpu_seconds_total{service=\"plain\"} 0",
    ] {
        assert!(lines.contains(&line), "no `{line}` in\n{out}");
    }
    // The untenanted service's series never get a `tenant` label, and
    // without tenants there is no tenant family.
    for line in lines.iter().filter(|l| l.contains("service=\"plain\"")) {
        assert!(!line.contains("tenant"), "{line}");
    }
    assert!(!out.contains("wasinetd_tenant_"), "{out}");
}

#[test]
fn each_tenant_family_is_written_once_with_every_tenant() {
    let mut open = acme();
    open.name = "open".into();
    (open.instances, open.memory_limit) = (None, None);
    let out = render(&[], &[acme(), open.clone()], &daemon());
    let tenants = &out[out.find("wasinetd_tenant_").unwrap() - "# HELP ".len()..];
    let samples: Vec<&str> = tenants.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        samples,
        [
            "wasinetd_tenant_connections_active{tenant=\"acme\"} 1",
            "wasinetd_tenant_connections_active{tenant=\"open\"} 1",
            "wasinetd_tenant_connections_accepted_total{tenant=\"acme\"} 3",
            "wasinetd_tenant_connections_accepted_total{tenant=\"open\"} 3",
            "wasinetd_tenant_connections_refused_total{tenant=\"acme\",reason=\"tenant instances\"} 2",
            "wasinetd_tenant_connections_refused_total{tenant=\"acme\",reason=\"tenant memory\"} 0",
            "wasinetd_tenant_connections_refused_total{tenant=\"open\",reason=\"tenant instances\"} 2",
            "wasinetd_tenant_connections_refused_total{tenant=\"open\",reason=\"tenant memory\"} 0",
            "wasinetd_tenant_cpu_seconds_total{tenant=\"acme\"} 1.5",
            "wasinetd_tenant_cpu_seconds_total{tenant=\"open\"} 1.5",
            "wasinetd_tenant_memory_bytes{tenant=\"acme\"} 131072",
            "wasinetd_tenant_memory_bytes{tenant=\"open\"} 131072",
            "wasinetd_tenant_memory_limit_bytes{tenant=\"acme\"} 67108864",
            "wasinetd_tenant_instances_limit{tenant=\"acme\"} 4",
        ]
    );
    // HELP and TYPE once per family, right before its samples.
    for family in [
        "wasinetd_tenant_connections_active",
        "wasinetd_tenant_connections_refused_total",
        "wasinetd_tenant_instances_limit",
    ] {
        let help = format!("# HELP {family} ");
        let kind = format!("# TYPE {family} ");
        assert_eq!(out.matches(&help).count(), 1, "{out}");
        assert_eq!(out.matches(&kind).count(), 1, "{out}");
    }
    // No tenant sets a limit: its family is left out.
    let out = render(&[], &[open], &daemon());
    assert!(!out.contains("_limit"), "{out}");
    assert!(out.contains("wasinetd_tenant_memory_bytes{tenant=\"open\"} 131072\n"));
}
