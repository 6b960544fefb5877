//! Tenants: a customer's own service files, boxed in by the admin's
//! `tenant` block. Every escalation a customer's file can try is refused
//! at load with its line while the rest loads; the tenant's budgets are
//! summed over all its services while they run; a reload with a broken
//! tenant file keeps that tenant's running services and applies the rest.

use std::io::Read;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::reload::reload;
use crate::support::*;

/// A host's folders: the admin's config and one folder per tenant, each
/// with a copy of the guests its services run (a tenant's `server` must
/// lie in its own folders).
struct Host {
    root: tempfile::TempDir,
}

impl Host {
    fn new(tenants: &[&str]) -> Host {
        let host = Host { root: tempdir() };
        for tenant in tenants {
            let dir = host.tenant_dir(tenant);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            for guest in ["probe", "hello-http"] {
                std::fs::copy(module(guest), dir.join(format!("{guest}.wasm"))).unwrap();
            }
        }
        host
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.path().join("tenants").join(tenant)
    }

    /// Writes a tenant's service file, mode 0644.
    fn file(&self, tenant: &str, name: &str, text: &str) -> PathBuf {
        let path = self.tenant_dir(tenant).join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    }

    /// A `tenant` block for `tenant` with `extra` lines, its folder as
    /// `includedir` and `ports` the given ports.
    fn block(&self, tenant: &str, ports: &[u16], extra: &str) -> String {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        format!(
            "tenant {tenant}\n{{\n\tincludedir = {}\n\tports = {}\n\tbind = 127.0.0.1\n{extra}\n}}\n",
            self.tenant_dir(tenant).display(),
            ports.join(" ")
        )
    }
}

/// A tenant's service on `port` running its copy of `guest`.
fn tenant_service(name: &str, port: u16, guest: &str, extra: &str) -> String {
    format!(
        "service {name}\n{{\n\ttype = UNLISTED\n\tport = {port}\n\tserver = {guest}.wasm\n{extra}\n}}\n"
    )
}

/// Ports free now on loopback (bound and let go).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// `wasinetd check` on `config`: its exit status and its stderr lines.
fn check(host: &Host, config: &str) -> (bool, Vec<String>) {
    let (passed, lines, _) = check_listing(host, config);
    (passed, lines)
}

/// `wasinetd check` on `config`: its exit status, its stderr lines and the
/// services it lists on stdout, one line each.
fn check_listing(host: &Host, config: &str) -> (bool, Vec<String>, Vec<String>) {
    let conf = host.path().join("wasinetd.conf");
    std::fs::write(&conf, config).unwrap();
    let out = wasinetd()
        .arg("check")
        .arg("-f")
        .arg(&conf)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect();
    let listed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    (out.status.success(), lines, listed)
}

#[test]
fn every_escalation_in_a_tenants_file_is_refused_with_its_line_and_the_rest_loads() {
    let host = Host::new(&["acme"]);
    let data = host.path().join("srv/acme/data");
    std::fs::create_dir_all(&data).unwrap();
    let outside = host.path().join("srv/other");
    std::fs::create_dir_all(&outside).unwrap();
    let logs = host.path().join("logs/acme");
    std::fs::create_dir_all(&logs).unwrap();
    // A symlink inside the root that points out of it.
    std::os::unix::fs::symlink(&outside, host.path().join("srv/acme/escape")).unwrap();
    let [ok, other] = free_ports(2)[..] else {
        unreachable!()
    };
    let config = host.block(
        "acme",
        &[ok],
        &format!(
            "\tpreopen_root = {}\n\tallow_connect = 127.0.0.1:5432\n\tinstances = 4\n\t\
             rlimit_as = 16M\n\trlimit_cpu = 2\n\truntime_max = 10s\n\tlog_type = FILE {}",
            host.path().join("srv/acme").display(),
            logs.join("acme.log").display()
        ),
    );
    let admin_guest = module("hello-http");
    let cases: [(&str, String, &str); 13] = [
        (
            "unix",
            tenant_service(
                "unix",
                ok,
                "hello-http",
                &format!("\tlisten_unix = {}/acme.sock", host.path().display()),
            ),
            "service unix: `listen_unix`",
        ),
        (
            "port",
            tenant_service("port", other, "hello-http", ""),
            "service port: port",
        ),
        (
            "bind",
            tenant_service("bind", ok, "hello-http", "\tbind = 0.0.0.0"),
            "service bind: address 0.0.0.0 is outside tenant acme's `bind` (127.0.0.1)",
        ),
        (
            "server",
            format!(
                "service server\n{{\n\ttype = UNLISTED\n\tport = {ok}\n\tserver = {}\n}}\n",
                admin_guest.display()
            ),
            "is outside tenant acme's folders",
        ),
        (
            "dotdot",
            tenant_service(
                "dotdot",
                ok,
                "hello-http",
                &format!("\tpreopen = {}/../..:/up", data.display()),
            ),
            "is outside tenant acme's `preopen_root`",
        ),
        (
            "symlink",
            tenant_service(
                "symlink",
                ok,
                "hello-http",
                &format!(
                    "\tpreopen = {}:/esc",
                    host.path().join("srv/acme/escape").display()
                ),
            ),
            "is outside tenant acme's `preopen_root`",
        ),
        (
            "egress",
            tenant_service("egress", ok, "hello-http", "\tallow_connect = 10.0.0.9:22"),
            "service egress: `allow_connect` 10.0.0.9:22 is outside tenant acme's `allow_connect` (127.0.0.1:5432)",
        ),
        (
            "mem",
            tenant_service("mem", ok, "hello-http", "\trlimit_as = 64M"),
            "service mem: `rlimit_as` 64M is outside tenant acme's ceiling of 16M",
        ),
        (
            "cpu",
            tenant_service("cpu", ok, "hello-http", "\trlimit_cpu = UNLIMITED"),
            "service cpu: `rlimit_cpu` UNLIMITED is outside tenant acme's ceiling of 2s",
        ),
        (
            "inst",
            tenant_service("inst", ok, "hello-http", "\tinstances = UNLIMITED"),
            "service inst: `instances` UNLIMITED is outside tenant acme's `instances` of 4",
        ),
        (
            "env",
            tenant_service("env", ok, "hello-http", "\tpassenv = HOME"),
            "service env: `passenv` reads the daemon's own environment",
        ),
        (
            "log",
            tenant_service(
                "log",
                ok,
                "hello-http",
                "\tlog_type = FILE /tmp/acme-elsewhere.log",
            ),
            "service log: `log_type` is outside tenant acme's log folder",
        ),
        (
            "redir",
            format!(
                "service redir\n{{\n\ttype = UNLISTED\n\tport = {ok}\n\tredirect = 10.0.0.9 22\n}}\n"
            ),
            "service redir: `redirect` to 10.0.0.9:22 is outside tenant acme's `allow_connect`",
        ),
    ];
    for (file, text, _) in &cases {
        host.file("acme", file, text);
    }
    // What no tenant file may hold at all.
    host.file(
        "acme",
        "zadmin",
        "defaults\n{\n\tinstances = 1\n}\nincludedir /etc\n",
    );
    host.file(
        "acme",
        "zgood",
        &tenant_service("good", ok, "hello-http", ""),
    );
    let (passed, lines, listed) = check_listing(&host, &config);
    assert!(!passed, "{lines:#?}");
    // Only `good` loads: on the tenant's address, within its ceilings (it
    // set none), lower than the daemon's defaults of 128M, 10s and 60s.
    let good = format!(
        "good 127.0.0.1:{ok} module {} rlimit_as=16M rlimit_cpu=2s runtime_max=10s",
        host.tenant_dir("acme").join("hello-http.wasm").display()
    );
    assert_eq!(listed.len(), 1, "{listed:#?}\n{lines:#?}");
    assert!(listed[0].starts_with(&good), "{listed:#?}");
    for (file, _, expected) in &cases {
        let at = format!("{}:", host.tenant_dir("acme").join(file).display());
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&at) && l.contains(expected)),
            "no `{expected}` at {at} in {lines:#?}"
        );
    }
    let zadmin = host.tenant_dir("acme").join("zadmin").display().to_string();
    for (line, what) in [(1, "`defaults`"), (5, "`includedir`")] {
        let expected = format!(
            "{zadmin}:{line}: a file of tenant acme may hold `service` blocks only; {what} is the host admin's"
        );
        assert!(lines.contains(&expected), "{expected}\n{lines:#?}");
    }

    // The daemon starts with the good service, the others refused alike.
    let server = TestServer::start(&config, &["good"]);
    let out = exchange_text(server.addr("good"), "GET / HTTP/1.0\r\n\r\n");
    assert!(out.ends_with("Hello, World!"), "{out}");
    server
        .log
        .wait_for(&["service mem: `rlimit_as` 64M is outside tenant acme's ceiling of 16M"]);
    assert!(!server.log.has(&["listening", "service=port "]));
}

#[test]
fn a_tenants_files_must_be_written_by_their_owner_only_and_not_be_symlinks() {
    let host = Host::new(&["acme"]);
    let [port] = free_ports(1)[..] else {
        unreachable!()
    };
    let config = host.block("acme", &[port], "");
    let file = host.file(
        "acme",
        "svc",
        &tenant_service("svc", port, "hello-http", ""),
    );
    assert!(check(&host, &config).0);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
    let (passed, lines) = check(&host, &config);
    assert!(!passed);
    assert!(
        lines.iter().any(|l| l.contains(&format!("cannot read included file `{}`: it is writable by others than its owner (mode 0664)", file.display()))),
        "{lines:#?}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let secret = host.path().join("secret");
    std::fs::write(&secret, "service secret {\n}\n").unwrap();
    std::os::unix::fs::symlink(&secret, host.tenant_dir("acme").join("link")).unwrap();
    let (_, lines) = check(&host, &config);
    assert!(
        lines.iter().any(|l| l.contains("it is a symlink")),
        "{lines:#?}"
    );
    std::fs::remove_file(host.tenant_dir("acme").join("link")).unwrap();
    let dir = host.tenant_dir("acme");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (_, lines) = check(&host, &config);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let expected = format!(
        "cannot read the folder of tenant acme `{}`: it is writable by others than its owner (mode 0777)",
        dir.display()
    );
    assert!(lines.iter().any(|l| l.contains(&expected)), "{lines:#?}");
}

#[test]
fn a_tenant_at_its_instances_refuses_its_next_connection_while_another_tenant_serves() {
    let host = Host::new(&["acme", "beta"]);
    let [a1, a2, b] = free_ports(3)[..] else {
        unreachable!()
    };
    let config = host.block("acme", &[a1, a2], "\tinstances = 2") + &host.block("beta", &[b], "");
    host.file(
        "acme",
        "one",
        &tenant_service("one", a1, "probe", "\tserver_args = sleep"),
    );
    host.file(
        "acme",
        "two",
        &tenant_service("two", a2, "probe", "\tserver_args = sleep"),
    );
    host.file(
        "beta",
        "hello",
        &tenant_service("hello", b, "hello-http", ""),
    );
    let server = TestServer::start(&config, &["one", "two", "hello"]);
    // One guest on each of acme's services: its two.
    let mut held = Vec::new();
    for service in ["one", "two"] {
        let mut s = connect(server.addr(service));
        let mut buf = [0; 9];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"sleeping\n");
        held.push(s);
    }
    // A third, to either service, is refused: neither is at its own limit.
    let mut third = connect(server.addr("one"));
    let mut out = Vec::new();
    let _ = third.read_to_end(&mut out);
    assert!(out.is_empty(), "{out:?}");
    server
        .log
        .wait_for(&["refused: tenant instances", "service=one"]);
    // The other tenant is untouched.
    let out = exchange_text(server.addr("hello"), "GET / HTTP/1.0\r\n\r\n");
    assert!(out.ends_with("Hello, World!"), "{out}");
    // A slot given back is a slot again: the client resets, its guest ends.
    let gone = held.pop().unwrap();
    socket2::SockRef::from(&gone)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop(gone);
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let mut s = connect(server.addr("one"));
        let mut buf = Vec::new();
        let _ = (&mut s).take(9).read_to_end(&mut buf);
        if buf == b"sleeping\n" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot never came back"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The linear memory a module asks for at instantiation, in bytes.
fn initial_memory(wasm: &Path) -> u64 {
    use wasmtime::wasmparser::{Parser, Payload};
    let bytes = std::fs::read(wasm).unwrap();
    for payload in Parser::new(0).parse_all(&bytes) {
        if let Payload::MemorySection(reader) = payload.unwrap() {
            return reader.into_iter().next().unwrap().unwrap().initial * 65536;
        }
    }
    panic!("no memory in {}", wasm.display())
}

#[test]
fn a_tenants_memory_is_summed_across_its_services() {
    let host = Host::new(&["acme"]);
    let [hold, bomb] = free_ports(2)[..] else {
        unreachable!()
    };
    let base = initial_memory(&module("probe"));
    // Room for eight guests as they start, all services together.
    let sum = 8 * base;
    let config = host.block("acme", &[hold, bomb], &format!("\tmemory = {}K", sum >> 10));
    host.file(
        "acme",
        "hold",
        &tenant_service("hold", hold, "probe", "\tserver_args = sleep"),
    );
    host.file(
        "acme",
        "bomb",
        &tenant_service(
            "bomb",
            bomb,
            "probe",
            "\tserver_args = membomb\n\trlimit_as = 64M",
        ),
    );
    let server = TestServer::start(&config, &["hold", "bomb"]);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect(server.addr("hold"));
        let mut buf = [0; 9];
        s.read_exact(&mut buf).unwrap();
        held.push(s);
    }
    // The bomb's own limit is 64M; the tenant's sum stops it first, at
    // what the two sleepers and its own start leave: 5 guests' worth.
    let out = exchange_text(server.addr("bomb"), "");
    let failed: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("allocation failed at "))
        .unwrap_or_else(|| panic!("never failed: {out}"))
        .trim_end_matches(" MiB")
        .parse()
        .unwrap();
    let left_mib = (5 * base) >> 20;
    assert!(
        (left_mib.saturating_sub(2)..=left_mib).contains(&failed),
        "{out} (base {base})"
    );
    server.log.wait_for(&["memory limit", "service=bomb"]);

    // Six more sleepers take what is left: the tenant's memory is all
    // held, and a new connection is refused at once, without a guest.
    for _ in 0..6 {
        let mut s = connect(server.addr("hold"));
        let mut buf = Vec::new();
        let _ = (&mut s).take(9).read_to_end(&mut buf);
        held.push(s);
    }
    let mut refused = connect(server.addr("bomb"));
    let mut out = Vec::new();
    let _ = refused.read_to_end(&mut out);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    server
        .log
        .wait_for(&["refused: tenant memory", "service=bomb"]);
    drop(held);
}

#[test]
fn a_tenants_lines_go_to_its_own_log_and_nobody_elses() {
    let host = Host::new(&["acme", "beta"]);
    let [a, b] = free_ports(2)[..] else {
        unreachable!()
    };
    let logs = host.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log_of = |t: &str| logs.join(format!("{t}.log"));
    let config = host.block(
        "acme",
        &[a],
        &format!("\tlog_type = FILE {}", log_of("acme").display()),
    ) + &host.block(
        "beta",
        &[b],
        &format!("\tlog_type = FILE {}", log_of("beta").display()),
    );
    host.file("acme", "a", &tenant_service("a", a, "hello-http", ""));
    host.file("beta", "b", &tenant_service("b", b, "hello-http", ""));
    let server = TestServer::start(&config, &["a", "b"]);
    for _ in 0..2 {
        exchange_text(server.addr("a"), "GET / HTTP/1.0\r\n\r\n");
    }
    exchange_text(server.addr("b"), "GET / HTTP/1.0\r\n\r\n");
    let lines = |t: &str| -> Vec<String> {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let text = std::fs::read_to_string(log_of(t)).unwrap_or_default();
            let done: Vec<String> = text
                .lines()
                .filter(|l| l.contains("exit=0"))
                .map(str::to_string)
                .collect();
            if done.len() >= if t == "acme" { 2 } else { 1 } || std::time::Instant::now() > deadline
            {
                return text.lines().map(str::to_string).collect();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let acme = lines("acme");
    let beta = lines("beta");
    assert!(
        acme.iter().filter(|l| l.contains("service=a ")).count() >= 2,
        "{acme:#?}"
    );
    assert!(acme.iter().all(|l| !l.contains("service=b ")), "{acme:#?}");
    assert!(beta.iter().any(|l| l.contains("service=b ")), "{beta:#?}");
    assert!(beta.iter().all(|l| !l.contains("service=a ")), "{beta:#?}");
    drop(server);
}

#[test]
fn a_reload_with_a_broken_tenant_file_keeps_that_tenants_services_and_applies_the_rest() {
    let host = Host::new(&["acme", "beta"]);
    let [a, a2, b, b2] = free_ports(4)[..] else {
        unreachable!()
    };
    let config = host.block("acme", &[a, a2], "") + &host.block("beta", &[b, b2], "");
    host.file(
        "acme",
        "a",
        &tenant_service("a", a, "probe", "\tserver_args = greet acme-v1"),
    );
    host.file(
        "beta",
        "b",
        &tenant_service("b", b, "probe", "\tserver_args = greet beta-v1"),
    );
    let server = TestServer::start(&config, &["a", "b"]);
    assert_eq!(exchange_text(server.addr("a"), ""), "acme-v1\n");
    // acme's file gets a second, broken service and a change to `a`;
    // beta's gets a change and a new service.
    host.file(
        "acme",
        "a",
        &(tenant_service("a", a, "probe", "\tserver_args = greet acme-v2")
            + &tenant_service("a2", a2, "probe", "\trlimit_as = lots")),
    );
    host.file(
        "beta",
        "b",
        &(tenant_service("b", b, "probe", "\tserver_args = greet beta-v2")
            + &tenant_service("b2", b2, "probe", "\tserver_args = greet beta-new")),
    );
    std::fs::write(server.dir.path().join("wasinetd.conf"), &config).unwrap();
    let outcome = reload(&server);
    assert!(outcome.contains("reloaded in"), "{outcome}");
    server.log.wait_for(&["tenant acme: its files have errors, logged above; its 1 running service(s) go on as they were"]);
    server
        .log
        .wait_for(&["`rlimit_as` takes a size like 64M or UNLIMITED, not `lots`"]);
    assert_eq!(exchange_text(server.addr("a"), ""), "acme-v1\n");
    let b_addr = server.addr("b");
    assert_eq!(exchange_text(b_addr, ""), "beta-v2\n");
    let new = format!("127.0.0.1:{b2}").parse().unwrap();
    assert_eq!(exchange_text(new, ""), "beta-new\n");
    // Once acme's file is fixed, its change applies too.
    host.file(
        "acme",
        "a",
        &tenant_service("a", a, "probe", "\tserver_args = greet acme-v2"),
    );
    assert!(reload(&server).contains("reloaded in"));
    assert_eq!(exchange_text(server.addr("a"), ""), "acme-v2\n");
}

#[test]
fn a_tenant_swapping_a_symlink_into_its_preopen_after_load_reaches_nothing_outside() {
    let host = Host::new(&["acme"]);
    let [port] = free_ports(1)[..] else {
        unreachable!()
    };
    let root = host.path().join("srv/acme");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("note"), "mine\n").unwrap();
    let outside = host.path().join("secret");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("note"), "the admin's\n").unwrap();
    let config = host.block(
        "acme",
        &[port],
        &format!("\tpreopen_root = {}", root.display()),
    );
    host.file(
        "acme",
        "fs",
        &tenant_service(
            "fs",
            port,
            "probe",
            &format!(
                "\tserver_args = fs cat:/data/note\n\tpreopen = {}:/data",
                data.display()
            ),
        ),
    );
    let server = TestServer::start(&config, &["fs"]);
    assert_eq!(
        exchange_text(server.addr("fs"), ""),
        "cat /data/note ok mine\\n\nend\n"
    );
    // The tenant owns its root: it moves its folder away and puts a
    // symlink to the admin's folder in its place.
    std::fs::rename(&data, root.join("old")).unwrap();
    std::os::unix::fs::symlink(&outside, &data).unwrap();
    let out = exchange_text(server.addr("fs"), "");
    assert!(
        !out.contains("admin"),
        "the guest read outside its root: {out}"
    );
    server.log.wait_for(&["service=fs", "cannot open preopen"]);
    // A relative symlink that stays inside the root is still the tenant's
    // to use (an absolute one is refused: it names a path from `/`).
    std::fs::remove_file(&data).unwrap();
    std::os::unix::fs::symlink("old", &data).unwrap();
    assert_eq!(
        exchange_text(server.addr("fs"), ""),
        "cat /data/note ok mine\\n\nend\n"
    );
}

/// The CPU seconds `/metrics` gives `tenant` so far.
fn tenant_cpu(admin: std::net::SocketAddr, tenant: &str) -> f64 {
    let (_, body) = get(admin, "/metrics");
    let prefix = format!("wasinetd_tenant_cpu_seconds_total{{tenant=\"{tenant}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no CPU line for {tenant}:\n{body}"))
        .parse()
        .unwrap()
}

#[test]
fn busy_tenants_share_the_cpu_by_their_cpu_share() {
    let host = Host::new(&["light", "heavy"]);
    let [l, h] = free_ports(2)[..] else {
        unreachable!()
    };
    let spin = "(module (func (export \"_start\") (loop (br 0))))\n";
    for t in ["light", "heavy"] {
        std::fs::write(host.tenant_dir(t).join("spin.wat"), spin).unwrap();
    }
    let config = host.block("light", &[l], "\tcpu_share = 1")
        + &host.block("heavy", &[h], "\tcpu_share = 3");
    let svc = |name: &str, port: u16| {
        tenant_service(
            name,
            port,
            "spin",
            "\trlimit_cpu = UNLIMITED\n\truntime_max = 20s",
        )
        .replace("spin.wasm", "spin.wat")
    };
    host.file("light", "spin", &svc("spin-light", l));
    host.file("heavy", "spin", &svc("spin-heavy", h));
    let (server, admin) = start_with_admin(&config, &["spin-light", "spin-heavy"], &[]);
    // Three busy guests each: both tenants want every lane all the time.
    let held: Vec<std::net::TcpStream> = (0..3)
        .flat_map(|_| {
            [
                connect(server.addr("spin-light")),
                connect(server.addr("spin-heavy")),
            ]
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let (l0, h0) = (tenant_cpu(admin, "light"), tenant_cpu(admin, "heavy"));
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let (l1, h1) = (tenant_cpu(admin, "light"), tenant_cpu(admin, "heavy"));
    let (dl, dh) = (l1 - l0, h1 - h0);
    let share = dl / (dl + dh);
    eprintln!("light {dl:.2} s, heavy {dh:.2} s: light {share:.2}");
    // 1 : 3 is a quarter; wide bounds, as this shares the machine with
    // other tests (the lane's own tests hold it to two points).
    assert!(
        (0.12..=0.38).contains(&share),
        "light got {share:.2} of the busy CPU ({dl:.2} s against {dh:.2} s)"
    );
    drop(held);
}
