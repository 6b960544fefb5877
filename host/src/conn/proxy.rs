//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, v1 text and
//! v2 binary) a `proxy_protocol` service's connections start with: who may
//! send it, taking exactly its bytes off the socket within a bound, and
//! the client address it gives, which then stands for the peer everywhere
//! (admission, `REMOTE_*`, the connection interface, the log).
//!
//! Exactly the header is read: the bytes are peeked first and only those
//! that belong to the header are then read, so the guest's stdin starts
//! with the first byte after it, even when the balancer sent the header
//! and the client's first bytes in one segment. Bytes are parsed by the
//! `ppp` crate; framing and bounds are here.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::{v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::config::ProxyProtocol;

/// The most a balancer may take to send a header; a service whose
/// `idle_timeout` is shorter gets that instead. A balancer sends its header
/// at once, with the connection: one still waiting for it after this long
/// is not a balancer, and holds a pool slot while it waits.
pub const HEADER_TIME: Duration = Duration::from_secs(2);

/// The longest v1 header, CRLF included (the protocol's own bound).
const V1_MAX: usize = 107;
/// The v2 header's fixed part: signature, version and command, family,
/// length.
const V2_FIXED: usize = 16;
/// The most a v2 header may carry after its fixed part: addresses (216
/// bytes for Unix ones) and TLVs (an AWS VPC endpoint id, HAProxy's TLS
/// facts, a unique id: a few hundred bytes).
pub const V2_MAX_LENGTH: usize = 2048;
/// What every v2 header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// What a good header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Said {
    /// The client the balancer connected for.
    Client(SocketAddr),
    /// No client address: a `LOCAL` command (the balancer's own health
    /// check), v1 `UNKNOWN`, or a v2 family with no IP address (`UNSPEC`,
    /// `UNIX`). The protocol says to use the connection's own endpoints.
    Balancer,
}

/// The bound for one connection's header: [`HEADER_TIME`], or the
/// service's `idle_timeout` when that is shorter.
pub fn bound(idle: Option<Duration>) -> Duration {
    idle.map_or(HEADER_TIME, |idle| idle.min(HEADER_TIME))
}

/// Reads the header off `stream` within `within`: what it says, or why it
/// is refused (the text of `refused: proxy (...)`). Nothing after the
/// header is read.
pub async fn read(
    stream: &mut TcpStream,
    accepts: &ProxyProtocol,
    within: Duration,
) -> Result<Said, &'static str> {
    tokio::time::timeout(within, take(stream, accepts))
        .await
        .unwrap_or(Err("no complete header in time"))
}

async fn take(stream: &mut TcpStream, accepts: &ProxyProtocol) -> Result<Said, &'static str> {
    // The header bytes read so far; `seen` adds what is waiting, unread.
    let mut taken = Vec::with_capacity(V1_MAX);
    let mut peeked = [0; 512];
    loop {
        let n = stream
            .peek(&mut peeked)
            .await
            .map_err(|_| "connection failed before a complete header")?;
        if n == 0 {
            return Err("truncated: end of stream before a complete header");
        }
        let mut seen = taken.clone();
        seen.extend_from_slice(&peeked[..n]);
        let (fresh, done) = match frame(&seen, accepts)? {
            Frame::Whole(len) => (len - taken.len(), Some(len)),
            // Every byte seen belongs to the header: take them, so the
            // next peek waits for more instead of returning these again.
            Frame::More => (n, None),
        };
        let start = taken.len();
        taken.resize(start + fresh, 0);
        stream
            .read_exact(&mut taken[start..])
            .await
            .map_err(|_| "connection failed before a complete header")?;
        if done.is_some() {
            return parse(&taken);
        }
    }
}

/// How much of `seen` (the connection's first bytes) is the header.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// The header is the first this many bytes.
    Whole(usize),
    /// Every byte of `seen` is the header's, and it goes on.
    More,
}

fn frame(seen: &[u8], accepts: &ProxyProtocol) -> Result<Frame, &'static str> {
    // A version is refused only once its whole signature is seen: a
    // first `P` may still be a client's `POST`.
    if agrees(seen, b"PROXY ") {
        if seen.len() < 6 {
            return Ok(Frame::More);
        }
        if !accepts.v1 {
            return Err("a v1 header, and only v2 is accepted");
        }
        return match seen.windows(2).position(|w| w == b"\r\n") {
            Some(at) if at + 2 <= V1_MAX => Ok(Frame::Whole(at + 2)),
            _ if seen.len() >= V1_MAX => Err("malformed v1 header: no CRLF in 107 bytes"),
            _ => Ok(Frame::More),
        };
    }
    if !agrees(seen, V2_SIGNATURE) {
        return Err("not a PROXY protocol header");
    }
    if seen.len() < V2_FIXED {
        return Ok(Frame::More);
    }
    if !accepts.v2 {
        return Err("a v2 header, and only v1 is accepted");
    }
    let length = usize::from(u16::from_be_bytes([seen[14], seen[15]]));
    if length > V2_MAX_LENGTH {
        return Err("v2 header longer than 2048 bytes after its first 16");
    }
    if seen.len() >= V2_FIXED + length {
        Ok(Frame::Whole(V2_FIXED + length))
    } else {
        Ok(Frame::More)
    }
}

/// Whether `seen` and `signature` agree as far as both go.
fn agrees(seen: &[u8], signature: &[u8]) -> bool {
    let n = seen.len().min(signature.len());
    seen[..n] == signature[..n]
}

/// What a whole header (exactly its bytes, as [`frame`] found them) says.
fn parse(header: &[u8]) -> Result<Said, &'static str> {
    if header.starts_with(b"PROXY ") {
        let header = v1::Header::try_from(header).map_err(|_| "malformed v1 header")?;
        return Ok(match header.addresses {
            v1::Addresses::Tcp4(a) => Said::Client((a.source_address, a.source_port).into()),
            v1::Addresses::Tcp6(a) => Said::Client((a.source_address, a.source_port).into()),
            v1::Addresses::Unknown => Said::Balancer,
        });
    }
    let header = v2::Header::try_from(header).map_err(|_| "malformed v2 header")?;
    // Skipped, but they must be well formed: a TLV running past the
    // header is a broken sender.
    if header.tlvs().any(|tlv| tlv.is_err()) {
        return Err("malformed v2 header: a TLV runs past its end");
    }
    if header.command == v2::Command::Local {
        return Ok(Said::Balancer);
    }
    if header.protocol == v2::Protocol::Datagram {
        return Err("v2 header for a datagram flow, on a stream");
    }
    Ok(match header.addresses {
        v2::Addresses::IPv4(a) => Said::Client((a.source_address, a.source_port).into()),
        v2::Addresses::IPv6(a) => Said::Client((a.source_address, a.source_port).into()),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => Said::Balancer,
    })
}

#[cfg(test)]
mod tests;
