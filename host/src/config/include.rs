//! Reads a config and everything it includes, depth first, into one list of
//! raw blocks in reading order. `includefile FILE` and `includedir DIR` are
//! resolved against the folder of the file that holds the line; a cycle, a
//! nesting deeper than [`MAX_DEPTH`] or an unreadable include is an error at
//! the include line, and the rest still loads.
//!
//! Reading is bounded whatever the files say: each file is read once per
//! load (a file included twice is an error, so includes cannot fan out
//! exponentially), only regular files are read ([`files`](super::files)),
//! each at most [`MAX_FILE`] bytes, and a load reads at most [`MAX_FILES`]
//! files and [`MAX_TOTAL`] bytes in all.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::files;
use super::parse::{self, Item, RawBlock};
use super::{Diags, Report};

/// How deep includes may nest below the top file.
pub(super) const MAX_DEPTH: usize = 16;
/// The largest config file read.
pub const MAX_FILE: u64 = 1 << 20;
/// The most files one load reads, the top file included.
pub const MAX_FILES: usize = 1000;
/// The most bytes one load reads, in all its files.
pub const MAX_TOTAL: u64 = 16 << 20;

/// What a config's files hold: its blocks in reading order (a tenant's
/// service blocks marked with their tenant), its `tenant` blocks, and its
/// digest (see [`Config::digest`](super::Config)).
pub(super) struct Read {
    pub blocks: Vec<RawBlock>,
    pub tenants: Vec<RawBlock>,
    pub digest: String,
}

/// Reads `text` (the file `origin`) and what it includes.
pub(super) fn read_all(text: &str, origin: &Path, diags: &mut Diags) -> Read {
    let top = canonical(origin);
    let mut reader = Reader {
        diags,
        blocks: Vec::new(),
        tenants: Vec::new(),
        tenant: None,
        next_seq: 0,
        stack: vec![top.clone()],
        read: HashSet::from([top]),
        bytes: text.len() as u64,
        digest: Sha256::new(),
    };
    reader.file(text, origin.to_path_buf());
    let digest = reader.digest.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Read {
        blocks: reader.blocks,
        tenants: reader.tenants,
        digest: hex,
    }
}

/// Whether `includedir` reads a file of this name: xinetd skips names that
/// contain a `.` or end in `~` (backups, `.rpmsave`, editors' swap files).
pub(super) fn is_included_name(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    !bytes.contains(&b'.') && !bytes.ends_with(b"~")
}

struct Reader<'d> {
    diags: &'d mut Diags,
    blocks: Vec<RawBlock>,
    tenants: Vec<RawBlock>,
    /// The tenant whose files are being read, if any.
    tenant: Option<String>,
    next_seq: usize,
    /// Canonical paths of the files being read, outermost first.
    stack: Vec<PathBuf>,
    /// Canonical paths of every file read so far.
    read: HashSet<PathBuf>,
    /// Bytes read so far.
    bytes: u64,
    /// Every file read, its path and text, in the order read.
    digest: Sha256,
}

impl Reader<'_> {
    fn file(&mut self, text: &str, path: PathBuf) {
        let seq = self.next_seq;
        self.next_seq += 1;
        // Length-prefixed, so that no two sets of files hash alike.
        for part in [path.as_os_str().as_encoded_bytes(), text.as_bytes()] {
            self.digest.update((part.len() as u64).to_le_bytes());
            self.digest.update(part);
        }
        let parsed = parse::parse(text, path.clone(), seq);
        let tenant = self.tenant.clone();
        let mut report = Report::new(self.diags, seq, &path, None).of(tenant.as_deref());
        for (line, message) in parsed.problems {
            report.error(line, message);
        }
        if let Some(tenant) = &tenant {
            self.tenant_file(parsed.items, tenant, seq, &path);
            return;
        }
        let base = path.parent().unwrap_or(Path::new(""));
        for item in parsed.items {
            match item {
                Item::Block(block) => self.blocks.push(block),
                Item::Tenant(block) => {
                    let line = block.line;
                    let dir = (block.attrs.iter())
                        .find(|a| a.name == "includedir")
                        .and_then(|a| a.values.first().cloned());
                    let name = block.service.clone();
                    self.tenants.push(block);
                    if let (Some(dir), Some(name)) = (dir, name) {
                        self.tenant_dir(&base.join(dir), name, seq, &path, line);
                    }
                }
                Item::IncludeFile { path: target, line } => {
                    self.include(&base.join(target), seq, &path, line);
                }
                Item::IncludeDir { path: dir, line } => {
                    let dir = base.join(dir);
                    match list_dir(&dir) {
                        Ok(files) => {
                            for target in files {
                                self.include(&target, seq, &path, line);
                            }
                        }
                        Err(e) => {
                            let message =
                                format!("cannot read included dir `{}`: {e}", dir.display());
                            Report::new(self.diags, seq, &path, None).error(line, message);
                        }
                    }
                }
            }
        }
    }

    /// The items of a file of `tenant`: its `service` blocks, marked as
    /// the tenant's; anything else is the admin's to write.
    fn tenant_file(&mut self, items: Vec<Item>, tenant: &str, seq: usize, path: &Path) {
        for item in items {
            let (line, what) = match item {
                Item::Block(mut block) if block.service.is_some() => {
                    block.tenant = Some(tenant.to_string());
                    self.blocks.push(block);
                    continue;
                }
                Item::Block(block) => (block.line, "`defaults`"),
                Item::Tenant(block) => (block.line, "`tenant`"),
                Item::IncludeFile { line, .. } => (line, "`includefile`"),
                Item::IncludeDir { line, .. } => (line, "`includedir`"),
            };
            let message = format!(
                "a file of tenant {tenant} may hold `service` blocks only; {what} is the host \
                 admin's"
            );
            Report::new(self.diags, seq, path, None)
                .of(Some(tenant))
                .error(line, message);
        }
    }

    /// Reads the service files of `tenant` in `dir` (its `includedir`,
    /// named at `line` of `from`). The folder and each file may be owned
    /// by the tenant, but written by no one else than their owner (and
    /// root): a file anyone else could write could say anything.
    fn tenant_dir(&mut self, dir: &Path, tenant: String, seq: usize, from: &Path, line: u32) {
        let problem = match fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => Some("it is not a folder".to_string()),
            Ok(meta) => files::writable_by_others(&meta).map(|mode| {
                format!(
                    "it is writable by others than its owner (mode {mode:04o}); `chmod go-w` it"
                )
            }),
            Err(e) => Some(e.to_string()),
        };
        let listed = match problem {
            None => list_dir(dir).map_err(|e| e.to_string()),
            Some(problem) => Err(problem),
        };
        match listed {
            Ok(targets) => {
                let outer = self.tenant.replace(tenant);
                for target in targets {
                    self.include(&target, seq, from, line);
                }
                self.tenant = outer;
            }
            Err(e) => {
                let message = format!(
                    "cannot read the folder of tenant {tenant} `{}`: {e}",
                    dir.display()
                );
                Report::new(self.diags, seq, from, None)
                    .of(Some(&tenant))
                    .error(line, message);
            }
        }
    }

    /// Reads `target`, named at `line` of `from` (load-order number `seq`).
    fn include(&mut self, target: &Path, seq: usize, from: &Path, line: u32) {
        let tenant = self.tenant.clone();
        let mut report = Report::new(self.diags, seq, from, None).of(tenant.as_deref());
        if self.stack.len() > MAX_DEPTH {
            let message = format!(
                "includes nest deeper than {MAX_DEPTH} levels at `{}`",
                target.display()
            );
            report.error(line, message);
            return;
        }
        let key = canonical(target);
        if self.stack.contains(&key) {
            let message = format!(
                "include cycle: `{}` is already being read",
                target.display()
            );
            report.error(line, message);
            return;
        }
        if self.read.contains(&key) {
            let message = format!(
                "`{}` is included more than once; each file is read once",
                target.display()
            );
            report.error(line, message);
            return;
        }
        if self.read.len() >= MAX_FILES {
            let message = format!(
                "cannot include `{}`: the config already has {MAX_FILES} files, the most one \
                 config may have",
                target.display()
            );
            report.error(line, message);
            return;
        }
        let left = MAX_TOTAL.saturating_sub(self.bytes);
        let text = match &tenant {
            Some(_) => files::read_text_owned(target, left.min(MAX_FILE)),
            None => files::read_text(target, left.min(MAX_FILE)),
        };
        match text {
            Ok(text) => {
                self.bytes += text.len() as u64;
                self.read.insert(key.clone());
                self.stack.push(key);
                self.file(&text, target.to_path_buf());
                self.stack.pop();
            }
            Err(files::ReadError::TooLarge(_)) if left < MAX_FILE => {
                let message = format!(
                    "cannot include `{}`: the config's files would pass {} MiB in all, the \
                     most one config may have",
                    target.display(),
                    MAX_TOTAL >> 20
                );
                report.error(line, message);
            }
            Err(e) => {
                let message = format!("cannot read included file `{}`: {e}", target.display());
                report.error(line, message);
            }
        }
    }
}

/// The files `includedir` reads in `dir`, in byte order of their names
/// (at most [`MAX_FILES`]; more is an error).
fn list_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if !is_included_name(&name) {
            continue;
        }
        if names.len() == MAX_FILES {
            return Err(std::io::Error::other(format!(
                "it holds more than {MAX_FILES} files, the most one config may have"
            )));
        }
        // Follows symlinks; an entry that cannot be stat'ed is kept, so
        // reading it reports why.
        if fs::metadata(dir.join(&name)).is_ok_and(|m| !m.is_file()) {
            continue;
        }
        names.push(name);
    }
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    Ok(names.into_iter().map(|name| dir.join(name)).collect())
}

/// The key a file is known by in the include stack.
fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for one test.
    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wasinetd-inc-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn read(path: &Path) -> (Vec<RawBlock>, super::super::Config) {
        let mut diags = Diags::default();
        let text = fs::read_to_string(path).unwrap();
        let read = read_all(&text, path, &mut diags);
        (read.blocks, diags.into_config(Vec::new(), String::new()))
    }

    fn names(blocks: &[RawBlock]) -> Vec<String> {
        blocks.iter().filter_map(|b| b.service.clone()).collect()
    }

    #[test]
    fn the_digest_follows_every_file_read() {
        let dir = scratch("digest");
        fs::create_dir(dir.join("conf.d")).unwrap();
        fs::write(dir.join("top"), "includedir conf.d\n").unwrap();
        fs::write(dir.join("conf.d/a"), "service a {\n}\n").unwrap();
        let digest = || {
            let text = fs::read_to_string(dir.join("top")).unwrap();
            read_all(&text, &dir.join("top"), &mut Diags::default()).digest
        };
        let first = digest();
        assert_eq!(first.len(), 16);
        assert_eq!(digest(), first, "the same files, the same digest");
        // An included file's text, a new file, a renamed one: each shows.
        fs::write(dir.join("conf.d/a"), "service a {\n }\n").unwrap();
        let edited = digest();
        assert_ne!(edited, first);
        fs::write(dir.join("conf.d/b"), "").unwrap();
        let added = digest();
        assert_ne!(added, edited);
        fs::rename(dir.join("conf.d/b"), dir.join("conf.d/c")).unwrap();
        assert_ne!(digest(), added);
    }

    #[test]
    fn includedir_skips_dotted_and_backup_names() {
        let ok = |n: &str| is_included_name(OsStr::new(n));
        assert!(ok("echo") && ok("Echo-2") && ok("a~b"));
        assert!(!ok("echo.rpmsave") && !ok("echo~") && !ok(".hidden") && !ok("echo.conf"));
    }

    #[test]
    fn includedir_reads_regular_files_in_byte_order() {
        let dir = scratch("order");
        fs::create_dir(dir.join("conf.d")).unwrap();
        for name in ["b", "B", "a", "a.bak", "c~", "_z"] {
            fs::write(
                dir.join("conf.d").join(name),
                format!("service {name}\n{{\n}}\n"),
            )
            .unwrap();
        }
        fs::create_dir(dir.join("conf.d/sub")).unwrap();
        fs::write(
            dir.join("top"),
            "service first {\n}\nincludedir conf.d\nservice last {\n}\n",
        )
        .unwrap();
        let (blocks, config) = read(&dir.join("top"));
        assert!(config.errors.is_empty(), "{:?}", config.errors);
        assert_eq!(names(&blocks), ["first", "B", "_z", "a", "b", "last"]);
        assert_eq!(blocks[1].file, dir.join("conf.d/B"));
    }

    #[test]
    fn relative_includes_resolve_against_the_including_file() {
        let dir = scratch("relative");
        fs::create_dir_all(dir.join("x/y")).unwrap();
        fs::write(dir.join("top"), "includefile x/one\n").unwrap();
        fs::write(dir.join("x/one"), "includefile y/two\n").unwrap();
        fs::write(dir.join("x/y/two"), "service two {\n}\n").unwrap();
        let (blocks, config) = read(&dir.join("top"));
        assert!(config.errors.is_empty(), "{:?}", config.errors);
        assert_eq!(blocks[0].file, dir.join("x/y/two"));
    }

    #[test]
    fn include_cycle_is_an_error_at_the_include_line() {
        let dir = scratch("cycle");
        fs::write(dir.join("a"), "service a {\n}\nincludefile b\n").unwrap();
        fs::write(dir.join("b"), "\nincludefile a\nservice b {\n}\n").unwrap();
        let (blocks, config) = read(&dir.join("a"));
        assert_eq!(names(&blocks), ["a", "b"]);
        let errors: Vec<_> = config.errors.iter().map(|e| e.to_string()).collect();
        let a = dir.join("a");
        let expected = format!(
            "{}:2: include cycle: `{}` is already being read",
            dir.join("b").display(),
            a.display()
        );
        assert_eq!(errors, [expected]);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_an_error() {
        let dir = scratch("deep");
        for i in 0..20 {
            fs::write(
                dir.join(format!("f{i}")),
                format!("includefile f{}\n", i + 1),
            )
            .unwrap();
        }
        let (_, config) = read(&dir.join("f0"));
        assert_eq!(config.errors.len(), 1, "{:?}", config.errors);
        let e = &config.errors[0];
        // f0 is the top; f16 is 16 levels down and may not include f17.
        assert_eq!(e.file, dir.join("f16"));
        assert!(
            e.message
                .starts_with("includes nest deeper than 16 levels at")
        );
    }

    #[test]
    fn missing_include_is_an_error_and_the_rest_loads() {
        let dir = scratch("missing");
        fs::write(
            dir.join("top"),
            "includefile nope\nincludedir nodir\nservice a {\n}\n",
        )
        .unwrap();
        let (blocks, config) = read(&dir.join("top"));
        assert_eq!(names(&blocks), ["a"]);
        let lines: Vec<_> = config
            .errors
            .iter()
            .map(|e| (e.line, e.message.clone()))
            .collect();
        assert_eq!(lines[0].0, 1);
        assert!(lines[0].1.starts_with(&format!(
            "cannot read included file `{}`",
            dir.join("nope").display()
        )));
        assert_eq!(lines[1].0, 2);
        assert!(lines[1].1.starts_with("cannot read included dir"));
    }

    #[test]
    fn errors_are_in_file_order_across_includes() {
        let dir = scratch("errorder");
        fs::write(dir.join("top"), "bogus\nincludefile inc\nbogus\n").unwrap();
        fs::write(dir.join("inc"), "bogus\n").unwrap();
        let (_, config) = read(&dir.join("top"));
        let at: Vec<_> = config
            .errors
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e.file.file_name().unwrap().to_string_lossy(),
                    e.line
                )
            })
            .collect();
        assert_eq!(at, ["top:1", "top:3", "inc:1"]);
    }
}
