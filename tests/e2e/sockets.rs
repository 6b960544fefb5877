//! Where and how services listen: several `bind` addresses, IPv4 / IPv6
//! families and `v6only`, `backlog`, and the `flags` that reach accepted
//! sockets (NODELAY, KEEPALIVE) or the guest (NAMEINARGS).

use std::net::{SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Command;

use crate::support::{TestServer, exchange_text, module, service};

const GET: &str = "GET / HTTP/1.0\r\n\r\n";

/// The address on a `listening service=NAME addr=...` line that has `part`.
fn listening(server: &TestServer, name: &str, part: &str) -> SocketAddr {
    let line = server
        .log
        .wait_for(&[&format!("listening service={name} addr="), part]);
    line.rsplit("addr=").next().unwrap().trim().parse().unwrap()
}

/// A service block on `port = 0` without the `bind` of `support::service`.
fn unbound(name: &str, extra: &str) -> String {
    format!(
        "service {name}\n{{\n\ttype = UNLISTED\n\tport = 0\n\tserver = {}\n{extra}\n}}\n",
        module("hello-http").display()
    )
}

#[test]
fn two_bind_addresses_are_two_listeners_on_one_port() {
    let config = unbound("web", "\tbind = 127.0.0.1 ::1");
    let server = TestServer::start(&config, &[]);
    let v4 = listening(&server, "web", "addr=127.0.0.1:");
    let v6 = listening(&server, "web", "addr=[::1]:");
    assert_eq!(v4.port(), v6.port(), "one service, one port");
    assert!(exchange_text(v4, GET).ends_with("Hello, World!"));
    assert!(exchange_text(v6, GET).ends_with("Hello, World!"));
    server
        .log
        .wait_for(&["exit=0 service=web", "peer=127.0.0.1:"]);
    server.log.wait_for(&["exit=0 service=web", "peer=[::1]:"]);
}

#[test]
fn flags_ipv6_is_dual_stack_unless_v6only() {
    let config =
        unbound("dual", "\tflags = IPv6") + &unbound("only6", "\tflags = IPv6\n\tv6only = yes");
    let server = TestServer::start(&config, &[]);
    let dual = listening(&server, "dual", "addr=[::]:");
    let only6 = listening(&server, "only6", "addr=[::]:");
    let v4 = |a: SocketAddr| SocketAddr::from(([127, 0, 0, 1], a.port()));
    let v6 = |a: SocketAddr| SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()));
    assert!(exchange_text(v4(dual), GET).ends_with("Hello, World!"));
    assert!(exchange_text(v6(dual), GET).ends_with("Hello, World!"));
    // The log shows a dual-stack socket's IPv4 client as plain IPv4, as
    // xinetd does (and REMOTE_ADDR has it).
    server
        .log
        .wait_for(&["exit=0 service=dual", "peer=127.0.0.1:"]);
    server.log.wait_for(&["exit=0 service=dual", "peer=[::1]:"]);
    assert!(exchange_text(v6(only6), GET).ends_with("Hello, World!"));
    let refused = TcpStream::connect(v4(only6)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn backlog_sets_the_listen_queue() {
    let config = service("small", &module("hello-http"), "\tbacklog = 17")
        + &service("default", &module("hello-http"), "");
    let server = TestServer::start(&config, &["small", "default"]);
    // For a listening socket, `ss` shows the backlog as Send-Q.
    let send_q = |addr: SocketAddr| {
        let out = Command::new("ss")
            .args(["-ltnH", &format!("sport = :{}", addr.port())])
            .output()
            .expect("ss (iproute2) runs");
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(send_q(server.addr("small")), "17");
    assert_eq!(send_q(server.addr("default")), "4096");
}

/// The daemon's own end of `client`, duplicated into this process with
/// pidfd_getfd(2): its socket is found by inode through /proc.
fn daemon_end(pid: u32, client: &TcpStream) -> socket2::Socket {
    let (here, there) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    let port_of = |field: &str| u16::from_str_radix(field.rsplit(':').next().unwrap(), 16).unwrap();
    let inode = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| port_of(f[1]) == there.port() && port_of(f[2]) == here.port())
        .map(|f| f[9].to_owned())
        .expect("the daemon's end of the connection is in /proc/PID/net/tcp");
    let target = format!("socket:[{inode}]");
    let fd: i32 = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_link(p).is_ok_and(|l| l.to_str() == Some(&target)))
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .expect("the daemon holds the socket");
    // SAFETY: plain syscalls; each result is checked before it is owned.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let pidfd = OwnedFd::from_raw_fd(pidfd);
        let dup = libc::syscall(
            libc::SYS_pidfd_getfd,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd),
            fd,
            0,
        ) as i32;
        assert!(dup >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
        socket2::Socket::from_raw_fd(dup)
    }
}

#[test]
fn nodelay_and_keepalive_reach_accepted_sockets() {
    // `readall` waits for the client's end of stream, holding the socket.
    let args = "\tserver_args = readall";
    let config = service(
        "tuned",
        &module("probe"),
        &format!("{args}\n\tflags = NODELAY KEEPALIVE REUSE"),
    ) + &service("plain", &module("probe"), args);
    let server = TestServer::start(&config, &["tuned", "plain"]);
    let pid = server.child().id();
    for (name, expected) in [("tuned", true), ("plain", false)] {
        let client = TcpStream::connect(server.addr(name)).unwrap();
        // The connection is accepted once the guest runs; the guest logs
        // nothing before its end, so wait for the kernel's accept instead.
        let sock = (0..200)
            .find_map(|_| {
                let found = std::panic::catch_unwind(|| daemon_end(pid, &client)).ok();
                if found.is_none() {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                found
            })
            .expect("the daemon accepted the connection");
        assert_eq!(sock.tcp_nodelay().unwrap(), expected, "{name}: TCP_NODELAY");
        assert_eq!(sock.keepalive().unwrap(), expected, "{name}: SO_KEEPALIVE");
    }
}

#[test]
fn nameinargs_makes_the_first_server_arg_argv0() {
    let config = service(
        "named",
        &module("probe"),
        "\tflags = NAMEINARGS\n\tserver_args = in.probe env",
    );
    let server = TestServer::start(&config, &["named"]);
    let out = exchange_text(server.addr("named"), "");
    assert!(out.starts_with("arg 0=in.probe\narg 1=env\nenv "), "{out}");
}

#[test]
fn any_ipv4_and_any_ipv6_share_a_port() {
    // `[::]` is made IPv6-only here (it would take IPv4 clients and collide
    // with `0.0.0.0` on the same port otherwise).
    let server = TestServer::start(&unbound("both", "\tbind = 0.0.0.0 ::"), &[]);
    let v4 = listening(&server, "both", "addr=0.0.0.0:");
    let v6 = listening(&server, "both", "addr=[::]:");
    assert_eq!(v4.port(), v6.port());
    let local4 = SocketAddr::from(([127, 0, 0, 1], v4.port()));
    let local6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v6.port()));
    assert!(exchange_text(local4, GET).ends_with("Hello, World!"));
    assert!(exchange_text(local6, GET).ends_with("Hello, World!"));
    // The IPv4 client came through the IPv4 listener: no mapped address.
    server
        .log
        .wait_for(&["exit=0 service=both", "peer=127.0.0.1:"]);
}
