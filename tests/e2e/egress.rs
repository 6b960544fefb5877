//! Scoped network egress (`allow_connect`) and the `health-check` guest:
//! a component reaches exactly the listed addresses; anything else is
//! refused to it (and it says so), and the load-balancer scenario works
//! end to end: backends up, 200; one stopped, 503 naming it.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use crate::support::*;

const REQUEST: &str = "GET /health HTTP/1.0\r\n\r\n";

/// A `health-check` service probing `backends`, allowed to reach `allowed`.
fn health(backends: &[SocketAddr], allowed: &str) -> String {
    let args: Vec<String> = backends.iter().map(ToString::to_string).collect();
    service(
        "health",
        &component("health-check"),
        &format!(
            "\tserver_args = --timeout-ms 2000 {}\n{allowed}",
            args.join(" ")
        ),
    )
}

/// A loopback listener the test owns, as a backend.
fn backend() -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

/// How many connections `l` has accepted since the last call.
fn accepted(l: &TcpListener) -> usize {
    std::iter::from_fn(|| l.accept().ok()).count()
}

/// The status line and the body of an HTTP answer.
fn status_and_body(answer: &str) -> (&str, &str) {
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.lines().next().unwrap(), body)
}

#[test]
fn a_listed_address_is_reachable_and_any_other_is_refused_to_the_guest() {
    let (listed, unlisted) = (backend(), backend());
    let listed_addr = listed.local_addr().unwrap();
    let unlisted_addr = unlisted.local_addr().unwrap();
    let config = health(
        &[listed_addr, unlisted_addr],
        &format!("\tallow_connect = {listed_addr}"),
    );
    let server = TestServer::start(&config, &["health"]);
    let answer = exchange_text(server.addr("health"), REQUEST);
    let (status, body) = status_and_body(&answer);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{answer}");
    assert_eq!(
        body,
        format!("ok {listed_addr}\nfailed {unlisted_addr}: permission denied\n")
    );
    // The listed backend saw the probe; the other, though listening, never
    // saw a connection attempt.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(accepted(&listed), 1);
    assert_eq!(accepted(&unlisted), 0);
    server.log.wait_for(&[
        &format!("denied: a TCP connect to {unlisted_addr} (not in allow_connect"),
        "service=health conn=1",
    ]);
}

#[test]
fn without_allow_connect_a_component_has_no_network() {
    let up = backend();
    let addr = up.local_addr().unwrap();
    let server = TestServer::start(&health(&[addr], ""), &["health"]);
    let answer = exchange_text(server.addr("health"), REQUEST);
    let (status, body) = status_and_body(&answer);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{answer}");
    assert_eq!(body, format!("failed {addr}: permission denied\n"));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(accepted(&up), 0);
}

#[test]
fn the_health_check_turns_503_naming_the_backend_that_stopped() {
    let (db, cache) = (backend(), backend());
    let (db_addr, cache_addr) = (db.local_addr().unwrap(), cache.local_addr().unwrap());
    let config = health(
        &[db_addr, cache_addr],
        &format!("\tallow_connect = {db_addr}\n\tallow_connect += {cache_addr}"),
    );
    let server = TestServer::start(&config, &["health"]);
    let addr = server.addr("health");

    let answer = exchange_text(addr, REQUEST);
    let (status, body) = status_and_body(&answer);
    assert_eq!(status, "HTTP/1.1 200 OK", "{answer}");
    assert_eq!(body, format!("ok {db_addr}\nok {cache_addr}\n"));
    assert!(answer.contains(&format!("Content-Length: {}\r\n", body.len())));

    // The cache backend goes away: its port now refuses connections.
    drop(cache);
    let answer = exchange_text(addr, REQUEST);
    let (status, body) = status_and_body(&answer);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{answer}");
    assert_eq!(
        body,
        format!("ok {db_addr}\nfailed {cache_addr}: connection refused\n")
    );

    // And back.
    let again = TcpListener::bind(cache_addr).unwrap();
    let answer = exchange_text(addr, REQUEST);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    drop(again);
    assert!(accepted(&db) >= 3);
}

#[test]
fn allow_connect_on_a_preview_1_module_stops_the_service_and_says_why() {
    let config = service("p1", &module("probe"), "\tallow_connect = 127.0.0.1:5432")
        + &service("other", &module("echo"), "");
    let server = TestServer::start(&config, &["other"]);
    server.log.wait_for(&[
        "service `p1`: `allow_connect` needs a component (wasm32-wasip2) guest",
        "is a preview 1 module, which has no sockets",
    ]);
    assert_eq!(
        exchange_text(server.addr("other"), "still here"),
        "still here"
    );
}

#[test]
fn the_health_check_example_works_as_shipped_with_its_backends_moved() {
    let (db, cache) = (backend(), backend());
    let (db_addr, cache_addr) = (db.local_addr().unwrap(), cache.local_addr().unwrap());
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/health-check.conf");
    let shipped = std::fs::read_to_string(path).unwrap();
    let mut config = String::new();
    for line in shipped.lines() {
        let line = match line.split('=').next().unwrap_or("").trim() {
            "server" => format!("\tserver = {}", component("health-check").display()),
            "port" => "\tport = 0".to_owned(),
            // The backends are the test's; the timeout is generous on a
            // shared, loaded test machine.
            _ => line
                .replace("127.0.0.1:5432", &db_addr.to_string())
                .replace("127.0.0.1:6379", &cache_addr.to_string())
                .replace("--timeout-ms 500 ", "--timeout-ms 2000 "),
        };
        config.push_str(&line);
        config.push('\n');
    }
    let server = TestServer::start(&config, &["health-check"]);
    let answer = exchange_text(server.addr("health-check"), REQUEST);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    drop(db);
    let answer = exchange_text(server.addr("health-check"), REQUEST);
    let (status, body) = status_and_body(&answer);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{answer}");
    assert_eq!(
        body,
        format!("failed {db_addr}: connection refused\nok {cache_addr}\n")
    );
}

#[test]
fn a_backend_that_never_answers_fails_at_the_timeout() {
    use socket2::{Domain, Socket, Type};
    // A listener whose accept queue is full: the kernel drops new SYNs,
    // so a connect neither succeeds nor is refused.
    let full = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    full.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    full.listen(0).unwrap();
    let addr = full.local_addr().unwrap().as_socket().unwrap();
    let _queued: Vec<Socket> = (0..3)
        .map(|_| {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&addr.into());
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let config = service(
        "health",
        &component("health-check"),
        &format!("\tserver_args = --timeout-ms 200 {addr}\n\tallow_connect = {addr}"),
    );
    let server = TestServer::start(&config, &["health"]);
    let answer = exchange_text(server.addr("health"), REQUEST);
    let (status, body) = status_and_body(&answer);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{answer}");
    assert_eq!(body, format!("failed {addr}: timed out\n"));
}

#[test]
fn wasinetd_run_takes_allow_connect_too() {
    use std::io::Write as _;
    use std::process::Stdio;
    let (allowed, other) = (backend(), backend());
    let (allowed_addr, other_addr) = (allowed.local_addr().unwrap(), other.local_addr().unwrap());
    let run = |flag: &str, guest: &std::path::Path, args: &[String]| {
        let mut child = wasinetd()
            .args(["run", "--allow-connect", flag])
            .arg(guest)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(REQUEST.as_bytes()).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    let out = run(
        &allowed_addr.to_string(),
        &component("health-check"),
        &[allowed_addr.to_string(), other_addr.to_string()],
    );
    assert!(out.status.success());
    let answer = String::from_utf8(out.stdout).unwrap();
    let (status, body) = status_and_body(&answer);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{answer}");
    assert_eq!(
        body,
        format!("ok {allowed_addr}\nfailed {other_addr}: permission denied\n")
    );

    // A preview 1 module has no sockets: a clear error, not a silent no.
    let out = run("127.0.0.1:5432", &module("echo"), &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--allow-connect needs a component (wasm32-wasip2) guest"),
        "{stderr}"
    );
    let out = run("127.0.0.1", &component("health-check"), &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "invalid value '127.0.0.1' for '--allow-connect <IP:PORT>': `--allow-connect`: \
             `127.0.0.1` has no port"
        ),
        "{stderr}"
    );
}

#[test]
fn check_shows_the_addresses_a_guest_may_reach() {
    let dir = tempdir();
    let conf = dir.path().join("health.conf");
    let config = service(
        "health",
        &component("health-check"),
        "\tallow_connect = 127.0.0.1:5432 [::1]:6379\n\tallow_connect += localhost:7000",
    );
    std::fs::write(&conf, config).unwrap();
    let out = wasinetd()
        .arg("check")
        .arg("-f")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout.lines().next().unwrap();
    assert!(line.starts_with("health 127.0.0.1:0 component "), "{line}");
    let shown = line.split(" allow_connect=").nth(1).unwrap();
    assert!(
        shown.starts_with("127.0.0.1:5432,[::1]:6379,"),
        "the words in order, then what localhost resolved to: {shown}"
    );
    assert!(shown.contains(":7000"), "{shown}");
}

#[test]
fn an_ipv6_backend_is_written_in_brackets_and_reached() {
    let v6 = TcpListener::bind("[::1]:0").unwrap();
    let addr = v6.local_addr().unwrap();
    let v4 = backend();
    let v4_addr = v4.local_addr().unwrap();
    // The same port on IPv4 is another address: not allowed by the IPv6 one.
    let same_port_v4 = SocketAddr::from(([127, 0, 0, 1], addr.port()));
    let config = health(
        &[addr, v4_addr, same_port_v4],
        &format!("\tallow_connect = {addr} {v4_addr}"),
    );
    let server = TestServer::start(&config, &["health"]);
    let answer = exchange_text(server.addr("health"), REQUEST);
    let (_, body) = status_and_body(&answer);
    assert_eq!(
        body,
        format!("ok {addr}\nok {v4_addr}\nfailed {same_port_v4}: permission denied\n")
    );
}
