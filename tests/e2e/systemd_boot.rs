//! examples/systemd's units under a real systemd as PID 1: a minimal
//! Debian tree (debootstrap, from Debian's packages) booted with
//! systemd-nspawn, sharing this machine's network; the socket unit enabled,
//! a client's connection starting the service (socket activation),
//! `systemctl reload` and `systemctl stop`, and the journal holding the
//! daemon's lines.
//!
//! The tree is made once per target directory (about 240 MB, two minutes)
//! and copied for each run. Skipped, saying why, only where it cannot be
//! made or booted: debootstrap and systemd-nspawn are installed from
//! Debian's packages when missing (root only).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// A pristine tree with systemd in it, made once.
fn pristine() -> Result<PathBuf, String> {
    let tree = Path::new(env!("CARGO_TARGET_TMPDIR")).join("systemd-root");
    if tree.join("usr/lib/systemd/systemd").exists() {
        return Ok(tree);
    }
    if !rustix::process::geteuid().is_root() {
        return Err("booting a systemd tree needs root".into());
    }
    let have = || {
        Path::new("/usr/sbin/debootstrap").exists() && Path::new("/usr/bin/systemd-nspawn").exists()
    };
    if !apt_install(&["debootstrap", "systemd-container"], have) {
        return Err("cannot install debootstrap and systemd-container".into());
    }
    let partial = tree.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    let out = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=systemd,systemd-sysv,dbus",
            "bookworm",
        ])
        .arg(&partial)
        .arg("http://deb.debian.org/debian")
        .output()
        .map_err(|e| format!("cannot run debootstrap: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "debootstrap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::rename(&partial, &tree).map_err(|e| e.to_string())?;
    Ok(tree)
}

/// A booted container; powered off (or killed) on drop.
struct Booted {
    nspawn: Child,
    init: u32,
}

impl Booted {
    fn boot(root: &Path, console: &Path) -> Booted {
        let nspawn = Command::new("systemd-nspawn")
            .args(["-q", "-b", "--register=no", "--keep-unit", "-D"])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(console).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // PID 1 of the container is systemd-nspawn's child (or, where it
        // forks once more, its grandchild); its command line is exactly
        // this (its own daemons' start with it too). Dropped on a panic,
        // so the container never outlives the test.
        let mut booted = Booted { nspawn, init: 0 };
        let deadline = Instant::now() + PATIENCE;
        while booted.init == 0 {
            let near = children(booted.nspawn.id());
            let far: Vec<u32> = near.iter().flat_map(|p| children(*p)).collect();
            let found = (near.iter().chain(&far))
                .copied()
                .find(|p| cmdline(*p).trim() == "/usr/lib/systemd/systemd");
            match found {
                Some(init) => booted.init = init,
                None => {
                    let console = std::fs::read_to_string(console).unwrap_or_default();
                    assert!(
                        Instant::now() < deadline,
                        "the container's systemd never started:\n{console}"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        booted
    }

    /// A command run inside the container.
    fn exec(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("nsenter")
            .args([
                "-t",
                &self.init.to_string(),
                "-m",
                "-u",
                "-i",
                "-n",
                "-p",
                "--",
            ])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    fn journal(&self) -> String {
        self.exec(&[
            "journalctl",
            "--no-pager",
            "-o",
            "cat",
            "-u",
            "wasinetd.service",
        ])
        .1
    }

    /// Waits until the journal holds a line with every one of `parts`.
    fn journal_has(&self, parts: &[&str]) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let journal = self.journal();
            if journal.lines().any(|l| parts.iter().all(|p| l.contains(p))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {parts:?} in the journal:\n{journal}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        let grace = if self.init != 0 {
            let _ = self.exec(&["systemctl", "poweroff"]);
            Duration::from_secs(20)
        } else {
            Duration::ZERO
        };
        if wait_timeout(&mut self.nspawn, grace).is_none() {
            // The container's PID 1 outlives a killed systemd-nspawn.
            let pid1 = rustix::process::Pid::from_raw(self.init as i32);
            if let Some(pid1) = pid1 {
                let _ = rustix::process::kill_process(pid1, rustix::process::Signal::KILL);
            }
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
    }
}

fn children(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            all.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    all
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn the_units_run_under_a_real_systemd_socket_activated_reloaded_and_stopped() {
    let pristine = match pristine() {
        Ok(tree) => tree,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let dir = tempdir();
    let root = dir.path().join("root");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&pristine)
        .arg(&root)
        .status()
        .unwrap();
    assert!(copied.success());
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/systemd");
    let (port, second) = (free_port(), free_port());
    std::fs::copy(BIN, root.join("usr/local/bin/wasinetd")).unwrap();
    let hello = format!(
        "service hello-http\n{{\n\ttype = INTERNAL UNLISTED\n\tbind = 127.0.0.1\n\tport = {port}\n}}\n"
    );
    std::fs::write(root.join("etc/wasinetd.conf"), &hello).unwrap();
    // The units as shipped, on this test's port.
    let socket = std::fs::read_to_string(examples.join("wasinetd.socket")).unwrap();
    let moved = socket.replace(
        "ListenStream=127.0.0.1:8080",
        &format!("ListenStream=127.0.0.1:{port}"),
    );
    assert_ne!(
        moved, socket,
        "the socket unit no longer listens on 127.0.0.1:8080"
    );
    let units = root.join("etc/systemd/system");
    std::fs::write(units.join("wasinetd.socket"), moved).unwrap();
    std::fs::copy(
        examples.join("wasinetd.service"),
        units.join("wasinetd.service"),
    )
    .unwrap();
    std::fs::create_dir_all(units.join("sockets.target.wants")).unwrap();
    std::os::unix::fs::symlink(
        "/etc/systemd/system/wasinetd.socket",
        units.join("sockets.target.wants/wasinetd.socket"),
    )
    .unwrap();

    let booted = Booted::boot(&root, &dir.path().join("console"));
    // systemd listens before the daemon runs; the first client starts it.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + PATIENCE * 3;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the socket unit never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = exchange_text(addr, "GET / HTTP/1.0\r\n\r\n");
    assert!(out.ends_with("Hello, World!"), "{out}");
    booted.journal_has(&["adopted the socket", "passed by systemd"]);
    booted.journal_has(&["exit=0", "service=hello-http"]);
    assert_eq!(
        booted
            .exec(&["systemctl", "is-active", "wasinetd.service"])
            .1
            .trim(),
        "active"
    );

    // A second service, then `systemctl reload`.
    let echo = format!(
        "service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tbind = 127.0.0.1\n\tport = {second}\n}}\n"
    );
    std::fs::write(root.join("etc/wasinetd.conf"), hello + &echo).unwrap();
    let (reloaded, why) = booted.exec(&["systemctl", "reload", "wasinetd.service"]);
    assert!(reloaded, "systemctl reload: {why}\n{}", booted.journal());
    booted.journal_has(&["reloaded in", "1 added"]);
    let echo_addr = format!("127.0.0.1:{second}").parse().unwrap();
    assert_eq!(exchange_text(echo_addr, "ping\n"), "ping\n");

    // `systemctl stop`: a drain, then gone.
    let (stopped, why) = booted.exec(&["systemctl", "stop", "wasinetd.service"]);
    assert!(stopped, "systemctl stop: {why}");
    booted.journal_has(&["stopped accepting"]);
    booted.journal_has(&["Stopped wasinetd.service"]);
    assert_eq!(
        booted
            .exec(&["systemctl", "is-active", "wasinetd.service"])
            .1
            .trim(),
        "inactive"
    );
    drop(booted);
}
