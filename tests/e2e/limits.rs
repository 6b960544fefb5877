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
        let mib = allocation_failed_at(&out);
        assert!((8..16).contains(&mib), "{out}");
        server.log.wait_for(&["memory limit", "service=bomb"]);
        assert_neighbour_serves(&server);
    }
}

/// `--limit 30000` asks for 60,000 linear memories: at 4 GiB of address
/// space each they would not fit the process's 128 TiB, and the pool
/// (then, past ~30,000 live guests, every instance on demand) would fail.
/// Each memory reserves 1 GiB instead (256 MiB at 100,000), which caps a
/// guest below a larger `rlimit_as`. (30,000 rather than 100,000: the
/// pool's stacks take two memory areas each at once, and the kernel's
/// default `vm.max_map_count` holds 65,530.)
#[test]
fn a_limit_past_what_full_reservations_fit_caps_each_memory() {
    let config = with_neighbour(service(
        "bomb",
        &module("probe"),
        "\tserver_args = membomb 16\n\trlimit_as = 2G",
    ));
    let server = TestServer::start_with(&config, &["bomb", "hello"], |cmd| {
        cmd.args(["--limit", "30000"]);
    });
    server
        .log
        .wait_for(&["linear memory is capped at 1024 MiB", "--limit 30000"]);
    assert!(
        !server.log.has(&["pooling allocator unavailable"]),
        "{:#?}",
        server.log.lines()
    );
    let out = exchange_text(server.addr("bomb"), "");
    let mib = allocation_failed_at(&out);
    assert!((512..1024).contains(&mib), "{out}");
    assert_neighbour_serves(&server);
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

#[test]
fn rlimit_data_and_rlimit_rss_cap_linear_memory_as_rlimit_as_does() {
    for attr in ["rlimit_data", "rlimit_rss"] {
        // rlimit_as stays at its 128M default: the smallest cap applies.
        let config = service(
            "bomb",
            &module("probe"),
            &format!("\tserver_args = membomb\n\t{attr} = 16M"),
        );
        let server = TestServer::start(&config, &["bomb"]);
        let out = exchange_text(server.addr("bomb"), "");
        let mib = allocation_failed_at(&out);
        assert!((8..16).contains(&mib), "{attr}: {out}");
        server.log.wait_for(&["memory limit", "service=bomb"]);
    }
}

/// A preview 1 guest that opens its preopened directory (fd 3) 20 times,
/// keeping each open, then says `opened 20`; on an error it says `errno`.
/// (Rights 0: wasmtime-wasi takes what the preopen allows.)
const OPEN_MANY: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) ".")
  (data (i32.const 64) "opened 20\n")
  (data (i32.const 80) "errno\n")
  (func $say (param $at i32) (param $len i32)
    (i32.store (i32.const 16) (local.get $at))
    (i32.store (i32.const 20) (local.get $len))
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24))))
  (func (export "_start")
    (local $i i32)
    (loop $again
      (if (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1)
                      (i32.const 2) (i64.const 0) (i64.const 0) (i32.const 0)
                      (i32.const 8))
        (then (call $say (i32.const 80) (i32.const 6)) (return)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 20))))
    (call $say (i32.const 64) (i32.const 10))))
"#;

#[test]
fn rlimit_files_caps_the_handles_a_guest_holds() {
    let dir = tempdir();
    let guest = dir.path().join("open-many.wat");
    std::fs::write(&guest, OPEN_MANY).unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let data = format!("\tpreopen = {}:/data", dir.path().join("data").display());
    let config = service("roomy", &guest, &data)
        + &service("capped", &guest, &format!("{data}\n\trlimit_files = 10"));
    let server = TestServer::start(&config, &["roomy", "capped"]);
    assert_eq!(exchange_text(server.addr("roomy"), ""), "opened 20\n");
    server.log.wait_for(&["exit=0", "service=roomy"]);
    // Ten handles, stdio and the preopen included, run out before twenty.
    assert_ne!(exchange_text(server.addr("capped"), ""), "opened 20\n");
    server
        .log
        .wait_for(&["WARN", "files limit service=capped conn="]);
}

/// The MiB at which the probe's `membomb` saw an allocation fail, from its
/// output (the guest saw its limit: it was not simply killed).
fn allocation_failed_at(out: &str) -> u64 {
    let failed = out
        .lines()
        .find_map(|l| l.strip_prefix("allocation failed at "))
        .unwrap_or_else(|| panic!("the guest never saw a failed allocation: {out}"));
    failed.trim_end_matches(" MiB").parse().unwrap()
}
