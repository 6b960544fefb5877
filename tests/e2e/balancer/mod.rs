//! A real balancer in front of several hosts ([`fleet`]): three network
//! namespaces, each running wasinetd with `proxy_protocol = v2`, and
//! Debian's HAProxy in the root namespace sending `send-proxy-v2` and
//! checking each host's admin `/readyz`. (a) Handlers see the real
//! client's address, not HAProxy's; (b) a host killed under load leaves
//! the rotation, and only connections it had already accepted fail; (c) a
//! host stopped with a drain delay turns not ready, is taken out of
//! rotation while it still serves, then stops, and no request fails.
//! Each prints one summary line (`--nocapture`); docs/deploy.md keeps the
//! figures. Skipped, saying why, where namespaces cannot be made or
//! HAProxy cannot be installed.

mod fleet;
mod load;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use self::fleet::{DRAIN_DELAY, Fleet, HOSTS};
use self::load::{CLIENT, Load, Record, request};
use crate::support::*;

/// Client threads under load: each has one request in flight at a time.
const CLIENTS: usize = 4;

/// One fleet at a time: the scenarios time HAProxy's checks against the
/// hosts, and three fleets on a small machine would slow each other's.
static ONE_FLEET: Mutex<()> = Mutex::new(());

fn one_fleet() -> std::sync::MutexGuard<'static, ()> {
    ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why the first few failed requests failed, for a failure message.
fn why_failed(records: &[Record]) -> Vec<&str> {
    (records.iter())
        .filter_map(|r| r.error.as_deref())
        .take(5)
        .collect()
}

/// Requests per answering host, and failed requests.
fn tally<'a>(records: impl IntoIterator<Item = &'a Record>) -> (BTreeMap<String, usize>, usize) {
    let (mut per_host, mut failed) = (BTreeMap::new(), 0);
    for r in records {
        match &r.host {
            Some(host) => *per_host.entry(host.clone()).or_insert(0) += 1,
            None => failed += 1,
        }
    }
    (per_host, failed)
}

#[test]
fn haproxy_with_send_proxy_v2_shows_handlers_the_real_client() {
    let _one = one_fleet();
    let Some(fleet) = Fleet::start(0) else { return };
    // Scenario (a): 60 requests, round robin: each handler sees the client.
    let (mut failed, mut per_host) = (0, BTreeMap::new());
    for _ in 0..60 {
        match request(CLIENT, fleet.front) {
            Ok((host, remote)) => {
                assert_eq!(remote, CLIENT, "the handler on {host} saw {remote}");
                *per_host.entry(host).or_insert(0) += 1;
            }
            Err(e) => {
                eprintln!("balancer (a): a request failed: {e}");
                failed += 1;
            }
        }
    }
    eprintln!("balancer (a): 60 requests, {failed} failed, per host {per_host:?}");
    assert_eq!(failed, 0, "{}", fleet.haproxy_said());
    assert_eq!(per_host.len(), usize::from(HOSTS), "{per_host:?}");
    for (_, log) in &fleet.daemons {
        log.wait_for(&["exit=0", "service=env ", &format!("peer={CLIENT}:")]);
        assert!(!log.has(&["refused: proxy"]), "{}", log.lines().join("\n"));
    }
}

/// Scenario (b). HAProxy retries only connection attempts (`retries`,
/// its configuration manual): a connection to the killed host that was
/// refused is tried again (after a turn-around of at most 1s, the last
/// time on another server: `option redispatch`), so no request begun
/// after the kill may fail; a connection the host had already accepted
/// (being served, or in its backlog) is reset with it and cannot be
/// retried. So failures are at most the requests in flight at the kill,
/// itself at most one per client.
#[test]
fn a_killed_host_leaves_rotation_failing_only_connections_it_had_accepted() {
    let _one = one_fleet();
    let Some(mut fleet) = Fleet::start(1) else {
        return;
    };
    let load = Load::start(fleet.front, CLIENTS);
    std::thread::sleep(Duration::from_secs(1));
    let daemon = &mut fleet.daemons[0].0.0;
    let kill_sent = Instant::now();
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    // Reaped: its sockets are closed by now.
    let killed_at = Instant::now();
    let down_at = fleet.wait_status("h1", |s| s.starts_with("DOWN"));
    // Load on the two hosts left, HAProxy's view settled.
    std::thread::sleep(Duration::from_secs(1));
    let records = load.finish();
    let down_at = down_at.unwrap_or_else(|| panic!("h1 never down; {}", fleet.haproxy_said()));

    let (per_host, failed) = tally(&records);
    let after: Vec<&Record> = records.iter().filter(|r| r.start > killed_at).collect();
    let (after_per_host, failed_after) = tally(after.iter().copied());
    // In flight while it died: begun before it was reaped, not ended
    // before it was sent SIGKILL.
    let in_flight = (records.iter())
        .filter(|r| r.start < killed_at && r.end > kill_sent)
        .count();
    let slowest_after = after.iter().map(|r| r.end - r.start).max();
    let in_error = fleet.sessions_in_error();
    let h1 = fleet.stats().remove("h1").unwrap_or_default();
    let stat = |k: &str| h1.get(k).cloned().unwrap_or_default();
    eprintln!(
        "balancer (b): {} requests under load from {CLIENTS} clients, {failed} failed (bound: \
         {in_flight} in flight while h1 was killed); per host {per_host:?}; {} begun after the \
         kill, {failed_after} failed, per host {after_per_host:?}, slowest {slowest_after:?}; \
         h1 down in HAProxy {:?} after the kill; HAProxy: sessions in error {in_error:?}, \
         {} redispatched from h1",
        records.len(),
        after.len(),
        down_at - killed_at,
        stat("wredis"),
    );
    let why = why_failed(&records);
    assert_eq!(failed_after, 0, "{why:?}; {}", fleet.haproxy_said());
    assert!(failed <= in_flight, "{failed} > {in_flight}; {why:?}");
    assert!(!after.is_empty(), "no load after the kill");
    assert!(!after_per_host.contains_key("h1"), "{after_per_host:?}");
    // Every session HAProxy saw end in error was on the killed host. (Not
    // every failed request need be one: a socket with nothing left unread
    // ends with a FIN, not a reset, when its process dies, which HAProxy
    // may take for an empty answer.)
    assert!(
        in_error.iter().all(|(server, _)| server == "h1"),
        "{}",
        fleet.haproxy_said()
    );
}

/// Scenario (c): a drain delay longer than HAProxy's checks take to see
/// `/readyz` answer 503 (`inter` x `fall`) lets HAProxy take the host out
/// of rotation while it still accepts; only then does it stop accepting,
/// with nothing sent to it any more, and its running connections finish.
#[test]
fn a_draining_host_leaves_rotation_before_it_stops_and_no_request_fails() {
    let _one = one_fleet();
    let Some(mut fleet) = Fleet::start(2) else {
        return;
    };
    let load = Load::start(fleet.front, CLIENTS);
    std::thread::sleep(Duration::from_secs(1));
    signal(&fleet.daemons[1].0.0, "TERM");
    let term_at = Instant::now();
    let down_at = fleet.wait_status("h2", |s| s.starts_with("DOWN"));
    // HAProxy's view changed while the host was still in its delay.
    let delay_over_at_down = fleet.daemons[1].1.has(&["drain delay of"]);
    let exited = wait_timeout(&mut fleet.daemons[1].0.0, PATIENCE);
    std::thread::sleep(Duration::from_millis(500));
    let records = load.finish();
    let down_at = down_at.unwrap_or_else(|| panic!("h2 never down; {}", fleet.haproxy_said()));
    let status = exited.expect("h2 exits after its drain");

    let (per_host, failed) = tally(&records);
    let served_by_h2_after = |at: Instant| {
        (records.iter())
            .filter(|r| r.start > at && r.host.as_deref() == Some("h2"))
            .count()
    };
    let (during, after_down) = (served_by_h2_after(term_at), served_by_h2_after(down_at));
    eprintln!(
        "balancer (c): {} requests under load from {CLIENTS} clients, {failed} failed; per host \
         {per_host:?}; h2 (--drain-delay {DRAIN_DELAY}) served {during} begun after its SIGTERM, \
         was down in HAProxy {:?} after it, and served {after_down} begun after that; exited {status}",
        records.len(),
        down_at - term_at,
    );
    let why = why_failed(&records);
    assert_eq!(failed, 0, "{why:?}; {}", fleet.haproxy_said());
    assert_eq!(fleet.sessions_in_error(), [], "{}", fleet.haproxy_said());
    // Taken out by its readiness check, not by a refused connection.
    assert!(
        (fleet.haproxy_log).has(&["Server be/h2 is DOWN", "Layer7 wrong status, code: 503"]),
        "{}",
        fleet.haproxy_said()
    );
    assert!(during > 0, "h2 served nothing during its drain delay");
    assert_eq!(after_down, 0);
    assert!(
        !delay_over_at_down,
        "HAProxy took h2 out only after its delay; {}",
        fleet.haproxy_said()
    );
    assert!(status.success(), "{status}");
    let log = &fleet.daemons[1].1;
    for step in [
        "draining: not ready (/readyz 503)",
        "drain delay of 2s over",
        "stopped accepting",
        "all connections finished; exiting",
    ] {
        log.wait_for(&[step]);
    }
}
