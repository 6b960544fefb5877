//! The tests of `config::service`: one service block, from text to spec.

use std::path::Path;
use std::time::Duration;

use super::super::tests::parse_env;
use super::super::{Banners, Config, Limits, LogFlags, Preopen};
use super::*;

const SERVICES: &str = "echo 7/tcp\nhttp 80/tcp www\ndaytime 13/udp\n";

fn parse(text: &str) -> Config {
    parse_env(text, SERVICES, &[("PATH", "/bin"), ("TZ", "UTC")])
}

/// `line: message` of every error.
fn errors(config: &Config) -> Vec<String> {
    config
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.line, e.message))
        .collect()
}

fn only(config: Config) -> ServiceSpec {
    assert!(config.errors.is_empty(), "{:?}", errors(&config));
    assert_eq!(config.services.len(), 1);
    config.services.into_iter().next().unwrap()
}

#[test]
fn a_minimal_service_gets_the_built_in_defaults() {
    let spec = only(parse(
        "service hello\n{\n server = /srv/hello.wasm\n server_args = -v x\n type = UNLISTED\n port = 9000\n}\n",
    ));
    let expected = ServiceSpec {
        name: "hello".into(),
        file: "t.conf".into(),
        line: 1,
        lines: super::super::SpecLines {
            server: 3,
            port: 6,
            listen_unix: 1,
        },
        guest: GuestSource::File("/srv/hello.wasm".into()),
        argv: vec!["hello.wasm".into(), "-v".into(), "x".into()],
        env: vec![],
        listen: vec![Listen::Tcp("0.0.0.0:9000".parse().unwrap())],
        socket: super::super::SocketOptions::default(),
        instances: super::super::Cap::Unset,
        addresses: AddressRules::default(),
        allow_connect: Default::default(),
        access_times: vec![],
        per_source: super::super::Cap::Unset,
        cps: None,
        max_load: None,
        banners: Banners::default(),
        limits: Limits::default(),
        preopens: vec![],
        preopen_quota: Default::default(),
        log_on_success: LogFlags {
            host: true,
            pid: true,
            duration: true,
            exit: true,
            attempt: false,
            traffic: false,
        },
        log_on_failure: LogFlags {
            host: true,
            attempt: true,
            ..LogFlags::default()
        },
        log_type: None,
        proxy: None,
        tenant: None,
    };
    assert_eq!(spec, expected);
}

#[test]
fn service_lines_replace_add_to_and_remove_from_defaults() {
    let text = "\
defaults
{
 log_on_success = HOST EXIT
 passenv = PATH
 env = A=1 B=2
 instances = 5
 rlimit_as = 1M
 bind = 127.0.0.1
}
service s
{
 type = UNLISTED
 port = 1
 server = s.wasm
 log_on_success += PID
 log_on_failure = HOST
 passenv += TZ MISSING
 env -= A
 env += C=3
 instances = UNLIMITED
 rlimit_cpu = 2
 runtime_max = 500ms
 socket_type = stream
 protocol = TCP
 wait = no
}
";
    let spec = only(parse(text));
    assert_eq!(
        spec.log_on_success,
        LogFlags {
            host: true,
            pid: true,
            exit: true,
            ..LogFlags::default()
        }
    );
    assert_eq!(
        spec.log_on_failure,
        LogFlags {
            host: true,
            ..LogFlags::default()
        }
    );
    let env: Vec<_> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(env, ["B=2", "C=3", "PATH=/bin", "TZ=UTC"]);
    assert_eq!(spec.instances, super::super::Cap::Unlimited);
    let limits = Limits {
        memory: 1 << 20,
        cpu: Some(Duration::from_secs(2)),
        runtime: Some(Duration::from_millis(500)),
        files: None,
        idle: Some(crate::config::DEFAULT_IDLE),
    };
    assert_eq!(spec.limits, limits);
    assert_eq!(spec.listen, [Listen::Tcp("127.0.0.1:1".parse().unwrap())]);
}

#[test]
fn passenv_wins_over_env_and_id_renames() {
    let text = "service s {\n id = other\n type = UNLISTED\n port = 1\n server = s.wasm\n env = TZ=x Z=1\n passenv = TZ\n}\n";
    let spec = only(parse(text));
    assert_eq!(spec.name, "other");
    assert_eq!(
        spec.env,
        [
            ("Z".to_string(), "1".to_string()),
            ("TZ".to_string(), "UTC".to_string())
        ]
    );
}

#[test]
fn ports_come_from_the_services_file_unless_unlisted() {
    let port = |text: &str| only(parse(text)).listen[0].ip().unwrap().port();
    assert_eq!(port("service http {\n server = a.wasm\n}\n"), 80);
    assert_eq!(port("service www {\n server = a.wasm\n}\n"), 80);
    assert_eq!(
        port("service http {\n server = a.wasm\n port = 80\n}\n"),
        80
    );
    assert_eq!(port("service http {\n server = a.wasm\n port = 0\n}\n"), 0);
    assert_eq!(
        port("service http {\n server = a.wasm\n port = 8080\n type = UNLISTED\n}\n"),
        8080
    );
    assert_eq!(
        port("service mine {\n server = a.wasm\n port = 8080\n}\n"),
        8080
    );
    let config = parse(
        "service http {\n server = a.wasm\n port = 9999\n}\nservice daytime {\n server = a.wasm\n}\nservice u {\n type = unlisted\n server = a.wasm\n}\n",
    );
    assert!(config.services.is_empty());
    let e = errors(&config);
    assert!(
        e[0].starts_with("3: port 9999 differs from `http` in /")
            && e[0].ends_with(" (80): add `type = UNLISTED`"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("5: service `daytime` has no `port` and is not in /"),
        "{e:?}"
    );
    assert_eq!(
        e[2],
        "8: service `u` is `type = UNLISTED` but has no `port`"
    );
}

#[test]
fn internal_services_are_built_in() {
    let spec = only(parse("service echo {\n type = INTERNAL\n}\n"));
    assert_eq!(
        (spec.guest, spec.argv, spec.listen[0].ip().unwrap().port()),
        (
            GuestSource::Internal("echo".into()),
            vec!["echo".to_string()],
            7
        )
    );
    let config = parse(
        "service echo {\n type = INTERNAL\n server = x.wasm\n}\nservice nothing {\n port = 5\n}\n",
    );
    assert_eq!(
        errors(&config),
        [
            "3: `server` cannot be used with `type = INTERNAL`: the service is built in",
            "5: service `nothing` has no `server`: give the path of its .wasm file (or `type = INTERNAL`)",
        ]
    );
}

#[test]
fn an_unreadable_line_is_not_also_reported_as_missing() {
    let config = parse("service s {\n type = UNLISTED\n port 9000\n server = a.wasm\n}\n");
    assert_eq!(
        errors(&config),
        ["3: expected `NAME = VALUE` (or `+=`, `-=`), not `port 9000`"]
    );
    let config = parse("service s {\n type = UNLISTED\n port = 9000\n server = a b\n}\n");
    assert_eq!(errors(&config).len(), 1, "{:?}", errors(&config));
}

#[test]
fn redirect_takes_the_place_of_server_with_its_host_resolved() {
    let config = parse(
        "service r {\n type = UNLISTED\n port = 1\n redirect = 10.0.0.2 8080\n}\nservice n {\n type = UNLISTED\n port = 2\n redirect = localhost 25\n}\n",
    );
    assert_eq!(errors(&config), Vec::<String>::new());
    assert_eq!(
        config.services[0].guest,
        GuestSource::Redirect(([10, 0, 0, 2], 8080).into())
    );
    let GuestSource::Redirect(addr) = config.services[1].guest else {
        panic!("not a redirect: {:?}", config.services[1].guest);
    };
    assert!(addr.ip().is_loopback() && addr.port() == 25, "{addr}");
}

#[test]
fn a_bad_type_is_reported_once() {
    let config = parse("service rpcthing {\n type = RPC\n}\n");
    let errors = errors(&config);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("2: `type = RPC` is not supported: "));
}

#[test]
fn relative_server_and_preopen_paths_join_the_config_folder() {
    let dir = std::env::temp_dir().join(format!("wasinetd-svc-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let text = "service s {\n type = UNLISTED\n port = 1\n server = g/s.wasm\n preopen = data:/data\n preopen += data:/w:rw /:/root\n preopen -= /root\n}\n";
    std::fs::write(dir.join("conf"), text).unwrap();
    let var = |_: &str| None;
    let env = Env {
        services_file: Path::new("/nonexistent"),
        var: &var,
    };
    let spec = only(super::super::load_with(&dir.join("conf"), &env).unwrap());
    assert_eq!(spec.guest, GuestSource::File(dir.join("g/s.wasm")));
    assert_eq!(
        spec.preopens,
        [
            Preopen {
                host: dir.join("data"),
                guest: "/data".into(),
                writable: false,
                symlinks: false,
                beneath: None
            },
            Preopen {
                host: dir.join("data"),
                guest: "/w".into(),
                writable: true,
                symlinks: false,
                beneath: None
            },
        ]
    );
}

#[test]
fn unsupported_attributes_break_the_service_and_warnings_do_not() {
    let config = parse(
        "service a {\n libwrap = a\n type = UNLISTED\n port = 1\n server = a.wasm\n}\nservice b {\n user = nobody\n nice = 5\n type = UNLISTED\n port = 2\n server = b.wasm\n}\n",
    );
    assert!(
        errors(&config)[0].starts_with("2: `libwrap` is not supported: "),
        "{:?}",
        errors(&config)
    );
    assert_eq!(config.services.len(), 1);
    assert_eq!(config.warnings.len(), 2);
    assert_eq!(config.warnings[1].service.as_deref(), Some("b"));
    assert_eq!(
        config.warnings[1].message,
        "`nice` has no meaning for a WebAssembly guest (it runs on the daemon's threads, at the daemon's priority); ignored"
    );
}
