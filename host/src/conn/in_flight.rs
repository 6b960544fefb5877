//! The connections being served now: what the state dump (SIGUSR1) lists,
//! with each one's service, peer and age, and what a stopping daemon
//! waits for.
//!
//! A connection is entered when it is admitted and leaves when its task
//! ends (the [`Ticket`] is dropped), whatever the outcome. One short lock
//! each way: no slower than the log line every connection writes anyway.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::conn::stream::Peer;

/// Connections in flight, by connection id.
#[derive(Default)]
pub struct InFlight {
    conns: Mutex<BTreeMap<u64, Entry>>,
}

/// One connection in flight.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The service that admitted it (the version it runs on may be an
    /// older one, after a reload).
    pub service: Arc<str>,
    /// The client (put in words only when a dump asks: [`Entry::peer`]).
    peer: Peer,
    /// When it was admitted.
    pub since: Instant,
}

/// A connection's place in [`InFlight`], given up on drop. It also holds
/// the daemon's drain channel open, so a stopping daemon waits for it.
pub struct Ticket {
    registry: Arc<InFlight>,
    conn: u64,
    _drain: mpsc::Sender<()>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.conn);
    }
}

impl InFlight {
    /// Enters connection `conn` until the ticket is dropped.
    pub fn enter(
        self: &Arc<Self>,
        conn: u64,
        service: Arc<str>,
        peer: &Peer,
        drain: mpsc::Sender<()>,
    ) -> Ticket {
        let entry = Entry {
            service,
            peer: peer.clone(),
            since: Instant::now(),
        };
        self.lock().insert(conn, entry);
        Ticket {
            registry: self.clone(),
            conn,
            _drain: drain,
        }
    }

    /// Every connection in flight, oldest first (ids grow with time).
    pub fn list(&self) -> Vec<(u64, Entry)> {
        self.lock().iter().map(|(id, e)| (*id, e.clone())).collect()
    }

    /// Whether no connection is in flight.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        // A panic while holding this lock cannot leave the map half-changed
        // (one insert or remove): carry on with it.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Entry {
    /// The client as the dump shows it: `IP:PORT` (IPv4 clients of a
    /// dual-stack listener as plain IPv4), or `unix:PATH` / `unix:uid=N` /
    /// `unix`.
    pub fn peer(&self) -> String {
        describe(&self.peer)
    }
}

fn describe(peer: &Peer) -> String {
    match peer {
        Peer::Ip(addr) => {
            std::net::SocketAddr::new(addr.ip().to_canonical(), addr.port()).to_string()
        }
        Peer::Unix {
            path: Some(path), ..
        } => format!("unix:{path}"),
        Peer::Unix { uid: Some(uid), .. } => format!("unix:uid={uid}"),
        Peer::Unix { .. } => "unix".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_leaves_on_drop_and_holds_the_drain_open() {
        let registry = Arc::new(InFlight::default());
        let (tx, mut rx) = mpsc::channel(1);
        let peer = Peer::Ip("[::ffff:127.0.0.1]:4000".parse().unwrap());
        let ticket = registry.enter(7, "echo".into(), &peer, tx.clone());
        drop(tx);
        let list = registry.list();
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].0, list[0].1.peer().as_str()),
            (7, "127.0.0.1:4000")
        );
        assert!(rx.try_recv().is_err(), "the ticket keeps the channel open");
        drop(ticket);
        assert!(registry.is_empty());
        assert!(matches!(
            rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }
}
