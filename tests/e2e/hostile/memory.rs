//! Memory that guests touched: once they end, what the daemon keeps
//! resident is bounded (keep-resident bytes per pool slot used), whatever
//! the guests touched.

use super::*;

#[test]
fn memory_big_guests_touched_is_given_back_when_they_end() {
    for guest in [module("hostile"), component("hostile")] {
        let config = neighbour()
            + &service(
                "big",
                &guest,
                "\tserver_args = touch 480\n\trlimit_as = 512M",
            );
        let server = TestServer::start(&config, &["hello", "big"]);
        assert_neighbour_answers(&server);
        let before = footprint(&server);
        for _ in 0..12 {
            let out = exchange_text(server.addr("big"), "");
            assert_eq!(out, "touched 480 MiB\n");
        }
        // Two at once, so two slots are used.
        let addr = server.addr("big");
        let pair: Vec<_> = (0..2)
            .map(|_| std::thread::spawn(move || exchange_text(addr, "")))
            .collect();
        for t in pair {
            assert_eq!(t.join().unwrap(), "touched 480 MiB\n");
        }
        // Idle now: nothing else asks for a slot (which could flush what
        // the last guests left). Each slot keeps at most 1 MiB of linear
        // memory and 64 KiB of table resident; 12 guests of 480 MiB each
        // left 5.9 GB before.
        assert_back_to(&server, before, 16 << 10);
        assert_neighbour_answers(&server);
    }
}

/// A guest touches a few pages; with transparent huge pages each touch
/// could make 2 MiB resident (THP `always` on the pool, mimalloc's heap
/// asking for them), so the daemon turns them off for itself.
#[test]
fn memory_the_daemon_keeps_huge_pages_out_of_its_guests_and_heap() {
    let server = TestServer::start(&neighbour(), &["hello"]);
    assert_neighbour_answers(&server);
    let pid = server.child().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .expect("THP_enabled in /proc/PID/status (Linux 5.0+)");
    assert_eq!(thp.trim(), "0", "{status}");
}
