//! The guard in front of wasmtime-wasi's preview 2 filesystem and TCP
//! socket calls: wrappers around its filesystem and sockets views that
//! implement those interfaces by passing every call through, after the
//! guard's checks for the calls that open, close, grow, link or remove
//! (see [`super`]). They are added to a component's linker over
//! wasmtime-wasi's own ([`add_to_linker`]).
//!
//! Preview 2 names files by resources: the guard keeps, per descriptor,
//! directory stream and socket the guest holds, which preopen it lies in
//! and whether it was charged to the descriptor budget; a resource's drop
//! gives its descriptor back. A write through a stream is held to the
//! quota by the stream itself ([`QuotaStream`]).

use std::collections::HashMap;

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::types::HostDescriptor as _;
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
use wasmtime_wasi::p2::bindings::sockets::network;
use wasmtime_wasi::p2::bindings::sockets::network::{
    ErrorCode as NetErrorCode, IpAddressFamily, IpSocketAddress, Network,
};
use wasmtime_wasi::p2::bindings::sockets::tcp::{self, HostTcpSocket, ShutdownType};
use wasmtime_wasi::p2::bindings::sockets::tcp_create_socket;
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, DynPollable, FsResult, OutputStream, Pollable, SocketResult,
    StreamError, StreamResult, TcpSocket,
};
use wasmtime_wasi::sockets::WasiSocketsCtxView;
use wasmtime_wasi::{WasiView, async_trait};

use super::{DiskQuota, Guard, Refused};

/// A run's guard and what it knows of the resources the guest holds.
pub struct P2Guard {
    guard: Guard,
    /// Descriptors and directory streams, by resource.
    held: HashMap<u32, Held>,
    /// Sockets, by resource: each one a descriptor.
    sockets: HashMap<u32, ()>,
}

/// One descriptor or directory stream the guest holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    preopen: Option<usize>,
    /// Charged to the descriptor budget when it was opened.
    counted: bool,
}

impl P2Guard {
    pub fn new(guard: Guard) -> Self {
        P2Guard {
            guard,
            held: HashMap::new(),
            sockets: HashMap::new(),
        }
    }

    fn preopen_of(&self, fd: &Resource<types::Descriptor>) -> Option<usize> {
        self.held.get(&fd.rep()).and_then(|h| h.preopen)
    }

    /// Gives back what the resource `rep` was charged.
    fn forget(&mut self, rep: u32) {
        if let Some(held) = self.held.remove(&rep)
            && held.counted
        {
            self.guard.close();
        }
    }
}

/// The preview 2 filesystem error for a refusal.
fn fs_error(refused: Refused) -> wasmtime_wasi::p2::FsError {
    match refused {
        // There is no EMFILE in `wasi:filesystem`: out of descriptors is
        // out of a resource.
        Refused::Descriptors => types::ErrorCode::InsufficientMemory.into(),
        Refused::Quota => types::ErrorCode::Quota.into(),
        Refused::Symlink => types::ErrorCode::NotPermitted.into(),
    }
}

/// A borrow of the resource `r` stands for, to pass it again.
fn again<T: 'static>(r: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(r.rep())
}

/// wasmtime-wasi's filesystem view with the guard in front.
pub struct GuardedFs<'a> {
    pub fs: WasiFilesystemCtxView<'a>,
    pub guard: &'a mut P2Guard,
}

impl GuardedFs<'_> {
    fn guard_ref(&self) -> &Guard {
        &self.guard.guard
    }

    /// What is at `path` in `fd`, links not followed, if anything.
    async fn stat_at(
        &mut self,
        fd: &Resource<types::Descriptor>,
        path: &str,
    ) -> Option<types::DescriptorStat> {
        self.fs
            .stat_at(again(fd), types::PathFlags::empty(), path.to_owned())
            .await
            .ok()
    }

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
    fn within_quota(
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
}

impl preopens::Host for GuardedFs<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let dirs = preopens::Host::get_directories(&mut self.fs)?;
        // In the order the world lists them, as the guard's rules are.
        for (i, (dir, _)) in dirs.iter().enumerate() {
            self.guard.held.insert(
                dir.rep(),
                Held {
                    preopen: Some(i),
                    counted: false,
                },
            );
        }
        Ok(dirs)
    }
}

impl types::Host for GuardedFs<'_> {
    fn convert_error_code(
        &mut self,
        err: wasmtime_wasi::p2::FsError,
    ) -> wasmtime::Result<types::ErrorCode> {
        types::Host::convert_error_code(&mut self.fs, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<types::ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.fs, err)
    }
}

impl types::HostDescriptor for GuardedFs<'_> {
    async fn open_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<Resource<types::Descriptor>> = async {
            let preopen = self.guard.preopen_of(&fd);
            let target = self
                .fs
                .stat_at(again(&fd), path_flags, path.clone())
                .await
                .ok();
            if target.is_some_and(|t| {
                !matches!(
                    t.type_,
                    types::DescriptorType::RegularFile | types::DescriptorType::Directory
                )
            }) {
                return Err(types::ErrorCode::Access.into());
            }
            self.guard.guard.open().map_err(fs_error)?;
            let changes = oflags.intersects(types::OpenFlags::CREATE | types::OpenFlags::TRUNCATE);
            let existing = if changes && self.guard.guard.quota(preopen).is_some() {
                Some(self.stat_at(&fd, &path).await)
            } else {
                None
            };
            let creates =
                oflags.contains(types::OpenFlags::CREATE) && matches!(existing, Some(None));
            if creates && let Err(e) = self.guard.guard.add_entry(preopen) {
                self.guard.guard.close();
                return Err(fs_error(e));
            }
            match self.fs.open_at(fd, path_flags, path, oflags, flags).await {
                Ok(opened) => {
                    if oflags.contains(types::OpenFlags::TRUNCATE)
                        && let Some(Some(stat)) = existing
                        && stat.type_ == types::DescriptorType::RegularFile
                    {
                        self.guard.guard.shrink(preopen, stat.size);
                    }
                    self.guard.held.insert(
                        opened.rep(),
                        Held {
                            preopen,
                            counted: true,
                        },
                    );
                    Ok(opened)
                }
                Err(e) => {
                    self.guard.guard.close();
                    if creates {
                        self.guard.guard.remove_entry(preopen);
                    }
                    Err(e)
                }
            }
        }
        .await;
        work.charge();
        result
    }

    fn drop(&mut self, fd: Resource<types::Descriptor>) -> wasmtime::Result<()> {
        let rep = fd.rep();
        types::HostDescriptor::drop(&mut self.fs, fd)?;
        self.guard.forget(rep);
        Ok(())
    }

    async fn read_directory(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<types::DirectoryEntryStream>> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<Resource<types::DirectoryEntryStream>> = async {
            // The stream holds the directory open until it is dropped.
            self.guard.guard.open().map_err(fs_error)?;
            match self.fs.read_directory(fd).await {
                Ok(stream) => {
                    self.guard.held.insert(
                        stream.rep(),
                        Held {
                            preopen: None,
                            counted: true,
                        },
                    );
                    Ok(stream)
                }
                Err(e) => {
                    self.guard.guard.close();
                    Err(e)
                }
            }
        }
        .await;
        work.charge();
        result
    }

    async fn write(
        &mut self,
        fd: Resource<types::Descriptor>,
        buf: Vec<u8>,
        offset: types::Filesize,
    ) -> FsResult<types::Filesize> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<types::Filesize> = async {
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
        .await;
        work.charge();
        result
    }

    async fn set_size(
        &mut self,
        fd: Resource<types::Descriptor>,
        size: types::Filesize,
    ) -> FsResult<()> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<()> = async {
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
        .await;
        work.charge();
        result
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        let stream = self.fs.write_via_stream(again(&fd), offset)?;
        self.within_quota(&fd, stream, Some(offset))
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let stream = self.fs.append_via_stream(again(&fd))?;
        self.within_quota(&fd, stream, None)
    }

    async fn create_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<()> = async {
            let preopen = self.guard.preopen_of(&fd);
            self.guard.guard.add_entry(preopen).map_err(fs_error)?;
            let made = self.fs.create_directory_at(fd, path).await;
            if made.is_err() {
                self.guard.guard.remove_entry(preopen);
            }
            made
        }
        .await;
        work.charge();
        result
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<()> = async {
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
        .await;
        work.charge();
        result
    }

    async fn link_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path_flags: types::PathFlags,
        old_path: String,
        new_descriptor: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<()> = async {
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
        .await;
        work.charge();
        result
    }

    async fn unlink_file_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<()> = async {
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
        .await;
        work.charge();
        result
    }

    async fn remove_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<()> = async {
            let preopen = self.guard.preopen_of(&fd);
            self.fs.remove_directory_at(fd, path).await?;
            self.guard.guard.remove_entry(preopen);
            Ok(())
        }
        .await;
        work.charge();
        result
    }

    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<()> = async {
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
        .await;
        work.charge();
        result
    }

    async fn advise(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> FsResult<()> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<()> = async { self.fs.advise(fd, offset, len, advice).await }.await;
        work.charge();
        result
    }
    async fn sync_data(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<()> = async { self.fs.sync_data(fd).await }.await;
        work.charge();
        result
    }
    async fn get_flags(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::DescriptorFlags> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<types::DescriptorFlags> = async { self.fs.get_flags(fd).await }.await;
        work.charge();
        result
    }
    async fn get_type(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::DescriptorType> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<types::DescriptorType> = async { self.fs.get_type(fd).await }.await;
        work.charge();
        result
    }
    async fn set_times(
        &mut self,
        fd: Resource<types::Descriptor>,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<()> = async { self.fs.set_times(fd, atim, mtim).await }.await;
        work.charge();
        result
    }
    async fn read(
        &mut self,
        fd: Resource<types::Descriptor>,
        len: types::Filesize,
        offset: types::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<(Vec<u8>, bool)> = async { self.fs.read(fd, len, offset).await }.await;
        work.charge();
        result
    }
    async fn sync(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<()> = async { self.fs.sync(fd).await }.await;
        work.charge();
        result
    }
    async fn stat(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::DescriptorStat> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<types::DescriptorStat> = async { self.fs.stat(fd).await }.await;
        work.charge();
        result
    }
    async fn stat_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<types::DescriptorStat> =
            async { self.fs.stat_at(fd, path_flags, path).await }.await;
        work.charge();
        result
    }
    async fn set_times_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<()> =
            async { self.fs.set_times_at(fd, path_flags, path, atim, mtim).await }.await;
        work.charge();
        result
    }
    async fn readlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<String> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<String> = async { self.fs.readlink_at(fd, path).await }.await;
        work.charge();
        result
    }
    fn read_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        self.fs.read_via_stream(fd, offset)
    }
    async fn is_same_object(
        &mut self,
        a: Resource<types::Descriptor>,
        b: Resource<types::Descriptor>,
    ) -> wasmtime::Result<bool> {
        let work = self.guard_ref().file_work(true);
        let result: wasmtime::Result<bool> = async { self.fs.is_same_object(a, b).await }.await;
        work.charge();
        result
    }
    async fn metadata_hash(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::MetadataHashValue> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<types::MetadataHashValue> =
            async { self.fs.metadata_hash(fd).await }.await;
        work.charge();
        result
    }
    async fn metadata_hash_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<types::MetadataHashValue> =
            async { self.fs.metadata_hash_at(fd, path_flags, path).await }.await;
        work.charge();
        result
    }
}

impl types::HostDirectoryEntryStream for GuardedFs<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        let work = self.guard_ref().file_work(true);
        let result: FsResult<Option<types::DirectoryEntry>> =
            async { self.fs.read_directory_entry(stream).await }.await;
        work.charge();
        result
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        let rep = stream.rep();
        types::HostDirectoryEntryStream::drop(&mut self.fs, stream)?;
        self.guard.forget(rep);
        Ok(())
    }
}

/// A file's output stream held to its preopen's quota: each write takes
/// what it adds past the file's end from the quota first.
struct QuotaStream {
    inner: DynOutputStream,
    quota: DiskQuota,
    refusals: std::sync::Arc<super::Refusals>,
    /// Where the next write lands.
    at: u64,
    /// The file's size as far as this stream knows.
    size: u64,
}

impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let end = self.at.saturating_add(bytes.len() as u64);
        let growth = end.saturating_sub(self.size);
        if super::add(&self.quota.usage.bytes, growth, self.quota.max_bytes).is_err() {
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

/// wasmtime-wasi's sockets view with the guard in front.
pub struct GuardedSockets<'a> {
    pub sockets: WasiSocketsCtxView<'a>,
    pub guard: &'a mut P2Guard,
}

impl tcp_create_socket::Host for GuardedSockets<'_> {
    fn create_tcp_socket(
        &mut self,
        address_family: IpAddressFamily,
    ) -> SocketResult<Resource<TcpSocket>> {
        if self.guard.guard.open().is_err() {
            return Err(NetErrorCode::NewSocketLimit.into());
        }
        match self.sockets.create_tcp_socket(address_family) {
            Ok(socket) => {
                self.guard.sockets.insert(socket.rep(), ());
                Ok(socket)
            }
            Err(e) => {
                self.guard.guard.close();
                Err(e)
            }
        }
    }
}

impl tcp::Host for GuardedSockets<'_> {}

impl network::Host for GuardedSockets<'_> {
    fn convert_error_code(
        &mut self,
        error: wasmtime_wasi::p2::SocketError,
    ) -> wasmtime::Result<NetErrorCode> {
        network::Host::convert_error_code(&mut self.sockets, error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<NetErrorCode>> {
        network::Host::network_error_code(&mut self.sockets, err)
    }
}

impl network::HostNetwork for GuardedSockets<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.sockets, this)
    }
}

impl HostTcpSocket for GuardedSockets<'_> {
    fn drop(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<()> {
        let rep = this.rep();
        HostTcpSocket::drop(&mut self.sockets, this)?;
        if self.guard.sockets.remove(&rep).is_some() {
            self.guard.guard.close();
        }
        Ok(())
    }

    async fn start_bind(
        &mut self,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        local_address: IpSocketAddress,
    ) -> SocketResult<()> {
        self.sockets.start_bind(this, network, local_address).await
    }
    fn finish_bind(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        self.sockets.finish_bind(this)
    }
    fn start_connect(
        &mut self,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        remote_address: IpSocketAddress,
    ) -> SocketResult<()> {
        self.sockets.start_connect(this, network, remote_address)
    }
    fn finish_connect(
        &mut self,
        this: Resource<TcpSocket>,
    ) -> SocketResult<(Resource<DynInputStream>, Resource<DynOutputStream>)> {
        self.sockets.finish_connect(this)
    }
    async fn start_listen(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        self.sockets.start_listen(this).await
    }
    fn finish_listen(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        self.sockets.finish_listen(this)
    }
    fn accept(
        &mut self,
        this: Resource<TcpSocket>,
    ) -> SocketResult<(
        Resource<TcpSocket>,
        Resource<DynInputStream>,
        Resource<DynOutputStream>,
    )> {
        self.sockets.accept(this)
    }
    fn local_address(&mut self, this: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        self.sockets.local_address(this)
    }
    fn remote_address(&mut self, this: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        self.sockets.remote_address(this)
    }
    fn is_listening(&mut self, this: Resource<TcpSocket>) -> Result<bool, wasmtime::Error> {
        self.sockets.is_listening(this)
    }
    fn address_family(
        &mut self,
        this: Resource<TcpSocket>,
    ) -> Result<IpAddressFamily, wasmtime::Error> {
        self.sockets.address_family(this)
    }
    fn set_listen_backlog_size(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.sockets.set_listen_backlog_size(this, value)
    }
    fn keep_alive_enabled(&mut self, this: Resource<TcpSocket>) -> SocketResult<bool> {
        self.sockets.keep_alive_enabled(this)
    }
    fn set_keep_alive_enabled(
        &mut self,
        this: Resource<TcpSocket>,
        value: bool,
    ) -> SocketResult<()> {
        self.sockets.set_keep_alive_enabled(this, value)
    }
    fn keep_alive_idle_time(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.sockets.keep_alive_idle_time(this)
    }
    fn set_keep_alive_idle_time(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.sockets.set_keep_alive_idle_time(this, value)
    }
    fn keep_alive_interval(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.sockets.keep_alive_interval(this)
    }
    fn set_keep_alive_interval(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.sockets.set_keep_alive_interval(this, value)
    }
    fn keep_alive_count(&mut self, this: Resource<TcpSocket>) -> SocketResult<u32> {
        self.sockets.keep_alive_count(this)
    }
    fn set_keep_alive_count(&mut self, this: Resource<TcpSocket>, value: u32) -> SocketResult<()> {
        self.sockets.set_keep_alive_count(this, value)
    }
    fn hop_limit(&mut self, this: Resource<TcpSocket>) -> SocketResult<u8> {
        self.sockets.hop_limit(this)
    }
    fn set_hop_limit(&mut self, this: Resource<TcpSocket>, value: u8) -> SocketResult<()> {
        self.sockets.set_hop_limit(this, value)
    }
    fn receive_buffer_size(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.sockets.receive_buffer_size(this)
    }
    fn set_receive_buffer_size(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.sockets.set_receive_buffer_size(this, value)
    }
    fn send_buffer_size(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.sockets.send_buffer_size(this)
    }
    fn set_send_buffer_size(&mut self, this: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        self.sockets.set_send_buffer_size(this, value)
    }
    fn subscribe(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<Resource<DynPollable>> {
        self.sockets.subscribe(this)
    }
    fn shutdown(
        &mut self,
        this: Resource<TcpSocket>,
        shutdown_type: ShutdownType,
    ) -> SocketResult<()> {
        self.sockets.shutdown(this, shutdown_type)
    }
}

/// The guard's own state in a component's store, next to its WASI context.
pub trait GuardedView: WasiView {
    fn guarded_fs(&mut self) -> GuardedFs<'_>;
    fn guarded_sockets(&mut self) -> GuardedSockets<'_>;
}

struct Fs;
impl HasData for Fs {
    type Data<'a> = GuardedFs<'a>;
}

struct Sockets;
impl HasData for Sockets {
    type Data<'a> = GuardedSockets<'a>;
}

/// Adds WASI preview 2 to `linker`, with the filesystem and TCP sockets
/// behind the guard: wasmtime-wasi's own, then these in place of its
/// filesystem, preopens, TCP and TCP-socket-creation interfaces.
pub fn add_to_linker<T: GuardedView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    linker.allow_shadowing(true);
    types::add_to_linker::<T, Fs>(linker, T::guarded_fs)?;
    preopens::add_to_linker::<T, Fs>(linker, T::guarded_fs)?;
    tcp::add_to_linker::<T, Sockets>(linker, T::guarded_sockets)?;
    tcp_create_socket::add_to_linker::<T, Sockets>(linker, T::guarded_sockets)?;
    linker.allow_shadowing(false);
    Ok(())
}

#[allow(unused_imports)]
use {
    DynInputStream as _, DynPollable as _, IpSocketAddress as _, Network as _, ShutdownType as _,
};
