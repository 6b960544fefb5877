//! The daemon's other signals: dumping its state (SIGUSR1), stopping with
//! a drain (SIGTERM) and a second signal. Reloading (SIGHUP) is `reload`'s.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::*;

/// A client of `probe sleep`, once its guest runs.
pub fn sleeping_client(addr: SocketAddr) -> TcpStream {
    let mut client = connect(addr);
    let mut buf = [0; 9];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"sleeping\n");
    client
}

pub fn sleeper(secs: &str) -> String {
    service(
        "slow",
        &module("probe"),
        &format!("\tserver_args = sleep {secs}\n\truntime_max = 60s"),
    )
}

#[test]
fn sigusr1_dumps_services_and_the_connection_in_flight() {
    let server = TestServer::start(&sleeper(""), &["slow"]);
    let client = sleeping_client(server.addr("slow"));
    let peer = format!("peer={}", client.local_addr().unwrap());
    let mark = server.log.len();
    signal(server.child(), "USR1");
    let conn = server
        .log
        .wait_for_after(mark, &["dump: conn=", "service=slow", &peer]);
    let age: f64 = conn
        .rsplit("age_s=")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((0.0..60.0).contains(&age), "{conn}");
    server.log.wait_for_after(
        mark,
        &["dump: service=slow ", "active=1", "listening=127.0.0.1:"],
    );
    server
        .log
        .wait_for_after(mark, &["dump: pid=", "in_flight=1"]);
    server.log.wait_for_after(mark, &["dump: end"]);
}

#[test]
fn sigterm_drains_a_slow_guest_then_exits_zero() {
    let mut server = TestServer::start_with(&sleeper("2"), &["slow"], |cmd| {
        cmd.args(["--shutdown-grace", "30s"]);
    });
    let addr = server.addr("slow");
    let mut client = sleeping_client(addr);
    signal(server.child(), "TERM");
    server.log.wait_for(&["stopped accepting"]);
    // No new clients, but the running one gets its whole answer.
    assert_eq!(
        TcpStream::connect(addr).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    assert!(server.is_running());
    assert!(
        read_all(&mut client).is_empty(),
        "end of stream after the guest"
    );
    let status = server
        .wait(PATIENCE)
        .expect("the daemon exits once drained");
    assert!(status.success(), "{status}");
    server.log.wait_for(&["all connections finished; exiting"]);
}

#[test]
fn a_second_sigterm_ends_a_draining_guest_at_once() {
    let mut server = TestServer::start_with(&sleeper(""), &["slow"], |cmd| {
        cmd.args(["--shutdown-grace", "60s"]);
    });
    let _client = sleeping_client(server.addr("slow"));
    signal(server.child(), "TERM");
    server.log.wait_for(&["stopped accepting"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.is_running(), "the guest is still being waited for");
    let asked = Instant::now();
    signal(server.child(), "TERM");
    let status = server.wait(PATIENCE).expect("the daemon exits");
    assert!(status.success(), "{status}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    server
        .log
        .wait_for(&["second stop request; ending running guests"]);
}
