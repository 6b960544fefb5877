//! The compiled-code cache: a restart maps guests instead of compiling
//! them, a changed guest is never served stale, a broken artefact is
//! recovered from, and `--no-cache` leaves nothing behind.

use std::path::{Path, PathBuf};

use crate::support::*;

/// A WASI command (in text form) that prints `text` and exits 0.
fn printer(text: &str) -> String {
    let data: String = text.bytes().map(|b| format!("\\{b:02x}")).collect();
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{data}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const {len}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        len = text.len()
    )
}

/// Starts the daemon on `config` with `cache` as its cache directory.
fn start(config: &str, services: &[&str], cache: &Path) -> TestServer {
    TestServer::start_with(config, services, |cmd| {
        cmd.arg("--cache-dir").arg(cache);
    })
}

/// The artefacts in a cache directory.
fn artefacts(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    found.sort();
    found
}

/// A module, a component and a bundled guest.
fn three_kinds() -> String {
    service("hello", &module("hello-http"), "")
        + &service("echo2", &component("echo"), "")
        + "service upper\n{\n\ttype = INTERNAL UNLISTED\n\tbind = 127.0.0.1\n\tport = 0\n}\n"
}

#[test]
fn second_start_maps_every_guest_from_the_cache() {
    let cache = tempdir();
    let config = three_kinds();
    let names = ["hello", "echo2", "upper"];
    let hello = module("hello-http").display().to_string();
    let echo = component("echo").display().to_string();

    let first = start(&config, &names, cache.path());
    for guest in [&hello, &echo, "internal:upper"] {
        first
            .log
            .wait_for(&[&format!("guest `{guest}` compiled in ")]);
    }
    assert!(first.stop().success());
    assert_eq!(artefacts(cache.path()).len(), 3);

    let second = start(&config, &names, cache.path());
    for guest in [&hello, &echo, "internal:upper"] {
        second
            .log
            .wait_for(&[&format!("guest `{guest}` cached in ")]);
    }
    assert!(!second.log.has(&["` compiled in "]));
    let out = exchange_text(second.addr("hello"), "GET / HTTP/1.0\r\n\r\n");
    assert!(out.ends_with("Hello, World!"), "{out}");
    assert_eq!(exchange_text(second.addr("echo2"), "ping\n"), "ping\n");
    assert_eq!(exchange_text(second.addr("upper"), "shout\n"), "SHOUT\n");
}

#[test]
fn changed_guest_is_compiled_again_and_its_new_behaviour_served() {
    let cache = tempdir();
    let guests = tempdir();
    let path = guests.path().join("greeting.wat");
    let config = service("greet", &path, "");

    std::fs::write(&path, printer("one\n")).unwrap();
    let first = start(&config, &["greet"], cache.path());
    assert_eq!(exchange_text(first.addr("greet"), ""), "one\n");
    first.stop();

    // Same path, same length, different bytes.
    std::fs::write(&path, printer("two\n")).unwrap();
    let second = start(&config, &["greet"], cache.path());
    second.log.wait_for(&["greeting.wat` compiled in "]);
    assert_eq!(exchange_text(second.addr("greet"), ""), "two\n");
    assert_eq!(artefacts(cache.path()).len(), 2);
}

#[test]
fn corrupt_artefact_is_deleted_and_compiled_again() {
    let cache = tempdir();
    let config =
        service("hello", &module("hello-http"), "") + &service("echo2", &component("echo"), "");
    start(&config, &["hello", "echo2"], cache.path()).stop();
    let found = artefacts(cache.path());
    assert_eq!(found.len(), 2);
    // One with a byte flipped in the middle (bit rot), one cut in half (as
    // a torn write would be).
    let mut rotten = std::fs::read(&found[0]).unwrap();
    let middle = rotten.len() / 2;
    rotten[middle] ^= 0x40;
    std::fs::write(&found[0], rotten).unwrap();
    let whole = std::fs::read(&found[1]).unwrap();
    std::fs::write(&found[1], &whole[..whole.len() / 2]).unwrap();

    let server = start(&config, &["hello", "echo2"], cache.path());
    server
        .log
        .wait_for(&["cannot be loaded", "compiling again"]);
    assert!(!server.log.has(&["` cached in "]));
    let damaged = server
        .log
        .lines()
        .into_iter()
        .filter(|l| l.contains("cannot be loaded"));
    assert_eq!(damaged.count(), 2);
    let out = exchange_text(server.addr("hello"), "GET / HTTP/1.0\r\n\r\n");
    assert!(out.ends_with("Hello, World!"), "{out}");
    assert_eq!(exchange_text(server.addr("echo2"), "ping\n"), "ping\n");
    server.stop();

    // Rewritten whole: the next start maps both again.
    let again = start(&config, &["hello", "echo2"], cache.path());
    assert!(!again.log.has(&["` compiled in "]));
    assert_eq!(
        again
            .log
            .lines()
            .iter()
            .filter(|l| l.contains("` cached in "))
            .count(),
        2
    );
}

#[test]
fn no_cache_writes_nothing() {
    let home = tempdir();
    let config = service("hello", &module("hello-http"), "");
    let server = TestServer::start_with(&config, &["hello"], |cmd| {
        cmd.arg("--no-cache")
            .env("HOME", home.path())
            .env("XDG_CACHE_HOME", home.path().join("xdg"))
            .env("STATE_DIRECTORY", home.path().join("state"));
    });
    server.log.wait_for(&["hello-http.wasm` compiled in "]);
    let out = exchange_text(server.addr("hello"), "GET / HTTP/1.0\r\n\r\n");
    assert!(out.ends_with("Hello, World!"), "{out}");
    // Neither its own default (CACHE_DIRECTORY, set by TestServer) nor any
    // other place was created.
    assert!(!server.dir.path().join("cache").exists());
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0);
}

#[test]
fn cache_directory_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempdir();
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = service("hello", &module("hello-http"), "");
    let server = start(&config, &["hello"], cache.path());
    server
        .log
        .wait_for(&["not using cache directory", "writable by group or others"]);
    let out = exchange_text(server.addr("hello"), "GET / HTTP/1.0\r\n\r\n");
    assert!(out.ends_with("Hello, World!"), "{out}");
    assert!(artefacts(cache.path()).is_empty());
}

#[test]
fn check_fills_the_cache_the_daemon_then_uses() {
    let cache = tempdir();
    let dir = tempdir();
    let conf = dir.path().join("wasinetd.conf");
    std::fs::write(&conf, service("hello", &module("hello-http"), "")).unwrap();
    let check = || {
        // `-v`: what loading did is logged only when asked for.
        wasinetd()
            .arg("check")
            .arg("-v")
            .arg("-f")
            .arg(&conf)
            .arg("--cache-dir")
            .arg(cache.path())
            .output()
            .unwrap()
    };
    let first = check();
    assert!(first.status.success());
    assert!(String::from_utf8_lossy(&first.stderr).contains("` compiled in "));
    let second = check();
    assert!(String::from_utf8_lossy(&second.stderr).contains("` cached in "));
    // Without `-v`, `check` prints its summary and nothing else.
    let quiet = wasinetd()
        .args(["check", "-f"])
        .arg(&conf)
        .arg("--cache-dir")
        .arg(cache.path())
        .output()
        .unwrap();
    assert!(quiet.status.success());
    // Only the note that ports were not tried (`--bind` tries them).
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(
        stderr.lines().count() == 1 && stderr.starts_with("note: ports were not tried"),
        "{stderr}"
    );
    let server = start(
        &service("hello", &module("hello-http"), ""),
        &["hello"],
        cache.path(),
    );
    server.log.wait_for(&["hello-http.wasm` cached in "]);
}
