//! `tenant NAME { ... }`: a customer's share of the daemon, set by the
//! host's admin. The tenant's own service files live in its `includedir`;
//! what they may ask for is bounded by the block (`policy` checks each
//! service against it at load), and what its running guests may use
//! together (`instances`, `memory`, `cpu_share`) is enforced while they
//! run by the connection and sandbox layers.
//!
//! A `tenant` block is the admin's: it may stand in the main config or a
//! file the admin includes, never in a tenant's own files (`include` keeps
//! those to `service` blocks). xinetd has no such block; its attributes
//! reuse the words of the service attributes they bound.

mod policy;

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) use policy::police;

use super::parse::{Op, RawAttr, RawBlock};
use super::{LogType, Report, egress, log_type, socket, values};

/// A validated `tenant` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSpec {
    pub name: String,
    /// Where the block is.
    pub file: PathBuf,
    pub line: u32,
    /// The folder of its service files, as written (joined to the block's
    /// folder when relative).
    pub includedir: Option<PathBuf>,
    /// The ports its services may bind, TCP and UDP; empty: none.
    pub ports: Vec<RangeInclusive<u16>>,
    /// The addresses its services may bind; `None`: any.
    pub bind: Option<Vec<IpAddr>>,
    /// Where its Unix sockets may live (resolved); `None`: nowhere.
    pub listen_unix_dir: Option<PathBuf>,
    /// What every preopen (and `server`) of its services lies inside
    /// (resolved); `None`: no preopen.
    pub preopen_root: Option<PathBuf>,
    /// The most its services may list in `allow_connect` (and `redirect` to).
    pub allow_connect: Vec<SocketAddr>,
    /// Its guests running at once, all services together.
    pub instances: Option<u32>,
    /// Its live guests' linear memory, summed, in bytes.
    pub memory: Option<u64>,
    /// Its weight when busy guests compete for CPU.
    pub cpu_share: u32,
    /// Ceilings of its services' own limits.
    pub rlimit_as: Option<u64>,
    pub rlimit_cpu: Option<Duration>,
    pub runtime_max: Option<Duration>,
    /// Where its services' connection lines go.
    pub log_type: Option<LogType>,
}

/// Every attribute a `tenant` block takes, for the error that lists them.
const ATTRIBUTES: [&str; 13] = [
    "includedir",
    "ports",
    "bind",
    "listen_unix_dir",
    "preopen_root",
    "allow_connect",
    "instances",
    "memory",
    "cpu_share",
    "rlimit_as",
    "rlimit_cpu",
    "runtime_max",
    "log_type",
];

impl TenantSpec {
    /// Reads a `tenant` block; `None` when it has an error (its services
    /// are then not loaded: a tenant must not run unbounded because its
    /// bounds did not parse).
    pub(super) fn from_block(block: &RawBlock, report: &mut Report) -> Option<TenantSpec> {
        let name = block.service.clone()?;
        for (line, message) in &block.problems {
            report.error(*line, message.clone());
        }
        let dir = block.file.parent().unwrap_or(Path::new(""));
        let mut spec = TenantSpec {
            name,
            file: block.file.clone(),
            line: block.line,
            includedir: None,
            ports: Vec::new(),
            bind: None,
            listen_unix_dir: None,
            preopen_root: None,
            allow_connect: Vec::new(),
            instances: None,
            memory: None,
            cpu_share: 1,
            rlimit_as: None,
            rlimit_cpu: None,
            runtime_max: None,
            log_type: None,
        };
        let mut seen: Vec<(&str, u32)> = Vec::new();
        let before = report.errors;
        for raw in &block.attrs {
            let name = raw.name.as_str();
            if !ATTRIBUTES.contains(&name) {
                report.error(
                    raw.line,
                    format!(
                        "`{name}` is not a `tenant` attribute; a tenant takes {}",
                        ATTRIBUTES.map(|a| format!("`{a}`")).join(", ")
                    ),
                );
                continue;
            }
            if raw.op != Op::Assign {
                report.error(
                    raw.line,
                    format!(
                        "a `tenant` attribute is set with `=`, not `{}`",
                        raw.op.as_str()
                    ),
                );
                continue;
            }
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                report.error(
                    raw.line,
                    format!(
                        "`{name}` is set twice in this block (lines {first} and {}); keep one",
                        raw.line
                    ),
                );
                continue;
            }
            seen.push((name, raw.line));
            if let Err(message) = spec.apply(raw, dir) {
                report.error(raw.line, message);
            }
        }
        if spec.includedir.is_none() {
            report.error(
                block.line,
                format!(
                    "`tenant {}` has no `includedir`: give the folder of its service files",
                    spec.name
                ),
            );
        }
        (report.errors == before).then_some(spec)
    }

    fn apply(&mut self, raw: &RawAttr, dir: &Path) -> Result<(), String> {
        let (name, words) = (raw.name.as_str(), &raw.values[..]);
        match name {
            "includedir" => {
                let word = values::one(name, "a folder", words)?;
                self.includedir = Some(dir.join(word));
            }
            "ports" => self.ports = ports(name, words)?,
            "bind" => self.bind = Some(socket::addresses(name, words)?),
            "listen_unix_dir" => self.listen_unix_dir = Some(folder(name, words, dir)?),
            "preopen_root" => self.preopen_root = Some(folder(name, words, dir)?),
            "allow_connect" => self.allow_connect = egress::allow_connect(name, words)?,
            "instances" => {
                self.instances = match values::instances(name, words)? {
                    super::Cap::At(n) => Some(n),
                    _ => None,
                }
            }
            "memory" => self.memory = Some(total(name, words)?),
            "cpu_share" => {
                let word = values::one(name, "a weight from 1 to 1000", words)?;
                self.cpu_share = match word.parse::<u32>() {
                    Ok(n @ 1..=1000) => n,
                    _ => {
                        return Err(format!(
                            "`{name}` takes a weight from 1 to 1000, not `{word}`"
                        ));
                    }
                };
            }
            "rlimit_as" => self.rlimit_as = Some(values::size(name, words)?),
            "rlimit_cpu" => self.rlimit_cpu = values::duration(name, words)?,
            "runtime_max" => self.runtime_max = values::duration(name, words)?,
            "log_type" => self.log_type = Some(log_type::log_type(name, words, dir)?),
            _ => unreachable!("checked against ATTRIBUTES"),
        }
        Ok(())
    }

    /// `ports` as written: `10000-10099 10200`.
    pub fn ports_text(&self) -> String {
        let words: Vec<String> = (self.ports.iter())
            .map(|r| match r.start() == r.end() {
                true => r.start().to_string(),
                false => format!("{}-{}", r.start(), r.end()),
            })
            .collect();
        words.join(" ")
    }
}

/// `ports = 10000-10099 10200`: ranges and single ports.
fn ports(name: &str, words: &[String]) -> Result<Vec<RangeInclusive<u16>>, String> {
    let what = "ports and ranges like 10000-10099";
    if words.is_empty() {
        return Err(format!("`{name}` takes {what}, but has no value"));
    }
    let port = |w: &str| w.parse::<u16>().ok().filter(|p| *p > 0);
    let mut ranges = Vec::new();
    for word in words {
        let range = match word.split_once('-') {
            Some((lo, hi)) => port(lo).zip(port(hi)).filter(|(lo, hi)| lo <= hi),
            None => port(word).map(|p| (p, p)),
        };
        let Some((lo, hi)) = range else {
            return Err(format!(
                "`{name}` takes {what} (from 1 to 65535), not `{word}`"
            ));
        };
        ranges.push(lo..=hi);
    }
    Ok(ranges)
}

/// A summed memory budget: a size like 2G (tenants may pass wasm32's 4 GiB
/// together).
fn total(name: &str, words: &[String]) -> Result<u64, String> {
    let word = values::one(name, "a size like 2G", words)?;
    match values::byte_count(word) {
        Some(bytes) if bytes >= super::MIN_MEMORY => Ok(bytes),
        _ => Err(format!(
            "`{name}` takes a size like 2G (at least 64K), not `{word}`"
        )),
    }
}

/// A folder that exists now, resolved (`..` and symlinks), so that what
/// lies inside it can be told by its resolved path.
fn folder(name: &str, words: &[String], dir: &Path) -> Result<PathBuf, String> {
    let word = values::one(name, "a folder", words)?;
    let path = dir.join(word);
    match std::fs::canonicalize(&path) {
        Ok(resolved) if resolved.is_dir() => Ok(resolved),
        Ok(_) => Err(format!("`{name}`: `{}` is not a folder", path.display())),
        Err(e) => Err(format!(
            "`{name}`: cannot resolve `{}`: {e}",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse_env;

    fn errors(text: &str) -> Vec<String> {
        let config = parse_env(text, "", &[]);
        config
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.line, e.message))
            .collect()
    }

    #[test]
    fn a_tenant_block_says_what_is_wrong_with_it() {
        let text = "tenant acme\n{\n ports = 10-5 0\n cpu_share = 0\n memory = lots\n \
                    rlimit_ass = 1M\n instances += 3\n bind = 1.2.3.4\n bind = ::1\n}\n\
                    tenant\n{\n}\n";
        assert_eq!(
            errors(text),
            [
                "1: `tenant acme` has no `includedir`: give the folder of its service files",
                "3: `ports` takes ports and ranges like 10000-10099 (from 1 to 65535), not `10-5`",
                "4: `cpu_share` takes a weight from 1 to 1000, not `0`",
                "5: `memory` takes a size like 2G (at least 64K), not `lots`",
                "6: `rlimit_ass` is not a `tenant` attribute; a tenant takes `includedir`, \
                 `ports`, `bind`, `listen_unix_dir`, `preopen_root`, `allow_connect`, \
                 `instances`, `memory`, `cpu_share`, `rlimit_as`, `rlimit_cpu`, \
                 `runtime_max`, `log_type`",
                "7: a `tenant` attribute is set with `=`, not `+=`",
                "9: `bind` is set twice in this block (lines 8 and 9); keep one",
                "11: `tenant` needs a name, like `tenant acme`",
            ]
        );
    }

    #[test]
    fn a_valid_tenant_block_reads_whole() {
        let dir = std::env::temp_dir();
        let text = format!(
            "tenant acme {{\n includedir = acme.d\n ports = 10000-10099 10200\n \
             preopen_root = {}\n memory = 2G\n cpu_share = 3\n instances = 200\n \
             rlimit_cpu = UNLIMITED\n}}\n",
            dir.display()
        );
        let config = parse_env(&text, "", &[]);
        // The folder does not exist: an error of the tenant's, not a parse error.
        assert_eq!(config.tenants.len(), 1, "{:?}", config.errors);
        let acme = &config.tenants[0];
        assert_eq!(acme.ports_text(), "10000-10099 10200");
        assert_eq!(acme.memory, Some(2 << 30));
        assert_eq!((acme.cpu_share, acme.instances), (3, Some(200)));
        assert_eq!(acme.rlimit_cpu, None);
        assert_eq!(
            acme.preopen_root.as_deref(),
            Some(&*dir.canonicalize().unwrap())
        );
        assert_eq!(config.broken_tenants, ["acme"]);
    }
}
