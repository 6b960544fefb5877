//! Opening, closing and renumbering, guarded: a file or directory the
//! guest opens is charged to the descriptor budget until it is closed (or
//! replaced by a renumbering), and only a regular file or a directory is
//! opened.

use wasmtime_wasi::p1::types;
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;
use wiggle::{GuestMemory, GuestPtr};

use super::{GuardedP1, Held, errno};

impl GuardedP1 {
    /// `path_open`, within the descriptor budget; a FIFO, a device or a
    /// socket is not opened (`EACCES`).
    // The arguments of the call, as WASI has them.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn guarded_path_open(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        dirflags: types::Lookupflags,
        path: GuestPtr<str>,
        oflags: types::Oflags,
        fs_rights_base: types::Rights,
        fs_rights_inheriting: types::Rights,
        fdflags: types::Fdflags,
    ) -> Result<types::Fd, types::Error> {
        let _work = self.guard_ref().file_work(true);
        let preopen = self.preopen_of(dirfd);
        let target = self
            .wasi
            .path_filestat_get(memory, dirfd, dirflags, path)
            .await
            .ok();
        if target.is_some_and(|t| {
            !matches!(
                t.filetype,
                types::Filetype::RegularFile | types::Filetype::Directory
            )
        }) {
            return Err(types::Errno::Acces.into());
        }
        self.guard.open().map_err(errno)?;
        let changes = oflags.intersects(types::Oflags::CREAT | types::Oflags::TRUNC);
        let existing = if changes && self.guard.quota(preopen).is_some() {
            Some(self.stat_at(memory, dirfd, path).await)
        } else {
            None
        };
        let creates = oflags.contains(types::Oflags::CREAT) && matches!(existing, Some(None));
        if creates && let Err(e) = self.guard.add_entry(preopen) {
            self.guard.close();
            return Err(errno(e));
        }
        let opened = self
            .wasi
            .path_open(
                memory,
                dirfd,
                dirflags,
                path,
                oflags,
                fs_rights_base,
                fs_rights_inheriting,
                fdflags,
            )
            .await;
        match opened {
            Ok(fd) => {
                if oflags.contains(types::Oflags::TRUNC)
                    && let Some(Some(stat)) = existing
                    && stat.filetype == types::Filetype::RegularFile
                {
                    self.guard.shrink(preopen, stat.size);
                }
                self.fds.insert(
                    u32::from(fd),
                    Held {
                        preopen,
                        counted: true,
                    },
                );
                Ok(fd)
            }
            Err(e) => {
                self.guard.close();
                if creates {
                    self.guard.remove_entry(preopen);
                }
                Err(e)
            }
        }
    }

    /// `fd_close`: gives the descriptor back.
    pub(super) async fn guarded_fd_close(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<(), types::Error> {
        let _work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        self.wasi.fd_close(memory, fd).await?;
        if let Some(held) = self.fds.remove(&u32::from(fd))
            && held.counted
        {
            self.guard.close();
        }
        Ok(())
    }

    /// `fd_renumber`: the number replaced gives its descriptor back; the
    /// one moved keeps what it was charged.
    pub(super) async fn guarded_fd_renumber(
        &mut self,
        memory: &mut GuestMemory<'_>,
        from_fd: types::Fd,
        to_fd: types::Fd,
    ) -> Result<(), types::Error> {
        let _work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(from_fd)));
        self.wasi.fd_renumber(memory, from_fd, to_fd).await?;
        if let Some(replaced) = self.fds.remove(&u32::from(to_fd))
            && replaced.counted
        {
            self.guard.close();
        }
        if let Some(moved) = self.fds.remove(&u32::from(from_fd)) {
            self.fds.insert(u32::from(to_fd), moved);
        }
        Ok(())
    }
}
