//! The daemon as a whole: config features that decide what is served, the
//! built-in default config, log flags, and a clean stop.

use std::process::{Command, Stdio};

use crate::support::*;

#[test]
fn sigterm_stops_cleanly_with_status_zero() {
    let server = TestServer::start(&service("hello", &module("hello-http"), ""), &["hello"]);
    let out = exchange_text(server.addr("hello"), "GET / HTTP/1.0\r\n\r\n");
    assert!(out.ends_with("Hello, World!"));
    let status = server.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn includedir_defaults_and_disable_decide_what_is_served() {
    let dir = tempdir();
    let d = dir.path().join("conf.d");
    std::fs::create_dir(&d).unwrap();
    let hello = module("hello-http");
    std::fs::write(d.join("alpha"), service("alpha", &hello, "")).unwrap();
    std::fs::write(d.join("beta"), service("beta", &hello, "\tdisable = yes")).unwrap();
    // xinetd skips names with a dot or a trailing tilde (editor backups).
    std::fs::write(d.join("gamma.rpmsave"), service("gamma", &hello, "")).unwrap();
    std::fs::write(d.join("delta~"), service("delta", &hello, "")).unwrap();
    std::fs::write(d.join("epsilon"), service("epsilon", &hello, "")).unwrap();
    let config = format!(
        "defaults\n{{\n\tinstances = 5\n\tdisabled = epsilon\n}}\nincludedir {}\n",
        d.display()
    );
    let server = TestServer::start(&config, &["alpha"]);
    let out = exchange_text(server.addr("alpha"), "GET / HTTP/1.0\r\n\r\n");
    assert!(out.ends_with("Hello, World!"));
    let listening: Vec<String> = server
        .log
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("listening "))
        .collect();
    assert_eq!(listening.len(), 1, "{listening:?}");
}

#[test]
fn meaningless_attributes_are_accepted_with_a_warning() {
    let config = service(
        "hello",
        &module("hello-http"),
        "\tuser = nobody\n\tgroup = nogroup\n\tnice = 10",
    );
    let server = TestServer::start(&config, &["hello"]);
    server.log.wait_for(&["`user`", "no meaning"]);
    server.log.wait_for(&["`group`"]);
    server.log.wait_for(&["`nice`"]);
}

#[test]
fn log_on_success_flags_choose_the_line() {
    let config = service("quiet", &module("hello-http"), "\tlog_on_success =")
        + &service("hostonly", &module("hello-http"), "\tlog_on_success = HOST");
    let server = TestServer::start(&config, &["quiet", "hostonly"]);
    exchange(server.addr("quiet"), b"GET / HTTP/1.0\r\n\r\n");
    exchange(server.addr("hostonly"), b"GET / HTTP/1.0\r\n\r\n");
    let line = server.log.wait_for(&["done service=hostonly"]);
    assert!(
        line.contains("done service=hostonly conn=") && line.contains("peer=127.0.0.1:"),
        "{line}"
    );
    assert!(
        !line.contains("duration=") && !line.contains("exit="),
        "{line}"
    );
    // Give the quiet service's line time to appear if it (wrongly) would.
    let _ = exchange(server.addr("hostonly"), b"GET / HTTP/1.0\r\n\r\n");
    server.log.wait_for(&["done service=hostonly conn=3"]);
    assert!(
        !server.log.has(&["service=quiet conn="]),
        "{:?}",
        server.log.lines()
    );
}

#[test]
fn built_in_default_config_serves_the_bundled_guests() {
    let dir = tempdir();
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::follow_child(&mut child);
    if std::path::Path::new("/etc/wasinetd.conf").exists() {
        log.wait_for(&["listening"]);
        let _ = child.kill();
        return;
    }
    log.wait_for(&["built-in default config"]);
    let hello = log.wait_for(&["listening service=hello-http addr=127.0.0.1:8080"]);
    let _ = hello;
    log.wait_for(&["listening service=echo addr=127.0.0.1:8007"]);
    log.wait_for(&["listening service=upper addr=127.0.0.1:8008"]);
    let out = exchange_text("127.0.0.1:8080".parse().unwrap(), "GET / HTTP/1.0\r\n\r\n");
    assert!(out.ends_with("Hello, World!"), "{out}");
    assert_eq!(
        exchange_text("127.0.0.1:8008".parse().unwrap(), "abc\n"),
        "ABC\n"
    );
    assert_eq!(
        exchange_text("127.0.0.1:8007".parse().unwrap(), "abc\n"),
        "abc\n"
    );
    signal(&child, "TERM");
    let status = wait_timeout(&mut child, PATIENCE).unwrap();
    assert!(status.success());
}
