//! One small harness for every end-to-end test: the real `wasinetd` binary,
//! real guests from `guests/` (built by host/build.rs), real sockets.
//!
//! [`TestServer`] writes a config into a fresh directory, starts the daemon
//! on it, and returns once every `listening service=NAME addr=IP:PORT` line
//! has been read, so tests never sleep waiting for start-up. Everything the
//! daemon logs is kept for assertions.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_wasinetd");

/// The binary under test as a command, with a compiled-code cache kept in
/// cargo's scratch directory for tests, never the machine's default one.
pub fn wasinetd() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env(
        "CACHE_DIRECTORY",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-cache"),
    );
    cmd
}

/// How long a test waits for anything before failing (start-up, a log line,
/// an answer). Generous: CI machines are shared; never what a test asserts.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A WASI preview 1 build of a guest in `guests/`.
pub fn module(name: &str) -> PathBuf {
    guest("wasm32-wasip1", name)
}

/// A WASI preview 2 (component) build of a guest in `guests/`.
pub fn component(name: &str) -> PathBuf {
    guest("wasm32-wasip2", name)
}

fn guest(target: &str, name: &str) -> PathBuf {
    let p = Path::new(env!("WASINETD_GUESTS"))
        .join(target)
        .join("release")
        .join(format!("{name}.wasm"));
    assert!(p.exists(), "guest {} was not built", p.display());
    p
}

/// A scratch directory, removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("wasinetd-test")
        .tempdir()
        .unwrap()
}

/// Log lines read from a child's stderr, shared with the reader thread.
#[derive(Clone, Default)]
pub struct Log(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Log {
    fn follow(stream: impl Read + Send + 'static) -> Log {
        let log = Log::default();
        let writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let (lines, cv) = &*writer.0;
                lines.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        log
    }

    /// Follows a child's piped stderr.
    pub fn follow_child(child: &mut Child) -> Log {
        Log::follow(child.stderr.take().expect("stderr is piped"))
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }

    /// How many lines so far: a mark for [`Log::wait_for_after`].
    pub fn len(&self) -> usize {
        self.0.0.lock().unwrap().len()
    }

    /// Waits for a line containing every one of `parts`; panics with the
    /// whole log after [`PATIENCE`].
    pub fn wait_for(&self, parts: &[&str]) -> String {
        self.wait_for_after(0, parts)
    }

    /// Like [`Log::wait_for`], among the lines from index `mark` on.
    pub fn wait_for_after(&self, mark: usize, parts: &[&str]) -> String {
        let (lines, cv) = &*self.0;
        let deadline = Instant::now() + PATIENCE;
        let mut guard = lines.lock().unwrap();
        loop {
            let later = guard.iter().skip(mark);
            if let Some(l) = later
                .into_iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("no log line with {parts:?}; log:\n{}", guard.join("\n"));
            }
            guard = cv.wait_timeout(guard, left).unwrap().0;
        }
    }

    /// Whether some line contains every one of `parts`.
    pub fn has(&self, parts: &[&str]) -> bool {
        self.lines()
            .iter()
            .any(|l| parts.iter().all(|p| l.contains(p)))
    }
}

/// A running daemon; killed on drop.
pub struct TestServer {
    child: Child,
    pub log: Log,
    pub addrs: Vec<(String, SocketAddr)>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts the daemon on `config` and waits for `services` to listen.
    pub fn start(config: &str, services: &[&str]) -> TestServer {
        Self::start_with(config, services, |_| {})
    }

    /// Like [`TestServer::start`], letting the test adjust the command.
    pub fn start_with(
        config: &str,
        services: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> TestServer {
        let dir = tempdir();
        let conf = dir.path().join("wasinetd.conf");
        std::fs::write(&conf, config).unwrap();
        let mut cmd = wasinetd();
        cmd.arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // A compiled-code cache of its own, inside the test's directory
            // (a test may still pass --cache-dir or --no-cache).
            .env("CACHE_DIRECTORY", dir.path().join("cache"));
        adjust(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let log = Log::follow(child.stderr.take().unwrap());
        let mut server = TestServer {
            child,
            log,
            addrs: Vec::new(),
            dir,
        };
        for name in services {
            let line = server
                .log
                .wait_for(&["listening", &format!("service={name} ")]);
            let addr = line.rsplit("addr=").next().unwrap().trim().parse().unwrap();
            server.addrs.push((name.to_string(), addr));
        }
        server
    }

    /// The address `service` listens on.
    pub fn addr(&self, service: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(n, _)| n == service)
            .unwrap_or_else(|| panic!("service {service} is not listening"))
            .1
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        signal(&self.child, "TERM");
        wait_timeout(&mut self.child, PATIENCE).expect("daemon did not exit after SIGTERM")
    }

    /// The daemon's process, for signals.
    pub fn child(&self) -> &Child {
        &self.child
    }

    /// Waits up to `limit` for the daemon to exit (after a signal).
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_timeout(&mut self.child, limit)
    }

    /// Whether the daemon is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal (`TERM`, `INT`, ...) to a child.
pub fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} failed");
}

/// Waits up to `limit` for a child to exit.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// A client connection with a read timeout of [`PATIENCE`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Sends `input`, half-closes, and reads the whole answer (to EOF).
pub fn exchange(addr: SocketAddr, input: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    s.write_all(input).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    read_all(&mut s)
}

/// Like [`exchange`], as text.
pub fn exchange_text(addr: SocketAddr, input: &str) -> String {
    String::from_utf8(exchange(addr, input.as_bytes())).unwrap()
}

/// Reads to EOF; panics on a reset or a timeout.
pub fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// A config block for one service running `guest` (more attribute lines in
/// `extra`), on an ephemeral loopback port.
pub fn service(name: &str, guest: &Path, extra: &str) -> String {
    format!(
        "service {name}\n{{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tport = 0\n\tserver = {}\n{extra}\n}}\n",
        guest.display()
    )
}

/// A connection to `addr` from source address `from` (any free port), such
/// as `127.0.0.2`: a second client on loopback.
pub fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let from: std::net::IpAddr = from.parse().unwrap();
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// What a guest that does not read (probe `greet`, `stderr`) sends, or what
/// a refused connection gets, to a clean end of stream.
pub fn answer_from(from: &str, addr: SocketAddr) -> String {
    let mut s = connect_from(from, addr);
    String::from_utf8(read_all(&mut s)).unwrap()
}

/// systemd's own socket-activation tool (Debian: the systemd package).
pub const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// Whether [`ACTIVATE`] is missing; says so (the test is then skipped).
pub fn activate_missing() -> bool {
    let missing = !Path::new(ACTIVATE).exists();
    if missing {
        eprintln!("{ACTIVATE} is not installed (Debian: the systemd package); skipped");
    }
    missing
}

/// The daemon on `conf`, started by [`ACTIVATE`] with `activate` (its
/// `-l`, `--fdname`, `--datagram` ...), with its cache in `dir`; the
/// tool's and the daemon's stderr followed. Kill the child when done.
pub fn socket_activated(activate: &[&str], conf: &Path, dir: &Path) -> (Child, Log) {
    let mut child = Command::new(ACTIVATE)
        .args(activate)
        .arg("--")
        .arg(BIN)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("-f")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::follow_child(&mut child);
    (child, log)
}

/// Starts the daemon with an admin listener; returns it and the admin address.
pub fn start_with_admin(
    config: &str,
    services: &[&str],
    extra: &[&str],
) -> (TestServer, SocketAddr) {
    let server = TestServer::start_with(config, services, |cmd| {
        cmd.args(["--admin", "127.0.0.1:0"]).args(extra);
    });
    let line = server.log.wait_for(&["admin listening addr="]);
    let addr = line.rsplit("addr=").next().unwrap().trim().parse().unwrap();
    (server, addr)
}

/// One HTTP/1.1 GET; returns the status code and the body.
pub fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut s = connect(admin);
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("no end of head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("no Content-Length")
        .parse()
        .unwrap();
    assert_eq!(length, body.len(), "{raw}");
    (status, body.to_owned())
}

/// Installs Debian `packages` that are missing, for the tests that run a
/// real HAProxy, podman or systemd: as root only, one install at a time
/// (apt's lock), `apt-get update` first if the install fails. Whether they
/// are there now.
pub fn apt_install(packages: &[&str], present: impl Fn() -> bool) -> bool {
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if present() {
        return true;
    }
    let _one = APT.lock().unwrap_or_else(|e| e.into_inner());
    if present() {
        return true;
    }
    if !rustix::process::geteuid().is_root() {
        return false;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get")
            .args(["update", "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        install();
    }
    present()
}
