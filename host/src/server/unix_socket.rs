//! A Unix socket file (`listen_unix`): bound with its mode already set,
//! its mode changed later without following a link, and removed when its
//! listener is retired.
//!
//! `bind(path)` then `chmod(path)` leaves a window: whoever may write the
//! socket's folder can swap a link to another file in between, and the
//! daemon (often root) changes that file's mode. So the socket is bound in
//! a fresh private folder next to its place (mode 0700, opened and checked
//! as the daemon's own), its mode is set there by a name relative to that
//! folder, which nobody else can write, and it is renamed into place:
//! `rename(2)` replaces whatever is at the path and never follows a link.
//! Later mode changes open the path with `O_PATH | O_NOFOLLOW`, check that
//! it is still the socket this daemon bound, and change the mode through
//! that descriptor.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::UnixListener;

use crate::config::{SocketOptions, UnixListen};

/// What a socket file is known by once bound: its device and inode, to
/// tell it apart from a file put in its place since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The socket file at `path` now (never following a link), if it is one.
    pub fn of(path: &Path) -> Option<FileId> {
        let stat = rustix::fs::statat(CWD, path, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        (FileType::from_raw_mode(stat.st_mode) == FileType::Socket).then_some(FileId {
            dev: stat.st_dev,
            ino: stat.st_ino,
        })
    }
}

/// `DEV.INO`, as an upgrade passes it on.
impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.dev, self.ino)
    }
}

impl std::str::FromStr for FileId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (dev, ino) = s.split_once('.').unwrap_or((s, ""));
        Ok(FileId {
            dev: dev.parse()?,
            ino: ino.parse()?,
        })
    }
}

/// Binds a Unix stream socket at `unix.path` with `socket_mode`. A socket
/// file left by an earlier run is replaced, but only if nothing listens on
/// it; any other file there is an error.
pub fn bind(unix: &UnixListen, opts: &SocketOptions) -> anyhow::Result<(UnixListener, FileId)> {
    let path = &unix.path;
    clear_stale(path)?;
    let (parent, name) = split(path)?;
    let parent_fd = rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open the folder of `{}`", path.display()))?;
    let private = Private::create(&parent_fd, parent)
        .with_context(|| format!("cannot bind `{}`", path.display()))?;
    let bound = (|| {
        let socket =
            Socket::new(Domain::UNIX, Type::STREAM, None).context("cannot create a socket")?;
        socket.set_nonblocking(true)?;
        socket
            .bind(&SockAddr::unix(private.path.join("s"))?)
            .with_context(|| format!("cannot bind `{}`", path.display()))?;
        // Only this daemon can put a file named `s` in its private folder:
        // the name is the socket just bound, and the mode is set on it.
        let stat = rustix::fs::statat(&private.fd, "s", AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::Socket {
            anyhow::bail!("the socket bound in `{}` is gone", private.path.display());
        }
        rustix::fs::chmodat(
            &private.fd,
            "s",
            Mode::from_raw_mode(unix.mode),
            AtFlags::empty(),
        )
        .with_context(|| format!("cannot set the mode of `{}`", path.display()))?;
        rustix::fs::renameat(&private.fd, "s", &parent_fd, name)
            .with_context(|| format!("cannot move the socket to `{}`", path.display()))?;
        let backlog = i32::try_from(opts.backlog).unwrap_or(i32::MAX);
        socket
            .listen(backlog)
            .with_context(|| format!("cannot listen on `{}`", path.display()))?;
        let id = FileId {
            dev: stat.st_dev,
            ino: stat.st_ino,
        };
        let listener =
            UnixListener::from_std(socket.into()).context("cannot register the listener")?;
        anyhow::Ok((listener, id))
    })();
    private.remove();
    bound
}

/// Sets the mode of the socket file at `path`, if it is still the socket
/// `id` names; never follows a link put there since.
pub fn set_mode(path: &Path, id: FileId, mode: u32) -> io::Result<()> {
    let fd = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let stat = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Socket
        || stat.st_dev != id.dev
        || stat.st_ino != id.ino
    {
        return Err(io::Error::other(
            "it is no longer the socket this daemon bound",
        ));
    }
    // A descriptor opened with O_PATH cannot be given to fchmod; its
    // /proc/self/fd link names the very inode it holds.
    let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    rustix::fs::chmodat(
        CWD,
        link.as_str(),
        Mode::from_raw_mode(mode),
        AtFlags::empty(),
    )?;
    Ok(())
}

/// Removes a retired socket's file, so clients find no socket rather than
/// one nobody accepts on. Anything else found there is left alone.
pub fn remove(path: &Path, id: FileId) {
    let same = rustix::fs::statat(CWD, path, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|s| {
        FileType::from_raw_mode(s.st_mode) == FileType::Socket
            && s.st_dev == id.dev
            && s.st_ino == id.ino
    });
    if same && let Err(e) = std::fs::remove_file(path) {
        tracing::warn!("cannot remove the socket file `{}`: {e}", path.display());
    }
}

/// Removes a socket file nothing listens on (left by an earlier run).
fn clear_stale(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt as _;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => anyhow::bail!(
                    "cannot bind `{}`: another process listens on it",
                    path.display()
                ),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path).with_context(|| {
                        format!("cannot remove the stale socket `{}`", path.display())
                    })
                }
                Err(e) => Err(e)
                    .with_context(|| format!("cannot tell whether `{}` is in use", path.display())),
            }
        }
        Ok(_) => anyhow::bail!(
            "cannot bind `{}`: it exists and is not a socket",
            path.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot inspect `{}`", path.display())),
    }
}

fn split(path: &Path) -> anyhow::Result<(&Path, &std::ffi::OsStr)> {
    let name = path
        .file_name()
        .with_context(|| format!("`{}` names no file", path.display()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((parent, name))
}

/// A folder only this daemon can write, next to the socket's place.
struct Private<'a> {
    parent_fd: &'a OwnedFd,
    name: String,
    path: PathBuf,
    fd: OwnedFd,
}

impl<'a> Private<'a> {
    fn create(parent_fd: &'a OwnedFd, parent: &Path) -> anyhow::Result<Self> {
        // Short names: a socket's path is at most 107 bytes, and this
        // folder's path is the bound one.
        for n in 0..1000u32 {
            let name = format!(".w{n}");
            match rustix::fs::mkdirat(parent_fd, name.as_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(io::Error::from(e)).context("cannot make a private folder"),
            }
            let fd = rustix::fs::openat(
                parent_fd,
                name.as_str(),
                OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY,
                Mode::empty(),
            )?;
            let stat = rustix::fs::fstat(&fd)?;
            if stat.st_uid != rustix::process::geteuid().as_raw() || stat.st_mode & 0o077 != 0 {
                anyhow::bail!("the private folder `{name}` was replaced by someone else's");
            }
            return Ok(Private {
                parent_fd,
                path: parent.join(&name),
                name,
                fd,
            });
        }
        anyhow::bail!(
            "no free name for a private folder in `{}`",
            parent.display()
        )
    }

    fn remove(self) {
        let _ = rustix::fs::unlinkat(&self.fd, "s", AtFlags::empty());
        let _ = rustix::fs::unlinkat(
            self.parent_fd.as_fd(),
            self.name.as_str(),
            AtFlags::REMOVEDIR,
        );
    }
}
