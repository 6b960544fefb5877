//! Guests compiled for a config, once per distinct guest, and remembered by
//! content so that a reload recompiles only what changed.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

use crate::bundled;
use crate::config::{GuestSource, ServiceSpec};
use crate::conn::service::Service;
use crate::sandbox::{Guest, Sandbox};

/// A service whose guest could not be prepared, with the reason.
#[derive(Debug)]
pub struct LoadError {
    pub spec: ServiceSpec,
    pub error: anyhow::Error,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: service `{}`: {:#}",
            self.spec.file.display(),
            self.spec.lines.server,
            self.spec.name,
            self.error
        )
    }
}

/// The guests of a config, by source, each with the digest of the bytes it
/// was compiled from.
#[derive(Clone, Default)]
pub struct Guests(HashMap<GuestSource, (Fingerprint, Guest)>);

/// What a guest was compiled from: SHA-256 of its bytes.
pub type Fingerprint = [u8; 32];

impl Guests {
    /// The guest of `source` and its fingerprint, if it was prepared.
    pub fn get(&self, source: &GuestSource) -> Option<&(Fingerprint, Guest)> {
        self.0.get(source)
    }

    /// Every guest, by source.
    pub fn iter(&self) -> impl Iterator<Item = (&GuestSource, &(Fingerprint, Guest))> {
        self.0.iter()
    }

    /// Adds (or replaces) the guest of `source`.
    pub fn insert(&mut self, source: GuestSource, entry: (Fingerprint, Guest)) {
        self.0.insert(source, entry);
    }
}

/// A config's services with their guests, those that failed, and those
/// whose guests are still to be compiled.
pub struct Prepared {
    pub services: Vec<Service>,
    pub failed: Vec<LoadError>,
    pub guests: Guests,
    /// Services whose guest was not in the compiled-code cache, when only
    /// the cache was asked ([`prepare_cached`]).
    pub pending: Vec<ServiceSpec>,
}

/// How guests are found for [`prepare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loading {
    /// Compiled when not cached.
    Compile,
    /// From the cache only; the rest are left pending.
    CachedOnly,
}

/// Compiles every service's guest, once per distinct guest. A guest whose
/// bytes are those `known` was compiled from is taken from there as it is
/// (a reload of an unchanged guest costs a read and a digest).
pub fn prepare(sandbox: &Sandbox, specs: Vec<ServiceSpec>, known: &Guests) -> Prepared {
    prepare_with(sandbox, specs, known, Loading::Compile)
}

/// Like [`prepare`], without compiling: services whose guest is not in the
/// compiled-code cache are left in [`Prepared::pending`], for start-up to
/// serve the others at once and compile these meanwhile.
pub fn prepare_cached(sandbox: &Sandbox, specs: Vec<ServiceSpec>) -> Prepared {
    prepare_with(sandbox, specs, &Guests::default(), Loading::CachedOnly)
}

fn prepare_with(
    sandbox: &Sandbox,
    specs: Vec<ServiceSpec>,
    known: &Guests,
    loading: Loading,
) -> Prepared {
    let mut outcomes: HashMap<GuestSource, Result<Option<(Fingerprint, Guest)>, String>> =
        HashMap::new();
    let mut prepared = Prepared {
        services: Vec::new(),
        failed: Vec::new(),
        guests: Guests::default(),
        pending: Vec::new(),
    };
    for spec in specs {
        if !spec.guest.runs_guest() {
            prepared.services.push(Service::new(spec, None));
            continue;
        }
        let outcome = outcomes
            .entry(spec.guest.clone())
            .or_insert_with(|| {
                load_guest(sandbox, &spec.guest, known, loading).map_err(|e| format!("{e:#}"))
            })
            .clone();
        match outcome {
            Ok(None) => prepared.pending.push(spec),
            Ok(Some((_, guest))) if !spec.allow_connect.is_empty() && !guest.is_component() => {
                let error = anyhow::anyhow!(
                    "`allow_connect` needs a component (wasm32-wasip2) guest, and `{}` is a \
                     preview 1 module, which has no sockets: build it for wasip2, or remove \
                     `allow_connect`",
                    spec.guest
                );
                prepared.failed.push(LoadError { spec, error });
            }
            Ok(Some(entry)) => {
                prepared.guests.0.insert(spec.guest.clone(), entry.clone());
                prepared.services.push(Service::new(spec, Some(entry.1)));
            }
            Err(error) => prepared.failed.push(LoadError {
                spec,
                error: anyhow::anyhow!(error),
            }),
        }
    }
    prepared
}

/// Loads a guest, from `known` when its bytes did not change, and logs
/// whether its code was compiled or cached, and how long that took;
/// `None` when it is not cached and `loading` says not to compile.
fn load_guest(
    sandbox: &Sandbox,
    source: &GuestSource,
    known: &Guests,
    loading: Loading,
) -> anyhow::Result<Option<(Fingerprint, Guest)>> {
    let started = Instant::now();
    let bytes = guest_bytes(source, sandbox.compile_limits().max_bytes)?;
    let fingerprint: Fingerprint = Sha256::digest(&bytes).into();
    if let Some((known_print, guest)) = known.get(source)
        && *known_print == fingerprint
    {
        return Ok(Some((fingerprint, guest.clone())));
    }
    let loaded = match loading {
        Loading::Compile => sandbox.load(&bytes).map(Some),
        Loading::CachedOnly => sandbox.load_cached(&bytes),
    };
    let guest = match source {
        GuestSource::Internal(name) => {
            loaded.with_context(|| format!("cannot load the bundled guest `{name}`"))?
        }
        _ => loaded.with_context(|| format!("cannot load guest `{source}`"))?,
    };
    let Some(guest) = guest else {
        return Ok(None);
    };
    tracing::info!(
        "guest `{source}` {} in {:.1?}",
        guest.origin().as_str(),
        started.elapsed()
    );
    Ok(Some((fingerprint, guest)))
}

/// The bytes of a guest: its file, or the bundled one.
fn guest_bytes(
    source: &GuestSource,
    max_bytes: u64,
) -> anyhow::Result<std::borrow::Cow<'static, [u8]>> {
    match source {
        GuestSource::File(path) => crate::config::files::read(path, max_bytes)
            .map(Into::into)
            .context("cannot read the guest file")
            .with_context(|| format!("cannot load guest `{}`", path.display())),
        GuestSource::Internal(name) => match bundled::guest(name) {
            Some(bytes) => Ok(bytes.into()),
            None => bail!(
                "no internal service `{name}`; the bundled ones are: {}",
                bundled::NAMES.join(", ")
            ),
        },
        GuestSource::Redirect(addr) => bail!("`redirect` to {addr} runs no guest"),
        GuestSource::Sensor(_) => bail!("a `flags = SENSOR` service runs no guest"),
    }
}
