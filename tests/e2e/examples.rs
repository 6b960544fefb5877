//! The classic setups in `examples/`, run as a user would: the example file
//! as shipped (only `server` and `port` adjusted), a real client, and the
//! log lines the README promises.

use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::{
    ACTIVATE, BIN, Log, TestServer, activate_missing, connect, module, read_all, tempdir,
};

/// A file in the repository's `examples/`.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// The example `name` with its `server` pointed at `guest` and its `port`
/// set to 0; asserts every other line is carried over verbatim.
fn adjusted(name: &str, guest: &Path) -> String {
    let original = std::fs::read_to_string(example(name)).unwrap();
    let mut out = String::new();
    let (mut servers, mut ports) = (0, 0);
    for line in original.lines() {
        let attr = line.split('=').next().unwrap_or("").trim();
        let new = match attr {
            "server" => {
                servers += 1;
                format!("\tserver\t\t= {}", guest.display())
            }
            "port" => {
                ports += 1;
                "\tport\t\t= 0".to_owned()
            }
            _ => line.to_owned(),
        };
        out.push_str(&new);
        out.push('\n');
    }
    assert_eq!((servers, ports), (1, 1), "{name}: one server and one port");
    let (a, b): (Vec<_>, Vec<_>) = (original.lines().collect(), out.lines().collect());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        let attr = x.split('=').next().unwrap_or("").trim();
        if attr != "server" && attr != "port" {
            assert_eq!(x, y, "{name}: line carried over verbatim");
        }
    }
    out
}

/// Sends `input`, half-closes and reads the whole answer.
fn ask(addr: SocketAddr, input: &[u8]) -> String {
    let mut s = connect(addr);
    s.write_all(input).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    String::from_utf8(read_all(&mut s)).unwrap()
}

#[test]
fn xinetd_hello_example_serves_http_as_documented() {
    let config = adjusted("xinetd-hello.conf", &module("hello-http"));
    let server = TestServer::start(&config, &["hello"]);
    let answer = ask(
        server.addr("hello"),
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: e2e\r\n\r\n",
    );
    assert_eq!(
        answer,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\
         Content-Length: 13\r\n\r\nHello, World!"
    );
    server.log.wait_for(&[
        "WARN",
        "wasinetd.conf:17: `user` has no meaning for a WebAssembly guest",
    ]);
    server
        .log
        .wait_for(&["exit=0", "service=hello", "conn=1", "duration="]);
}

#[test]
fn systemd_accept_yes_upper_example_answers_and_logs_to_stderr() {
    if activate_missing() {
        return;
    }
    // The ExecStart= of examples/systemd/upper@.service, with this build's
    // binary and guest.
    let unit = std::fs::read_to_string(example("systemd/upper@.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart= line");
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(
        args,
        [
            "/usr/local/bin/wasinetd",
            "run",
            "--rlimit-as",
            "64M",
            "--runtime-max",
            "30s",
            "/srv/wasinetd/upper.wasm"
        ]
    );
    let socket = std::fs::read_to_string(example("systemd/upper.socket")).unwrap();
    assert!(socket.contains("\nListenStream=127.0.0.1:7070\n"));
    assert!(socket.contains("\nAccept=yes\n"));

    let dir = tempdir();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(ACTIVATE)
        .args(["--inetd", "-a", "-l", &format!("127.0.0.1:{port}")])
        .arg(BIN)
        .args(&args[1..args.len() - 1])
        .arg(module("upper"))
        .env("CACHE_DIRECTORY", dir.path().join("cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::follow_child(&mut child);
    log.wait_for(&["Listening on 127.0.0.1:", &port.to_string()]);
    let answer = ask(([127, 0, 0, 1], port).into(), b"hello, systemd\n");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer, "HELLO, SYSTEMD\n");
    log.wait_for(&["got 15 bytes", "hello, systemd"]);
}

#[test]
fn upper_conf_example_answers_and_logs_the_guest_line() {
    let config = adjusted("upper.conf", &module("upper"));
    let server = TestServer::start(&config, &["upper"]);
    assert_eq!(
        ask(server.addr("upper"), b"hello, wasinetd\n"),
        "HELLO, WASINETD\n"
    );
    server
        .log
        .wait_for(&["stderr service=upper conn=1", "got 16 bytes"]);
    server.log.wait_for(&["exit=0", "service=upper"]);
}
