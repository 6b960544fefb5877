//! The internal services (`type = INTERNAL`), each checked with a real
//! client against its RFC: echo (862), discard (863), chargen (864),
//! daytime (867), time (868).

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::*;

/// Seconds from 1900-01-01 to 1970-01-01 (RFC 868).
const EPOCH_1900: u64 = 2_208_988_800;

/// A `service NAME` block of an internal service on TCP, on a free port.
fn internal(name: &str, extra: &str) -> String {
    format!(
        "service {name}\n{{\n\ttype = INTERNAL UNLISTED\n\tbind = 127.0.0.1\n\tport = 0\n{extra}\n}}\n"
    )
}

/// Seconds since 1970, by the test's own clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Checks an RFC 868 answer against the test's clock.
pub fn assert_time_is_now(answer: &[u8]) {
    let bytes: [u8; 4] = answer.try_into().expect("four bytes");
    let since_1900 = u64::from(u32::from_be_bytes(bytes));
    let now = (unix_now() + EPOCH_1900) % (1 << 32);
    assert!(since_1900.abs_diff(now) <= 5, "{since_1900} vs {now}");
}

/// Checks an RFC 867 answer (`Sunday, November 22, 2026 05:10:00-UTC`)
/// against the test's clock, to the minute.
pub fn assert_daytime_is_now(answer: &str) {
    let line = answer.strip_suffix("\r\n").expect("one CR LF line");
    let (date, rest) = line.split_once(", ").unwrap();
    assert!(date.ends_with("day"), "{line}");
    assert!(rest.ends_with("-UTC"), "{line}");
    let hms = rest.rsplit(' ').next().unwrap().trim_end_matches("-UTC");
    let fields: Vec<u64> = hms.split(':').map(|f| f.parse().unwrap()).collect();
    let secs_of_day = fields[0] * 3600 + fields[1] * 60 + fields[2];
    let now = unix_now() % 86_400;
    let diff = secs_of_day.abs_diff(now);
    assert!(diff <= 5 || diff >= 86_400 - 5, "{line} vs {now}s");
}

/// Checks that `text` is chargen's stream: 72 printable characters and
/// CR LF per line, each line starting one character after the last.
pub fn assert_chargen_lines(text: &[u8]) {
    let mut previous: Option<u8> = None;
    for line in text.split_inclusive(|&b| b == b'\n') {
        if line.len() < 74 {
            // A partial line at the end of what was read.
            assert!(
                !line.ends_with(b"\n"),
                "{:?}",
                String::from_utf8_lossy(line)
            );
            break;
        }
        assert_eq!(line.len(), 74);
        assert!(line.ends_with(b"\r\n"));
        for pair in line[..72].windows(2) {
            let next = if pair[0] == b'~' { b' ' } else { pair[0] + 1 };
            assert_eq!(pair[1], next, "{:?}", String::from_utf8_lossy(line));
        }
        if let Some(p) = previous {
            let next = if p == b'~' { b' ' } else { p + 1 };
            assert_eq!(line[0], next);
        }
        previous = Some(line[0]);
    }
}

#[test]
fn internal_echo_discard_daytime_and_time_answer_on_tcp() {
    let config = ["echo", "discard", "daytime", "time"]
        .map(|n| internal(n, ""))
        .concat();
    let server = TestServer::start(&config, &["echo", "discard", "daytime", "time"]);
    assert_eq!(exchange_text(server.addr("echo"), "ping\n"), "ping\n");
    // discard: everything sent is read and dropped, then a clean end.
    let mut s = connect(server.addr("discard"));
    s.write_all(&vec![b'x'; 100_000]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut s), b"");
    assert_daytime_is_now(&exchange_text(server.addr("daytime"), ""));
    assert_time_is_now(&exchange(server.addr("time"), b""));
    server.log.wait_for(&["service=discard", "exit=0"]);
}

#[test]
fn internal_guest_is_chosen_by_service_name_not_id() {
    // xinetd's own files: `id = time-stream` in `service time`.
    let config = internal("time", "\tid = time-stream");
    let server = TestServer::start(&config, &["time-stream"]);
    assert_time_is_now(&exchange(server.addr("time-stream"), b""));
}

#[test]
fn chargen_streams_rotating_lines_until_the_client_closes() {
    let server = TestServer::start(&internal("chargen", ""), &["chargen"]);
    let mut s = connect(server.addr("chargen"));
    let mut text = vec![0; 74 * 300];
    s.read_exact(&mut text).unwrap();
    assert_eq!(&text[..74], &chargen_line(0)[..]);
    assert_chargen_lines(&text);
    drop(s);
    // The guest notices the closed connection and ends cleanly.
    server.log.wait_for(&["service=chargen", "exit=0"]);
}

#[test]
fn chargen_is_stopped_by_its_limits() {
    let server = TestServer::start(&internal("chargen", "\truntime_max = 300ms"), &["chargen"]);
    let mut s = connect(server.addr("chargen"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Read until the daemon ends it: a clean end of stream.
    let mut total = 0usize;
    let mut buf = vec![0; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => panic!("{e} after {total} bytes"),
        }
    }
    assert!(total > 74, "{total}");
    server.log.wait_for(&["service=chargen", "runtime limit"]);
}

/// Line `i` of chargen's cycle, with CR LF.
pub fn chargen_line(i: usize) -> Vec<u8> {
    let mut line: Vec<u8> = (0..72).map(|k| b' ' + ((i + k) % 95) as u8).collect();
    line.extend_from_slice(b"\r\n");
    line
}
