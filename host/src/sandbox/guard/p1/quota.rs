//! Writes and sizes, guarded: what a file grows by is taken from its
//! preopen's quota before the write, and what it did not grow by is given
//! back after. Stdio is not a file: its writes go straight through.

use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::types;
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;
use wiggle::GuestMemory;

use super::{GuardedP1, errno};

impl GuardedP1 {
    /// The size of the file `fd`, if it is one.
    async fn size(&mut self, memory: &mut GuestMemory<'_>, fd: types::Fd) -> Option<u64> {
        let stat = self.wasi.fd_filestat_get(memory, fd).await.ok()?;
        (stat.filetype == types::Filetype::RegularFile).then_some(stat.size)
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

    /// `fd_write`, within the quota when `fd` is a file.
    pub(super) async fn guarded_fd_write(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
    ) -> Result<types::Size, types::Error> {
        let _work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
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

    /// `fd_pwrite`, within the quota.
    pub(super) async fn guarded_fd_pwrite(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
        offset: types::Filesize,
    ) -> Result<types::Size, types::Error> {
        let _work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        let len = total(memory, ciovs)?;
        self.write_within_quota(memory, fd, len, Some(offset), async |wasi, memory| {
            wasi.fd_pwrite(memory, fd, ciovs, offset).await
        })
        .await
    }

    /// `fd_filestat_set_size`, within the quota.
    pub(super) async fn guarded_fd_filestat_set_size(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        size: types::Filesize,
    ) -> Result<(), types::Error> {
        let _work = self
            .guard_ref()
            .file_work(self.fds.contains_key(&u32::from(fd)));
        self.write_within_quota(memory, fd, 0, Some(size), async |wasi, memory| {
            wasi.fd_filestat_set_size(memory, fd, size).await
        })
        .await
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
