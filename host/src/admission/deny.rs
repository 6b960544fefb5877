//! The daemon-wide deny list that `flags = SENSOR` services fill: a
//! peer that touched a sensor is refused by every service (reason
//! `sensor`) for the sensor's `deny_time`, as xinetd's global `no_access`
//! list does.
//!
//! The list lives as long as the daemon (a reload keeps it) and is bounded
//! ([`MAX_DENIED`] addresses, expired ones purged first), so a scan from
//! many addresses costs a bounded amount of memory. Admission asks
//! [`denied`] first; with an empty list that is one atomic load.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::config::DenyTime;

/// The most addresses denied at once.
pub const MAX_DENIED: usize = 65_536;

/// Denied addresses, with when each is let in again (`None`: never).
static LIST: Mutex<Option<HashMap<IpAddr, Option<Instant>>>> = Mutex::new(None);
/// Entries in [`LIST`], so an empty list costs no lock.
static LEN: AtomicUsize = AtomicUsize::new(0);

/// What [`deny`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// On the list until the time ran out (or for good).
    Listed,
    /// `deny_time = NEVER`: logged only.
    LoggedOnly,
    /// The list is full of live entries: not listed.
    Full,
}

/// Whether `ip` (canonical: IPv4-mapped addresses as IPv4) is denied at
/// `now`. An entry whose time is over is removed.
pub fn denied(ip: IpAddr, now: Instant) -> bool {
    if LEN.load(Ordering::Acquire) == 0 {
        return false;
    }
    let mut list = LIST.lock().unwrap_or_else(|e| e.into_inner());
    let Some(map) = list.as_mut() else {
        return false;
    };
    match map.get(&ip) {
        None => false,
        Some(Some(until)) if now >= *until => {
            map.remove(&ip);
            LEN.store(map.len(), Ordering::Release);
            false
        }
        Some(_) => true,
    }
}

/// Puts `ip` on the list for `time` from `now` (a later deadline replaces
/// an earlier one; FOREVER stays).
pub fn deny(ip: IpAddr, time: DenyTime, now: Instant) -> Denial {
    let until = match time {
        DenyTime::Never => return Denial::LoggedOnly,
        DenyTime::Forever => None,
        // A deny_time too long for the clock is FOREVER, not a panic.
        DenyTime::For(d) => now.checked_add(d),
    };
    let mut list = LIST.lock().unwrap_or_else(|e| e.into_inner());
    let map = list.get_or_insert_with(HashMap::new);
    if map.len() >= MAX_DENIED && !map.contains_key(&ip) {
        map.retain(|_, until| until.is_none_or(|u| now < u));
        if map.len() >= MAX_DENIED {
            return Denial::Full;
        }
    }
    let entry = map.entry(ip).or_insert(until);
    *entry = match (*entry, until) {
        (None, _) | (_, None) => None,
        (Some(a), Some(b)) => Some(a.max(b)),
    };
    LEN.store(map.len(), Ordering::Release);
    Denial::Listed
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_address_is_denied_for_its_time_then_let_in() {
        // Documentation addresses no other test uses.
        let ip: IpAddr = "192.0.2.77".parse().unwrap();
        let other: IpAddr = "192.0.2.78".parse().unwrap();
        let t0 = Instant::now();
        let three = DenyTime::For(Duration::from_secs(3));
        assert!(!denied(ip, t0));
        assert_eq!(deny(ip, DenyTime::Never, t0), Denial::LoggedOnly);
        assert!(!denied(ip, t0));
        assert_eq!(deny(ip, three, t0), Denial::Listed);
        assert!(denied(ip, t0 + Duration::from_secs(2)));
        assert!(!denied(other, t0));
        // A shorter, earlier trip does not cut the time short.
        assert_eq!(
            deny(ip, DenyTime::For(Duration::from_secs(1)), t0),
            Denial::Listed
        );
        assert!(denied(ip, t0 + Duration::from_millis(2999)));
        assert!(!denied(ip, t0 + Duration::from_secs(3)));
        assert!(!denied(ip, t0), "the expired entry is gone");
        assert_eq!(deny(other, DenyTime::Forever, t0), Denial::Listed);
        assert!(denied(other, t0 + Duration::from_secs(1 << 30)));
    }

    #[test]
    fn a_deny_time_past_the_clocks_end_is_forever_not_a_panic() {
        let ip: IpAddr = "192.0.2.79".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(deny(ip, DenyTime::For(Duration::MAX), t0), Denial::Listed);
        assert!(denied(ip, t0 + Duration::from_secs(1 << 30)));
    }
}
