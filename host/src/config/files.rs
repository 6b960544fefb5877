//! Reading a file a config names (the config itself, its includes, a
//! banner, a guest): only a regular file, and only up to a size. A FIFO, a
//! device or a socket named there would hang the daemon at start or at a
//! reload (a FIFO with no writer never ends, `/dev/zero` never stops), so
//! it is refused before a byte is read: the file is opened non-blocking
//! (opening a FIFO then returns at once) and checked with `fstat`.

use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

/// Why a file was not read.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// Not a regular file: what it is.
    NotAFile(&'static str),
    /// Larger than the limit, in bytes.
    TooLarge(u64),
    /// Writable by others than its owner: its permission bits.
    Writable(u32),
    /// A symlink, where only a file itself is read.
    Symlink,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => e.fmt(f),
            ReadError::NotAFile(what) => write!(f, "it is {what}, not a regular file"),
            ReadError::TooLarge(max) => write!(f, "it is larger than the limit of {}", size(*max)),
            ReadError::Writable(mode) => write!(
                f,
                "it is writable by others than its owner (mode {mode:04o}); `chmod go-w` it"
            ),
            ReadError::Symlink => write!(
                f,
                "it is a symlink; a tenant's files are read as themselves"
            ),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// `bytes` as a person writes a size: `64 KiB`, `1 MiB`, `256 MiB`.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Opens `path` for reading if it is a regular file (symlinks followed).
pub fn open_regular(path: &Path) -> Result<File, ReadError> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    let what = if kind.is_file() {
        return Ok(file);
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Err(ReadError::NotAFile(what))
}

/// The bytes of the regular file `path`, at most `max` of them.
pub fn read(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge(max));
    }
    Ok(bytes)
}

/// The permission bits of `meta` when its group or others may write it.
pub fn writable_by_others(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let mode = meta.mode() & 0o7777;
    (mode & 0o022 != 0).then_some(mode)
}

/// Like [`read_text`], for a file a tenant may own: not through a symlink
/// (the tenant could point it anywhere), and not when anyone but its owner
/// may write it (checked on the open file, so a swap after the check
/// changes nothing).
pub fn read_text_owned(path: &Path, max: u64) -> Result<String, ReadError> {
    let file = match File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(ReadError::Symlink),
        opened => opened?,
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile("not a regular file"));
    }
    if let Some(mode) = writable_by_others(&meta) {
        return Err(ReadError::Writable(mode));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge(max));
    }
    String::from_utf8(bytes).map_err(|_| {
        ReadError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "it is not UTF-8 text",
        ))
    })
}

/// Like [`read`], as UTF-8 text.
pub fn read_text(path: &Path, max: u64) -> Result<String, ReadError> {
    String::from_utf8(read(path, max)?).map_err(|_| {
        ReadError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "it is not UTF-8 text",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let dir = std::env::temp_dir().join(format!("wasinetd-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // Returns at once: no writer is waited for.
        let e = read(&fifo, 10).unwrap_err();
        assert_eq!(e.to_string(), "it is a FIFO, not a regular file");
        let e = read(Path::new("/dev/zero"), 10).unwrap_err();
        assert_eq!(e.to_string(), "it is a device, not a regular file");
        assert_eq!(
            read(&dir, 10).unwrap_err().to_string(),
            "it is a directory, not a regular file"
        );
        std::fs::write(dir.join("f"), "0123456789").unwrap();
        assert_eq!(read(&dir.join("f"), 10).unwrap(), b"0123456789");
        assert_eq!(
            read(&dir.join("f"), 9).unwrap_err().to_string(),
            "it is larger than the limit of 9 bytes"
        );
        assert_eq!(size(1 << 20), "1 MiB");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
