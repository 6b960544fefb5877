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
//!
//! This file holds the cache's types and opens it; [`vet`] decides whether
//! a directory and an artefact may be trusted, [`artefacts`] names, writes,
//! checks, maps and prunes them.

mod artefacts;
mod vet;

use std::collections::HashMap;
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

    /// The directory artefacts are kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `tools/` in the cache directory `setting` names, created (0700) if
/// missing, and vetted as the cache itself is: `wasinetd build` keeps the
/// build tools it fetched there and runs them, so a folder someone else
/// could write to (or one above it) is refused, naming why.
pub fn tools_dir(setting: &CacheSetting) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    let mut candidates = setting.candidates().into_iter().peekable();
    while let Some(dir) = candidates.next() {
        let tools = dir.join("tools");
        let made = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&tools);
        match made {
            Err(_) if candidates.peek().is_some() => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot create the tools folder `{}`", tools.display())
                });
            }
            Ok(()) => {}
        }
        let meta = fs::metadata(&tools)
            .with_context(|| format!("cannot stat the tools folder `{}`", tools.display()))?;
        vet::vet(&tools, &meta)
            .with_context(|| format!("refusing the tools folder `{}`", tools.display()))?;
        return Ok(tools);
    }
    anyhow::bail!(
        "no cache directory to keep the build tools in (--no-cache, or neither \
         $CACHE_DIRECTORY nor $HOME is set): give --cache-dir DIR"
    )
}

#[cfg(test)]
mod tests;
