//! Where a service's lines go and what they say: the `log_on_success` /
//! `log_on_failure` flags (TRAFFIC with exact byte counts), `log_type`
//! (FILE with its soft and hard limits, SYSLOG as RFC 3164 datagrams), and
//! `--log-format json`.

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use crate::support::*;

/// Waits for a line of the file at `path` containing every one of `parts`.
fn wait_in_file(path: &Path, parts: &[&str]) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return l.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no line with {parts:?} in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Holds the only instance of `service` (a probe `sleep` with
/// `instances = 1`), then has a second connection refused.
fn refuse_one(server: &TestServer, service: &str) -> std::net::TcpStream {
    let mut held = connect(server.addr(service));
    // `sleep` says so (9 bytes) once it runs, holding the slot.
    let mut buf = [0; 9];
    held.read_exact(&mut buf).unwrap();
    let mut refused = connect(server.addr(service));
    let _ = refused.read_to_end(&mut Vec::new());
    held
}

#[test]
fn traffic_counts_the_bytes_each_way_exactly() {
    let config = service("echo", &module("echo"), "\tlog_on_success = TRAFFIC")
        + &service(
            "big",
            &module("probe"),
            "\tserver_args = big 1000\n\tlog_on_success = EXIT TRAFFIC",
        );
    let server = TestServer::start(&config, &["echo", "big"]);
    let input = "hello, traffic\n";
    assert_eq!(exchange_text(server.addr("echo"), input), input);
    let line = server.log.wait_for(&["done service=echo conn="]);
    assert!(line.ends_with(" in=15 out=15"), "{line}");
    // `big` does not read: the 3 bytes it never asked for are drained after
    // it, and still count as received; 1000 bytes and "\nend\n" went out.
    assert_eq!(exchange(server.addr("big"), b"abc").len(), 1005);
    let line = server.log.wait_for(&["exit=0 service=big conn="]);
    assert!(line.ends_with(" in=3 out=1005"), "{line}");
}

#[test]
fn each_log_flag_shows_in_the_line() {
    let hello = |name: &str, flags: &str| {
        service(
            name,
            &module("hello-http"),
            &format!("\tlog_on_success = {flags}"),
        )
    };
    let sleeper = |name: &str, flags: &str| {
        service(
            name,
            &module("probe"),
            &format!("\tserver_args = sleep\n\tinstances = 1\n\tlog_on_failure = {flags}"),
        )
    };
    let names = ["host", "pid", "duration", "exit", "traffic"];
    let mut config: String = names.iter().map(|n| hello(n, n)).collect();
    config += &sleeper("attempt", "ATTEMPT");
    config += &sleeper("failhost", "HOST");
    let mut all = names.to_vec();
    all.extend(["attempt", "failhost"]);
    let server = TestServer::start(&config, &all);
    let pid = server.child().id();
    for name in names {
        exchange(server.addr(name), b"GET / HTTP/1.0\r\n\r\n");
    }
    let expect = [
        ("host", "done", "peer=127.0.0.1:".to_owned()),
        ("pid", "done", format!(" pid={pid}")),
        ("duration", "done", " duration=".to_owned()),
        ("exit", "exit=0", String::new()),
        ("traffic", "done", " in=18 out=".to_owned()),
    ];
    for (name, head, part) in &expect {
        let line = server
            .log
            .wait_for(&[&format!("{head} service={name} conn=")]);
        assert!(line.contains(part.as_str()), "{name}: {line}");
        // Only its own flag's field is there.
        for (other, _, other_part) in &expect {
            if other != name && !other_part.is_empty() {
                let field = other_part.trim().split('=').next().unwrap();
                assert!(!line.contains(&format!(" {field}=")), "{name}: {line}");
            }
        }
    }
    let _held = [
        refuse_one(&server, "attempt"),
        refuse_one(&server, "failhost"),
    ];
    let line = server
        .log
        .wait_for(&["refused: instances service=attempt conn="]);
    assert!(!line.contains("peer="), "{line}");
    server.log.wait_for(&[
        "refused: instances service=failhost conn=",
        "peer=127.0.0.1:",
    ]);
}

#[test]
fn file_log_gets_the_lines_of_its_service_only() {
    let config = service(
        "filed",
        &module("probe"),
        "\tserver_args = stderr 2\n\tlog_type = FILE filed.log\n\tlog_on_success = HOST TRAFFIC",
    ) + &service("plain", &module("hello-http"), "");
    let server = TestServer::start(&config, &["filed", "plain"]);
    assert_eq!(exchange_text(server.addr("filed"), ""), "done\n");
    exchange(server.addr("plain"), b"GET / HTTP/1.0\r\n\r\n");
    // Relative to the config file's folder.
    let file = server.dir.path().join("filed.log");
    let line = wait_in_file(&file, &["done service=filed conn=1", "in=0 out=5"]);
    assert!(line.contains(" INFO "), "{line}");
    wait_in_file(&file, &["stderr service=filed conn=1: stderr line 1"]);
    server.log.wait_for(&["exit=0 service=plain conn=2"]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("service=plain"), "{text}");
    assert!(
        !server.log.has(&["service=filed conn="]),
        "{:?}",
        server.log.lines()
    );
}

#[test]
fn defaults_log_type_applies_to_every_service_and_a_service_overrides_it() {
    let config = "defaults\n{\n\tlog_type = FILE all.log\n}\n".to_owned()
        + &service("inherits", &module("hello-http"), "")
        + &service("own", &module("hello-http"), "\tlog_type = FILE own.log");
    let server = TestServer::start(&config, &["inherits", "own"]);
    exchange(server.addr("inherits"), b"GET / HTTP/1.0\r\n\r\n");
    exchange(server.addr("own"), b"GET / HTTP/1.0\r\n\r\n");
    let all = server.dir.path().join("all.log");
    let own = server.dir.path().join("own.log");
    wait_in_file(&all, &["exit=0 service=inherits conn=1"]);
    wait_in_file(&own, &["exit=0 service=own conn=2"]);
    assert!(
        !std::fs::read_to_string(&all)
            .unwrap()
            .contains("service=own")
    );
    assert!(
        !std::fs::read_to_string(&own)
            .unwrap()
            .contains("service=inherits")
    );
}

#[test]
fn file_log_warns_once_at_its_soft_limit_and_stops_at_its_hard_limit() {
    let config = service(
        "limited",
        &module("hello-http"),
        "\tlog_on_success = HOST\n\tlog_type = FILE small.log 300 600",
    );
    let server = TestServer::start(&config, &["limited"]);
    let file = server.dir.path().join("small.log");
    for _ in 0..12 {
        exchange(server.addr("limited"), b"GET / HTTP/1.0\r\n\r\n");
    }
    server
        .log
        .wait_for(&["small.log", "reached its hard limit of 600 bytes"]);
    // More lines change nothing: no second warning, no bigger file.
    let size = std::fs::metadata(&file).unwrap().len();
    for _ in 0..3 {
        exchange(server.addr("limited"), b"GET / HTTP/1.0\r\n\r\n");
    }
    let count = |what: &str| {
        server
            .log
            .lines()
            .iter()
            .filter(|l| l.contains(what))
            .count()
    };
    assert_eq!(count("passed its soft limit of 300 bytes"), 1);
    assert_eq!(count("reached its hard limit"), 1);
    assert!((300..=600).contains(&size), "{size}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.len() as u64, size);
    assert!(text.ends_with('\n'), "{text}");
    assert!(!server.log.has(&["done service=limited conn="]));
}

#[test]
fn syslog_gets_a_datagram_with_the_pri_of_local3_notice() {
    let dir = tempdir();
    let path = dir.path().join("log.sock");
    let syslog = UnixDatagram::bind(&path).unwrap();
    syslog.set_read_timeout(Some(PATIENCE)).unwrap();
    let config = service(
        "sys",
        &module("hello-http"),
        "\tlog_type = SYSLOG local3 notice\n\tlog_on_success = HOST EXIT",
    );
    let server = TestServer::start_with(&config, &["sys"], |cmd| {
        cmd.env("WASINETD_SYSLOG_SOCKET", &path);
    });
    exchange(server.addr("sys"), b"GET / HTTP/1.0\r\n\r\n");
    let mut buf = vec![0; 8192];
    let n = syslog.recv(&mut buf).unwrap();
    let msg = std::str::from_utf8(&buf[..n]).unwrap();
    // local3 (19) * 8 + notice (5) = 157; then `Mmm dd hh:mm:ss`.
    assert!(msg.starts_with("<157>"), "{msg}");
    let stamp = &msg[5..20];
    let months = "JanFebMarAprMayJunJulAugSepOctNovDec";
    assert!(months.contains(&stamp[..3]), "{msg}");
    assert_eq!(
        (&stamp[3..4], &stamp[9..10], &stamp[12..13]),
        (" ", ":", ":"),
        "{msg}"
    );
    let rest = format!(
        " wasinetd[{}]: exit=0 service=sys conn=1 peer=127.0.0.1:",
        server.child().id()
    );
    assert!(msg[20..].starts_with(&rest), "{msg}");
    assert!(!server.log.has(&["service=sys conn="]));
}

#[test]
fn syslog_out_of_reach_is_one_warning_and_lines_go_to_stderr() {
    let dir = tempdir();
    let config = service("a", &module("hello-http"), "\tlog_type = SYSLOG")
        + &service("b", &module("hello-http"), "\tlog_type = SYSLOG user");
    let server = TestServer::start_with(&config, &["a", "b"], |cmd| {
        cmd.env("WASINETD_SYSLOG_SOCKET", dir.path().join("absent.sock"));
    });
    exchange(server.addr("a"), b"GET / HTTP/1.0\r\n\r\n");
    server.log.wait_for(&["exit=0 service=a conn=1"]);
    let warnings = server
        .log
        .lines()
        .iter()
        .filter(|l| l.contains("cannot reach syslog"))
        .count();
    assert_eq!(warnings, 1, "{:?}", server.log.lines());
}

#[test]
fn json_lines_parse_with_structured_fields_and_readiness_stays_text() {
    let config = service(
        "j",
        &module("hello-http"),
        "\tlog_on_success = HOST PID DURATION EXIT TRAFFIC",
    ) + &service(
        "held",
        &module("probe"),
        "\tserver_args = sleep\n\tinstances = 1\n\tlog_on_failure = HOST ATTEMPT",
    ) + &service("chatty", &module("probe"), "\tserver_args = stderr 1");
    let server = TestServer::start_with(&config, &["j", "held", "chatty"], |cmd| {
        cmd.args(["--log-format", "json"]);
    });
    exchange(server.addr("j"), b"GET / HTTP/1.0\r\n\r\n");
    let _held = refuse_one(&server, "held");
    exchange(server.addr("chatty"), b"");
    let done = server
        .log
        .wait_for(&["\"service\":\"j\"", "\"outcome\":\"exit\""]);
    let refused = server
        .log
        .wait_for(&["\"service\":\"held\"", "\"outcome\":\"refused\""]);
    let stderr = server.log.wait_for(&["\"target\":\"wasinetd::guest\""]);

    // Whole microseconds, not float noise (`0.6839529999999999`).
    let ms = done.split("\"duration_ms\":").nth(1).unwrap();
    let ms = &ms[..ms.find([',', '}']).unwrap()];
    assert!(
        ms.split_once('.').is_none_or(|(_, frac)| frac.len() <= 3),
        "duration_ms {ms} in {done}"
    );
    let done: Value = serde_json::from_str(&done).unwrap();
    assert_eq!(done["level"], "INFO");
    assert_eq!(done["conn"], 1);
    assert_eq!(done["exit"], 0);
    assert_eq!(done["pid"], server.child().id());
    assert!(
        done["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{done}"
    );
    assert!(done["duration_ms"].as_f64().unwrap() >= 0.0, "{done}");
    assert_eq!(done["bytes_in"], 18);
    assert!(done["bytes_out"].as_u64().unwrap() > 0, "{done}");
    assert!(done["timestamp"].as_str().unwrap().ends_with('Z'), "{done}");

    let refused: Value = serde_json::from_str(&refused).unwrap();
    assert_eq!(refused["reason"], "instances");
    assert_eq!(refused["level"], "WARN");
    assert!(refused["peer"].is_string(), "{refused}");

    // The state dump's fields are keys of their own, counts are numbers.
    let mark = server.log.len();
    signal(server.child(), "USR1");
    let dump = server
        .log
        .wait_for_after(mark, &["\"message\":\"dump\"", "\"service\":\"j\""]);
    let dump: Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["target"], "wasinetd::dump", "{dump}");
    assert_eq!(dump["accepted"], 1, "{dump}");
    assert_eq!(dump["finished_exit"], 1, "{dump}");
    let head = server
        .log
        .wait_for_after(mark, &["\"message\":\"dump\"", "\"in_flight\":"]);
    let head: Value = serde_json::from_str(&head).unwrap();
    assert_eq!(head["pid"], server.child().id(), "{head}");
    assert_eq!(head["reloads_failed"], 0, "{head}");

    let stderr: Value = serde_json::from_str(&stderr).unwrap();
    assert_eq!(stderr["service"], "chatty");
    assert_eq!(stderr["message"], "stderr line 0");

    for (name, addr) in &server.addrs {
        let ready = format!("listening service={name} addr={addr}");
        assert!(server.log.lines().contains(&ready), "{ready}");
    }
    for line in server.log.lines() {
        if line.starts_with("listening service=") {
            continue;
        }
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["message"].is_string() && v["level"].is_string(), "{line}");
    }
}

#[test]
fn a_udp_services_truncation_and_drop_lines_follow_its_log_type() {
    let dgram = "\tsocket_type = dgram\n\tlog_type = FILE udp.log";
    let config = service(
        "big",
        &module("probe"),
        &format!("{dgram}\n\tserver_args = big 100000"),
    ) + &service(
        "walled",
        &module("upper"),
        &format!("{dgram}\n\tonly_from = 10.0.0.1"),
    );
    let server = TestServer::start(&config, &["big", "walled"]);
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"", server.addr("big")).unwrap();
    let mut buf = vec![0; 70_000];
    assert_eq!(client.recv(&mut buf).unwrap(), 65_507);
    // The first refusal of a second is logged alone, the rest summed up.
    for _ in 0..5 {
        client.send_to(b"x", server.addr("walled")).unwrap();
    }
    let file = server.dir.path().join("udp.log");
    wait_in_file(
        &file,
        &["reply truncated to 65507 bytes", "service=big conn="],
    );
    wait_in_file(&file, &["refused: address service=walled"]);
    wait_in_file(
        &file,
        &[
            "service=walled dropped ",
            " datagrams in the last second: refused address=",
        ],
    );
    assert!(
        !server.log.has(&["truncated"]) && !server.log.has(&["dropped"]),
        "{:?}",
        server.log.lines()
    );
}

#[test]
fn a_guest_stderr_line_in_text_is_its_service_conn_and_text_only() {
    // No span of wasmtime-wasi's host call in front of it
    // (`fd_write{fd=Fd(2) ...}:`), for a module or a component.
    for guest in [module("probe"), component("probe")] {
        let config = service("chatty", &guest, "\tserver_args = stderr 1");
        let server = TestServer::start_with(&config, &["chatty"], |cmd| {
            cmd.env_remove("WASINETD_LOG");
        });
        exchange(server.addr("chatty"), b"");
        let line = server.log.wait_for(&["stderr line 0"]);
        let start = line.find("wasinetd::guest").expect("the guest's target");
        assert_eq!(
            &line[start..],
            "wasinetd::guest: stderr service=chatty conn=1: stderr line 0",
            "{line}"
        );
        assert!(
            line.trim_start()
                .starts_with(|c: char| c.is_ascii_digit() || c == 'I'),
            "{line}"
        );
        assert!(!line.contains('{'), "{line}");
    }
}

/// The targets the README promises to keep, pinned by filtering on them:
/// each kind of line is written exactly when its target is let through
/// `WASINETD_LOG`, whatever the others are set to.
#[test]
fn the_documented_log_targets_let_through_their_lines_only() {
    // What each target carries, as a text line shows it.
    let conn = ["wasinetd::conn: ", "service=chatty"];
    let guest = ["wasinetd::guest: stderr service=chatty"];
    let dump = ["wasinetd::dump: dump"];
    let reload = ["wasinetd::server::reload: ", "reloaded in"];
    // A filter, the lines it lets through, the lines it holds back.
    type Case<'a> = (&'a str, Vec<&'a [&'a str]>, Vec<&'a [&'a str]>);
    let cases: [Case; 2] = [
        (
            "warn,wasinetd::conn=info,wasinetd::server::reload=info",
            vec![&conn, &reload],
            vec![&guest, &dump],
        ),
        (
            "warn,wasinetd::guest=info,wasinetd::dump=info",
            vec![&guest, &dump],
            vec![&conn, &reload],
        ),
    ];
    for (filter, shown, hidden) in cases {
        let config = service("chatty", &module("probe"), "\tserver_args = stderr 1");
        let server = TestServer::start_with(&config, &["chatty"], |cmd| {
            cmd.env("WASINETD_LOG", filter);
        });
        exchange(server.addr("chatty"), b"");
        // Until the dump counts the connection as finished (its line is
        // written in the same step), when the dump is let through.
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mark = server.log.len();
            signal(server.child(), "USR1");
            if !shown.contains(&&dump[..]) {
                break;
            }
            let line = server
                .log
                .wait_for_after(mark, &["service=chatty", "accepted="]);
            if line.contains("finished_exit=1") {
                break;
            }
            assert!(Instant::now() < deadline, "never finished: {line}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if shown.contains(&&conn[..]) {
            server.log.wait_for(&conn);
        }
        // A reload that adds a service: its readiness line is written
        // whatever the filter, after every line asked for before it.
        let more = config.clone() + &service("marker", &module("probe"), "");
        std::fs::write(server.dir.path().join("wasinetd.conf"), more).unwrap();
        signal(server.child(), "HUP");
        server.log.wait_for(&["listening service=marker "]);
        for parts in &shown {
            server.log.wait_for(parts);
        }
        for parts in &hidden {
            assert!(
                !server.log.has(parts),
                "{filter}: a line with {parts:?}:\n{}",
                server.log.lines().join("\n")
            );
        }
    }
}
