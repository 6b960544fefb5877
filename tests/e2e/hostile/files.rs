//! Descriptors and disk under attack: guests holding files or sockets
//! share one budget below the daemon's own limit, so the daemon always
//! accepts; a writable preopen holds at most its quota of bytes and
//! entries; a guest plants no symlink unless its preopen allows it.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;

use super::*;

/// The daemon started with a hard `RLIMIT_NOFILE` of `nofile`: what it
/// raises its soft limit to, and divides between itself and the guests.
fn start_with_nofile(config: &str, services: &[&str], nofile: u64, args: &[&str]) -> TestServer {
    TestServer::start_with(config, services, |cmd| {
        cmd.args(args);
        // SAFETY: setrlimit is async-signal-safe; nothing else runs in the
        // child between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: 256,
                    rlim_max: nofile,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

/// Connects to a `hold` guest and reads its report: how many it opened.
fn holder(addr: SocketAddr) -> (TcpStream, u64, String) {
    let s = connect(addr);
    let mut line = String::new();
    BufReader::new(s.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    let opened = line
        .strip_prefix("opened ")
        .and_then(|l| l.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no report from the guest: {line:?}"));
    (s, opened, line)
}

#[test]
fn guests_holding_files_share_a_budget_and_the_daemon_still_accepts() {
    let data = tempdir();
    std::fs::write(data.path().join("f"), "x").unwrap();
    let hog = |guest: &Path| {
        service(
            "hog",
            guest,
            &format!(
                "\tserver_args = open-files /data/f 100000\n\tpreopen = {}:/data\n\tinstances = 10",
                data.path().display()
            ),
        )
    };
    for guest in [module("hostile"), component("hostile")] {
        // NOFILE 700 and --limit 40: 256 + 2 x 40 + 64 per listener kept
        // for the daemon, about 170 for guests.
        let config = neighbour() + &hog(&guest);
        let server = start_with_nofile(&config, &["hello", "hog"], 700, &["--limit", "40"]);
        let line = server
            .log
            .wait_for(&["file descriptors: 700", "for guests"]);
        let budget: u64 = line
            .split(", ")
            .last()
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        let before = footprint(&server);
        let holders: Vec<_> = (0..3)
            .map(|_| {
                let h = std::panic::catch_unwind(|| holder(server.addr("hog")));
                h.unwrap_or_else(|_| panic!("log:\n{}", server.log.lines().join("\n")))
            })
            .collect();
        let total: u64 = holders.iter().map(|h| h.1).sum();
        // Each holds its preopen too, and at most a quarter of the budget:
        // each was told EMFILE, and together they stay within it.
        assert!(total + 3 <= budget, "{total} opened of {budget}");
        for (_, opened, line) in &holders {
            assert!(line.contains("error"), "{line}");
            assert!(*opened < budget / 4, "{line}");
        }
        assert_neighbour_answers(&server);
        assert!(!server.log.has(&["accept failed"]));
        for (mut s, ..) in holders {
            s.shutdown(std::net::Shutdown::Write).unwrap();
            read_all(&mut s);
        }
        server.log.wait_for(&[
            "open(s) past its share of the guests' descriptors",
            "service=hog",
        ]);
        assert_back_to(&server, before, 32 << 10);
    }
}

#[test]
fn sockets_a_component_holds_count_against_the_same_budget() {
    // A backend that accepts and keeps every connection.
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = backend.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for conn in backend.incoming() {
            match conn {
                Ok(c) => kept.push(c),
                Err(_) => break,
            }
        }
    });
    let config = neighbour()
        + &service(
            "sockets",
            &component("hostile"),
            &format!("\tserver_args = connect-hold {target} 100000\n\tallow_connect = {target}"),
        );
    let server = start_with_nofile(&config, &["hello", "sockets"], 700, &["--limit", "40"]);
    let before = footprint(&server);
    let (mut a, opened_a, line_a) = holder(server.addr("sockets"));
    let (mut b, opened_b, _) = holder(server.addr("sockets"));
    assert!(opened_a + opened_b < 300, "{opened_a} + {opened_b}");
    assert!(line_a.contains("error"), "{line_a}");
    assert_neighbour_answers(&server);
    assert!(!server.log.has(&["accept failed"]));
    for s in [&mut a, &mut b] {
        s.shutdown(std::net::Shutdown::Write).unwrap();
        read_all(s);
    }
    assert_back_to(&server, before, 32 << 10);
}

/// Runs the hostile guest once with `args` and a writable preopen `dir`
/// with `extra` lines; returns its one-line report.
fn disk(guest: &Path, dir: &Path, args: &str, extra: &str) -> String {
    let config = neighbour()
        + &service(
            "disk",
            guest,
            &format!(
                "\tserver_args = {args}\n\tpreopen = {}:/data:rw{extra}",
                dir.display()
            ),
        );
    let server = TestServer::start(&config, &["hello", "disk"]);
    let out = exchange_text(server.addr("disk"), "");
    assert_neighbour_answers(&server);
    out
}

#[test]
fn a_writable_preopen_holds_at_most_its_quota() {
    for guest in [module("hostile"), component("hostile")] {
        let dir = tempdir();
        let quota = "\n\tpreopen_quota = 1M 50";
        // Bytes: appends of 64 KiB stop at the quota, and the file with them.
        let out = disk(&guest, dir.path(), "fill /data/big 65536", quota);
        assert!(
            out.starts_with("wrote ") && out.contains(": error"),
            "{out}"
        );
        let size = std::fs::metadata(dir.path().join("big")).unwrap().len();
        assert!(size <= 1 << 20, "{size}");
        assert!(size >= (1 << 20) - 65536, "{size}");
        std::fs::remove_file(dir.path().join("big")).unwrap();
        // A sparse file counts at its full size.
        let out = disk(
            &guest,
            dir.path(),
            "sparse /data/sparse 1099511627776",
            quota,
        );
        assert!(out.starts_with("sparse: error"), "{out}");
        let size = std::fs::metadata(dir.path().join("sparse")).unwrap().len();
        assert_eq!(size, 0);
        // Entries.
        let out = disk(&guest, dir.path(), "many-files /data 20000", quota);
        let made: u64 = out
            .strip_prefix("made ")
            .and_then(|l| l.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{out}"));
        assert!(out.contains(": error"), "{out}");
        // The sparse file is one of the 50.
        assert_eq!(made, 49, "{out}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 50);
    }
}

#[test]
fn the_default_quota_stops_a_guest_filling_the_disk() {
    let dir = tempdir();
    let out = disk(&module("hostile"), dir.path(), "fill /data/big 1048576", "");
    assert!(out.contains(": error"), "{out}");
    let size = std::fs::metadata(dir.path().join("big")).unwrap().len();
    assert!(size <= 64 << 20, "{size}");
}

#[test]
fn symlinks_are_refused_unless_the_preopen_allows_them() {
    for guest in [module("hostile"), component("hostile")] {
        let dir = tempdir();
        let out = disk(&guest, dir.path(), "symlink ../../etc /data/escape", "");
        assert!(out.starts_with("symlink: error"), "{out}");
        assert!(std::fs::symlink_metadata(dir.path().join("escape")).is_err());
        let config = neighbour()
            + &service(
                "links",
                &guest,
                &format!(
                    "\tserver_args = symlink target /data/link\n\tpreopen = {}:/data:rw+symlinks",
                    dir.path().display()
                ),
            );
        let server = TestServer::start(&config, &["hello", "links"]);
        assert_eq!(exchange_text(server.addr("links"), ""), "symlink: ok\n");
        assert_eq!(
            std::fs::read_link(dir.path().join("link")).unwrap(),
            Path::new("target")
        );
    }
}

#[test]
fn a_fifo_or_device_in_a_preopen_is_not_opened() {
    // An open that waits for a FIFO's writer would hold a blocking thread
    // for good; enough of them would stall every guest's file work.
    let dir = tempdir();
    let fifo = dir.path().join("fifo");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    for guest in [module("hostile"), component("hostile")] {
        let config = neighbour()
            + &service(
                "fifo",
                &guest,
                &format!(
                    "\tserver_args = open-files /data/fifo 1\n\tpreopen = {}:/data\n\truntime_max = 60s",
                    dir.path().display()
                ),
            );
        let server = TestServer::start(&config, &["hello", "fifo"]);
        let started = std::time::Instant::now();
        let (mut s, opened, line) = holder(server.addr("fifo"));
        assert_eq!(opened, 0, "{line}");
        assert!(line.contains("PermissionDenied"), "{line}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        s.shutdown(std::net::Shutdown::Write).unwrap();
        read_all(&mut s);
        assert_neighbour_answers(&server);
    }
}
