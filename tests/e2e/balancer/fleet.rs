//! The fleet a balancer test runs against: three hosts as network
//! namespaces, each running wasinetd with `proxy_protocol = v2` and its
//! admin listener, and Debian's HAProxy in the root namespace sending
//! `send-proxy-v2`, checking each host's `/readyz`, and answering on a
//! stats socket. Everything is removed on drop, whatever happened.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const HAPROXY: &str = "/usr/sbin/haproxy";
pub const HOSTS: u8 = 3;
/// Where each host's service and admin listener are, in its namespace.
const PORT: u16 = 8080;
const ADMIN: u16 = 9100;
/// Each host's drain delay: longer than HAProxy takes to see a `/readyz`
/// 503 (`inter` 200ms x `fall` 2, plus a check's own time).
pub const DRAIN_DELAY: &str = "2s";

/// What HAProxy is told. `retries 3` with `option redispatch`: a refused
/// connection attempt (a host that is gone) is tried again, the last time
/// on another server; only attempts are retried, never a connection the
/// server accepted. Checks every 200ms, down after 2 failed, up after 2.
const BACKEND: &str = "  balance roundrobin\n  option redispatch\n  retries 3\n  \
    option httpchk GET /readyz\n  http-check expect status 200\n  \
    default-server inter 200ms fall 2 rise 2\n";

/// The hosts, their daemons and HAProxy in front of them. Fields drop in
/// order: HAProxy, then the daemons, then the namespaces.
pub struct Fleet {
    _haproxy: Killed,
    pub haproxy_log: Log,
    /// Host N's daemon is `daemons[N - 1]`.
    pub daemons: Vec<(Killed, Log)>,
    _hosts: Hosts,
    /// HAProxy's frontend, where clients connect.
    pub front: SocketAddr,
    stats: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fleet {
    /// The fleet for test number `tag` (its namespaces and addresses are
    /// its own), once HAProxy sees every host up; `None`, after saying
    /// why, where HAProxy cannot be installed or namespaces made.
    pub fn start(tag: u8) -> Option<Fleet> {
        if !apt_install(&["haproxy"], || std::path::Path::new(HAPROXY).exists()) {
            eprintln!(
                "{HAPROXY} is not installed and cannot be (Debian: apt-get install haproxy); skipped"
            );
            return None;
        }
        let hosts = Hosts::make(tag)?;
        let dir = tempdir();
        let daemons = (1..=HOSTS).map(|n| hosts.start(n, dir.path())).collect();
        let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let stats = dir.path().join("haproxy.sock");
        let servers: String = (1..=HOSTS)
            .map(|n| {
                format!(
                    "  server h{n} {}:{PORT} check port {ADMIN} send-proxy-v2\n",
                    hosts.ip(n)
                )
            })
            .collect();
        let cfg = format!(
            "global\n  maxconn 200\n  log stderr format raw local0\n  stats socket {} mode 600 level admin\ndefaults\n  log global\n  option tcplog\n  option dontlog-normal\n  mode tcp\n  \
             timeout connect 2s\n  timeout client 10s\n  timeout server 10s\nfrontend fe\n  \
             bind {front}\n  default_backend be\nbackend be\n{BACKEND}{servers}",
            stats.display()
        );
        let cfg_path = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let mut haproxy = Command::new(HAPROXY)
            .args(["-db", "-f"])
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let haproxy_log = Log::follow_child(&mut haproxy);
        let fleet = Fleet {
            _haproxy: Killed(haproxy),
            haproxy_log,
            daemons,
            _hosts: hosts,
            front,
            stats,
            _dir: dir,
        };
        for n in 1..=HOSTS {
            let up = fleet.wait_status(&format!("h{n}"), |s| s == "UP");
            assert!(up.is_some(), "h{n} never up; {}", fleet.haproxy_said());
        }
        Some(fleet)
    }

    /// HAProxy's `show stat`: each server's row, by name, as column ->
    /// value (`status`, `stot`, `wretr`, `wredis`, ...). Empty while the
    /// socket is not there yet.
    pub fn stats(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut rows = BTreeMap::new();
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(&self.stats) else {
            return rows;
        };
        let mut csv = String::new();
        let asked = s
            .write_all(b"show stat\n")
            .and_then(|()| s.read_to_string(&mut csv));
        if asked.is_err() {
            return rows;
        }
        let mut lines = csv.lines();
        let Some(head) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
            return rows;
        };
        let names: Vec<&str> = head.split(',').collect();
        for line in lines {
            let row: BTreeMap<String, String> = (names.iter())
                .zip(line.split(','))
                .map(|(k, v)| ((*k).to_owned(), v.to_owned()))
                .collect();
            if row.get("pxname").is_some_and(|p| p == "be") {
                rows.insert(row["svname"].clone(), row);
            }
        }
        rows
    }

    /// Polls HAProxy's view of `server` every 10ms until its status
    /// satisfies `wanted`, for up to [`PATIENCE`]: when it first did.
    pub fn wait_status(&self, server: &str, wanted: impl Fn(&str) -> bool) -> Option<Instant> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let stats = self.stats();
            if stats.get(server).is_some_and(|row| wanted(&row["status"])) {
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// The sessions HAProxy logged as ended by an error (`option tcplog`
    /// with `dontlog-normal` logs those, and those retried or
    /// redispatched): each one's server and termination flags (`SD`: the
    /// server closed or reset during the data phase).
    pub fn sessions_in_error(&self) -> Vec<(String, String)> {
        (self.haproxy_log.lines().iter())
            .filter_map(|line| {
                // CLIENT [DATE] fe be/SERVER Tw/Tc/Tt BYTES FLAGS ...
                let fields: Vec<&str> = line.split_whitespace().collect();
                let server = fields.get(3)?.strip_prefix("be/")?;
                let flags = *fields.get(6)?;
                (!flags.starts_with("--")).then(|| (server.to_owned(), flags.to_owned()))
            })
            .collect()
    }

    /// HAProxy's stderr (its warnings, and a line for each session that
    /// did not end normally) and its servers' figures, for a failure
    /// message.
    pub fn haproxy_said(&self) -> String {
        let keys = [
            "status", "stot", "econ", "eresp", "wretr", "wredis", "cli_abrt", "srv_abrt",
        ];
        let stats: Vec<String> = (self.stats().iter())
            .map(|(server, row)| {
                let row: Vec<String> = (keys.iter())
                    .map(|k| format!("{k}={}", row.get(*k).map_or("", String::as_str)))
                    .collect();
                format!("{server}: {}", row.join(" "))
            })
            .collect();
        format!(
            "haproxy said:\n{}\nstats:\n{}",
            self.haproxy_log.lines().join("\n"),
            stats.join("\n")
        )
    }
}

/// The namespaces and links a test made; removed on drop, whatever
/// happened (deleting a namespace deletes its end of the veth, and so the
/// pair).
struct Hosts {
    names: Vec<String>,
    /// The second byte of every address: apart per test process, so two
    /// runs on one machine do not route over each other.
    net: u8,
    /// The test's own third bytes: 10 x tag + N.
    tag: u8,
}

impl Hosts {
    /// `HOSTS` namespaces, host N at 10.NET.(10 TAG + N).2 behind a veth
    /// whose root end is .1; `None` (after saying why) if they cannot be
    /// made.
    fn make(tag: u8) -> Option<Hosts> {
        let pid = std::process::id();
        let mut hosts = Hosts {
            names: Vec::new(),
            net: 100 + (pid % 100) as u8,
            tag,
        };
        for n in 1..=HOSTS {
            let ns = format!("wtp{pid}s{tag}h{n}");
            if !run(&["ip", "netns", "add", &ns]) {
                eprintln!("cannot create network namespaces (needs root); skipped");
                return None;
            }
            hosts.names.push(ns.clone());
            let root_end = format!("wtp{}s{tag}v{n}", pid % 100_000);
            let (root_ip, ns_ip) = (hosts.root_ip(n), hosts.ip(n));
            let (root_cidr, ns_cidr) = (format!("{root_ip}/30"), format!("{ns_ip}/30"));
            let steps: [&[&str]; 6] = [
                &[
                    "ip", "link", "add", &root_end, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
                &["ip", "addr", "add", &root_cidr, "dev", &root_end],
                &["ip", "link", "set", &root_end, "up"],
                &["ip", "-n", &ns, "addr", "add", &ns_cidr, "dev", "eth0"],
                &["ip", "-n", &ns, "link", "set", "eth0", "up"],
                &["ip", "-n", &ns, "link", "set", "lo", "up"],
            ];
            for step in steps {
                if !run(step) {
                    eprintln!("cannot set up the namespace network ({step:?}); skipped");
                    return None;
                }
            }
        }
        Some(hosts)
    }

    fn ip(&self, n: u8) -> String {
        format!("10.{}.{}.2", self.net, 10 * self.tag + n)
    }

    fn root_ip(&self, n: u8) -> String {
        format!("10.{}.{}.1", self.net, 10 * self.tag + n)
    }

    /// Starts wasinetd in host `n`'s namespace: the probe printing its
    /// environment (with `HOST=hN`), trusting only the balancer's end of
    /// the link, the admin listener, and the drain delay.
    fn start(&self, n: u8, dir: &std::path::Path) -> (Killed, Log) {
        let config = format!(
            "service env\n{{\n\ttype = UNLISTED\n\tbind = {}\n\tport = {PORT}\n\tserver = {}\n\
             \tserver_args = env\n\tenv = HOST=h{n}\n\tproxy_protocol = v2\n\tproxy_from = {}\n}}\n",
            self.ip(n),
            module("probe").display(),
            self.root_ip(n),
        );
        let conf = dir.join(format!("h{n}.conf"));
        std::fs::write(&conf, config).unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.names[usize::from(n) - 1], BIN])
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .arg("--admin")
            .arg(format!("{}:{ADMIN}", self.ip(n)))
            // The balancer checks it from outside the namespace.
            .arg("--admin-any")
            .args(["--drain-delay", DRAIN_DELAY, "--shutdown-grace", "5s"])
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Log::follow_child(&mut child);
        let child = Killed(child);
        log.wait_for(&["listening service=env "]);
        (child, log)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in &self.names {
            run(&["ip", "netns", "del", ns]);
        }
    }
}

/// Runs a command quietly; whether it succeeded.
fn run(argv: &[&str]) -> bool {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A child process killed when dropped, so a failed assertion leaves
/// nothing running in (or outside) the namespaces. (`ip netns exec`
/// executes the daemon in its own place: the child is the daemon.)
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port on loopback for HAProxy's frontend.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
