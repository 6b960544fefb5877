//! The admin listener under idle clients and busy guests: `/health`
//! answers at once, whatever else holds connections or threads.

use std::time::{Duration, Instant};

use super::*;

#[test]
fn health_answers_at_once_with_a_thousand_idle_admin_clients_and_busy_guests() {
    let config = neighbour()
        + &service(
            "spin",
            &module("probe"),
            "\tserver_args = spin\n\trlimit_cpu = 20s\n\truntime_max = 20s",
        );
    let (server, admin) = start_with_admin(&config, &["hello", "spin"], &[]);
    assert_neighbour_answers(&server);
    let before = footprint(&server);
    // Guests busy on every worker thread.
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let s = connect(server.addr("spin"));
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s
        })
        .collect();
    // Admin clients that connect and say nothing.
    let idle: Vec<_> = (0..1000)
        .map(|_| std::net::TcpStream::connect(admin).unwrap())
        .collect();
    let mut took: Vec<Duration> = (0..10)
        .map(|_| {
            let started = Instant::now();
            let (status, body) = get(admin, "/health");
            assert_eq!((status, body.as_str()), (200, "ok\n"));
            started.elapsed()
        })
        .collect();
    took.sort();
    // 100 ms is the bound; the median is asserted against it, the worst
    // against a loaded machine's slack.
    assert!(took[5] < Duration::from_millis(100), "{took:?}");
    assert!(took[9] < Duration::from_secs(1), "{took:?}");
    drop(idle);
    drop(spinners);
    // The idle admin clients and the spinners' slots are all given back.
    assert_back_to(&server, before, 32 << 10);
}
