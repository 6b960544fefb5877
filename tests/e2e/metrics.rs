//! The admin listener: exact counters after a scripted mix of connections,
//! `/health` turning 503 once the daemon stops accepting, `/status` as
//! JSON, and no admin listener off the loopback unless asked for.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use crate::support::*;

/// `/metrics` as `name{labels}` -> value.
fn scrape(admin: SocketAddr) -> HashMap<String, f64> {
    let (status, body) = get(admin, "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap();
            (key.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn value(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no {key} in the metrics"))
}

/// Waits until the services have finished `n` connections in all.
fn scrape_after(admin: SocketAddr, n: f64) -> HashMap<String, f64> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let m = scrape(admin);
        let finished: f64 = m
            .iter()
            .filter(|(k, _)| k.starts_with("wasinetd_connections_finished_total{"))
            .map(|(_, v)| v)
            .sum();
        if finished >= n || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn counters_are_exact_after_a_mix_of_connections() {
    let probe = module("probe");
    let config = service("ok", &module("hello-http"), "")
        + &service("exit", &probe, "\tserver_args = exit 3")
        + &service("panic", &probe, "\tserver_args = panic")
        + &service("spin", &probe, "\tserver_args = spin\n\trlimit_cpu = 100ms")
        + &service("bomb", &probe, "\tserver_args = membomb\n\trlimit_as = 16M")
        + &service(
            "sleepy",
            &probe,
            "\tserver_args = sleep\n\truntime_max = 200ms",
        )
        + &service("one", &probe, "\tserver_args = sleep 1\n\tinstances = 1");
    let names = ["ok", "exit", "panic", "spin", "bomb", "sleepy", "one"];
    let (server, admin) = start_with_admin(&config, &names, &[]);
    assert_eq!(get(admin, "/health"), (200, "ok\n".into()));

    let request = "GET / HTTP/1.0\r\n\r\n";
    let mut sent_to_clients = 0;
    for _ in 0..2 {
        let out = exchange(server.addr("ok"), request.as_bytes());
        sent_to_clients += out.len();
    }
    exchange(server.addr("exit"), b"");
    exchange(server.addr("panic"), b"");
    exchange(server.addr("spin"), b"");
    exchange(server.addr("bomb"), b"");
    exchange(server.addr("sleepy"), b"");
    // Two at once where one is allowed: the second is refused.
    let mut first = connect(server.addr("one"));
    let mut buf = [0; 9];
    first.read_exact(&mut buf).unwrap();
    let mut second = connect(server.addr("one"));
    let _ = second.read_to_end(&mut Vec::new());
    server.log.wait_for(&["refused: instances", "service=one"]);
    read_all(&mut first); // the guest sleeps 1 s, then exits 0

    let m = scrape_after(admin, 8.0);
    let finished = |svc: &str, outcome: &str| {
        value(
            &m,
            &format!(
                "wasinetd_connections_finished_total{{service=\"{svc}\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    let exits = |svc: &str, status: &str| {
        value(
            &m,
            &format!("wasinetd_guest_exits_total{{service=\"{svc}\",status=\"{status}\"}}"),
        )
    };
    let per_service = |name: &str, svc: &str| value(&m, &format!("{name}{{service=\"{svc}\"}}"));

    for (svc, outcome, n) in [
        ("ok", "exit", 2.0),
        ("exit", "exit", 1.0),
        ("panic", "trap", 1.0),
        ("spin", "cpu_limit", 1.0),
        ("bomb", "memory_limit", 1.0),
        ("sleepy", "runtime_limit", 1.0),
        ("one", "exit", 1.0),
    ] {
        assert_eq!(finished(svc, outcome), n, "{svc} {outcome}");
        let total: f64 = [
            "exit",
            "trap",
            "cpu_limit",
            "memory_limit",
            "runtime_limit",
            "failed",
            "files_limit",
        ]
        .iter()
        .map(|o| finished(svc, o))
        .sum();
        assert_eq!(total, n, "{svc}: only {outcome}");
        let accepted = if svc == "one" { 2.0 } else { n };
        assert_eq!(
            per_service("wasinetd_connections_accepted_total", svc),
            accepted,
            "{svc}"
        );
        assert_eq!(
            per_service("wasinetd_connections_active", svc),
            0.0,
            "{svc}"
        );
        assert_eq!(
            per_service("wasinetd_connection_duration_seconds_count", svc),
            n,
            "{svc}"
        );
    }
    assert_eq!((exits("ok", "zero"), exits("ok", "nonzero")), (2.0, 0.0));
    assert_eq!(
        (exits("exit", "zero"), exits("exit", "nonzero")),
        (0.0, 1.0)
    );
    assert_eq!(exits("one", "zero"), 1.0);
    let refused = |svc: &str| {
        value(
            &m,
            &format!(
                "wasinetd_connections_refused_total{{service=\"{svc}\",reason=\"instances\"}}"
            ),
        )
    };
    assert_eq!(refused("one"), 1.0);
    assert_eq!(refused("ok"), 0.0);
    // Every guest that ran was instantiated once (the refused one never).
    assert_eq!(
        per_service("wasinetd_instantiation_seconds_count", "ok"),
        2.0
    );
    assert_eq!(
        per_service("wasinetd_instantiation_seconds_count", "one"),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "wasinetd_instantiation_seconds_bucket{service=\"ok\",le=\"+Inf\"}"
        ),
        2.0
    );
    assert!(per_service("wasinetd_guest_cpu_seconds_total", "spin") >= 0.1);
    // Bytes each way, as the clients saw them.
    assert_eq!(
        per_service("wasinetd_received_bytes_total", "ok"),
        (2 * request.len()) as f64
    );
    assert_eq!(
        per_service("wasinetd_sent_bytes_total", "ok"),
        sent_to_clients as f64
    );
    assert_eq!(per_service("wasinetd_sent_bytes_total", "one"), 9.0);
}

#[test]
fn status_is_json_with_every_service() {
    let config = service("ok", &module("hello-http"), "\trlimit_cpu = 2s")
        + &service("echo", &component("echo"), "\tinstances = 3");
    let (server, admin) = start_with_admin(&config, &["ok", "echo"], &[]);
    assert_eq!(exchange_text(server.addr("echo"), "hi\n"), "hi\n");
    scrape_after(admin, 1.0);
    let (status, body) = get(admin, "/status");
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["healthy"], true);
    let services = doc["services"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    let ok = &services[0];
    assert_eq!(ok["name"], "ok");
    assert_eq!(ok["addr"], server.addr("ok").to_string());
    assert_eq!(ok["kind"], "module");
    assert!(ok["guest"].as_str().unwrap().ends_with("hello-http.wasm"));
    assert_eq!(ok["limits"]["cpu_ms"], 2000.0);
    let echo = &services[1];
    assert_eq!(echo["kind"], "component");
    assert_eq!(echo["limits"]["instances"], 3);
    assert_eq!(echo["connections"]["accepted"], 1);
    assert_eq!(echo["connections"]["finished"]["exit"], 1);
    assert_eq!(echo["bytes"]["received"], 3);
    assert_eq!(echo["bytes"]["sent"], 3);
    assert_eq!(echo["active"], 0);
    // Anything else is a 404, and only GET and HEAD are served.
    assert_eq!(get(admin, "/nope").0, 404);
    let mut s = connect(admin);
    s.write_all(b"POST /health HTTP/1.1\r\n\r\n").unwrap();
    assert!(
        String::from_utf8(read_all(&mut s))
            .unwrap()
            .starts_with("HTTP/1.1 405 ")
    );
}

#[test]
fn health_turns_503_while_the_daemon_drains() {
    let config = service(
        "slow",
        &module("probe"),
        "\tserver_args = sleep\n\truntime_max = 60s",
    );
    let (server, admin) = start_with_admin(&config, &["slow"], &["--shutdown-grace", "30s"]);
    assert_eq!(get(admin, "/health"), (200, "ok\n".into()));
    let mut client = connect(server.addr("slow"));
    let mut buf = [0; 9];
    client.read_exact(&mut buf).unwrap();
    signal(server.child(), "TERM");
    server.log.wait_for(&["stopped accepting"]);
    let (status, body) = get(admin, "/health");
    assert_eq!((status, body.as_str()), (503, "unavailable: stopping\n"));
    let (_, doc) = get(admin, "/status");
    assert!(doc.contains("\"stopping\":true"), "{doc}");
}

#[test]
fn admin_off_the_loopback_needs_admin_any() {
    let dir = tempdir();
    let conf = dir.path().join("wasinetd.conf");
    std::fs::write(&conf, service("ok", &module("hello-http"), "")).unwrap();
    let out = wasinetd()
        .args(["--no-cache", "--admin", "0.0.0.0:0", "-f"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}

/// The orchestrators' probes: `/livez` stays 200 through a service that
/// cannot listen and through the drain (a restart would not help either);
/// `/readyz` is 503 for both, naming why, as `/health` is.
#[test]
fn livez_holds_through_a_broken_service_and_the_drain_readyz_does_not() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = service(
        "slow",
        &module("probe"),
        "\tserver_args = sleep\n\truntime_max = 60s",
    ) + &format!(
        "service blocked\n{{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tport = {port}\n\tserver = {}\n}}\n",
        module("hello-http").display()
    );
    let (server, admin) = start_with_admin(&config, &["slow"], &["--shutdown-grace", "30s"]);
    // Compiled after start-up, then found unable to bind.
    let deadline = Instant::now() + PATIENCE;
    let (status, body) = loop {
        assert_eq!(get(admin, "/livez"), (200, "alive\n".into()));
        let (status, body) = get(admin, "/readyz");
        if body.contains("not listening") || Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not listening: blocked"), "{body}");
    assert_eq!(get(admin, "/health"), (status, body));

    let mut client = connect(server.addr("slow"));
    let mut buf = [0; 9];
    client.read_exact(&mut buf).unwrap();
    signal(server.child(), "TERM");
    server.log.wait_for(&["stopped accepting"]);
    assert_eq!(get(admin, "/livez"), (200, "alive\n".into()));
    assert_eq!(
        get(admin, "/readyz"),
        (503, "unavailable: stopping\n".into())
    );
    drop(taken);
}
