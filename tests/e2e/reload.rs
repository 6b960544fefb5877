//! Reloading the config (SIGHUP) while serving: under load, with bad
//! configs, with connections running, with systemd's sockets and
//! notifications, and with a service broken since start-up.

use std::io::{ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::operations::sleeping_client;
use crate::support::*;

/// `probe greet WORD`: answers WORD without reading.
pub fn greeter(name: &str, word: &str) -> String {
    service(
        name,
        &module("probe"),
        &format!("\tserver_args = greet {word}"),
    )
}

pub fn config_path(server: &TestServer) -> PathBuf {
    server.dir.path().join("wasinetd.conf")
}

/// Sends SIGHUP and returns the reload's outcome line: `reloaded in ...` or
/// `reload failed: ...`.
pub fn reload(server: &TestServer) -> String {
    let mark = server.log.len();
    signal(server.child(), "HUP");
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let lines = server.log.lines();
        let outcome = lines.iter().skip(mark).find(|l| {
            l.contains("wasinetd::server::reload")
                && (l.contains("reloaded in") || l.contains("reload failed"))
        });
        if let Some(line) = outcome {
            return line.clone();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no reload outcome; log:\n{}", server.log.lines().join("\n"));
}

/// One connection's answer, or why there was none.
pub fn ask(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = s.shutdown(Shutdown::Write);
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read: {e}"))?;
    Ok(out.trim().to_owned())
}

/// The address in a readiness line.
pub fn addr_in(line: &str) -> SocketAddr {
    line.rsplit("addr=").next().unwrap().trim().parse().unwrap()
}

#[test]
fn a_reload_under_load_fails_no_connection_and_switches_what_changed() {
    let files = tempdir();
    let swapped = files.path().join("swapped.wasm");
    std::fs::copy(module("probe"), &swapped).unwrap();
    let v1 = [
        greeter("greet", "one"),
        service("swap", &swapped, "\tserver_args = greet before"),
        greeter("stays", "same"),
        greeter("old", "old"),
    ]
    .concat();
    let server = TestServer::start(&v1, &["greet", "swap", "stays", "old"]);
    let greet = server.addr("greet");
    assert_eq!(ask(greet).unwrap(), "one");

    // Two clients, one connection after another, across the reload.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    answers.push(ask(greet));
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    // `greet` changes its arguments, `swap` its guest file's content (same
    // path, same attributes), `stays` only moves in the file, `old` goes
    // and `new` comes.
    std::fs::copy(module("hello-http"), &swapped).unwrap();
    let v2 = [
        greeter("new", "new"),
        greeter("stays", "same"),
        service("swap", &swapped, "\tserver_args = greet before"),
        greeter("greet", "two"),
    ]
    .concat();
    std::fs::write(config_path(&server), v2).unwrap();
    let outcome = reload(&server);
    assert!(
        outcome.contains("4 services (1 added, 2 changed, 1 removed, 1 unchanged)"),
        "{outcome}"
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for client in clients {
        let answers = client.join().unwrap();
        let failed: Vec<_> = answers.iter().filter(|a| a.is_err()).collect();
        assert!(failed.is_empty(), "failed connections: {failed:?}");
        let answers: Vec<&str> = answers.iter().map(|a| a.as_deref().unwrap()).collect();
        // In order: the old version's answers, then only the new one's.
        let switch = answers.iter().position(|a| *a == "two").expect("a `two`");
        assert!(switch > 0, "no `one` before the reload: {answers:?}");
        assert!(answers[..switch].iter().all(|a| *a == "one"), "{answers:?}");
        assert!(answers[switch..].iter().all(|a| *a == "two"), "{answers:?}");
        total += answers.len();
    }

    let http = ask(server.addr("swap")).unwrap();
    assert!(http.ends_with("Hello, World!"), "{http}");
    // Unchanged: same socket, no new readiness line.
    assert_eq!(ask(server.addr("stays")).unwrap(), "same");
    let ready_stays = server.log.lines();
    let ready_stays = ready_stays
        .iter()
        .filter(|l| l.starts_with("listening service=stays "));
    assert_eq!(ready_stays.count(), 1);
    // Removed: nothing listens there any more.
    let refused = TcpStream::connect(server.addr("old")).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    server.log.wait_for(&["service `old` stopped listening on"]);
    // Added: its readiness line, then served.
    let new = addr_in(&server.log.wait_for(&["listening service=new "]));
    assert_eq!(ask(new).unwrap(), "new");

    // The counters of a changed service run on across its versions: every
    // connection made to `greet` is counted once.
    let mark = server.log.len();
    signal(server.child(), "USR1");
    let line = server.log.wait_for_after(mark, &["dump: service=greet "]);
    let expected = format!("accepted={} ", total + 1);
    assert!(line.contains(&expected), "{expected} in {line}");
    assert!(server.stop().success());
}

#[test]
fn a_bad_reload_keeps_the_old_config_serving() {
    let files = tempdir();
    let bad = files.path().join("bad.wasm");
    std::fs::write(&bad, b"this is not WebAssembly").unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let server = TestServer::start(&greeter("greet", "one"), &["greet"]);
    let addr = server.addr("greet");
    let config = config_path(&server);

    // Each new config changes `greet` too: a failed reload applies none of
    // it.
    let cases = [
        (
            format!(
                "{}service broken\n{{\n\tport = 0\n",
                greeter("greet", "two")
            ),
            "wasinetd.conf:",
        ),
        (
            [greeter("greet", "two"), service("junk", &bad, "")].concat(),
            "bad.wasm",
        ),
        (
            [
                greeter("greet", "two"),
                greeter("clash", "x").replace("port = 0", &format!("port = {taken_port}")),
            ]
            .concat(),
            "cannot bind",
        ),
    ];
    for (text, why) in cases {
        std::fs::write(&config, text).unwrap();
        let mark = server.log.len();
        let outcome = reload(&server);
        assert!(
            outcome.contains("reload failed") && outcome.contains("still serving the previous"),
            "{outcome}"
        );
        let said = server.log.lines()[mark..].join("\n");
        assert!(said.contains(why), "{why} not in:\n{said}");
        assert_eq!(ask(addr).unwrap(), "one");
    }
    std::fs::write(&config, greeter("greet", "two")).unwrap();
    assert!(reload(&server).contains("reloaded in"));
    assert_eq!(ask(addr).unwrap(), "two");
    drop(taken);
}

#[test]
fn reload_speaks_reloading_then_ready_to_systemd() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempdir();
    let notify = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let next = || {
        let mut buf = [0; 4096];
        loop {
            let n = socket.recv(&mut buf).expect("a notification");
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !m.starts_with("STATUS=") {
                return m;
            }
        }
    };
    let server = TestServer::start_with(&greeter("greet", "one"), &["greet"], |cmd| {
        cmd.env("NOTIFY_SOCKET", &notify);
    });
    assert!(next().starts_with("READY=1\n"));
    std::fs::write(
        config_path(&server),
        [greeter("greet", "one"), greeter("more", "x")].concat(),
    )
    .unwrap();
    assert!(reload(&server).contains("reloaded in"));
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    let usec: u64 = reloading.lines().nth(1).unwrap()["MONOTONIC_USEC=".len()..]
        .parse()
        .unwrap();
    assert!(usec > 0);
    let ready = next();
    assert!(
        ready.starts_with("READY=1\nSTATUS=2 services on 2 listeners"),
        "{ready}"
    );
    let _ = Path::new("");
}

#[test]
fn connections_running_at_a_reload_finish_on_their_version() {
    let config = |slow_args: &str, with_gone: bool| {
        let mut text = service(
            "slow",
            &module("probe"),
            &format!("\tserver_args = {slow_args}\n\truntime_max = 60s"),
        );
        if with_gone {
            text += &service(
                "gone",
                &module("probe"),
                "\tserver_args = sleep 6\n\truntime_max = 60s",
            );
        }
        text
    };
    // Long enough for the reload to land while both still run, even on a
    // loaded machine; the test waits for them to end normally.
    let server = TestServer::start(&config("sleep 6", true), &["slow", "gone"]);
    let mut on_changed = sleeping_client(server.addr("slow"));
    let mut on_removed = sleeping_client(server.addr("gone"));
    std::fs::write(config_path(&server), config("greet changed", false)).unwrap();
    let outcome = reload(&server);
    assert!(
        outcome.contains("(0 added, 1 changed, 1 removed, 0 unchanged)"),
        "{outcome}"
    );
    server
        .log
        .wait_for(&["service `slow` changed", "1 running finish on the old"]);
    server
        .log
        .wait_for(&["service `gone` removed; 1 running connections finish"]);
    // A new client gets the new version while the old guests still run...
    assert_eq!(ask(server.addr("slow")).unwrap(), "changed");
    // ...and each old one ends as its guest does: normally, after its sleep.
    assert!(read_all(&mut on_changed).is_empty());
    assert!(read_all(&mut on_removed).is_empty());
    server.log.wait_for(&["service=gone", "exit=0"]);
    // The line is written after the drain, which may end after the client
    // saw the end of stream: wait for both of `slow`'s.
    let deadline = Instant::now() + PATIENCE;
    let slow_exits = || {
        let lines = server.log.lines();
        let exits = lines
            .iter()
            .filter(|l| l.contains("service=slow") && l.contains("exit=0"));
        exits.count()
    };
    while slow_exits() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(slow_exits(), 2, "{:#?}", server.log.lines());
}

#[test]
fn a_socket_passed_by_systemd_stays_with_its_service_across_a_reload() {
    if activate_missing() {
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let dir = tempdir();
    let conf = dir.path().join("wasinetd.conf");
    // The config's own address (port 0) is not where systemd listens.
    std::fs::write(&conf, greeter("greet", "one")).unwrap();
    let listen = addr.to_string();
    let (mut child, log) = socket_activated(&["-l", &listen, "--fdname=greet"], &conf, dir.path());
    log.wait_for(&["Listening on", &addr.to_string()]);
    assert_eq!(ask(addr).unwrap(), "one");
    log.wait_for(&["listening service=greet addr=", &addr.to_string()]);
    std::fs::write(&conf, greeter("greet", "two")).unwrap();
    let mark = log.len();
    signal(&child, "HUP");
    let outcome = log.wait_for_after(mark, &["reloaded in", "1 changed"]);
    assert!(outcome.contains("0 added"), "{outcome}");
    assert_eq!(ask(addr).unwrap(), "two");
    assert!(
        !log.lines()[mark..]
            .iter()
            .any(|l| l.starts_with("listening "))
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn guests_running_on_the_old_version_count_against_the_new_limits() {
    let config = |args: &str| {
        service(
            "held",
            &module("probe"),
            &format!("\tserver_args = {args}\n\tper_source = 1\n\truntime_max = 60s"),
        )
    };
    let server = TestServer::start(&config("sleep"), &["held"]);
    let addr = server.addr("held");
    let _first = sleeping_client(addr);
    std::fs::write(config_path(&server), config("greet new")).unwrap();
    assert!(reload(&server).contains("1 changed"));
    // The old version's guest still runs for this address: at
    // `per_source = 1`, the new version turns a second one away.
    let mut second = connect(addr);
    assert!(read_all(&mut second).is_empty());
    server
        .log
        .wait_for(&["refused: per_source", "service=held", "peer=127.0.0.1:"]);
}

#[test]
fn a_service_broken_since_start_up_does_not_block_a_reload() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let blocked =
        |word: &str| greeter("blocked", word).replace("port = 0", &format!("port = {port}"));
    let server = TestServer::start(
        &[greeter("greet", "one"), blocked("x")].concat(),
        &["greet"],
    );
    server
        .log
        .wait_for(&["service `blocked` cannot start", "cannot bind"]);
    // Still blocked: left out again, and the change to `greet` applies.
    std::fs::write(
        config_path(&server),
        [greeter("greet", "two"), blocked("x")].concat(),
    )
    .unwrap();
    let outcome = reload(&server);
    assert!(
        outcome.contains("1 services (0 added, 1 changed"),
        "{outcome}"
    );
    server
        .log
        .wait_for(&["service `blocked` still cannot start; left out, as before"]);
    assert_eq!(ask(server.addr("greet")).unwrap(), "two");
    // Its port freed, the next reload starts it.
    drop(taken);
    let outcome = reload(&server);
    assert!(outcome.contains("2 services (1 added"), "{outcome}");
    let line = server.log.wait_for(&["listening service=blocked "]);
    assert_eq!(ask(addr_in(&line)).unwrap(), "x");
}

#[test]
fn a_removed_services_last_lines_still_go_to_its_log_file() {
    let files = tempdir();
    let log = files.path().join("slow.log");
    let slow = service(
        "slow",
        &module("probe"),
        &format!(
            "\tserver_args = sleep 3\n\truntime_max = 60s\n\tlog_type = FILE {}",
            log.display()
        ),
    );
    let server = TestServer::start(
        &[greeter("greet", "one"), slow].concat(),
        &["greet", "slow"],
    );
    let mut client = sleeping_client(server.addr("slow"));
    std::fs::write(config_path(&server), greeter("greet", "one")).unwrap();
    assert!(reload(&server).contains("1 removed"));
    assert!(read_all(&mut client).is_empty());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("service=slow") && text.contains("exit=0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no exit line in {}:\n{text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !server.log.has(&["service=slow", "exit=0"]),
        "went to stderr"
    );
}
