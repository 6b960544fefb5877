//! `allow_connect = 127.0.0.1:5432 [::1]:6379 db.internal:5432`: the TCP
//! addresses a component guest may connect to (wasinetd's own attribute;
//! xinetd has none). Each word is `IP:PORT`, `[IPv6]:PORT`, or
//! `NAME:PORT` with the name resolved now, at load, to every address it
//! has, as `only_from` does: the guest never looks names up, and the
//! daemon never does per connection. Enforcing the list is the sandbox's.

use std::net::{IpAddr, SocketAddr};

use super::GuestSource;
use super::parse::RawBlock;

/// The addresses of one `allow_connect` line, in order, without repeats.
pub(super) fn allow_connect(name: &str, words: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for word in words {
        for addr in endpoint(name, word)? {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    Ok(addrs)
}

/// An `allow_connect` line in `block` when its service runs no guest
/// (`redirect`, `flags = SENSOR`): the line and the error to report there.
pub(super) fn without_guest(block: &RawBlock, guest: &GuestSource) -> Option<(u32, String)> {
    let what = match guest {
        GuestSource::Sensor(_) => "a `flags = SENSOR`",
        GuestSource::Redirect(_) => "a `redirect`",
        GuestSource::File(_) | GuestSource::Internal(_) => return None,
    };
    let raw = block.attrs.iter().find(|a| a.name == "allow_connect")?;
    let message =
        format!("`allow_connect` is for a guest's own connections; {what} service runs none");
    Some((raw.line, message))
}

/// One word: its address, or every address of its host name.
fn endpoint(name: &str, word: &str) -> Result<Vec<SocketAddr>, String> {
    let form = "IP:PORT ([IPv6]:PORT for IPv6, or HOST:PORT)";
    if let Ok(addr) = word.parse::<SocketAddr>() {
        return checked(name, word, addr).map(|a| vec![a]);
    }
    match word.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) if let Some((head, tail)) = word.rsplit_once(':') => {
            return Err(format!(
                "`{name}`: `{word}` has no port; an IPv6 address goes in brackets: \
                 `[{head}]:{tail}` if {tail} is the port"
            ));
        }
        Ok(_) => return Err(format!("`{name}`: `{word}` has no port; write {form}")),
        Err(_) => {}
    }
    let Some((host, port)) = word.rsplit_once(':') else {
        return Err(format!("`{name}`: `{word}` has no port; write {form}"));
    };
    if host.is_empty() || host.starts_with('[') {
        return Err(format!("`{name}`: `{word}` is not {form}"));
    }
    if host.contains(':') {
        let example = format!("[{host}]:{port}");
        return Err(format!(
            "`{name}`: `{word}` is not IP:PORT; write an IPv6 address in brackets, `{example}`"
        ));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            return Err(format!(
                "`{name}`: `{port}` in `{word}` is not a port (1-65535)"
            ));
        }
    };
    let resolved: Vec<SocketAddr> = super::resolve::addresses(host)
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    if resolved.is_empty() {
        return Err(format!(
            "`{name}`: the host name `{host}` does not resolve to an address"
        ));
    }
    resolved
        .into_iter()
        .map(|addr| checked(name, word, addr))
        .collect()
}

/// Refuses what is no address to connect to: port 0, a wildcard.
fn checked(name: &str, word: &str, addr: SocketAddr) -> Result<SocketAddr, String> {
    if addr.port() == 0 {
        return Err(format!(
            "`{name}`: `{word}` has port 0; give the port to connect to"
        ));
    }
    // Canonical first, so that `[::ffff:0.0.0.0]` is the wildcard it is.
    let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
    if addr.ip().is_unspecified() {
        return Err(format!(
            "`{name}`: `{word}` is a wildcard, not an address to connect to"
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &str) -> Result<Vec<String>, String> {
        let words: Vec<String> = words.split_whitespace().map(str::to_owned).collect();
        allow_connect("allow_connect", &words).map(|v| v.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn addresses_and_names() {
        assert_eq!(
            parse("127.0.0.1:5432 [::1]:6379 127.0.0.1:5432 [::ffff:10.0.0.1]:80"),
            Ok(vec![
                "127.0.0.1:5432".into(),
                "[::1]:6379".into(),
                "10.0.0.1:80".into()
            ])
        );
        let local = parse("localhost:8080").unwrap();
        assert!(!local.is_empty());
        assert!(local.iter().all(|a| a.ends_with(":8080")), "{local:?}");
        assert_eq!(parse(""), Ok(vec![]));
    }

    #[test]
    fn services_adjust_what_defaults_give() {
        let text = "defaults {\n allow_connect = 127.0.0.1:1 127.0.0.1:2\n}\n\
            service a {\n type = UNLISTED\n port = 1\n server = a.wasm\n\
            allow_connect -= 127.0.0.1:1\n allow_connect += [::1]:3\n}\n\
            service b {\n type = UNLISTED\n port = 2\n server = b.wasm\n\
            allow_connect = 127.0.0.1:4\n}\n\
            service c {\n type = UNLISTED\n port = 3\n server = c.wasm\n}\n";
        let config = super::super::tests::parse_env(text, "", &[]);
        assert!(config.errors.is_empty(), "{:?}", config.errors);
        let lists: Vec<Vec<String>> = config
            .services
            .iter()
            .map(|s| s.allow_connect.iter().map(ToString::to_string).collect())
            .collect();
        assert_eq!(
            lists,
            [
                vec!["127.0.0.1:2", "[::1]:3"],
                vec!["127.0.0.1:4"],
                vec!["127.0.0.1:1", "127.0.0.1:2"],
            ]
        );
    }

    #[test]
    fn bad_words_say_what_is_wrong() {
        let e = |w| parse(w).unwrap_err();
        assert_eq!(
            e("127.0.0.1"),
            "`allow_connect`: `127.0.0.1` has no port; write IP:PORT ([IPv6]:PORT for IPv6, or HOST:PORT)"
        );
        assert_eq!(
            e("::1:6379"),
            "`allow_connect`: `::1:6379` has no port; an IPv6 address goes in brackets: `[::1]:6379` if 6379 is the port"
        );
        assert_eq!(
            e("127.0.0.1:http"),
            "`allow_connect`: `http` in `127.0.0.1:http` is not a port (1-65535)"
        );
        assert_eq!(
            e("10.0.0.1:0"),
            "`allow_connect`: `10.0.0.1:0` has port 0; give the port to connect to"
        );
        assert_eq!(
            e("0.0.0.0:80"),
            "`allow_connect`: `0.0.0.0:80` is a wildcard, not an address to connect to"
        );
        assert_eq!(
            e("[::ffff:0.0.0.0]:80"),
            "`allow_connect`: `[::ffff:0.0.0.0]:80` is a wildcard, not an address to connect to"
        );
        assert_eq!(
            e("nohost.invalid:80"),
            "`allow_connect`: the host name `nohost.invalid` does not resolve to an address"
        );
        assert_eq!(
            e("[::1:80"),
            "`allow_connect`: `[::1:80` is not IP:PORT ([IPv6]:PORT for IPv6, or HOST:PORT)"
        );
    }
}
