//! Port lookup by service name in a services database (`/etc/services`),
//! read at most once per load and only if a service needs it. The format is
//! `name port/protocol aliases...`, `#` to the end of a line is a comment;
//! `tcp` entries serve stream services and `udp` entries dgram ones; a name
//! matches an entry's name or aliases.

use std::path::Path;

/// A services database, read on first use.
pub(super) struct ServicesDb<'p> {
    path: &'p Path,
    /// `(names, port, udp)` of every tcp and udp entry; `None` until first
    /// read. An unreadable file reads as empty, so every lookup misses and
    /// says where it looked.
    entries: Option<Vec<(Vec<String>, u16, bool)>>,
}

impl<'p> ServicesDb<'p> {
    pub(super) fn new(path: &'p Path) -> Self {
        ServicesDb {
            path,
            entries: None,
        }
    }

    pub(super) fn path(&self) -> &Path {
        self.path
    }

    /// The tcp (or, if `udp`, the udp) port listed for `name`, if any (the
    /// first entry wins).
    pub(super) fn port(&mut self, name: &str, udp: bool) -> Option<u16> {
        let path = self.path;
        let entries = self.entries.get_or_insert_with(|| {
            std::fs::read_to_string(path)
                .map(|t| parse(&t))
                .unwrap_or_default()
        });
        entries
            .iter()
            .find(|(names, _, u)| *u == udp && names.iter().any(|n| n == name))
            .map(|(_, port, _)| *port)
    }
}

fn parse(text: &str) -> Vec<(Vec<String>, u16, bool)> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let (Some(name), Some(port_proto)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((port, proto)) = port_proto.split_once('/') else {
            continue;
        };
        let udp = match proto {
            "tcp" => false,
            "udp" => true,
            _ => continue,
        };
        let Ok(port) = port.parse() else {
            continue;
        };
        let names = std::iter::once(name)
            .chain(words)
            .map(str::to_string)
            .collect();
        entries.push((names, port, udp));
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# comment
echo\t\t7/tcp
echo\t\t7/udp
http\t\t80/tcp\t\twww\t\t# WorldWideWeb HTTP
bogus\t\tx/tcp
daytime 13/udp
";

    #[test]
    fn tcp_entries_by_name_and_alias() {
        let entries = parse(SAMPLE);
        assert_eq!(entries.len(), 4);
        let find = |n: &str| {
            entries
                .iter()
                .find(|(names, _, udp)| !udp && names.iter().any(|x| x == n))
                .map(|e| e.1)
        };
        assert_eq!(find("echo"), Some(7));
        assert_eq!(find("www"), Some(80));
        assert_eq!(find("daytime"), None);
        assert_eq!(find("WorldWideWeb"), None);
    }

    #[test]
    fn udp_entries_for_dgram_services() {
        let path = std::env::temp_dir().join(format!("wasinetd-services-{}", std::process::id()));
        std::fs::write(&path, SAMPLE).unwrap();
        let mut db = ServicesDb::new(&path);
        assert_eq!(db.port("daytime", true), Some(13));
        assert_eq!(db.port("daytime", false), None);
        assert_eq!(db.port("echo", true), Some(7));
        assert_eq!(db.port("http", true), None);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn missing_file_reads_as_empty() {
        let mut db = ServicesDb::new(Path::new("/nonexistent/services"));
        assert_eq!(db.port("echo", false), None);
        assert_eq!(db.path(), Path::new("/nonexistent/services"));
    }
}
