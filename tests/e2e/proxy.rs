//! `proxy_protocol` / `proxy_from`: a service behind a balancer that sends
//! the PROXY header. The tests play the balancer on 127.0.0.1 and check
//! that the client the header names is the peer everywhere (`REMOTE_*`,
//! the connection interface, `only_from`, the log), that the guest's stdin
//! starts right after the header, and that a header from an untrusted
//! sender, or a bad, cut or stalled one, is refused with its reason before
//! any guest starts.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use crate::support::*;

/// The balancer's side of `proxy_from`, and the client it speaks for.
const PROXIED: &str = "\tproxy_protocol = v1 v2\n\tproxy_from = 127.0.0.1";
const CLIENT: &str = "192.0.2.7:4242";

fn v1(client: &str) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    let server = if client.is_ipv4() { "127.0.0.1" } else { "::1" };
    format!(
        "PROXY {family} {} {server} {} 80\r\n",
        client.ip(),
        client.port()
    )
    .into_bytes()
}

/// A v2 `PROXY` header for `client` (with a NOOP TLV, to be skipped).
fn v2(client: &str) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    let (family, mut body) = match client {
        SocketAddr::V4(a) => (
            0x11,
            [a.ip().octets().to_vec(), vec![127, 0, 0, 1]].concat(),
        ),
        SocketAddr::V6(a) => (
            0x21,
            [a.ip().octets(), Ipv6Addr::LOCALHOST.octets()].concat(),
        ),
    };
    body.extend_from_slice(&client.port().to_be_bytes());
    body.extend_from_slice(&80u16.to_be_bytes());
    body.extend_from_slice(&[0x04, 0, 3, 0, 0, 0]);
    v2_raw(0x21, family, &body)
}

/// A v2 header: version and command byte, family byte, then `body`.
fn v2_raw(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[command, family]);
    h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    h.extend_from_slice(body);
    h
}

/// `key=value` lines (whoami) or `env KEY=value` lines (probe env).
fn value<'a>(answer: &'a str, key: &str) -> &'a str {
    answer
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {answer:?}"))
}

/// The `conn=` of a log line.
fn conn_of(line: &str) -> String {
    line.split(" conn=")
        .nth(1)
        .unwrap()
        .split([' ', ':'])
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn the_header_client_is_remote_addr_and_the_log_peer() {
    let config = service(
        "env",
        &module("probe"),
        &format!("\tserver_args = env\n{PROXIED}"),
    );
    let server = TestServer::start(&config, &["env"]);
    let addr = server.addr("env");
    for (header, client) in [
        (v1(CLIENT), CLIENT),
        (v2(CLIENT), CLIENT),
        (v1("[2001:db8::7]:4243"), "[2001:db8::7]:4243"),
    ] {
        let out = String::from_utf8(exchange(addr, &header)).unwrap();
        let client: SocketAddr = client.parse().unwrap();
        let ip = client.ip().to_string();
        assert_eq!(value(&out, "env REMOTE_ADDR="), ip, "{out}");
        assert_eq!(value(&out, "env REMOTE_HOST="), ip, "{out}");
        assert_eq!(value(&out, "env REMOTE_PORT="), client.port().to_string());
        server
            .log
            .wait_for(&["exit=0", "service=env ", &format!("peer={client} ")]);
    }
}

#[test]
fn a_component_sees_the_header_client_as_its_peer() {
    let config = service("who", &component("whoami"), PROXIED);
    let server = TestServer::start(&config, &["who"]);
    let addr = server.addr("who");
    for client in [CLIENT, "[2001:db8::7]:4243"] {
        let out = String::from_utf8(exchange(addr, &v2(client))).unwrap();
        assert_eq!(value(&out, "peer="), client, "{out}");
        // The balancer connected to the service's own address.
        assert_eq!(value(&out, "local="), addr.to_string(), "{out}");
        let line = server
            .log
            .wait_for(&["exit=0", &format!(" conn={} ", value(&out, "conn="))]);
        assert!(line.contains(&format!("peer={client} ")), "{line}");
    }
}

#[test]
fn stdin_is_exactly_the_bytes_after_the_header() {
    let config = service("echo", &module("echo"), PROXIED);
    let server = TestServer::start(&config, &["echo"]);
    let payload = b"\r\n\r\nPROXY is not read twice\nand \0 binary\xff\n";
    for header in [v1(CLIENT), v2(CLIENT)] {
        let sent = [header.as_slice(), payload].concat();
        assert_eq!(exchange(server.addr("echo"), &sent), payload);
    }
}

#[test]
fn only_from_applies_to_the_header_client_not_the_balancer() {
    let config = service(
        "env",
        &module("probe"),
        &format!("\tserver_args = env\n{PROXIED}\n\tonly_from = 127.0.0.0/8 192.0.2.7"),
    );
    let server = TestServer::start(&config, &["env"]);
    let addr = server.addr("env");
    assert!(exchange(addr, &v2("198.51.100.9:5000")).is_empty());
    server
        .log
        .wait_for(&["refused: address", "peer=198.51.100.9:5000"]);
    let out = String::from_utf8(exchange(addr, &v2(CLIENT))).unwrap();
    assert_eq!(value(&out, "env REMOTE_ADDR="), "192.0.2.7");
    // A health check (LOCAL) is the balancer itself, which is let in.
    let local = v2_raw(0x20, 0x00, &[]);
    let out = String::from_utf8(exchange(addr, &local)).unwrap();
    assert_eq!(value(&out, "env REMOTE_ADDR="), "127.0.0.1", "{out}");
    let unknown = b"PROXY UNKNOWN\r\n";
    let out = String::from_utf8(exchange(addr, unknown)).unwrap();
    assert_eq!(value(&out, "env REMOTE_ADDR="), "127.0.0.1", "{out}");
}

/// Services `p0`..`p{n-1}` whose guest writes to stderr first, so any
/// instance shows in the log; their header bound is 300 ms
/// (`idle_timeout`). One listener per case: a listener logs one refusal a
/// second in full and sums up the rest.
fn tripwires(n: usize, extra: &str) -> TestServer {
    let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    let config: String = names
        .iter()
        .map(|name| {
            let attrs = format!("\tserver_args = stderr 1\n\tidle_timeout = 300ms\n{extra}");
            service(name, &module("probe"), &attrs)
        })
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    TestServer::start(&config, &names)
}

/// `service` refused a connection with `refused: proxy (WHY)`, and no
/// guest ran for it.
fn refused_for(server: &TestServer, service: &str, why: &str) {
    let line = server.log.wait_for(&[
        "refused: proxy",
        &format!("({why})"),
        &format!("service={service} "),
    ]);
    let conn = conn_of(&line);
    assert!(
        !server.log.has(&["stderr line", &format!("conn={conn}:")]),
        "a guest ran for conn {conn}"
    );
}

#[test]
fn an_untrusted_sender_is_refused_header_or_not() {
    let server = tripwires(2, "\tproxy_protocol = v2\n\tproxy_from = 127.0.0.2");
    for (service, sent) in [("p0", v2(CLIENT)), ("p1", b"hello\n".to_vec())] {
        assert!(exchange(server.addr(service), &sent).is_empty());
        refused_for(&server, service, "sender not in proxy_from");
    }
    let line = server.log.wait_for(&["refused: proxy", "peer=127.0.0.1:"]);
    assert!(!line.contains("192.0.2.7"), "{line}");
    let addr = server.addr("p0");
    // The trusted balancer is served, with the client as peer.
    let mut s = connect_from("127.0.0.2", addr);
    s.write_all(&v2(CLIENT)).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(String::from_utf8(read_all(&mut s)).unwrap(), "done\n");
    server.log.wait_for(&["exit=0", &format!("peer={CLIENT} ")]);
    assert!(server.log.has(&["stderr line 0", "service=p0 "]));
}

#[test]
fn bad_cut_and_stalled_headers_are_refused_before_a_guest() {
    let server = tripwires(6, "\tproxy_protocol = v1 v2\n\tproxy_from = 127.0.0.1");
    let mut bad_signature = v2(CLIENT);
    bad_signature[8] = b'X';
    let cases: [(Vec<u8>, &str); 5] = [
        (
            b"PROXY TCP4 192.0.2.999 127.0.0.1 1 2\r\n".to_vec(),
            "malformed v1 header",
        ),
        (bad_signature, "not a PROXY protocol header"),
        (
            b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            "not a PROXY protocol header",
        ),
        (v2_raw(0x21, 0x11, &[1, 2, 3]), "malformed v2 header"),
        (
            v2(CLIENT)[..20].to_vec(),
            "truncated: end of stream before a complete header",
        ),
    ];
    for (i, (sent, why)) in cases.into_iter().enumerate() {
        let service = format!("p{i}");
        assert!(exchange(server.addr(&service), &sent).is_empty(), "{why}");
        refused_for(&server, &service, why);
    }
    // Stalled: half a header, then nothing; refused within the bound.
    let mut s = connect(server.addr("p5"));
    s.write_all(b"PROXY TCP4 192.0.2.7 ").unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "closed after {:?}, not within the 300 ms bound",
        started.elapsed()
    );
    refused_for(&server, "p5", "no complete header in time");
    assert!(!server.log.has(&["stderr line"]), "no guest ever ran");
}

#[test]
fn a_version_not_listed_is_refused() {
    let server = tripwires(1, "\tproxy_protocol = v2\n\tproxy_from = 127.0.0.1");
    assert!(exchange(server.addr("p0"), &v1(CLIENT)).is_empty());
    refused_for(&server, "p0", "a v1 header, and only v2 is accepted");
}
