//! The tests of `config::values`: the parsers of an attribute's words.

use super::*;

fn w(words: &str) -> Vec<String> {
    words.split_whitespace().map(str::to_string).collect()
}

#[test]
fn sizes() {
    let s = |v| size("rlimit_as", &w(v));
    assert_eq!(s("64K"), Ok(64 << 10));
    assert_eq!(s("128m"), Ok(128 << 20));
    assert_eq!(s("4G"), Ok(MAX_MEMORY));
    assert_eq!(s("1048576"), Ok(1 << 20));
    assert_eq!(s("unlimited"), Ok(MAX_MEMORY));
    assert_eq!(
        s("lots"),
        Err("`rlimit_as` takes a size like 64M or UNLIMITED, not `lots`".into())
    );
    assert_eq!(
        s("12X").unwrap_err(),
        "`rlimit_as` takes a size like 64M or UNLIMITED, not `12X`"
    );
    assert_eq!(
        s("8G").unwrap_err(),
        "`rlimit_as` must be from 64K to 4G (wasm32's limit), not `8G`"
    );
    assert_eq!(
        s("1000").unwrap_err(),
        "`rlimit_as` must be from 64K to 4G (wasm32's limit), not `1000`"
    );
    assert!(s("99999999999999999999G").is_err());
    assert_eq!(
        s("").unwrap_err(),
        "`rlimit_as` takes a size like 64M or UNLIMITED, but has no value"
    );
}

#[test]
fn durations() {
    let d = |v| duration("rlimit_cpu", &w(v));
    assert_eq!(d("500ms"), Ok(Some(Duration::from_millis(500))));
    assert_eq!(d("30s"), Ok(Some(Duration::from_secs(30))));
    assert_eq!(d("30"), Ok(Some(Duration::from_secs(30))));
    assert_eq!(d("2m"), Ok(Some(Duration::from_secs(120))));
    assert_eq!(d("2MIN"), Ok(Some(Duration::from_secs(120))));
    assert_eq!(d("1h"), Ok(Some(Duration::from_secs(3600))));
    assert_eq!(d("UNLIMITED"), Ok(None));
    assert_eq!(d("infinity"), Ok(None));
    let bad =
        "`rlimit_cpu` takes a duration like 10s or 500ms (a plain number is seconds), or UNLIMITED";
    assert_eq!(d("fast").unwrap_err(), format!("{bad}, not `fast`"));
    // A fraction says how to write it whole.
    assert_eq!(
        d("1.5s").unwrap_err(),
        "`rlimit_cpu` takes whole numbers: write `1.5s` as `1500ms`"
    );
    assert_eq!(
        d("0.5m").unwrap_err(),
        "`rlimit_cpu` takes whole numbers: write `0.5m` as `30000ms`"
    );
    assert_eq!(
        d("1.5").unwrap_err(),
        "`rlimit_cpu` takes whole numbers: write `1.5` as `1500ms`"
    );
    assert_eq!(
        d("1.").unwrap_err(),
        "`rlimit_cpu` takes whole numbers: write `1.` as `1000ms`"
    );
    assert_eq!(d("10d").unwrap_err(), format!("{bad}, not `10d`"));
    assert_eq!(
        d("0s").unwrap_err(),
        "`rlimit_cpu` must be more than 0 (UNLIMITED means no limit)"
    );
    assert!(d("99999999999999999999h").is_err());
}

#[test]
fn one_word_and_trailing_comments() {
    assert_eq!(
        port("port", &w("80 # web")).unwrap_err(),
        "`port` takes one value, a number from 0 to 65535 (0: any free port), not 3 words: `80 # web`; \
         `#` starts a comment only at the start of a line"
    );
    assert_eq!(port("port", &w("0")), Ok(0));
    assert_eq!(port("port", &w("65535")), Ok(65535));
    assert!(
        port("port", &w("65536"))
            .unwrap_err()
            .ends_with("not `65536`")
    );
    assert!(port("port", &w("http")).is_err());
}

#[test]
fn addresses_counts_and_booleans() {
    assert_eq!(
        ip("bind", &w("127.0.0.1")),
        Ok("127.0.0.1".parse().unwrap())
    );
    assert_eq!(ip("bind", &w("[::1]")), Ok("::1".parse().unwrap()));
    assert_eq!(
        ip("interface", &w("localhost")).unwrap_err(),
        "`interface` takes an IP address like 127.0.0.1 or ::1, not `localhost`"
    );
    assert_eq!(
        instances("instances", &w("30")),
        Ok(super::super::Cap::At(30))
    );
    assert_eq!(
        instances("instances", &w("Unlimited")),
        Ok(super::super::Cap::Unlimited)
    );
    assert!(instances("instances", &w("0")).is_err());
    assert_eq!(yes_no("disable", &w("YES")), Ok(true));
    assert_eq!(
        yes_no("disable", &w("maybe")).unwrap_err(),
        "`disable` takes `yes` or `no`, not `maybe`"
    );
}

#[test]
fn flags_and_sets() {
    let f = log_flags("log_on_success", &w("host Pid EXIT")).unwrap();
    assert!(f.host && f.pid && f.exit && !f.duration && !f.attempt && !f.traffic);
    assert!(log_flags("log_on_success", &w("TRAFFIC")).unwrap().traffic);
    assert_eq!(
        log_flags("log_on_success", &w("HOST USERID")).unwrap_err(),
        "`log_on_success` flag `USERID`: RFC 1413 ident is obsolete; not supported"
    );
    assert!(
        log_flags("log_on_failure", &w("RECORD"))
            .unwrap_err()
            .contains("not `RECORD`")
    );
    assert_eq!(
        env_pairs(&w("A=1 B= C=x=y")).unwrap()[2],
        ("C".into(), "x=y".into())
    );
    assert_eq!(
        env_pairs(&w("A")).unwrap_err(),
        "`env` takes NAME=value words, not `A`"
    );
    assert_eq!(
        var_names("passenv", &w("PATH A=b"), false).unwrap_err(),
        "`passenv` takes variable names, not `A=b`"
    );
    assert_eq!(
        var_names("env", &w("A=b C"), true),
        Ok(vec!["A".into(), "C".into()])
    );
}

#[test]
fn types_and_single_choice_attributes() {
    assert_eq!(
        types(&w("unlisted INTERNAL")),
        Ok(Types {
            unlisted: true,
            internal: true
        })
    );
    assert!(
        types(&w("RPC"))
            .unwrap_err()
            .starts_with("`type = RPC` is not supported: ONC RPC services are registered")
    );
    assert_eq!(
        max_load("max_load", &w("2.5")),
        Ok(crate::config::MaxLoad::from_hundredths(250))
    );
    assert_eq!(
        max_load("max_load", &w("0.001")),
        Ok(crate::config::MaxLoad::from_hundredths(1))
    );
    for bad in ["0", "-1", "NaN", "inf", "high"] {
        assert_eq!(
            max_load("max_load", &w(bad)),
            Err(format!(
                "`max_load` takes a load average above 0, like 2.5, not `{bad}`"
            ))
        );
    }
    assert_eq!(files("rlimit_files", &w("64")), Ok(Some(64)));
    assert_eq!(files("rlimit_files", &w("unlimited")), Ok(None));
    assert!(files("rlimit_files", &w("2")).is_err());
    assert_eq!(
        types(&w("FOO")).unwrap_err(),
        "`type` takes UNLISTED and/or INTERNAL, not `FOO`"
    );
}
