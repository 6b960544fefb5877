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

/// One known attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Attr {
    pub name: &'static str,
    pub allowed: Allowed,
    pub kind: Kind,
}

const fn attr(name: &'static str, allowed: Allowed, kind: Kind) -> Attr {
    Attr {
        name,
        allowed,
        kind,
    }
}

use Allowed::{Both, Defaults, Service};
use Kind::{Ignored, Set, Single, Unsupported};

/// Every attribute name the daemon knows; the README's attribute table documents each.
pub(super) const TABLE: &[Attr] = &[
    attr("id", Service, Single),
    attr("disable", Service, Single),
    attr("type", Service, Single),
    attr("socket_type", Service, Single),
    attr("protocol", Service, Single),
    attr("wait", Service, Single),
    attr("port", Service, Single),
    attr("bind", Both, Single),
    attr("interface", Both, Single),
    attr("server", Service, Single),
    attr("server_args", Service, Single),
    attr("env", Both, Set),
    attr("passenv", Both, Set),
    attr("instances", Both, Single),
    attr("rlimit_as", Both, Single),
    attr("rlimit_cpu", Both, Single),
    attr("runtime_max", Both, Single),
    attr("idle_timeout", Both, Single),
    attr("preopen", Service, Set),
    attr("preopen_quota", Both, Single),
    attr("log_on_success", Both, Set),
    attr("log_on_failure", Both, Set),
    attr("disabled", Defaults, Set),
    attr("enabled", Defaults, Set),
    attr("user", Both, Ignored("it runs with no uid")),
    attr("group", Both, Ignored("it runs with no gid")),
    attr(
        "groups",
        Both,
        Ignored("it runs with no supplementary groups"),
    ),
    attr(
        "umask",
        Both,
        Ignored("it creates files only in preopened dirs, with the daemon's umask"),
    ),
    attr(
        "nice",
        Both,
        Ignored("it runs on the daemon's threads, at the daemon's priority"),
    ),
    attr("only_from", Both, Set),
    attr("allow_connect", Both, Set),
    attr("no_access", Both, Set),
    attr("access_times", Service, Single),
    attr("per_source", Both, Single),
    attr("cps", Both, Single),
    attr("banner", Both, Single),
    attr("banner_success", Both, Single),
    attr("banner_fail", Both, Single),
    attr("flags", Service, Single),
    attr("v6only", Both, Single),
    attr("backlog", Both, Single),
    attr("listen_unix", Service, Single),
    attr("socket_mode", Both, Single),
    attr("max_load", Both, Single),
    attr("redirect", Service, Single),
    attr("log_type", Both, Single),
    attr("rlimit_data", Service, Single),
    attr("rlimit_rss", Service, Single),
    attr(
        "rlimit_stack",
        Service,
        Ignored(
            "its stack is part of its linear memory, sized when it was built and \
             counted by `rlimit_as`; the engine caps every guest's native stack alike",
        ),
    ),
    attr("rlimit_files", Service, Single),
    attr("deny_time", Service, Single),
    attr(
        "libwrap",
        Service,
        Unsupported(
            "there are no TCP wrappers (hosts.allow / hosts.deny), and ignoring it would \
             let in everyone they keep out; use `only_from` / `no_access`",
        ),
    ),
    attr(
        "mdns",
        Service,
        Ignored("wasinetd announces no service over multicast DNS"),
    ),
    attr("rpc_version", Service, Unsupported(RPC)),
    attr("rpc_number", Service, Unsupported(RPC)),
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
    /// The attribute's name (`interface` is reported as `bind`).
    pub key: &'static str,
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
    let key = if name == "interface" {
        "bind"
    } else {
        attr.name
    };
    if attr.kind == Set {
        let replaces = raw.op == Op::Assign && seen.assigned.insert(key);
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
    if let Some(first) = seen.single.insert(key, raw.line) {
        // Keep pointing at the first line for a third one.
        seen.single.insert(key, first);
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
mod tests {
    use std::path::Path;

    use super::super::Diags;
    use super::*;

    fn raw(name: &str, op: Op, line: u32) -> RawAttr {
        RawAttr {
            name: name.into(),
            op,
            values: vec!["x".into()],
            line,
        }
    }

    /// Screens `lines` in one block; returns what passed and the messages.
    fn screen_all(place: Place, lines: &[RawAttr]) -> (Vec<Checked>, Vec<String>) {
        let mut diags = Diags::default();
        let mut seen = Seen::default();
        let mut report = Report::new(&mut diags, 0, Path::new("t"), None);
        let passed = lines
            .iter()
            .filter_map(|l| screen(l, place, &mut seen, &mut report))
            .collect();
        let config = diags.into_config(Vec::new(), String::new());
        let mut messages: Vec<_> = config
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.line, e.message))
            .collect();
        messages.extend(
            config
                .warnings
                .iter()
                .map(|w| format!("{}: warning: {}", w.line, w.message)),
        );
        (passed, messages)
    }

    #[test]
    fn table_names_are_unique_and_lowercase() {
        let mut names: Vec<_> = TABLE.iter().map(|a| a.name).collect();
        assert!(names.iter().all(|n| {
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        }));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
    }

    #[test]
    fn unknown_names_suggest_the_nearest_attribute() {
        assert_eq!(
            unknown("rlimit_ass"),
            "unknown attribute `rlimit_ass`; did you mean `rlimit_as`?"
        );
        assert_eq!(
            unknown("sever"),
            "unknown attribute `sever`; did you mean `server`?"
        );
        assert_eq!(
            unknown("prot"),
            "unknown attribute `prot`; did you mean `port`?"
        );
        assert_eq!(
            unknown("logonsuccess"),
            "unknown attribute `logonsuccess`; did you mean `log_on_success`?"
        );
        assert_eq!(
            unknown("instance"),
            "unknown attribute `instance`; did you mean `instances`?"
        );
        assert_eq!(unknown("frobnicate"), "unknown attribute `frobnicate`");
        assert_eq!(unknown("xy"), "unknown attribute `xy`");
    }

    #[test]
    fn unsupported_and_ignored_attributes() {
        let lines = [
            raw("libwrap", Op::Assign, 1),
            raw("user", Op::Assign, 2),
            raw("rpc_number", Op::Add, 3),
        ];
        let (passed, messages) = screen_all(Place::Service, &lines);
        assert!(passed.is_empty());
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(
            messages[0].starts_with("1: `libwrap` is not supported: there are no TCP wrappers")
                && messages[0].ends_with("use `only_from` / `no_access`"),
            "{messages:?}"
        );
        assert!(
            messages[1].starts_with("3: `rpc_number` is not supported: ONC RPC services"),
            "{messages:?}"
        );
        assert_eq!(
            messages[2],
            "2: warning: `user` has no meaning for a WebAssembly guest (it runs with no uid); ignored"
        );
    }

    #[test]
    fn single_valued_attributes_take_one_assignment() {
        let lines = [
            raw("port", Op::Assign, 1),
            raw("port", Op::Assign, 2),
            raw("port", Op::Assign, 3),
            raw("server", Op::Add, 4),
            raw("bind", Op::Assign, 5),
            raw("interface", Op::Assign, 6),
        ];
        let (passed, messages) = screen_all(Place::Service, &lines);
        assert_eq!(
            passed.iter().map(|c| c.key).collect::<Vec<_>>(),
            ["port", "bind"]
        );
        assert_eq!(
            messages,
            [
                "2: `port` is set twice in this block (lines 1 and 2); keep one",
                "3: `port` is set twice in this block (lines 1 and 3); keep one",
                "4: `server` takes `=` only (it has a single value), not `+=`",
                "6: `interface` is set twice in this block (lines 5 and 6); keep one",
            ]
        );
    }

    #[test]
    fn only_the_first_assignment_of_a_set_replaces() {
        let lines = [
            raw("passenv", Op::Add, 1),
            raw("passenv", Op::Assign, 2),
            raw("passenv", Op::Assign, 3),
            raw("passenv", Op::Remove, 4),
        ];
        let (passed, messages) = screen_all(Place::Service, &lines);
        assert!(messages.is_empty());
        assert_eq!(
            passed.iter().map(|c| c.replaces).collect::<Vec<_>>(),
            [false, true, false, false]
        );
    }

    #[test]
    fn attributes_in_the_wrong_block() {
        let (_, messages) = screen_all(
            Place::Defaults,
            &[raw("port", Op::Assign, 1), raw("disable", Op::Assign, 2)],
        );
        assert_eq!(
            messages,
            [
                "1: `port` is not allowed in `defaults`; set it in each service",
                "2: `disable` is not allowed in `defaults`; list ids in `disabled = ID...`",
            ]
        );
        let (_, messages) = screen_all(
            Place::Service,
            &[
                raw("disabled", Op::Assign, 1),
                raw("enabled", Op::Assign, 2),
            ],
        );
        assert_eq!(
            messages,
            [
                "1: `disabled` is only allowed in `defaults`; use `disable = yes` in a service",
                "2: `enabled` is only allowed in `defaults`",
            ]
        );
    }
}
