//! The daemon's other signals: dumping its state (SIGUSR1), stopping with
//! a drain (SIGTERM), with a drain delay first (`--drain-delay`), and a
//! second signal. Reloading (SIGHUP) is `reload`'s.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
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
        .wait_for(&["another stop request; ending running guests"]);
}

/// `slow` (sleeping `secs`) and `hi` (answering `hello` at once).
fn slow_and_hi(secs: &str) -> String {
    sleeper(secs) + &service("hi", &module("probe"), "\tserver_args = greet")
}

/// The daemon on `config` with `--admin 127.0.0.1:0` and `args`, telling
/// systemd's notifications to `notify`; and its admin address.
fn start_notifying(
    config: &str,
    notify: &std::path::Path,
    args: &[&str],
) -> (TestServer, SocketAddr) {
    let server = TestServer::start_with(config, &["slow", "hi"], |cmd| {
        cmd.args(["--admin", "127.0.0.1:0"])
            .args(args)
            .env("NOTIFY_SOCKET", notify);
    });
    let line = server.log.wait_for(&["admin listening addr="]);
    let admin = line.rsplit("addr=").next().unwrap().trim().parse().unwrap();
    (server, admin)
}

/// The next notification on `socket` that is not a periodic `STATUS=`.
fn next_notification(socket: &UnixDatagram) -> String {
    let mut buf = [0; 4096];
    loop {
        let n = socket.recv(&mut buf).expect("a notification");
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !message.starts_with("STATUS=") {
            return message;
        }
    }
}

#[test]
fn drain_delay_turns_not_ready_keeps_serving_then_stops_accepting() {
    let dir = tempdir();
    let notify = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let (mut server, admin) = start_notifying(
        &slow_and_hi("3"),
        &notify,
        &["--drain-delay", "2s", "--shutdown-grace", "30s"],
    );
    let (slow, hi) = (server.addr("slow"), server.addr("hi"));
    assert!(next_notification(&socket).starts_with("READY=1\n"));
    assert_eq!(get(admin, "/readyz"), (200, "ok\n".into()));
    let mut before = sleeping_client(slow);

    signal(server.child(), "TERM");
    // Not ready at once, and systemd hears the stop at once; alive still.
    let stopping = next_notification(&socket);
    assert!(
        stopping.starts_with("STOPPING=1\nSTATUS=draining"),
        "{stopping}"
    );
    server
        .log
        .wait_for(&["draining: not ready (/readyz 503), still accepting for 2s"]);
    assert_eq!(
        get(admin, "/readyz"),
        (503, "unavailable: draining\n".into())
    );
    assert_eq!(get(admin, "/livez").0, 200);
    // New connections during the delay are served in full: a quick one,
    // and one that is still running when the delay ends.
    assert_eq!(exchange_text(hi, ""), "hello\n");
    let mut during = sleeping_client(slow);
    assert!(
        !server.log.has(&["stopped accepting"]),
        "the delay ended before its connections were accepted:\n{}",
        server.log.lines().join("\n")
    );

    server.log.wait_for(&["drain delay of 2s over"]);
    server
        .log
        .wait_for(&["stopped accepting; waiting up to 30s"]);
    // The listeners are closed: nothing new is accepted.
    for addr in [hi, slow] {
        let refused = TcpStream::connect(addr).map(|mut s| read_all(&mut s));
        assert_eq!(refused.unwrap_err().kind(), ErrorKind::ConnectionRefused);
    }
    assert_eq!(
        get(admin, "/readyz"),
        (503, "unavailable: stopping\n".into())
    );
    assert!(server.is_running(), "two connections are still running");
    // Both running connections get their whole answer, then the daemon exits.
    assert!(
        read_all(&mut before).is_empty(),
        "end of stream after the guest"
    );
    assert!(
        read_all(&mut during).is_empty(),
        "end of stream after the guest"
    );
    let status = server
        .wait(PATIENCE)
        .expect("the daemon exits once drained");
    assert!(status.success(), "{status}");
    server.log.wait_for(&["all connections finished; exiting"]);
    assert!(!server.log.has(&["ending running guests"]));
}

#[test]
fn a_second_sigterm_cuts_the_drain_delay_short() {
    let dir = tempdir();
    let notify = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    // A delay far longer than the test's patience: only the second signal
    // can end it.
    let (mut server, admin) = start_notifying(
        &slow_and_hi("60"),
        &notify,
        &["--drain-delay", "600s", "--shutdown-grace", "600s"],
    );
    let hi = server.addr("hi");
    let _running = sleeping_client(server.addr("slow"));
    signal(server.child(), "TERM");
    server.log.wait_for(&["draining: not ready"]);
    assert_eq!(exchange_text(hi, ""), "hello\n");

    // The second one stops accepting at once, and drains as usual ...
    signal(server.child(), "TERM");
    server
        .log
        .wait_for(&["another stop request; cutting the drain delay short"]);
    server
        .log
        .wait_for(&["stopped accepting; waiting up to 600s"]);
    assert_eq!(
        TcpStream::connect(hi).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    assert_eq!(get(admin, "/readyz").0, 503);
    assert!(server.is_running(), "the sleeping guest is waited for");
    // ... and the third ends the running guest.
    signal(server.child(), "TERM");
    let status = server.wait(PATIENCE).expect("the daemon exits");
    assert!(status.success(), "{status}");
    server
        .log
        .wait_for(&["another stop request; ending running guests"]);
}
