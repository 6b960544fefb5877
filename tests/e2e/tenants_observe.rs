//! A tenant seen from outside: its services' series labelled with it, its
//! own families in `/metrics`, its totals in `/status` (alone with
//! `?tenant=`), and its group in the state dump.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::support::*;

/// A loopback port free a moment ago: a tenant's `ports` name it.
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// The config of tenant `acme` (its folder written in `dir`: service
/// `shop`, on `port`, running a hello-http of its own) and of `plain`,
/// a service outside every tenant.
fn config(dir: &Path, port: u16) -> String {
    let acme = dir.join("acme");
    std::fs::create_dir(&acme).unwrap();
    std::fs::set_permissions(&acme, std::fs::Permissions::from_mode(0o755)).unwrap();
    let guest = acme.join("hello-http.wasm");
    std::fs::copy(module("hello-http"), &guest).unwrap();
    let shop = acme.join("shop");
    std::fs::write(
        &shop,
        format!(
            "service shop\n{{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tport = {port}\n\
             \tserver = {}\n}}\n",
            guest.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shop, std::fs::Permissions::from_mode(0o644)).unwrap();
    format!(
        "tenant acme\n{{\n\tincludedir = {}\n\tports = {port}\n\tbind = 127.0.0.1\n\
         \tinstances = 4\n\tmemory = 256M\n}}\n",
        acme.display()
    ) + &service("plain", &module("hello-http"), "")
}

/// `/metrics`' samples, as `name{labels} value` lines.
fn samples(admin: std::net::SocketAddr) -> Vec<String> {
    let (status, body) = get(admin, "/metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn sample(lines: &[String], key: &str) -> f64 {
    let line = lines
        .iter()
        .find(|l| l.rsplit_once(' ').is_some_and(|(k, _)| k == key))
        .unwrap_or_else(|| panic!("no {key} in\n{}", lines.join("\n")));
    line.rsplit_once(' ').unwrap().1.parse().unwrap()
}

#[test]
fn a_tenants_metrics_status_and_dump_show_it_and_only_it() {
    let dir = tempdir();
    let port = free_port();
    let (server, admin) = start_with_admin(&config(dir.path(), port), &["shop", "plain"], &[]);
    for _ in 0..3 {
        let answer = exchange_text(server.addr("shop"), "GET / HTTP/1.0\r\n\r\n");
        assert!(answer.starts_with("HTTP/1."), "{answer}");
    }
    exchange_text(server.addr("plain"), "GET / HTTP/1.0\r\n\r\n");

    // Once all four connections are finished, the guests' memory is back.
    let finished =
        "wasinetd_connections_finished_total{service=\"shop\",tenant=\"acme\",outcome=\"exit\"}";
    let deadline = std::time::Instant::now() + PATIENCE;
    let lines = loop {
        let lines = samples(admin);
        let done = sample(&lines, finished) == 3.0
            && sample(&lines, "wasinetd_tenant_memory_bytes{tenant=\"acme\"}") == 0.0;
        if done || std::time::Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    for (key, value) in [
        (finished, 3.0),
        (
            "wasinetd_connections_accepted_total{service=\"shop\",tenant=\"acme\"}",
            3.0,
        ),
        (
            "wasinetd_connection_duration_seconds_count{service=\"shop\",tenant=\"acme\"}",
            3.0,
        ),
        (
            "wasinetd_connections_accepted_total{service=\"plain\"}",
            1.0,
        ),
        ("wasinetd_tenant_connections_active{tenant=\"acme\"}", 0.0),
        (
            "wasinetd_tenant_connections_accepted_total{tenant=\"acme\"}",
            3.0,
        ),
        (
            "wasinetd_tenant_connections_refused_total{tenant=\"acme\",reason=\"tenant instances\"}",
            0.0,
        ),
        (
            "wasinetd_tenant_connections_refused_total{tenant=\"acme\",reason=\"tenant memory\"}",
            0.0,
        ),
        ("wasinetd_tenant_memory_bytes{tenant=\"acme\"}", 0.0),
        (
            "wasinetd_tenant_memory_limit_bytes{tenant=\"acme\"}",
            268435456.0,
        ),
        ("wasinetd_tenant_instances_limit{tenant=\"acme\"}", 4.0),
    ] {
        assert_eq!(sample(&lines, key), value, "{key}");
    }
    // The tenant's CPU is its one service's.
    let cpu = sample(&lines, "wasinetd_tenant_cpu_seconds_total{tenant=\"acme\"}");
    let shop = sample(
        &lines,
        "wasinetd_guest_cpu_seconds_total{service=\"shop\",tenant=\"acme\"}",
    );
    assert!(cpu > 0.0 && (cpu - shop).abs() < 1e-6, "{cpu} {shop}");
    // Nothing of `plain` names a tenant, and the implicit tenant has no
    // series of its own.
    for line in &lines {
        if line.contains("service=\"plain\"") || line.starts_with("wasinetd_tenant_") {
            assert!(!line.contains("tenant=\"\""), "{line}");
        }
        if line.contains("service=\"plain\"") {
            assert!(!line.contains("tenant="), "{line}");
        }
    }

    // `/status`: every service names its tenant (or null) ...
    let (code, body) = get(admin, "/status");
    assert_eq!(code, 200, "{body}");
    let all: Value = serde_json::from_str(&body).unwrap();
    let tenant_of = |name: &str| {
        let services = all["services"].as_array().unwrap();
        let s = services.iter().find(|s| s["name"] == name).unwrap();
        s["tenant"].clone()
    };
    assert_eq!(tenant_of("plain"), Value::Null);
    assert_eq!(tenant_of("shop"), json!("acme"));
    assert_eq!(all["tenants"].as_array().unwrap().len(), 1, "{body}");
    // ... and `?tenant=acme` shows acme's services and totals only.
    let (code, body) = get(admin, "/status?tenant=acme");
    assert_eq!(code, 200, "{body}");
    let acme: Value = serde_json::from_str(&body).unwrap();
    let services = acme["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "{body}");
    assert_eq!(services[0]["name"], "shop");
    assert_eq!(services[0]["connections"]["accepted"], 3);
    let mut tenants = acme["tenants"].clone();
    let cpu = tenants[0].as_object_mut().unwrap().remove("cpu_seconds");
    assert!(cpu.unwrap().as_f64().unwrap() > 0.0, "{body}");
    assert_eq!(
        tenants,
        json!([{
            "name": "acme",
            "limits": { "instances": 4, "memory_bytes": 268435456, "cpu_share": 1 },
            "active": 0,
            "accepted": 3,
            "refused": { "tenant instances": 0, "tenant memory": 0 },
            "memory_bytes": 0,
        }])
    );
    let (code, body) = get(admin, "/status?tenant=nobody");
    assert_eq!(
        (code, body.as_str()),
        (404, "no tenant `nobody` in the config being served\n")
    );
    let (code, _) = get(admin, "/status?tenant=a%20b");
    assert_eq!(code, 400);

    // The dump: `plain` as before tenants, then acme's totals and its
    // service, which names it.
    let mark = server.log.len();
    signal(server.child(), "USR1");
    server.log.wait_for_after(mark, &["dump: end"]);
    let dump: Vec<String> = (server.log.lines().into_iter().skip(mark))
        .filter_map(|l| Some(l.split_once("wasinetd::dump: ")?.1.to_owned()))
        .collect();
    let at = |prefix: &str| {
        (dump.iter())
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in\n{}", dump.join("\n")))
    };
    let (plain, tenant, shop) = (
        at("dump: service=plain guest="),
        at("dump: tenant=acme "),
        at("dump: service=shop tenant=acme guest="),
    );
    assert!(plain < tenant && tenant + 1 == shop, "{}", dump.join("\n"));
    let totals = dump[tenant].split_once(" cpu_s=").unwrap();
    assert_eq!(
        totals.0,
        "dump: tenant=acme active=0 instances=4 memory=0 memory_limit=268435456"
    );
    assert!(
        totals.1.ends_with(
            " cpu_share=1 accepted=3 refused_tenant_instances=0 refused_tenant_memory=0"
        ),
        "{}",
        dump[tenant]
    );
    assert!(
        dump[shop].contains(" accepted=3 finished=3 finished_exit=3"),
        "{}",
        dump[shop]
    );
}
