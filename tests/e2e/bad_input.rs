//! Bad input of every kind gets a clear error or a log line, never a panic,
//! a hang or a dead daemon: broken guests, broken configs, bad clients.

use std::io::Write;
use std::path::Path;
use std::process::Output;

use crate::support::*;

fn check(conf: &Path) -> Output {
    wasinetd()
        .arg("check")
        .arg("-f")
        .arg(conf)
        .output()
        .unwrap()
}

/// Guests that cannot be served, each with the words its error must carry.
fn broken_guests(dir: &Path) -> Vec<(&'static str, std::path::PathBuf, &'static str)> {
    let garbage = dir.join("garbage.wasm");
    std::fs::write(&garbage, [0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]).unwrap();
    let truncated = dir.join("truncated.wasm");
    let hello = std::fs::read(module("hello-http")).unwrap();
    std::fs::write(&truncated, &hello[..hello.len() / 2]).unwrap();
    let imports = dir.join("imports.wat");
    std::fs::write(
        &imports,
        r#"(module (import "env" "evil" (func)) (func (export "_start")))"#,
    )
    .unwrap();
    let reactor = dir.join("reactor.wat");
    std::fs::write(&reactor, r#"(module (func (export "handle")))"#).unwrap();
    vec![
        (
            "missing",
            dir.join("nope.wasm"),
            "cannot read the guest file",
        ),
        ("garbage", garbage, "not a WebAssembly module"),
        ("truncated", truncated, "invalid module"),
        ("imports", imports, "imports that wasinetd does not provide"),
        ("reactor", reactor, "exports no `_start`"),
    ]
}

#[test]
fn check_names_service_and_path_of_every_broken_guest() {
    let dir = tempdir();
    let broken = broken_guests(dir.path());
    let mut config = String::new();
    for (name, path, _) in &broken {
        config += &service(name, path, "");
    }
    let conf = dir.path().join("broken.conf");
    std::fs::write(&conf, config).unwrap();
    let out = check(&conf);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for (name, path, words) in &broken {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("service `{name}`")))
            .unwrap_or_else(|| panic!("no error for {name}: {stderr}"));
        assert!(line.starts_with(&format!("{}:", conf.display())), "{line}");
        assert!(line.contains(&path.display().to_string()), "{line}");
        assert!(line.contains(words), "{line}");
    }
}

#[test]
fn check_summarises_a_good_config_and_exits_zero() {
    let dir = tempdir();
    let conf = dir.path().join("good.conf");
    let config = service(
        "hello",
        &module("hello-http"),
        "\trlimit_as = 32M\n\tinstances = 7",
    ) + &service("comp", &component("upper"), "")
        + &service(
            "guarded",
            &module("hello-http"),
            "\trlimit_data = 16M\n\trlimit_files = 20\n\tmax_load = 2.5",
        )
        + "service trap\n{\n\ttype = UNLISTED\n\tport = 0\n\tflags = SENSOR\n\tdeny_time = 90\n}\n";
    std::fs::write(&conf, config).unwrap();
    let out = check(&conf);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with("hello 127.0.0.1:0 module ")
            && lines[0].contains("rlimit_as=32M")
            && lines[0].contains("instances=7"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("comp 127.0.0.1:0 component "),
        "{stdout}"
    );
    // The smallest memory cap applies; max_load and rlimit_files when set.
    assert!(
        lines[2].starts_with("guarded 127.0.0.1:0 module ")
            && lines[2].contains("rlimit_as=16M")
            && lines[2].ends_with(" max_load=2.50 rlimit_files=20"),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with("trap 0.0.0.0:0 sensor sensor:deny_time=5400s "),
        "{stdout}"
    );
}

#[test]
fn broken_services_are_logged_and_the_rest_served() {
    let dir = tempdir();
    let mut config = service("good", &module("hello-http"), "");
    for (name, path, _) in broken_guests(dir.path()) {
        config += &service(name, &path, "");
    }
    // And one that cannot bind: a port another service has.
    let server = TestServer::start(&config, &["good"]);
    let out = exchange_text(server.addr("good"), "GET / HTTP/1.0\r\n\r\n");
    assert!(out.ends_with("Hello, World!"));
    for name in ["missing", "garbage", "truncated", "imports", "reactor"] {
        server
            .log
            .wait_for(&[&format!("service `{name}`"), "ERROR"]);
    }
}

#[test]
fn a_port_already_in_use_fails_that_service_only() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = service("good", &module("hello-http"), "")
        + &format!(
            "service clash\n{{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tport = {port}\n\tserver = {}\n}}\n",
            module("hello-http").display()
        );
    let server = TestServer::start(&config, &["good"]);
    server
        .log
        .wait_for(&["service `clash` cannot start", &format!("127.0.0.1:{port}")]);
    assert!(exchange_text(server.addr("good"), "\n\n").ends_with("Hello, World!"));
}

#[test]
fn serving_nothing_is_an_error() {
    let dir = tempdir();
    let conf = dir.path().join("none.conf");
    let (name, path, _) = broken_guests(dir.path()).remove(1);
    std::fs::write(&conf, service(name, &path, "")).unwrap();
    let out = wasinetd().arg("-f").arg(&conf).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no service could start"), "{stderr}");
    let out = wasinetd()
        .arg("-f")
        .arg(dir.path().join("absent.conf"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("absent.conf"), "{stderr}");
}

#[test]
fn bad_clients_do_not_disturb_the_daemon() {
    let config = service("hello", &module("hello-http"), "")
        + &service("echo", &module("echo"), "\truntime_max = 2s");
    let server = TestServer::start(&config, &["hello", "echo"]);
    // Connect and vanish; connect and reset; send binary junk; stall.
    drop(connect(server.addr("hello")));
    {
        let s = socket_with_linger_zero(server.addr("echo"));
        drop(s);
    }
    let mut junk = connect(server.addr("hello"));
    junk.write_all(&[0u8, 255, 13, 10, 13, 10, 7, 7]).unwrap();
    let _ = read_all(&mut junk);
    let stalled = connect(server.addr("echo"));
    // A flood into echo that is never read back.
    let mut flood = connect(server.addr("echo"));
    let chunk = vec![b'f'; 64 * 1024];
    for _ in 0..16 {
        if flood.write_all(&chunk).is_err() {
            break;
        }
    }
    drop(flood);
    for _ in 0..3 {
        assert!(
            exchange_text(server.addr("hello"), "GET / HTTP/1.0\r\n\r\n")
                .ends_with("Hello, World!")
        );
    }
    // The stalled client is cut at runtime_max; the daemon stays up.
    server.log.wait_for(&["runtime limit", "service=echo"]);
    drop(stalled);
    assert!(exchange_text(server.addr("echo"), "still here\n") == "still here\n");
}

fn socket_with_linger_zero(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let s = connect(addr);
    // SO_LINGER 0: close sends RST, the rudest way to leave.
    s.set_linger_zero();
    s
}

trait LingerZero {
    fn set_linger_zero(&self);
}

impl LingerZero for std::net::TcpStream {
    fn set_linger_zero(&self) {
        socket2::SockRef::from(self)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
    }
}
