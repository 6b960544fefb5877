//! Build tools published on npm, pinned like the Python ones ([`super::tools`]):
//! each package's tarball by version and SHA-256, fetched on first use with
//! `npm pack` (npm's own client, so its registry, mirror and proxy settings
//! apply) into the cache's `tools/`, checked against its sum before every
//! build, and unpacked afresh into the build's own folder. No package
//! script ever runs: the tarballs are only unpacked.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::tools::{Scratch, progress, verify};

/// One pinned npm tarball: `name@version`, the file `npm pack` writes, and
/// its SHA-256; `arch` is the machine it is for (`None`: any).
pub struct Tarball {
    pub name: &'static str,
    pub version: &'static str,
    arch: Option<&'static str>,
    file: &'static str,
    sha256: &'static str,
}

/// componentize-qjs 0.4.5: QuickJS-ng built into a component around a
/// JavaScript module, snapshotted with Wizer after the module's top level.
/// Its JavaScript front end, and its native core (a Node-API addon) for
/// each machine it is pinned for (npm's `optionalDependencies`).
pub const COMPONENTIZE_QJS: &[Tarball] = &[
    Tarball {
        name: "componentize-qjs",
        version: "0.4.5",
        arch: None,
        file: "componentize-qjs-0.4.5.tgz",
        sha256: "5f59d989c79090c7444725cfc08cdabc054e7f19e0dbec6351f1978c8046b6af",
    },
    Tarball {
        name: "@andreiltd/componentize-qjs-binding-linux-x64-gnu",
        version: "0.4.5",
        arch: Some("x86_64"),
        file: "andreiltd-componentize-qjs-binding-linux-x64-gnu-0.4.5.tgz",
        sha256: "66fdcdcd7f52b7606211a5118d7dfab5879434a60b601ccf707b3c2c8d92d0d6",
    },
    Tarball {
        name: "@andreiltd/componentize-qjs-binding-linux-arm64-gnu",
        version: "0.4.5",
        arch: Some("aarch64"),
        file: "andreiltd-componentize-qjs-binding-linux-arm64-gnu-0.4.5.tgz",
        sha256: "76c149f60663597b330e3f12a064ac837d0f83c3e00f462b600d50b32245e15e",
    },
];

/// The tarballs of `pins` this machine needs.
fn for_this_machine(pins: &'static [Tarball]) -> anyhow::Result<Vec<&'static Tarball>> {
    let arch = std::env::consts::ARCH;
    if std::env::consts::OS != "linux" {
        bail!(
            "{} is pinned for Linux only, not {}",
            pins[0].name,
            std::env::consts::OS
        );
    }
    if !pins.iter().any(|p| p.arch == Some(arch)) {
        bail!(
            "{} {} is pinned for x86_64 and aarch64 only, not {arch}",
            pins[0].name,
            pins[0].version
        );
    }
    Ok(pins
        .iter()
        .filter(|p| p.arch.is_none_or(|a| a == arch))
        .collect())
}

/// Unpacks the checked tarballs of `pins` (fetched first if missing) as
/// `node_modules/NAME` under `dir`.
pub fn unpack(pins: &'static [Tarball], tools: &Path, dir: &Path) -> anyhow::Result<()> {
    for pin in for_this_machine(pins)? {
        let tarball = tarball_in(pin, tools)?;
        let to = dir.join("node_modules").join(pin.name);
        fs::create_dir_all(&to)?;
        let out = Command::new("tar")
            .args(["-xzf"])
            .arg(&tarball)
            .arg("-C")
            .arg(&to)
            .args(["--strip-components=1", "--no-same-owner", "package"])
            .output()
            .context("cannot run `tar`")?;
        if !out.status.success() {
            bail!(
                "cannot unpack `{}`: {}",
                tarball.display(),
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
    }
    Ok(())
}

/// The checked tarball of `pin` in `tools`, fetched first if missing.
fn tarball_in(pin: &Tarball, tools: &Path) -> anyhow::Result<PathBuf> {
    let path = tools.join(pin.file);
    if !path.exists() {
        progress(&format!("fetching {}@{} (npm)", pin.name, pin.version));
        let work = Scratch::new(tools, "fetch")?;
        let out = Command::new("npm")
            .args(["pack", "--silent", "--ignore-scripts"])
            .arg(format!("{}@{}", pin.name, pin.version))
            .arg("--pack-destination")
            .arg(work.path())
            .current_dir(work.path())
            .output()
            .context("cannot run `npm` (building JavaScript needs node 18 or later and npm)")?;
        if !out.status.success() {
            bail!(
                "npm could not fetch {}@{} ({}):\n{}",
                pin.name,
                pin.version,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        let fetched = work.path().join(pin.file);
        verify(&fetched, pin.sha256)?;
        fs::rename(&fetched, &path)
            .with_context(|| format!("cannot move `{}` into the tools folder", pin.file))?;
    }
    verify(&path, pin.sha256)?;
    Ok(path)
}
