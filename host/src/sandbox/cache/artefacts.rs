//! The artefacts in the cache: named by key and digest, written
//! atomically, checked against their digest before they are mapped, and
//! pruned when unused.

use std::collections::HashMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use sha2::{Digest, Sha256};
use wasmtime::Engine;

use super::{Artefact, Cache, EXT, KEY_VERSION, Origin, STALE_TEMP};

impl Cache {
    /// The guest `wasm` as native code: mapped from the cache on a hit,
    /// else `precompile`d and stored. Fails only when `wasm` does not
    /// compile; a cache that cannot be read or written is logged and
    /// worked around.
    pub(in crate::sandbox) fn get_or_compile<A: Artefact>(
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
    pub(in crate::sandbox) fn get<A: Artefact>(&self, engine: &Engine, wasm: &[u8]) -> Option<A> {
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

/// An artefact's file name.
fn name(key: &str, digest: &str) -> String {
    format!("{key}.{digest}.{EXT}")
}

/// The artefacts in `dir`, as KEY -> DIGEST.
pub(super) fn index(dir: &Path) -> HashMap<String, String> {
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
pub(super) fn key(engine: &Engine, wasm: &[u8]) -> String {
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
