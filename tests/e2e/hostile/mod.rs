//! The adversarial suite: each test attacks the daemon the way a hostile
//! guest or client would, one class of attack per test, and asserts three
//! things: (a) the attacker ends with the right outcome within its bound,
//! (b) a neighbour service keeps answering meanwhile, with its p99 under
//! [`NEIGHBOUR_P99`], and (c) the daemon's memory and descriptors return
//! to their level before the attack.
//!
//! The hostile guests are `guests/hostile` (modes, built as a module and a
//! component) or `.wat` text written by the test.

// Helpers for every class; not every class needs each one yet.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;

mod admin;
mod cache;
mod compile;
mod config;
mod cpu;
mod files;
mod logs;
mod memory;
mod slots;
mod unix;

/// The most a neighbour's request may take at p99 while an attack runs: a
/// starved daemon answers in seconds, or never; a busy but fair one in
/// milliseconds. Generous, for shared CI machines.
pub const NEIGHBOUR_P99: Duration = Duration::from_millis(500);

/// The neighbour every adversarial config has: hello-http on its own port.
pub fn neighbour() -> String {
    service("hello", &module("hello-http"), "")
}

/// A `.wat` guest written into `dir`.
pub fn wat(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.wat"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Sends `requests` requests to the neighbour one after another and
/// returns the p99 of their latency (connect to end of answer). Panics if
/// one is not answered in full.
pub fn neighbour_p99(addr: SocketAddr, requests: usize) -> Duration {
    let mut took: Vec<Duration> = (0..requests)
        .map(|_| {
            let started = Instant::now();
            let out = exchange_text(addr, "GET / HTTP/1.0\r\n\r\n");
            assert!(out.ends_with("Hello, World!"), "{out}");
            started.elapsed()
        })
        .collect();
    took.sort();
    took[(requests * 99).div_ceil(100) - 1]
}

/// Asserts the neighbour's p99 over 50 requests is under [`NEIGHBOUR_P99`].
pub fn assert_neighbour_answers(server: &TestServer) {
    let p99 = neighbour_p99(server.addr("hello"), 50);
    assert!(
        p99 < NEIGHBOUR_P99,
        "the neighbour's p99 was {p99:?} during the attack"
    );
}

/// What the daemon holds: resident memory, open descriptors, threads.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    pub rss_kib: u64,
    pub fds: usize,
    pub threads: u64,
}

/// The daemon's footprint now.
pub fn footprint(server: &TestServer) -> Footprint {
    let pid = server.child().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    Footprint {
        rss_kib: field("VmRSS:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count(),
        threads: field("Threads:"),
    }
}

/// The CPU time the daemon has used so far (user and system, all threads).
pub fn cpu_time(server: &TestServer) -> Duration {
    let pid = server.child().id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name in parentheses: utime and stime are fields
    // 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Waits until the daemon is back to `before`: no more descriptors, and
/// resident memory within `slack_kib` of it (allocator caches, a warmed
/// pool slot). Panics with both figures if it does not come back.
pub fn assert_back_to(server: &TestServer, before: Footprint, slack_kib: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = footprint(server);
        if now.fds <= before.fds && now.rss_kib <= before.rss_kib + slack_kib {
            return;
        }
        if Instant::now() > deadline {
            panic!("the daemon did not come back: before {before:?}, now {now:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
