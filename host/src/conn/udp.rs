//! UDP services (`socket_type = dgram`): one guest per datagram.
//!
//! The datagram is the guest's whole stdin (end of file after it); what
//! the guest writes to stdout, up to [`MAX_REPLY`] bytes, goes back to the
//! sender as one datagram once the guest is gone (nothing written, no
//! reply). Admission is the same as a TCP connection's (`Service::admit`:
//! address, time, `instances`, `per_source`, `cps`, and the daemon-wide
//! `--limit`), decided before any instantiation; a refused datagram is
//! dropped. Nothing queues: a datagram that finds the service at its
//! `instances` is dropped, so a flood costs at most `instances` guests and
//! the kernel's receive buffer. Refusals are logged at most once a second
//! per socket in full, the rest summed up in one `dropped N datagrams`
//! line per second.
//!
//! Which sockets are bound and kept is `server::listeners`' business; the
//! accept loop of TCP services is `listener`'s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use socket2::Type;
use tokio::net::UdpSocket;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

use crate::admission::Refusal;
use crate::config::SocketOptions;
use crate::conn::listener::{self, Current, Shared};
use crate::conn::service::Admission;
use crate::conn::stream::{Peer, ip_env};
use crate::logging::{self, RefusalLog, Traffic};
use crate::sandbox::{Connection, Endpoint, Transport};

/// The largest datagram read: a UDP payload cannot be longer (64 KiB less
/// the headers), so nothing is ever cut short on the way in.
const MAX_DATAGRAM: usize = 64 * 1024;
/// The largest reply: the largest UDP payload over IPv4 (64 KiB less the
/// IP and UDP headers). Beyond it, a reply is truncated and logged.
pub const MAX_REPLY: usize = 65_507;

/// Binds a UDP socket on `addr` (port 0 picks a free port), for IPv6 with
/// the service's `v6only`.
pub fn bind(addr: SocketAddr, opts: &SocketOptions) -> anyhow::Result<UdpSocket> {
    let socket = listener::bound_socket(addr, Type::DGRAM, opts)?;
    UdpSocket::from_std(socket.into()).context("cannot register the socket")
}

/// Receives datagrams until the daemon stops or a reload retires the
/// socket, starting one guest for each admitted one with the service's
/// version of the moment.
pub async fn serve(mut current: Current, socket: UdpSocket, mut shared: Shared) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut drops = RefusalLog::new("datagrams", "dropped");
    loop {
        let flush_at = drops.flush_at();
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            _ = listener::sleep_until(flush_at) => {
                if let Some(service) = listener::now(&current) {
                    drops.flush(&service.spec);
                }
                continue;
            }
            _ = shared.stopping.wait_for(|&s| s) => return,
            _ = listener::retired(&mut current) => return,
        };
        // The version of the service that takes this datagram.
        let Some(service) = listener::now(&current) else {
            return;
        };
        let (len, peer) = match received {
            Ok(r) => r,
            Err(e) => {
                // An ICMP error from an earlier reply's destination, or out
                // of memory: the socket itself is still good.
                tracing::debug!("receive failed on service `{}`: {e}", service.name());
                continue;
            }
        };
        let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        service.metrics().accepted();
        service.tenant().accept();
        // The daemon-wide `--limit` first: without a pool slot there is no
        // guest, and UDP has no backlog to wait in.
        // Then the datagram services' share of it: forged sources cannot
        // be held back per source, and must not take every slot.
        let admitted = match shared.slots.clone().try_acquire_owned() {
            Ok(permit) => match shared.shares.take_dgram() {
                Some(share) => service
                    .admit(permit, &Peer::Ip(peer), &shared.shares)
                    .map(|a| (a, share)),
                None => Err(Refusal::Datagrams),
            },
            Err(_) => Err(Refusal::Instances),
        };
        match admitted {
            Ok((admission, share)) => {
                let payload = Bytes::copy_from_slice(&buf[..len]);
                let ticket = shared.track(conn, &service, &Peer::Ip(peer));
                let reply_to = socket.clone();
                shared.guests.spawn(async move {
                    answer(admission, reply_to, payload, peer, conn).await;
                    drop(share);
                    drop(ticket);
                });
            }
            Err(reason) => {
                service.metrics().refused(reason);
                drops.refused(&service.spec, conn, Some(peer), reason, Instant::now());
            }
        }
    }
}

/// Runs the guest on one datagram and sends its reply; never fails, only logs.
async fn answer(
    admission: Admission,
    socket: Arc<UdpSocket>,
    payload: Bytes,
    peer: SocketAddr,
    conn: u64,
) {
    let service = admission.service().clone();
    let spec = &service.spec;
    let started = Instant::now();
    let payload_len = payload.len();
    // One byte over the limit, to tell a reply that fits from one cut short.
    let stdout = MemoryOutputPipe::new(MAX_REPLY + 1);
    let env = ip_env(&spec.env, peer);
    // The address the socket is bound to (`0.0.0.0:PORT` for a wildcard
    // bind: a datagram's own destination would need IP_PKTINFO).
    let local = socket.local_addr().ok();
    // Config validation rejects `redirect` on a `dgram` service, so every
    // UDP service has a guest.
    let Some(guest) = service.guest() else {
        return;
    };
    let connection = Connection {
        service: service.name_arc(),
        id: conn,
        transport: Transport::Udp,
        peer: Some(Endpoint::Ip(peer)),
        local: local.map(Endpoint::Ip),
    };
    let stdin = MemoryInputPipe::new(payload);
    let report = guest
        .run(service.invocation(&env, stdin, stdout.clone(), connection))
        .await;
    drop(admission);
    let mut reply = stdout.contents();
    if reply.len() > MAX_REPLY {
        logging::reply_truncated(spec, conn, MAX_REPLY);
        reply.truncate(MAX_REPLY);
    }
    let mut traffic = Traffic {
        bytes_in: payload_len as u64,
        bytes_out: 0,
    };
    if !reply.is_empty() {
        match socket.send_to(&reply, peer).await {
            Ok(n) => traffic.bytes_out = n as u64,
            Err(e) => logging::reply_not_sent(spec, conn, &e),
        }
    }
    service.finished(conn, Some(peer), started, &report, traffic);
}
