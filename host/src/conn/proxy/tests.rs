//! The header's framing and meaning byte by byte, and the bounded read on
//! a real socket: exactly the header is taken, never the bytes after it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

fn both() -> ProxyProtocol {
    ProxyProtocol {
        v1: true,
        v2: true,
        from: Vec::new(),
    }
}

fn only(v1: bool, v2: bool) -> ProxyProtocol {
    ProxyProtocol { v1, v2, ..both() }
}

/// A v2 header: `command` (0 LOCAL, 1 PROXY), `family` byte, then `body`.
fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x20 | command);
    h.push(family);
    h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    h.extend_from_slice(body);
    h
}

fn tcp4(src: [u8; 4], port: u16) -> Vec<u8> {
    let mut b = src.to_vec();
    b.extend_from_slice(&[127, 0, 0, 1]);
    b.extend_from_slice(&port.to_be_bytes());
    b.extend_from_slice(&80u16.to_be_bytes());
    b
}

fn gives(addr: &str) -> Result<Said, &'static str> {
    Ok(Said::Client(addr.parse::<SocketAddr>().unwrap()))
}

#[test]
fn v1_headers_give_the_client_or_the_balancer() {
    let h = b"PROXY TCP4 192.0.2.7 127.0.0.1 4242 80\r\n";
    assert_eq!(frame(h, &both()), Ok(Frame::Whole(h.len())));
    assert_eq!(parse(h), gives("192.0.2.7:4242"));
    let h = b"PROXY TCP6 2001:db8::7 ::1 4242 80\r\n";
    assert_eq!(parse(h), gives("[2001:db8::7]:4242"));
    assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Ok(Said::Balancer));
    // The payload after the CRLF is not the header's.
    let mut with_payload = b"PROXY UNKNOWN\r\n".to_vec();
    with_payload.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(frame(&with_payload, &both()), Ok(Frame::Whole(15)));
}

#[test]
fn v1_edge_cases_are_refused_or_wait() {
    let p = both();
    assert_eq!(frame(b"PRO", &p), Ok(Frame::More), "may still be PROXY");
    assert_eq!(frame(b"PROXY TCP4 1.2.3.4", &p), Ok(Frame::More));
    assert_eq!(frame(b"PROXY TCP4 1.2.3.4\r", &p), Ok(Frame::More));
    let long = [b"PROXY ".as_slice(), &[b'1'; 101]].concat();
    assert_eq!(long.len(), V1_MAX);
    assert!(frame(&long, &p).is_err(), "no CRLF in 107 bytes");
    let mut late = long.clone();
    late.extend_from_slice(b"\r\n");
    assert!(frame(&late, &p).is_err(), "a CRLF past 107 bytes");
    assert!(parse(b"PROXY TCP4 1.2.3.999 127.0.0.1 1 2\r\n").is_err());
    assert!(parse(b"PROXY TCP4 1.2.3.4 127.0.0.1 70000 2\r\n").is_err());
    assert!(
        parse(b"PROXY TCP4 ::1 ::1 1 2\r\n").is_err(),
        "family and address disagree"
    );
    assert!(parse(b"PROXY SCTP 1.2.3.4 127.0.0.1 1 2\r\n").is_err());
    assert!(parse(b"PROXY  TCP4 1.2.3.4 127.0.0.1 1 2\r\n").is_err());
    assert_eq!(
        frame(b"POST / HTTP/1.1\r\n", &p),
        Err("not a PROXY protocol header")
    );
    assert_eq!(frame(b"GET", &p), Err("not a PROXY protocol header"));
    assert!(
        frame(b"PROXY ", &only(false, true)).is_err(),
        "v1 not accepted"
    );
    assert_eq!(frame(b"PROX", &only(false, true)), Ok(Frame::More));
}

#[test]
fn v2_headers_give_the_client_or_the_balancer() {
    let h = v2(1, 0x11, &tcp4([192, 0, 2, 7], 4242));
    assert_eq!(frame(&h, &both()), Ok(Frame::Whole(28)));
    assert_eq!(parse(&h), gives("192.0.2.7:4242"));
    let mut six = Vec::new();
    six.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    six.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    six.extend_from_slice(&[0x10, 0x92, 0, 80]);
    assert_eq!(parse(&v2(1, 0x21, &six)), gives("[2001:db8::7]:4242"));
    // LOCAL: a health check; its addresses, if any, are ignored.
    assert_eq!(parse(&v2(0, 0x00, &[])), Ok(Said::Balancer));
    assert_eq!(
        parse(&v2(0, 0x11, &tcp4([1, 2, 3, 4], 1))),
        Ok(Said::Balancer)
    );
    // PROXY with UNSPEC or UNIX addresses: no IP client to give.
    assert_eq!(parse(&v2(1, 0x00, &[])), Ok(Said::Balancer));
    assert_eq!(parse(&v2(1, 0x31, &[0; 216])), Ok(Said::Balancer));
}

#[test]
fn v2_tlvs_are_skipped_but_bounded() {
    let mut body = tcp4([192, 0, 2, 7], 4242);
    // PP2_TYPE_AUTHORITY "example.com", then a NOOP.
    body.extend_from_slice(&[0x02, 0, 11]);
    body.extend_from_slice(b"example.com");
    body.extend_from_slice(&[0x04, 0, 2, 0, 0]);
    let h = v2(1, 0x11, &body);
    assert_eq!(parse(&h), gives("192.0.2.7:4242"));
    let mut broken = tcp4([192, 0, 2, 7], 4242);
    broken.extend_from_slice(&[0x02, 0, 40, b'x']);
    assert!(parse(&v2(1, 0x11, &broken)).is_err(), "a TLV past the end");
    let mut huge = v2(1, 0x11, &[]);
    huge[14..16].copy_from_slice(&u16::try_from(V2_MAX_LENGTH + 1).unwrap().to_be_bytes());
    assert!(frame(&huge, &both()).is_err());
}

#[test]
fn v2_edge_cases_are_refused_or_wait() {
    let p = both();
    let h = v2(1, 0x11, &tcp4([192, 0, 2, 7], 4242));
    for cut in 1..h.len() {
        assert_eq!(frame(&h[..cut], &p), Ok(Frame::More), "{cut} bytes");
    }
    let mut bad = h.clone();
    bad[11] = b'X';
    assert_eq!(frame(&bad, &p), Err("not a PROXY protocol header"));
    let mut version = h.clone();
    version[12] = 0x11;
    assert!(parse(&version).is_err(), "version 1 in a binary header");
    let mut command = h.clone();
    command[12] = 0x22;
    assert!(parse(&command).is_err(), "command 2");
    let mut family = h.clone();
    family[13] = 0x41;
    assert!(parse(&family).is_err(), "family 4");
    assert!(parse(&v2(1, 0x11, &[1, 2, 3])).is_err(), "short addresses");
    assert!(
        parse(&v2(1, 0x12, &tcp4([1, 2, 3, 4], 1))).is_err(),
        "a datagram flow"
    );
    assert!(frame(&h, &only(true, false)).is_err(), "v2 not accepted");
}

#[test]
fn the_bound_is_two_seconds_or_the_idle_timeout() {
    assert_eq!(bound(None), HEADER_TIME);
    assert_eq!(bound(Some(Duration::from_secs(30))), HEADER_TIME);
    let short = Duration::from_millis(300);
    assert_eq!(bound(Some(short)), short);
}

/// A connected pair on loopback: (client, server side).
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

#[tokio::test]
async fn exactly_the_header_is_read_in_pieces_or_at_once() {
    let header = v2(1, 0x11, &tcp4([192, 0, 2, 7], 4242));
    let text = b"PROXY TCP4 192.0.2.7 127.0.0.1 4242 80\r\n".to_vec();
    for header in [header, text] {
        // At once, with the payload in the same write.
        let (mut client, mut server) = pair().await;
        client
            .write_all(&[header.as_slice(), b"payload"].concat())
            .await
            .unwrap();
        let said = read(&mut server, &both(), Duration::from_secs(5)).await;
        assert_eq!(said, gives("192.0.2.7:4242"));
        let mut rest = [0; 7];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"payload");
        // In pieces: a byte at a time, then the payload.
        let (mut client, mut server) = pair().await;
        let writer = tokio::spawn(async move {
            for byte in &header {
                client.write_all(&[*byte]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            client.write_all(b"after").await.unwrap();
            client
        });
        let said = read(&mut server, &both(), Duration::from_secs(5)).await;
        assert_eq!(said, gives("192.0.2.7:4242"));
        let _client = writer.await.unwrap();
        let mut rest = [0; 5];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"after");
    }
}

#[tokio::test]
async fn a_stalled_or_cut_header_is_refused() {
    let (mut client, mut server) = pair().await;
    client.write_all(b"PROXY TCP4 192.0.2.7").await.unwrap();
    let started = std::time::Instant::now();
    let said = read(&mut server, &both(), Duration::from_millis(200)).await;
    assert_eq!(said, Err("no complete header in time"));
    assert!(started.elapsed() < Duration::from_secs(2));
    client.shutdown().await.unwrap();
    let (mut client, mut server) = pair().await;
    client.write_all(&V2_SIGNATURE[..7]).await.unwrap();
    client.shutdown().await.unwrap();
    let said = read(&mut server, &both(), Duration::from_secs(5)).await;
    assert_eq!(
        said,
        Err("truncated: end of stream before a complete header")
    );
}
