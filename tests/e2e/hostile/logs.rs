//! The log under attack: bytes from outside cannot forge or split a line;
//! a flood of guest stderr is held to the service's and the daemon's
//! budget, with a notice; and a log nobody reads never stops serving.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::*;

/// Every character a forged line needs, none of which may reach the log raw.
const RAW: [char; 4] = ['\r', '\0', '\u{b}', '\u{2028}'];

#[test]
fn guest_output_and_peer_paths_cannot_forge_log_lines() {
    let dir = tempdir();
    let sock = dir.path().join("sleep.sock");
    let config = neighbour()
        + &service("forge", &module("hostile"), "\tserver_args = forge")
        + &service(
            "filed",
            &module("hostile"),
            "\tserver_args = forge\n\tlog_type = FILE filed.log",
        )
        + &format!(
            "service sleeper\n{{\n\ttype = UNLISTED\n\tlisten_unix = {}\n\tserver = {}\n\tserver_args = sleep 30\n}}\n",
            sock.display(),
            module("probe").display()
        );
    let server = TestServer::start(&config, &["hello", "forge", "filed"]);
    server
        .log
        .wait_for(&["listening service=sleeper addr=unix:"]);
    exchange(server.addr("forge"), b"");
    exchange(server.addr("filed"), b"");
    let line = server.log.wait_for(&["stderr service=forge conn="]);
    assert!(
        line.ends_with(
            ": x\\rINFO wasinetd::conn: exit=0 service=FAKE\\u{0}\\u{b}nul-and-vt\\u{2028}INFO forged"
        ),
        "{line}"
    );
    // The same line in a `log_type` file.
    let file = server.dir.path().join("filed.log");
    let deadline = Instant::now() + PATIENCE;
    let text = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.contains("stderr service=filed") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("x\\rINFO wasinetd::conn"), "{text}");
    assert!(!text.contains(RAW), "{text:?}");

    // A Unix client bound to a path with a newline in it, then a dump.
    let bound = dir.path().join("evil\ndump: conn=999 service=FAKE");
    let client = {
        use socket2::{Domain, SockAddr, Socket, Type};
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        socket.bind(&SockAddr::unix(&bound).unwrap()).unwrap();
        socket.connect(&SockAddr::unix(&sock).unwrap()).unwrap();
        UnixStream::from(std::os::fd::OwnedFd::from(socket))
    };
    let mut buf = [0u8; 9];
    (&client).read_exact(&mut buf).unwrap();
    let mark = server.log.len();
    signal(server.child(), "USR1");
    let conn = server
        .log
        .wait_for_after(mark, &["dump: conn=", "service=sleeper"]);
    assert!(
        conn.contains("evil\\ndump: conn=999 service=FAKE"),
        "{conn}"
    );
    server.log.wait_for_after(mark, &["dump: end"]);
    for line in server.log.lines() {
        assert!(!line.contains(RAW), "{line:?}");
        assert!(!line.starts_with("dump: conn=999"), "{line}");
    }
    drop(client);
}

#[test]
fn a_stderr_flood_is_held_to_its_budget_and_the_neighbour_answers() {
    let config = neighbour()
        + &service(
            "flood",
            &module("hostile"),
            "\tserver_args = stderr-lines 1000 3000",
        );
    let server = TestServer::start(&config, &["hello", "flood"]);
    let before = footprint(&server);
    let addr = server.addr("flood");
    let until = Instant::now() + Duration::from_secs(2);
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut runs = 0;
                while Instant::now() < until {
                    exchange(addr, b"");
                    runs += 1;
                }
                runs
            })
        })
        .collect();
    assert_neighbour_answers(&server);
    let runs: u32 = flooders.into_iter().map(|f| f.join().unwrap()).sum();
    assert!(runs >= 4, "{runs}");
    server
        .log
        .wait_for(&["stderr: service=flood logged more than 1000 lines"]);
    // At most a window's budget got through (1 MiB of 3,000-byte lines).
    let logged = server
        .log
        .lines()
        .iter()
        .filter(|l| l.contains("stderr service=flood conn="))
        .count();
    assert!(logged <= (1 << 20) / 3000 + 1, "{logged} lines logged");
    assert_back_to(&server, before, 32 << 10);
}

#[test]
fn a_log_nobody_reads_never_stops_serving() {
    // The daemon's stderr is a pipe the test stops reading after start-up:
    // once the pipe is full, a daemon that writes its log itself stalls.
    let dir = tempdir();
    let conf = dir.path().join("wasinetd.conf");
    let config = neighbour()
        + &service(
            "flood",
            &module("hostile"),
            "\tserver_args = stderr-lines 200 500",
        );
    std::fs::write(&conf, config).unwrap();
    let mut child = wasinetd()
        .arg("-f")
        .arg(&conf)
        .env("CACHE_DIRECTORY", dir.path().join("cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addrs = std::collections::HashMap::new();
    while addrs.len() < 2 {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the daemon exited"
        );
        if let Some(rest) = line.strip_prefix("listening service=") {
            let (name, addr) = rest.trim().split_once(" addr=").unwrap();
            addrs.insert(name.to_owned(), addr.parse::<SocketAddr>().unwrap());
        }
    }
    // 40 connections of 200 lines of 500 bytes: 4 MB, far past a pipe.
    for _ in 0..40 {
        exchange(addrs["flood"], b"");
    }
    let p99 = neighbour_p99(addrs["hello"], 20);
    assert!(p99 < NEIGHBOUR_P99, "{p99:?}");
    // Reading again: every queued line comes out, the suppression notice
    // among them, and the daemon stops as asked.
    let reader = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        rest
    });
    signal(&child, "TERM");
    let status = wait_timeout(&mut child, PATIENCE).expect("no exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    let rest = reader.join().unwrap();
    assert!(
        rest.contains("stderr: service=flood logged more than"),
        "{}",
        &rest[rest.len().saturating_sub(2000)..]
    );
}
