//! wasmtime-wasi's filesystem view with the guard in front, call by call:
//! a call the guard checks is handed to [`super::descriptors`],
//! [`super::quota`] or [`super::entries`]; every other is passed to
//! wasmtime-wasi as it is, its time charged to the guest's CPU as file
//! work.

use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::types::HostDescriptor as _;
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsResult};

use super::{Guard, Held, P2Guard, again};

/// wasmtime-wasi's filesystem view with the guard in front.
pub struct GuardedFs<'a> {
    pub fs: WasiFilesystemCtxView<'a>,
    pub guard: &'a mut P2Guard,
}

impl GuardedFs<'_> {
    pub(super) fn guard_ref(&self) -> &Guard {
        &self.guard.guard
    }

    /// What is at `path` in `fd`, links not followed, if anything.
    pub(super) async fn stat_at(
        &mut self,
        fd: &Resource<types::Descriptor>,
        path: &str,
    ) -> Option<types::DescriptorStat> {
        self.fs
            .stat_at(again(fd), types::PathFlags::empty(), path.to_owned())
            .await
            .ok()
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
        self.guarded_open_at(fd, path_flags, path, oflags, flags)
            .await
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
        self.guarded_read_directory(fd).await
    }

    async fn write(
        &mut self,
        fd: Resource<types::Descriptor>,
        buf: Vec<u8>,
        offset: types::Filesize,
    ) -> FsResult<types::Filesize> {
        self.guarded_write(fd, buf, offset).await
    }

    async fn set_size(
        &mut self,
        fd: Resource<types::Descriptor>,
        size: types::Filesize,
    ) -> FsResult<()> {
        self.guarded_set_size(fd, size).await
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
        self.guarded_create_directory_at(fd, path).await
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        self.guarded_symlink_at(fd, src_path, dest_path).await
    }

    async fn link_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path_flags: types::PathFlags,
        old_path: String,
        new_descriptor: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        self.guarded_link_at(fd, old_path_flags, old_path, new_descriptor, new_path)
            .await
    }

    async fn unlink_file_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        self.guarded_unlink_file_at(fd, path).await
    }

    async fn remove_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        self.guarded_remove_directory_at(fd, path).await
    }

    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        self.guarded_rename_at(fd, old_path, new_fd, new_path).await
    }

    async fn advise(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> FsResult<()> {
        let _work = self.guard_ref().file_work(true);
        self.fs.advise(fd, offset, len, advice).await
    }
    async fn sync_data(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        let _work = self.guard_ref().file_work(true);
        self.fs.sync_data(fd).await
    }
    async fn get_flags(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::DescriptorFlags> {
        let _work = self.guard_ref().file_work(true);
        self.fs.get_flags(fd).await
    }
    async fn get_type(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::DescriptorType> {
        let _work = self.guard_ref().file_work(true);
        self.fs.get_type(fd).await
    }
    async fn set_times(
        &mut self,
        fd: Resource<types::Descriptor>,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        let _work = self.guard_ref().file_work(true);
        self.fs.set_times(fd, atim, mtim).await
    }
    async fn read(
        &mut self,
        fd: Resource<types::Descriptor>,
        len: types::Filesize,
        offset: types::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        let _work = self.guard_ref().file_work(true);
        self.fs.read(fd, len, offset).await
    }
    async fn sync(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        let _work = self.guard_ref().file_work(true);
        self.fs.sync(fd).await
    }
    async fn stat(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::DescriptorStat> {
        let _work = self.guard_ref().file_work(true);
        self.fs.stat(fd).await
    }
    async fn stat_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        let _work = self.guard_ref().file_work(true);
        self.fs.stat_at(fd, path_flags, path).await
    }
    async fn set_times_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        let _work = self.guard_ref().file_work(true);
        self.fs.set_times_at(fd, path_flags, path, atim, mtim).await
    }
    async fn readlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<String> {
        let _work = self.guard_ref().file_work(true);
        self.fs.readlink_at(fd, path).await
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
        let _work = self.guard_ref().file_work(true);
        self.fs.is_same_object(a, b).await
    }
    async fn metadata_hash(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::MetadataHashValue> {
        let _work = self.guard_ref().file_work(true);
        self.fs.metadata_hash(fd).await
    }
    async fn metadata_hash_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        let _work = self.guard_ref().file_work(true);
        self.fs.metadata_hash_at(fd, path_flags, path).await
    }
}

impl types::HostDirectoryEntryStream for GuardedFs<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        let _work = self.guard_ref().file_work(true);
        self.fs.read_directory_entry(stream).await
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        let rep = stream.rep();
        types::HostDirectoryEntryStream::drop(&mut self.fs, stream)?;
        self.guard.forget(rep);
        Ok(())
    }
}
