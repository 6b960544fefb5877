//! Where and how a service listens: the words of `bind`, `flags` (NODELAY,
//! KEEPALIVE, REUSE, IPv4 / IPv6, NAMEINARGS and xinetd's others), `v6only`
//! and `backlog`, then the addresses and socket options they make together.
//! Binding is the listener's job.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use super::{SocketOptions, values};

/// The address family `flags` asks for when `bind` is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    V4,
    V6,
}

/// What a `flags` line said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Flags {
    pub nodelay: bool,
    pub keepalive: bool,
    pub family: Option<Family>,
    /// NAMEINARGS: the first word of `server_args` is `argv[0]`.
    pub name_in_args: bool,
    /// SENSOR: a tripwire, no guest (see `guest`).
    pub sensor: bool,
}

const FLAGS: &str =
    "NODELAY, KEEPALIVE, REUSE, IPv4, IPv6, NAMEINARGS, SENSOR, NORETRY or NOLIBWRAP";

/// `flags`: xinetd's words, case-insensitive. REUSE (SO_REUSEADDR is always
/// set), NORETRY (a guest that fails to start is never retried) and
/// NOLIBWRAP (there are no tcp_wrappers) are what wasinetd always does.
pub(super) fn flags(values: &[String]) -> Result<Flags, String> {
    let mut flags = Flags::default();
    for word in values {
        let family = match word.to_ascii_uppercase().as_str() {
            "NODELAY" => {
                flags.nodelay = true;
                None
            }
            "KEEPALIVE" => {
                flags.keepalive = true;
                None
            }
            "NAMEINARGS" => {
                flags.name_in_args = true;
                None
            }
            "REUSE" | "NORETRY" | "NOLIBWRAP" => None,
            "IPV4" => Some(Family::V4),
            "IPV6" => Some(Family::V6),
            "INTERCEPT" => {
                return Err(format!(
                    "`flags = {word}` is not supported: wasinetd checks every connection \
                     before its guest runs, with no interceptor"
                ));
            }
            "IDONLY" => {
                return Err(format!(
                    "`flags = {word}` is not supported: wasinetd does no ident (RFC 1413) lookups"
                ));
            }
            "LABELED" => {
                return Err(format!(
                    "`flags = {word}` is not supported: a guest has no SELinux context"
                ));
            }
            "SENSOR" => {
                flags.sensor = true;
                None
            }
            _ => return Err(format!("`flags` takes {FLAGS}, not `{word}`")),
        };
        if let Some(family) = family {
            if flags.family.is_some_and(|f| f != family) {
                return Err("`flags` takes IPv4 or IPv6, not both".into());
            }
            flags.family = Some(family);
        }
    }
    Ok(flags)
}

/// `bind` / `interface`: one or more IP addresses, one listener each.
pub(super) fn addresses(name: &str, values: &[String]) -> Result<Vec<IpAddr>, String> {
    if values.is_empty() {
        return Err(format!(
            "`{name}` takes IP addresses like 127.0.0.1 or ::1, but has no value"
        ));
    }
    let mut ips = Vec::new();
    for word in values {
        let ip = values::ip(name, std::slice::from_ref(word))?;
        if ips.contains(&ip) {
            return Err(format!("`{name}` lists `{ip}` twice"));
        }
        ips.push(ip);
    }
    Ok(ips)
}

/// `backlog`: the listen queue length, from 1.
pub(super) fn backlog(name: &str, values: &[String]) -> Result<u32, String> {
    let what = "a number from 1 to 2147483647 (the kernel caps it at net.core.somaxconn)";
    let word = values::one(name, what, values)?;
    match word.parse::<i32>() {
        Ok(n) if n >= 1 => Ok(n as u32),
        _ => Err(format!("`{name}` takes {what}, not `{word}`")),
    }
}

/// `listen_unix`: an absolute path that fits in a `sockaddr_un`.
pub(super) fn unix_path(name: &str, values: &[String]) -> Result<PathBuf, String> {
    let what = "the absolute path of a Unix socket, like /run/wasinetd/NAME.sock";
    let word = values::one(name, what, values)?;
    if !word.starts_with('/') {
        return Err(format!("`{name}` takes {what}, not `{word}`"));
    }
    // sun_path holds 108 bytes with the terminating NUL.
    if word.len() > 107 {
        return Err(format!(
            "`{name}` path is {} bytes long; a Unix socket path has at most 107",
            word.len()
        ));
    }
    Ok(PathBuf::from(word))
}

/// `socket_mode`: octal permission bits, like `0660`.
pub(super) fn mode(name: &str, values: &[String]) -> Result<u32, String> {
    let what = "octal permission bits from 0000 to 0777, like 0660";
    let word = values::one(name, what, values)?;
    match u32::from_str_radix(word, 8) {
        Ok(mode) if mode <= 0o777 && word.len() >= 3 => Ok(mode),
        _ => Err(format!("`{name}` takes {what}, not `{word}`")),
    }
}

/// The IP addresses a service listens on (`bind` x `port`, in `bind`'s
/// order) and its socket options. Without `bind`, the family of `flags` picks `0.0.0.0` or
/// `[::]`; with it, `flags = IPv4` / `IPv6` must match every address.
/// `v6only` not given is off (`[::]` takes IPv4 clients too), unless the
/// service also binds an IPv4 address, which a dual-stack socket on the
/// same port would collide with.
pub(super) fn listen(
    bind: &[IpAddr],
    port: u16,
    flags: Flags,
    v6only: Option<bool>,
    backlog: u32,
) -> Result<(Vec<SocketAddr>, SocketOptions), String> {
    let unspecified = match flags.family {
        Some(Family::V6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let ips = if bind.is_empty() {
        vec![unspecified]
    } else {
        bind.to_vec()
    };
    if let Some(family) = flags.family
        && let Some(other) = ips.iter().find(|ip| ip.is_ipv4() != (family == Family::V4))
    {
        let flag = if family == Family::V4 { "IPv4" } else { "IPv6" };
        return Err(format!(
            "`flags = {flag}` does not match the `bind` address `{other}`"
        ));
    }
    let options = SocketOptions {
        nodelay: flags.nodelay,
        keepalive: flags.keepalive,
        v6only: v6only
            .unwrap_or_else(|| ips.iter().any(IpAddr::is_ipv4) && ips.iter().any(IpAddr::is_ipv6)),
        backlog,
    };
    let addrs = ips.into_iter().map(|ip| SocketAddr::new(ip, port));
    Ok((addrs.collect(), options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(words: &str) -> Vec<String> {
        words.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_words() {
        let f = flags(&w(
            "nodelay KEEPALIVE REUSE NORETRY NOLIBWRAP IPv6 NAMEINARGS",
        ))
        .unwrap();
        assert_eq!(
            f,
            Flags {
                nodelay: true,
                keepalive: true,
                family: Some(Family::V6),
                name_in_args: true,
                sensor: false,
            }
        );
        assert_eq!(
            flags(&w("IPv4 IPv6")),
            Err("`flags` takes IPv4 or IPv6, not both".into())
        );
        assert!(
            flags(&w("INTERCEPT"))
                .unwrap_err()
                .contains("not supported")
        );
        assert!(flags(&w("SENSOR")).unwrap().sensor);
        assert!(flags(&w("FAST")).unwrap_err().ends_with("not `FAST`"));
    }

    #[test]
    fn addresses_and_families() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(addresses("bind", &w("127.0.0.1 [::1]")), Ok(vec![v4, v6]));
        assert_eq!(
            addresses("bind", &w("::1 ::1")),
            Err("`bind` lists `::1` twice".into())
        );
        let ipv6 = Flags {
            family: Some(Family::V6),
            ..Flags::default()
        };
        let (addrs, opts) = listen(&[], 7, ipv6, None, 9).unwrap();
        assert_eq!(addrs, ["[::]:7".parse().unwrap()]);
        assert_eq!((opts.v6only, opts.backlog), (false, 9));
        let (addrs, opts) = listen(&[v4, v6], 7, Flags::default(), None, 9).unwrap();
        let want: [SocketAddr; 2] = ["127.0.0.1:7".parse().unwrap(), "[::1]:7".parse().unwrap()];
        assert_eq!(addrs, want);
        assert!(opts.v6only);
        assert_eq!(
            listen(&[v4], 7, ipv6, None, 9).unwrap_err(),
            "`flags = IPv6` does not match the `bind` address `127.0.0.1`"
        );
        assert_eq!(backlog("backlog", &w("64")), Ok(64));
        assert_eq!(mode("socket_mode", &w("0660")), Ok(0o660));
        assert!(mode("socket_mode", &w("0999")).is_err());
        assert!(unix_path("listen_unix", &w("x.sock")).is_err());
        assert!(backlog("backlog", &w("0")).is_err());
    }
}
