//! Writes and sizes, guarded: what a file grows by is taken from its
//! preopen's quota, before the write, and what it did not grow by is given
//! back after; a stream's writes are held to the quota by the stream
//! ([`QuotaStream`]).

use bytes::Bytes;
use wasmtime::component::Resource;
use wasmtime_wasi::async_trait;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::filesystem::types;
use wasmtime_wasi::p2::bindings::filesystem::types::HostDescriptor as _;
use wasmtime_wasi::p2::{
    DynOutputStream, FsResult, OutputStream, Pollable, StreamError, StreamResult,
};

use super::super::{DiskQuota, Refusals, add};
use super::{GuardedFs, Refused, again, fs_error};

impl GuardedFs<'_> {
    /// The size of the file `fd`, if it is one (one `fstat`).
    fn size(&mut self, fd: &Resource<types::Descriptor>) -> Option<u64> {
        match self.fs.table.get(fd).ok()? {
            Descriptor::File(f) => f.file.metadata().ok().map(|m| m.len()),
            Descriptor::Dir(_) => None,
        }
    }

    /// The quota of the preopen `fd` lies in, if it has one.
    fn quota_of(&self, fd: &Resource<types::Descriptor>) -> Option<DiskQuota> {
        self.guard.guard.quota(self.guard.preopen_of(fd)).cloned()
    }

    /// Wraps the output stream `stream` on the file `fd` so that its
    /// writes are held to the preopen's quota.
    pub(super) fn within_quota(
        &mut self,
        fd: &Resource<types::Descriptor>,
        stream: Resource<DynOutputStream>,
        at: Option<u64>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let Some(quota) = self.quota_of(fd) else {
            return Ok(stream);
        };
        let size = self.size(fd).unwrap_or(0);
        let inner = self.fs.table.delete(stream)?;
        let wrapped: DynOutputStream = Box::new(QuotaStream {
            inner,
            quota,
            refusals: self.guard.guard.refusals.clone(),
            at: at.unwrap_or(size),
            size,
        });
        Ok(self.fs.table.push(wrapped)?)
    }

    /// `write`, within the quota.
    pub(super) async fn guarded_write(
        &mut self,
        fd: Resource<types::Descriptor>,
        buf: Vec<u8>,
        offset: types::Filesize,
    ) -> FsResult<types::Filesize> {
        let _work = self.guard_ref().file_work(true);
        let preopen = self.guard.preopen_of(&fd);
        if self.guard.guard.quota(preopen).is_none() {
            return self.fs.write(fd, buf, offset).await;
        }
        let before = self.size(&fd).unwrap_or(0);
        let bound = offset
            .saturating_add(buf.len() as u64)
            .saturating_sub(before);
        self.guard.guard.grow(preopen, bound).map_err(fs_error)?;
        let written = self.fs.write(again(&fd), buf, offset).await;
        let after = self.size(&fd).unwrap_or(before);
        self.guard
            .guard
            .shrink(preopen, bound.saturating_sub(after.saturating_sub(before)));
        written
    }

    /// `set-size`, within the quota; a file made smaller gives back what it
    /// lost.
    pub(super) async fn guarded_set_size(
        &mut self,
        fd: Resource<types::Descriptor>,
        size: types::Filesize,
    ) -> FsResult<()> {
        let _work = self.guard_ref().file_work(true);
        let preopen = self.guard.preopen_of(&fd);
        if self.guard.guard.quota(preopen).is_none() {
            return self.fs.set_size(fd, size).await;
        }
        let before = self.size(&fd).unwrap_or(0);
        let bound = size.saturating_sub(before);
        self.guard.guard.grow(preopen, bound).map_err(fs_error)?;
        let set = self.fs.set_size(again(&fd), size).await;
        let after = self.size(&fd).unwrap_or(before);
        self.guard
            .guard
            .shrink(preopen, bound.saturating_sub(after.saturating_sub(before)));
        if after < before {
            self.guard.guard.shrink(preopen, before - after);
        }
        set
    }
}

/// A file's output stream held to its preopen's quota: each write takes
/// what it adds past the file's end from the quota first.
struct QuotaStream {
    inner: DynOutputStream,
    quota: DiskQuota,
    refusals: std::sync::Arc<Refusals>,
    /// Where the next write lands.
    at: u64,
    /// The file's size as far as this stream knows.
    size: u64,
}

impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let end = self.at.saturating_add(bytes.len() as u64);
        let growth = end.saturating_sub(self.size);
        if add(&self.quota.usage.bytes, growth, self.quota.max_bytes).is_err() {
            self.refusals.count(Refused::Quota);
            let quota = std::io::Error::from_raw_os_error(libc::EDQUOT);
            return Err(StreamError::LastOperationFailed(quota.into()));
        }
        self.inner.write(bytes)?;
        self.at = end;
        self.size = self.size.max(end);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }
}

#[async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}
