//! The preview 1 interface, call by call: a call the guard checks is
//! handed to [`super::descriptors`], [`super::quota`] or
//! [`super::entries`]; every other is passed to wasmtime-wasi as it is,
//! through the macros below, which write out a call from its signature.

use wasmtime_wasi::p1::types;
use wasmtime_wasi::p1::wasi_snapshot_preview1::{UserErrorConversion, WasiSnapshotPreview1};
use wiggle::{GuestMemory, GuestPtr};

use super::GuardedP1;

/// Calls passed to wasmtime-wasi as they are, each given by its signature
/// less `&mut self, memory`.
macro_rules! passed {
    ($(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
        fn $name(&mut self, memory: &mut GuestMemory<'_>, $($arg: $ty),*) -> $ret {
            self.wasi.$name(memory, $($arg),*)
        }
    )*};
}

/// Calls on a descriptor passed to wasmtime-wasi as they are, their time
/// charged to the guest's CPU as file work when `fd` is one of its files
/// (not stdio); each given by its signature less `&mut self, memory`.
macro_rules! charged_if_file {
    ($(async fn $name:ident(fd: types::Fd $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {$(
        async fn $name(
            &mut self,
            memory: &mut GuestMemory<'_>,
            fd: types::Fd,
            $($arg: $ty),*
        ) -> $ret {
            let _work = self
                .guard_ref()
                .file_work(self.fds.contains_key(&u32::from(fd)));
            self.wasi.$name(memory, fd, $($arg),*).await
        }
    )*};
}

/// Calls on a path passed to wasmtime-wasi as they are, their time charged
/// to the guest's CPU as file work; each given by its signature less
/// `&mut self, memory`.
macro_rules! charged {
    ($(async fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
        async fn $name(&mut self, memory: &mut GuestMemory<'_>, $($arg: $ty),*) -> $ret {
            let _work = self.guard_ref().file_work(true);
            self.wasi.$name(memory, $($arg),*).await
        }
    )*};
}

impl UserErrorConversion for GuardedP1 {}

impl WasiSnapshotPreview1 for GuardedP1 {
    fn set_hostcall_fuel(&mut self, fuel: usize) {
        self.wasi.set_hostcall_fuel(fuel);
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
        self.guarded_path_open(
            memory,
            dirfd,
            dirflags,
            path,
            oflags,
            fs_rights_base,
            fs_rights_inheriting,
            fdflags,
        )
        .await
    }

    async fn fd_close(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<(), types::Error> {
        self.guarded_fd_close(memory, fd).await
    }

    async fn fd_renumber(
        &mut self,
        memory: &mut GuestMemory<'_>,
        from_fd: types::Fd,
        to_fd: types::Fd,
    ) -> Result<(), types::Error> {
        self.guarded_fd_renumber(memory, from_fd, to_fd).await
    }

    async fn fd_write(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
    ) -> Result<types::Size, types::Error> {
        self.guarded_fd_write(memory, fd, ciovs).await
    }

    async fn fd_pwrite(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
        offset: types::Filesize,
    ) -> Result<types::Size, types::Error> {
        self.guarded_fd_pwrite(memory, fd, ciovs, offset).await
    }

    async fn fd_filestat_set_size(
        &mut self,
        memory: &mut GuestMemory<'_>,
        fd: types::Fd,
        size: types::Filesize,
    ) -> Result<(), types::Error> {
        self.guarded_fd_filestat_set_size(memory, fd, size).await
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
        self.guarded_path_create_directory(memory, dirfd, path)
            .await
    }

    async fn path_symlink(
        &mut self,
        memory: &mut GuestMemory<'_>,
        src_path: GuestPtr<str>,
        dirfd: types::Fd,
        dest_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        self.guarded_path_symlink(memory, src_path, dirfd, dest_path)
            .await
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
        self.guarded_path_link(memory, src_fd, src_flags, src_path, target_fd, target_path)
            .await
    }

    async fn path_unlink_file(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        self.guarded_path_unlink_file(memory, dirfd, path).await
    }

    async fn path_remove_directory(
        &mut self,
        memory: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        self.guarded_path_remove_directory(memory, dirfd, path)
            .await
    }

    async fn path_rename(
        &mut self,
        memory: &mut GuestMemory<'_>,
        src_fd: types::Fd,
        src_path: GuestPtr<str>,
        dest_fd: types::Fd,
        dest_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        self.guarded_path_rename(memory, src_fd, src_path, dest_fd, dest_path)
            .await
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

    charged_if_file! {
        async fn fd_advise(
            fd: types::Fd,
            offset: types::Filesize,
            len: types::Filesize,
            advice: types::Advice
        ) -> Result<(), types::Error>;
        async fn fd_datasync(fd: types::Fd) -> Result<(), types::Error>;
        async fn fd_fdstat_get(fd: types::Fd) -> Result<types::Fdstat, types::Error>;
        async fn fd_filestat_get(fd: types::Fd) -> Result<types::Filestat, types::Error>;
        async fn fd_filestat_set_times(
            fd: types::Fd,
            atim: types::Timestamp,
            mtim: types::Timestamp,
            fst_flags: types::Fstflags
        ) -> Result<(), types::Error>;
        async fn fd_read(
            fd: types::Fd,
            iovs: types::IovecArray
        ) -> Result<types::Size, types::Error>;
        async fn fd_pread(
            fd: types::Fd,
            iovs: types::IovecArray,
            offset: types::Filesize
        ) -> Result<types::Size, types::Error>;
        async fn fd_seek(
            fd: types::Fd,
            offset: types::Filedelta,
            whence: types::Whence
        ) -> Result<types::Filesize, types::Error>;
        async fn fd_sync(fd: types::Fd) -> Result<(), types::Error>;
        async fn fd_readdir(
            fd: types::Fd,
            buf: GuestPtr<u8>,
            buf_len: types::Size,
            cookie: types::Dircookie
        ) -> Result<types::Size, types::Error>;
    }

    charged! {
        async fn path_filestat_get(
            dirfd: types::Fd,
            flags: types::Lookupflags,
            path: GuestPtr<str>
        ) -> Result<types::Filestat, types::Error>;
        async fn path_filestat_set_times(
            dirfd: types::Fd,
            flags: types::Lookupflags,
            path: GuestPtr<str>,
            atim: types::Timestamp,
            mtim: types::Timestamp,
            fst_flags: types::Fstflags
        ) -> Result<(), types::Error>;
        async fn path_readlink(
            dirfd: types::Fd,
            path: GuestPtr<str>,
            buf: GuestPtr<u8>,
            buf_len: types::Size
        ) -> Result<types::Size, types::Error>;
    }

    passed! {
        fn sched_yield() -> Result<(), types::Error>;
        fn args_get(
            argv: GuestPtr<GuestPtr<u8>>,
            argv_buf: GuestPtr<u8>
        ) -> Result<(), types::Error>;
        fn args_sizes_get() -> Result<(types::Size, types::Size), types::Error>;
        fn environ_get(
            environ: GuestPtr<GuestPtr<u8>>,
            environ_buf: GuestPtr<u8>
        ) -> Result<(), types::Error>;
        fn environ_sizes_get() -> Result<(types::Size, types::Size), types::Error>;
        fn clock_res_get(id: types::Clockid) -> Result<types::Timestamp, types::Error>;
        fn clock_time_get(
            id: types::Clockid,
            precision: types::Timestamp
        ) -> Result<types::Timestamp, types::Error>;
        fn fd_fdstat_set_flags(fd: types::Fd, flags: types::Fdflags) -> Result<(), types::Error>;
        fn fd_fdstat_set_rights(
            fd: types::Fd,
            fs_rights_base: types::Rights,
            fs_rights_inheriting: types::Rights
        ) -> Result<(), types::Error>;
        fn fd_prestat_get(fd: types::Fd) -> Result<types::Prestat, types::Error>;
        fn fd_prestat_dir_name(
            fd: types::Fd,
            path: GuestPtr<u8>,
            path_max_len: types::Size
        ) -> Result<(), types::Error>;
        fn fd_tell(fd: types::Fd) -> Result<types::Filesize, types::Error>;
        fn proc_exit(status: types::Exitcode) -> wasmtime::Error;
        fn proc_raise(sig: types::Signal) -> Result<(), types::Error>;
        fn random_get(buf: GuestPtr<u8>, buf_len: types::Size) -> Result<(), types::Error>;
        fn sock_accept(fd: types::Fd, flags: types::Fdflags) -> Result<types::Fd, types::Error>;
        fn sock_recv(
            fd: types::Fd,
            ri_data: types::IovecArray,
            ri_flags: types::Riflags
        ) -> Result<(types::Size, types::Roflags), types::Error>;
        fn sock_send(
            fd: types::Fd,
            si_data: types::CiovecArray,
            si_flags: types::Siflags
        ) -> Result<types::Size, types::Error>;
        fn sock_shutdown(fd: types::Fd, how: types::Sdflags) -> Result<(), types::Error>;
    }
}
