//! Replacing the running binary (SIGUSR2): the old process hands its
//! sockets to a new one started from the binary's path, which is a copy in
//! the test's directory, so that a test can swap the file on disk. Under
//! load, ten upgrades in a row fail no connection; a connection running
//! during one finishes on the old process; a new binary that cannot start
//! leaves the old one serving.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

/// A daemon started from a copy of the binary, followed across upgrades.
struct Upgradable {
    /// The first process, ours to reap.
    first: Child,
    /// The process serving now.
    pid: u32,
    log: Log,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Upgradable {
    fn start(config: &str, services: &[&str]) -> (Upgradable, Vec<SocketAddr>) {
        let dir = tempdir();
        let bin = dir.path().join("wasinetd");
        std::fs::copy(BIN, &bin).unwrap();
        let conf = dir.path().join("wasinetd.conf");
        std::fs::write(&conf, config).unwrap();
        let mut first = Command::new(&bin)
            .arg("-f")
            .arg(&conf)
            .args(["--shutdown-grace", "10s"])
            .env("CACHE_DIRECTORY", dir.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Log::follow_child(&mut first);
        let addrs = services
            .iter()
            .map(|name| {
                let line = log.wait_for(&["listening", &format!("service={name} ")]);
                line.rsplit("addr=").next().unwrap().trim().parse().unwrap()
            })
            .collect();
        let pid = first.id();
        let daemon = Upgradable {
            first,
            pid,
            log,
            bin,
            dir,
        };
        (daemon, addrs)
    }

    /// Puts `from` at the binary's path as a new file (a new inode, as a
    /// package manager does), leaving the running one's untouched.
    fn replace_binary(&self, from: &Path) {
        let next = self.dir.path().join("wasinetd.next");
        std::fs::copy(from, &next).unwrap();
        std::fs::rename(&next, &self.bin).unwrap();
    }

    /// Sends SIGUSR2 and returns the new process's pid once it is ready.
    fn upgrade(&mut self) -> u32 {
        let mark = self.log.len();
        kill(self.pid, "USR2");
        let started = self
            .log
            .wait_for_after(mark, &["upgrade: started", "as process"]);
        let pid: u32 = started
            .split("as process ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .unwrap()
            .parse()
            .unwrap();
        let ready = format!("upgrade: process {pid} is ready");
        self.log.wait_for_after(mark, &[&ready]);
        pid
    }

    /// Waits until process `pid` has exited.
    fn wait_gone(&mut self, pid: u32) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if pid == self.first.id() {
                if self.first.try_wait().unwrap().is_some() {
                    return;
                }
            } else if !alive(pid) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "process {pid} did not exit; log:\n{}",
            self.log.lines().join("\n")
        );
    }
}

impl Drop for Upgradable {
    fn drop(&mut self) {
        kill(self.pid, "KILL");
        let _ = self.first.kill();
        let _ = self.first.wait();
    }
}

fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// Whether `pid` runs (a zombie waiting for its reaper does not).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `PID (COMM) STATE ...`: the state follows the last `)`.
    !stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .trim_start()
        .starts_with('Z')
}

/// What `/proc/PID/exe` names: the binary a process runs, with
/// ` (deleted)` once the file was replaced.
fn exe_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .unwrap()
        .display()
        .to_string()
}

/// One request to hello-http: the full answer, or why not.
fn hello(addr: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read: {e}"))?;
    if out.starts_with("HTTP/1.1 200 OK") && out.ends_with("Hello, World!") {
        Ok(())
    } else {
        Err(format!("short answer: {out:?}"))
    }
}

fn hello_config() -> String {
    service("hello", &module("hello-http"), "")
}

#[test]
fn ten_upgrades_under_load_fail_no_connection() {
    let (mut daemon, addrs) = Upgradable::start(&hello_config(), &["hello"]);
    let addr = addrs[0];
    hello(addr).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok) = (stop.clone(), ok.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                // Bounded by count and time, whatever the upgrades do.
                for _ in 0..200_000 {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(120)
                    {
                        break;
                    }
                    match hello(addr) {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            failures.push(e);
                            0
                        }
                    };
                }
                failures
            })
        })
        .collect();

    let mut pids = vec![daemon.pid];
    for _ in 0..10 {
        // Each upgrade runs the file now at the path: a fresh copy.
        daemon.replace_binary(Path::new(BIN));
        let before = ok.load(Ordering::Relaxed);
        let old = daemon.pid;
        let new = daemon.upgrade();
        daemon.pid = new;
        daemon.wait_gone(old);
        assert_eq!(
            exe_of(new),
            daemon.bin.display().to_string(),
            "the new process runs the file at the path now, not the old one's"
        );
        pids.push(new);
        // Load went on across this upgrade.
        let deadline = Instant::now() + PATIENCE;
        while ok.load(Ordering::Relaxed) < before + 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let ok = ok.load(Ordering::Relaxed);
    eprintln!(
        "10 upgrades under load: {ok} connections answered in full, {} failed, pids {pids:?}",
        failures.len()
    );
    assert!(failures.is_empty(), "failed connections: {failures:?}");
    assert!(ok >= 200, "only {ok} connections under load");
    let mut distinct = pids.clone();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        11,
        "each upgrade is a new process: {pids:?}"
    );
    hello(addr).unwrap();
    assert!(alive(daemon.pid));
}

#[test]
fn a_connection_running_during_an_upgrade_finishes_on_the_old_process() {
    let config = [
        hello_config(),
        service("slow", &module("probe"), "\tserver_args = sleep 2"),
    ]
    .concat();
    let (mut daemon, addrs) = Upgradable::start(&config, &["hello", "slow"]);
    let old = daemon.pid;
    let mut slow = connect(addrs[1]);
    let mut said = [0u8; 9];
    slow.read_exact(&mut said).unwrap();
    assert_eq!(&said, b"sleeping\n", "the old process runs the guest");

    let new = daemon.upgrade();
    daemon.pid = new;
    // The old process drains: it has not exited while the guest sleeps.
    assert!(daemon.first.try_wait().unwrap().is_none());
    hello(addrs[0]).unwrap();
    let mut rest = Vec::new();
    match slow.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "unexpected {rest:?}"),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => panic!("reset: {e}"),
        Err(e) => panic!("read: {e}"),
    }
    daemon.wait_gone(old);
    daemon
        .log
        .wait_for(&["exit=0", "service=slow", &format!("pid={old}")]);
    assert!(daemon.log.has(&["all connections finished; exiting"]));
    hello(addrs[0]).unwrap();
}

#[test]
fn a_new_binary_that_cannot_start_leaves_the_old_one_serving() {
    let (mut daemon, addrs) = Upgradable::start(&hello_config(), &["hello"]);
    let old = daemon.pid;
    // A "binary" that exits at once, before any readiness.
    let broken = daemon.dir.path().join("broken");
    std::fs::write(&broken, "#!/bin/sh\nexit 3\n").unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    daemon.replace_binary(&broken);

    let mark = daemon.log.len();
    kill(old, "USR2");
    let line = daemon.log.wait_for_after(mark, &["upgrade failed"]);
    assert!(
        line.contains("exited before it was ready") && line.contains("still serving"),
        "{line}"
    );
    assert!(line.contains("exit status: 3"), "{line}");
    assert!(
        daemon.first.try_wait().unwrap().is_none(),
        "the old one runs"
    );
    hello(addrs[0]).unwrap();

    // With a working binary at the path again, the next upgrade goes.
    daemon.replace_binary(Path::new(BIN));
    let new = daemon.upgrade();
    daemon.pid = new;
    daemon.wait_gone(old);
    hello(addrs[0]).unwrap();
}
