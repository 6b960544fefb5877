//! What a service runs for each connection: a `server` guest, a built-in
//! one (`type = INTERNAL`), or no guest at all: `redirect` relays the
//! connection, `flags = SENSOR` (with `deny_time`) is a tripwire. The
//! checks that these exclude one another, and `deny_time`'s words.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{DenyTime, GuestSource, Report, values};

/// What a block said about its guest, each with its line.
#[derive(Debug, Default)]
pub(super) struct Said {
    pub internal: bool,
    pub server: Option<(PathBuf, u32)>,
    pub redirect: Option<(SocketAddr, u32)>,
    /// `flags = SENSOR`'s line.
    pub sensor: Option<u32>,
    pub deny_time: Option<(DenyTime, u32)>,
}

/// `deny_time`: `FOREVER`, `NEVER` (log only), or minutes as xinetd has
/// them; a number with a unit (`30s`, `2h`) is a duration.
pub(super) fn deny_time(name: &str, words: &[String]) -> Result<DenyTime, String> {
    let what = "minutes (or a duration like 30s), FOREVER or NEVER";
    let word = values::one(name, what, words)?;
    match word.to_ascii_uppercase().as_str() {
        "FOREVER" => return Ok(DenyTime::Forever),
        "NEVER" => return Ok(DenyTime::Never),
        _ => {}
    }
    let time = match word.parse::<u64>() {
        Ok(minutes) => minutes.checked_mul(60).map(Duration::from_secs),
        Err(_) if word.starts_with(|c: char| c.is_ascii_digit()) => {
            values::duration(name, words).ok().flatten()
        }
        Err(_) => None,
    };
    match time {
        Some(time) if !time.is_zero() => Ok(DenyTime::For(time)),
        _ => Err(format!("`{name}` takes {what}, not `{word}`")),
    }
}

impl Said {
    /// The guest, or `None` after reporting why there is none. `failed`
    /// tells whether a line that may have set an attribute was in error
    /// (then its absence is not reported again).
    pub(super) fn resolve(
        &self,
        name: &str,
        udp: bool,
        block_line: u32,
        failed: impl Fn(&str) -> bool,
        report: &mut Report,
    ) -> Option<GuestSource> {
        if let Some(line) = self.sensor {
            return self.sensor(line, udp, failed("deny_time"), report);
        }
        if let Some((_, line)) = self.deny_time {
            report.error(
                line,
                "`deny_time` is for `flags = SENSOR` services: how long their peers are denied",
            );
            return None;
        }
        match (self.internal, &self.server, self.redirect) {
            (internal, server, Some((_, line))) if server.is_some() || internal => {
                report.error(
                    line,
                    "`redirect` cannot be used with `server` or `type = INTERNAL`: a redirected service runs no guest",
                );
                None
            }
            (_, None, Some((addr, _))) => Some(GuestSource::Redirect(addr)),
            (false, None, None) if failed("redirect") => None,
            (true, Some((_, line)), _) => {
                report.error(
                    *line,
                    "`server` cannot be used with `type = INTERNAL`: the service is built in",
                );
                None
            }
            (true, None, _) => Some(GuestSource::Internal(name.to_string())),
            (false, Some((path, _)), _) => Some(GuestSource::File(path.clone())),
            (false, None, _) if failed("type") || failed("server") || failed("flags") => None,
            (false, None, _) => {
                let message = format!(
                    "service `{name}` has no `server`: give the path of its .wasm file (or `type = INTERNAL`)"
                );
                report.error(block_line, message);
                None
            }
        }
    }

    /// A SENSOR service: no guest, and `deny_time` says for how long.
    fn sensor(
        &self,
        line: u32,
        udp: bool,
        deny_time_failed: bool,
        report: &mut Report,
    ) -> Option<GuestSource> {
        let runs = if self.server.is_some() {
            Some("`server`")
        } else if self.internal {
            Some("`type = INTERNAL`")
        } else if self.redirect.is_some() {
            Some("`redirect`")
        } else {
            None
        };
        if let Some(what) = runs {
            report.error(
                line,
                format!("`flags = SENSOR` runs no guest: remove {what} from the service"),
            );
            return None;
        }
        if udp {
            report.error(
                line,
                "`flags = SENSOR` is for stream services: a UDP sender's address is easily \
                 forged, so a dgram sensor would let anyone deny any address",
            );
            return None;
        }
        match self.deny_time {
            Some((deny, _)) => Some(GuestSource::Sensor(deny)),
            None if deny_time_failed => None,
            None => {
                report.error(
                    line,
                    "`flags = SENSOR` needs `deny_time`: minutes, FOREVER, or NEVER (log only)",
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse_env;
    use super::*;

    fn w(word: &str) -> Vec<String> {
        vec![word.to_string()]
    }

    #[test]
    fn deny_time_words() {
        let d = |word| deny_time("deny_time", &w(word));
        assert_eq!(d("FOREVER"), Ok(DenyTime::Forever));
        assert_eq!(d("never"), Ok(DenyTime::Never));
        assert_eq!(d("60"), Ok(DenyTime::For(Duration::from_secs(3600))));
        assert_eq!(d("30s"), Ok(DenyTime::For(Duration::from_secs(30))));
        for bad in ["0", "-1", "soon", "5x", "0s"] {
            assert_eq!(
                d(bad),
                Err(format!(
                    "`deny_time` takes minutes (or a duration like 30s), FOREVER or NEVER, not `{bad}`"
                ))
            );
        }
    }

    /// `line: message` of every error of `text`, and its services' guests.
    fn load(text: &str) -> (Vec<String>, Vec<GuestSource>) {
        let config = parse_env(text, "", &[]);
        let errors = config
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.line, e.message))
            .collect();
        (
            errors,
            config.services.into_iter().map(|s| s.guest).collect(),
        )
    }

    #[test]
    fn a_sensor_runs_no_guest_and_needs_a_deny_time() {
        let head = "service s {\n type = UNLISTED\n port = 1\n flags = SENSOR\n";
        let (errors, guests) = load(&format!("{head} deny_time = 10\n}}\n"));
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(
            guests,
            [GuestSource::Sensor(DenyTime::For(Duration::from_secs(600)))]
        );
        let (errors, _) = load(&format!("{head}}}\n"));
        assert_eq!(
            errors,
            ["4: `flags = SENSOR` needs `deny_time`: minutes, FOREVER, or NEVER (log only)"]
        );
        let (errors, _) = load(&format!("{head} deny_time = NEVER\n server = a.wasm\n}}\n"));
        assert_eq!(
            errors,
            ["4: `flags = SENSOR` runs no guest: remove `server` from the service"]
        );
        let (errors, _) = load(&format!("{head} deny_time = 1\n socket_type = dgram\n}}\n"));
        assert!(
            errors[0].starts_with("4: `flags = SENSOR` is for stream services"),
            "{errors:?}"
        );
        let (errors, _) =
            load("service s {\n type = UNLISTED\n port = 1\n server = a.wasm\n deny_time = 5\n}\n");
        assert_eq!(
            errors,
            ["5: `deny_time` is for `flags = SENSOR` services: how long their peers are denied"]
        );
    }
}
