//! `wasinetd:handler/connection` (`wit/`): a component guest (`whoami`)
//! asks about its connection and must learn exactly what the daemon logs
//! for it (`service=`, `conn=`, `peer=`) and where the client connected,
//! over TCP, UDP and Unix sockets, and under `wasinetd run`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Stdio;

use crate::support::*;

/// `whoami`'s `key=value` lines.
fn facts(answer: &str) -> HashMap<String, String> {
    answer
        .lines()
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not key=value: {l:?} in {answer:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The value of `key=` in a log line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        + key.len()
        + 2;
    line[start..].split(' ').next().unwrap()
}

#[test]
fn a_component_learns_its_tcp_connection_as_the_log_shows_it() {
    let config = service("whoami", &component("whoami"), "\tid = who");
    let server = TestServer::start(&config, &["who"]);
    let addr = server.addr("who");
    for _ in 0..2 {
        let mut client = connect(addr);
        let me = client.local_addr().unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let got = facts(&String::from_utf8(read_all(&mut client)).unwrap());
        let conn = &got["conn"];
        let line = server.log.wait_for(&["exit=0", &format!(" conn={conn} ")]);
        assert_eq!(got["service"], "who", "the id, as in the log");
        assert_eq!(field(&line, "service"), "who");
        assert_eq!(got["protocol"], "tcp");
        assert_eq!(got["peer"], field(&line, "peer"), "{line}");
        assert_eq!(got["peer"], me.to_string());
        assert_eq!(got["local"], addr.to_string());
        assert_eq!(got.len(), 5, "{got:?}");
    }
}

#[test]
fn a_component_learns_the_sender_of_a_datagram() {
    let config = service(
        "whoami",
        &component("whoami"),
        "\tsocket_type = dgram\n\tprotocol = udp\n\twait = yes",
    );
    let server = TestServer::start(&config, &["whoami"]);
    let addr = server.addr("whoami");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"who am i?", addr).unwrap();
    let mut buf = [0; 1024];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(from, addr);
    let got = facts(std::str::from_utf8(&buf[..n]).unwrap());
    let line = server
        .log
        .wait_for(&["exit=0", &format!(" conn={} ", got["conn"])]);
    assert_eq!(got["service"], "whoami");
    assert_eq!(got["protocol"], "udp");
    assert_eq!(got["peer"], field(&line, "peer"));
    assert_eq!(got["peer"], client.local_addr().unwrap().to_string());
    assert_eq!(got["local"], addr.to_string());
}

#[test]
fn a_component_learns_its_unix_connection() {
    let dir = tempdir();
    let path = dir.path().join("who.sock");
    let config = format!(
        "service who\n{{\n\ttype = UNLISTED\n\tlisten_unix = {}\n\tserver = {}\n}}\n",
        path.display(),
        component("whoami").display()
    );
    let server = TestServer::start(&config, &[]);
    server.log.wait_for(&[&format!(
        "listening service=who addr=unix:{}",
        path.display()
    )]);
    let ask = |mut stream: UnixStream| {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        facts(&out)
    };

    // Most clients bind no path: no peer address.
    let got = ask(UnixStream::connect(&path).unwrap());
    server
        .log
        .wait_for(&["exit=0 service=who", &format!(" conn={} ", got["conn"])]);
    assert_eq!(got["protocol"], "unix");
    assert_eq!(got["local"], path.display().to_string());
    assert!(!got.contains_key("peer"), "{got:?}");

    // A client bound to a path: that path.
    let client_path = dir.path().join("client.sock");
    let client = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    client
        .bind(&socket2::SockAddr::unix(&client_path).unwrap())
        .unwrap();
    client
        .connect(&socket2::SockAddr::unix(&path).unwrap())
        .unwrap();
    let got = ask(OwnedFd::from(client).into());
    assert_eq!(got["peer"], client_path.display().to_string());
    assert_eq!(got["service"], "who");
}

#[test]
fn under_wasinetd_run_a_component_learns_stdin_or_its_socket() {
    let whoami = component("whoami").display().to_string();
    // Stdin a pipe: not a connection.
    let mut child = wasinetd()
        .args(["run", &whoami])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let got = facts(&out);
    assert_eq!(got["protocol"], "stdio");
    assert_eq!(got["service"], "whoami.wasm", "argv[0]");
    assert_eq!(got["conn"], pid.to_string(), "the process id");
    assert!(!got.contains_key("peer") && !got.contains_key("local"));

    // Stdin an accepted TCP socket, as xinetd or tcpserver run it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (conn, peer) = listener.accept().unwrap();
    let fd_in: OwnedFd = conn.try_clone().unwrap().into();
    let fd_out: OwnedFd = conn.into();
    let mut child = wasinetd()
        .args(["run", &whoami])
        .stdin(Stdio::from(fd_in))
        .stdout(Stdio::from(fd_out))
        .spawn()
        .unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.flush().unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut out = String::new();
    client.read_to_string(&mut out).unwrap();
    assert!(child.wait().unwrap().success());
    let got = facts(&out);
    assert_eq!(got["protocol"], "tcp");
    assert_eq!(got["peer"], peer.to_string());
    assert_eq!(got["local"], listener.local_addr().unwrap().to_string());
    assert_eq!(got["conn"], child.id().to_string());
}

#[test]
fn on_a_wildcard_listener_the_local_address_is_the_one_the_client_reached() {
    let config = format!(
        "service who\n{{\n\ttype = UNLISTED\n\tbind = 0.0.0.0\n\tport = 0\n\tserver = {}\n}}\n",
        component("whoami").display()
    );
    let server = TestServer::start(&config, &["who"]);
    let port = server.addr("who").port();
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let reached: std::net::SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let mut client = connect(reached);
        client.shutdown(Shutdown::Write).unwrap();
        let got = facts(&String::from_utf8(read_all(&mut client)).unwrap());
        assert_eq!(got["local"], reached.to_string());
    }
}
