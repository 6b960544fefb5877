//! `proxy_protocol` and `proxy_from`: a service behind a load balancer that
//! sends the PROXY protocol header (HAProxy's, v1 text or v2 binary), and
//! the balancers trusted to send it. Reading the header off a connection is
//! `conn::proxy`'s job; this module only reads the two lines and checks
//! that they make sense together and with the rest of the block.

use ipnet::IpNet;
use std::net::IpAddr;

use super::admission;

/// A service's PROXY protocol: which versions it accepts, and from whom.
/// With it set, every TCP connection must start with a header, and only
/// from `from`: a balancer's listener, as HAProxy's `accept-proxy` and
/// nginx's `listen ... proxy_protocol` are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// `v1` (text) is accepted.
    pub v1: bool,
    /// `v2` (binary) is accepted.
    pub v2: bool,
    /// The balancers trusted to send the header (`proxy_from`), as
    /// networks; matched as IPv4 for IPv4-mapped peers.
    pub from: Vec<IpNet>,
}

impl ProxyProtocol {
    /// Whether `ip`, the connection's own peer, may send a header.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.from.iter().any(|net| net.contains(&ip))
    }
}

/// `proxy_protocol` words: `v1`, `v2` or both, as (v1, v2).
pub(super) fn versions(name: &str, words: &[String]) -> Result<(bool, bool), String> {
    let (mut v1, mut v2) = (false, false);
    for word in words {
        match word.to_ascii_lowercase().as_str() {
            "v1" => v1 = true,
            "v2" => v2 = true,
            _ => return Err(format!("`{name}` takes `v1`, `v2` or both, not `{word}`")),
        }
    }
    if !(v1 || v2) {
        return Err(format!("`{name}` takes `v1`, `v2` or both"));
    }
    Ok((v1, v2))
}

/// `proxy_from` words: addresses and networks, in `only_from`'s forms.
pub(super) fn from(name: &str, words: &[String]) -> Result<Vec<IpNet>, String> {
    if words.is_empty() {
        return Err(format!(
            "`{name}` takes the addresses or networks of the balancers that send the header"
        ));
    }
    admission::addresses(name, words)
}

/// What a service block said of the two, with their lines.
#[derive(Debug, Default)]
pub(super) struct Said {
    pub versions: Option<((bool, bool), u32)>,
    pub from: Option<(Vec<IpNet>, u32)>,
}

impl Said {
    /// The service's PROXY protocol, or the error and its line: one
    /// without the other, or on a socket that has no address to trust
    /// (`dgram`: a UDP source can be forged; `listen_unix`: a Unix peer has
    /// none). `failed` says whether a line that may have set an attribute
    /// was in error (then its absence is not reported again).
    pub fn resolve(
        self,
        udp: bool,
        unix: bool,
        failed: impl Fn(&str) -> bool,
    ) -> Result<Option<ProxyProtocol>, (u32, String)> {
        match (self.versions, self.from) {
            (None, None) => Ok(None),
            (None, Some((_, line))) if !failed("proxy_protocol") => Err((
                line,
                "`proxy_from` is for `proxy_protocol` services: it names the balancers \
                 trusted to send the header"
                    .into(),
            )),
            (Some((_, line)), None) if !failed("proxy_from") => Err((
                line,
                "`proxy_protocol` needs `proxy_from`: the addresses of the balancers \
                 trusted to send the header (anyone else could claim any address)"
                    .into(),
            )),
            (Some((_, line)), Some(_)) if udp => Err((
                line,
                "`proxy_protocol` is for stream services, not `dgram`".into(),
            )),
            (Some((_, line)), Some(_)) if unix => Err((
                line,
                "`proxy_protocol` cannot be used with `listen_unix`: a Unix peer has no \
                 address to check against `proxy_from`"
                    .into(),
            )),
            (Some(((v1, v2), _)), Some((from, _))) => Ok(Some(ProxyProtocol { v1, v2, from })),
            // The other one's line was in error, and reported there.
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::tests::parse_env;

    fn parse(body: &str) -> Config {
        let text =
            format!("service a {{\n type = UNLISTED\n port = 1\n server = a.wasm\n{body}\n}}\n");
        parse_env(&text, "", &[])
    }

    #[test]
    fn versions_and_balancers_are_read_and_trusted_as_ipv4_when_mapped() {
        let config = parse(" proxy_protocol = V2 v1\n proxy_from = 127.0.0.2 10.1.0.0/16 ::1");
        assert!(config.errors.is_empty(), "{:?}", config.errors);
        let proxy = config.services[0].proxy.clone().unwrap();
        assert!(proxy.v1 && proxy.v2);
        for ip in ["127.0.0.2", "::ffff:127.0.0.2", "10.1.200.3", "::1"] {
            assert!(proxy.trusts(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.1", "10.2.0.1", "::2"] {
            assert!(!proxy.trusts(ip.parse().unwrap()), "{ip}");
        }
        let only_v2 = parse(" proxy_protocol = v2\n proxy_from = 127.0.0.2");
        let proxy = only_v2.services[0].proxy.clone().unwrap();
        assert!(!proxy.v1 && proxy.v2);
        assert_eq!(parse("").services[0].proxy, None);
    }
}
