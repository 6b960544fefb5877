//! Opening, guarded: a descriptor or a directory stream is charged to the
//! descriptor budget, and only a regular file or a directory is opened.

use wasmtime::component::Resource;
use wasmtime_wasi::p2::FsResult;
use wasmtime_wasi::p2::bindings::filesystem::types;
use wasmtime_wasi::p2::bindings::filesystem::types::HostDescriptor as _;

use super::{GuardedFs, Held, again, fs_error};

impl GuardedFs<'_> {
    /// `open-at`, within the descriptor budget; a FIFO, a device or a socket
    /// is not opened (`access`).
    pub(super) async fn guarded_open_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        let _work = self.guard_ref().file_work(true);
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
        let creates = oflags.contains(types::OpenFlags::CREATE) && matches!(existing, Some(None));
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

    /// `read-directory`: the stream holds a descriptor until it is dropped.
    pub(super) async fn guarded_read_directory(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<types::DirectoryEntryStream>> {
        let _work = self.guard_ref().file_work(true);
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
}
