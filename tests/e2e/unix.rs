//! Unix stream sockets (`listen_unix`, systemd's `ListenStream=/path`):
//! the guest's stdio over the socket, the socket file's mode, what the guest
//! learns of its peer, and the socket file left by an earlier run.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Stdio;

use crate::support::{Log, PATIENCE, TestServer, module, wait_timeout, wasinetd};

/// Sends `input` over a Unix socket, half-closes, reads to the end.
fn exchange_unix(stream: &mut UnixStream, input: &str) -> String {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(input.as_bytes()).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

fn unix_service(name: &str, guest: &str, path: &Path, extra: &str) -> String {
    format!(
        "service {name}\n{{\n\ttype = UNLISTED\n\tlisten_unix = {}\n\tserver = {}\n{extra}\n}}\n",
        path.display(),
        module(guest).display()
    )
}

#[test]
fn a_unix_socket_serves_the_guest_with_its_mode() {
    let dir = crate::support::tempdir();
    let web = dir.path().join("web.sock");
    let env = dir.path().join("env.sock");
    let config = unix_service(
        "web",
        "hello-http",
        &web,
        "\tsocket_mode = 0600\n\tbind = 127.0.0.1\n\tport = 0",
    ) + &unix_service(
        "env",
        "probe",
        &env,
        // Address lists do not apply to Unix peers.
        "\tserver_args = env\n\tonly_from = 10.9.9.9",
    );
    let server = TestServer::start(&config, &["web"]);
    server.log.wait_for(&[&format!(
        "listening service=web addr=unix:{}",
        web.display()
    )]);
    server.log.wait_for(&[&format!(
        "listening service=env addr=unix:{}",
        env.display()
    )]);
    let mode = std::fs::metadata(&web).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mode = std::fs::metadata(&env).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666, "systemd's SocketMode= default");

    let answer = exchange_unix(
        &mut UnixStream::connect(&web).unwrap(),
        "GET / HTTP/1.0\r\n\r\n",
    );
    assert!(answer.ends_with("Hello, World!"), "{answer}");
    // The same service on TCP too, since it has a `port`.
    let tcp = crate::support::exchange_text(server.addr("web"), "GET / HTTP/1.0\r\n\r\n");
    assert!(tcp.ends_with("Hello, World!"));
    // A Unix peer is logged without `peer=`. Its connection came first
    // (conn=1), but its line may follow the TCP one's: it is written once
    // the drain after the guest ends.
    let line = server.log.wait_for(&["exit=0 service=web conn=1 "]);
    assert!(!line.contains("peer="), "{line}");

    // An unnamed client: no REMOTE_* at all.
    let out = exchange_unix(&mut UnixStream::connect(&env).unwrap(), "");
    assert!(out.contains("arg 1=env\n"), "{out}");
    assert!(!out.contains("REMOTE_"), "{out}");
    // A client bound to a path: REMOTE_ADDR is that path, as systemd sets it.
    let client_path = dir.path().join("client.sock");
    let client = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    client
        .bind(&socket2::SockAddr::unix(&client_path).unwrap())
        .unwrap();
    client
        .connect(&socket2::SockAddr::unix(&env).unwrap())
        .unwrap();
    let mut client: UnixStream = std::os::fd::OwnedFd::from(client).into();
    let out = exchange_unix(&mut client, "");
    assert!(
        out.contains(&format!("env REMOTE_ADDR={}\n", client_path.display())),
        "{out}"
    );
    assert!(!out.contains("REMOTE_PORT"), "{out}");
}

#[test]
fn a_stale_socket_file_is_replaced_but_a_live_one_is_not() {
    let dir = crate::support::tempdir();
    let path = dir.path().join("hello.sock");
    // A socket file nobody listens on, as a crashed daemon leaves it.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let config = unix_service("hello", "hello-http", &path, "");
    let server = TestServer::start(&config, &[]);
    server.log.wait_for(&["listening service=hello addr=unix:"]);
    let answer = exchange_unix(
        &mut UnixStream::connect(&path).unwrap(),
        "GET / HTTP/1.0\r\n\r\n",
    );
    assert!(answer.ends_with("Hello, World!"));

    // A second daemon must not take the socket from the first.
    let conf = dir.path().join("second.conf");
    std::fs::write(&conf, &config).unwrap();
    let mut second = wasinetd()
        .arg("-f")
        .arg(&conf)
        .env("CACHE_DIRECTORY", dir.path().join("cache"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::follow_child(&mut second);
    let status = wait_timeout(&mut second, PATIENCE).expect("the second daemon exits");
    assert!(!status.success());
    log.wait_for(&[
        "service `hello` cannot start",
        "another process listens on it",
    ]);
    // The first still serves.
    let answer = exchange_unix(
        &mut UnixStream::connect(&path).unwrap(),
        "GET / HTTP/1.0\r\n\r\n",
    );
    assert!(answer.ends_with("Hello, World!"));
}

#[test]
fn per_source_counts_unix_peers_by_uid() {
    let dir = crate::support::tempdir();
    let path = dir.path().join("slow.sock");
    // `readall` runs until the client's end of stream.
    let config = unix_service(
        "slow",
        "probe",
        &path,
        "\tserver_args = readall\n\tper_source = 1",
    );
    let server = TestServer::start(&config, &[]);
    server.log.wait_for(&["listening service=slow addr=unix:"]);
    let mut first = UnixStream::connect(&path).unwrap();
    first.write_all(b"abc").unwrap();
    // The same uid again, while the first guest runs: refused.
    let mut second = UnixStream::connect(&path).unwrap();
    assert_eq!(exchange_unix(&mut second, ""), "");
    server
        .log
        .wait_for(&["refused: per_source", "service=slow conn=2"]);
    let answer = exchange_unix(&mut first, "");
    assert!(answer.contains('3'), "{answer}");
    // Its guest has ended: the uid may connect again.
    let mut third = UnixStream::connect(&path).unwrap();
    assert!(exchange_unix(&mut third, "xy").contains('2'));
}

#[test]
fn a_unix_only_service_is_in_the_admin_status() {
    let dir = crate::support::tempdir();
    let path = dir.path().join("status.sock");
    let config = unix_service("local", "hello-http", &path, "");
    let server = TestServer::start_with(&config, &[], |cmd| {
        cmd.args(["--admin", "127.0.0.1:0"]);
    });
    server.log.wait_for(&["listening service=local addr=unix:"]);
    let line = server.log.wait_for(&["admin listening addr="]);
    let admin: std::net::SocketAddr = line.rsplit("addr=").next().unwrap().parse().unwrap();
    let status = crate::support::exchange_text(admin, "GET /status HTTP/1.0\r\n\r\n");
    let body = status.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let services = json["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "{json}");
    assert_eq!(
        services[0]["addr"],
        format!("unix:{}", path.display()),
        "{json}"
    );
}
