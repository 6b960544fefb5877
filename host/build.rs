//! Builds the guest workspace (`../guests`) for wasm32-wasip1 (core modules)
//! and wasm32-wasip2 (components), so that the daemon can bundle its
//! internal services and the tests can run real guests. The artefacts land
//! in this build's OUT_DIR; `WASINETD_GUESTS` tells the crate (and its tests)
//! where: `$WASINETD_GUESTS/<target>/release/<name>.wasm`.
//!
//! It also records what `--version`, `/status` and `wasinetd_build_info`
//! name: the wasmtime version in the lock file, and the commit
//! (`WASINETD_COMMIT` if set, for builds outside a git checkout; else
//! `git rev-parse`; else `unknown`).
//!
//! The wasm targets are not installed by rustup on its own: the README's
//! commands run `rustup target add` first; here a missing target is a clear
//! error, not a wall of `can't find crate for std`.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGETS: [&str; 2] = ["wasm32-wasip1", "wasm32-wasip2"];

/// Guests that only make sense as components: they import
/// `wasinetd:handler` (`../wit`) or use sockets, which preview 1 lacks.
/// The wasip1 build leaves them out (they still compile for it, so clippy
/// checks them on both targets).
const COMPONENT_ONLY: [&str; 2] = ["health-check", "whoami"];

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let guests = manifest_dir.join("../guests");
    let out = PathBuf::from(env("OUT_DIR")).join("guests");
    watch(&guests);
    // The component guests generate their bindings from the WIT package.
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../wit").display()
    );

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    for target in TARGETS {
        if let Some(root) = &sysroot {
            let lib = Path::new(root).join("lib/rustlib").join(target);
            if !lib.exists() {
                panic!(
                    "the Rust target `{target}` is not installed, and the guests need it: \
                     run `rustup target add wasm32-wasip1 wasm32-wasip2` (the README's \
                     commands do this for you)"
                );
            }
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&guests)
            .args(["build", "--release", "--locked", "--target", target])
            .args(["--workspace", "--target-dir"])
            .arg(&out);
        if target == "wasm32-wasip1" {
            for guest in COMPONENT_ONLY {
                cmd.args(["--exclude", guest]);
            }
        }
        // This build's own settings must not leak into the guests' build:
        // flags meant for the host, clippy's wrapper, a forced target dir.
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build the guests: {e}"));
        if !status.success() {
            panic!("building the guests for {target} failed (see the output above)");
        }
    }
    println!("cargo:rustc-env=WASINETD_GUESTS={}", out.display());
    build_info(&manifest_dir);
}

/// `WASINETD_WASMTIME` and `WASINETD_COMMIT` for the crate.
fn build_info(manifest_dir: &Path) {
    let lock = manifest_dir.join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let package = text
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"wasmtime\"\n"));
    let mut wasmtime = package
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map_or("unknown".to_owned(), |v| v.trim_matches('"').to_owned());
    // Not from a registry: the patched copy in vendor/ (vendor/README.md).
    if package.is_some_and(|p| !p.contains("\nsource = ")) {
        wasmtime.push_str("+patched");
    }
    println!("cargo:rustc-env=WASINETD_WASMTIME={wasmtime}");

    println!("cargo:rerun-if-env-changed=WASINETD_COMMIT");
    let commit = std::env::var("WASINETD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git_commit(manifest_dir))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WASINETD_COMMIT={commit}");
}

/// The checkout's commit (12 hex digits), watching what moves it: HEAD,
/// the branch it names, and the packed refs.
fn git_commit(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let git_dir = PathBuf::from(git(&["rev-parse", "--absolute-git-dir"])?);
    let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .map_or(git_dir.clone(), PathBuf::from);
    let mut moved_by = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        moved_by.push(common.join(branch));
    }
    // A path that does not exist would rerun this script at every build.
    for path in moved_by.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo did not set {name}"))
}

/// Rebuild when a guest's source, manifest or lock file changes (but not
/// when something writes into `guests/target`).
fn watch(guests: &Path) {
    println!(
        "cargo:rerun-if-changed={}",
        guests.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        guests.join("Cargo.lock").display()
    );
    let Ok(entries) = std::fs::read_dir(guests) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && path.file_name().is_some_and(|n| n != "target") {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
