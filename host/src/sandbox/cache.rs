//! The compiled-code cache: each guest's native code on disk, so that a
//! restart maps it instead of compiling again.
//!
//! An artefact is named `KEY.DIGEST.cwasm`. KEY is a SHA-256 over the
//! guest's bytes and the engine's compatibility hash (wasmtime version,
//! compiler flags, the CPU features it targets, tunables): a changed guest
//! or engine misses and is compiled afresh, never served stale. DIGEST is
//! the start of the SHA-256 of the artefact itself, checked before every
//! use, so a damaged file (torn, truncated, bit rot) is never mapped: it is
//! logged, deleted and compiled again, as is one wasmtime refuses. Writes
//! go to a temporary file renamed into place, so a crash never leaves a
//! torn artefact under a valid name. A hit maps the file, so the guest's
//! copy-on-write memory images come straight from it; that is `unsafe` (a
//! forged artefact is arbitrary native code), so nothing in the cache is
//! trusted by its path alone:
//! - the directory is used only if owned by the daemon's user and writable
//!   by no one else, and every folder above it is owned by root or that
//!   user and writable by no one else (or sticky, as `/tmp`, with the next
//!   folder down owned by root or that user): nobody else can rename it
//!   away or put a file in it;
//! - it is held open, and every file in it is reached through that
//!   descriptor (`/proc/self/fd/N/NAME`), so a folder swapped in at its path
//!   later is never read; before each load the path is checked to still
//!   name the vetted folder, else the cache is vetted afresh;
//! - an artefact is written 0600, and is mapped only if it is a regular
//!   file owned by the daemon's user and writable by no one else: any other
//!   is named in the log, deleted and compiled again.
//!
//! Every hit refreshes the artefact's mtime, and
//! [`Cache::prune`] removes those unused for [`MAX_AGE`], which keeps the
//! cache bounded by the guests of the last month. Which guest to compile and
//! how to link it is the sandbox's business.

use std::collections::HashMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::Module;
use wasmtime::component::Component;

/// Artefacts not used for this long are removed by [`Cache::prune`].
pub const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Temporary files older than this were left by a crash, not a writer.
const STALE_TEMP: Duration = Duration::from_secs(60 * 60);
const EXT: &str = "cwasm";
/// Bumped when the key or the file layout changes.
const KEY_VERSION: &[u8] = b"wasinetd-cache-v1\0";

/// Where compiled code is kept, as the command line chose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CacheSetting {
    /// Compile in memory every time (`--no-cache`).
    #[default]
    Off,
    /// The default place: `$CACHE_DIRECTORY` or `$STATE_DIRECTORY`
    /// (systemd), else `/var/cache/wasinetd` for root if it can be created,
    /// else `$XDG_CACHE_HOME/wasinetd` or `~/.cache/wasinetd`.
    Auto,
    /// This directory (`--cache-dir`).
    Dir(PathBuf),
}

impl CacheSetting {
    /// The directories to try, in order; a later one is used only when an
    /// earlier one cannot be created.
    fn candidates(&self) -> Vec<PathBuf> {
        match self {
            CacheSetting::Off => Vec::new(),
            CacheSetting::Dir(dir) => vec![dir.clone()],
            CacheSetting::Auto => default_dirs(),
        }
    }
}

fn default_dirs() -> Vec<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    // systemd sets these for CacheDirectory= / StateDirectory=, possibly as
    // a colon-separated list: the first one is ours.
    for var in ["CACHE_DIRECTORY", "STATE_DIRECTORY"] {
        if let Some(first) = std::env::var(var)
            .ok()
            .and_then(|v| v.split(':').next().and_then(|p| absolute(p.into())))
        {
            return vec![first];
        }
    }
    let mut dirs = Vec::new();
    if rustix::process::geteuid().is_root() {
        dirs.push(PathBuf::from("/var/cache/wasinetd"));
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").and_then(absolute) {
        dirs.push(xdg.join("wasinetd"));
    } else if let Some(home) = std::env::var_os("HOME").and_then(absolute) {
        dirs.push(home.join(".cache/wasinetd"));
    }
    dirs
}

/// A vetted cache directory, held open.
#[derive(Debug)]
pub struct Cache {
    /// The path it was opened by, for messages and for [`Cache::still_at_its_path`].
    dir: PathBuf,
    /// The directory itself; every file is reached through it.
    fd: OwnedFd,
    /// Its device and inode.
    id: (u64, u64),
    /// KEY -> DIGEST of the artefacts in it: found when the cache was
    /// opened, and kept up to date as artefacts are written and deleted.
    found: std::sync::Mutex<HashMap<String, String>>,
}

/// Whether a guest's code came from the cache or was just compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Compiled,
    Cached,
}

impl Origin {
    /// `compiled` or `cached`, as the start-up log says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Compiled => "compiled",
            Origin::Cached => "cached",
        }
    }
}

/// What the cache stores: a core module or a component.
pub(super) trait Artefact: Sized {
    /// Which, for the compiler process.
    const KIND: super::compile::Kind;
    /// Compiles in memory, when there is no cache.
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self>;
    fn precompile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Vec<u8>>;
    /// # Safety
    /// `path` must hold code this engine's configuration produced, and stay
    /// unchanged for as long as the result lives.
    unsafe fn map(engine: &Engine, path: &Path) -> wasmtime::Result<Self>;
    /// # Safety
    /// `code` must be what [`Artefact::precompile`] returns for an engine
    /// of this one's settings.
    unsafe fn from_code(engine: &Engine, code: &[u8]) -> wasmtime::Result<Self>;
}

impl Artefact for Module {
    const KIND: super::compile::Kind = super::compile::Kind::Module;
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self> {
        Module::new(engine, wasm)
    }
    fn precompile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Vec<u8>> {
        engine.precompile_module(wasm)
    }
    unsafe fn map(engine: &Engine, path: &Path) -> wasmtime::Result<Self> {
        // SAFETY: passed on from the caller.
        unsafe { Module::deserialize_file(engine, path) }
    }
    unsafe fn from_code(engine: &Engine, code: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: passed on from the caller.
        unsafe { Module::deserialize(engine, code) }
    }
}

impl Artefact for Component {
    const KIND: super::compile::Kind = super::compile::Kind::Component;
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self> {
        Component::new(engine, wasm)
    }
    fn precompile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Vec<u8>> {
        engine.precompile_component(wasm)
    }
    unsafe fn map(engine: &Engine, path: &Path) -> wasmtime::Result<Self> {
        // SAFETY: passed on from the caller.
        unsafe { Component::deserialize_file(engine, path) }
    }
    unsafe fn from_code(engine: &Engine, code: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: passed on from the caller.
        unsafe { Component::deserialize(engine, code) }
    }
}

impl Cache {
    /// Opens the cache `setting` names, creating its directory; `None`
    /// (with a warning saying why) when there is none or it is unsafe.
    pub fn open(setting: &CacheSetting) -> Option<Cache> {
        let candidates = setting.candidates();
        let last = candidates.len().checked_sub(1)?;
        for (i, dir) in candidates.into_iter().enumerate() {
            if let Err(e) = fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
            {
                if i < last {
                    tracing::debug!("cannot create cache directory `{}`: {e}", dir.display());
                    continue;
                }
                tracing::warn!(
                    "cannot create cache directory `{}` ({e}); compiling guests in memory",
                    dir.display()
                );
                return None;
            }
            return match Cache::vetted(dir.clone()) {
                Ok(cache) => {
                    tracing::info!("compiled-code cache: `{}`", dir.display());
                    Some(cache)
                }
                Err(e) => {
                    tracing::warn!(
                        "not using cache directory `{}`: {e:#}; compiling guests in memory",
                        dir.display()
                    );
                    None
                }
            };
        }
        None
    }

    /// Opens `dir` if it and the folders above it are safe ([`vet`]).
    fn vetted(dir: PathBuf) -> anyhow::Result<Cache> {
        let fd = rustix::fs::open(
            &dir,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .context("cannot open it")?;
        let meta = fs::metadata(proc_path(&fd, "")).context(
            "cannot reach it through /proc/self/fd (the cache needs /proc to hold its folder open)",
        )?;
        vet(&dir, &meta)?;
        let mut cache = Cache {
            id: (meta.dev(), meta.ino()),
            dir,
            fd,
            found: Default::default(),
        };
        cache.found = index(&cache.at("")).into();
        Ok(cache)
    }

    /// The directory artefacts are kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the cache's path still names the folder that was vetted, and
    /// that folder and those above it are still safe; if not, why.
    pub fn still_at_its_path(&self) -> anyhow::Result<()> {
        let now = fs::metadata(&self.dir).context("cannot stat it")?;
        if (now.dev(), now.ino()) != self.id {
            bail!("it is no longer the folder that was vetted: it was moved or replaced");
        }
        vet(&self.dir, &now)
    }

    /// `name` in the cache, reached through the held directory.
    fn at(&self, name: &str) -> PathBuf {
        proc_path(&self.fd, name)
    }

    /// Refuses an artefact someone else could have written.
    fn vet_file(&self, name: &str) -> anyhow::Result<()> {
        let meta = fs::symlink_metadata(self.at(name)).context("cannot stat it")?;
        if !meta.file_type().is_file() {
            bail!("it is not a regular file");
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            bail!(
                "it is owned by uid {}, not by this daemon's uid {me}",
                meta.uid()
            );
        }
        if meta.mode() & 0o022 != 0 {
            bail!(
                "it is writable by group or others (mode {:o})",
                meta.mode() & 0o7777
            );
        }
        Ok(())
    }

    /// The guest `wasm` as native code: mapped from the cache on a hit,
    /// else `precompile`d and stored. Fails only when `wasm` does not
    /// compile; a cache that cannot be read or written is logged and
    /// worked around.
    pub(super) fn get_or_compile<A: Artefact>(
        &self,
        engine: &Engine,
        wasm: &[u8],
        precompile: impl FnOnce() -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<(A, Origin)> {
        if let Some(hit) = self.get(engine, wasm) {
            return Ok((hit, Origin::Cached));
        }
        let key = key(engine, wasm);
        let code = precompile()?;
        let digest = digest(&code);
        let name = name(&key, &digest);
        match self.store(&name, &code) {
            Ok(()) => match self.map(engine, &name, &digest) {
                Ok(artefact) => {
                    self.found
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key, digest);
                    return Ok((artefact, Origin::Compiled));
                }
                Err(e) => tracing::warn!(
                    "cannot map the artefact just written to `{}`: {e:#}",
                    self.dir.join(&name).display()
                ),
            },
            Err(e) => tracing::warn!("cannot write to the cache: {e:#}"),
        }
        // SAFETY: `code` is the compiler's output for this engine's
        // settings (this very binary made it, with the same settings), and
        // wasmtime checks its header against the engine again.
        let artefact = unsafe { A::from_code(engine, &code) }?;
        Ok((artefact, Origin::Compiled))
    }

    /// The guest `wasm` as native code if the cache holds it.
    pub(super) fn get<A: Artefact>(&self, engine: &Engine, wasm: &[u8]) -> Option<A> {
        let key = key(engine, wasm);
        let found = self
            .found
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(digest) = &found {
            let name = name(&key, digest);
            match self.map(engine, &name, digest) {
                Ok(artefact) => {
                    touch(&self.at(&name));
                    return Some(artefact);
                }
                Err(e) => {
                    tracing::warn!(
                        "cached artefact `{}` cannot be loaded ({e:#}); deleting it and compiling again",
                        self.dir.join(&name).display()
                    );
                    if let Err(e) = fs::remove_file(self.at(&name)) {
                        tracing::warn!("cannot delete `{}`: {e}", self.dir.join(&name).display());
                    }
                    self.found
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&key);
                }
            }
        }
        None
    }

    /// Maps the artefact `name` once it is vetted and its content matches
    /// `digest`.
    fn map<A: Artefact>(&self, engine: &Engine, name: &str, digest: &str) -> anyhow::Result<A> {
        self.vet_file(name)?;
        let path = self.at(name);
        if file_digest(&path).context("cannot read it")? != digest {
            bail!("its content does not match its digest: the file is damaged");
        }
        // SAFETY: the directory is held open and is the daemon user's and
        // writable by no one else, as is every folder above it (`vet`), and
        // the file is the daemon user's and writable by no one else
        // (`vet_file`), so it is an artefact this code wrote; its content is
        // what was written (the digest just matched); it was made for this
        // engine (the key covers the engine's compatibility hash, and
        // wasmtime checks its header again); and no file is ever rewritten
        // in place (a new artefact is a new inode, renamed over).
        unsafe { A::map(engine, &path) }.map_err(anyhow::Error::from)
    }

    /// Writes `code` as `name` atomically: a temporary file (0600) in the
    /// same directory, flushed to disk, then renamed over.
    fn store(&self, name: &str, code: &[u8]) -> anyhow::Result<()> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let tmp = self.at(&format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(code)?;
            f.sync_all()?;
            fs::rename(&tmp, self.at(name))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.with_context(|| format!("cannot write `{}`", self.dir.join(name).display()))
    }

    /// Removes artefacts unused for `max_age` and temporary files left by a
    /// crash; returns how many files were removed. Run at start-up, after
    /// every guest of the config was loaded (and so refreshed).
    pub fn prune(&self, max_age: Duration) -> usize {
        let Ok(entries) = fs::read_dir(self.at("")) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let limit = if name.ends_with(&format!(".{EXT}")) {
                max_age
            } else if name.starts_with('.') && name.ends_with(".tmp") {
                STALE_TEMP
            } else {
                continue; // not ours: `$STATE_DIRECTORY` may hold other files
            };
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok());
            if age.is_some_and(|age| age > limit) && fs::remove_file(self.at(&name)).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// `NAME` in the folder `fd` holds, through `/proc/self/fd`.
fn proc_path(fd: &OwnedFd, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", fd.as_raw_fd()))
}

/// An artefact's file name.
fn name(key: &str, digest: &str) -> String {
    format!("{key}.{digest}.{EXT}")
}

/// Refuses a directory another user could write to, or rename away: its
/// artefacts are mapped as executable code. `meta` is the directory's
/// own; the folders above `dir` are checked from the root down.
fn vet(dir: &Path, meta: &fs::Metadata) -> anyhow::Result<()> {
    if !meta.is_dir() {
        bail!("not a directory");
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        bail!("owned by uid {}, not by this daemon's uid {me}", meta.uid());
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "writable by group or others (mode {:o}); `chmod go-w` it",
            meta.mode() & 0o7777
        );
    }
    let real = fs::canonicalize(dir).context("cannot resolve its path")?;
    let mut below_owner = meta.uid();
    for folder in real.ancestors().skip(1) {
        let m =
            fs::metadata(folder).with_context(|| format!("cannot stat `{}`", folder.display()))?;
        if m.uid() != 0 && m.uid() != me {
            bail!(
                "`{}` above it is owned by uid {}: its owner could replace the cache",
                folder.display(),
                m.uid()
            );
        }
        let sticky = m.mode() & 0o1000 != 0;
        let owned = |uid: u32| uid == 0 || uid == me;
        if m.mode() & 0o022 != 0 && !(sticky && owned(below_owner)) {
            bail!(
                "`{}` above it is writable by group or others (mode {:o}): they could \
                 replace the cache",
                folder.display(),
                m.mode() & 0o7777
            );
        }
        below_owner = m.uid();
    }
    Ok(())
}

/// The artefacts in `dir`, as KEY -> DIGEST.
fn index(dir: &Path) -> HashMap<String, String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(&format!(".{EXT}"))?;
            let (key, digest) = stem.split_once('.')?;
            Some((key.to_owned(), digest.to_owned()))
        })
        .collect()
}

/// The first 128 bits of an artefact's SHA-256, in hex: enough to tell a
/// damaged file from a whole one.
fn digest(code: &[u8]) -> String {
    hex128(Sha256::digest(code).as_slice())
}

/// [`digest`] of a file, read in chunks.
fn file_digest(path: &Path) -> std::io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(hex128(sha.finalize().as_slice())),
            n => sha.update(&buf[..n]),
        }
    }
}

fn hex128(sum: &[u8]) -> String {
    sum[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Marks an artefact as used now, for [`Cache::prune`]. Best effort.
fn touch(path: &Path) {
    if let Ok(f) = fs::File::open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// The artefact's name: SHA-256 over the key version, the engine's
/// compatibility hash and the guest's bytes, in hex.
fn key(engine: &Engine, wasm: &[u8]) -> String {
    let mut sha = Sha256::new();
    sha.update(KEY_VERSION);
    engine
        .precompile_compatibility_hash()
        .hash(&mut ShaHasher(&mut sha));
    sha.update((wasm.len() as u64).to_le_bytes());
    sha.update(wasm);
    format!("{:x}", sha.finalize())
}

/// Feeds a `Hash` value's bytes into SHA-256 (wasmtime exposes the engine's
/// settings only as `impl Hash`).
struct ShaHasher<'a>(&'a mut Sha256);

impl Hasher for ShaHasher<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Never asked for: the digest is read from the `Sha256` itself.
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with_mode(mode: u32) -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
        dir
    }

    #[test]
    fn a_directory_others_can_write_or_replace_is_refused() {
        let vet_path = |p: &Path| vet(p, &fs::metadata(p).unwrap());
        let open = dir_with_mode(0o777);
        assert!(vet_path(open.path()).is_err());
        assert!(Cache::open(&CacheSetting::Dir(open.path().into())).is_none());
        let group = dir_with_mode(0o770);
        assert!(vet_path(group.path()).is_err());
        let private = dir_with_mode(0o755);
        vet_path(private.path()).unwrap();
        // A private folder inside one others can write (not sticky): they
        // could rename it away and put theirs in its place.
        let inside = open.path().join("cache");
        fs::DirBuilder::new().mode(0o700).create(&inside).unwrap();
        let e = vet_path(&inside).unwrap_err().to_string();
        assert!(e.contains("above it is writable by group or others"), "{e}");
    }

    #[test]
    fn the_key_follows_the_bytes_and_is_stable() {
        let engine = Engine::default();
        let a = key(&engine, b"(module)");
        assert_eq!(a, key(&engine, b"(module)"));
        assert_ne!(a, key(&engine, b"(module) "));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn prune_removes_only_old_artefacts_and_stale_temp_files() {
        let dir = dir_with_mode(0o700);
        let cache = Cache::open(&CacheSetting::Dir(dir.path().into())).unwrap();
        let old = SystemTime::now() - MAX_AGE - Duration::from_secs(60);
        for (name, age) in [
            ("old.cwasm", Some(old)),
            ("new.cwasm", None),
            (".x.cwasm.1.0.tmp", Some(old)),
            ("other-file", Some(old)),
        ] {
            let f = fs::File::create(dir.path().join(name)).unwrap();
            if let Some(t) = age {
                f.set_modified(t).unwrap();
            }
        }
        assert_eq!(cache.prune(MAX_AGE), 2);
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["new.cwasm", "other-file"]);
    }
}
