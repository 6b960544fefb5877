//! Slots under attack: one address opening connections and trickling
//! bytes (slowloris), a UDP flood from anywhere, clients that say nothing,
//! reset, or leave a relay behind. Each holds at most its share, or gives
//! its slot back within a stated bound; a neighbour keeps answering.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::*;

#[test]
fn one_address_trickling_bytes_holds_at_most_its_share_of_the_defaults() {
    // The defaults: --limit 1000, so one source holds at most 125 guests
    // across services that leave `per_source` unset.
    let config = neighbour() + &service("echo", &module("echo"), "");
    let server = TestServer::start(&config, &["hello", "echo"]);
    let before = footprint(&server);
    let echo = server.addr("echo");
    let mut attackers: Vec<TcpStream> = (0..600).map(|_| connect_from("127.0.0.2", echo)).collect();
    // A byte on each, now and then, as slowloris does.
    for s in &mut attackers {
        let _ = s.write_all(b"x");
    }
    server
        .log
        .wait_for(&["refused: per_source", "service=echo"]);
    // The rest of the world is not held up.
    assert_neighbour_answers(&server);
    let answer = {
        let mut s = connect_from("127.0.0.3", echo);
        s.write_all(b"hi\n").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        String::from_utf8(read_all(&mut s)).unwrap()
    };
    assert_eq!(answer, "hi\n");
    for s in &mut attackers {
        let _ = s.write_all(b"x");
    }
    // Exactly the share is running for the attacker's address.
    let mark = server.log.len();
    signal(server.child(), "USR1");
    server.log.wait_for_after(mark, &["dump: end"]);
    let held = server.log.lines()[mark..]
        .iter()
        .filter(|l| l.contains("dump: conn=") && l.contains("peer=127.0.0.2:"))
        .count();
    assert_eq!(held, 125, "one address holds its eighth of --limit");
    // The refusals did not flood the log: the first of each second in
    // full, the rest summed up.
    server.log.wait_for(&[
        "service=echo refused",
        "connections in the last second: refused per_source=",
    ]);
    let full = server
        .log
        .lines()
        .iter()
        .filter(|l| l.contains("refused: per_source"))
        .count();
    assert!(full <= 10, "{full} refusal lines for 475 refusals");
    drop(attackers);
    assert_back_to(&server, before, 32 << 10);
}

#[test]
fn a_client_that_says_nothing_gives_its_slot_back_at_idle_timeout() {
    let config = neighbour()
        + &service(
            "echo",
            &module("echo"),
            "\tidle_timeout = 1s\n\truntime_max = 60s",
        );
    let server = TestServer::start(&config, &["hello", "echo"]);
    let started = Instant::now();
    let mut quiet = connect(server.addr("echo"));
    let mut rest = Vec::new();
    quiet.read_to_end(&mut rest).unwrap();
    let lasted = started.elapsed();
    server.log.wait_for(&["idle timeout", "service=echo"]);
    // Between 1 and 1.5 s after the last byte; slack for a loaded machine.
    assert!(lasted >= Duration::from_secs(1), "{lasted:?}");
    assert!(lasted < Duration::from_secs(4), "{lasted:?}");
}

#[test]
fn a_udp_flood_takes_at_most_the_datagram_share_and_tcp_goes_on() {
    // --limit 40: datagram services hold at most 20 guests, each of which
    // here never ends by itself.
    let config = neighbour()
        + &service(
            "udp",
            &module("probe"),
            "\tsocket_type = dgram\n\tprotocol = udp\n\twait = yes\n\tserver_args = sleep\n\truntime_max = 30s",
        )
        + &service("echo", &module("echo"), "");
    let server = TestServer::start_with(&config, &["hello", "udp", "echo"], |cmd| {
        cmd.args(["--limit", "40"]);
    });
    // From many sources, as forged ones would be.
    for i in 1..=200u8 {
        let flood = UdpSocket::bind(format!("127.0.1.{i}:0")).unwrap();
        for _ in 0..10 {
            let _ = flood.send_to(b"x", server.addr("udp"));
        }
    }
    server.log.wait_for(&["refused: datagrams", "service=udp"]);
    // Two idle TCP clients on top, and still every TCP service answers.
    let _idle: Vec<_> = (0..2).map(|_| connect(server.addr("echo"))).collect();
    assert_neighbour_answers(&server);
    let mut s = connect(server.addr("echo"));
    s.write_all(b"still\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut s), b"still\n");
}

#[test]
fn a_client_that_resets_ends_its_guest_at_once() {
    let config = neighbour()
        + &service(
            "sleeper",
            &module("probe"),
            "\tserver_args = sleep\n\truntime_max = 60s",
        );
    let server = TestServer::start(&config, &["hello", "sleeper"]);
    let before = footprint(&server);
    let mut s = connect(server.addr("sleeper"));
    let mut first = [0u8; 9];
    s.read_exact(&mut first).unwrap();
    // Close with unread data pending... and a zero linger: a reset.
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    let reset = Instant::now();
    drop(s);
    let line = server.log.wait_for(&["client gone", "service=sleeper"]);
    assert!(reset.elapsed() < Duration::from_secs(3), "{line}");
    assert_back_to(&server, before, 32 << 10);
}

#[test]
fn relays_whose_clients_left_give_their_slots_back() {
    // A backend that accepts and never reads.
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sink = backend.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for conn in backend.incoming().take(20) {
            kept.push(conn.unwrap());
        }
        std::thread::sleep(Duration::from_secs(10));
        drop(kept);
    });
    let config = neighbour()
        + &format!(
            "service relay\n{{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tport = 0\n\tredirect = {} {}\n\tidle_timeout = 1s\n\truntime_max = 60s\n}}\n",
            sink.ip(),
            sink.port()
        );
    let server = TestServer::start(&config, &["hello", "relay"]);
    let started = Instant::now();
    for _ in 0..20 {
        let mut s = connect(server.addr("relay"));
        // More than the backend's buffers take, then gone.
        let _ = s.set_nonblocking(true);
        let _ = s.write(&vec![b'x'; 4 << 20]);
        drop(s);
    }
    for _ in 0..20 {
        server.log.wait_for(&["idle timeout", "service=relay"]);
    }
    let deadline = Instant::now() + PATIENCE;
    while server
        .log
        .lines()
        .iter()
        .filter(|l| l.contains("idle timeout") && l.contains("service=relay"))
        .count()
        < 20
    {
        assert!(Instant::now() < deadline, "not every relay ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Within idle_timeout and a half of the last byte, not runtime_max.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_neighbour_answers(&server);
    drop(held);
}

#[test]
fn a_half_closed_client_still_gets_its_answer() {
    let config = service(
        "slow",
        &module("hostile"),
        "\tserver_args = slow-answer 1500\n\tidle_timeout = 5s",
    );
    let server = TestServer::start(&config, &["slow"]);
    let mut s = connect(server.addr("slow"));
    s.write_all(b"question\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut s), b"answer\n");
    server.log.wait_for(&["exit=0", "service=slow"]);
}
