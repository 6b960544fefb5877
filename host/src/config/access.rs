//! Who may connect, and when: the `only_from` / `no_access` address rules
//! and the `access_times` windows, with xinetd's address forms parsed next
//! to what they mean.
//!
//! Both are decided from the peer's address and the clock alone, so the
//! service decides them before any guest exists (xinetd checks addresses
//! after it has forked). Reading config lines is `config`'s job; counting
//! connections (`per_source`, `cps`) and the order of the checks are
//! `admission`'s.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

/// `only_from` and `no_access`, as networks. IPv4-mapped IPv6 addresses
/// are stored and matched as IPv4.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressRules {
    /// `None` when not set: everyone may connect. `Some([])` (an empty
    /// `only_from =`): nobody may.
    pub only_from: Option<Vec<IpNet>>,
    /// Networks refused, unless a more specific `only_from` entry matches.
    pub no_access: Vec<IpNet>,
}

impl AddressRules {
    /// Whether `peer` may connect. When both lists match, the more specific
    /// match (the longer prefix) wins, and a tie denies, as in xinetd.
    pub fn allows(&self, peer: IpAddr) -> bool {
        let ip = peer.to_canonical();
        let denied = best_match(&self.no_access, ip);
        let Some(only_from) = &self.only_from else {
            return denied.is_none();
        };
        match (best_match(only_from, ip), denied) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(allowed), Some(denied)) => allowed > denied,
        }
    }
}

/// The longest prefix among the networks of `nets` that hold `ip`.
fn best_match(nets: &[IpNet], ip: IpAddr) -> Option<u8> {
    nets.iter()
        .filter(|n| n.contains(&ip))
        .map(IpNet::prefix_len)
        .max()
}

/// What an address word may be, for error messages.
const FORMS: &str = "an address, a CIDR range like 10.0.0.0/8, xinetd's 10.0.0.0 or \
                     10.0.{1,2} forms, or a host name";

/// The networks one `only_from` / `no_access` word (`name`) stands for:
/// - an IPv4 or IPv6 address, or a CIDR range (`10.0.0.0/8`, `::1/128`);
/// - xinetd's trailing-zero wildcard: `128.138.0.0` is `128.138.0.0/16`;
/// - xinetd's factorized form: `128.138.{193,194}` is two `/24`s;
/// - `0.0.0.0` or `0.0.0.0/0`: every address, IPv4 and IPv6;
/// - a host name, resolved now to every address it has.
pub fn parse_pattern(name: &str, word: &str) -> Result<Vec<IpNet>, String> {
    let bad = || format!("`{name}` takes {FORMS}, not `{word}`");
    if word == "0.0.0.0" || word == "0.0.0.0/0" {
        let v4 = IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0);
        let v6 = IpNet::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 0);
        return Ok(vec![v4.map_err(|_| bad())?, v6.map_err(|_| bad())?]);
    }
    if let Some((head, list)) = word.split_once('{') {
        return factorized(head, list).ok_or_else(bad);
    }
    if let Some((addr, len)) = word.split_once('/') {
        let ip: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len: u8 = len.parse().map_err(|_| bad())?;
        let net = IpNet::new(ip, len)
            .map_err(|_| format!("`{name}` takes a prefix length from 0 to {max} in `{word}`"))?;
        return Ok(vec![canonical(net.trunc())]);
    }
    if let Ok(v4) = word.parse::<Ipv4Addr>() {
        // xinetd: trailing zero bytes are wildcards.
        let zeros = v4.octets().iter().rev().take_while(|&&b| b == 0).count();
        let net = IpNet::new(v4.into(), 32 - 8 * zeros as u8).map_err(|_| bad())?;
        return Ok(vec![net]);
    }
    if let Ok(ip) = word.parse::<IpAddr>() {
        return Ok(vec![host(ip)]);
    }
    if word.starts_with('.') {
        return Err(format!(
            "`{name}` cannot match the domain `{word}`: that needs a reverse DNS lookup per \
             connection; list its addresses or networks"
        ));
    }
    // Digits and dots that are not an address (`10.1`) are a typo, not a
    // host name: getaddrinfo would read `10.1` as 10.0.0.1.
    let numeric = word.chars().all(|c| c.is_ascii_digit() || c == '.');
    let hostname = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if numeric || !hostname || word.contains(':') {
        return Err(bad());
    }
    resolve(word)
        .ok_or_else(|| format!("`{name}`: the host name `{word}` does not resolve to an address"))
}

/// `a.b.{c,d}`: `head` is one to three bytes and a dot, `list` the values
/// of the next byte and the closing brace; the rest are wildcards.
fn factorized(head: &str, list: &str) -> Option<Vec<IpNet>> {
    let head: Vec<u8> = head
        .strip_suffix('.')?
        .split('.')
        .map(|b| b.parse().ok())
        .collect::<Option<_>>()?;
    let values: Vec<u8> = list
        .strip_suffix('}')?
        .split(',')
        .map(|b| b.trim().parse().ok())
        .collect::<Option<_>>()?;
    if !(1..=3).contains(&head.len()) {
        return None;
    }
    let prefix = 8 * (head.len() as u8 + 1);
    let nets = values.iter().map(|&v| {
        let mut octets = [0; 4];
        octets[..head.len()].copy_from_slice(&head);
        octets[head.len()] = v;
        IpNet::new(Ipv4Addr::from(octets).into(), prefix).ok()
    });
    nets.collect()
}

/// Every address `name` resolves to, as single-host networks.
fn resolve(name: &str) -> Option<Vec<IpNet>> {
    let nets: Vec<IpNet> = crate::config::resolve::addresses(name)
        .into_iter()
        .map(host)
        .collect();
    (!nets.is_empty()).then_some(nets)
}

/// `ip` alone, IPv4-mapped IPv6 as IPv4.
fn host(ip: IpAddr) -> IpNet {
    IpNet::from(ip.to_canonical())
}

/// An IPv6 range inside `::ffff:0:0/96` as the IPv4 range it maps.
fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(v4.into(), v6.prefix_len() - 96).unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

/// One `access_times` window, `hh:mm-hh:mm`, bounds included; it may wrap
/// midnight (`22:00-06:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// Minutes after midnight, local time.
    pub start: u16,
    /// Minutes after midnight, local time; the whole minute is in.
    pub end: u16,
}

impl TimeWindow {
    /// Reads `hh:mm-hh:mm` (hours 0-23, minutes 0-59, one or two digits).
    pub fn parse(word: &str) -> Option<TimeWindow> {
        let (start, end) = word.split_once('-')?;
        Some(TimeWindow {
            start: minute_of_day(start)?,
            end: minute_of_day(end)?,
        })
    }

    /// Whether `minute` (after midnight) is in the window.
    pub fn contains(self, minute: u16) -> bool {
        if self.start <= self.end {
            (self.start..=self.end).contains(&minute)
        } else {
            minute >= self.start || minute <= self.end
        }
    }
}

fn minute_of_day(hh_mm: &str) -> Option<u16> {
    let (h, m) = hh_mm.split_once(':')?;
    let short = |s: &str| (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !short(h) || !short(m) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Whether a service with `windows` (none: always open) is open at
/// `minute` after midnight; `None` (the local time is unknown) is closed.
pub fn open_at(windows: &[TimeWindow], minute: Option<u16>) -> bool {
    windows.is_empty() || minute.is_some_and(|m| windows.iter().any(|w| w.contains(m)))
}

unsafe extern "C" {
    /// POSIX; missing from the `libc` crate's Linux bindings.
    fn tzset();
}

/// Minutes after midnight at `now`, in the daemon's local time zone (`TZ`,
/// else `/etc/localtime`), as xinetd reads `access_times`: an operator
/// writes the hours of their own clock, daylight saving included.
pub fn local_minute_of_day(now: SystemTime) -> Option<u16> {
    let secs = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let t = libc::time_t::try_from(secs).ok()?;
    let mut tm = std::mem::MaybeUninit::<libc::tm>::uninit();
    // SAFETY: `tzset` re-reads the time zone (so an operator's change of
    // `/etc/localtime` applies, as with xinetd's `localtime`) under libc's
    // own lock; the daemon never changes its environment after start.
    // `localtime_r` writes only to `tm`, and fills it when it succeeds.
    let tm = unsafe {
        tzset();
        if libc::localtime_r(&t, tm.as_mut_ptr()).is_null() {
            return None;
        }
        tm.assume_init()
    };
    u16::try_from(tm.tm_hour * 60 + tm.tm_min).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(words: &str) -> Vec<IpNet> {
        words
            .split_whitespace()
            .flat_map(|w| parse_pattern("only_from", w).unwrap())
            .collect()
    }

    fn strings(nets: &[IpNet]) -> Vec<String> {
        nets.iter().map(ToString::to_string).collect()
    }

    fn rules(only_from: Option<&str>, no_access: &str) -> AddressRules {
        AddressRules {
            only_from: only_from.map(nets),
            no_access: nets(no_access),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn xinetd_address_forms() {
        assert_eq!(strings(&nets("10.1.2.3")), ["10.1.2.3/32"]);
        assert_eq!(strings(&nets("128.138.0.0")), ["128.138.0.0/16"]);
        assert_eq!(strings(&nets("10.0.1.0")), ["10.0.1.0/24"]);
        assert_eq!(
            strings(&nets("128.138.{193,194}")),
            ["128.138.193.0/24", "128.138.194.0/24"]
        );
        assert_eq!(
            strings(&nets("10.{0,255}")),
            ["10.0.0.0/16", "10.255.0.0/16"]
        );
        assert_eq!(strings(&nets("10.1.2.3/8")), ["10.0.0.0/8"]);
        assert_eq!(strings(&nets("1.2.3.{4}")), ["1.2.3.4/32"]);
        assert_eq!(strings(&nets("::1")), ["::1/128"]);
        assert_eq!(strings(&nets("2001:db8::/32")), ["2001:db8::/32"]);
        assert_eq!(strings(&nets("::ffff:10.0.0.0/104")), ["10.0.0.0/8"]);
        assert_eq!(strings(&nets("::ffff:10.0.0.1")), ["10.0.0.1/32"]);
        assert_eq!(strings(&nets("0.0.0.0")), ["0.0.0.0/0", "::/0"]);
        assert_eq!(strings(&nets("0.0.0.0/0")), ["0.0.0.0/0", "::/0"]);
        assert!(nets("localhost").contains(&"127.0.0.1/32".parse().unwrap()));
    }

    #[test]
    fn bad_address_words_say_why() {
        let e = |w| parse_pattern("no_access", w).unwrap_err();
        let forms = format!("`no_access` takes {FORMS}, not");
        for word in [
            "10.1",
            "10.0.0.256",
            "1.2.3.4.{5}",
            "{1,2}",
            "1.{2,x}",
            "a b",
            "::g",
            "1.2/x",
        ] {
            assert_eq!(e(word), format!("{forms} `{word}`"), "{word}");
        }
        assert_eq!(
            e("10.0.0.0/33"),
            "`no_access` takes a prefix length from 0 to 32 in `10.0.0.0/33`"
        );
        assert_eq!(
            e("::/129"),
            "`no_access` takes a prefix length from 0 to 128 in `::/129`"
        );
        assert!(e(".example.com").contains("reverse DNS"));
        assert_eq!(
            e("nohost.invalid"),
            "`no_access`: the host name `nohost.invalid` does not resolve to an address"
        );
    }

    #[test]
    fn unset_only_from_allows_all_but_no_access() {
        let r = rules(None, "");
        assert!(r.allows(ip("192.0.2.1")) && r.allows(ip("::1")));
        let r = rules(None, "10.0.0.0/8");
        assert!(!r.allows(ip("10.9.9.9")) && r.allows(ip("11.0.0.1")));
        let r = rules(Some(""), "");
        assert!(!r.allows(ip("127.0.0.1")) && !r.allows(ip("::1")));
    }

    #[test]
    fn the_more_specific_match_wins_and_a_tie_denies() {
        let r = rules(Some("127.0.0.0/8"), "127.0.0.1");
        assert!(!r.allows(ip("127.0.0.1")));
        assert!(r.allows(ip("127.0.0.2")));
        let r = rules(Some("127.0.0.1"), "127.0.0.0/8");
        assert!(r.allows(ip("127.0.0.1")));
        assert!(!r.allows(ip("127.0.0.2")));
        assert!(!r.allows(ip("10.0.0.1")));
        let r = rules(Some("10.0.0.0/8"), "10.0.0.0");
        assert!(!r.allows(ip("10.1.1.1")));
        let r = rules(Some("0.0.0.0"), "192.168.{1,2}");
        assert!(r.allows(ip("192.168.3.1")) && !r.allows(ip("192.168.2.7")));
        assert!(r.allows(ip("2001:db8::1")));
    }

    #[test]
    fn mapped_ipv6_peers_match_ipv4_rules() {
        let r = rules(Some("127.0.0.0/8"), "");
        assert!(r.allows(ip("::ffff:127.0.0.5")));
        assert!(!r.allows(ip("::ffff:10.0.0.1")));
        assert!(!r.allows(ip("::1")));
        let r = rules(Some("::/0"), "::ffff:10.0.0.0/104");
        assert!(!r.allows(ip("::ffff:10.1.1.1")));
        let r = rules(Some("::1"), "");
        assert!(r.allows(ip("::1")) && !r.allows(ip("127.0.0.1")));
    }

    #[test]
    fn time_windows() {
        let w = |s| TimeWindow::parse(s).unwrap();
        assert_eq!(
            w("8:00-17:30"),
            TimeWindow {
                start: 480,
                end: 1050
            }
        );
        let day = w("08:00-17:00");
        assert!(
            day.contains(480) && day.contains(1020) && !day.contains(1021) && !day.contains(479)
        );
        let night = w("22:00-06:00");
        assert!(night.contains(1439) && night.contains(0) && night.contains(360));
        assert!(!night.contains(361) && !night.contains(1319));
        assert!(w("12:00-12:00").contains(720) && !w("12:00-12:00").contains(721));
        for bad in [
            "24:00-01:00",
            "10:60-11:00",
            "10-11",
            "10:00",
            "1:2:3-4:5",
            "a:00-b:00",
            "100:00-1:00",
            "",
        ] {
            assert_eq!(TimeWindow::parse(bad), None, "{bad}");
        }
        assert!(open_at(&[], None));
        assert!(open_at(&[day, night], Some(0)));
        assert!(!open_at(&[day, night], Some(1200)));
        assert!(!open_at(&[day], None));
    }

    #[test]
    fn local_time_is_a_minute_of_the_day() {
        let m = local_minute_of_day(SystemTime::now()).unwrap();
        assert!(m < 24 * 60);
    }
}
