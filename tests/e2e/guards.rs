//! Refusals that look beyond one service: `max_load` (the host's load
//! average) and `flags = SENSOR` (a tripwire whose touch denies the peer's
//! address on every service, for `deny_time`).

use std::time::{Duration, Instant};

use crate::support::*;

/// A probe service answering `greet` (`hello`) without reading.
fn greeter(name: &str, extra: &str) -> String {
    service(
        name,
        &module("probe"),
        &format!("\tserver_args = greet\n{extra}"),
    )
}

#[test]
fn max_load_refuses_while_the_load_average_is_at_or_above_it() {
    let dir = tempdir();
    let loadavg = dir.path().join("loadavg");
    std::fs::write(&loadavg, "4.00 1.00 0.50 2/300 4242\n").unwrap();
    let config = greeter("busy", "\tmax_load = 4") + &greeter("calm", "");
    let server = TestServer::start_with(&config, &["busy", "calm"], |cmd| {
        cmd.env("WASINETD_LOADAVG", &loadavg);
    });
    let (busy, calm) = (server.addr("busy"), server.addr("calm"));
    // At the limit: refused before any guest, with its own reason.
    assert_eq!(answer_from("127.0.0.1", busy), "");
    server
        .log
        .wait_for(&["refused: load", "service=busy", "peer=127.0.0.1:"]);
    // A service without max_load is served all the same.
    assert_eq!(answer_from("127.0.0.1", calm), "hello\n");
    // The load falls: served again once the reading is refreshed (at most
    // a second old), without a restart.
    std::fs::write(&loadavg, "3.99 1.00 0.50 2/300 4242\n").unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        if answer_from("127.0.0.1", busy) == "hello\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never served after the load fell"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server.log.wait_for(&["exit=0", "service=busy"]);
}

#[test]
fn a_sensor_touch_denies_that_address_on_every_service_for_deny_time() {
    let config = greeter("hello", "")
        + "service trap\n{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tport = 0\n\tflags = SENSOR\n\tdeny_time = 10s\n}\n";
    let server = TestServer::start(&config, &["hello", "trap"]);
    let (hello, trap) = (server.addr("hello"), server.addr("trap"));
    assert_eq!(answer_from("127.0.0.1", hello), "hello\n");
    // The touch: no guest, a clean close, one line naming the address.
    let touched = Instant::now();
    assert_eq!(answer_from("127.0.0.1", trap), "");
    server.log.wait_for(&[
        "sensor: 127.0.0.1 denied on every service for 10s",
        "service=trap",
        "peer=127.0.0.1:",
    ]);
    // That address is refused by another service; another address is not.
    assert_eq!(answer_from("127.0.0.1", hello), "");
    server
        .log
        .wait_for(&["refused: sensor", "service=hello", "peer=127.0.0.1:"]);
    assert_eq!(answer_from("127.0.0.2", hello), "hello\n");
    assert!(
        touched.elapsed() < Duration::from_secs(10),
        "too slow to see the deny list at work"
    );
    // After deny_time the address is let in again.
    let deadline = Instant::now() + PATIENCE;
    loop {
        if answer_from("127.0.0.1", hello) == "hello\n" {
            break;
        }
        assert!(Instant::now() < deadline, "still denied after deny_time");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(touched.elapsed() >= Duration::from_secs(10));
    // A guest never ran for the refused connections: the only exit lines
    // are the three served ones' (the last may still be on its way).
    let served = || {
        let lines = server.log.lines();
        let n = lines
            .iter()
            .filter(|l| l.contains("exit=0") && l.contains("service=hello"))
            .count();
        (n, lines)
    };
    let deadline = Instant::now() + PATIENCE;
    while served().0 < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (n, lines) = served();
    assert_eq!(n, 3, "{lines:#?}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("service=trap") && l.contains("exit="))
    );
}

#[test]
fn deny_time_never_only_logs() {
    let config = greeter("hello", "")
        + "service trap\n{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tport = 0\n\tflags = SENSOR\n\tdeny_time = NEVER\n}\n";
    let server = TestServer::start(&config, &["hello", "trap"]);
    assert_eq!(answer_from("127.0.0.3", server.addr("trap")), "");
    server.log.wait_for(&[
        "sensor: 127.0.0.3 logged only (deny_time = NEVER)",
        "service=trap",
    ]);
    assert_eq!(answer_from("127.0.0.3", server.addr("hello")), "hello\n");
}
