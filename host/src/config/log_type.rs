//! `log_type`: where a service's connection lines go, read at load.
//!
//! `SYSLOG [facility [level]]` (default `daemon info`, as xinetd) or
//! `FILE path [soft [hard]]`. A file is opened for appending here, so a
//! path that cannot be written is a config error with its file and line,
//! not a surprise at the first connection; the daemon opens it again for
//! good when it starts serving (`logging`).

use std::path::Path;

use super::{LogType, values};

/// Syslog facilities by name, with their RFC 5424 codes.
const FACILITIES: &[(&str, u8)] = &[
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// Syslog severities by name (with the usual aliases), with their codes.
const LEVELS: &[(&str, u8)] = &[
    ("emerg", 0),
    ("alert", 1),
    ("crit", 2),
    ("err", 3),
    ("error", 3),
    ("warning", 4),
    ("warn", 4),
    ("notice", 5),
    ("info", 6),
    ("debug", 7),
];

/// The extra room a hard limit gets over the soft one when only the soft
/// one is given: 1%, from 5K to 20K, as xinetd.
fn default_hard(soft: u64) -> u64 {
    soft + (soft / 100).clamp(5 << 10, 20 << 10)
}

/// Reads the words of a `log_type` line; relative FILE paths join `dir`.
pub(super) fn log_type(name: &str, words: &[String], dir: &Path) -> Result<LogType, String> {
    let what = "`SYSLOG facility [level]` or `FILE path [soft [hard]]`";
    let Some((kind, rest)) = words.split_first() else {
        return Err(format!("`{name}` takes {what}, but has no value"));
    };
    match kind.to_ascii_uppercase().as_str() {
        "SYSLOG" => syslog(name, rest),
        "FILE" => file(name, rest, dir),
        _ => Err(format!("`{name}` takes {what}, not `{kind}`")),
    }
}

fn syslog(name: &str, words: &[String]) -> Result<LogType, String> {
    if words.len() > 2 {
        return Err(format!(
            "`{name} = SYSLOG` takes a facility and a level at most, not `{}`",
            words.join(" ")
        ));
    }
    let facility = match words.first() {
        None => 3,
        Some(word) => lookup(FACILITIES, word).ok_or_else(|| {
            format!(
                "`{name}` facility must be one of daemon, auth, authpriv, user, mail, lpr, news, \
                 uucp, ftp, local0 ... local7, not `{word}`"
            )
        })?,
    };
    let level = match words.get(1) {
        None => 6,
        Some(word) => lookup(LEVELS, word).ok_or_else(|| {
            format!(
                "`{name}` level must be one of emerg, alert, crit, err, warning, notice, info, \
                 debug, not `{word}`"
            )
        })?,
    };
    Ok(LogType::Syslog { facility, level })
}

fn lookup(table: &[(&str, u8)], word: &str) -> Option<u8> {
    table
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(word))
        .map(|(_, code)| *code)
}

fn file(name: &str, words: &[String], dir: &Path) -> Result<LogType, String> {
    let (path, limits) = match words {
        [] => return Err(format!("`{name} = FILE` takes a path, but has none")),
        [path, limits @ ..] if limits.len() <= 2 => (dir.join(path), limits),
        _ => {
            return Err(format!(
                "`{name} = FILE` takes a path, a soft and a hard limit at most, not `{}`",
                words.join(" ")
            ));
        }
    };
    let size = |word: &String| {
        values::byte_count(word).filter(|&n| n > 0).ok_or_else(|| {
            format!("`{name}` FILE limits are sizes like 512K or 10M (from 1), not `{word}`")
        })
    };
    let soft = limits.first().map(size).transpose()?;
    let hard = limits.get(1).map(size).transpose()?;
    let hard = match (soft, hard) {
        (Some(soft), Some(hard)) if hard < soft => {
            return Err(format!(
                "`{name}` hard limit `{}` is below the soft limit `{}`",
                limits[1], limits[0]
            ));
        }
        (Some(soft), None) => Some(default_hard(soft)),
        (_, hard) => hard,
    };
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| {
            format!(
                "cannot open log file `{}` for appending: {e}",
                path.display()
            )
        })?;
    Ok(LogType::File { path, soft, hard })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn syslog_facility_and_level() {
        let d = Path::new("");
        assert_eq!(
            log_type("log_type", &w("SYSLOG local3 notice"), d),
            Ok(LogType::Syslog {
                facility: 19,
                level: 5
            })
        );
        assert_eq!(
            log_type("log_type", &w("syslog"), d),
            Ok(LogType::Syslog {
                facility: 3,
                level: 6
            })
        );
        assert!(
            log_type("log_type", &w("SYSLOG kern"), d)
                .unwrap_err()
                .contains("not `kern`")
        );
        assert!(
            log_type("log_type", &w("SYSLOG daemon loud"), d)
                .unwrap_err()
                .contains("not `loud`")
        );
    }

    #[test]
    fn file_limits() {
        let dir = std::env::temp_dir();
        let name = format!("wasinetd-logtype-{}.log", std::process::id());
        let got = log_type("log_type", &w(&format!("FILE {name} 100K")), &dir).unwrap();
        assert_eq!(
            got,
            LogType::File {
                path: dir.join(&name),
                soft: Some(100 << 10),
                hard: Some((100 << 10) + (5 << 10)),
            }
        );
        assert!(
            log_type("log_type", &w(&format!("FILE {name} 2M 1M")), &dir)
                .unwrap_err()
                .contains("below the soft limit")
        );
        assert!(
            log_type("log_type", &w(&format!("FILE {name} lots")), &dir)
                .unwrap_err()
                .contains("not `lots`")
        );
        std::fs::remove_file(dir.join(&name)).unwrap();
    }
}
