//! The guest's whole world for one run, from its [`Invocation`]: stdio,
//! args, environment, preopened directories, and the network closed but
//! for `allow_connect` ([`egress`](super::egress)). Nothing else of the
//! host is reachable: no inherited environment, files or sockets.

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
        b.preopened_dir(&p.host, &p.guest, perms)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot open preopen `{}`", p.host.display()))?;
    }
    Ok((b, inv.connection))
}
