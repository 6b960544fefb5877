//! `wasinetd build SCRIPT.js`: a JavaScript handler in QuickJS's `--std`
//! style built ahead into a component with componentize-qjs (fetched with
//! npm into the cache's `tools/`, checked by SHA-256), served by the real
//! daemon: the example as shipped, a handler asking about its connection,
//! a script that does not compile (its message and line, nothing written),
//! and one that throws per connection (its stack, exit status 1).

use std::net::Shutdown;

use crate::build::{
    Tampered, Whoami, assert_draws_differ, build_broken, build_with_tampered_tool, script, start,
    whoami,
};
use crate::registry::{Built, example, prebuilt};
use crate::support::{connect, read_all, service};

const GET: &str = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
const HELLO: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\
                     Content-Length: 13\r\n\r\nHello, World!";

/// What `addr` answers to `send` (then end of input).
fn ask(addr: std::net::SocketAddr, send: &str) -> String {
    let mut client = connect(addr);
    std::io::Write::write_all(&mut client, send.as_bytes()).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    String::from_utf8(read_all(&mut client)).unwrap()
}

#[test]
fn the_js_example_built_is_served_by_the_daemon_and_its_build_said_each_step() {
    let hello = example("js/app/hello.js");
    let Some(Built { wasm, stderr }) = prebuilt(&hello) else {
        return;
    };
    let hello = hello.canonicalize().unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains("fetching")).collect();
    assert_eq!(
        lines,
        [
            format!(
                "build: building {} with componentize-qjs 0.4.5: QuickJS-ng started and the \
                 script compiled, snapshotted ...",
                hello.display()
            ),
            format!(
                "build: wrote {} (1 MB) from {}",
                wasm.with_extension("partial.wasm").display(),
                hello.display()
            ),
        ],
        "{stderr}"
    );
    // examples/js/hello-prebuilt.conf as shipped, but for where the guest
    // is and its port.
    let original = std::fs::read_to_string(example("js/hello-prebuilt.conf")).unwrap();
    let config = original
        .replace(
            "\tserver\t\t= build/hello.wasm",
            &format!("\tserver\t\t= {}", wasm.display()),
        )
        .replace("\tport\t\t= 8087", "\tport\t\t= 0");
    let changed = original.lines().zip(config.lines()).filter(|(a, b)| a != b);
    assert_eq!(changed.count(), 2, "only server and port adjusted");
    let server = start(&config, &["js-hello-prebuilt"]);
    let addr = server.addr("js-hello-prebuilt");
    assert_eq!(ask(addr, GET), HELLO);
    // A client that sends no blank line still gets its answer:
    // `std.in.getline` reads as QuickJS's does, to the end of input.
    assert_eq!(ask(addr, "GET / HTTP/1.1\r\n"), HELLO);
    server
        .log
        .wait_for(&["exit=0", "service=js-hello-prebuilt", "conn=2"]);
}

const WHOAMI: &str = r#"print("service=" + connection.serviceName());
print("conn=" + connection.connectionId());
print("protocol=" + connection.protocol());
print("peer=" + connection.peerAddress());
print("local=" + connection.localAddress());
print("env=" + Object.keys(std.getenviron()).sort().join(","));
print("unicode=" + std.in.getline());
"#;

#[test]
fn a_built_js_handler_learns_its_connection_as_the_log_shows_it() {
    let script = script("build-whoami-js-src", "whoami.js", WHOAMI);
    let Some(Built { wasm, .. }) = prebuilt(&script) else {
        return;
    };
    let config = service("whoami", &wasm, "\tid = who\n\tenv = GREETING=hi");
    let server = start(&config, &["who"]);
    let Whoami {
        answer,
        conn,
        me,
        addr,
    } = whoami(&server, "who", "naïve ☃ 🎉\r\n".as_bytes());
    assert_eq!(
        answer,
        format!(
            "service=who\nconn={conn}\nprotocol=tcp\npeer={me}\nlocal={addr}\n\
             env=GREETING,REMOTE_ADDR,REMOTE_HOST,REMOTE_PORT\nunicode=naïve ☃ 🎉\r\n"
        )
    );
}

/// Attack: a built guest starts from one snapshot, so whatever random
/// state the snapshot froze, every connection would share. Two clients of
/// the same handler must not be dealt the same "random" token.
#[test]
fn built_js_connections_draw_different_random_numbers() {
    let script = script(
        "build-random-js-src",
        "random.js",
        "print(Math.random() + ' ' + Math.random());\n",
    );
    if let Some(Built { wasm, .. }) = prebuilt(&script) {
        assert_draws_differ(&wasm);
    }
}

#[test]
fn a_js_script_that_does_not_compile_fails_the_build_with_its_message_and_line() {
    // The tool is fetched (or found) by building the example first.
    if prebuilt(&example("js/app/hello.js")).is_none() {
        return;
    }
    let (bad, stderr) = build_broken("broken.js", "const a = 1;\nconst b = ;\n");
    assert!(
        stderr.contains(&format!(
            "error: failed to build `{}`:\nError: unexpected token in expression: ';'\n    \
             at {}:2:11",
            bad.display(),
            bad.display()
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("entry.js") && !stderr.contains("<input>"),
        "{stderr}"
    );
}

#[test]
fn a_built_js_handler_that_throws_sends_what_it_wrote_and_logs_its_stack() {
    let script = script(
        "build-throw-js-src",
        "throws.js",
        // Throws on a connection that sends a line (not on the suite's
        // warm-up run, whose stdin is empty).
        "std.out.puts('before\\n');\nfunction f() {\n  throw new Error('boom');\n}\n\
         if (std.in.getline() !== null) f();\n",
    );
    let Some(Built { wasm, .. }) = prebuilt(&script) else {
        return;
    };
    let server = start(&service("throws", &wasm, ""), &["throws"]);
    assert_eq!(ask(server.addr("throws"), "go\n"), "before\n");
    server.log.wait_for(&["Error: boom"]);
    server.log.wait_for(&[&format!(
        "at f ({}:3:",
        script.canonicalize().unwrap().display()
    )]);
    server.log.wait_for(&["exit=1", "service=throws"]);
}

#[test]
fn a_tampered_cached_js_tool_is_refused_by_its_sha256() {
    // node is there (installed if need be) once the example is built.
    if prebuilt(&example("js/app/hello.js")).is_none() {
        return;
    }
    let Tampered {
        stderr,
        tool: tarball,
        sum: garbage,
    } = build_with_tampered_tool("componentize-qjs-0.4.5.tgz", "hello.js", "print('hi');\n");
    assert!(
        stderr.contains(&format!(
            "`{}` has SHA-256 {garbage}, expected \
             5f59d989c79090c7444725cfc08cdabc054e7f19e0dbec6351f1978c8046b6af",
            tarball.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("fetching componentize-qjs@"), "{stderr}");
}

#[test]
fn a_built_js_handler_ends_at_its_cpu_and_memory_limits_and_the_daemon_serves_on() {
    // Each spins or hoards only on a connection that sends a line (not on
    // the suite's warm-up run, whose stdin is empty).
    let spin = script(
        "build-spin-js-src",
        "spin.js",
        "if (std.in.getline() !== null) { for (;;) {} }\n",
    );
    let hog = script(
        "build-hog-js-src",
        "hog.js",
        "if (std.in.getline() !== null) {\n  const all = [];\n  \
         for (;;) all.push(new Array(100000).fill(all.length));\n}\nprint('done');\n",
    );
    let (Some(spin), Some(hog)) = (prebuilt(&spin), prebuilt(&hog)) else {
        return;
    };
    let config = [
        service("spin", &spin.wasm, "\trlimit_cpu = 500ms"),
        service("hog", &hog.wasm, "\trlimit_as = 32M"),
        service("ok", &hog.wasm, ""),
    ]
    .concat();
    let server = start(&config, &["spin", "hog", "ok"]);
    assert_eq!(ask(server.addr("spin"), "go\n"), "");
    server.log.wait_for(&["service=spin", "cpu limit"]);
    assert!(!ask(server.addr("hog"), "go\n").contains("done"));
    server.log.wait_for(&["service=hog", "memory limit"]);
    assert_eq!(ask(server.addr("ok"), ""), "done\n");
}
