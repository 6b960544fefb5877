//! `wasinetd run`: one guest on the process's own stdio, as a developer runs
//! a handler, or as xinetd / tcpserver / systemd would run wasinetd.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::process::{Output, Stdio};

use crate::support::*;

fn run(args: &[&str], input: &[u8]) -> Output {
    let mut child = wasinetd()
        .arg("run")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn path(p: std::path::PathBuf) -> String {
    p.display().to_string()
}

#[test]
fn runs_a_guest_on_its_own_stdio() {
    for guest in [module("upper"), component("upper")] {
        let out = run(&[&path(guest)], b"shout\n");
        assert!(out.status.success());
        assert_eq!(out.stdout, b"SHOUT\n");
        assert!(String::from_utf8_lossy(&out.stderr).contains("got 6 bytes"));
    }
}

#[test]
fn exit_status_follows_the_outcome() {
    let probe = path(module("probe"));
    let cases: [(&[&str], i32); 5] = [
        (&["exit", "7"], 7),
        (&["panic"], 134),
        (&["--rlimit-cpu", "200ms", "PROBE", "spin"], 152),
        (&["--runtime-max", "200ms", "PROBE", "sleep"], 124),
        (&["--rlimit-as", "8M", "PROBE", "membomb"], 137),
    ];
    for (args, status) in cases {
        let mut argv: Vec<&str> = args
            .iter()
            .map(|a| if *a == "PROBE" { probe.as_str() } else { a })
            .collect();
        if !args.contains(&"PROBE") {
            argv.insert(0, &probe);
        }
        let out = run(&argv, b"");
        assert_eq!(
            out.status.code(),
            Some(status),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn flags_give_env_and_preopens_and_nothing_else() {
    let data = tempdir();
    std::fs::write(data.path().join("f"), "x").unwrap();
    let preopen = format!("{}:/d", data.path().display());
    let out = wasinetd()
        .args([
            "run",
            "--env",
            "A=1",
            "--passenv",
            "KEEP",
            "--preopen",
            &preopen,
            &path(module("probe")),
            "env",
        ])
        .env("KEEP", "kept")
        .env("DROP", "dropped")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("env A=1\n") && stdout.contains("env KEEP=kept\n"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("DROP") && !stdout.contains("REMOTE_"),
        "{stdout}"
    );
    let out = wasinetd()
        .args([
            "run",
            "--preopen",
            &preopen,
            &path(module("probe")),
            "fs",
            "cat:/d/f",
            "ls:/",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some("cat /d/f ok x")
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ls / err"));
}

#[test]
fn as_the_server_of_an_inetd_it_knows_its_peer() {
    // What xinetd or systemd (Accept=yes, StandardInput=socket) do: the
    // accepted socket is the child's stdin and stdout.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (conn, peer) = listener.accept().unwrap();
    let fd_in: OwnedFd = conn.try_clone().unwrap().into();
    let fd_out: OwnedFd = conn.into();
    let mut child = wasinetd()
        .args(["run", &path(module("probe")), "env"])
        .stdin(Stdio::from(fd_in))
        .stdout(Stdio::from(fd_out))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut out = String::new();
    client.read_to_string(&mut out).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        out.contains(&format!("env REMOTE_PORT={}\n", peer.port())),
        "{out}"
    );
    assert!(out.contains("env REMOTE_ADDR=127.0.0.1\n"), "{out}");
}

#[test]
fn a_bad_guest_or_flag_is_a_clear_error() {
    let out = run(&["/nonexistent/guest.wasm"], b"");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/guest.wasm"), "{stderr}");
    let out = run(&["--rlimit-as", "lots", &path(module("echo"))], b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rlimit-as"));
}

/// Runs `guest` as xinetd runs a server: the accepted socket is fds 0, 1
/// and 2. Returns what the client read after sending `request`.
fn run_on_a_socket(guest: &str, request: &[u8], log: Option<&str>) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let (conn, _) = listener.accept().unwrap();
    let fd_in: OwnedFd = conn.try_clone().unwrap().into();
    let fd_err: OwnedFd = conn.try_clone().unwrap().into();
    let fd_out: OwnedFd = conn.into();
    let mut cmd = wasinetd();
    cmd.args(["run", guest])
        .stdin(Stdio::from(fd_in))
        .stdout(Stdio::from(fd_out))
        .stderr(Stdio::from(fd_err))
        .env_remove("WASINETD_LOG");
    if let Some(filter) = log {
        cmd.env("WASINETD_LOG", filter);
    }
    let mut child = cmd.spawn().unwrap();
    // The command holds the socket's descriptors too: the client would
    // never see end of stream.
    drop(cmd);
    client.write_all(request).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let out = read_all(&mut client);
    assert!(child.wait().unwrap().success());
    out
}

#[test]
fn on_a_socket_as_stderr_only_the_guest_speaks() {
    // xinetd puts the connection on stderr too: a log line of wasinetd's
    // own would reach the client ahead of the answer.
    let guest = path(module("hello-http"));
    let request = b"GET / HTTP/1.0\r\n\r\n";
    let expected = run(&[&guest], request);
    assert!(expected.status.success());
    let out = run_on_a_socket(&guest, request, None);
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&expected.stdout)
    );
    // The same with the daemon's own lines asked for: they would be there
    // (so the check above can fail).
    let out = run_on_a_socket(&guest, request, Some("info"));
    assert!(
        String::from_utf8_lossy(&out).contains("wasinetd::"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}
