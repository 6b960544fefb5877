//! Whether the cache may be trusted: its directory (and every folder
//! above it) and each artefact in it must be beyond anyone else's reach,
//! and every file is reached through the directory held open.

use std::fs;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::Cache;
use super::artefacts::index;

impl Cache {
    /// Opens `dir` if it and the folders above it are safe ([`vet`]).
    pub(super) fn vetted(dir: PathBuf) -> anyhow::Result<Cache> {
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
    pub(super) fn at(&self, name: &str) -> PathBuf {
        proc_path(&self.fd, name)
    }

    /// Refuses an artefact someone else could have written.
    pub(super) fn vet_file(&self, name: &str) -> anyhow::Result<()> {
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
}

/// `NAME` in the folder `fd` holds, through `/proc/self/fd`.
fn proc_path(fd: &OwnedFd, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", fd.as_raw_fd()))
}

/// Refuses a directory another user could write to, or rename away: its
/// artefacts are mapped as executable code. `meta` is the directory's
/// own; the folders above `dir` are checked from the root down.
pub(super) fn vet(dir: &Path, meta: &fs::Metadata) -> anyhow::Result<()> {
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
