//! The guard in front of wasmtime-wasi's preview 1 calls: a wrapper
//! around its `WasiP1Ctx` that implements the preview 1 interface by
//! passing every call through, after the guard's checks for the calls that
//! open, close, grow, link or remove (see [`super`]).
//!
//! Preview 1 names files by small numbers: the guard keeps, per number the
//! guest holds, which preopen it lies in and whether it was charged to the
//! descriptor budget. Preopens are numbers 3, 4, ... in the order the
//! guest's world lists them (stdio is 0-2), as wasmtime-wasi numbers them.
//! A disk change is measured with the file's own size before and after,
//! so the quota counts what really changed.

use std::collections::HashMap;

use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::types;
use wasmtime_wasi::p1::wasi_snapshot_preview1::{UserErrorConversion, WasiSnapshotPreview1};
use wiggle::{GuestMemory, GuestPtr};

use super::{Guard, Refused};

/// A preview 1 context behind the guard.
pub struct GuardedP1 {
    pub wasi: WasiP1Ctx,
    guard: Guard,
    /// The numbers the guest holds beyond stdio, with what the guard knows.
    fds: HashMap<u32, Held>,
}

/// One number the guest holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// The preopen it lies in.
    preopen: Option<usize>,
    /// Charged to the descriptor budget when it was opened (preopens are
    /// charged for the whole run).
    counted: bool,
}

impl GuardedP1 {
    /// `wasi` behind `guard`, whose `preopens` are numbers 3 and up.
    pub fn new(wasi: WasiP1Ctx, guard: Guard, preopens: usize) -> Self {
        let fds = (0..preopens)
            .map(|i| {
                let held = Held {
                    preopen: Some(i),
                    counted: false,
                };
                (3 + i as u32, held)
            })
            .collect();
        GuardedP1 { wasi, guard, fds }
    }

    fn guard_ref(&self) -> &Guard {
        &self.guard
    }

    fn preopen_of(&self, fd: types::Fd) -> Option<usize> {
        self.fds.get(&u32::from(fd)).and_then(|h| h.preopen)
    }

    /// The size of the file `fd`, if it is one.
    async fn size(&mut self, memory: &mut GuestMemory<'_>, fd: types::Fd) -> Option<u64> {
        let stat = self.wasi.fd_filestat_get(memory, fd).await.ok()?;
        (stat.filetype == types::Filetype::RegularFile).then_some(stat.size)
    }

    /// What is at `path` in `dirfd`, links not followed, if anything.
    async fn stat_at(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Option<types::Filestat> {
        self.wasi
            .path_filestat_get(memory, dirfd, types::Lookupflags::empty(), path)
            .await
            .ok()
    }

    /// A write of at most `len` bytes at `at` (`None`: the end) to `fd`:
    /// takes what it may add to the preopen's bytes before it runs, and
    /// gives back what it did not add after.
    async fn write_within_quota<F, R>(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        len: u64,
        at: Option<u64>,
        write: F,
    ) -> Result<R, types::Error>
    where
        F: AsyncFnOnce(&mut WasiP1Ctx, &mut GuestMemory<'_>) -> Result<R, types::Error>,
    {
        let preopen = self.preopen_of(fd);
        if self.guard.quota(preopen).is_none() {
            return write(&mut self.wasi, memory).await;
        }
        let Some(before) = self.size(memory, fd).await else {
            return write(&mut self.wasi, memory).await;
        };
        let append = self
            .wasi
            .fd_fdstat_get(memory, fd)
            .await
            .is_ok_and(|s| s.fs_flags.contains(types::Fdflags::APPEND));
        let start = match at {
            Some(offset) => offset,
            None if append => before,
            None => self.wasi.fd_tell(memory, fd).unwrap_or(before),
        };
        let bound = start.saturating_add(len).saturating_sub(before);
        self.guard.grow(preopen, bound).map_err(errno)?;
        let result = write(&mut self.wasi, memory).await;
        let after = self.size(memory, fd).await.unwrap_or(before);
        self.guard
            .shrink(preopen, bound.saturating_sub(after.saturating_sub(before)));
        result
    }
}

/// The preview 1 error for a refusal.
fn errno(refused: Refused) -> types::Error {
    match refused {
        Refused::Descriptors => types::Errno::Mfile.into(),
        Refused::Quota => types::Errno::Dquot.into(),
        Refused::Symlink => types::Errno::Perm.into(),
    }
}

/// The bytes a write of `ciovs` carries at most.
fn total(memory: &GuestMemory<'_>, ciovs: types::CiovecArray) -> Result<u64, types::Error> {
    let mut len = 0u64;
    for iov in ciovs.iter() {
        let iov: types::Ciovec = memory.read(iov?)?;
        len = len.saturating_add(u64::from(iov.buf_len));
    }
    Ok(len)
}

impl UserErrorConversion for GuardedP1 {}

impl WasiSnapshotPreview1 for GuardedP1 {
    fn set_hostcall_fuel(&mut self, fuel: usize) {
        self.wasi.set_hostcall_fuel(fuel);
    }

    fn sched_yield(&mut self, memory: &mut GuestMemory<'_>) -> Result<(), types::Error> {
        self.wasi.sched_yield(memory)
    }

    async fn path_open(
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
        let work = self.guard_ref().file_work(true);
        let result: Result<types::Fd, types::Error> = async {
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
        .await;
        work.charge();
        result
    }

    async fn fd_close(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<(), types::Error> {
        let work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        let result: Result<(), types::Error> = async {
            self.wasi.fd_close(memory, fd).await?;
            if let Some(held) = self.fds.remove(&u32::from(fd))
                && held.counted
            {
                self.guard.close();
            }
            Ok(())
        }
        .await;
        work.charge();
        result
    }

    async fn fd_renumber(
        &mut self,
        memory: &mut GuestMemory<'_>,
        from_fd: types::Fd,
        to_fd: types::Fd,
    ) -> Result<(), types::Error> {
        let work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(from_fd)));
        let result: Result<(), types::Error> = async {
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
        .await;
        work.charge();
        result
    }

    async fn fd_write(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
    ) -> Result<types::Size, types::Error> {
        let work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        let result: Result<types::Size, types::Error> = async {
            if !self.fds.contains_key(&u32::from(fd)) {
                // Stdio, the hot path: no file, no quota.
                return self.wasi.fd_write(memory, fd, ciovs).await;
            }
            let len = total(memory, ciovs)?;
            self.write_within_quota(memory, fd, len, None, async |wasi, memory| {
                wasi.fd_write(memory, fd, ciovs).await
            })
            .await
        }
        .await;
        work.charge();
        result
    }

    async fn fd_pwrite(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
        offset: types::Filesize,
    ) -> Result<types::Size, types::Error> {
        let work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        let result: Result<types::Size, types::Error> = async {
            let len = total(memory, ciovs)?;
            self.write_within_quota(memory, fd, len, Some(offset), async |wasi, memory| {
                wasi.fd_pwrite(memory, fd, ciovs, offset).await
            })
            .await
        }
        .await;
        work.charge();
        result
    }

    async fn fd_filestat_set_size(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        size: types::Filesize,
    ) -> Result<(), types::Error> {
        let work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        let result: Result<(), types::Error> = async {
            self.write_within_quota(memory, fd, 0, Some(size), async |wasi, memory| {
                wasi.fd_filestat_set_size(memory, fd, size).await
            })
            .await
        }
        .await;
        work.charge();
        result
    }

    fn fd_allocate(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        offset: types::Filesize,
        len: types::Filesize,
    ) -> Result<(), types::Error> {
        // wasmtime-wasi does not allocate (`ENOTSUP`): nothing grows.
        self.wasi.fd_allocate(memory, fd, offset, len)
    }

    async fn path_create_directory(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let work = self.guard_ref().file_work(true);
        let result: Result<(), types::Error> = async {
            let preopen = self.preopen_of(dirfd);
            self.guard.add_entry(preopen).map_err(errno)?;
            let made = self.wasi.path_create_directory(memory, dirfd, path).await;
            if made.is_err() {
                self.guard.remove_entry(preopen);
            }
            made
        }
        .await;
        work.charge();
        result
    }

    async fn path_symlink(
        &mut self,
        memory: &mut GuestMemory<'_>,
        src_path: GuestPtr<str>,
        dirfd: types::Fd,
        dest_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let work = self.guard_ref().file_work(true);
        let result: Result<(), types::Error> = async {
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
        .await;
        work.charge();
        result
    }

    async fn path_link(
        &mut self,
        memory: &mut GuestMemory<'_>,
        src_fd: types::Fd,
        src_flags: types::Lookupflags,
        src_path: GuestPtr<str>,
        target_fd: types::Fd,
        target_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let work = self.guard_ref().file_work(true);
        let result: Result<(), types::Error> = async {
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
        .await;
        work.charge();
        result
    }

    async fn path_unlink_file(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let work = self.guard_ref().file_work(true);
        let result: Result<(), types::Error> = async {
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
        .await;
        work.charge();
        result
    }

    async fn path_remove_directory(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let work = self.guard_ref().file_work(true);
        let result: Result<(), types::Error> = async {
            self.wasi.path_remove_directory(memory, dirfd, path).await?;
            self.guard.remove_entry(self.preopen_of(dirfd));
            Ok(())
        }
        .await;
        work.charge();
        result
    }

    async fn path_rename(
        &mut self,
        memory: &mut GuestMemory<'_>,
        src_fd: types::Fd,
        src_path: GuestPtr<str>,
        dest_fd: types::Fd,
        dest_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let work = self.guard_ref().file_work(true);
        let result: Result<(), types::Error> = async {
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
        .await;
        work.charge();
        result
    }

    fn args_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        argv: GuestPtr<GuestPtr<u8>>,
        argv_buf: GuestPtr<u8>,
    ) -> Result<(), types::Error> {
        self.wasi.args_get(memory, argv, argv_buf)
    }
    fn args_sizes_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
    ) -> Result<(types::Size, types::Size), types::Error> {
        self.wasi.args_sizes_get(memory)
    }
    fn environ_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        environ: GuestPtr<GuestPtr<u8>>,
        environ_buf: GuestPtr<u8>,
    ) -> Result<(), types::Error> {
        self.wasi.environ_get(memory, environ, environ_buf)
    }
    fn environ_sizes_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
    ) -> Result<(types::Size, types::Size), types::Error> {
        self.wasi.environ_sizes_get(memory)
    }
    fn clock_res_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        id: types::Clockid,
    ) -> Result<types::Timestamp, types::Error> {
        self.wasi.clock_res_get(memory, id)
    }
    fn clock_time_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        id: types::Clockid,
        precision: types::Timestamp,
    ) -> Result<types::Timestamp, types::Error> {
        self.wasi.clock_time_get(memory, id, precision)
    }
    async fn fd_advise(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> Result<(), types::Error> {
        let work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        let result: Result<(), types::Error> =
            async { self.wasi.fd_advise(memory, fd, offset, len, advice).await }.await;
        work.charge();
        result
    }
    async fn fd_datasync(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<(), types::Error> {
        let work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        let result: Result<(), types::Error> =
            async { self.wasi.fd_datasync(memory, fd).await }.await;
        work.charge();
        result
    }
    async fn fd_fdstat_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Fdstat, types::Error> {
        let work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        let result: Result<types::Fdstat, types::Error> =
            async { self.wasi.fd_fdstat_get(memory, fd).await }.await;
        work.charge();
        result
    }
    fn fd_fdstat_set_flags(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        flags: types::Fdflags,
    ) -> Result<(), types::Error> {
        self.wasi.fd_fdstat_set_flags(memory, fd, flags)
    }
    fn fd_fdstat_set_rights(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        fs_rights_base: types::Rights,
        fs_rights_inheriting: types::Rights,
    ) -> Result<(), types::Error> {
        self.wasi
            .fd_fdstat_set_rights(memory, fd, fs_rights_base, fs_rights_inheriting)
    }
    async fn fd_filestat_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Filestat, types::Error> {
        let work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        let result: Result<types::Filestat, types::Error> =
            async { self.wasi.fd_filestat_get(memory, fd).await }.await;
        work.charge();
        result
    }
    async fn fd_filestat_set_times(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        atim: types::Timestamp,
        mtim: types::Timestamp,
        fst_flags: types::Fstflags,
    ) -> Result<(), types::Error> {
        let work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        let result: Result<(), types::Error> = async {
            self.wasi
                .fd_filestat_set_times(memory, fd, atim, mtim, fst_flags)
                .await
        }
        .await;
        work.charge();
        result
    }
    async fn fd_read(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        iovs: types::IovecArray,
    ) -> Result<types::Size, types::Error> {
        let work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        let result: Result<types::Size, types::Error> =
            async { self.wasi.fd_read(memory, fd, iovs).await }.await;
        work.charge();
        result
    }
    async fn fd_pread(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        iovs: types::IovecArray,
        offset: types::Filesize,
    ) -> Result<types::Size, types::Error> {
        let work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        let result: Result<types::Size, types::Error> =
            async { self.wasi.fd_pread(memory, fd, iovs, offset).await }.await;
        work.charge();
        result
    }
    fn fd_prestat_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Prestat, types::Error> {
        self.wasi.fd_prestat_get(memory, fd)
    }
    fn fd_prestat_dir_name(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        path: GuestPtr<u8>,
        path_max_len: types::Size,
    ) -> Result<(), types::Error> {
        self.wasi
            .fd_prestat_dir_name(memory, fd, path, path_max_len)
    }
    async fn fd_seek(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        offset: types::Filedelta,
        whence: types::Whence,
    ) -> Result<types::Filesize, types::Error> {
        let work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        let result: Result<types::Filesize, types::Error> =
            async { self.wasi.fd_seek(memory, fd, offset, whence).await }.await;
        work.charge();
        result
    }
    async fn fd_sync(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<(), types::Error> {
        let work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        let result: Result<(), types::Error> = async { self.wasi.fd_sync(memory, fd).await }.await;
        work.charge();
        result
    }
    fn fd_tell(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Filesize, types::Error> {
        self.wasi.fd_tell(memory, fd)
    }
    async fn fd_readdir(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        buf: GuestPtr<u8>,
        buf_len: types::Size,
        cookie: types::Dircookie,
    ) -> Result<types::Size, types::Error> {
        let work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        let result: Result<types::Size, types::Error> =
            async { self.wasi.fd_readdir(memory, fd, buf, buf_len, cookie).await }.await;
        work.charge();
        result
    }
    async fn path_filestat_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        flags: types::Lookupflags,
        path: GuestPtr<str>,
    ) -> Result<types::Filestat, types::Error> {
        let work = self.guard_ref().file_work(true);
        let result: Result<types::Filestat, types::Error> = async {
            self.wasi
                .path_filestat_get(memory, dirfd, flags, path)
                .await
        }
        .await;
        work.charge();
        result
    }
    async fn path_filestat_set_times(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        flags: types::Lookupflags,
        path: GuestPtr<str>,
        atim: types::Timestamp,
        mtim: types::Timestamp,
        fst_flags: types::Fstflags,
    ) -> Result<(), types::Error> {
        let work = self.guard_ref().file_work(true);
        let result: Result<(), types::Error> = async {
            self.wasi
                .path_filestat_set_times(memory, dirfd, flags, path, atim, mtim, fst_flags)
                .await
        }
        .await;
        work.charge();
        result
    }
    async fn path_readlink(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
        buf: GuestPtr<u8>,
        buf_len: types::Size,
    ) -> Result<types::Size, types::Error> {
        let work = self.guard_ref().file_work(true);
        let result: Result<types::Size, types::Error> = async {
            self.wasi
                .path_readlink(memory, dirfd, path, buf, buf_len)
                .await
        }
        .await;
        work.charge();
        result
    }
    async fn poll_oneoff(
        &mut self,
        memory: &mut GuestMemory<'_>,
        subs: GuestPtr<types::Subscription>,
        events: GuestPtr<types::Event>,
        nsubscriptions: types::Size,
    ) -> Result<types::Size, types::Error> {
        self.wasi
            .poll_oneoff(memory, subs, events, nsubscriptions)
            .await
    }
    fn proc_exit(
        &mut self,
        memory: &mut GuestMemory<'_>,
        status: types::Exitcode,
    ) -> wasmtime::Error {
        self.wasi.proc_exit(memory, status)
    }
    fn proc_raise(
        &mut self,
        memory: &mut GuestMemory<'_>,
        sig: types::Signal,
    ) -> Result<(), types::Error> {
        self.wasi.proc_raise(memory, sig)
    }
    fn random_get(
        &mut self,
        memory: &mut GuestMemory<'_>,
        buf: GuestPtr<u8>,
        buf_len: types::Size,
    ) -> Result<(), types::Error> {
        self.wasi.random_get(memory, buf, buf_len)
    }
    fn sock_accept(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        flags: types::Fdflags,
    ) -> Result<types::Fd, types::Error> {
        self.wasi.sock_accept(memory, fd, flags)
    }
    fn sock_recv(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        ri_data: types::IovecArray,
        ri_flags: types::Riflags,
    ) -> Result<(types::Size, types::Roflags), types::Error> {
        self.wasi.sock_recv(memory, fd, ri_data, ri_flags)
    }
    fn sock_send(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        si_data: types::CiovecArray,
        si_flags: types::Siflags,
    ) -> Result<types::Size, types::Error> {
        self.wasi.sock_send(memory, fd, si_data, si_flags)
    }
    fn sock_shutdown(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        how: types::Sdflags,
    ) -> Result<(), types::Error> {
        self.wasi.sock_shutdown(memory, fd, how)
    }
}

/// Adds preview 1, behind the guard, to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::Linker<T>,
    get: impl Fn(&mut T) -> &mut GuardedP1 + Copy + Send + Sync + 'static,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::wasi_snapshot_preview1::add_to_linker(linker, get)
}
