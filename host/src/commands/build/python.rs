//! A Python script built into a component by componentize-py: CPython,
//! its standard library and the script's folder in one WASI preview 2
//! component (the world `wasinetd:handler/handler`: `wasi:cli/command` and
//! the `connection` interface), with the interpreter's start-up and the
//! script's imports done here, at build time, and snapshotted. Each
//! connection then gets a fresh instance of the snapshot and calls the
//! script's `main()`.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

use super::tools::{COMPONENTIZE_PY, Scratch, progress};

/// The component's entry point (`wasi:cli/run`): MODULE's `main()` per
/// run; MODULE itself is imported at build time.
const ENTRY: &str = "\
import sys

import {module} as handler
from wit_world import exports


class Run(exports.Run):
    def run(self) -> None:
        try:
            handler.main()
        finally:
            sys.stdout.flush()
";

/// Runs componentize-py from its unpacked wheel with this machine's
/// python3; its error (a Python exception) is printed as the message alone.
const RUNNER: &str = "\
import sys
sys.argv[0] = 'componentize-py'
import componentize_py
try:
    componentize_py.script()
except Exception as e:
    sys.stderr.write(f'{e}\\n')
    sys.exit(1)
";

/// The Python that runs componentize-py (and pip): `python3` on PATH.
pub const PYTHON: &str = "python3";

/// Builds `script` (absolute, a `.py` file) into a component, its
/// libraries merged if `merge`; returns its bytes.
pub fn build(script: &Path, tools: &Path, merge: bool) -> anyhow::Result<Vec<u8>> {
    let module = module_name(script)?;
    let app = script.parent().context("the script has no folder")?;
    let python = Path::new(PYTHON);
    let wheel = COMPONENTIZE_PY.wheel_in(tools, python)?;
    let work = Scratch::new(tools, "build")?;
    let dir = work.path();

    let unpacked = dir.join("componentize-py");
    run_python(python, dir, |c| {
        c.args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&unpacked);
    })
    .with_context(|| format!("cannot unpack `{}`", wheel.display()))?;
    super::write_wit(&dir.join("wit"))?;
    fs::create_dir(dir.join("entry"))?;
    fs::write(
        dir.join("entry/wasinetd_handler.py"),
        ENTRY.replace("{module}", &module),
    )?;
    // A copy of the folder: componentize-py leaves __pycache__ behind.
    copy_tree(app, &dir.join("app"))
        .with_context(|| format!("cannot copy the script's folder `{}`", app.display()))?;

    progress(&format!(
        "building {} with {} {}: CPython's start-up and the script's imports, snapshotted",
        script.display(),
        COMPONENTIZE_PY.name,
        COMPONENTIZE_PY.version
    ));
    let out = Command::new(python)
        .current_dir(dir)
        .env("PYTHONPATH", &unpacked)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .args([
            "-c",
            RUNNER,
            "--quiet",
            "-d",
            "wit",
            "-w",
            "handler",
            "componentize",
        ])
        .args([
            "-p",
            "entry",
            "-p",
            "app",
            "wasinetd_handler",
            "-o",
            "out.wasm",
        ])
        .output()
        .with_context(|| format!("cannot run `{PYTHON}`"))?;
    if !out.status.success() {
        bail!(
            "failed to build `{}`:\n{}",
            script.display(),
            tidy(&String::from_utf8_lossy(&out.stderr), app)
        );
    }
    let built = fs::read(dir.join("out.wasm")).context("componentize-py wrote no component")?;
    Ok(if merge { flatten_or_keep(built) } else { built })
}

/// The component with its dynamically linked libraries merged into one core
/// module ([`super::flatten`]), or as built if that fails: it runs either
/// way, flattened at about half the CPU per connection.
fn flatten_or_keep(built: Vec<u8>) -> Vec<u8> {
    progress("merging CPython's shared libraries into one module");
    match super::flatten::flatten(&built) {
        Ok(Some(flat)) => flat,
        Ok(None) => built,
        Err(e) => {
            eprintln!(
                "build: warning: kept the libraries apart ({e:#}): the guest works, but each \
                 connection costs about twice the CPU"
            );
            built
        }
    }
}

/// The module a script is imported as: its name without `.py`, which must
/// be a Python identifier.
fn module_name(script: &Path) -> anyhow::Result<String> {
    let stem = script
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let ok = stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && stem.chars().next().is_some_and(|c| !c.is_ascii_digit());
    if !ok || stem == "wasinetd_handler" {
        bail!(
            "`{}` cannot be imported as a Python module: name it like `hello.py`",
            script.display()
        );
    }
    Ok(stem.to_owned())
}

/// componentize-py's error as the script's author needs it: the Python
/// traceback with the script's real folder for the build's copy of it
/// (`/1/`, the second path given), without the Rust error's repeat of its
/// last line and without the build's own entry frame.
fn tidy(stderr: &str, app: &Path) -> String {
    let text = stderr.split("\n\nCaused by:").next().unwrap_or(stderr);
    let text = text.strip_prefix("AssertionError: ").unwrap_or(text);
    let mut lines = Vec::new();
    let mut skip = 0;
    for line in text.lines() {
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if line.contains("\"/0/wasinetd_handler.py\"") {
            skip = 1; // and the source line under it
            continue;
        }
        lines.push(line.replace("\"/1/", &format!("\"{}/", app.display())));
    }
    lines.join("\n").trim_end().to_owned()
}

fn run_python(python: &Path, dir: &Path, args: impl FnOnce(&mut Command)) -> anyhow::Result<()> {
    let mut cmd = Command::new(python);
    cmd.current_dir(dir);
    args(&mut cmd);
    let out = cmd.output().with_context(|| {
        format!(
            "cannot run `{}` (build needs python3 3.9 or later)",
            python.display()
        )
    })?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim_end());
    }
    Ok(())
}

/// Copies the files under `from` into `to`, leaving out `__pycache__` and
/// hidden entries; symbolic links are followed.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "__pycache__" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(&name))?;
        } else if path.is_file() {
            fs::copy(&path, to.join(&name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_python_identifiers() {
        assert_eq!(module_name(Path::new("/a/hello_2.py")).unwrap(), "hello_2");
        for bad in ["/a/2go.py", "/a/my-app.py", "/a/wasinetd_handler.py"] {
            assert!(module_name(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_script_and_its_line() {
        let stderr = "AssertionError: Traceback (most recent call last):\n  \
            File \"/0/wasinetd_handler.py\", line 3, in <module>\n    import hello as handler\n  \
            File \"/1/hello.py\", line 3\n    def main(:\n             ^\n\
            SyntaxError: invalid syntax\n\n\nCaused by:\n    SyntaxError: invalid syntax (hello.py, line 3)\n";
        assert_eq!(
            tidy(stderr, Path::new("/srv/app")),
            "Traceback (most recent call last):\n  File \"/srv/app/hello.py\", line 3\n    \
             def main(:\n             ^\nSyntaxError: invalid syntax"
        );
    }
}
