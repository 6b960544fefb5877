//! A real balancer in front of several hosts: three network namespaces,
//! each running wasinetd with `proxy_protocol = v2`, and Debian's HAProxy
//! in the root namespace sending `send-proxy-v2` and checking each host's
//! admin `/readyz`. Handlers must see the real client's address, not
//! HAProxy's. Skipped, saying why, where namespaces cannot be made or
//! HAProxy is not installed (`apt-get install haproxy`).

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const HAPROXY: &str = "/usr/sbin/haproxy";
const HOSTS: u8 = 3;
/// Where each host's service and admin listener are, in its namespace.
const PORT: u16 = 8080;
const ADMIN: u16 = 9100;

/// The namespaces and links a test made; removed on drop, whatever
/// happened (deleting a namespace deletes its end of the veth, and so the
/// pair).
struct Hosts {
    names: Vec<String>,
    /// The second byte of every address: apart per test process, so two
    /// runs on one machine do not route over each other.
    net: u8,
}

impl Hosts {
    /// `HOSTS` namespaces, host N at 10.NET.N.2 behind a veth whose root
    /// end is 10.NET.N.1; `None` (after saying why) if they cannot be made.
    fn make() -> Option<Hosts> {
        let pid = std::process::id();
        let mut hosts = Hosts {
            names: Vec::new(),
            net: 100 + (pid % 100) as u8,
        };
        for n in 1..=HOSTS {
            let ns = format!("wtp{pid}h{n}");
            if !run(&["ip", "netns", "add", &ns]) {
                eprintln!("cannot create network namespaces (needs root); skipped");
                return None;
            }
            hosts.names.push(ns.clone());
            let root_end = format!("wtp{}v{n}", pid % 100_000);
            let (root_ip, ns_ip) = (hosts.root_ip(n), hosts.ip(n));
            let steps: [&[&str]; 6] = [
                &[
                    "ip", "link", "add", &root_end, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{root_ip}/30"),
                    "dev",
                    &root_end,
                ],
                &["ip", "link", "set", &root_end, "up"],
                &[
                    "ip",
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{ns_ip}/30"),
                    "dev",
                    "eth0",
                ],
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
        format!("10.{}.{n}.2", self.net)
    }

    fn root_ip(&self, n: u8) -> String {
        format!("10.{}.{n}.1", self.net)
    }

    /// Starts wasinetd in host `n`'s namespace: the probe printing its
    /// environment (with `HOST=hN`), trusting only the balancer's end of
    /// the link, and the admin listener.
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
/// nothing running in (or outside) the namespaces.
struct Killed(Child);

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

/// One request through the balancer from `from`: the host that served it
/// and the `REMOTE_ADDR` its guest saw, or `None` for a failed request.
fn request(from: &str, front: SocketAddr) -> Option<(String, String)> {
    use socket2::{Domain, Socket, Type};
    use std::io::Read;
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    let from: std::net::IpAddr = from.parse().ok()?;
    socket.bind(&SocketAddr::new(from, 0).into()).ok()?;
    socket
        .connect_timeout(&front.into(), Duration::from_secs(5))
        .ok()?;
    let mut s: std::net::TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.shutdown(std::net::Shutdown::Write).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let get = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::to_owned)
    };
    Some((get("env HOST=")?, get("env REMOTE_ADDR=")?))
}

#[test]
fn haproxy_with_send_proxy_v2_shows_handlers_the_real_client() {
    if !apt_install(&["haproxy"], || std::path::Path::new(HAPROXY).exists()) {
        eprintln!(
            "{HAPROXY} is not installed and cannot be (Debian: apt-get install haproxy); skipped"
        );
        return;
    }
    let Some(hosts) = Hosts::make() else { return };
    let dir = tempdir();
    let daemons: Vec<(Killed, Log)> = (1..=HOSTS).map(|n| hosts.start(n, dir.path())).collect();
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let servers: String = (1..=HOSTS)
        .map(|n| {
            format!(
                "  server h{n} {}:{PORT} check port {ADMIN} send-proxy-v2\n",
                hosts.ip(n)
            )
        })
        .collect();
    let cfg = format!(
        "global\n  maxconn 200\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  \
         timeout server 10s\nfrontend fe\n  bind {front}\n  default_backend be\nbackend be\n  \
         balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n  \
         default-server inter 200ms fall 2 rise 1\n{servers}"
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
    let haproxy = Killed(haproxy);

    // Until every host has answered once (the checks take them up), within
    // PATIENCE and at most 400 tries.
    let client = "127.0.0.5";
    let deadline = Instant::now() + PATIENCE;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..400 {
        if seen.len() == usize::from(HOSTS) || Instant::now() > deadline {
            break;
        }
        if let Some((host, _)) = request(client, front) {
            seen.insert(host);
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(
        seen.len(),
        usize::from(HOSTS),
        "hosts answering: {seen:?}; haproxy said:\n{}",
        haproxy_log.lines().join("\n")
    );

    // Scenario (a): 60 requests, round robin: each handler sees the client.
    let (mut failed, mut per_host) = (0, std::collections::BTreeMap::new());
    for _ in 0..60 {
        match request(client, front) {
            Some((host, remote)) => {
                assert_eq!(remote, client, "the handler on {host} saw {remote}");
                *per_host.entry(host).or_insert(0) += 1;
            }
            None => failed += 1,
        }
    }
    eprintln!("balancer (a): 60 requests, {failed} failed, per host {per_host:?}");
    assert_eq!(failed, 0);
    assert_eq!(per_host.len(), usize::from(HOSTS), "{per_host:?}");
    for (_, log) in &daemons {
        log.wait_for(&["exit=0", "service=env ", &format!("peer={client}:")]);
        assert!(!log.has(&["refused: proxy"]), "{}", log.lines().join("\n"));
    }

    // HAProxy first, then the daemons, then the namespaces.
    drop(haproxy);
    drop(daemons);
    drop(hosts);
}
