//! Running under systemd: listening sockets passed with `LISTEN_FDS`
//! (through `systemd-socket-activate`, systemd's own test tool) and the
//! `sd_notify` messages on `NOTIFY_SOCKET`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;

use crate::support::{
    PATIENCE, activate_missing, connect, module, read_all, signal, socket_activated, tempdir,
    wait_timeout, wasinetd,
};

/// A loopback port free right now (bound, then closed).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A hello-http service block; `extra` adds attribute lines.
fn hello(name: &str, extra: &str) -> String {
    format!(
        "service {name}\n{{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tport = 0\n\tserver = {}\n{extra}\n}}\n",
        module("hello-http").display()
    )
}

fn get(addr: SocketAddr) -> String {
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    String::from_utf8(read_all(&mut s)).unwrap()
}

#[test]
fn sockets_passed_by_systemd_are_adopted_by_name_then_address() {
    if activate_missing() {
        return;
    }
    let (named, by_addr, stray) = (free_port(), free_port(), free_port());
    let config = hello("hello", "")
        + &hello("other", "").replace("\tport = 0\n", &format!("\tport = {by_addr}\n"));
    let dir = tempdir();
    let conf = dir.path().join("wasinetd.conf");
    std::fs::write(&conf, config).unwrap();
    let (named_l, by_addr_l, stray_l) = (
        format!("127.0.0.1:{named}"),
        format!("127.0.0.1:{by_addr}"),
        format!("127.0.0.1:{stray}"),
    );
    let (mut child, log) = socket_activated(
        &[
            "-l",
            &named_l,
            "-l",
            &by_addr_l,
            "-l",
            &stray_l,
            "--fdname=hello:web:stray",
        ],
        &conf,
        dir.path(),
    );
    // It starts the daemon on the first connection, which waits in the
    // passed socket's backlog meanwhile.
    log.wait_for(&["Listening on 127.0.0.1:", &stray.to_string()]);
    assert!(get(([127, 0, 0, 1], named).into()).ends_with("Hello, World!"));
    assert!(get(([127, 0, 0, 1], by_addr).into()).ends_with("Hello, World!"));
    log.wait_for(&[
        "service `hello`: adopted",
        &format!("127.0.0.1:{named}"),
        "name `hello`",
    ]);
    log.wait_for(&[
        "service `other`: adopted",
        &format!("127.0.0.1:{by_addr}"),
        "matched by address",
    ]);
    log.wait_for(&[
        "listening service=hello addr=127.0.0.1:",
        &named.to_string(),
    ]);
    log.wait_for(&["name `stray`", "matches no service", "closed"]);
    // The stray socket is closed: nothing listens on it any more.
    let refused = std::net::TcpStream::connect(("127.0.0.1", stray)).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    let _ = child.kill();
    let _ = child.wait();
}

/// The next datagram on `socket`, as text.
fn next_message(socket: &UnixDatagram) -> String {
    let mut buf = [0; 4096];
    let n = socket.recv(&mut buf).expect("a notification");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn sd_notify_says_ready_after_listening_and_stopping_on_sigterm() {
    let dir = tempdir();
    let notify = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let conf = dir.path().join("wasinetd.conf");
    std::fs::write(&conf, hello("hello", "")).unwrap();
    let mut child = wasinetd()
        .arg("-f")
        .arg(&conf)
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let ready = next_message(&socket);
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(
        ready.contains("STATUS=1 service on 1 listener; 0 connections running"),
        "{ready}"
    );
    // Everything written to stderr before READY=1 is in the pipe now: read
    // what is there without waiting, and find the readiness line in it.
    // SAFETY: fcntl on a descriptor this test owns.
    unsafe {
        let fd = stderr.as_raw_fd();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        assert_eq!(libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK), 0);
    }
    let mut before = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match stderr.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => before.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    let before = String::from_utf8_lossy(&before);
    assert!(
        before.contains("listening service=hello addr=127.0.0.1:"),
        "READY=1 came before the readiness line:\n{before}"
    );
    signal(&child, "TERM");
    // Skipping the periodic `STATUS=` updates.
    let stopping = std::iter::repeat_with(|| next_message(&socket))
        .find(|m| !m.starts_with("STATUS="))
        .unwrap();
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping}");
    let status = wait_timeout(&mut child, PATIENCE).expect("the daemon exits after SIGTERM");
    assert!(status.success());
}

#[test]
fn a_passed_unix_socket_is_adopted_by_its_path_and_listen_vars_are_gone() {
    if activate_missing() {
        return;
    }
    let dir = tempdir();
    let path = dir.path().join("hello.sock");
    let config = format!(
        "service hello\n{{\n\ttype = UNLISTED\n\tlisten_unix = {}\n\tserver = {}\n}}\n{}",
        path.display(),
        module("hello-http").display(),
        // The daemon binds this one itself; its guest shows its environment.
        hello(
            "env",
            "\tpassenv = LISTEN_FDS LISTEN_PID LISTEN_FDNAMES PATH"
        )
        .replace("hello-http", "probe")
        .replace("\tport = 0\n", "\tport = 0\n\tserver_args = env\n"),
    );
    let conf = dir.path().join("wasinetd.conf");
    std::fs::write(&conf, config).unwrap();
    let listen = path.display().to_string();
    let (mut child, log) =
        socket_activated(&["-l", &listen, "--fdname=activated"], &conf, dir.path());
    log.wait_for(&["Listening on", &path.display().to_string()]);
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(answer.ends_with("Hello, World!"), "{answer}");
    let unix = format!("unix:{}", path.display());
    log.wait_for(&["service `hello`: adopted", &unix, "matched by address"]);
    log.wait_for(&[&format!("listening service=hello addr={unix}")]);
    let line = log.wait_for(&["listening service=env addr="]);
    let env: SocketAddr = line.rsplit("addr=").next().unwrap().parse().unwrap();
    let mut s = connect(env);
    s.shutdown(Shutdown::Write).unwrap();
    let out = String::from_utf8(read_all(&mut s)).unwrap();
    assert!(out.contains("env PATH="), "{out}");
    assert!(!out.contains("LISTEN_"), "{out}");
    let _ = child.kill();
    let _ = child.wait();
}

/// A loopback UDP port free right now (bound, then closed).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `payload` to `port` and returns the reply.
fn ask_udp(port: u16, payload: &[u8]) -> Vec<u8> {
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(payload, ("127.0.0.1", port)).unwrap();
    let mut buf = [0; 1024];
    let (n, _) = client.recv_from(&mut buf).expect("a reply");
    buf[..n].to_vec()
}

#[test]
fn datagram_sockets_passed_by_systemd_go_to_udp_services_by_name_then_address() {
    if activate_missing() {
        return;
    }
    let (named, by_addr) = (free_udp_port(), free_udp_port());
    let udp = |block: &str, id: &str, port: u16| {
        format!(
            "service {block}\n{{\n\tid = {id}\n\ttype = UNLISTED INTERNAL\n\tsocket_type = dgram\n\tbind = 127.0.0.1\n\tport = {port}\n}}\n"
        )
    };
    // `named` asks for port 0: only its name can give it the passed socket.
    let config = udp("echo", "named", 0) + &udp("daytime", "dated", by_addr);
    let dir = tempdir();
    let conf = dir.path().join("wasinetd.conf");
    std::fs::write(&conf, config).unwrap();
    let (named_l, by_addr_l) = (format!("127.0.0.1:{named}"), format!("127.0.0.1:{by_addr}"));
    let (mut child, log) = socket_activated(
        &[
            "--datagram",
            "-l",
            &named_l,
            "-l",
            &by_addr_l,
            "--fdname=named:whatever",
        ],
        &conf,
        dir.path(),
    );
    log.wait_for(&["Listening on 127.0.0.1:", &by_addr.to_string()]);
    // The first datagram starts the daemon; it waits in the passed socket.
    assert_eq!(ask_udp(named, b"ping"), b"ping");
    let day = String::from_utf8(ask_udp(by_addr, b"")).unwrap();
    assert!(day.ends_with("-UTC\r\n"), "{day}");
    log.wait_for(&[
        "service `named`: adopted the socket udp:127.0.0.1:",
        &named.to_string(),
        "name `named`",
    ]);
    log.wait_for(&[
        "service `dated`: adopted the socket udp:127.0.0.1:",
        &by_addr.to_string(),
        "matched by address",
    ]);
    log.wait_for(&[&format!("listening service=named addr=127.0.0.1:{named}")]);
    let _ = child.kill();
    let _ = child.wait();
}
