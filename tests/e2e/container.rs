//! The image and the Kubernetes manifests, run by podman on this machine:
//! `deploy/container/build.sh` around this test's own binary (the shipped
//! image is the same Containerfile around a static musl build), then
//! `podman run` with a read-only root as nobody, and `podman kube play` of
//! deploy/kubernetes's ConfigMap and Deployment; a real client talks to
//! each over the container network.
//!
//! Skipped, saying why, only where podman cannot run: it is installed from
//! Debian's packages when missing (root only). On this kind of machine a
//! container's rlimits cannot be raised (no CAP_SYS_RESOURCE) and podman's
//! defaults ask for more than the hard limits: the containers.conf the
//! tests pass (`default_ulimits` at or below them) is what makes it run.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::*;

/// One podman test at a time: images and apt are shared.
static PODMAN: Mutex<()> = Mutex::new(());

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Podman, ready to run containers here, or why not.
fn podman_here(dir: &Path) -> Result<Podman, String> {
    let have = |c: &str| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !apt_install(&["podman", "runc"], || have("podman")) {
        return Err("podman is not installed and this user cannot install it".into());
    }
    // At or below this process's hard limits: a container's rlimits are
    // set by the runtime, and raising one needs CAP_SYS_RESOURCE.
    let hard = |r| {
        rustix::process::getrlimit(r)
            .maximum
            .map_or("unlimited".to_string(), |m| m.min(1 << 20).to_string())
    };
    let nofile = hard(rustix::process::Resource::Nofile);
    let nproc = hard(rustix::process::Resource::Nproc)
        .parse::<u64>()
        .map_or(4096, |n| n.min(4096));
    // runc where it is installed: crun 1.8 (Debian 12's) refuses this
    // machine's hybrid cgroups ("cgroups in hybrid mode not supported")
    // even once its rlimits are within bounds.
    let runtime = if Path::new("/usr/sbin/runc").exists() {
        "[engine]\nruntime = \"runc\"\n"
    } else {
        ""
    };
    let conf = dir.join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n{runtime}"
        ),
    )
    .unwrap();
    let podman = Podman { conf };
    let probe = run(podman
        .cmd()
        .args(["info", "--format", "{{.Host.OCIRuntime.Name}}"]));
    if !probe.status.success() {
        return Err(format!(
            "podman cannot run here: {}",
            String::from_utf8_lossy(&probe.stderr)
        ));
    }
    Ok(podman)
}

struct Podman {
    conf: PathBuf,
}

impl Podman {
    fn cmd(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", &self.conf);
        cmd
    }
}

/// Builds the image around this test's binary; its tag.
fn image(podman: &Podman, tag: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    ok(Command::new(root.join("deploy/container/build.sh"))
        .env("BIN", BIN)
        .env("TAG", tag)
        .env("CONTAINERS_CONF", &podman.conf));
    format!("localhost/{tag}")
}

/// The address of `container` on the container network, port `port`.
fn addr_of(podman: &Podman, container: &str, port: u16) -> SocketAddr {
    let ip = ok(podman.cmd().args([
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        container,
    ]));
    format!("{ip}:{port}")
        .parse()
        .unwrap_or_else(|_| panic!("no address: {ip:?}"))
}

/// Waits for `addr` to take connections.
fn reachable(addr: SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        assert!(Instant::now() < deadline, "{addr} never took a connection");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `/readyz` on `admin` says 200.
fn ready(admin: SocketAddr) {
    reachable(admin);
    let deadline = Instant::now() + PATIENCE;
    loop {
        if get(admin, "/readyz").0 == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "{admin} never turned ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_image_runs_as_nobody_on_a_read_only_root_and_serves() {
    let _one = PODMAN.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir();
    let podman = match podman_here(dir.path()) {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let name = format!("wasinetd-test-{}", std::process::id());
    let tag = image(&podman, &format!("wasinetd-test:{}", std::process::id()));
    let cleanup = Cleanup(
        vec![
            vec![
                "rm".into(),
                "-f".into(),
                "-t".into(),
                "0".into(),
                name.clone(),
            ],
            vec!["rmi".into(), "-f".into(), tag.clone()],
        ],
        &podman,
    );
    ok(podman
        .cmd()
        .args(["run", "-d", "--read-only", "--name", &name, &tag]));
    let admin = addr_of(&podman, &name, 9100);
    ready(admin);
    let out = exchange_text(addr_of(&podman, &name, 8080), "GET / HTTP/1.0\r\n\r\n");
    assert!(out.ends_with("Hello, World!"), "{out}");
    assert_eq!(
        exchange_text(addr_of(&podman, &name, 8007), "ping\n"),
        "ping\n"
    );
    assert_eq!(get(admin, "/livez").0, 200);
    // The daemon's own process: nobody, on a read-only root.
    let pid = ok(podman
        .cmd()
        .args(["inspect", "--format", "{{.State.Pid}}", &name]));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid.split_whitespace().nth(1), Some("65534"), "{uid}");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .expect("no root mount");
    assert!(
        root.split_whitespace()
            .nth(5)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "{root}"
    );
    // A stop is SIGTERM and a drain, well within podman's 10 s.
    let started = Instant::now();
    ok(podman.cmd().args(["stop", "-t", "10", &name]));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let code = ok(podman
        .cmd()
        .args(["inspect", "--format", "{{.State.ExitCode}}", &name]));
    assert_eq!(code, "0");
    let logs = run(podman.cmd().args(["logs", &name]));
    let logs =
        String::from_utf8_lossy(&logs.stderr).to_string() + &String::from_utf8_lossy(&logs.stdout);
    assert!(logs.contains("listening service=hello-http"), "{logs}");
    drop(cleanup);
}

#[test]
fn the_kubernetes_manifests_play_under_podman_and_a_client_reaches_the_pod() {
    let _one = PODMAN.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir();
    let podman = match podman_here(dir.path()) {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let tag = image(&podman, &format!("wasinetd-kube:{}", std::process::id()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap();
    // The ConfigMap and the Deployment as they are, but the image this test
    // built, and one replica: podman 4 publishes a pod's container ports on
    // the host, where a second replica's would clash.
    let deployment = read("deployment.yaml")
        .replace("localhost/wasinetd:latest", &tag)
        .replace("replicas: 2", "replicas: 1");
    assert_ne!(
        deployment,
        read("deployment.yaml"),
        "the manifest names no image to replace"
    );
    let play = dir.path().join("play.yaml");
    // One service more than the image's own config: it answers only if
    // the pod reads the ConfigMap.
    let configmap = read("configmap.yaml").replace(
        "    service echo\n",
        "    service upper\n    {\n    \ttype = INTERNAL UNLISTED\n    \tport = 8008\n    }\n\n    service echo\n",
    );
    assert_ne!(configmap, read("configmap.yaml"));
    std::fs::write(&play, format!("{configmap}---\n{deployment}")).unwrap();
    let play_str = play.to_str().unwrap().to_string();
    let cleanup = Cleanup(
        vec![
            vec!["kube".into(), "down".into(), play_str.clone()],
            vec!["rmi".into(), "-f".into(), tag.clone()],
        ],
        &podman,
    );
    ok(podman.cmd().args(["kube", "play", "--replace", &play_str]));
    let containers = ok(podman
        .cmd()
        .args(["ps", "--format", "{{.Names}} {{.Image}}"]));
    let name = containers
        .lines()
        .find(|l| l.ends_with(&tag))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no container of {tag}: {containers}"))
        .to_string();
    // A pod's containers share its network: the pod's address.
    let pod = ok(podman
        .cmd()
        .args(["inspect", "--format", "{{.Pod}}", &name]));
    let infra =
        ok(podman
            .cmd()
            .args(["pod", "inspect", "--format", "{{.InfraContainerID}}", &pod]));
    let admin = addr_of(&podman, &infra, 9100);
    ready(admin);
    let out = exchange_text(addr_of(&podman, &infra, 8080), "GET / HTTP/1.0\r\n\r\n");
    assert!(out.ends_with("Hello, World!"), "{out}");
    assert_eq!(
        exchange_text(addr_of(&podman, &infra, 8008), "hi\n"),
        "HI\n"
    );
    drop(cleanup);
}

/// Podman commands run at the end, whatever happened.
struct Cleanup<'p>(Vec<Vec<String>>, &'p Podman);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for args in &self.0 {
            let _ = self.1.cmd().args(args).output();
        }
    }
}
