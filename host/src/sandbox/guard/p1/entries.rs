//! Entries, guarded: a directory, a link or a symlink made inside a
//! preopen counts against its quota of entries (and a symlink only where
//! the preopen allows them); what is removed or renamed away gives back
//! its entry, and its bytes once no other link holds them.

use wasmtime_wasi::p1::types;
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;
use wiggle::{GuestMemory, GuestPtr};

use super::{GuardedP1, Refused, errno};

impl GuardedP1 {
    /// `path_create_directory`: one more entry.
    pub(super) async fn guarded_path_create_directory(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let _work = self.guard_ref().file_work(true);
        let preopen = self.preopen_of(dirfd);
        self.guard.add_entry(preopen).map_err(errno)?;
        let made = self.wasi.path_create_directory(memory, dirfd, path).await;
        if made.is_err() {
            self.guard.remove_entry(preopen);
        }
        made
    }

    /// `path_symlink`: one more entry, where the preopen allows symlinks.
    pub(super) async fn guarded_path_symlink(
        &mut self,
        memory: &mut GuestMemory<'_>,
        src_path: GuestPtr<str>,
        dirfd: types::Fd,
        dest_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let _work = self.guard_ref().file_work(true);
        let preopen = self.preopen_of(dirfd);
        if !self.guard.allows_symlinks(preopen) {
            return Err(errno(Refused::Symlink));
        }
        self.guard.add_entry(preopen).map_err(errno)?;
        let made = self
            .wasi
            .path_symlink(memory, src_path, dirfd, dest_path)
            .await;
        if made.is_err() {
            self.guard.remove_entry(preopen);
        }
        made
    }

    /// `path_link`: one more entry in the preopen the link is made in.
    pub(super) async fn guarded_path_link(
        &mut self,
        memory: &mut GuestMemory<'_>,
        src_fd: types::Fd,
        src_flags: types::Lookupflags,
        src_path: GuestPtr<str>,
        target_fd: types::Fd,
        target_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let _work = self.guard_ref().file_work(true);
        let preopen = self.preopen_of(target_fd);
        self.guard.add_entry(preopen).map_err(errno)?;
        let made = self
            .wasi
            .path_link(memory, src_fd, src_flags, src_path, target_fd, target_path)
            .await;
        if made.is_err() {
            self.guard.remove_entry(preopen);
        }
        made
    }

    /// `path_unlink_file`: one entry fewer, and the file's bytes once it
    /// was its last link.
    pub(super) async fn guarded_path_unlink_file(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let _work = self.guard_ref().file_work(true);
        let preopen = self.preopen_of(dirfd);
        let gone = match self.guard.quota(preopen) {
            Some(_) => self.stat_at(memory, dirfd, path).await,
            None => None,
        };
        self.wasi.path_unlink_file(memory, dirfd, path).await?;
        if let Some(stat) = gone {
            self.guard.remove_entry(preopen);
            if stat.nlink <= 1 && stat.filetype == types::Filetype::RegularFile {
                self.guard.shrink(preopen, stat.size);
            }
        }
        Ok(())
    }

    /// `path_remove_directory`: one entry fewer.
    pub(super) async fn guarded_path_remove_directory(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let _work = self.guard_ref().file_work(true);
        self.wasi.path_remove_directory(memory, dirfd, path).await?;
        self.guard.remove_entry(self.preopen_of(dirfd));
        Ok(())
    }

    /// `path_rename`: across preopens, the entry and its bytes move from
    /// one quota to the other; a file replaced gives back its entry and
    /// bytes.
    pub(super) async fn guarded_path_rename(
        &mut self,
        memory: &mut GuestMemory<'_>,
        src_fd: types::Fd,
        src_path: GuestPtr<str>,
        dest_fd: types::Fd,
        dest_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let _work = self.guard_ref().file_work(true);
        let (from, to) = (self.preopen_of(src_fd), self.preopen_of(dest_fd));
        let counted = self.guard.quota(from).is_some() || self.guard.quota(to).is_some();
        let (moved, replaced) = if counted {
            (
                self.stat_at(memory, src_fd, src_path).await,
                self.stat_at(memory, dest_fd, dest_path).await,
            )
        } else {
            (None, None)
        };
        let size = |s: &types::Filestat| {
            if s.filetype == types::Filetype::RegularFile {
                s.size
            } else {
                0
            }
        };
        // Across preopens, what moves is taken from the destination's quota
        // first, then given back to the source's.
        let across = from != to;
        if across && let Some(m) = &moved {
            self.guard.add_entry(to).map_err(errno)?;
            if let Err(e) = self.guard.grow(to, size(m)) {
                self.guard.remove_entry(to);
                return Err(errno(e));
            }
        }
        let renamed = self
            .wasi
            .path_rename(memory, src_fd, src_path, dest_fd, dest_path)
            .await;
        match (&renamed, &moved) {
            (Ok(()), Some(m)) => {
                if across {
                    self.guard.remove_entry(from);
                    self.guard.shrink(from, size(m));
                }
                if let Some(r) = &replaced {
                    self.guard.remove_entry(to);
                    if r.nlink <= 1 {
                        self.guard.shrink(to, size(r));
                    }
                }
            }
            (Err(_), Some(m)) if across => {
                self.guard.remove_entry(to);
                self.guard.shrink(to, size(m));
            }
            _ => {}
        }
        renamed
    }
}
