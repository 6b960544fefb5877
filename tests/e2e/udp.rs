//! UDP services (`socket_type = dgram`): one guest per datagram, the
//! datagram as its stdin, its stdout the one reply; internal services over
//! UDP (RFC 862-868); admission and floods.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::internal::{
    assert_chargen_lines, assert_daytime_is_now, assert_time_is_now, chargen_line,
};
use crate::support::*;

const DGRAM: &str = "\tsocket_type = dgram\n\tprotocol = udp\n\twait = yes";

/// A client socket on loopback that waits at most `wait` for a reply.
fn client(wait: Duration) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s
}

/// Sends `payload` to `addr` and returns the reply, or `None` if none
/// came within `wait`.
fn ask(addr: SocketAddr, payload: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let s = client(wait);
    s.send_to(payload, addr).unwrap();
    let mut buf = vec![0; 70_000];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => {
            assert_eq!(from, addr);
            Some(buf[..n].to_vec())
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// A reply is expected: waits for it.
fn reply(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    ask(addr, payload, PATIENCE).expect("no reply")
}

/// An internal service on UDP, named NAME with id `NAME-dgram`.
fn internal_dgram(name: &str) -> String {
    format!(
        "service {name}\n{{\n\tid = {name}-dgram\n\ttype = INTERNAL UNLISTED\n\tbind = 127.0.0.1\n\tport = 0\n{DGRAM}\n}}\n"
    )
}

#[test]
fn internal_services_answer_each_datagram() {
    let names = ["echo", "discard", "daytime", "time", "chargen"];
    let config = names.map(internal_dgram).concat();
    let ids = names.map(|n| format!("{n}-dgram"));
    let server = TestServer::start(&config, &ids.each_ref().map(String::as_str));
    assert_eq!(reply(server.addr("echo-dgram"), b"ping\n"), b"ping\n");
    assert_daytime_is_now(&String::from_utf8(reply(server.addr("daytime-dgram"), b"")).unwrap());
    assert_time_is_now(&reply(server.addr("time-dgram"), b"x"));
    for _ in 0..5 {
        // chargen: one datagram of 1 to 512 characters of the cycle (never
        // empty: a guest that writes nothing gets no reply).
        let text = reply(server.addr("chargen-dgram"), b"");
        assert!(text.len() <= 512, "{}", text.len());
        let first = chargen_line(0);
        assert_eq!(&text[..text.len().min(74)], &first[..text.len().min(74)]);
        assert_chargen_lines(&text);
    }
    // discard: no reply at all, and the guest ran to its end.
    assert_eq!(
        ask(
            server.addr("discard-dgram"),
            b"drop me",
            Duration::from_millis(300)
        ),
        None
    );
    server.log.wait_for(&["service=discard-dgram", "exit=0"]);
}

#[test]
fn a_datagram_guest_gets_the_payload_and_the_sender() {
    let config = service("upper", &module("upper"), DGRAM)
        + &service(
            "env",
            &module("probe"),
            &format!("\tserver_args = env\n{DGRAM}"),
        );
    let server = TestServer::start(&config, &["upper", "env"]);
    assert_eq!(reply(server.addr("upper"), b"abc\n"), b"ABC\n");
    let s = client(PATIENCE);
    s.send_to(b"", server.addr("env")).unwrap();
    let mut buf = vec![0; 65_536];
    let (n, _) = s.recv_from(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let port = s.local_addr().unwrap().port();
    assert!(text.contains("REMOTE_ADDR=127.0.0.1\n"), "{text}");
    assert!(text.contains("REMOTE_HOST=127.0.0.1\n"), "{text}");
    assert!(text.contains(&format!("REMOTE_PORT={port}\n")), "{text}");
    let line = server.log.wait_for(&["service=upper", "exit=0"]);
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
}

#[test]
fn wait_no_works_too_and_a_long_reply_is_truncated() {
    let extra = "\tsocket_type = dgram\n\twait = no\n\tserver_args = big 100000";
    let server = TestServer::start(&service("big", &module("probe"), extra), &["big"]);
    let out = reply(server.addr("big"), b"");
    assert_eq!(out.len(), 65_507);
    assert!(out.iter().all(|&b| b == b'x'));
    server
        .log
        .wait_for(&["service=big", "truncated to 65507 bytes"]);
}

#[test]
fn refused_datagrams_are_dropped_and_logged() {
    let extra = format!("{DGRAM}\n\tonly_from = 10.0.0.1");
    let server = TestServer::start(&service("upper", &module("upper"), &extra), &["upper"]);
    assert_eq!(
        ask(server.addr("upper"), b"abc\n", Duration::from_millis(300)),
        None
    );
    let line = server.log.wait_for(&["refused: address", "service=upper"]);
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(!server.log.has(&["exit=0"]));
}

/// The daemon's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_datagram_flood_is_bounded_by_instances_and_the_service_recovers() {
    let extra = format!("{DGRAM}\n\tinstances = 2\n\tserver_args = sleep 1");
    let mut server = TestServer::start(&service("slow", &module("probe"), &extra), &["slow"]);
    let addr = server.addr("slow");
    let before = rss_kib(server.child().id());
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let payload = vec![b'x'; 1024];
    for _ in 0..5_000 {
        // A full socket buffer on either side only drops more.
        let _ = flood.send_to(&payload, addr);
    }
    server
        .log
        .wait_for(&["service=slow", "dropped", "datagrams in the last second"]);
    server.log.wait_for(&["service=slow", "refused: instances"]);
    let after = rss_kib(server.child().id());
    assert!(server.is_running());
    assert!(
        after < before + 200 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // Once the two running guests are done, the service answers again.
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(out) = ask(addr, b"", Duration::from_secs(3)) {
            assert_eq!(out, b"sleeping\n");
            break;
        }
        assert!(Instant::now() < deadline, "no answer after the flood");
    }
    let summaries = server
        .log
        .lines()
        .into_iter()
        .filter(|l| l.contains("dropped"))
        .count();
    assert!(summaries <= 5, "{summaries} summary lines");
}
