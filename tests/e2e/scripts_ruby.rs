//! Ruby handlers: npm's CRuby build (`ruby.wasm`, a reactor made for a
//! JavaScript host) as a service's `server`, driven by the daemon itself,
//! ruby's options and the script as `server_args`. The example in
//! `examples/ruby/` runs as shipped; real scripts probe the sandbox as the
//! Python and JS ones do (tests/e2e/scripts.rs): no file outside the
//! preopens, no host environment, no outliving limits; and a script's own
//! errors reach the log as `ruby` would print them.

use crate::registry::ruby_wasm;
use crate::scripts::{HELLO, adjusted, app, ask, start, start_with_secret};
use crate::support::{exchange_text, service};

#[test]
fn ruby_hello_example_serves_http_as_documented() {
    let Some(ruby) = ruby_wasm() else { return };
    let server = start(&adjusted("ruby/hello.conf", &ruby), &["ruby-hello"]);
    assert_eq!(ask(server.addr("ruby-hello")), HELLO);
    assert_eq!(ask(server.addr("ruby-hello")), HELLO);
    server
        .log
        .wait_for(&["exit=0", "service=ruby-hello", "conn=2", "duration="]);
}

const RUBY_PROBE: &str = r##"
def attempt(name)
  puts "#{name} ok #{yield.inspect}"
rescue Exception => e
  puts "#{name} error #{e.class}"
end
attempt("data") { File.read("/app/data.txt") }
attempt("passwd") { File.read("/etc/passwd") }
attempt("parent") { File.read("/app/../secret.txt") }
attempt("host-path") { File.read(ENV["SECRET_PATH"]) }
attempt("write") { File.write("/app/new.txt", "x") }
attempt("env") { ENV.keys.sort }
attempt("argv") { [$0, __FILE__, ARGV] }
attempt("json") { require "json"; JSON.generate({"a" => 1}) }
"##;

#[test]
fn ruby_script_reads_only_its_preopen_and_sees_only_its_env() {
    let Some(ruby) = ruby_wasm() else { return };
    let dir = app(&[("probe.rb", RUBY_PROBE), ("data.txt", "inside\n")]);
    let secret = dir.path().join("secret.txt");
    let extra = format!(
        "\tserver_args = --disable-gems /app/probe.rb one -two\n\tpreopen = {}:/app\n\
         \tenv = SECRET_PATH={}",
        dir.path().join("app").display(),
        secret.display()
    );
    let config = service("probe", &ruby, &extra);
    let server = start_with_secret(&config, &["probe"]);
    let out = exchange_text(server.addr("probe"), "");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "data ok \"inside\\n\"",
            "passwd error Errno::ENOENT",
            "parent error Errno::EPERM",
            "host-path error Errno::ENOENT",
            "write error Errno::EPERM",
            "env ok [\"REMOTE_ADDR\", \"REMOTE_HOST\", \"REMOTE_PORT\", \"SECRET_PATH\"]",
            "argv ok [\"/app/probe.rb\", \"/app/probe.rb\", [\"one\", \"-two\"]]",
            "json ok \"{\\\"a\\\":1}\"",
        ],
        "{out}"
    );
    assert!(!out.contains("host's secret") && !out.contains("do-not-leak"));
    assert!(!dir.path().join("app/new.txt").exists());
    server.log.wait_for(&["exit=0", "service=probe"]);
}

#[test]
fn ruby_scripts_end_at_their_limits_and_their_errors_are_logged_as_ruby_prints_them() {
    let Some(ruby) = ruby_wasm() else { return };
    let dir = app(&[
        ("spin.rb", "loop {}\n"),
        ("hog.rb", "a = []\nloop { a << \"x\" * 1_000_000 }\n"),
        ("nap.rb", "sleep 30\nputs 'woke'\n"),
        ("raise.rb", "puts 'before'\nraise ArgumentError, 'boom'\n"),
        ("syntax.rb", "puts 'never'\ndef broken(\n"),
        ("status.rb", "puts 'leaving'\nexit 3\n"),
        ("bridge.rb", "require 'js'\nJS.global\n"),
        ("ok.rb", "puts 'still serving'\n"),
    ]);
    let app_dir = dir.path().join("app");
    let block = |name: &str, limit: &str| {
        let extra = format!(
            "\tserver_args = --disable-gems /app/{name}.rb\n\tpreopen = {}:/app\n\t{limit}",
            app_dir.display()
        );
        service(name, &ruby, &extra)
    };
    let config = [
        block("spin", "rlimit_cpu = 500ms"),
        block("hog", "rlimit_as = 64M"),
        block("nap", "runtime_max = 1s"),
        block("raise", ""),
        block("syntax", ""),
        block("status", ""),
        block("bridge", ""),
        block("ok", ""),
    ]
    .concat();
    let names = [
        "spin", "hog", "nap", "raise", "syntax", "status", "bridge", "ok",
    ];
    let server = start(&config, &names);
    for name in ["spin", "hog", "nap"] {
        let out = exchange_text(server.addr(name), "");
        assert!(!out.contains("woke"), "{out}");
    }
    server.log.wait_for(&["service=spin", "cpu limit"]);
    server.log.wait_for(&["service=hog", "memory limit"]);
    server.log.wait_for(&["service=nap", "runtime limit"]);

    // What was written before the error is sent; the error is the script's,
    // at its own path and line, and the exit status is ruby's.
    assert_eq!(exchange_text(server.addr("raise"), ""), "before\n");
    server
        .log
        .wait_for(&["/app/raise.rb:2:in '<main>': boom (ArgumentError)"]);
    server.log.wait_for(&["exit=1", "service=raise"]);
    assert_eq!(exchange_text(server.addr("syntax"), ""), "");
    server.log.wait_for(&["/app/syntax.rb:2:", "syntax error"]);
    server.log.wait_for(&["exit=1", "service=syntax"]);
    assert_eq!(exchange_text(server.addr("status"), ""), "leaving\n");
    server.log.wait_for(&["exit=3", "service=status"]);
    // Ruby's `js` library has no JavaScript to call here: it fails, plainly.
    assert_eq!(exchange_text(server.addr("bridge"), ""), "");
    server.log.wait_for(&[
        "service=bridge",
        "Ruby's `js` library called JavaScript (`global-this`); wasinetd has no JavaScript host",
    ]);
    assert_eq!(exchange_text(server.addr("ok"), ""), "still serving\n");
}

/// A hand-made module shaped like npm's CRuby (its entry points, no
/// `_start`), with `body` spliced in: each entry point as given, or a
/// harmless default.
fn fake_ruby(dir: &std::path::Path, name: &str, parts: &[(&str, &str)]) -> std::path::PathBuf {
    let part = |key: &str, default: &str| {
        parts
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(default.to_owned(), |(_, v)| (*v).to_owned())
    };
    let wat = format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (func (export "_initialize") {init})
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) {realloc})
  (func (export "ruby-init: func(args: list<string>) -> ()") (param i32 i32))
  (func (export "rb-eval-string-protect: func(str: string) -> tuple<handle<rb-abi-value>, s32>")
    (param i32 i32) (result i32) {eval}))"#,
        imports = part("imports", ""),
        init = part("init", ""),
        realloc = part(
            "realloc",
            "(local $p i32) global.get $next local.set $p \
             global.get $next local.get 3 i32.add global.set $next local.get $p",
        ),
        eval = part("eval", "i32.const 0"),
    );
    let path = dir.join(format!("{name}.wat"));
    std::fs::write(&path, wat).unwrap();
    path
}

#[test]
fn a_hostile_module_shaped_like_ruby_fails_its_connection_and_nothing_else() {
    let dir = crate::support::tempdir();
    let d = dir.path();
    let guests = [
        (
            "fake-ok",
            fake_ruby(d, "ok", &[]),
            "\tserver_args = /app/x.rb",
        ),
        (
            "realloc-oob",
            fake_ruby(d, "realloc", &[("realloc", "i32.const -16")]),
            "\tserver_args = /app/x.rb",
        ),
        (
            "eval-oob",
            fake_ruby(d, "eval", &[("eval", "i32.const -4")]),
            "\tserver_args = /app/x.rb",
        ),
        (
            "eval-state",
            fake_ruby(
                d,
                "state",
                &[(
                    "eval",
                    "(i32.store (i32.const 4) (i32.const 6)) i32.const 0",
                )],
            ),
            "\tserver_args = /app/x.rb",
        ),
        (
            "init-spin",
            fake_ruby(d, "spin", &[("init", "(loop br 0)")]),
            "\tserver_args = /app/x.rb\n\trlimit_cpu = 300ms",
        ),
        (
            "no-script",
            fake_ruby(d, "noscript", &[]),
            "\tserver_args = -W0",
        ),
        (
            "bad-abi",
            fake_ruby(
                d,
                "abi",
                &[(
                    "imports",
                    r#"(import "canonical_abi" "resource_new_rb-abi-value" (func (param f64) (result f64)))"#,
                )],
            ),
            "",
        ),
    ];
    let config: String = guests
        .iter()
        .map(|(name, path, extra)| service(name, path, extra))
        .collect();
    let serving = [
        "fake-ok",
        "realloc-oob",
        "eval-oob",
        "eval-state",
        "init-spin",
        "no-script",
    ];
    let server = start(&config, &serving);
    server.log.wait_for(&[
        "bad-abi",
        "unexpected signature for `canonical_abi::resource_new_rb-abi-value`",
    ]);
    for name in serving {
        assert_eq!(exchange_text(server.addr(name), ""), "", "{name}");
    }
    server.log.wait_for(&["exit=0", "service=fake-ok"]);
    server.log.wait_for(&[
        "service=realloc-oob",
        "cabi_realloc returned memory out of bounds",
    ]);
    server.log.wait_for(&["service=eval-oob", "out of bounds"]);
    server
        .log
        .wait_for(&["service=eval-state", "rb_eval_string_protect state 6"]);
    server.log.wait_for(&["service=init-spin", "cpu limit"]);
    server
        .log
        .wait_for(&["service=no-script", "a Ruby guest runs a script"]);
    // And the daemon still serves, each of them again.
    assert_eq!(exchange_text(server.addr("fake-ok"), ""), "");
    server
        .log
        .wait_for(&["exit=0", "service=fake-ok", "conn=7"]);
}
