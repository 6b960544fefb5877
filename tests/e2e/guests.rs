//! What a guest sees and does: stdio streamed to and from the connection,
//! argv, an environment of only what it was given, only its preopens, and
//! the same for WASI preview 1 modules and preview 2 components.

use std::io::{Read, Write};
use std::net::Shutdown;

use crate::support::*;

const HELLO: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 13\r\n\r\nHello, World!";

#[test]
fn hello_http_answers_as_module_and_component() {
    let config = service("hello-p1", &module("hello-http"), "")
        + &service("hello-p2", &component("hello-http"), "");
    let server = TestServer::start(&config, &["hello-p1", "hello-p2"]);
    for name in ["hello-p1", "hello-p2"] {
        // No half-close: the guest must answer after the blank line alone.
        let mut s = connect(server.addr(name));
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(
            String::from_utf8(read_all(&mut s)).unwrap(),
            HELLO,
            "{name}"
        );
    }
    server
        .log
        .wait_for(&["exit=0", "service=hello-p1", "peer=127.0.0.1:", "duration="]);
    server
        .log
        .wait_for(&["exit=0", "service=hello-p2", "conn="]);
}

#[test]
fn upper_answers_and_its_stderr_is_logged_with_service_and_conn() {
    for (name, guest) in [
        ("upper-p1", module("upper")),
        ("upper-p2", component("upper")),
    ] {
        let server = TestServer::start(&service(name, &guest, ""), &[name]);
        assert_eq!(
            exchange_text(server.addr(name), "hello, wörld\n"),
            "HELLO, WÖRLD\n"
        );
        let line = server
            .log
            .wait_for(&["stderr", &format!("service={name}"), "got 14 bytes"]);
        assert!(line.contains("conn="), "{line}");
    }
}

#[test]
fn stdin_and_stdout_stream_instead_of_buffering() {
    let server = TestServer::start(&service("echo", &module("echo"), ""), &["echo"]);
    let mut s = connect(server.addr("echo"));
    // Each chunk must come back while the connection stays open.
    for chunk in ["first\n", "second\n", "third\n"] {
        s.write_all(chunk.as_bytes()).unwrap();
        let mut buf = vec![0; chunk.len()];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(buf, chunk.as_bytes());
    }
    s.shutdown(Shutdown::Write).unwrap();
    assert!(read_all(&mut s).is_empty());
    server.log.wait_for(&["exit=0", "service=echo"]);
}

#[test]
fn argv_is_the_server_name_then_server_args() {
    let config = service("args", &module("probe"), "\tserver_args = env one two");
    let server = TestServer::start(&config, &["args"]);
    let out = exchange_text(server.addr("args"), "");
    assert!(
        out.starts_with("arg 0=probe.wasm\narg 1=env\narg 2=one\narg 3=two\nenv "),
        "{out}"
    );
}

#[test]
fn environment_is_only_env_passenv_and_the_peer() {
    let config = service(
        "env",
        &module("probe"),
        "\tserver_args = env\n\tenv = GREETING=hi MODE=test\n\tpassenv = PASSED",
    );
    let server = TestServer::start_with(&config, &["env"], |cmd| {
        cmd.env("PASSED", "yes").env("SECRET", "host-only");
    });
    let out = exchange_text(server.addr("env"), "");
    let env: Vec<&str> = out.lines().filter(|l| l.starts_with("env ")).collect();
    assert_eq!(env.len(), 6, "{out}");
    assert!(env.contains(&"env GREETING=hi"), "{out}");
    assert!(env.contains(&"env MODE=test"), "{out}");
    assert!(env.contains(&"env PASSED=yes"), "{out}");
    assert!(env.contains(&"env REMOTE_HOST=127.0.0.1"), "{out}");
    assert!(env.contains(&"env REMOTE_ADDR=127.0.0.1"), "{out}");
    assert!(
        env.iter().any(|l| l.starts_with("env REMOTE_PORT=")),
        "{out}"
    );
    assert!(!out.contains("SECRET") && !out.contains("PATH="), "{out}");
}

#[test]
fn component_sees_the_same_args_and_environment() {
    let config = service(
        "env2",
        &component("probe"),
        "\tserver_args = env x\n\tenv = A=1",
    );
    let server = TestServer::start(&config, &["env2"]);
    let out = exchange_text(server.addr("env2"), "");
    assert!(
        out.starts_with("arg 0=probe.wasm\narg 1=env\narg 2=x\n"),
        "{out}"
    );
    assert!(
        out.contains("env A=1\n") && out.contains("env REMOTE_ADDR=127.0.0.1\n"),
        "{out}"
    );
}

#[test]
fn a_preopen_is_the_only_directory_the_guest_sees() {
    let data = tempdir();
    std::fs::write(data.path().join("note.txt"), "inside\n").unwrap();
    let scratch = tempdir();
    for guest in [module("probe"), component("probe")] {
        let extra = format!(
            "\tserver_args = fs ls:/data cat:/data/note.txt write:/data/new.txt:x \
             write:/scratch/out.txt:written cat:/scratch/out.txt cat:/etc/passwd \
             ls:/ cat:/data/../../../../etc/passwd\n\
             \tpreopen = {}:/data\n\tpreopen += {}:/scratch:rw",
            data.path().display(),
            scratch.path().display()
        );
        let server = TestServer::start(&service("fs", &guest, &extra), &["fs"]);
        let out = exchange_text(server.addr("fs"), "");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "ls /data ok note.txt", "{out}");
        assert_eq!(lines[1], "cat /data/note.txt ok inside\\n", "{out}");
        assert!(
            lines[2].starts_with("write /data/new.txt err"),
            "read-only preopen was written: {out}"
        );
        assert_eq!(lines[3], "write /scratch/out.txt ok", "{out}");
        assert_eq!(lines[4], "cat /scratch/out.txt ok written", "{out}");
        assert!(lines[5].starts_with("cat /etc/passwd err"), "{out}");
        assert!(lines[6].starts_with("ls / err"), "{out}");
        assert!(
            lines[7].starts_with("cat /data/../../../../etc/passwd err"),
            "{out}"
        );
        assert!(!data.path().join("new.txt").exists());
        assert_eq!(
            std::fs::read_to_string(scratch.path().join("out.txt")).unwrap(),
            "written"
        );
        std::fs::remove_file(scratch.path().join("out.txt")).unwrap();
    }
}

#[test]
fn a_guest_that_ignores_its_input_never_resets_the_client() {
    // xinetd gives `curl: (56) Recv failure: Connection reset by peer` here:
    // the handler exits with the request unread in the socket.
    let config = service("greet", &module("probe"), "\tserver_args = big 200000");
    let server = TestServer::start(&config, &["greet"]);
    for _ in 0..5 {
        let mut s = connect(server.addr("greet"));
        // A request body the guest never reads, larger than socket buffers
        // hold at once would not matter: it is all sent before reading.
        let body = vec![b'b'; 256 * 1024];
        let writer = {
            let mut s = s.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = s.write_all(&body);
            })
        };
        let out = read_all(&mut s);
        assert_eq!(out.len(), 200_000 + "\nend\n".len());
        assert!(out.ends_with(b"\nend\n"));
        writer.join().unwrap();
    }
}
