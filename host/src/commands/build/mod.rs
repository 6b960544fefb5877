//! `wasinetd build SCRIPT [-o OUT.wasm]`: a handler script built ahead into
//! a guest whose connections skip the interpreter's start-up.
//!
//! The language is the script's extension: `.py` is built by
//! componentize-py ([`python`]), `.js` by componentize-qjs ([`js`]). The tools are pinned, fetched on first use
//! and checked by SHA-256 before each use ([`tools`]); the guest records
//! which script it was built from, so `check` can say when the script has
//! changed since ([`record`]). OUT is written only once the build has
//! succeeded, by a rename: a failed build leaves any earlier OUT as it was.

mod flatten;
mod js;
mod npm;
mod python;
mod record;
mod tools;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

pub use record::stale;

use crate::cli::BuildArgs;
use crate::sandbox::CacheSetting;

pub(super) fn build(args: &BuildArgs, cache: &CacheSetting) -> anyhow::Result<ExitCode> {
    let script = fs::canonicalize(&args.script)
        .with_context(|| format!("cannot read the script `{}`", args.script.display()))?;
    let text = fs::read(&script)
        .with_context(|| format!("cannot read the script `{}`", script.display()))?;
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| script.with_extension("wasm"));
    let (mut wasm, tool) = match script.extension().and_then(|e| e.to_str()) {
        Some("py") => {
            let tools = crate::sandbox::tools_dir(cache)?;
            let tool = tools::COMPONENTIZE_PY;
            (
                python::build(&script, &tools, !args.no_merge)?,
                format!("{} {}", tool.name, tool.version),
            )
        }
        Some("js") => {
            let tools = crate::sandbox::tools_dir(cache)?;
            let tool = &npm::COMPONENTIZE_QJS[0];
            (
                js::build(&script, &text, &tools)?,
                format!("{} {}", tool.name, tool.version),
            )
        }
        Some("rb") => bail!(
            "`{}`: Ruby scripts are not built ahead; serve them with ruby.wasm as \
             `server_args` (README, \"Scripts\")",
            script.display()
        ),
        _ => bail!(
            "`{}`: build knows Python (`.py`) and JavaScript (`.js`) scripts only",
            script.display()
        ),
    };
    record::Source::new(&script, &text, &tool).append_to(&mut wasm);
    write(&out, &wasm)?;
    eprintln!(
        "build: wrote {} ({} MB) from {}",
        out.display(),
        wasm.len() >> 20,
        script.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The world the component is built for, and the WIT it needs: the
/// repository's `wit/`, carried in the binary so that an installed
/// `wasinetd build` needs no checkout.
const WIT: &[(&str, &str)] = &[
    ("handler.wit", include_str!("../../../../wit/handler.wit")),
    (
        "deps/cli/cli.wit",
        include_str!("../../../../wit/deps/cli/cli.wit"),
    ),
    (
        "deps/clocks/clocks.wit",
        include_str!("../../../../wit/deps/clocks/clocks.wit"),
    ),
    (
        "deps/filesystem/filesystem.wit",
        include_str!("../../../../wit/deps/filesystem/filesystem.wit"),
    ),
    (
        "deps/io/io.wit",
        include_str!("../../../../wit/deps/io/io.wit"),
    ),
    (
        "deps/random/random.wit",
        include_str!("../../../../wit/deps/random/random.wit"),
    ),
    (
        "deps/sockets/sockets.wit",
        include_str!("../../../../wit/deps/sockets/sockets.wit"),
    ),
];

/// Writes the WIT of [`WIT`] under `dir`.
fn write_wit(dir: &Path) -> anyhow::Result<()> {
    for (name, text) in WIT {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().context("a WIT file has a folder")?)?;
        fs::write(&path, text)?;
    }
    Ok(())
}

/// Writes `bytes` to `out` through a temporary file beside it, renamed into
/// place.
fn write(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let folder = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create the folder `{}`", folder.display()))?;
    let name = out
        .file_name()
        .with_context(|| format!("`{}` names no file", out.display()))?;
    let partial = folder.join(format!(
        ".{}.{}.partial",
        name.to_string_lossy(),
        std::process::id()
    ));
    fs::write(&partial, bytes).with_context(|| format!("cannot write `{}`", partial.display()))?;
    fs::rename(&partial, out).with_context(|| {
        let _ = fs::remove_file(&partial);
        format!("cannot write `{}`", out.display())
    })
}
