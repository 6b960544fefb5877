//! Admission before instantiation: `only_from` / `no_access`, the more
//! specific match, IPv4-mapped peers, `access_times`, `per_source`, `cps`
//! (its pause, and its end), banners, and the `refused: REASON` lines.
//!
//! Clients pick their source address in 127/8 (all loopback on Linux) by
//! binding before they connect. A refused connection must cost no guest: no
//! guest stderr line and no exit line ever carry its connection id.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::*;

/// Reads up to and including the first `\n`, or to end of stream.
fn first_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0];
    while s.read(&mut byte).unwrap() == 1 {
        line.push(byte[0]);
        if byte[0] == b'\n' {
            break;
        }
    }
    String::from_utf8(line).unwrap()
}

/// One round trip through an echo guest.
fn echoes(s: &mut TcpStream, text: &str) {
    s.write_all(text.as_bytes()).unwrap();
    let mut back = vec![0; text.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, text.as_bytes());
}

/// Ends an echo connection from the client side; it must end cleanly (no
/// reset).
fn finish(mut s: TcpStream) {
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut s), b"");
}

/// The connection id in a log line (`conn=N`).
fn conn_of(line: &str) -> String {
    let rest = line.split("conn=").nth(1).expect("a conn= field");
    rest.chars().take_while(char::is_ascii_digit).collect()
}

/// Lines of `log` about connection `conn`, apart from `except`.
fn lines_about(log: &Log, conn: &str, except: &str) -> Vec<String> {
    log.lines()
        .into_iter()
        .filter(|l| l.contains("conn=") && conn_of(l) == conn && !l.contains(except))
        .collect()
}

/// A file in `dir` holding `text`.
fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn denied_peer_never_instantiates() {
    // The guest writes to stderr before anything else: an instance would
    // show up in the log as `stderr service=... conn=N`.
    let guest = "\tserver_args = stderr 1";
    let config = service(
        "only",
        &module("probe"),
        &format!("{guest}\n\tonly_from = 127.0.0.2"),
    ) + &service(
        "deny",
        &module("probe"),
        &format!("{guest}\n\tno_access = 127.0.0.1"),
    );
    let server = TestServer::start(&config, &["only", "deny"]);
    for name in ["only", "deny"] {
        let addr = server.addr(name);
        assert_eq!(answer_from("127.0.0.1", addr), "", "{name}");
        let refused = server.log.wait_for(&[
            "refused: address",
            &format!("service={name} "),
            "peer=127.0.0.1:",
        ]);
        assert_eq!(answer_from("127.0.0.2", addr), "done\n", "{name}");
        let served =
            server
                .log
                .wait_for(&["exit=0", &format!("service={name} "), "peer=127.0.0.2:"]);
        server.log.wait_for(&[
            "stderr line 0",
            &format!("service={name} conn={}:", conn_of(&served)),
        ]);
        // The served connection's lines are all there; the refused one has
        // nothing but its refusal.
        let conn = conn_of(&refused);
        assert_eq!(
            lines_about(&server.log, &conn, "refused: address"),
            Vec::<String>::new()
        );
    }
}

#[test]
fn the_more_specific_match_wins_and_a_tie_denies() {
    let greet = "\tserver_args = greet";
    let config = service(
        "allow-net-deny-host",
        &module("probe"),
        &format!("{greet}\n\tonly_from = 127.0.0.0/8\n\tno_access = 127.0.0.1"),
    ) + &service(
        "deny-net-allow-host",
        &module("probe"),
        &format!("{greet}\n\tno_access = 127.0.0.0/8\n\tonly_from = 127.0.0.1"),
    ) + &service(
        // xinetd's trailing-zero form: 127.0.0.0 is 127.0.0.0/8, a tie.
        "tie",
        &module("probe"),
        &format!("{greet}\n\tonly_from = 127.0.0.0/8\n\tno_access = 127.0.0.0"),
    ) + &service(
        "factorized",
        &module("probe"),
        &format!("{greet}\n\tonly_from = 127.0.{{0,1}}\n\tonly_from -= 127.0.1.0/24"),
    );
    let names = [
        "allow-net-deny-host",
        "deny-net-allow-host",
        "tie",
        "factorized",
    ];
    let server = TestServer::start(&config, &names);
    let answer = |name: &str, from: &str| answer_from(from, server.addr(name));
    assert_eq!(answer("allow-net-deny-host", "127.0.0.1"), "");
    assert_eq!(answer("allow-net-deny-host", "127.0.0.2"), "hello\n");
    assert_eq!(answer("deny-net-allow-host", "127.0.0.1"), "hello\n");
    assert_eq!(answer("deny-net-allow-host", "127.0.0.2"), "");
    assert_eq!(answer("tie", "127.0.0.3"), "");
    assert_eq!(answer("factorized", "127.0.0.9"), "hello\n");
    assert_eq!(answer("factorized", "127.0.1.9"), "");
    for (name, peer) in [
        ("allow-net-deny-host", "127.0.0.1"),
        ("deny-net-allow-host", "127.0.0.2"),
        ("tie", "127.0.0.3"),
        ("factorized", "127.0.1.9"),
    ] {
        server.log.wait_for(&[
            "refused: address",
            &format!("service={name} "),
            &format!("peer={peer}:"),
        ]);
    }
}

#[test]
fn ipv4_mapped_peers_match_ipv4_rules() {
    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
    if std::net::TcpListener::bind("[::]:0").is_err() {
        eprintln!("no IPv6 on this host; skipped");
        return;
    }
    let dual = |name: &str, extra: &str| {
        format!(
            "service {name}\n{{\n\ttype = UNLISTED\n\tbind = ::\n\tport = 0\n\tserver = {}\n{extra}\n}}\n",
            module("probe").display()
        )
    };
    let config = dual(
        "mapped",
        "\tserver_args = greet\n\tonly_from = 127.0.0.2 ::1",
    ) + &dual("env", "\tserver_args = env");
    let server = TestServer::start(&config, &["mapped", "env"]);
    let port = server.addr("mapped").port();
    let v4: SocketAddr = ([127, 0, 0, 1], port).into();
    assert_eq!(answer_from("127.0.0.2", v4), "hello\n");
    assert_eq!(answer_from("127.0.0.1", v4), "");
    assert_eq!(
        answer_from("::1", ([0, 0, 0, 0, 0, 0, 0, 1], port).into()),
        "hello\n"
    );
    // Logged and passed on as xinetd does: `a.b.c.d`, not `[::ffff:a.b.c.d]`.
    server
        .log
        .wait_for(&["refused: address", "service=mapped", "peer=127.0.0.1:"]);
    server
        .log
        .wait_for(&["exit=0", "service=mapped", "peer=127.0.0.2:"]);
    assert!(!server.log.has(&["::ffff:"]), "{:?}", server.log.lines());
    let env_port = server.addr("env").port();
    let env = answer_from("127.0.0.3", ([127, 0, 0, 1], env_port).into());
    assert!(env.contains("REMOTE_ADDR=127.0.0.3\n"), "{env}");
    assert!(env.contains("REMOTE_HOST=127.0.0.3\n"), "{env}");
    server
        .log
        .wait_for(&["exit=0", "service=env", "peer=127.0.0.3:"]);
}

#[test]
fn access_times_open_and_close_the_service() {
    // The daemon's local time is UTC here, so the test can compute it.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let minute = (now / 60 % 1440) as i64;
    let hhmm = |m: i64| {
        let m = m.rem_euclid(1440);
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    let open = format!("{}-{}", hhmm(minute - 10), hhmm(minute + 10));
    let closed = format!(
        "{}-{} {}-{}",
        hhmm(minute + 60),
        hhmm(minute + 120),
        hhmm(minute - 120),
        hhmm(minute - 60)
    );
    let config = service(
        "open",
        &module("probe"),
        &format!("\tserver_args = greet\n\taccess_times = {open}"),
    ) + &service(
        "closed",
        &module("probe"),
        &format!("\tserver_args = greet\n\taccess_times = {closed}"),
    );
    let server = TestServer::start_with(&config, &["open", "closed"], |cmd| {
        cmd.env("TZ", "UTC0");
    });
    assert_eq!(answer_from("127.0.0.1", server.addr("open")), "hello\n");
    assert_eq!(answer_from("127.0.0.1", server.addr("closed")), "");
    let refused = server
        .log
        .wait_for(&["refused: time", "service=closed", "peer=127.0.0.1:"]);
    assert_eq!(
        lines_about(&server.log, &conn_of(&refused), "refused: time"),
        Vec::<String>::new()
    );
}

#[test]
fn per_source_limits_each_client_address_apart() {
    let config = service("ps", &module("echo"), "\tper_source = 2");
    let server = TestServer::start(&config, &["ps"]);
    let addr = server.addr("ps");
    let mut a1 = connect_from("127.0.0.1", addr);
    echoes(&mut a1, "a1\n");
    let mut a2 = connect_from("127.0.0.1", addr);
    echoes(&mut a2, "a2\n");
    // A third from the same address is refused; another address is not.
    assert_eq!(answer_from("127.0.0.1", addr), "");
    server
        .log
        .wait_for(&["refused: per_source", "service=ps", "peer=127.0.0.1:"]);
    let mut b1 = connect_from("127.0.0.2", addr);
    echoes(&mut b1, "b1\n");
    // When one of the two ends, its address may connect again.
    finish(a1);
    server.log.wait_for(&["exit=0 service=ps conn=1 "]);
    let mut a3 = connect_from("127.0.0.1", addr);
    echoes(&mut a3, "a3\n");
    for s in [a2, b1, a3] {
        finish(s);
    }
}

#[test]
fn cps_trip_pauses_new_connections_then_resumes_by_itself() {
    let dir = tempdir();
    let welcome = file(&dir, "welcome", "welcome\n");
    let busy = file(&dir, "busy", "busy\n");
    let config = service(
        "limited",
        &module("echo"),
        &format!(
            "\tcps = 5 1\n\tbanner_success = {}\n\tbanner_fail = {}",
            welcome.display(),
            busy.display()
        ),
    );
    let server = TestServer::start(&config, &["limited"]);
    let addr = server.addr("limited");

    // A connection admitted before the trip, mid-conversation.
    let mut early = connect(addr);
    assert_eq!(first_line(&mut early), "welcome\n");
    echoes(&mut early, "one\n");

    // Bursts of connections until one is refused: more than 5 in a second.
    let mut served = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        let burst: Vec<TcpStream> = (0..20).map(|_| connect(addr)).collect();
        for mut s in burst {
            match first_line(&mut s).as_str() {
                "welcome\n" => served.push(s),
                "busy\n" => {
                    // Refused politely: the banner, then a clean end.
                    assert_eq!(read_all(&mut s), b"");
                    refused += 1;
                }
                other => panic!("unexpected answer {other:?}"),
            }
        }
        if refused > 0 {
            break;
        }
    }
    assert!(refused > 0, "no connection was refused");
    server.log.wait_for(&[
        "cps: more than 5 new connections in one second",
        "service=limited",
    ]);
    server
        .log
        .wait_for(&["refused: cps", "service=limited", "peer=127.0.0.1:"]);

    // Nothing admitted before the trip was reset by it.
    echoes(&mut early, "two\n");
    finish(early);
    for mut s in served {
        echoes(&mut s, "still here\n");
        finish(s);
    }

    // The port stayed open, and the service comes back by itself.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut s = connect(addr);
        match first_line(&mut s).as_str() {
            "welcome\n" => {
                echoes(&mut s, "back\n");
                finish(s);
                break;
            }
            "busy\n" => assert!(Instant::now() < deadline, "the pause never ended"),
            other => panic!("unexpected answer {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    server.log.wait_for(&["cps: pause over", "service=limited"]);
}

#[test]
fn banners_greet_admitted_and_refused_peers() {
    let dir = tempdir();
    let config = service(
        "bannered",
        &module("probe"),
        &format!(
            "\tserver_args = greet\n\tonly_from = 127.0.0.1\n\tbanner = {}\n\
             \tbanner_success = {}\n\tbanner_fail = {}",
            file(&dir, "banner", "Authorized use only.\n").display(),
            file(&dir, "success", "Welcome.\n").display(),
            file(&dir, "fail", "Not from there.\n").display(),
        ),
    );
    let server = TestServer::start(&config, &["bannered"]);
    let addr = server.addr("bannered");
    assert_eq!(
        answer_from("127.0.0.1", addr),
        "Authorized use only.\nWelcome.\nhello\n"
    );
    assert_eq!(
        answer_from("127.0.0.2", addr),
        "Authorized use only.\nNot from there.\n"
    );
    let refused = server
        .log
        .wait_for(&["refused: address", "service=bannered", "peer=127.0.0.2:"]);
    server.log.wait_for(&["exit=0", "service=bannered"]);
    assert_eq!(
        lines_about(&server.log, &conn_of(&refused), "refused: address"),
        Vec::<String>::new()
    );
}

#[test]
fn refusals_follow_log_on_failure() {
    let deny = "\tserver_args = greet\n\tonly_from =";
    let config = service(
        "host",
        &module("probe"),
        &format!("{deny}\n\tlog_on_failure = HOST"),
    ) + &service(
        "attempt",
        &module("probe"),
        &format!("{deny}\n\tlog_on_failure = ATTEMPT"),
    ) + &service(
        "quiet",
        &module("probe"),
        &format!("{deny}\n\tlog_on_failure ="),
    );
    let server = TestServer::start(&config, &["host", "attempt", "quiet"]);
    // An empty `only_from =` lets nobody in.
    for name in ["quiet", "host", "attempt"] {
        assert_eq!(answer_from("127.0.0.1", server.addr(name)), "", "{name}");
    }
    server
        .log
        .wait_for(&["refused: address service=host conn=", "peer=127.0.0.1:"]);
    let line = server
        .log
        .wait_for(&["refused: address service=attempt conn="]);
    assert!(!line.contains("peer="), "{line}");
    // `quiet` was refused first: had it been logged, its line would be in.
    assert!(
        !server.log.has(&["refused", "service=quiet"]),
        "{:?}",
        server.log.lines()
    );
}
