//! The words of the attributes that decide who gets a guest: `only_from`,
//! `no_access`, `access_times`, `per_source`, `cps`, and the banners, which
//! are read here, at load. What the values mean at connection time is
//! `access`'s and `admission`'s.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::values;
use crate::config::access::{self, TimeWindow};

/// The largest banner file: 64 KiB. A banner is a greeting, and it is sent
/// to refused peers too; it must stay cheap.
pub const MAX_BANNER: u64 = 64 << 10;

/// `cps = RATE PAUSE`: more than `rate` new guests in one second pause new
/// connections of the service for `pause`, which then ends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cps {
    /// New guests per second allowed.
    pub rate: u32,
    /// How long new connections are refused after a trip.
    pub pause: Duration,
}

/// A banner file, read at load.
#[derive(Clone, PartialEq, Eq)]
pub struct Banner {
    /// The file, joined to the config file's folder when relative.
    pub path: PathBuf,
    /// Its content, at most [`MAX_BANNER`] bytes.
    pub bytes: Arc<[u8]>,
}

impl fmt::Debug for Banner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Banner({}, {} bytes)",
            self.path.display(),
            self.bytes.len()
        )
    }
}

/// `banner`, `banner_success` and `banner_fail`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Banners {
    /// Sent to every connection, refused or not, first.
    pub banner: Option<Banner>,
    /// Sent when the connection is admitted, before the guest runs.
    pub success: Option<Banner>,
    /// Sent when the connection is refused, before it is closed.
    pub fail: Option<Banner>,
}

impl Banners {
    /// What an admitted connection is sent before its guest runs.
    pub fn on_success(&self) -> Vec<u8> {
        self.join(&self.success)
    }

    /// What a refused connection is sent before it is closed.
    pub fn on_failure(&self) -> Vec<u8> {
        self.join(&self.fail)
    }

    fn join(&self, second: &Option<Banner>) -> Vec<u8> {
        [&self.banner, second]
            .into_iter()
            .flatten()
            .flat_map(|b| b.bytes.iter().copied())
            .collect()
    }
}

/// `only_from` / `no_access` words: every network they stand for (host
/// names are resolved now).
pub(super) fn addresses(name: &str, words: &[String]) -> Result<Vec<IpNet>, String> {
    let mut nets = Vec::new();
    for word in words {
        nets.extend(access::parse_pattern(name, word)?);
    }
    Ok(nets)
}

/// `access_times`: one or more `hh:mm-hh:mm` windows.
pub(super) fn access_times(name: &str, words: &[String]) -> Result<Vec<TimeWindow>, String> {
    let what = "windows like 08:00-17:30 (hours 0-23, minutes 0-59)";
    if words.is_empty() {
        return Err(format!("`{name}` takes {what}, but has no value"));
    }
    words
        .iter()
        .map(|w| TimeWindow::parse(w).ok_or_else(|| format!("`{name}` takes {what}, not `{w}`")))
        .collect()
}

/// `cps = RATE PAUSE`, or UNLIMITED (`None`: no rate limit).
pub(super) fn cps(name: &str, words: &[String]) -> Result<Option<Cps>, String> {
    let what = "RATE PAUSE (more than RATE new connections in a second pause the service \
                for PAUSE, e.g. `50 10s`), or UNLIMITED";
    let (rate, pause) = match words {
        [one] if one.eq_ignore_ascii_case("unlimited") => return Ok(None),
        [rate, pause] => (rate, pause),
        _ => return Err(format!("`{name}` takes {what}, not `{}`", words.join(" "))),
    };
    let rate = match rate.parse::<u32>() {
        Ok(n) if n > 0 => n,
        _ => {
            return Err(format!(
                "`{name}` takes a RATE from 1 up (connections per second), not `{rate}`"
            ));
        }
    };
    let pause = match values::duration(name, std::slice::from_ref(pause)) {
        Ok(Some(pause)) => pause,
        Ok(None) => {
            return Err(format!(
                "`{name}` takes a PAUSE that ends: a paused service must resume by itself, not `{pause}`"
            ));
        }
        Err(_) => {
            return Err(format!(
                "`{name}` takes a PAUSE like 10 or 10s or 500ms, not `{pause}`"
            ));
        }
    };
    Ok(Some(Cps { rate, pause }))
}

/// `banner*`: a file, relative to `dir`, read now.
pub(super) fn banner(name: &str, words: &[String], dir: &Path) -> Result<Banner, String> {
    let word = values::one(name, "the path of a file", words)?;
    let path = dir.join(word);
    let too_big = || {
        format!(
            "the `{name}` file `{}` is larger than 64K; a banner is sent to every connection",
            path.display()
        )
    };
    let bytes = match super::files::read(&path, MAX_BANNER) {
        Ok(bytes) => bytes,
        Err(super::files::ReadError::TooLarge(_)) => return Err(too_big()),
        Err(e) => {
            return Err(format!(
                "cannot read the `{name}` file `{}`: {e}",
                path.display()
            ));
        }
    };
    Ok(Banner {
        path,
        bytes: bytes.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse_env;
    use super::super::{Config, ServiceSpec};
    use super::*;

    fn w(words: &str) -> Vec<String> {
        words.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn address_lists_join_their_words() {
        let nets = addresses("only_from", &w("10.0.0.0 ::1 192.168.{1,2}")).unwrap();
        let text: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            ["10.0.0.0/8", "::1/128", "192.168.1.0/24", "192.168.2.0/24"]
        );
        assert_eq!(addresses("only_from", &[]), Ok(vec![]));
        assert!(
            addresses("only_from", &w("10.0.0.1 10.1"))
                .unwrap_err()
                .ends_with("not `10.1`")
        );
    }

    #[test]
    fn access_times_words() {
        assert_eq!(
            access_times("access_times", &w("08:00-12:00 13:00-17:00"))
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            access_times("access_times", &w("08:00-12:00 9-17")).unwrap_err(),
            "`access_times` takes windows like 08:00-17:30 (hours 0-23, minutes 0-59), not `9-17`"
        );
        assert!(
            access_times("access_times", &[])
                .unwrap_err()
                .ends_with("but has no value")
        );
    }

    #[test]
    fn cps_words() {
        let c = |s| cps("cps", &w(s));
        assert_eq!(
            c("50 10"),
            Ok(Some(Cps {
                rate: 50,
                pause: Duration::from_secs(10)
            }))
        );
        assert_eq!(
            c("5 500ms").unwrap().unwrap().pause,
            Duration::from_millis(500)
        );
        assert_eq!(c("unlimited"), Ok(None));
        assert!(c("50").unwrap_err().ends_with("or UNLIMITED, not `50`"));
        assert!(c("1 2 3").unwrap_err().ends_with("not `1 2 3`"));
        assert_eq!(
            c("0 10").unwrap_err(),
            "`cps` takes a RATE from 1 up (connections per second), not `0`"
        );
        assert_eq!(
            c("10 forever").unwrap_err(),
            "`cps` takes a PAUSE like 10 or 10s or 500ms, not `forever`"
        );
        assert!(c("10 UNLIMITED").unwrap_err().contains("resume by itself"));
        assert!(c("10 0").is_err());
    }

    #[test]
    fn banners_are_read_at_load_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hi"), "hello\n").unwrap();
        std::fs::write(dir.path().join("no"), "no\n").unwrap();
        std::fs::write(dir.path().join("max"), vec![b'x'; MAX_BANNER as usize]).unwrap();
        std::fs::write(dir.path().join("big"), vec![b'x'; MAX_BANNER as usize + 1]).unwrap();
        let b = |f: &str| banner("banner", &w(f), dir.path());
        let hi = b("hi").unwrap();
        assert_eq!(&*hi.bytes, b"hello\n");
        assert_eq!(b("max").unwrap().bytes.len(), 65536);
        assert!(b("big").unwrap_err().contains("is larger than 64K"));
        let missing = b("missing").unwrap_err();
        assert!(
            missing.starts_with("cannot read the `banner` file `/"),
            "{missing}"
        );
        let banners = Banners {
            banner: Some(hi),
            success: None,
            fail: Some(b("no").unwrap()),
        };
        assert_eq!(banners.on_success(), b"hello\n");
        assert_eq!(banners.on_failure(), b"hello\nno\n");
        assert!(Banners::default().on_failure().is_empty());
    }

    const GOOD: &str = "type = UNLISTED\n port = 1\n server = a.wasm";

    /// Parses `defaults { DEFAULTS }` and one service with `body`.
    fn load(defaults: &str, body: &str) -> Config {
        let text = format!("defaults {{\n{defaults}\n}}\nservice s {{\n {GOOD}\n{body}\n}}\n");
        parse_env(&text, "", &[])
    }

    fn spec(defaults: &str, body: &str) -> ServiceSpec {
        let config = load(defaults, body);
        assert!(config.errors.is_empty(), "{:?}", config.errors);
        config.services.into_iter().next().unwrap()
    }

    fn errors(config: &Config) -> Vec<String> {
        config
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.line, e.message))
            .collect()
    }

    fn only_from(spec: &ServiceSpec) -> Option<Vec<String>> {
        let list = spec.addresses.only_from.as_ref()?;
        Some(list.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn address_lists_inherit_add_remove_and_empty() {
        let d = "only_from = 10.0.0.0\nonly_from = 127.0.0.1\nno_access = 10.1.0.0";
        assert_eq!(
            spec("", "").addresses,
            crate::config::access::AddressRules::default()
        );
        let s = spec(d, "");
        assert_eq!(only_from(&s).unwrap(), ["10.0.0.0/8", "127.0.0.1/32"]);
        assert_eq!(s.addresses.no_access[0].to_string(), "10.1.0.0/16");
        let s = spec(
            d,
            "only_from += ::1\nonly_from -= 10.0.0.0\nno_access -= 10.1.0.0",
        );
        assert_eq!(only_from(&s).unwrap(), ["127.0.0.1/32", "::1/128"]);
        assert!(s.addresses.no_access.is_empty());
        assert_eq!(
            only_from(&spec(d, "only_from = 192.168.0.0/16")).unwrap(),
            ["192.168.0.0/16"]
        );
        // An empty `only_from =` is nobody, not everyone.
        assert_eq!(
            only_from(&spec(d, "only_from =")).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            only_from(&spec("", "only_from += 10.0.0.1")).unwrap(),
            ["10.0.0.1/32"]
        );
        let config = load("", "only_from -= 10.0.0.1");
        assert_eq!(
            errors(&config),
            [
                "8: `only_from -=` has nothing to remove: no `only_from` is set, so everyone may connect; deny with `no_access`"
            ]
        );
    }

    #[test]
    fn limits_inherit_and_unlimited_overrides() {
        let d = "per_source = 3\ncps = 20 5s";
        let s = spec(d, "");
        assert_eq!(s.per_source, super::super::Cap::At(3));
        assert_eq!(
            s.cps,
            Some(Cps {
                rate: 20,
                pause: Duration::from_secs(5)
            })
        );
        let s = spec(d, "per_source = UNLIMITED\ncps = UNLIMITED");
        assert_eq!((s.per_source, s.cps), (super::super::Cap::Unlimited, None));
        // No rate limit unless the config asks (xinetd's default is 50 10).
        assert_eq!(spec("", "").cps, None);
        let config = load("access_times = 08:00-17:00", "per_source = 0\ncps = 10");
        assert_eq!(
            errors(&config),
            [
                "2: `access_times` is not allowed in `defaults`; set it in each service",
                "8: `per_source` takes a number from 1 up, or UNLIMITED, not `0`",
                "9: `cps` takes RATE PAUSE (more than RATE new connections in a second pause the service for PAUSE, e.g. `50 10s`), or UNLIMITED, not `10`",
            ]
        );
        assert_eq!(spec("", "access_times = 22:00-6:00").access_times.len(), 1);
    }

    #[test]
    fn banner_paths_join_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("motd"), "welcome\n").unwrap();
        let text = format!(
            "defaults {{\n banner_fail = motd\n}}\nservice s {{\n {GOOD}\n banner = motd\n}}\n"
        );
        std::fs::write(dir.path().join("conf"), text).unwrap();
        let var = |_: &str| None;
        let env = super::super::Env {
            services_file: Path::new("/nonexistent"),
            var: &var,
        };
        let config = super::super::load_with(&dir.path().join("conf"), &env).unwrap();
        let banners = &config.services[0].banners;
        assert_eq!(
            banners.banner.as_ref().unwrap().path,
            dir.path().join("motd")
        );
        assert_eq!(banners.on_failure(), b"welcome\nwelcome\n");
        assert!(banners.success.is_none());
    }
}
