//! Every limit, hit: CPU, memory, wall-clock, instances. Each ends only the
//! offending connection, is logged in words, and leaves the daemon and its
//! other services serving.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::support::*;

/// A config with the limited service and a healthy neighbour.
fn with_neighbour(limited: String) -> String {
    limited + &service("hello", &module("hello-http"), "")
}

fn assert_neighbour_serves(server: &TestServer) {
    let out = exchange_text(server.addr("hello"), "GET / HTTP/1.0\r\n\r\n");
    assert!(out.ends_with("Hello, World!"), "{out}");
}

#[test]
fn cpu_loop_is_stopped_at_rlimit_cpu() {
    for guest in [module("probe"), component("probe")] {
        let config = with_neighbour(service(
            "spin",
            &guest,
            "\tserver_args = spin\n\trlimit_cpu = 300ms\n\truntime_max = 60s",
        ));
        let server = TestServer::start(&config, &["spin", "hello"]);
        let started = Instant::now();
        let out = exchange_text(server.addr("spin"), "");
        assert_eq!(out, "spinning\n");
        // Stopped by the CPU budget, long before the wall-clock limit.
        assert!(started.elapsed() < Duration::from_secs(30));
        server
            .log
            .wait_for(&["cpu limit", "service=spin", "conn=", "duration="]);
        assert_neighbour_serves(&server);
    }
}

#[test]
fn time_blocked_on_the_client_is_not_cpu_time() {
    // 1.5 s waiting for input, with a CPU budget of 200 ms.
    let config = service("echo", &module("echo"), "\trlimit_cpu = 200ms");
    let server = TestServer::start(&config, &["echo"]);
    let mut s = connect(server.addr("echo"));
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        s.write_all(b"ping\n").unwrap();
        let mut buf = [0; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping\n");
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    read_all(&mut s);
    server.log.wait_for(&["exit=0", "service=echo"]);
}

#[test]
fn memory_bomb_is_stopped_at_rlimit_as() {
    for guest in [module("probe"), component("probe")] {
        let config = with_neighbour(service(
            "bomb",
            &guest,
            "\tserver_args = membomb\n\trlimit_as = 16M",
        ));
        let server = TestServer::start(&config, &["bomb", "hello"]);
        let out = exchange_text(server.addr("bomb"), "");
        assert!(out.starts_with("allocating\n"), "{out}");
        // The guest saw its allocation fail below the cap, never above it.
        let failed = out
            .lines()
            .find_map(|l| l.strip_prefix("allocation failed at "))
            .unwrap_or_else(|| panic!("the guest never saw a failed allocation: {out}"));
        let mib: u64 = failed.trim_end_matches(" MiB").parse().unwrap();
        assert!((8..16).contains(&mib), "{out}");
        server.log.wait_for(&["memory limit", "service=bomb"]);
        assert_neighbour_serves(&server);
    }
}

#[test]
fn guest_that_neither_reads_nor_ends_is_stopped_at_runtime_max() {
    let config = with_neighbour(service(
        "sleepy",
        &module("probe"),
        "\tserver_args = sleep\n\truntime_max = 300ms",
    ));
    let server = TestServer::start(&config, &["sleepy", "hello"]);
    let started = Instant::now();
    let mut s = connect(server.addr("sleepy"));
    let out = read_all(&mut s);
    assert_eq!(out, b"sleeping\n");
    assert!(started.elapsed() >= Duration::from_millis(300));
    server.log.wait_for(&["runtime limit", "service=sleepy"]);
    assert_neighbour_serves(&server);
}

#[test]
fn connections_over_instances_are_refused_at_once_and_logged() {
    let config = service(
        "one",
        &module("probe"),
        "\tserver_args = sleep\n\tinstances = 1\n\truntime_max = 60s",
    );
    let server = TestServer::start(&config, &["one"]);
    let mut first = connect(server.addr("one"));
    let mut buf = [0; 9];
    first.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"sleeping\n");
    // The second is closed without a guest: EOF (or a reset), no output.
    let mut second = connect(server.addr("one"));
    let mut out = Vec::new();
    let _ = second.read_to_end(&mut out);
    assert!(out.is_empty());
    server
        .log
        .wait_for(&["refused: instances", "service=one", "peer=127.0.0.1:"]);
    drop(first);
}

#[test]
fn traps_and_exit_statuses_are_logged_in_words() {
    let config = service("panic", &module("probe"), "\tserver_args = panic")
        + &service("exit", &module("probe"), "\tserver_args = exit 3");
    let server = TestServer::start(&config, &["panic", "exit"]);
    assert_eq!(exchange_text(server.addr("panic"), ""), "about to panic\n");
    server
        .log
        .wait_for(&["trap: ", "unreachable", "service=panic"]);
    assert_eq!(exchange_text(server.addr("exit"), ""), "exiting 3\n");
    server.log.wait_for(&["exit=3", "service=exit"]);
}
