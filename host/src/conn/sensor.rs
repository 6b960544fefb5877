//! `flags = SENSOR`: a tripwire service. A connection to it runs no guest;
//! its peer's address goes on the daemon-wide deny list
//! ([`admission::deny`](crate::admission::deny)) for the sensor's
//! `deny_time`, and later connections (and datagrams) from that address to
//! any service are refused before any guest, with the reason `sensor`.

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::admission::deny;
use crate::config::DenyTime;
use crate::conn::service::{Admission, Refusal};
use crate::conn::stream::Peer;
use crate::logging;

/// A connection to a sensor service: its peer is denied, the line logged,
/// and the connection closed as a refused one is (`banner`,
/// `banner_fail`, then end of stream). It counts as refused (`sensor`).
pub fn trip<S>(admission: Admission, stream: S, peer: &Peer, conn: u64, time: DenyTime)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = admission.service().clone();
    drop(admission);
    service.metrics().refused(Refusal::Sensor);
    if let Some(addr) = peer.ip() {
        let denial = deny::deny(addr.ip().to_canonical(), time, Instant::now());
        logging::sensor_tripped(&service.spec, conn, addr, time, denial);
    }
    super::close::turn_away(service.gate(), stream);
}
