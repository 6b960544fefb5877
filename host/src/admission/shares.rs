//! The daemon's shares of `--limit`: what one service, one source address
//! and the datagram services together may hold when the config does not
//! say otherwise.
//!
//! A global limit alone lets one client, one service or one transport take
//! every slot: an address opening a thousand slow connections (slowloris),
//! a UDP flood from forged sources whose guests linger. So by default:
//! - a service that leaves `instances` unset runs at most
//!   `--per-service-limit` guests (half of `--limit`);
//! - a source address (an IPv6 /64, which one client usually has whole,
//!   or a Unix peer's uid) holds at most `--per-source-limit` guests (an
//!   eighth of `--limit`) across the stream services that leave
//!   `per_source` unset (a datagram's source can be forged: counting it
//!   would let a flood in someone's name use up their share);
//! - datagram services together run at most `--dgram-limit` guests (half
//!   of `--limit`): UDP sources can be forged, so no per-source count can
//!   hold them back, and stream services keep the other half.
//!
//! A service that sets `instances` or `per_source` (UNLIMITED included)
//! gets exactly what it set, as under xinetd.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::Source;

/// The shares, and the counts behind them.
#[derive(Debug)]
pub struct Shares {
    per_service: Option<u32>,
    per_source: Option<u32>,
    dgram: Option<u32>,
    sources: Mutex<HashMap<SourceKey, u32>>,
    dgram_active: AtomicU32,
}

/// What the source share counts guests by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SourceKey {
    V4([u8; 4]),
    /// The /64 an IPv6 address is in.
    V6(u64),
    Uid(u32),
}

impl SourceKey {
    fn of(source: Source) -> SourceKey {
        match source {
            Source::Ip(IpAddr::V4(ip)) => SourceKey::V4(ip.octets()),
            Source::Ip(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(v4.octets()),
                None => SourceKey::V6((u128::from(ip) >> 64) as u64),
            },
            Source::Uid(uid) => SourceKey::Uid(uid),
        }
    }
}

/// One guest counted against its source's share; given back on drop.
#[derive(Debug)]
pub struct SourceSlot {
    shares: Arc<Shares>,
    key: SourceKey,
}

/// One guest counted against the datagram services' share; given back on
/// drop.
#[derive(Debug)]
pub struct DgramSlot(Arc<Shares>);

impl Shares {
    /// The shares for a daemon of `limit` guests: each `None` argument
    /// takes its default (a half, an eighth, a half of `limit`); `Some(None)`
    /// is no share (UNLIMITED).
    pub fn new(
        limit: u32,
        per_service: Option<Option<u32>>,
        per_source: Option<Option<u32>>,
        dgram: Option<Option<u32>>,
    ) -> Shares {
        let part = |d: u32| Some((limit / d).max(1));
        Shares {
            per_service: per_service.unwrap_or(part(2)),
            per_source: per_source.unwrap_or(part(8)),
            dgram: dgram.unwrap_or(part(2)),
            sources: Mutex::default(),
            dgram_active: AtomicU32::new(0),
        }
    }

    /// Shares that limit nothing.
    #[cfg(test)]
    pub fn none() -> Shares {
        Shares::new(u32::MAX, Some(None), Some(None), Some(None))
    }

    /// Guests a service that leaves `instances` unset may run.
    pub fn per_service(&self) -> Option<u32> {
        self.per_service
    }

    /// Counts one more guest for `source`, or `None` if it holds its share.
    pub fn take_source(self: &Arc<Self>, source: Source) -> Option<Option<SourceSlot>> {
        let Some(max) = self.per_source else {
            return Some(None);
        };
        let key = SourceKey::of(source);
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let n = sources.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Some(SourceSlot {
            shares: self.clone(),
            key,
        }))
    }

    /// Counts one more datagram guest, or `None` if the datagram services
    /// hold their share.
    pub fn take_dgram(self: &Arc<Self>) -> Option<Option<DgramSlot>> {
        let Some(max) = self.dgram else {
            return Some(None);
        };
        self.dgram_active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Some(DgramSlot(self.clone())))
    }

    /// Guests counted for `ip`'s source now (for tests).
    #[cfg(test)]
    fn held(&self, source: Source) -> u32 {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.get(&SourceKey::of(source)).copied().unwrap_or(0)
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut sources = self
            .shares
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = sources.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                // Only sources with a running guest take memory.
                sources.remove(&self.key);
            }
        }
    }
}

impl Drop for DgramSlot {
    fn drop(&mut self) {
        self.0.dgram_active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Source {
        Source::Ip(s.parse().unwrap())
    }

    #[test]
    fn a_source_holds_at_most_its_share_and_an_ipv6_64_is_one_source() {
        let shares = Arc::new(Shares::new(16, None, None, None));
        assert_eq!(shares.per_service(), Some(8));
        let held: Vec<_> = (0..2)
            .map(|i| shares.take_source(ip(&format!("2001:db8::{i}"))).unwrap())
            .collect();
        assert!(
            shares.take_source(ip("2001:db8::ffff")).is_none(),
            "the /64 holds 2 of 16"
        );
        assert!(shares.take_source(ip("2001:db8:0:1::1")).unwrap().is_some());
        // IPv4, plain or mapped, is one source per address.
        let a = shares.take_source(ip("192.0.2.1")).unwrap();
        let b = shares.take_source(ip("::ffff:192.0.2.1")).unwrap();
        assert!(shares.take_source(ip("192.0.2.1")).is_none());
        assert_eq!(shares.held(ip("192.0.2.1")), 2);
        drop((a, b, held));
        assert_eq!(shares.held(ip("192.0.2.1")), 0);
        assert!(shares.sources.lock().unwrap().len() <= 1);
    }

    #[test]
    fn datagram_guests_hold_at_most_their_share_and_unlimited_counts_nothing() {
        let shares = Arc::new(Shares::new(4, None, None, None));
        let a = shares.take_dgram().unwrap();
        let b = shares.take_dgram().unwrap();
        assert!(shares.take_dgram().is_none());
        drop(a);
        assert!(shares.take_dgram().is_some());
        drop(b);
        let none = Arc::new(Shares::none());
        assert!((0..100).all(|_| matches!(none.take_source(ip("192.0.2.9")), Some(None))));
        assert_eq!(none.per_service(), None);
    }
}
