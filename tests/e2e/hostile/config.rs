//! Config input under attack: files that never end, include fan-outs, a
//! FIFO at a reload. Every load ends quickly, in a result or `FILE:LINE`
//! errors, and the daemon goes on serving and hearing signals.

use std::time::{Duration, Instant};

use super::*;

fn mkfifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
}

#[test]
fn an_include_fan_out_is_refused_quickly() {
    // Each file includes the next one three times: 3^17 reads if each
    // include were read again.
    let dir = tempdir();
    for i in 0..17 {
        let next = format!("includefile f{}\n", i + 1);
        std::fs::write(dir.path().join(format!("f{i}")), next.repeat(3)).unwrap();
    }
    std::fs::write(dir.path().join("f17"), "").unwrap();
    let started = Instant::now();
    let out = wasinetd()
        .args(["check", "-f"])
        .arg(dir.path().join("f0"))
        .output()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is included more than once; each file is read once"),
        "{stderr}"
    );
    assert!(!out.status.success());
}

#[test]
fn a_fifo_include_fails_a_reload_at_once_and_the_daemon_stays_up() {
    let dir = tempdir();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let conf = neighbour();
    let mut server = TestServer::start(&conf, &["hello"]);
    assert_neighbour_answers(&server);
    let before = footprint(&server);
    let file = server.dir.path().join("wasinetd.conf");
    std::fs::write(&file, format!("{conf}includefile {}\n", fifo.display())).unwrap();
    let mark = server.log.len();
    signal(server.child(), "HUP");
    server.log.wait_for_after(
        mark,
        &["reload failed", "still serving the previous config"],
    );
    assert!(server.log.has(&["it is a FIFO, not a regular file"]));
    assert_neighbour_answers(&server);
    // A FIFO as a guest, too.
    std::fs::write(&file, format!("{conf}{}", service("fifo", &fifo, ""))).unwrap();
    let mark = server.log.len();
    signal(server.child(), "HUP");
    server.log.wait_for_after(mark, &["reload failed"]);
    assert_back_to(&server, before, 32 << 10);
    signal(server.child(), "TERM");
    let status = server.wait(PATIENCE).expect("no exit after SIGTERM");
    assert!(status.success());
}

#[test]
fn a_config_larger_than_its_limit_is_an_error_not_a_read_until_memory_runs_out() {
    let dir = tempdir();
    let big = dir.path().join("big");
    std::fs::write(&big, "# padding\n".repeat(200_000)).unwrap();
    let top = dir.path().join("top");
    std::fs::write(&top, format!("includefile {}\n", big.display())).unwrap();
    let out = wasinetd().args(["check", "-f"]).arg(&top).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("it is larger than the limit of 1 MiB"),
        "{stderr}"
    );
}
