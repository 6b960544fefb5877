//! Small writes gathered into one send (`sandbox::stdio::stdout`): what a
//! client sees is unchanged. Each answer of a line-at-a-time exchange
//! arrives before the client sends the next line; an answer written in
//! pieces arrives whole and in order; no piece is lost however the guest
//! ends; and what a guest wrote before it computes for a while reaches the
//! client while it computes. For modules and components alike.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::*;

/// Reads exactly `want.len()` bytes, failing the test after [`PATIENCE`]:
/// an answer held back until the guest ends would never come, since the
/// guest waits for the client's next line.
fn expect(stream: &mut TcpStream, want: &str) {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut got = vec![0u8; want.len()];
    stream
        .read_exact(&mut got)
        .unwrap_or_else(|e| panic!("waiting for {want:?}: {e}"));
    assert_eq!(String::from_utf8_lossy(&got), want);
}

fn pieces(n: usize) -> String {
    (0..n).map(|i| format!("piece {i}\n")).collect()
}

#[test]
fn a_line_at_a_time_exchange_gets_each_answer_before_its_next_line() {
    for guest in [module("echo"), component("echo")] {
        let server = TestServer::start(&service("talk", &guest, ""), &["talk"]);
        let mut stream = connect(server.addr("talk"));
        for i in 0..5 {
            let line = format!("line {i}\n");
            stream.write_all(line.as_bytes()).unwrap();
            expect(&mut stream, &line);
        }
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_all(&mut stream), b"");
    }
}

#[test]
fn an_answer_in_twenty_pieces_arrives_whole_and_in_order() {
    for guest in [module("probe"), component("probe")] {
        let config = service("pieces", &guest, "\tserver_args = pieces 20");
        let server = TestServer::start(&config, &["pieces"]);
        let answer = exchange_text(server.addr("pieces"), "");
        assert_eq!(answer, pieces(20));
    }
}

#[test]
fn no_piece_is_lost_however_the_guest_ends() {
    for guest in [module("probe"), component("probe")] {
        // A component's exit is ok or error: any other status is 1.
        let three = if guest.to_string_lossy().contains("wasip2") {
            "exit=1"
        } else {
            "exit=3"
        };
        let ends = [
            ("exit:3", three),
            ("panic", "trap"),
            ("spin", "cpu limit"),
            ("read", "exit=0"),
        ];
        for (end, outcome) in ends {
            let config = service(
                "pieces",
                &guest,
                &format!("\tserver_args = pieces 20 {end}\n\trlimit_cpu = 300ms"),
            );
            let server = TestServer::start(&config, &["pieces"]);
            let answer = exchange_text(server.addr("pieces"), "");
            let spun = if end == "spin" { "spinning\n" } else { "" };
            assert_eq!(answer, pieces(20) + spun, "{end}");
            server.log.wait_for(&["service=pieces", outcome]);
        }
    }
}

#[test]
fn what_a_guest_wrote_reaches_its_client_while_it_computes() {
    for guest in [module("probe"), component("probe")] {
        let config = service(
            "busy",
            &guest,
            "\tserver_args = pieces 3 spin\n\trlimit_cpu = 30s",
        );
        let server = TestServer::start(&config, &["busy"]);
        let mut stream = connect(server.addr("busy"));
        expect(&mut stream, &(pieces(3) + "spinning\n"));
        // The guest is still computing: no end of stream yet, only a wait.
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut byte = [0u8; 1];
        let err = stream.read(&mut byte).expect_err("the guest still runs");
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{err}"
        );
    }
}

#[test]
fn the_ordinary_hello_answers_byte_for_byte_as_hello_http() {
    let request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut answers = Vec::new();
    for guest in [
        module("hello-http"),
        module("hello-std"),
        component("hello-std"),
    ] {
        let server = TestServer::start(&service("hello", &guest, ""), &["hello"]);
        answers.push(exchange_text(server.addr("hello"), request));
        server.log.wait_for(&["service=hello", "exit=0"]);
    }
    assert!(
        answers[0].ends_with("\r\n\r\nHello, World!"),
        "{}",
        answers[0]
    );
    assert_eq!(answers[1], answers[0]);
    assert_eq!(answers[2], answers[0]);
}
