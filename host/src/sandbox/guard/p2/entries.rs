//! Entries, guarded: a directory, a link or a symlink made inside a
//! preopen counts against its quota of entries (and a symlink only where
//! the preopen allows them); what is removed or renamed away gives back
//! its entry, and its bytes once no other link holds them.

use wasmtime::component::Resource;
use wasmtime_wasi::p2::FsResult;
use wasmtime_wasi::p2::bindings::filesystem::types;
use wasmtime_wasi::p2::bindings::filesystem::types::HostDescriptor as _;

use super::{GuardedFs, Refused, fs_error};

impl GuardedFs<'_> {
    /// `create-directory-at`: one more entry.
    pub(super) async fn guarded_create_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let _work = self.guard_ref().file_work(true);
        let preopen = self.guard.preopen_of(&fd);
        self.guard.guard.add_entry(preopen).map_err(fs_error)?;
        let made = self.fs.create_directory_at(fd, path).await;
        if made.is_err() {
            self.guard.guard.remove_entry(preopen);
        }
        made
    }

    /// `symlink-at`: one more entry, where the preopen allows symlinks.
    pub(super) async fn guarded_symlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        let _work = self.guard_ref().file_work(true);
        let preopen = self.guard.preopen_of(&fd);
        if !self.guard.guard.allows_symlinks(preopen) {
            return Err(fs_error(Refused::Symlink));
        }
        self.guard.guard.add_entry(preopen).map_err(fs_error)?;
        let made = self.fs.symlink_at(fd, src_path, dest_path).await;
        if made.is_err() {
            self.guard.guard.remove_entry(preopen);
        }
        made
    }

    /// `link-at`: one more entry in the preopen the link is made in.
    pub(super) async fn guarded_link_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path_flags: types::PathFlags,
        old_path: String,
        new_descriptor: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let _work = self.guard_ref().file_work(true);
        let preopen = self.guard.preopen_of(&new_descriptor);
        self.guard.guard.add_entry(preopen).map_err(fs_error)?;
        let made = self
            .fs
            .link_at(fd, old_path_flags, old_path, new_descriptor, new_path)
            .await;
        if made.is_err() {
            self.guard.guard.remove_entry(preopen);
        }
        made
    }

    /// `unlink-file-at`: one entry fewer, and the file's bytes once it was
    /// its last link.
    pub(super) async fn guarded_unlink_file_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let _work = self.guard_ref().file_work(true);
        let preopen = self.guard.preopen_of(&fd);
        let gone = match self.guard.guard.quota(preopen) {
            Some(_) => self.stat_at(&fd, &path).await,
            None => None,
        };
        self.fs.unlink_file_at(fd, path).await?;
        if let Some(stat) = gone {
            self.guard.guard.remove_entry(preopen);
            if stat.link_count <= 1 && stat.type_ == types::DescriptorType::RegularFile {
                self.guard.guard.shrink(preopen, stat.size);
            }
        }
        Ok(())
    }

    /// `remove-directory-at`: one entry fewer.
    pub(super) async fn guarded_remove_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let _work = self.guard_ref().file_work(true);
        let preopen = self.guard.preopen_of(&fd);
        self.fs.remove_directory_at(fd, path).await?;
        self.guard.guard.remove_entry(preopen);
        Ok(())
    }

    /// `rename-at`: across preopens, the entry and its bytes move from one
    /// quota to the other; a file replaced gives back its entry and bytes.
    pub(super) async fn guarded_rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let _work = self.guard_ref().file_work(true);
        let (from, to) = (self.guard.preopen_of(&fd), self.guard.preopen_of(&new_fd));
        let g = &self.guard.guard;
        let counted = g.quota(from).is_some() || g.quota(to).is_some();
        let (moved, replaced) = if counted {
            (
                self.stat_at(&fd, &old_path).await,
                self.stat_at(&new_fd, &new_path).await,
            )
        } else {
            (None, None)
        };
        let size = |s: &types::DescriptorStat| {
            if s.type_ == types::DescriptorType::RegularFile {
                s.size
            } else {
                0
            }
        };
        let g = &self.guard.guard;
        // Across preopens, what moves is taken from the destination's quota
        // first, then given back to the source's.
        let across = from != to;
        if across && let Some(m) = &moved {
            g.add_entry(to).map_err(fs_error)?;
            if let Err(e) = g.grow(to, size(m)) {
                g.remove_entry(to);
                return Err(fs_error(e));
            }
        }
        let renamed = self.fs.rename_at(fd, old_path, new_fd, new_path).await;
        let g = &self.guard.guard;
        match (&renamed, &moved) {
            (Ok(()), Some(m)) => {
                if across {
                    g.remove_entry(from);
                    g.shrink(from, size(m));
                }
                if let Some(r) = &replaced {
                    g.remove_entry(to);
                    if r.link_count <= 1 {
                        g.shrink(to, size(r));
                    }
                }
            }
            (Err(_), Some(m)) if across => {
                g.remove_entry(to);
                g.shrink(to, size(m));
            }
            _ => {}
        }
        renamed
    }
}
