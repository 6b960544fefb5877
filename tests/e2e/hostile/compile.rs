//! Guest files built to be costly to compile (compile bombs): refused by
//! their shape or stopped at a compile limit, the error naming the limit,
//! in a compiler process whose memory never becomes the daemon's; and the
//! other services listen and answer while a slow guest compiles.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::*;

/// A module of `n` empty functions exporting `_start`, in binary: what a
/// compiler spends most per byte on.
fn many_functions(n: u32) -> Vec<u8> {
    fn leb(mut v: u32, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.extend([1, 4, 1, 0x60, 0, 0]);
    let mut funcs = Vec::new();
    leb(n, &mut funcs);
    funcs.extend(std::iter::repeat_n(0, n as usize));
    m.push(3);
    leb(funcs.len() as u32, &mut m);
    m.extend(funcs);
    let export = [1, 6, b'_', b's', b't', b'a', b'r', b't', 0, 0];
    m.push(7);
    leb(export.len() as u32, &mut m);
    m.extend(export);
    let mut code = Vec::new();
    leb(n, &mut code);
    for _ in 0..n {
        code.extend([2, 0, 0x0b]);
    }
    m.push(10);
    leb(code.len() as u32, &mut m);
    m.extend(code);
    m
}

/// One function whose body pushes `n` constants and adds them up: an
/// operand stack `n` deep, as text.
fn deep_stack(n: usize) -> String {
    let mut body = String::from("(module (func (export \"_start\")\n");
    body.push_str(&"i32.const 1\n".repeat(n));
    body.push_str(&"i32.add\n".repeat(n - 1));
    body.push_str("drop))\n");
    body
}

/// Runs `wasinetd check` with `args` on a config of one service running
/// `guest`; returns its stderr, how long it took and its peak memory
/// (its own and its compiler processes', from `wait4`).
fn check(dir: &Path, guest: &Path, args: &[&str]) -> (String, Duration, u64) {
    let conf = dir.join("check.conf");
    std::fs::write(&conf, service("bomb", guest, "")).unwrap();
    let started = Instant::now();
    // Waited for with `wait4` below, for its resource usage.
    #[allow(clippy::zombie_processes)]
    let mut child = wasinetd()
        .args(["check", "--no-cache", "-f"])
        .arg(&conf)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let mut status = 0;
    // SAFETY: wait4 on this test's own child, with valid out-pointers.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let pid = libc::wait4(child.id() as i32, &mut status, 0, &mut usage);
        assert_eq!(pid, child.id() as i32);
        usage
    };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) != 0,
        "{stderr}"
    );
    (stderr, started.elapsed(), usage.ru_maxrss as u64)
}

#[test]
fn compile_bombs_are_refused_quickly_and_lightly_naming_the_limit() {
    let dir = tempdir();
    // 200,000 tiny functions: 20 s and 1.15 GB of compiling before.
    let bomb = dir.path().join("bomb.wasm");
    std::fs::write(&bomb, many_functions(200_000)).unwrap();
    let (stderr, took, peak_kib) = check(dir.path(), &bomb, &[]);
    assert!(
        stderr.contains("more than 100000 functions") && stderr.contains("--max-guest-functions"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(peak_kib < 200 << 10, "{peak_kib} KiB");
    // One function 500,000 values deep on the operand stack (4.9 s and
    // 553 MB before), as text: its shape is checked once parsed, in the
    // compiler process.
    let deep = wat(dir.path(), "deep", &deep_stack(500_000));
    let (stderr, took, peak_kib) = check(dir.path(), &deep, &[]);
    assert!(
        stderr.contains("it has a function of") && stderr.contains("(--max-guest-functions)"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(peak_kib < 200 << 10, "{peak_kib} KiB");
}

#[test]
fn a_compile_past_its_time_or_memory_is_stopped_and_named() {
    let dir = tempdir();
    let slow = dir.path().join("slow.wasm");
    std::fs::write(&slow, many_functions(90_000)).unwrap();
    let (stderr, took, _) = check(dir.path(), &slow, &["--compile-timeout", "300ms"]);
    assert!(
        stderr.contains("compiling took longer than 300ms")
            && stderr.contains("(--compile-timeout)"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (stderr, _, peak_kib) = check(dir.path(), &slow, &["--compile-memory", "64M"]);
    assert!(
        stderr.contains("compiling needed more than 64 MiB")
            && stderr.contains("(--compile-memory)"),
        "{stderr}"
    );
    assert!(peak_kib < 200 << 10, "{peak_kib} KiB");
}

#[test]
fn other_services_listen_and_answer_while_a_slow_guest_compiles() {
    let dir = tempdir();
    let slow = dir.path().join("slow.wasm");
    std::fs::write(&slow, many_functions(90_000)).unwrap();
    let config = neighbour() + &service("slow", &slow, "");
    let (server, admin) = start_with_admin(&config, &["hello"], &[]);
    let before = footprint(&server);
    // The neighbour serves; the slow one is still compiling.
    assert_neighbour_answers(&server);
    let (status, body) = get(admin, "/health");
    if !server.log.has(&["listening service=slow"]) {
        assert_eq!(
            (status, body.as_str()),
            (503, "unavailable: compiling: slow\n")
        );
    }
    server.log.wait_for(&["listening service=slow "]);
    let (status, _) = get(admin, "/health");
    assert_eq!(status, 200);
    // What the compiler used went away with it: the daemon holds the code,
    // not the compile (about half a gigabyte for this guest).
    let after = footprint(&server);
    assert!(
        after.rss_kib < before.rss_kib + (100 << 10),
        "{before:?} -> {after:?}"
    );
}

#[test]
fn a_stop_during_a_reload_that_compiles_is_heard_at_once() {
    let dir = tempdir();
    let slow = dir.path().join("slow.wasm");
    let config = neighbour() + &service("slow", &slow, "");
    std::fs::copy(module("echo"), &slow).unwrap();
    let mut server = TestServer::start(&config, &["hello", "slow"]);
    // The reload finds a guest that takes seconds to compile.
    std::fs::write(&slow, many_functions(90_000)).unwrap();
    let mark = server.log.len();
    signal(server.child(), "HUP");
    server.log.wait_for_after(mark, &["reloading the config"]);
    let asked = Instant::now();
    signal(server.child(), "TERM");
    let status = server.wait(PATIENCE).expect("no exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert!(
        server
            .log
            .has(&["reload abandoned: the daemon is stopping"])
    );
}
