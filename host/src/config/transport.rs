//! `socket_type`, `protocol` and `wait`: whether a service is TCP (one
//! guest per connection) or UDP (one guest per datagram), and the checks
//! that need all three.

use super::values;
use super::{Report, SocketType};

/// `socket_type` (`stream` / `dgram`) or `protocol` (`tcp` / `udp`): the
/// transport it names.
pub(super) fn parse(name: &str, values: &[String]) -> Result<SocketType, String> {
    let (stream, dgram, others): (&str, &str, &[&str]) = match name {
        "socket_type" => ("stream", "dgram", &["raw", "seqpacket"]),
        _ => ("tcp", "udp", &[]),
    };
    let what = format!("`{stream}` or `{dgram}`");
    let word = values::one(name, &what, values)?;
    let lower = word.to_ascii_lowercase();
    if lower == stream {
        Ok(SocketType::Stream)
    } else if lower == dgram {
        Ok(SocketType::Dgram)
    } else if others.contains(&lower.as_str()) {
        let why = if lower == "raw" {
            "a raw socket needs CAP_NET_RAW and would hand a guest whole IP packets"
        } else {
            "a guest's stdin and stdout are byte streams, which keep no packet boundaries"
        };
        Err(format!(
            "`{name} = {word}` is not supported: {why}; use `{stream}` or `{dgram}`"
        ))
    } else {
        Err(format!("`{name}` takes {what}, not `{word}`"))
    }
}

/// What a block said of `socket_type`, `protocol` and `wait`, with lines.
#[derive(Debug, Default)]
pub(super) struct Said {
    socket_type: Option<(SocketType, u32)>,
    protocol: Option<(SocketType, u32)>,
    wait: Option<(bool, u32)>,
}

impl Said {
    /// Takes one `socket_type`, `protocol` or `wait` line.
    pub(super) fn apply(&mut self, name: &str, words: &[String], line: u32) -> Result<(), String> {
        match name {
            "wait" => self.wait = Some((values::yes_no(name, words)?, line)),
            "protocol" => self.protocol = Some((parse(name, words)?, line)),
            _ => self.socket_type = Some((parse(name, words)?, line)),
        }
        Ok(())
    }

    /// TCP or UDP, from `socket_type` and `protocol` (either implies the
    /// other; they must agree), with `wait = yes` for UDP only (where `yes`
    /// and `no` both mean one guest per datagram).
    pub(super) fn resolve(&self, report: &mut Report) -> Option<SocketType> {
        let transport = match (self.socket_type, self.protocol) {
            (Some((socket, _)), Some((protocol, line))) if socket != protocol => {
                let (s, p) = match socket {
                    SocketType::Stream => ("stream", "udp"),
                    SocketType::Dgram => ("dgram", "tcp"),
                };
                report.error(
                    line,
                    format!(
                        "`protocol = {p}` cannot carry `socket_type = {s}`: use `socket_type = stream` with `tcp`, `dgram` with `udp`"
                    ),
                );
                return None;
            }
            (Some((t, _)), _) | (None, Some((t, _))) => t,
            (None, None) => SocketType::Stream,
        };
        if let (SocketType::Stream, Some((true, line))) = (transport, self.wait) {
            report.error(
                line,
                "`wait = yes` is not supported for stream services: such a server accepts \
                 its connections itself, and a guest is given no listening socket; use \
                 `wait = no` (one guest per connection)",
            );
            return None;
        }
        Some(transport)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse_env;
    use super::super::{GuestSource, Listen, ServiceSpec};
    use super::*;

    fn w(words: &str) -> Vec<String> {
        words.split_whitespace().map(str::to_string).collect()
    }

    fn only(text: &str) -> ServiceSpec {
        let config = parse_env(text, "daytime 13/udp\n", &[]);
        assert!(config.errors.is_empty(), "{:?}", config.errors);
        config.services.into_iter().next().unwrap()
    }

    #[test]
    fn words() {
        assert_eq!(parse("socket_type", &w("stream")), Ok(SocketType::Stream));
        assert_eq!(parse("socket_type", &w("DGRAM")), Ok(SocketType::Dgram));
        assert_eq!(parse("protocol", &w("udp")), Ok(SocketType::Dgram));
        assert_eq!(
            parse("socket_type", &w("raw")).unwrap_err(),
            "`socket_type = raw` is not supported: a raw socket needs CAP_NET_RAW and would hand a guest whole IP packets; use `stream` or `dgram`"
        );
        assert_eq!(
            parse("socket_type", &w("foo")).unwrap_err(),
            "`socket_type` takes `stream` or `dgram`, not `foo`"
        );
        assert_eq!(
            parse("protocol", &w("icmp")).unwrap_err(),
            "`protocol` takes `tcp` or `udp`, not `icmp`"
        );
    }

    #[test]
    fn a_dgram_service_takes_its_udp_port_and_internal_guests_learn_it() {
        let spec = only(
            "service daytime {\n id = daytime-dgram\n type = INTERNAL\n protocol = udp\n wait = yes\n}\n",
        );
        assert_eq!(spec.listen, [Listen::Udp("0.0.0.0:13".parse().unwrap())]);
        assert_eq!(spec.guest, GuestSource::Internal("daytime".into()));
        assert_eq!(spec.argv, ["daytime", "--dgram"]);
    }
}
