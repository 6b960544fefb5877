//! Interpreted handlers: CPython's `python.wasm` and QuickJS's
//! `quickjs.wasm` as a service's `server`, the script as `server_args`, the
//! script's folder preopened read-only; and a Python script built ahead
//! into a component (`wasinetd build`, tests/e2e/build.rs). The examples in
//! `examples/python/` and `examples/js/` run as shipped, and real scripts
//! probe the sandbox: no file outside the preopens, no host environment, no
//! outliving limits.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use crate::registry::{example, prebuilt, prebuilt_hello, python_wasm, quickjs_wasm};
use crate::support::{TestServer, exchange_text, service, tempdir};

pub(crate) const HELLO: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\
                     Content-Length: 13\r\n\r\nHello, World!";
const GET: &str = "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: e2e\r\n\r\n";

/// Starts the daemon on `config` with the suite's shared compiled-code
/// cache, where the interpreters were compiled when they were fetched.
pub(crate) fn start(config: &str, services: &[&str]) -> TestServer {
    start_with_env(config, services, &[])
}

/// Like [`start`], with `HOST_ONLY_TOKEN` in the daemon's environment: a
/// variable no guest may see.
pub(crate) fn start_with_secret(config: &str, services: &[&str]) -> TestServer {
    start_with_env(config, services, &[("HOST_ONLY_TOKEN", "do-not-leak")])
}

fn start_with_env(config: &str, services: &[&str], env: &[(&str, &str)]) -> TestServer {
    TestServer::start_with(config, services, |cmd| {
        cmd.env(
            "CACHE_DIRECTORY",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-cache"),
        )
        .envs(env.iter().copied());
    })
}

/// The example config `conf` with `server` pointed at `interpreter`, `port`
/// set to 0 and the `preopen` folder made absolute (the test's config is
/// written elsewhere); asserts every other line is carried over verbatim.
pub(crate) fn adjusted(conf: &str, interpreter: &Path) -> String {
    let path = example(conf);
    let folder = path.parent().unwrap().canonicalize().unwrap();
    let original = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    let mut changed = Vec::new();
    for line in original.lines() {
        let (attr, value) = line.split_once('=').unwrap_or((line, ""));
        let new = match attr.trim() {
            "server" => format!("\tserver\t\t= {}", interpreter.display()),
            "port" => "\tport\t\t= 0".to_owned(),
            "preopen" => {
                let (host, guest) = value.trim().split_once(':').unwrap();
                format!("\tpreopen\t\t= {}:{guest}", folder.join(host).display())
            }
            _ => line.to_owned(),
        };
        if new != line {
            changed.push(attr.trim().to_owned());
        }
        out.push_str(&new);
        out.push('\n');
    }
    changed.sort();
    assert_eq!(
        changed,
        ["port", "preopen", "server"],
        "{conf}: lines adjusted"
    );
    out
}

/// A folder `app/` holding `files`, beside a `secret.txt` outside it.
pub(crate) fn app(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("app")).unwrap();
    std::fs::write(dir.path().join("secret.txt"), "the host's secret\n").unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join("app").join(name), text).unwrap();
    }
    dir
}

pub(crate) fn ask(addr: SocketAddr) -> String {
    exchange_text(addr, GET)
}

#[test]
fn python_hello_example_serves_http_as_documented() {
    let Some(python) = python_wasm() else { return };
    let server = start(&adjusted("python/hello.conf", &python), &["python-hello"]);
    assert_eq!(ask(server.addr("python-hello")), HELLO);
    assert_eq!(ask(server.addr("python-hello")), HELLO);
    server
        .log
        .wait_for(&["exit=0", "service=python-hello", "conn=2", "duration="]);
}

#[test]
fn js_hello_example_serves_http_as_documented() {
    let Some(quickjs) = quickjs_wasm() else {
        return;
    };
    let server = start(&adjusted("js/hello.conf", &quickjs), &["js-hello"]);
    assert_eq!(ask(server.addr("js-hello")), HELLO);
    server
        .log
        .wait_for(&["exit=0", "service=js-hello", "conn=1", "duration="]);
}

const PYTHON_PROBE: &str = r#"
import os
def attempt(name, f):
    try:
        print(name, "ok", repr(f()))
    except Exception as e:
        print(name, "error", type(e).__name__)
attempt("data", lambda: open("/app/data.txt").read())
attempt("passwd", lambda: open("/etc/passwd").read())
attempt("parent", lambda: open("/app/../secret.txt").read())
attempt("host-path", lambda: open(os.environ["SECRET_PATH"]).read())
attempt("write", lambda: open("/app/new.txt", "w").write("x"))
attempt("env", lambda: sorted(os.environ))
"#;

#[test]
fn python_script_reads_only_its_preopen_and_sees_only_its_env() {
    let Some(python) = python_wasm() else { return };
    let dir = app(&[("probe.py", PYTHON_PROBE), ("data.txt", "inside\n")]);
    let secret = dir.path().join("secret.txt");
    let extra = format!(
        "\tserver_args = /app/probe.py\n\tpreopen = {}:/app\n\tenv = SECRET_PATH={}",
        dir.path().join("app").display(),
        secret.display()
    );
    let config = service("probe", &python, &extra);
    let server = start_with_secret(&config, &["probe"]);
    let out = exchange_text(server.addr("probe"), "");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "data ok 'inside\\n'",
            "passwd error FileNotFoundError",
            "parent error PermissionError",
            "host-path error FileNotFoundError",
            "write error PermissionError",
            "env ok ['REMOTE_ADDR', 'REMOTE_HOST', 'REMOTE_PORT', 'SECRET_PATH']",
        ],
        "{out}"
    );
    assert!(!out.contains("host's secret") && !out.contains("do-not-leak"));
    assert!(!dir.path().join("app/new.txt").exists());
    server.log.wait_for(&["exit=0", "service=probe"]);
}

#[test]
fn python_scripts_end_at_their_cpu_memory_and_runtime_limits() {
    let Some(python) = python_wasm() else { return };
    let dir = app(&[
        ("spin.py", "while True:\n    pass\n"),
        (
            "hog.py",
            "x = bytearray(100 * 1024 * 1024)\nprint('allocated')\n",
        ),
        ("nap.py", "import time\ntime.sleep(30)\nprint('woke')\n"),
        ("ok.py", "print('still serving')\n"),
    ]);
    let app_dir = dir.path().join("app");
    let block = |name: &str, script: &str, limit: &str| {
        let extra = format!(
            "\tserver_args = /app/{script}\n\tpreopen = {}:/app\n\t{limit}",
            app_dir.display()
        );
        service(name, &python, &extra)
    };
    let config = [
        block("spin", "spin.py", "rlimit_cpu = 500ms"),
        block("hog", "hog.py", "rlimit_as = 48M"),
        block("nap", "nap.py", "runtime_max = 500ms"),
        block("ok", "ok.py", ""),
    ]
    .concat();
    let server = start(&config, &["spin", "hog", "nap", "ok"]);
    for name in ["spin", "hog", "nap"] {
        let out = exchange_text(server.addr(name), "");
        assert!(!out.contains("allocated") && !out.contains("woke"), "{out}");
    }
    server.log.wait_for(&["service=spin", "cpu limit"]);
    server.log.wait_for(&["service=hog", "memory limit"]);
    server.log.wait_for(&["MemoryError"]);
    server.log.wait_for(&["service=nap", "runtime limit"]);
    assert_eq!(exchange_text(server.addr("ok"), ""), "still serving\n");
}

const JS_PROBE: &str = r#"
const show = (name, v) => console.log(name, v === null ? "null" : JSON.stringify(v));
show("data", std.loadFile("/app/data.txt"));
show("passwd", std.loadFile("/etc/passwd"));
show("parent", std.loadFile("/app/../secret.txt"));
show("write", std.open("/app/new.txt", "w"));
show("env", Object.keys(std.getenviron()).sort());
"#;

#[test]
fn js_script_reads_only_its_preopen_sees_only_its_env_and_ends_at_its_cpu_limit() {
    let Some(quickjs) = quickjs_wasm() else {
        return;
    };
    let dir = app(&[
        ("probe.js", JS_PROBE),
        ("data.txt", "inside\n"),
        ("spin.js", "for (;;) {}\n"),
    ]);
    let app_dir = dir.path().join("app");
    let block = |name: &str, script: &str| {
        let extra = format!(
            "\tserver_args = --std /app/{script}\n\tpreopen = {}:/app\n\trlimit_cpu = 500ms",
            app_dir.display()
        );
        service(name, &quickjs, &extra)
    };
    let config = [block("probe", "probe.js"), block("spin", "spin.js")].concat();
    let server = start_with_secret(&config, &["probe", "spin"]);
    let out = exchange_text(server.addr("probe"), "");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "data \"inside\\n\"",
            "passwd null",
            "parent null",
            "write null",
            "env [\"REMOTE_ADDR\",\"REMOTE_HOST\",\"REMOTE_PORT\"]",
        ],
        "{out}"
    );
    assert!(!dir.path().join("app/new.txt").exists());
    assert_eq!(exchange_text(server.addr("spin"), ""), "");
    server.log.wait_for(&["service=spin", "cpu limit"]);
}

#[test]
fn prebuilt_python_example_serves_http_and_runs_under_wasinetd_run() {
    let Some(guest) = prebuilt_hello() else {
        return;
    };
    // `wasinetd run` first (it compiles into the shared cache): a
    // componentize-py component holds a dozen core instances, more than a
    // pool of one guest used to have room for.
    let mut run = crate::support::wasinetd()
        .arg("run")
        .arg(&guest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    run.stdin.take().unwrap().write_all(GET.as_bytes()).unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        HELLO,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());

    let example = example("python/hello-prebuilt.conf");
    let original = std::fs::read_to_string(&example).unwrap();
    let config = original
        .replace(
            "\tserver\t\t= build/hello.wasm",
            &format!("\tserver\t\t= {}", guest.display()),
        )
        .replace("\tport\t\t= 8085", "\tport\t\t= 0");
    assert_eq!(config.lines().count(), original.lines().count());
    assert_eq!(
        original
            .lines()
            .zip(config.lines())
            .filter(|(a, b)| a != b)
            .count(),
        2,
        "only server and port adjusted"
    );
    let server = start(&config, &["python-hello-prebuilt"]);
    for _ in 0..3 {
        assert_eq!(ask(server.addr("python-hello-prebuilt")), HELLO);
    }
    server
        .log
        .wait_for(&["exit=0", "service=python-hello-prebuilt", "conn=3"]);
}

const PREBUILT_PROBE: &str = r#"
import os

def attempt(name, f):
    try:
        print(name, "ok", repr(f()))
    except Exception as e:
        print(name, "error", type(e).__name__)

def main():
    if os.environ.get("MODE") == "spin":
        while True:
            pass
    attempt("data", lambda: open("/app/data.txt").read())
    attempt("passwd", lambda: open("/etc/passwd").read())
    attempt("host-path", lambda: open(os.environ["SECRET_PATH"]).read())
    attempt("write", lambda: open("/app/new.txt", "w").write("x"))
    attempt("env", lambda: sorted(os.environ))
"#;

#[test]
fn prebuilt_python_handler_reads_only_its_preopen_sees_only_its_env_and_ends_at_its_cpu_limit() {
    // The source lives in the scratch directory, at a stable path: the
    // build is cached by content.
    let src = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prebuilt-probe-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("probe.py"), PREBUILT_PROBE).unwrap();
    let Some(guest) = prebuilt(&src.join("probe.py")).map(|b| b.wasm) else {
        return;
    };
    let dir = app(&[("data.txt", "inside\n")]);
    let secret = dir.path().join("secret.txt");
    let probe = format!(
        "\tpreopen = {}:/app\n\tenv = SECRET_PATH={}",
        dir.path().join("app").display(),
        secret.display()
    );
    let config = [
        service("probe", &guest, &probe),
        service("spin", &guest, "\tenv = MODE=spin\n\trlimit_cpu = 500ms"),
    ]
    .concat();
    let server = start_with_secret(&config, &["probe", "spin"]);
    let out = exchange_text(server.addr("probe"), "");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "data ok 'inside\\n'",
            "passwd error FileNotFoundError",
            "host-path error FileNotFoundError",
            "write error PermissionError",
            "env ok ['REMOTE_ADDR', 'REMOTE_HOST', 'REMOTE_PORT', 'SECRET_PATH']",
        ],
        "{out}"
    );
    assert!(!out.contains("host's secret") && !out.contains("do-not-leak"));
    assert!(!dir.path().join("app/new.txt").exists());
    assert_eq!(exchange_text(server.addr("spin"), ""), "");
    server.log.wait_for(&["service=spin", "cpu limit"]);
}
