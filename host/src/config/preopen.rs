//! `preopen = HOSTDIR:GUESTDIR[:ro|:rw|:rw+symlinks]...`: the host
//! directories a guest sees (`rw+symlinks`: writable, and the guest may
//! create symlinks in it, which are refused otherwise). Every word of a `=` / `+=` line adds one (`-=` removes by guest
//! path); a relative HOSTDIR is joined to the config file's folder and must
//! be a directory at load; GUESTDIR must be absolute and appear once.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use super::Preopen;
use super::parse::{Op, RawAttr};

/// The preopens of one service block, each with the line that added it.
#[derive(Debug, Default)]
pub(super) struct Preopens {
    list: Vec<(Preopen, u32)>,
}

impl Preopens {
    /// Applies one `preopen` line of a file in `dir`; `replaces` is the
    /// block's first `=`.
    pub(super) fn apply(
        &mut self,
        raw: &RawAttr,
        replaces: bool,
        dir: &Path,
    ) -> Result<(), String> {
        if raw.op == Op::Remove {
            let mut guests = Vec::new();
            for word in &raw.values {
                let guest = if word.contains(':') {
                    split(word)?.1
                } else {
                    word.clone()
                };
                guests.push(guest);
            }
            self.list.retain(|(p, _)| !guests.contains(&p.guest));
            return Ok(());
        }
        if replaces {
            self.list.clear();
        }
        for word in &raw.values {
            let preopen = parse(word, dir)?;
            if let Some((_, line)) = self.list.iter().find(|(p, _)| p.guest == preopen.guest) {
                return Err(format!(
                    "`preopen` maps guest dir `{}` twice (also at line {line})",
                    preopen.guest
                ));
            }
            self.list.push((preopen, raw.line));
        }
        Ok(())
    }

    pub(super) fn into_vec(self) -> Vec<Preopen> {
        self.list.into_iter().map(|(p, _)| p).collect()
    }
}

/// One `HOSTDIR:GUESTDIR[:ro|:rw|:rw+symlinks]` word on its own (a
/// command-line flag), HOSTDIR relative to `dir` and checked.
pub(super) fn single(word: &str, dir: &Path) -> Result<Preopen, String> {
    parse(word, dir)
}

/// One word -> its preopen, HOSTDIR joined to `dir` and checked.
fn parse(word: &str, dir: &Path) -> Result<Preopen, String> {
    let (host, guest, mode) = split(word)?;
    let (writable, symlinks) = mode;
    let host = dir.join(host);
    check_dir(&host)?;
    Ok(Preopen {
        host,
        guest,
        writable,
        symlinks,
        beneath: None,
    })
}

/// One word -> (host, guest, (writable, symlinks)).
fn split(word: &str) -> Result<(String, String, (bool, bool)), String> {
    let bad = || format!("`preopen` takes HOSTDIR:GUESTDIR[:ro|:rw|:rw+symlinks], not `{word}`");
    let parts: Vec<&str> = word.split(':').collect();
    let (host, guest, mode) = match parts[..] {
        [host, guest] => (host, guest, "ro"),
        [host, guest, mode] => (host, guest, mode),
        _ => return Err(bad()),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(bad());
    }
    if !guest.starts_with('/') {
        return Err(format!(
            "`preopen` guest dir `{guest}` must be absolute, like `/{guest}`"
        ));
    }
    let mode = match mode.to_ascii_lowercase().as_str() {
        "ro" => (false, false),
        "rw" => (true, false),
        "rw+symlinks" => (true, true),
        _ => {
            return Err(format!(
                "`preopen` mode is `ro`, `rw` or `rw+symlinks`, not `{mode}`"
            ));
        }
    };
    Ok((host.to_string(), guest.to_string(), mode))
}

/// Whether `host` is a directory now.
fn check_dir(host: &Path) -> Result<(), String> {
    match fs::metadata(host) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "`preopen` host dir `{}` is not a directory",
            host.display()
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(format!(
            "`preopen` host dir `{}` does not exist",
            host.display()
        )),
        Err(e) => Err(format!(
            "cannot check `preopen` host dir `{}`: {e}",
            host.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn line(op: Op, words: &str, line: u32) -> RawAttr {
        RawAttr {
            name: "preopen".into(),
            op,
            values: words.split_whitespace().map(str::to_string).collect(),
            line,
        }
    }

    /// A directory holding `data/` (a directory) and `file`.
    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wasinetd-preopen-{}", std::process::id()));
        fs::create_dir_all(dir.join("data")).unwrap();
        fs::write(dir.join("file"), "").unwrap();
        dir
    }

    #[test]
    fn words() {
        assert_eq!(
            split("data:/data"),
            Ok(("data".into(), "/data".into(), (false, false)))
        );
        assert_eq!(
            split("/srv/x:/x:RW"),
            Ok(("/srv/x".into(), "/x".into(), (true, false)))
        );
        assert_eq!(
            split("/srv/x:/x:rw+symlinks"),
            Ok(("/srv/x".into(), "/x".into(), (true, true)))
        );
        assert_eq!(
            split("data:data").unwrap_err(),
            "`preopen` guest dir `data` must be absolute, like `/data`"
        );
        assert_eq!(
            split("a:/b:rx").unwrap_err(),
            "`preopen` mode is `ro`, `rw` or `rw+symlinks`, not `rx`"
        );
        assert_eq!(
            split("data").unwrap_err(),
            "`preopen` takes HOSTDIR:GUESTDIR[:ro|:rw|:rw+symlinks], not `data`"
        );
        assert!(split(":/x").is_err() && split("a:/b:ro:x").is_err());
    }

    #[test]
    fn lines_add_replace_and_remove() {
        let dir = scratch();
        let mut p = Preopens::default();
        p.apply(&line(Op::Add, "data:/old", 1), false, &dir)
            .unwrap();
        p.apply(&line(Op::Assign, "data:/a", 2), true, &dir)
            .unwrap();
        p.apply(&line(Op::Assign, "data:/b:rw /:/c", 3), false, &dir)
            .unwrap();
        p.apply(&line(Op::Remove, "/c x:/a", 4), false, &dir)
            .unwrap();
        let expected = Preopen {
            host: dir.join("data"),
            guest: "/b".into(),
            writable: true,
            symlinks: false,
            beneath: None,
        };
        assert_eq!(p.into_vec(), [expected]);
    }

    #[test]
    fn host_dirs_are_checked_and_guest_dirs_unique() {
        let dir = scratch();
        let d = dir.display();
        let mut p = Preopens::default();
        let mut add = |words: &str, n: u32| p.apply(&line(Op::Add, words, n), false, &dir);
        assert_eq!(
            add("nope:/a", 1).unwrap_err(),
            format!("`preopen` host dir `{d}/nope` does not exist")
        );
        assert_eq!(
            add("file:/a", 2).unwrap_err(),
            format!("`preopen` host dir `{d}/file` is not a directory")
        );
        assert_eq!(add("data:/d", 3), Ok(()));
        assert_eq!(
            add("/:/d", 4).unwrap_err(),
            "`preopen` maps guest dir `/d` twice (also at line 3)"
        );
    }
}
