//! A JavaScript handler built into a component by componentize-qjs:
//! QuickJS-ng and the script in one WASI preview 2 component (the world
//! `wasinetd:handler/handler`), snapshotted after the script was compiled,
//! so that a connection starts with the engine up and the script's code
//! ready, and runs the script's text as `quickjs.wasm --std` would
//! ([`ENTRY`] says what it is given).

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

use super::npm::{self, COMPONENTIZE_QJS};
use super::tools::{Scratch, progress};

/// The entry module: `__SCRIPT_PATH__` and `__SCRIPT_SOURCE__` become the
/// script's path and text as JavaScript string literals.
const ENTRY: &str = include_str!("entry.js");

/// The JavaScript runtime that runs componentize-qjs's front end.
const NODE: &str = "node";

/// Builds `script` (absolute, a `.js` file) into a component; returns its
/// bytes.
pub fn build(script: &Path, text: &[u8], tools: &Path) -> anyhow::Result<Vec<u8>> {
    let source = std::str::from_utf8(text)
        .with_context(|| format!("`{}` is not UTF-8 text", script.display()))?;
    check_node()?;
    let work = Scratch::new(tools, "build")?;
    let dir = work.path();
    npm::unpack(COMPONENTIZE_QJS, tools, dir)?;
    super::write_wit(&dir.join("wit"))?;
    let literal = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let entry = ENTRY
        .replace("__SCRIPT_PATH__", &literal(&script.to_string_lossy()))
        .replace("__SCRIPT_SOURCE__", &literal(source));
    fs::write(dir.join("entry.js"), entry)?;

    let tool = &COMPONENTIZE_QJS[0];
    progress(&format!(
        "building {} with {} {}: QuickJS-ng started and the script compiled, snapshotted",
        script.display(),
        tool.name,
        tool.version
    ));
    let out = Command::new(NODE)
        .current_dir(dir)
        .arg("node_modules/componentize-qjs/cli.mjs")
        .args(["--wit", "wit", "--world", "handler", "--js", "entry.js"])
        .args(["--sync", "-o", "out.wasm"])
        .output()
        .with_context(|| format!("cannot run `{NODE}`"))?;
    if !out.status.success() {
        bail!(
            "failed to build `{}`:\n{}",
            script.display(),
            tidy(&String::from_utf8_lossy(&out.stderr), script)
        );
    }
    fs::read(dir.join("out.wasm")).context("componentize-qjs wrote no component")
}

/// Refuses to go on without node 18 or later (componentize-qjs's floor).
fn check_node() -> anyhow::Result<()> {
    let help =
        "building JavaScript needs node 18 or later and npm (Debian: apt install nodejs npm)";
    let out = Command::new(NODE)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run `{NODE}`: {help}"))?;
    let version = String::from_utf8_lossy(&out.stdout);
    let major = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m >= 18 => Ok(()),
        _ => bail!("`{NODE} --version` says `{}`: {help}", version.trim()),
    }
}

/// componentize-qjs's error as the script's author needs it: QuickJS's
/// message and the script's own frames, at its path (QuickJS calls the
/// compiled text `<input>`), without the tool's prefixes and the entry
/// module's frames.
fn tidy(stderr: &str, script: &Path) -> String {
    const PREFIXES: [&str; 3] = [
        "Error: : ",
        "Failed to evaluate user JavaScript module: ",
        "Failed to finish JavaScript module evaluation: ",
    ];
    let path = script.display().to_string();
    let mut lines = Vec::new();
    for line in stderr.lines() {
        if line.contains("(native)") || line.contains("entry.js") {
            continue;
        }
        let mut line = line;
        for prefix in PREFIXES {
            line = line.strip_prefix(prefix).unwrap_or(line);
        }
        lines.push(line.replace("<input>", &path));
    }
    lines.join("\n").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_script_and_its_line() {
        let stderr = "Error: : Failed to evaluate user JavaScript module: Failed to finish \
            JavaScript module evaluation: Error: unexpected token in expression: ';'\n    \
            at <input>:2:9\n    at eval (native)\n    at <anonymous> (/entry.js:24:97)\n\n";
        assert_eq!(
            tidy(stderr, Path::new("/srv/app/hello.js")),
            "Error: unexpected token in expression: ';'\n    at /srv/app/hello.js:2:9"
        );
    }

    #[test]
    fn the_entry_has_its_two_holes() {
        assert_eq!(ENTRY.matches("__SCRIPT_PATH__").count(), 1);
        assert_eq!(ENTRY.matches("__SCRIPT_SOURCE__").count(), 1);
    }
}
