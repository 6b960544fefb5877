//! `redirect = HOST PORT`: no guest; the daemon relays each admitted
//! connection to a real backend (a std listener in the test), bytes both
//! ways, half-closes carried through, and logs the relay like a guest.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::{PATIENCE, TestServer, connect, read_all};

/// A `redirect` service block to `target` (more lines in `extra`).
fn redirected(name: &str, target: SocketAddr, extra: &str) -> String {
    format!(
        "service {name}\n{{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tport = 0\n\tredirect = {} {}\n{extra}\n}}\n",
        target.ip(),
        target.port()
    )
}

/// A backend that runs `handle` on each connection in a thread of its own,
/// and counts the connections it accepted.
fn backend(handle: fn(TcpStream)) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            count.fetch_add(1, Ordering::SeqCst);
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            std::thread::spawn(move || handle(stream));
        }
    });
    (addr, accepted)
}

/// Echoes until the client's end of stream, then closes.
fn echo(mut s: TcpStream) {
    let mut buf = [0; 4096];
    while let Ok(n @ 1..) = s.read(&mut buf) {
        if s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

#[test]
fn redirect_relays_bytes_both_ways_and_logs_the_traffic() {
    let (target, accepted) = backend(echo);
    let config = redirected("relay", target, "\tlog_on_success += TRAFFIC");
    let server = TestServer::start(&config, &["relay"]);
    let mut s = connect(server.addr("relay"));
    s.write_all(b"hello, backend\n").unwrap();
    let mut first = [0; 15];
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"hello, backend\n");
    s.write_all(b"again").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut s), b"again");
    let line = server
        .log
        .wait_for(&["redirected", "service=relay", "conn=", "duration="]);
    assert!(line.contains(" in=20 out=20"), "{line}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn redirect_carries_half_closes_both_ways() {
    // Greets, reads to the client's end of stream, then answers with what
    // it counted: only possible if the client's half-close reached it while
    // its own write side stayed open.
    fn counter(mut s: TcpStream) {
        s.write_all(b"ready\n").unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        writeln!(s, "got {} bytes", got.len()).unwrap();
    }
    let (target, _) = backend(counter);
    let server = TestServer::start(&redirected("half", target, ""), &["half"]);
    let mut s = connect(server.addr("half"));
    let mut ready = [0; 6];
    s.read_exact(&mut ready).unwrap();
    assert_eq!(&ready, b"ready\n");
    s.write_all(b"twelve bytes").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut s), b"got 12 bytes\n");
    server.log.wait_for(&["redirected", "service=half"]);
}

#[test]
fn redirect_to_a_backend_that_is_down_closes_the_client_and_logs_why() {
    // A port that was free a moment ago: nothing listens there.
    let target = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = TestServer::start(&redirected("down", target, ""), &["down"]);
    let mut s = connect(server.addr("down"));
    assert_eq!(read_all(&mut s), b"");
    server.log.wait_for(&[
        "redirect failed: cannot connect to",
        &target.to_string(),
        "service=down",
    ]);
}

#[test]
fn redirect_refuses_a_denied_peer_before_connecting() {
    let (target, accepted) = backend(echo);
    let config = redirected("guarded", target, "\tonly_from = 10.0.0.0/8");
    let server = TestServer::start(&config, &["guarded"]);
    let mut s = connect(server.addr("guarded"));
    assert_eq!(read_all(&mut s), b"");
    server
        .log
        .wait_for(&["refused: address", "service=guarded", "peer=127.0.0.1:"]);
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "backend was reached");
    assert!(!server.log.has(&["redirected"]));
}

#[test]
fn redirect_is_cut_at_runtime_max() {
    // Never answers and never closes while the client is there.
    fn silent(mut s: TcpStream) {
        let _ = s.read_to_end(&mut Vec::new());
    }
    let (target, _) = backend(silent);
    let config = redirected("slow", target, "\truntime_max = 200ms");
    let server = TestServer::start(&config, &["slow"]);
    let mut s = connect(server.addr("slow"));
    s.write_all(b"anyone?").unwrap();
    assert_eq!(read_all(&mut s), b"");
    let line = server.log.wait_for(&["runtime limit", "service=slow"]);
    assert!(line.contains(" in=7 out=0"), "{line}");
}

/// A loopback listener whose accept queue is full (backlog 0, filled by
/// connections nobody accepts): the kernel drops further SYNs, so a
/// connect to it hangs. The listener and its queued clients are returned
/// to be kept alive.
fn black_hole() -> (SocketAddr, socket2::Socket, Vec<TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    while let Ok(s) = TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)) {
        queued.push(s);
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    (addr, listener, queued)
}

#[test]
fn redirect_gives_up_connecting_after_5s_and_closes_the_client_cleanly() {
    let (target, _listener, _queued) = black_hole();
    let server = TestServer::start(&redirected("hole", target, ""), &["hole"]);
    let started = std::time::Instant::now();
    let mut s = connect(server.addr("hole"));
    // Unread input at the close would make the kernel send a reset.
    s.write_all(b"is anybody there?\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("a clean end of stream, not a reset");
    assert_eq!(out, b"");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(5),
        "closed after {waited:?}"
    );
    server.log.wait_for(&[
        "redirect failed: cannot connect to",
        &target.to_string(),
        "no answer in 5s",
        "service=hole",
    ]);
}
