//! The guest's whole world for one run, from its [`Invocation`]: stdio,
//! args, environment, preopened directories, and the network closed but
//! for `allow_connect` ([`egress`](super::egress)). Nothing else of the
//! host is reachable: no inherited environment, files or sockets.

use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use wasmtime_wasi::cli::{StdinStream, StdoutStream};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::{Connection, Invocation, egress};

/// The most random bytes one call may ask for (wasmtime-wasi allows
/// 64 MiB): filling a buffer is work the host does inside one call, where
/// no tick can stop it, so each call is kept to a few milliseconds. A
/// guest asking for more in one call fails.
const MAX_RANDOM: u64 = 4 << 20;

/// The guest's whole world, from the invocation; the network stays closed
/// but for `allow_connect`.
/// The connection's facts come back untouched, for a component's store.
pub(super) fn wasi_builder<I, O, E>(
    inv: Invocation<'_, I, O, E>,
) -> anyhow::Result<(WasiCtxBuilder, Connection)>
where
    I: StdinStream + 'static,
    O: StdoutStream + 'static,
    E: StdoutStream + 'static,
{
    let mut b = WasiCtxBuilder::new();
    b.stdin(inv.stdin)
        .stdout(inv.stdout)
        .stderr(inv.stderr)
        .args(inv.argv)
        .envs(inv.env)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .max_random_size(MAX_RANDOM);
    // Not `allow_blocking_current_thread`: it would charge file work to the
    // guest's CPU, but it also makes a preview 1 sleep block the worker
    // thread (`std::thread::sleep`), where no deadline reaches it.
    egress::allow(&mut b, inv.allow_connect, inv.report);
    for p in inv.preopens {
        let perms = if p.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        // Held until wasmtime-wasi has opened the folder through it.
        let mut _beneath = None;
        let host = match &p.beneath {
            Some(root) => {
                let fd = open_beneath(root, &p.host)
                    .with_context(|| format!("cannot open preopen `{}`", p.host.display()))?;
                let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                _beneath = Some(fd);
                path
            }
            None => p.host.clone(),
        };
        b.preopened_dir(&host, &p.guest, perms)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot open preopen `{}`", p.host.display()))?;
    }
    Ok((b, inv.connection))
}

/// Opens the folder `host` (inside `root`) so that no step of its path
/// leaves `root`: not `..`, not a symlink pointing out, not a magic link.
/// The folder's owner (a tenant) may rename and symlink inside `root` at
/// will; what this opens is still inside it.
fn open_beneath(root: &Path, host: &Path) -> anyhow::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let below = host
        .strip_prefix(root)
        .with_context(|| format!("`{}` is not inside `{}`", host.display(), root.display()))?;
    let dir = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    let root_fd = rustix::fs::open(root, dir | OFlags::NOFOLLOW, Mode::empty())?;
    let below = if below.as_os_str().is_empty() {
        Path::new(".")
    } else {
        below
    };
    let fd = rustix::fs::openat2(
        &root_fd,
        below,
        dir,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )?;
    Ok(fd)
}
