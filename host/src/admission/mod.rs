//! Who gets a guest, decided before any instantiation: the checks and
//! their order, the refusal reasons, the counters behind `per_source` and
//! `cps`, and the banners around the decision. `instances` is counted by
//! `service` between [`Gatekeeper::screen`] and [`Gatekeeper::count`].
//!
//! The order: the daemon-wide deny list of `flags = SENSOR` services
//! (`sensor`), `only_from` / `no_access` (`address`), `access_times`
//! (`time`), a running `cps` pause (`cps`), `max_load` (`load`), then
//! `instances`, then `per_source`, and last the `cps` rate, which counts only connections
//! that would start a guest: a scan from a denied network, or one source
//! held back by `per_source`, cannot pause the service for everyone else.
//!
//! A `cps` trip pauses new guests for the configured time and then ends by
//! itself: never a latched failure (systemd's trigger limit), and the
//! listening socket stays open (xinetd closes it). Connections that arrive
//! during the pause are accepted and refused at once, with `banner_fail`
//! and a log line, rather than left in the backlog: a backlog would serve
//! the stale front of a flood first when the pause ends (and trip again),
//! while a client that is told at once can retry.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::config::access;
use crate::config::{Cps, ServiceSpec};

pub mod deny;
pub mod load;
mod shares;

pub use shares::{Shares, SourceSlot};

/// How long a client has to take a banner before it is dropped.
pub const BANNER_TIME: Duration = Duration::from_secs(5);
/// Refused connections of one service closed politely at once; beyond that
/// (a flood) they are closed at once, so refusals never pile up.
const POLITE_REFUSALS: usize = 64;

/// Why a connection was closed without running the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The service already runs `instances` guests.
    Instances,
    /// `only_from` / `no_access` deny the peer's address.
    Address,
    /// Outside every `access_times` window.
    Time,
    /// The peer's address already runs `per_source` guests.
    PerSource,
    /// Over the `cps` rate, or during the pause that follows.
    Cps,
    /// The one-minute load average is at or above `max_load`.
    Load,
    /// The peer's address touched a `flags = SENSOR` service (or this
    /// connection is the touch).
    Sensor,
    /// The datagram services together run their share of `--limit`.
    Datagrams,
    /// The service's tenant already runs its `instances` guests, all its
    /// services together.
    TenantInstances,
    /// The service's tenant's live guests hold all of its `memory`.
    TenantMemory,
    /// A `proxy_protocol` service's connection without a good header, or
    /// from a sender not in `proxy_from`; the text says which.
    Proxy(&'static str),
}

impl Refusal {
    /// The reason as logged after `refused: `.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Instances => "instances",
            Refusal::Address => "address",
            Refusal::Time => "time",
            Refusal::PerSource => "per_source",
            Refusal::Cps => "cps",
            Refusal::Load => "load",
            Refusal::Sensor => "sensor",
            Refusal::Datagrams => "datagrams",
            Refusal::TenantInstances => "tenant instances",
            Refusal::TenantMemory => "tenant memory",
            Refusal::Proxy(_) => "proxy",
        }
    }

    /// What the log line says after the reason, if anything.
    pub fn detail(self) -> Option<&'static str> {
        match self {
            Refusal::Proxy(why) => Some(why),
            _ => None,
        }
    }
}

/// One service's admission state: counters, banners, refusal closers.
#[derive(Debug)]
pub struct Gatekeeper {
    per_source: PerSource,
    rate: Rate,
    /// `banner` + `banner_success`.
    greeting: Box<[u8]>,
    /// `banner` + `banner_fail`.
    farewell: Arc<[u8]>,
    /// Permits for refused connections being closed politely.
    closing: Arc<Semaphore>,
}

impl Gatekeeper {
    /// The admission state of a service with `spec`.
    pub fn new(spec: &ServiceSpec) -> Self {
        Gatekeeper {
            per_source: PerSource::new(spec.per_source.set()),
            rate: Rate::new(spec.cps),
            greeting: spec.banners.on_success().into(),
            farewell: spec.banners.on_failure().into(),
            closing: Arc::new(Semaphore::new(POLITE_REFUSALS)),
        }
    }

    /// The admission state of `spec`, a new version of the service `self`
    /// admits to: the `per_source` counts carry on (its guests still run);
    /// the `cps` rate starts afresh.
    pub fn continuing(&self, spec: &ServiceSpec) -> Self {
        Gatekeeper {
            per_source: self.per_source.continuing(spec.per_source.set()),
            ..Gatekeeper::new(spec)
        }
    }

    /// The checks before `instances`: the sensors' deny list, address,
    /// time, a running cps pause, the load average.
    /// `ip` is canonical (IPv4-mapped IPv6 as IPv4); `None` for a Unix
    /// socket's peer, which address lists do not apply to. `Ok(true)`: a
    /// `cps` pause ended since the last connection (for the caller to log,
    /// once).
    pub fn screen(
        &self,
        spec: &ServiceSpec,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<bool, Refusal> {
        if ip.is_some_and(|ip| deny::denied(ip, now)) {
            return Err(Refusal::Sensor);
        }
        if ip.is_some_and(|ip| !spec.addresses.allows(ip)) {
            return Err(Refusal::Address);
        }
        if !spec.access_times.is_empty() {
            let minute = access::local_minute_of_day(SystemTime::now());
            if !access::open_at(&spec.access_times, minute) {
                return Err(Refusal::Time);
            }
        }
        let reopened = match self.rate.check(now) {
            Gate::Open => false,
            Gate::Reopened => true,
            Gate::Paused => return Err(Refusal::Cps),
        };
        // Read at most once a second, whatever the connection rate.
        if let Some(max) = spec.max_load
            && load::one_minute().is_some_and(|load| max.reached_by(load))
        {
            return Err(Refusal::Load);
        }
        Ok(reopened)
    }

    /// The checks after `instances`: `per_source`, then the cps rate. On
    /// `Ok`, `source` holds a `per_source` slot until
    /// [`Gatekeeper::release`]; `None` (a Unix peer of unknown uid) is not
    /// counted per source. `Err(Refusal::Cps)` here is the connection that
    /// trips a pause (for the caller to log); the ones during the pause are
    /// refused by [`Gatekeeper::screen`].
    pub fn count(&self, source: Option<Source>, now: Instant) -> Result<(), Refusal> {
        if source.is_some_and(|s| !self.per_source.try_take(s)) {
            return Err(Refusal::PerSource);
        }
        if !self.rate.record(now) {
            if let Some(source) = source {
                self.per_source.release(source);
            }
            return Err(Refusal::Cps);
        }
        Ok(())
    }

    /// A guest admitted by [`Gatekeeper::count`] for `ip` has ended.
    pub fn release(&self, source: Source) {
        self.per_source.release(source);
    }

    /// Sends `banner` and `banner_success` to an admitted connection.
    pub async fn greet<S: AsyncWrite + Unpin>(&self, stream: &mut S) -> std::io::Result<()> {
        if self.greeting.is_empty() {
            return Ok(());
        }
        tokio::time::timeout(BANNER_TIME, stream.write_all(&self.greeting))
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }

    /// `banner` and `banner_fail`, for a refused connection, with a place
    /// among those being closed politely; `None` during a flood (more
    /// than [`POLITE_REFUSALS`] at once), when it is closed at once.
    pub fn farewell(&self) -> Option<Farewell> {
        let permit = self.closing.clone().try_acquire_owned().ok()?;
        Some(Farewell {
            bytes: self.farewell.clone(),
            _permit: permit,
        })
    }
}

/// What a refused connection is told before it is closed; holds its place
/// among those being closed until dropped.
pub struct Farewell {
    pub bytes: Arc<[u8]>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// What `per_source` counts guests by: a client's address, or a Unix
/// socket peer's uid (as systemd's `MaxConnectionsPerSource=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Ip(IpAddr),
    Uid(u32),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        Source::Ip(ip)
    }
}

/// Guests running now per client address (or Unix peer uid), for
/// `per_source`.
#[derive(Debug, Default)]
pub struct PerSource {
    /// `None`: UNLIMITED, nothing is counted.
    max: Option<u32>,
    /// Shared by the versions of a service a reload makes, so guests still
    /// running on an old version count against the new one's limit.
    counts: Arc<Mutex<HashMap<Source, u32>>>,
}

impl PerSource {
    /// At most `max` guests per address; `None` is UNLIMITED.
    pub fn new(max: Option<u32>) -> Self {
        PerSource {
            max,
            counts: Arc::default(),
        }
    }

    /// A limit of `max` over the same counts as `self`.
    fn continuing(&self, max: Option<u32>) -> Self {
        PerSource {
            max,
            counts: self.counts.clone(),
        }
    }

    /// Counts one more guest for `ip`, or returns `false` if it already has
    /// `max`. Every `true` must be matched by one [`PerSource::release`].
    pub fn try_take(&self, ip: impl Into<Source>) -> bool {
        let Some(max) = self.max else { return true };
        let mut counts = lock(&self.counts);
        let n = counts.entry(ip.into()).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// One guest of `ip` has ended.
    pub fn release(&self, ip: impl Into<Source>) {
        if self.max.is_none() {
            return;
        }
        let ip = ip.into();
        let mut counts = lock(&self.counts);
        if let Some(n) = counts.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                // Only addresses with a running guest take memory.
                counts.remove(&ip);
            }
        }
    }

    /// Guests running now for `ip`.
    #[cfg(test)]
    pub fn count(&self, ip: impl Into<Source>) -> u32 {
        lock(&self.counts).get(&ip.into()).copied().unwrap_or(0)
    }
}

/// The window `cps` counts new guests in.
const WINDOW: Duration = Duration::from_secs(1);

/// What the rate gate says about a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// No pause is running.
    Open,
    /// A pause ended since the last connection: open again (log it once).
    Reopened,
    /// A pause is running: refuse.
    Paused,
}

/// The `cps` rate limit of one service: more than `rate` new guests in any
/// one second (a sliding window, so a burst across a second boundary
/// counts) pauses new guests for `pause`.
#[derive(Debug)]
pub struct Rate {
    limit: Option<Cps>,
    state: Mutex<RateState>,
}

#[derive(Debug, Default)]
struct RateState {
    /// When the guests of the last second started, oldest first; at most
    /// `rate` entries.
    recent: VecDeque<Instant>,
    /// When the running pause ends.
    paused_until: Option<Instant>,
}

impl Rate {
    /// A gate for `limit`; `None` never pauses.
    pub fn new(limit: Option<Cps>) -> Self {
        Rate {
            limit,
            state: Mutex::default(),
        }
    }

    /// Whether a pause is running at `now`.
    pub fn check(&self, now: Instant) -> Gate {
        if self.limit.is_none() {
            return Gate::Open;
        }
        let mut state = lock(&self.state);
        match state.paused_until {
            None => Gate::Open,
            Some(until) if now < until => Gate::Paused,
            Some(_) => {
                // The connections before the pause do not count after it.
                state.paused_until = None;
                state.recent.clear();
                Gate::Reopened
            }
        }
    }

    /// Counts a new guest starting at `now`; `false` if it is one more than
    /// the rate allows, which starts a pause (the guest must not start).
    pub fn record(&self, now: Instant) -> bool {
        let Some(Cps { rate, pause }) = self.limit else {
            return true;
        };
        let mut state = lock(&self.state);
        while let Some(&oldest) = state.recent.front() {
            if now.saturating_duration_since(oldest) < WINDOW {
                break;
            }
            state.recent.pop_front();
        }
        if state.recent.len() >= rate as usize {
            state.recent.clear();
            state.paused_until = Some(now + pause);
            return false;
        }
        state.recent.push_back(now);
        true
    }
}

/// Locks `m`; the counters stay consistent even if a holder panicked, since
/// every update is a single step.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_source_counts_each_address_apart() {
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let p = PerSource::new(Some(2));
        assert!(p.try_take(a) && p.try_take(a));
        assert!(!p.try_take(a));
        assert!(p.try_take(b));
        p.release(a);
        assert_eq!(p.count(a), 1);
        assert!(p.try_take(a));
        for _ in 0..2 {
            p.release(a);
        }
        p.release(b);
        assert!(lock(&p.counts).is_empty());
        let unlimited = PerSource::new(None);
        assert!((0..1000).all(|_| unlimited.try_take(a)));
        assert_eq!(unlimited.count(a), 0);
    }

    fn cps(rate: u32, pause_ms: u64) -> Rate {
        Rate::new(Some(Cps {
            rate,
            pause: Duration::from_millis(pause_ms),
        }))
    }

    #[test]
    fn more_than_rate_in_a_second_pauses_then_reopens() {
        let r = cps(3, 500);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        for n in [0, 10, 20] {
            assert_eq!(r.check(ms(n)), Gate::Open);
            assert!(r.record(ms(n)));
        }
        assert!(!r.record(ms(30)), "the fourth in one second trips");
        assert_eq!(r.check(ms(31)), Gate::Paused);
        assert_eq!(r.check(ms(529)), Gate::Paused);
        assert_eq!(r.check(ms(530)), Gate::Reopened);
        assert_eq!(r.check(ms(531)), Gate::Open);
        // A fresh window after the pause.
        for n in [531, 532, 533] {
            assert!(r.record(ms(n)));
        }
    }

    #[test]
    fn the_window_slides() {
        let r = cps(2, 1000);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(r.record(ms(0)));
        assert!(r.record(ms(900)));
        // 0 ms has left the window at 1000 ms; 900 ms has not.
        assert!(r.record(ms(1000)));
        assert!(
            !r.record(ms(1500)),
            "900, 1000 and 1500 are three in one second"
        );
        let none = Rate::new(None);
        assert!((0..10_000).all(|_| none.record(t0)));
        assert_eq!(none.check(t0), Gate::Open);
    }
}
