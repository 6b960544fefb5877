//! The `defaults` block, and the attributes services inherit from it:
//! what each is when nothing is said, and how `=` / `+=` / `-=` combine a
//! line with the value a block started from. Service-only attributes are in
//! `spec`.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use super::admission::{self, Banners, Cps};
use super::attrs::{self, Key, Listing, Place, Seen, Shared};
use super::log_type;
use super::parse::{Op, RawAttr, RawBlock};
use super::{Limits, LogFlags, Report, socket, values};

/// The attributes a `defaults` block sets for every service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Inherited {
    pub log_on_success: LogFlags,
    pub log_on_failure: LogFlags,
    /// `None` until a `log_type` line: stderr.
    pub log_type: Option<super::LogType>,
    pub passenv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub instances: super::Cap,
    pub limits: Limits,
    pub preopen_quota: super::PreopenQuota,
    /// `bind` words; empty when not given (the family of `flags` decides).
    pub bind: Vec<IpAddr>,
    /// `v6only`; `None` when not given.
    pub v6only: Option<bool>,
    pub backlog: u32,
    /// `socket_mode` of `listen_unix` sockets.
    pub socket_mode: u32,
    /// `None` until an `only_from` line: everyone may connect.
    pub only_from: Option<Vec<IpNet>>,
    pub no_access: Vec<IpNet>,
    /// `allow_connect`: where a component guest may connect; empty: nowhere.
    pub allow_connect: Vec<std::net::SocketAddr>,
    pub per_source: super::Cap,
    /// No rate limit unless the config sets one (xinetd's built-in 50 10
    /// pauses busy services nobody asked to limit).
    pub cps: Option<Cps>,
    pub max_load: Option<super::MaxLoad>,
    /// `rlimit_data` and `rlimit_rss`: like `rlimit_as`, they cap the
    /// guest's linear memory (the smallest of the three applies).
    pub rlimit_data: Option<u64>,
    pub rlimit_rss: Option<u64>,
    pub banners: Banners,
}

impl Default for Inherited {
    /// What a service gets when neither it nor `defaults` says otherwise.
    fn default() -> Self {
        Inherited {
            log_on_success: LogFlags {
                host: true,
                pid: true,
                duration: true,
                exit: true,
                attempt: false,
                traffic: false,
            },
            log_on_failure: LogFlags {
                host: true,
                attempt: true,
                ..LogFlags::default()
            },
            log_type: None,
            passenv: Vec::new(),
            env: Vec::new(),
            instances: super::Cap::Unset,
            preopen_quota: super::PreopenQuota::default(),
            limits: Limits::default(),
            bind: Vec::new(),
            v6only: None,
            backlog: super::DEFAULT_BACKLOG,
            socket_mode: super::DEFAULT_SOCKET_MODE,
            only_from: None,
            no_access: Vec::new(),
            allow_connect: Vec::new(),
            per_source: super::Cap::Unset,
            cps: None,
            max_load: None,
            rlimit_data: None,
            rlimit_rss: None,
            banners: Banners::default(),
        }
    }
}

impl Inherited {
    /// Applies a screened line (`key` is its table name) if it is one of the
    /// inherited attributes; `Ok(false)` if it is not. Relative paths join
    /// `dir`, the folder of the line's file.
    pub(super) fn apply(
        &mut self,
        key: Shared,
        raw: &RawAttr,
        replaces: bool,
        dir: &Path,
    ) -> Result<(), String> {
        let (name, words, op) = (raw.name.as_str(), &raw.values[..], raw.op);
        match key {
            Shared::LogOnSuccess => combine_flags(
                &mut self.log_on_success,
                op,
                replaces,
                values::log_flags(name, words)?,
            ),
            Shared::LogOnFailure => combine_flags(
                &mut self.log_on_failure,
                op,
                replaces,
                values::log_flags(name, words)?,
            ),
            Shared::LogType => self.log_type = Some(log_type::log_type(name, words, dir)?),
            Shared::Passenv => {
                let names = values::var_names(name, words, false)?;
                combine(&mut self.passenv, op, replaces, names, |a, b| a == b);
            }
            Shared::Env if op == Op::Remove => {
                let names = values::var_names(name, words, true)?;
                self.env.retain(|(n, _)| !names.contains(n));
            }
            Shared::Env => combine(
                &mut self.env,
                op,
                replaces,
                values::env_pairs(words)?,
                |a, b| a.0 == b.0,
            ),
            Shared::Instances => self.instances = values::instances(name, words)?,
            Shared::RlimitAs => self.limits.memory = values::size(name, words)?,
            Shared::RlimitCpu => self.limits.cpu = values::duration(name, words)?,
            Shared::RuntimeMax => self.limits.runtime = values::duration(name, words)?,
            Shared::IdleTimeout => self.limits.idle = values::duration(name, words)?,
            Shared::PreopenQuota => self.preopen_quota = values::preopen_quota(name, words)?,
            Shared::RlimitData => self.rlimit_data = Some(values::size(name, words)?),
            Shared::RlimitRss => self.rlimit_rss = Some(values::size(name, words)?),
            Shared::RlimitFiles => self.limits.files = values::files(name, words)?,
            Shared::MaxLoad => self.max_load = Some(values::max_load(name, words)?),
            Shared::Bind => self.bind = socket::addresses(name, words)?,
            Shared::V6only => self.v6only = Some(values::yes_no(name, words)?),
            Shared::Backlog => self.backlog = socket::backlog(name, words)?,
            Shared::SocketMode => self.socket_mode = socket::mode(name, words)?,
            Shared::OnlyFrom => {
                let nets = admission::addresses(name, words)?;
                if op == Op::Remove && self.only_from.is_none() {
                    return Err(
                        "`only_from -=` has nothing to remove: no `only_from` is set, so \
                         everyone may connect; deny with `no_access`"
                            .into(),
                    );
                }
                let list = self.only_from.get_or_insert_with(Vec::new);
                combine(list, op, replaces, nets, |a, b| a == b);
            }
            Shared::AllowConnect => combine(
                &mut self.allow_connect,
                op,
                replaces,
                super::egress::allow_connect(name, words)?,
                |a, b| a == b,
            ),
            Shared::NoAccess => combine(
                &mut self.no_access,
                op,
                replaces,
                admission::addresses(name, words)?,
                |a, b| a == b,
            ),
            Shared::PerSource => self.per_source = values::instances(name, words)?,
            Shared::Cps => self.cps = admission::cps(name, words)?,
            Shared::Banner => self.banners.banner = Some(admission::banner(name, words, dir)?),
            Shared::BannerSuccess => {
                self.banners.success = Some(admission::banner(name, words, dir)?)
            }
            Shared::BannerFail => self.banners.fail = Some(admission::banner(name, words, dir)?),
        }
        Ok(())
    }
}

impl Inherited {
    /// The guest's budgets: a guest's data, its heap and what is resident
    /// of it all live in its one linear memory, so `rlimit_data` and
    /// `rlimit_rss` cap it as `rlimit_as` does, and the smallest applies.
    pub(super) fn limits(&self) -> Limits {
        let memory = [self.rlimit_data, self.rlimit_rss]
            .into_iter()
            .flatten()
            .fold(self.limits.memory, u64::min);
        Limits {
            memory,
            ..self.limits
        }
    }
}

/// Applies one line of a set-valued attribute to `current`: the block's first
/// `=` (`replaces`) drops what was inherited, `=` and `+=` add (an item that
/// is `same` as an earlier one replaces it, in last place), `-=` removes.
pub(super) fn combine<T>(
    current: &mut Vec<T>,
    op: Op,
    replaces: bool,
    items: Vec<T>,
    same: impl Fn(&T, &T) -> bool,
) {
    match op {
        Op::Remove => current.retain(|c| !items.iter().any(|i| same(c, i))),
        Op::Assign | Op::Add => {
            if replaces {
                current.clear();
            }
            for item in items {
                current.retain(|c| !same(c, &item));
                current.push(item);
            }
        }
    }
}

fn combine_flags(current: &mut LogFlags, op: Op, replaces: bool, flags: LogFlags) {
    *current = match op {
        Op::Assign if replaces => flags,
        Op::Assign | Op::Add => current.union(flags),
        Op::Remove => current.minus(flags),
    };
}

impl LogFlags {
    /// The flags set in either.
    fn union(self, o: LogFlags) -> LogFlags {
        LogFlags {
            host: self.host || o.host,
            pid: self.pid || o.pid,
            duration: self.duration || o.duration,
            exit: self.exit || o.exit,
            attempt: self.attempt || o.attempt,
            traffic: self.traffic || o.traffic,
        }
    }

    /// The flags of `self` not set in `o`.
    fn minus(self, o: LogFlags) -> LogFlags {
        LogFlags {
            host: self.host && !o.host,
            pid: self.pid && !o.pid,
            duration: self.duration && !o.duration,
            exit: self.exit && !o.exit,
            attempt: self.attempt && !o.attempt,
            traffic: self.traffic && !o.traffic,
        }
    }
}

/// The one `defaults` block, applied over the built-in defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Defaults {
    pub inherited: Inherited,
    /// `disabled`: ids left out.
    pub disabled: Vec<String>,
    /// `enabled`: when given, the only ids turned on.
    pub enabled: Option<Vec<String>>,
}

impl Defaults {
    /// Reads a `defaults` block; a line with an error is skipped, the rest
    /// still applies.
    pub(super) fn from_block(block: &RawBlock, report: &mut Report) -> Defaults {
        let mut defaults = Defaults::default();
        for (line, message) in &block.problems {
            report.error(*line, message.clone());
        }
        let dir = block.file.parent().unwrap_or(Path::new(""));
        let mut seen = Seen::default();
        for raw in &block.attrs {
            let Some(checked) = attrs::screen(raw, Place::Defaults, &mut seen, report) else {
                continue;
            };
            let ids = || raw.values.clone();
            let result = match checked.key {
                Key::Listing(Listing::Disabled) => {
                    combine(
                        &mut defaults.disabled,
                        raw.op,
                        checked.replaces,
                        ids(),
                        |a, b| a == b,
                    );
                    Ok(())
                }
                // `enabled -=` before any `enabled =` leaves every id on.
                Key::Listing(Listing::Enabled)
                    if raw.op == Op::Remove && defaults.enabled.is_none() =>
                {
                    Ok(())
                }
                Key::Listing(Listing::Enabled) => {
                    let enabled = defaults.enabled.get_or_insert_with(Vec::new);
                    combine(enabled, raw.op, checked.replaces, ids(), |a, b| a == b);
                    Ok(())
                }
                Key::Shared(key) => defaults.inherited.apply(key, raw, checked.replaces, dir),
                // `screen` lets neither through in `defaults`.
                Key::Own(_) | Key::Refused => Ok(()),
            };
            if let Err(message) = result {
                report.error(raw.line, message);
            }
        }
        defaults
    }

    /// Whether `disabled` or `enabled` turns the service `id` off.
    pub(super) fn turns_off(&self, id: &str) -> bool {
        self.disabled.iter().any(|d| d == id)
            || self
                .enabled
                .as_ref()
                .is_some_and(|e| !e.iter().any(|x| x == id))
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::super::{Diags, parse};
    use super::*;

    /// Reads `body` as a `defaults` block; returns it and its messages.
    fn defaults(body: &str) -> (Defaults, Vec<String>) {
        let text = format!("defaults\n{{\n{body}\n}}\n");
        let parsed = parse::parse(&text, PathBuf::from("t"), 0);
        let parse::Item::Block(block) = &parsed.items[0] else {
            panic!("no block")
        };
        let mut diags = Diags::default();
        let mut report = Report::new(&mut diags, 0, Path::new("t"), None);
        let d = Defaults::from_block(block, &mut report);
        let config = diags.into_config(Vec::new(), String::new());
        (
            d,
            config
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.line, e.message))
                .collect(),
        )
    }

    #[test]
    fn built_in_defaults() {
        let (d, errors) = defaults("");
        assert!(errors.is_empty());
        let i = d.inherited;
        assert_eq!(
            i.limits,
            Limits {
                memory: 128 << 20,
                cpu: Some(Duration::from_secs(10)),
                runtime: Some(Duration::from_secs(60)),
                files: None,
                idle: Some(Duration::from_secs(30)),
            }
        );
        assert!(i.bind.is_empty());
        assert_eq!((i.v6only, i.backlog), (None, 4096));
        assert_eq!(i.instances, super::super::Cap::Unset);
        assert!(
            i.log_on_success.host
                && i.log_on_success.pid
                && i.log_on_success.duration
                && i.log_on_success.exit
        );
        assert!(!i.log_on_success.attempt);
        assert_eq!(
            i.log_on_failure,
            LogFlags {
                host: true,
                attempt: true,
                ..LogFlags::default()
            }
        );
    }

    #[test]
    fn defaults_sets_accumulate_over_lines() {
        let (d, errors) = defaults(
            "passenv = PATH\npassenv = HOME TZ\npassenv -= HOME\nenv = A=1 B=2\nenv += A=3\nenv -= B",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(d.inherited.passenv, ["PATH", "TZ"]);
        assert_eq!(d.inherited.env, [("A".to_string(), "3".to_string())]);
    }

    #[test]
    fn first_assignment_replaces_the_built_in_flags() {
        let (d, _) = defaults(
            "log_on_success = HOST\nlog_on_success = PID\nlog_on_failure += PID\nlog_on_failure -= ATTEMPT",
        );
        assert_eq!(
            d.inherited.log_on_success,
            LogFlags {
                host: true,
                pid: true,
                ..LogFlags::default()
            }
        );
        assert_eq!(
            d.inherited.log_on_failure,
            LogFlags {
                host: true,
                pid: true,
                ..LogFlags::default()
            }
        );
    }

    #[test]
    fn single_values_and_errors() {
        let (d, errors) = defaults(
            "instances = 30\nrlimit_as = 1G\nrlimit_cpu = 500ms\nruntime_max = infinity\ninterface = ::1\nrlimit_as = 2G\nport = 80\nrlimit_cpu += 1s",
        );
        assert_eq!(d.inherited.instances, super::super::Cap::At(30));
        assert_eq!(d.inherited.limits.memory, 1 << 30);
        assert_eq!(d.inherited.limits.cpu, Some(Duration::from_millis(500)));
        assert_eq!(d.inherited.limits.runtime, None);
        assert_eq!(d.inherited.bind, ["::1".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            errors,
            [
                "8: `rlimit_as` is set twice in this block (lines 4 and 8); keep one",
                "9: `port` is not allowed in `defaults`; set it in each service",
                "10: `rlimit_cpu` takes `=` only (it has a single value), not `+=`",
            ]
        );
    }

    #[test]
    fn disabled_and_enabled_lists() {
        let (d, _) = defaults("disabled = a b\ndisabled = c");
        assert!(d.turns_off("a") && d.turns_off("c") && !d.turns_off("d"));
        let (d, _) = defaults("enabled = a\nenabled += b\nenabled -= a");
        assert!(d.turns_off("a") && !d.turns_off("b") && d.turns_off("c"));
        let (d, _) = defaults("enabled -= a");
        assert!(!d.turns_off("a") && !d.turns_off("b"));
    }

    #[test]
    fn combine_keeps_the_last_of_the_same() {
        let mut v = vec![("A", 1), ("B", 2)];
        combine(&mut v, Op::Add, false, vec![("A", 3)], |a, b| a.0 == b.0);
        assert_eq!(v, [("B", 2), ("A", 3)]);
        combine(&mut v, Op::Assign, true, vec![("C", 4)], |a, b| a.0 == b.0);
        assert_eq!(v, [("C", 4)]);
        combine(&mut v, Op::Assign, false, vec![("D", 5)], |a, b| a.0 == b.0);
        assert_eq!(v, [("C", 4), ("D", 5)]);
    }
}
