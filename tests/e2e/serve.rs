//! The daemon as a whole: config features that decide what is served, the
//! built-in default config, log flags, and a clean stop.

use std::process::Stdio;

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
fn plus_and_minus_equals_adjust_what_defaults_give() {
    // defaults: HOST PID DURATION EXIT and no passenv; the service removes
    // DURATION and HOST, adds a variable to pass.
    let config = "defaults\n{\n\tpassenv = KEEP\n}\n".to_owned()
        + &service(
            "adjusted",
            &module("probe"),
            "\tserver_args = env\n\tlog_on_success -= DURATION HOST\n\tpassenv += ALSO\n\tenv = A=1 B=2\n\tenv -= B",
        );
    let server = TestServer::start_with(&config, &["adjusted"], |cmd| {
        cmd.env("KEEP", "k").env("ALSO", "a");
    });
    let out = exchange_text(server.addr("adjusted"), "");
    assert!(
        out.contains("env KEEP=k\n") && out.contains("env ALSO=a\n"),
        "{out}"
    );
    assert!(
        out.contains("env A=1\n") && !out.contains("env B="),
        "{out}"
    );
    let line = server.log.wait_for(&["exit=0 service=adjusted"]);
    assert!(
        !line.contains("duration=") && !line.contains("peer="),
        "{line}"
    );
}

#[test]
fn built_in_default_config_serves_the_bundled_guests() {
    let dir = tempdir();
    let mut child = wasinetd()
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

#[test]
fn xinetd_attributes_bind_ipv6_relative_server_id_and_includefile() {
    let dir = tempdir();
    std::fs::copy(module("hello-http"), dir.path().join("hello.wasm")).unwrap();
    std::fs::write(
        dir.path().join("extra"),
        "service second\n{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tport = 0\n\tserver = hello.wasm\n}\n",
    )
    .unwrap();
    let config = format!(
        "service web\n{{\n\tid = web6\n\ttype = UNLISTED\n\tsocket_type = stream\n\tprotocol = tcp\n\
         \twait = no\n\tbind = ::1\n\tport = 0\n\tserver = hello.wasm\n}}\nincludefile {}\n",
        dir.path().join("extra").display()
    );
    // The config lives beside hello.wasm: relative paths resolve from it.
    let conf = dir.path().join("wasinetd.conf");
    std::fs::write(&conf, config).unwrap();
    let mut child = wasinetd()
        .arg("-f")
        .arg(&conf)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::follow_child(&mut child);
    let line = log.wait_for(&["listening service=web6 addr=[::1]:"]);
    let addr: std::net::SocketAddr = line.rsplit("addr=").next().unwrap().parse().unwrap();
    assert!(exchange_text(addr, "GET / HTTP/1.0\r\n\r\n").ends_with("Hello, World!"));
    let line = log.wait_for(&["listening service=second addr=127.0.0.1:"]);
    let addr: std::net::SocketAddr = line.rsplit("addr=").next().unwrap().parse().unwrap();
    assert!(exchange_text(addr, "GET / HTTP/1.0\r\n\r\n").ends_with("Hello, World!"));
    log.wait_for(&["exit=0 service=web6 conn=1 peer=[::1]:"]);
    let _ = child.kill();
}

#[test]
fn check_shows_the_safe_defaults_and_the_port_from_etc_services() {
    // Any tcp service above 1024 in this machine's /etc/services will do.
    let services = std::fs::read_to_string("/etc/services").expect("/etc/services is needed");
    let (name, port) = services
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            let (port, proto) = words.next()?.split_once('/')?;
            let port: u16 = port.parse().ok()?;
            (proto == "tcp" && port > 1024).then(|| (name.to_owned(), port))
        })
        .next()
        .expect("no tcp service above 1024 in /etc/services");
    let dir = tempdir();
    let conf = dir.path().join("c.conf");
    std::fs::write(
        &conf,
        format!(
            "service {name}\n{{\n\tbind = 127.0.0.1\n\tserver = {}\n}}\n",
            module("hello-http").display()
        ),
    )
    .unwrap();
    let out = wasinetd()
        .arg("check")
        .arg("-f")
        .arg(&conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!("{name} 127.0.0.1:{port} module ")),
        "{stdout}"
    );
    // Nothing said about limits: 128M of memory, 10 s of CPU, 60 s of time.
    assert!(
        stdout.contains("rlimit_as=128M rlimit_cpu=10s runtime_max=60s instances=UNLIMITED"),
        "{stdout}"
    );
}

#[test]
fn log_on_failure_flags_choose_the_refusal_line() {
    let sleeper = |name: &str, extra: &str| {
        service(
            name,
            &module("probe"),
            &format!("\tserver_args = sleep\n\tinstances = 1\n{extra}"),
        )
    };
    let config =
        sleeper("silent", "\tlog_on_failure =") + &sleeper("attempt", "\tlog_on_failure = ATTEMPT");
    let server = TestServer::start(&config, &["silent", "attempt"]);
    let mut held = Vec::new();
    for name in ["silent", "attempt"] {
        let mut first = connect(server.addr(name));
        let mut buf = [0; 9];
        std::io::Read::read_exact(&mut first, &mut buf).unwrap();
        held.push(first);
        let mut refused = connect(server.addr(name));
        let _ = std::io::Read::read_to_end(&mut refused, &mut Vec::new());
    }
    let line = server.log.wait_for(&["refused: instances service=attempt"]);
    assert!(!line.contains("peer="), "{line}");
    assert!(!server.log.has(&["refused: instances service=silent"]));
}
