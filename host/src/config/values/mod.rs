//! Parsers for the words of one attribute line: sizes, durations, ports,
//! flags. Each takes the attribute's name (for its message) and
//! returns the message of what is wrong, saying what is accepted.
//! Keywords (yes, UNLIMITED, HOST...) are case-insensitive.

use std::net::IpAddr;
use std::time::Duration;

use super::{LogFlags, MAX_MEMORY, MIN_MEMORY};

/// The one word of a single-valued attribute; `what` describes what it takes.
pub(super) fn one<'v>(name: &str, what: &str, values: &'v [String]) -> Result<&'v str, String> {
    match values {
        [one] => Ok(one),
        [] => Err(format!("`{name}` takes {what}, but has no value")),
        _ => {
            let mut message = format!(
                "`{name}` takes one value, {what}, not {} words: `{}`",
                values.len(),
                values.join(" ")
            );
            if values.iter().any(|v| v.starts_with('#')) {
                message.push_str("; `#` starts a comment only at the start of a line");
            }
            Err(message)
        }
    }
}

/// Whether `word` is `UNLIMITED` (or systemd's `infinity`).
fn unlimited(word: &str) -> bool {
    word.eq_ignore_ascii_case("unlimited") || word.eq_ignore_ascii_case("infinity")
}

/// `yes` or `no`.
pub(super) fn yes_no(name: &str, values: &[String]) -> Result<bool, String> {
    let what = "`yes` or `no`";
    let word = one(name, what, values)?;
    match word.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("`{name}` takes {what}, not `{word}`")),
    }
}

/// A TCP port; 0 asks for any free one.
pub(super) fn port(name: &str, values: &[String]) -> Result<u16, String> {
    let what = "a number from 0 to 65535 (0: any free port)";
    let word = one(name, what, values)?;
    word.parse()
        .map_err(|_| format!("`{name}` takes {what}, not `{word}`"))
}

/// An IPv4 or IPv6 literal (brackets around IPv6 are allowed).
pub(super) fn ip(name: &str, values: &[String]) -> Result<IpAddr, String> {
    let what = "an IP address like 127.0.0.1 or ::1";
    let word = one(name, what, values)?;
    let bare = word
        .strip_prefix('[')
        .and_then(|w| w.strip_suffix(']'))
        .unwrap_or(word);
    bare.parse()
        .map_err(|_| format!("`{name}` takes {what}, not `{word}`"))
}

/// `preopen_quota = SIZE [ENTRIES]`, or UNLIMITED: each word a size or a
/// count, or UNLIMITED; a missing count keeps the default.
pub(super) fn preopen_quota(name: &str, words: &[String]) -> Result<super::PreopenQuota, String> {
    let what = "a size like 64M and optionally a number of entries, or UNLIMITED";
    let (bytes, entries) = match words {
        [one] if unlimited(one) => {
            return Ok(super::PreopenQuota {
                bytes: None,
                entries: None,
            });
        }
        [bytes] => (bytes, None),
        [bytes, entries] => (bytes, Some(entries)),
        _ => return Err(format!("`{name}` takes {what}, not `{}`", words.join(" "))),
    };
    let bytes = if unlimited(bytes) {
        None
    } else {
        Some(size(name, std::slice::from_ref(bytes))?)
    };
    let entries = match entries {
        None => Some(super::DEFAULT_QUOTA_ENTRIES),
        Some(e) if unlimited(e) => None,
        Some(e) => match e.parse::<u64>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("`{name}` takes {what}, not `{}`", words.join(" "))),
        },
    };
    Ok(super::PreopenQuota { bytes, entries })
}

/// A positive count, or UNLIMITED.
pub(super) fn instances(name: &str, values: &[String]) -> Result<super::Cap, String> {
    let what = "a number from 1 up, or UNLIMITED";
    let word = one(name, what, values)?;
    if unlimited(word) {
        return Ok(super::Cap::Unlimited);
    }
    match word.parse::<u32>() {
        Ok(n) if n > 0 => Ok(super::Cap::At(n)),
        _ => Err(format!("`{name}` takes {what}, not `{word}`")),
    }
}

/// `max_load`: a positive number like `2.5`, the one-minute load average
/// at which new connections are refused, kept in hundredths as
/// `/proc/loadavg` has it.
pub(super) fn max_load(name: &str, values: &[String]) -> Result<super::MaxLoad, String> {
    let what = "a load average above 0, like 2.5";
    let word = one(name, what, values)?;
    match word.parse::<f64>() {
        Ok(load) if load.is_finite() && load > 0.0 && load <= 1e6 => {
            // At least one hundredth: 0.001 must not mean "always refuse".
            Ok(super::MaxLoad::from_hundredths(
                ((load * 100.0).round() as u32).max(1),
            ))
        }
        _ => Err(format!("`{name}` takes {what}, not `{word}`")),
    }
}

/// `rlimit_files`: handles a guest may hold at once, from 3 (stdin,
/// stdout and stderr count, as descriptors 0-2 count for RLIMIT_NOFILE),
/// or UNLIMITED (`None`: the daemon's own cap).
pub(super) fn files(name: &str, values: &[String]) -> Result<Option<u32>, String> {
    let what = "a number from 3 up (stdin, stdout and stderr count), or UNLIMITED";
    let word = one(name, what, values)?;
    if unlimited(word) {
        return Ok(None);
    }
    match word.parse::<u32>() {
        Ok(n) if n >= 3 => Ok(Some(n)),
        _ => Err(format!("`{name}` takes {what}, not `{word}`")),
    }
}

/// A memory size in bytes: plain bytes or a K/M/G suffix (1024-based), or
/// UNLIMITED ([`MAX_MEMORY`]); from [`MIN_MEMORY`] to [`MAX_MEMORY`].
pub(super) fn size(name: &str, values: &[String]) -> Result<u64, String> {
    let what = "a size like 64M or UNLIMITED";
    let word = one(name, what, values)?;
    if unlimited(word) {
        return Ok(MAX_MEMORY);
    }
    let bytes = byte_count(word).ok_or_else(|| format!("`{name}` takes {what}, not `{word}`"))?;
    if !(MIN_MEMORY..=MAX_MEMORY).contains(&bytes) {
        return Err(format!(
            "`{name}` must be from 64K to 4G (wasm32's limit), not `{word}`"
        ));
    }
    Ok(bytes)
}

/// A number of bytes, plain or with a K/M/G suffix (1024-based).
pub(super) fn byte_count(word: &str) -> Option<u64> {
    let (digits, shift) = match word.char_indices().last() {
        Some((i, 'k' | 'K')) => (&word[..i], 10),
        Some((i, 'm' | 'M')) => (&word[..i], 20),
        Some((i, 'g' | 'G')) => (&word[..i], 30),
        _ => (word, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// A duration: a number with `ms`, `s`, `m` / `min` or `h`; a plain number
/// is seconds (xinetd's `rlimit_cpu`). UNLIMITED is `None`.
pub(super) fn duration(name: &str, values: &[String]) -> Result<Option<Duration>, String> {
    let what = "a duration like 10s or 500ms (a plain number is seconds), or UNLIMITED";
    let word = one(name, what, values)?;
    duration_word(name, word, true)
}

/// One duration word, for `name`; UNLIMITED (`None`) only where
/// `unlimited_ok`.
pub(super) fn duration_word(
    name: &str,
    word: &str,
    unlimited_ok: bool,
) -> Result<Option<Duration>, String> {
    let what = if unlimited_ok {
        "a duration like 10s or 500ms (a plain number is seconds), or UNLIMITED"
    } else {
        "a duration like 10s or 500ms (a plain number is seconds)"
    };
    if unlimited_ok && unlimited(word) {
        return Ok(None);
    }
    if let Some(ms) = fraction_in_ms(word) {
        return Err(format!(
            "`{name}` takes whole numbers: write `{word}` as `{ms}ms`"
        ));
    }
    let bad = || format!("`{name}` takes {what}, not `{word}`");
    let split = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    let (digits, unit) = word.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let value = match unit.to_ascii_lowercase().as_str() {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" | "min" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => return Err(bad()),
    };
    match value {
        None => Err(bad()),
        Some(d) if d.is_zero() => Err(format!(
            "`{name}` must be more than 0 (UNLIMITED means no limit)"
        )),
        Some(d) => Ok(Some(d)),
    }
}

/// A duration with a fraction (`1.5s`, `0.25m`), in whole milliseconds,
/// for the error that says how to write it.
fn fraction_in_ms(word: &str) -> Option<u64> {
    let split = word
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(word.len());
    let (number, unit) = word.split_at(split);
    if !number.contains('.') {
        return None;
    }
    let per_unit = match unit.to_ascii_lowercase().as_str() {
        "" | "s" => 1e3,
        "m" | "min" => 6e4,
        "h" => 3.6e6,
        _ => return None,
    };
    let ms = number.parse::<f64>().ok()? * per_unit;
    (ms.fract() == 0.0 && (1.0..1e15).contains(&ms)).then_some(ms as u64)
}

/// Log flags. USERID (RFC 1413 ident) is xinetd's, and not supported.
pub(super) fn log_flags(name: &str, values: &[String]) -> Result<LogFlags, String> {
    let mut flags = LogFlags::default();
    for word in values {
        match word.to_ascii_uppercase().as_str() {
            "HOST" => flags.host = true,
            "PID" => flags.pid = true,
            "DURATION" => flags.duration = true,
            "EXIT" => flags.exit = true,
            "ATTEMPT" => flags.attempt = true,
            "TRAFFIC" => flags.traffic = true,
            "USERID" => {
                return Err(format!(
                    "`{name}` flag `{word}`: RFC 1413 ident is obsolete; not supported"
                ));
            }
            _ => {
                return Err(format!(
                    "`{name}` takes flags from HOST PID DURATION EXIT ATTEMPT TRAFFIC, not `{word}`"
                ));
            }
        }
    }
    Ok(flags)
}

/// `NAME=value` words.
pub(super) fn env_pairs(values: &[String]) -> Result<Vec<(String, String)>, String> {
    values
        .iter()
        .map(|word| match word.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
            _ => Err(format!("`env` takes NAME=value words, not `{word}`")),
        })
        .collect()
}

/// Environment variable names (for `passenv`, and `env -=`, which also
/// accepts `NAME=value` and uses the name).
pub(super) fn var_names(
    name: &str,
    values: &[String],
    allow_value: bool,
) -> Result<Vec<String>, String> {
    values
        .iter()
        .map(|word| {
            let var = if allow_value {
                word.split_once('=').map_or(word.as_str(), |(n, _)| n)
            } else {
                word
            };
            if var.is_empty() || var.contains('=') {
                Err(format!("`{name}` takes variable names, not `{word}`"))
            } else {
                Ok(var.to_string())
            }
        })
        .collect()
}

/// The words of `type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Types {
    pub unlisted: bool,
    pub internal: bool,
}

/// `type`: UNLISTED and/or INTERNAL; xinetd's RPC and TCPMUX are not supported.
pub(super) fn types(values: &[String]) -> Result<Types, String> {
    if values.is_empty() {
        return Err("`type` takes UNLISTED and/or INTERNAL, but has no value".into());
    }
    let mut types = Types::default();
    for word in values {
        match word.to_ascii_uppercase().as_str() {
            "UNLISTED" => types.unlisted = true,
            "INTERNAL" => types.internal = true,
            "RPC" => {
                return Err(format!(
                    "`type = {word}` is not supported: {}",
                    super::attrs::RPC
                ));
            }
            "TCPMUX" | "TCPMUXPLUS" => {
                return Err(format!(
                    "`type = {word}` is not supported: wasinetd serves no TCPMUX (RFC 1078) \
                     port; give the service a `port` of its own"
                ));
            }
            _ => {
                return Err(format!(
                    "`type` takes UNLISTED and/or INTERNAL, not `{word}`"
                ));
            }
        }
    }
    Ok(types)
}

/// `redirect = HOST PORT`: HOST an IP literal or a name, resolved now (the
/// first address it has), so a name that does not resolve is an error at
/// load, never a failure per connection.
pub(super) fn redirect(name: &str, words: &[String]) -> Result<std::net::SocketAddr, String> {
    let [host, port] = words else {
        return Err(format!("`{name}` takes HOST PORT, e.g. `10.0.0.2 8080`"));
    };
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("`{name}`: `{port}` is not a port (1-65535)")),
    };
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok((ip, port).into());
    }
    super::resolve::addresses(host)
        .first()
        .map(|ip| (*ip, port).into())
        .ok_or_else(|| format!("`{name}`: the host name `{host}` does not resolve to an address"))
}

#[cfg(test)]
mod tests;
