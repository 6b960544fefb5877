//! The operator's view: a failed reload seen by monitoring, the version,
//! each command's own options and help, `check` pointing at the right line
//! (and `--bind` trying the ports), `run`'s status when it cannot start, a
//! prompt exit, warnings said once, and the systemd socket example.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::reload::{config_path, greeter, reload};
use crate::support::*;

/// `/metrics` as `name{labels}` -> value text.
fn metrics(admin: SocketAddr) -> HashMap<String, String> {
    let (status, body) = get(admin, "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap();
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

fn status(admin: SocketAddr) -> Value {
    let (code, body) = get(admin, "/status");
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap()
}

/// The one `wasinetd_config_info` digest label.
fn digest_in(m: &HashMap<String, String>) -> String {
    let key = m
        .keys()
        .find(|k| k.starts_with("wasinetd_config_info{"))
        .expect("no wasinetd_config_info");
    key.split('"').nth(1).unwrap().to_owned()
}

#[test]
fn a_failed_reload_shows_in_status_and_metrics_until_one_works() {
    let (server, admin) = start_with_admin(&greeter("g", "one"), &["g"], &[]);
    let before = status(admin);
    assert_eq!(before["healthy"], true, "{before}");
    assert_eq!(before["config"]["last_reload"], Value::Null, "{before}");
    let first = before["config"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(first.len(), 16, "{before}");
    let m = metrics(admin);
    assert_eq!(digest_in(&m), first);
    assert_eq!(m["wasinetd_config_last_reload_successful"], "1");
    assert_eq!(m["wasinetd_reloads_total{result=\"failed\"}"], "0");

    // A config with an error: the old one goes on serving, and says so.
    let path = config_path(&server);
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replace("server_args", "server_argz")).unwrap();
    assert!(reload(&server).contains("reload failed"));
    assert_eq!(exchange_text(server.addr("g"), "").trim().to_owned(), "one");
    let failed = status(admin);
    assert_eq!(failed["healthy"], false, "{failed}");
    let problem = failed["problem"].as_str().unwrap();
    assert!(problem.starts_with("last reload failed"), "{failed}");
    let last = &failed["config"]["last_reload"];
    assert_eq!(last["result"], "failed", "{failed}");
    assert!(
        last["error"].as_str().unwrap().contains("error"),
        "{failed}"
    );
    assert_eq!(failed["config"]["reloads"]["failed"], 1, "{failed}");
    assert_eq!(failed["config"]["digest"], first.as_str(), "{failed}");
    // Clients are still served: the health check stays green.
    assert_eq!(get(admin, "/health").0, 200);
    let m = metrics(admin);
    assert_eq!(m["wasinetd_config_last_reload_successful"], "0");
    assert_eq!(m["wasinetd_reloads_total{result=\"failed\"}"], "1");
    assert_eq!(m["wasinetd_reloads_total{result=\"ok\"}"], "0");
    assert!(m.contains_key("wasinetd_config_last_reload_timestamp_seconds"));
    assert_eq!(digest_in(&m), first);

    // A good one clears it and names the new config.
    std::fs::write(&path, greeter("g", "two")).unwrap();
    assert!(reload(&server).contains("reloaded in"));
    assert_eq!(exchange_text(server.addr("g"), "").trim().to_owned(), "two");
    let after = status(admin);
    assert_eq!(after["healthy"], true, "{after}");
    assert_eq!(after["problem"], Value::Null, "{after}");
    assert_eq!(after["config"]["last_reload"]["result"], "ok", "{after}");
    assert_eq!(after["config"]["reloads"]["ok"], 1, "{after}");
    assert_eq!(after["config"]["reloads"]["failed"], 1, "{after}");
    let second = after["config"]["digest"].as_str().unwrap();
    assert_ne!(second, first, "{after}");
    let m = metrics(admin);
    assert_eq!(m["wasinetd_config_last_reload_successful"], "1");
    assert_eq!(m["wasinetd_reloads_total{result=\"ok\"}"], "1");
    assert_eq!(digest_in(&m), second);
}

#[test]
fn version_names_wasmtime_and_the_commit_everywhere() {
    let out = wasinetd().arg("--version").output().unwrap();
    assert!(out.status.success());
    let version = String::from_utf8(out.stdout).unwrap();
    let wasmtime = version
        .split("(wasmtime ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no wasmtime version in {version:?}"));
    assert!(wasmtime.starts_with("48."), "{version}");
    let commit = version.split("commit ").nth(1).unwrap().trim_end();
    let commit = commit.trim_end_matches(')');
    assert!(!commit.is_empty(), "{version}");

    // The same in /status and in wasinetd_build_info.
    let (_server, admin) = start_with_admin(&greeter("g", "hi"), &["g"], &[]);
    let doc = status(admin);
    assert_eq!(doc["wasmtime"], wasmtime, "{doc}");
    assert_eq!(doc["commit"], commit, "{doc}");
    let info = metrics(admin)
        .into_keys()
        .find(|k| k.starts_with("wasinetd_build_info{"))
        .expect("no wasinetd_build_info");
    assert!(info.contains(&format!("wasmtime=\"{wasmtime}\"")), "{info}");
    assert!(info.contains(&format!("commit=\"{commit}\"")), "{info}");
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn each_command_takes_only_its_own_options() {
    let guest = module("hello-http");
    let refused = |args: &[&str], says: &str| {
        let out = wasinetd().args(args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(text(&out.stderr).contains(says), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    };
    let g = guest.to_str().unwrap();
    // `run` reads no config: `-f` is refused wherever it is written.
    refused(&["run", "-f", "/nonexistent.conf", g], "'-f'");
    refused(
        &["-f", "/nonexistent.conf", "run", g],
        "`-f/--config` does not apply",
    );
    refused(&["--limit", "5", "check"], "`--limit` does not apply");
    refused(
        &["--admin", "127.0.0.1:0", "run", g],
        "`--admin` does not apply",
    );
    // What every command shares may come before or after its name.
    let out = wasinetd()
        .args(["--no-cache", "run", g])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("Hello, World!"), "{out:?}");

    let help = |args: &[&str]| {
        let out = wasinetd().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        text(&out.stdout)
    };
    let run = help(&["run", "--help"]);
    assert!(!run.contains("--config"), "{run}");
    assert!(!run.contains("--limit"), "{run}");
    for part in [
        "Sandbox:",
        "--rlimit-as",
        "Exit status",
        "137",
        "152",
        "125",
    ] {
        assert!(run.contains(part), "run --help lacks {part}:\n{run}");
    }
    let serve = help(&["--help"]);
    for part in ["Daemon:", "--limit", "SIGHUP", "SIGUSR1", "WASINETD_LOG"] {
        assert!(serve.contains(part), "--help lacks {part}:\n{serve}");
    }
    assert!(!serve.contains("--rlimit-as"), "{serve}");
    let check = help(&["check", "--help"]);
    for part in ["--bind", "--config", "--verbose"] {
        assert!(check.contains(part), "check --help lacks {part}:\n{check}");
    }
    assert!(!check.contains("--admin"), "{check}");
}

fn check(conf: &Path, extra: &[&str]) -> Output {
    wasinetd()
        .arg("check")
        .args(extra)
        .arg("-f")
        .arg(conf)
        .output()
        .unwrap()
}

#[test]
fn check_bind_reports_a_port_in_use_at_its_port_line() {
    let dir = tempdir();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = free.local_addr().unwrap().port();
    drop(free);
    let conf = dir.path().join("wasinetd.conf");
    let hello = module("hello-http");
    let body = |port: u16| {
        format!(
            "\tserver = {}\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tport = {port}\n",
            hello.display()
        )
    };
    let config = format!(
        "service open\n{{\n{}}}\nservice busy\n{{\n{}}}\n",
        body(open),
        body(busy)
    );
    std::fs::write(&conf, &config).unwrap();
    let line = config
        .lines()
        .position(|l| l == format!("\tport = {busy}"))
        .unwrap()
        + 1;
    assert_eq!(line, 13, "the second block's `port` line");

    // Without --bind, the ports are not tried, and it says so.
    let out = check(&conf, &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text(&out.stderr).contains("ports were not tried"),
        "{out:?}"
    );

    let out = check(&conf, &["--bind"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    let expected = format!(
        "wasinetd.conf:{line}: service `busy`: cannot bind 127.0.0.1:{busy}: Address already in use"
    );
    assert!(stderr.contains(&expected), "{expected}\nnot in:\n{stderr}");
    assert!(!stderr.contains("service `open`"), "{stderr}");
    // Both summaries still print; the free port was released again.
    assert_eq!(text(&out.stdout).lines().count(), 2, "{out:?}");
    TcpListener::bind(("127.0.0.1", open)).expect("check --bind left the port bound");

    drop(taken);
    let out = check(&conf, &["--bind"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!text(&out.stderr).contains("not tried"), "{out:?}");
}

#[test]
fn check_points_at_the_server_line_and_says_how_to_build_a_guest() {
    let dir = tempdir();
    let conf = dir.path().join("wasinetd.conf");
    std::fs::write(
        &conf,
        "service native\n{\n\ttype = UNLISTED\n\tport = 0\n\tserver = /bin/true\n}\n\
         service gone\n{\n\ttype = UNLISTED\n\tport = 0\n\n\tserver = /nonexistent.wasm\n}\n",
    )
    .unwrap();
    let out = check(&conf, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    let native = stderr
        .lines()
        .find(|l| l.contains("service `native`"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(native.contains("wasinetd.conf:5: "), "{native}");
    assert!(native.contains("no `\\0asm` header"), "{native}");
    assert!(native.contains("it is a native executable"), "{native}");
    assert!(
        native.contains("wasm32-wasip1") && native.contains("wasm32-wasip2"),
        "{native}"
    );
    let gone = stderr
        .lines()
        .find(|l| l.contains("service `gone`"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(gone.contains("wasinetd.conf:12: "), "{gone}");
    assert!(gone.contains("No such file"), "{gone}");
}

#[test]
fn check_shows_sizes_and_durations_as_written_and_logs_nothing_else() {
    let dir = tempdir();
    let conf = dir.path().join("wasinetd.conf");
    let extra = "\trlimit_as = 96M\n\trlimit_cpu = 1500ms\n\truntime_max = 2m\n";
    std::fs::write(&conf, service("s", &module("hello-http"), extra)).unwrap();
    let out = check(&conf, &[]);
    assert!(out.status.success(), "{out:?}");
    let summary = text(&out.stdout);
    for part in ["rlimit_as=96M ", "rlimit_cpu=1500ms ", "runtime_max=120s "] {
        assert!(summary.contains(part), "{part} not in {summary}");
    }
    // Only the note about ports: no log line.
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("INFO"), "{stderr}");
}

#[test]
fn run_exits_125_when_it_cannot_run_the_guest() {
    let out = wasinetd()
        .args(["run", "/bin/true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(text(&out.stderr).contains("wasm32-wasip1"), "{out:?}");
    // A bad option is a usage error, as for every command, naming the
    // flag as typed.
    let out = wasinetd()
        .args(["run", "--rlimit-cpu", "fast", &path(module("hello-http"))])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).contains("`--rlimit-cpu` takes a duration"),
        "{out:?}"
    );
    let out = wasinetd()
        .args(["--shutdown-grace", "1.5s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).contains("write `1.5s` as `1500ms`"),
        "{out:?}"
    );
}

fn path(p: std::path::PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn the_daemon_exits_promptly_when_nothing_runs() {
    let mut server = TestServer::start(&greeter("g", "hi"), &["g"]);
    assert_eq!(exchange_text(server.addr("g"), "").trim().to_owned(), "hi");
    let started = Instant::now();
    signal(server.child(), "TERM");
    let status = server.wait(PATIENCE).expect("no exit");
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    // It took 1-1.5 s while the guests' runtime waited on its threads;
    // now a few milliseconds.
    assert!(took < Duration::from_millis(900), "exit took {took:?}");
}

#[test]
fn a_config_warning_is_logged_once_not_at_every_reload() {
    let config = greeter("g", "hi").replace("{\n", "{\n\tuser = nobody\n");
    let server = TestServer::start(&config, &["g"]);
    server.log.wait_for(&["`user` has no meaning"]);
    assert!(reload(&server).contains("reloaded in"));
    assert!(reload(&server).contains("reloaded in"));
    let said = (server.log.lines().iter())
        .filter(|l| l.contains("`user` has no meaning"))
        .count();
    assert_eq!(said, 1, "{}", server.log.lines().join("\n"));
}

#[test]
fn the_systemd_socket_example_is_a_service_of_the_built_in_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let unit = std::fs::read_to_string(root.join("examples/systemd/wasinetd.socket")).unwrap();
    let setting = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in wasinetd.socket"))
            .to_owned()
    };
    let name = setting("FileDescriptorName=");
    let listen = setting("ListenStream=");
    // The service of that name in the built-in config (this file, built
    // into the binary), as `check` sees it.
    let default = root.join("examples/default.conf");
    let out = wasinetd()
        .arg("check")
        .arg("-f")
        .arg(default)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let summary = text(&out.stdout);
    let line = summary
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no service `{name}` in the built-in config:\n{summary}"));
    assert_eq!(line.split(' ').nth(1), Some(listen.as_str()), "{line}");
}
