//! What this binary is: its version, the wasmtime it runs guests on, and
//! the commit it was built from (recorded by `build.rs`). Named by
//! `--version`, `/status` and the `wasinetd_build_info` metric.

/// wasinetd's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The wasmtime version in the lock file, `+patched` when it is the copy
/// in vendor/ (vendor/README.md).
pub const WASMTIME: &str = env!("WASINETD_WASMTIME");
/// The commit, 12 hex digits, or `unknown` outside a git checkout (set
/// `WASINETD_COMMIT` when building from a tarball).
pub const COMMIT: &str = env!("WASINETD_COMMIT");

/// `--version`'s text after the name: `0.1.0 (wasmtime 48.0.8+patched,
/// commit 0123456789ab)`.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (wasmtime ",
    env!("WASINETD_WASMTIME"),
    ", commit ",
    env!("WASINETD_COMMIT"),
    ")"
);
