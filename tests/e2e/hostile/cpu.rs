//! CPU and wall clock: a guest that loops over host calls (cheap ones,
//! refused ones, expensive ones) is charged for them and ends at its CPU
//! limit like a pure loop; a busy guest inside host calls still ends at
//! its `runtime_max`; and the daemon hears its stop signals meanwhile.

use std::io::Read;
use std::time::{Duration, Instant};

use super::*;

/// Connects to `addr`, waits for the guest's `attacking`, half-closes (so
/// that the end of the connection is not held by draining), and returns
/// how long the connection then lasted until the daemon closed it.
fn attack(addr: SocketAddr) -> Duration {
    let mut s = connect(addr);
    let started = Instant::now();
    let mut first = [0u8; 10];
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"attacking\n");
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    started.elapsed()
}

#[test]
fn host_call_loops_end_at_their_cpu_limit() {
    let modes = [
        ("clock", "clock", ""),
        ("stderr", "stderr-bytes", ""),
        ("grow", "grow", "\trlimit_as = 16M\n"),
        ("random", "random 1048576", ""),
    ];
    for guest in [module("hostile"), component("hostile")] {
        let mut config = neighbour();
        for (name, args, extra) in modes {
            config += &service(
                name,
                &guest,
                &format!(
                    "\tserver_args = {args}\n\trlimit_cpu = 500ms\n\truntime_max = 60s\n{extra}"
                ),
            );
        }
        let names: Vec<&str> = modes.iter().map(|m| m.0).collect();
        let server = TestServer::start(&config, &[&["hello"], &names[..]].concat());
        assert_neighbour_answers(&server);
        let before = footprint(&server);
        let cpu_before = cpu_time(&server);
        let attackers: Vec<_> = names
            .iter()
            .map(|name| {
                let addr = server.addr(name);
                std::thread::spawn(move || attack(addr))
            })
            .collect();
        assert_neighbour_answers(&server);
        for (name, attacker) in names.iter().zip(attackers) {
            let lasted = attacker.join().unwrap();
            // Ended by its CPU budget, long before its wall-clock limit:
            // before host calls were charged, each ran to `runtime_max`.
            server
                .log
                .wait_for(&["cpu limit", &format!("service={name} ")]);
            assert!(lasted < Duration::from_secs(30), "{name}: {lasted:?}");
        }
        // What the daemon spent is what was charged (4 x 500 ms), give or
        // take its own work; uncharged host calls cost it seconds each.
        let spent = cpu_time(&server).saturating_sub(cpu_before);
        assert!(spent < Duration::from_secs(4), "the daemon spent {spent:?}");
        assert_back_to(&server, before, 32 << 10);
    }
}

#[test]
fn a_busy_guest_inside_host_calls_ends_at_runtime_max() {
    // 50 ms of computing makes it a busy guest (it waits for turns on the
    // busy lane); then it asks for random bytes forever. No CPU limit: only
    // the wall clock can end it.
    for guest in [module("hostile"), component("hostile")] {
        let config = neighbour()
            + &service(
                "busy",
                &guest,
                "\tserver_args = compute-then-random 50 1048576\n\trlimit_cpu = UNLIMITED\n\truntime_max = 2s",
            );
        let server = TestServer::start(&config, &["hello", "busy"]);
        let addr = server.addr("busy");
        let attacker = std::thread::spawn(move || attack(addr));
        assert_neighbour_answers(&server);
        let lasted = attacker.join().unwrap();
        server.log.wait_for(&["runtime limit", "service=busy "]);
        // The bound is 100 ms past the deadline plus one host call; the
        // slack is for a loaded machine, not for the daemon.
        assert!(lasted < Duration::from_secs(3), "{lasted:?}");
    }
}

#[test]
fn a_second_stop_signal_ends_guests_looping_on_host_calls() {
    let mut config = neighbour();
    for name in ["a", "b", "c"] {
        config += &service(
            name,
            &module("hostile"),
            "\tserver_args = compute-then-random 50 1048576\n\trlimit_cpu = UNLIMITED\n\truntime_max = UNLIMITED",
        );
    }
    let mut server = TestServer::start_with(&config, &["hello", "a", "b", "c"], |cmd| {
        cmd.args(["--shutdown-grace", "60s"]);
    });
    let clients: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let mut s = connect(server.addr(name));
            let mut first = [0u8; 10];
            s.read_exact(&mut first).unwrap();
            s
        })
        .collect();
    assert_neighbour_answers(&server);
    signal(server.child(), "TERM");
    server.log.wait_for(&["stopped accepting"]);
    let second = Instant::now();
    signal(server.child(), "TERM");
    let status = server
        .wait(PATIENCE)
        .expect("the daemon did not exit after a second SIGTERM");
    assert!(status.success(), "{status:?}");
    let took = second.elapsed();
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    drop(clients);
}

#[test]
fn a_guest_reading_a_byte_at_a_time_pays_for_each_read() {
    // A byte per call makes the daemon work for every byte the client
    // sends; that work is the guest's CPU, and it ends at its limit.
    for guest in [module("hostile"), component("hostile")] {
        let config = neighbour()
            + &service(
                "bytes",
                &guest,
                "\tserver_args = read-bytes\n\trlimit_cpu = 300ms\n\truntime_max = 60s",
            );
        let server = TestServer::start(&config, &["hello", "bytes"]);
        let before = footprint(&server);
        let addr = server.addr("bytes");
        let client = std::thread::spawn(move || {
            let mut s = connect(addr);
            // 16 MiB, far more than 300 ms of one-byte reads; the write
            // fails once the daemon closes the connection.
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..16 {
                if std::io::Write::write_all(&mut s, &chunk).is_err() {
                    break;
                }
            }
        });
        server.log.wait_for(&["cpu limit", "service=bytes "]);
        assert_neighbour_answers(&server);
        client.join().unwrap();
        assert_back_to(&server, before, 32 << 10);
    }
}

#[test]
fn a_guest_looping_on_file_work_ends_at_its_cpu_limit() {
    // File operations run on the runtime's blocking threads, not the
    // guest's: they are charged to it by their time.
    let data = tempdir();
    std::fs::write(data.path().join("big"), vec![b'x'; 4 << 20]).unwrap();
    for i in 0..2000 {
        std::fs::write(data.path().join(format!("f{i}")), "").unwrap();
    }
    for (guest, mode) in [
        (module("hostile"), "open-close /data/f1"),
        (component("hostile"), "open-close /data/f1"),
        (module("hostile"), "read-file /data/big"),
    ] {
        let config = neighbour()
            + &service(
                "reader",
                &guest,
                &format!(
                    "\tserver_args = {mode}\n\tpreopen = {}:/data\n\trlimit_cpu = 500ms\n\truntime_max = 60s",
                    data.path().display()
                ),
            );
        let server = TestServer::start(&config, &["hello", "reader"]);
        let cpu_before = cpu_time(&server);
        let addr = server.addr("reader");
        let attacker = std::thread::spawn(move || attack(addr));
        assert_neighbour_answers(&server);
        let lasted = attacker.join().unwrap();
        server.log.wait_for(&["cpu limit", "service=reader "]);
        assert!(lasted < Duration::from_secs(30), "{lasted:?}");
        let spent = cpu_time(&server).saturating_sub(cpu_before);
        // What the daemon spent stays near what was charged (500 ms), its
        // blocking threads' work included: uncharged, it spent 1-2 s.
        assert!(
            spent < Duration::from_millis(900),
            "the daemon spent {spent:?}"
        );
    }
}

#[test]
fn a_busy_guest_waiting_on_its_client_holds_no_lane() {
    // Busy guests (past 10 ms of CPU) take turns on one lane fewer than
    // the workers. Campers compute past that, then wait on their clients
    // for good: as many as there are cores, enough to hold every lane if
    // waiting kept it. A busy guest after them must still run to its end.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for guest in [module("hostile"), component("hostile")] {
        let config = service(
            "camper",
            &guest,
            "\tserver_args = compute-then-wait 50\n\trlimit_cpu = UNLIMITED\n\
             \truntime_max = 60s\n\tidle_timeout = 60s",
        ) + &service(
            "worker",
            &guest,
            "\tserver_args = compute 200\n\trlimit_cpu = UNLIMITED",
        );
        let server = TestServer::start(&config, &["camper", "worker"]);
        let campers: Vec<_> = (0..cores.max(2))
            .map(|_| {
                let mut s = connect(server.addr("camper"));
                let mut line = [0u8; 8];
                s.read_exact(&mut line).unwrap();
                assert_eq!(&line, b"waiting\n");
                s
            })
            .collect();
        let started = Instant::now();
        let answer = exchange_text(server.addr("worker"), "");
        let took = started.elapsed();
        assert_eq!(answer, "done\n");
        // 200 ms of work; before, it waited for a camper to end (60 s).
        assert!(took < Duration::from_secs(10), "the worker took {took:?}");
        drop(campers);
    }
}
