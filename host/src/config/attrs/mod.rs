//! The table of every attribute this daemon knows, and the checks that need
//! only the table: unknown names (with the nearest known one), attributes
//! refused for a reason, warning-only ones, where an attribute may appear, and the
//! rules of `=` / `+=` / `-=`. What a value means is left to `spec` and
//! `defaults`, which see only lines that passed [`screen`].

use std::collections::{HashMap, HashSet};

use super::Report;
use super::parse::{Op, RawAttr};

/// The kind of block a line is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Service,
    Defaults,
}

/// Where an attribute may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Allowed {
    Service,
    Defaults,
    Both,
}

/// How an attribute combines its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// One value: `=` only, once per block.
    Single,
    /// A set: `=` replaces what the block inherited (later lines add to it),
    /// `+=` adds, `-=` removes; lines may repeat.
    Set,
    /// Accepted and ignored with a warning; the text says why.
    Ignored(&'static str),
    /// A known xinetd attribute that is an error here, because ignoring it
    /// would widen access or leave the service broken; the text says why
    /// and what to use instead.
    Unsupported(&'static str),
}

/// What an attribute sets. Each is applied by a `match` with no catch-all
/// (`Draft::apply` for [`Own`], `Inherited::apply` for [`Shared`],
/// `Defaults::from_block` for [`Listing`]), so an attribute in this table
/// that nothing applies does not compile, and one applied but not in the
/// table is never constructed (a warning, an error under clippy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
    /// Read by the service block itself.
    Own(Own),
    /// A value a service inherits from `defaults` unless it sets its own.
    Shared(Shared),
    /// Which services are on (`defaults` only).
    Listing(Listing),
    /// Ignored with a warning, or refused: never applied.
    Refused,
}

/// Attributes a `service` block reads itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Own {
    Id,
    Disable,
    Type,
    SocketType,
    Protocol,
    Wait,
    Port,
    Server,
    ServerArgs,
    Preopen,
    AccessTimes,
    Flags,
    ListenUnix,
    Redirect,
    DenyTime,
    ProxyProtocol,
    ProxyFrom,
}

/// Attributes a service inherits from `defaults` unless it sets its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shared {
    LogOnSuccess,
    LogOnFailure,
    LogType,
    Passenv,
    Env,
    Instances,
    RlimitAs,
    RlimitCpu,
    RuntimeMax,
    IdleTimeout,
    PreopenQuota,
    RlimitData,
    RlimitRss,
    RlimitFiles,
    MaxLoad,
    Bind,
    V6only,
    Backlog,
    SocketMode,
    OnlyFrom,
    AllowConnect,
    NoAccess,
    PerSource,
    Cps,
    Banner,
    BannerSuccess,
    BannerFail,
}

/// `defaults`' lists of services turned off or on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listing {
    Disabled,
    Enabled,
}

/// One known attribute: its name, what it sets, where it may appear, and
/// how its lines combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Attr {
    pub name: &'static str,
    pub key: Key,
    pub allowed: Allowed,
    pub kind: Kind,
}

const fn attr(name: &'static str, key: Key, allowed: Allowed, kind: Kind) -> Attr {
    Attr {
        name,
        key,
        allowed,
        kind,
    }
}

use Allowed::{Both, Defaults, Service};
use Kind::{Ignored, Set, Single, Unsupported};

/// Every attribute name the daemon knows; the README's attribute table documents each.
pub(super) const TABLE: &[Attr] = &[
    attr("id", Key::Own(Own::Id), Service, Single),
    attr("disable", Key::Own(Own::Disable), Service, Single),
    attr("type", Key::Own(Own::Type), Service, Single),
    attr("socket_type", Key::Own(Own::SocketType), Service, Single),
    attr("protocol", Key::Own(Own::Protocol), Service, Single),
    attr("wait", Key::Own(Own::Wait), Service, Single),
    attr("port", Key::Own(Own::Port), Service, Single),
    attr("bind", Key::Shared(Shared::Bind), Both, Single),
    attr("interface", Key::Shared(Shared::Bind), Both, Single),
    attr("server", Key::Own(Own::Server), Service, Single),
    attr("server_args", Key::Own(Own::ServerArgs), Service, Single),
    attr("env", Key::Shared(Shared::Env), Both, Set),
    attr("passenv", Key::Shared(Shared::Passenv), Both, Set),
    attr("instances", Key::Shared(Shared::Instances), Both, Single),
    attr("rlimit_as", Key::Shared(Shared::RlimitAs), Both, Single),
    attr("rlimit_cpu", Key::Shared(Shared::RlimitCpu), Both, Single),
    attr("runtime_max", Key::Shared(Shared::RuntimeMax), Both, Single),
    attr(
        "idle_timeout",
        Key::Shared(Shared::IdleTimeout),
        Both,
        Single,
    ),
    attr("preopen", Key::Own(Own::Preopen), Service, Set),
    attr(
        "preopen_quota",
        Key::Shared(Shared::PreopenQuota),
        Both,
        Single,
    ),
    attr(
        "log_on_success",
        Key::Shared(Shared::LogOnSuccess),
        Both,
        Set,
    ),
    attr(
        "log_on_failure",
        Key::Shared(Shared::LogOnFailure),
        Both,
        Set,
    ),
    attr("disabled", Key::Listing(Listing::Disabled), Defaults, Set),
    attr("enabled", Key::Listing(Listing::Enabled), Defaults, Set),
    attr("user", Key::Refused, Both, Ignored("it runs with no uid")),
    attr("group", Key::Refused, Both, Ignored("it runs with no gid")),
    attr(
        "groups",
        Key::Refused,
        Both,
        Ignored("it runs with no supplementary groups"),
    ),
    attr(
        "umask",
        Key::Refused,
        Both,
        Ignored("it creates files only in preopened dirs, with the daemon's umask"),
    ),
    attr(
        "nice",
        Key::Refused,
        Both,
        Ignored("it runs on the daemon's threads, at the daemon's priority"),
    ),
    attr("only_from", Key::Shared(Shared::OnlyFrom), Both, Set),
    attr(
        "allow_connect",
        Key::Shared(Shared::AllowConnect),
        Both,
        Set,
    ),
    attr("no_access", Key::Shared(Shared::NoAccess), Both, Set),
    attr("access_times", Key::Own(Own::AccessTimes), Service, Single),
    attr("per_source", Key::Shared(Shared::PerSource), Both, Single),
    attr("cps", Key::Shared(Shared::Cps), Both, Single),
    attr("banner", Key::Shared(Shared::Banner), Both, Single),
    attr(
        "banner_success",
        Key::Shared(Shared::BannerSuccess),
        Both,
        Single,
    ),
    attr("banner_fail", Key::Shared(Shared::BannerFail), Both, Single),
    attr("flags", Key::Own(Own::Flags), Service, Single),
    attr("v6only", Key::Shared(Shared::V6only), Both, Single),
    attr("backlog", Key::Shared(Shared::Backlog), Both, Single),
    attr("listen_unix", Key::Own(Own::ListenUnix), Service, Single),
    attr("socket_mode", Key::Shared(Shared::SocketMode), Both, Single),
    attr("max_load", Key::Shared(Shared::MaxLoad), Both, Single),
    attr("redirect", Key::Own(Own::Redirect), Service, Single),
    attr("log_type", Key::Shared(Shared::LogType), Both, Single),
    attr(
        "rlimit_data",
        Key::Shared(Shared::RlimitData),
        Service,
        Single,
    ),
    attr(
        "rlimit_rss",
        Key::Shared(Shared::RlimitRss),
        Service,
        Single,
    ),
    attr(
        "rlimit_stack",
        Key::Refused,
        Service,
        Ignored(
            "its stack is part of its linear memory, sized when it was built and \
             counted by `rlimit_as`; the engine caps every guest's native stack alike",
        ),
    ),
    attr(
        "rlimit_files",
        Key::Shared(Shared::RlimitFiles),
        Service,
        Single,
    ),
    attr("deny_time", Key::Own(Own::DenyTime), Service, Single),
    attr(
        "proxy_protocol",
        Key::Own(Own::ProxyProtocol),
        Service,
        Single,
    ),
    attr("proxy_from", Key::Own(Own::ProxyFrom), Service, Single),
    attr(
        "libwrap",
        Key::Refused,
        Service,
        Unsupported(
            "there are no TCP wrappers (hosts.allow / hosts.deny), and ignoring it would \
             let in everyone they keep out; use `only_from` / `no_access`",
        ),
    ),
    attr(
        "mdns",
        Key::Refused,
        Service,
        Ignored("wasinetd announces no service over multicast DNS"),
    ),
    attr("rpc_version", Key::Refused, Service, Unsupported(RPC)),
    attr("rpc_number", Key::Refused, Service, Unsupported(RPC)),
];

/// Why `rpc_version` / `rpc_number` (and `type = RPC`) are errors.
pub(super) const RPC: &str = "ONC RPC services are registered with the portmapper, which \
     wasinetd does not do, so clients could not find them; serve the program on a fixed \
     `port` with `type = UNLISTED`";

/// The table's entry for a (lowercased) name.
pub(super) fn lookup(name: &str) -> Option<&'static Attr> {
    TABLE.iter().find(|a| a.name == name)
}

/// The message for a name not in the table, naming the nearest known one
/// when it is close enough to be a typo.
pub(super) fn unknown(name: &str) -> String {
    // One edit per four letters (at least one) is a typo, not another word.
    let limit = (name.len() / 4).max(1);
    let nearest = TABLE
        .iter()
        .map(|a| (strsim::damerau_levenshtein(name, a.name), a.name))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance);
    match nearest {
        Some((_, known)) => format!("unknown attribute `{name}`; did you mean `{known}`?"),
        None => format!("unknown attribute `{name}`"),
    }
}

/// What one block has seen so far, for the rules of `=`.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// Single-valued attributes already set, with their line.
    single: HashMap<&'static str, u32>,
    /// Set-valued attributes already given with `=`.
    assigned: HashSet<&'static str>,
}

/// A line that passed the table's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Checked {
    /// What it sets.
    pub key: Key,
    /// For a set: this is the block's first `=` for it, which replaces the
    /// inherited value instead of adding to it.
    pub replaces: bool,
}

/// Checks `raw` against the table; reports what is wrong through `report`
/// and returns the line to apply, if any.
pub(super) fn screen(
    raw: &RawAttr,
    place: Place,
    seen: &mut Seen,
    report: &mut Report,
) -> Option<Checked> {
    let name = raw.name.as_str();
    let Some(attr) = lookup(name) else {
        report.error(raw.line, unknown(name));
        return None;
    };
    match attr.kind {
        Unsupported(why) => {
            report.error(raw.line, format!("`{name}` is not supported: {why}"));
            return None;
        }
        Ignored(why) => {
            let message =
                format!("`{name}` has no meaning for a WebAssembly guest ({why}); ignored");
            report.warning(raw.line, message);
            return None;
        }
        Single | Set => {}
    }
    let misplaced = match (attr.allowed, place) {
        (Service, Place::Defaults) if name == "disable" => {
            Some("`disable` is not allowed in `defaults`; list ids in `disabled = ID...`".into())
        }
        (Service, Place::Defaults) => Some(format!(
            "`{name}` is not allowed in `defaults`; set it in each service"
        )),
        (Defaults, Place::Service) if name == "disabled" => Some(
            "`disabled` is only allowed in `defaults`; use `disable = yes` in a service".into(),
        ),
        (Defaults, Place::Service) => Some(format!("`{name}` is only allowed in `defaults`")),
        _ => None,
    };
    if let Some(message) = misplaced {
        report.error(raw.line, message);
        return None;
    }
    // `interface` is another name for `bind`: one value between them.
    let seen_as = if name == "interface" {
        "bind"
    } else {
        attr.name
    };
    let key = attr.key;
    if attr.kind == Set {
        let replaces = raw.op == Op::Assign && seen.assigned.insert(seen_as);
        return Some(Checked { key, replaces });
    }
    if raw.op != Op::Assign {
        let message = format!(
            "`{name}` takes `=` only (it has a single value), not `{}`",
            raw.op.as_str()
        );
        report.error(raw.line, message);
        return None;
    }
    if let Some(first) = seen.single.insert(seen_as, raw.line) {
        // Keep pointing at the first line for a third one.
        seen.single.insert(seen_as, first);
        let message = format!(
            "`{name}` is set twice in this block (lines {first} and {}); keep one",
            raw.line
        );
        report.error(raw.line, message);
        return None;
    }
    Some(Checked {
        key,
        replaces: true,
    })
}

#[cfg(test)]
mod tests;
