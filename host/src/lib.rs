//! wasinetd: xinetd's job, done with WebAssembly.
//!
//! The daemon listens on many ports for many services; for each accepted
//! connection it instantiates the service's WASI guest with the connection
//! as the guest's stdin and stdout, where xinetd would fork and exec. Every
//! guest is isolated (no file, network or environment it was not given) and
//! limited (memory, CPU time, wall-clock time).
//!
//! # Layout
//! From the bottom up, as the `layering` test below holds it: a module
//! names only modules of a lower layer (none of its own), so no import runs
//! back up and there is no cycle; a type two modules share lives in the
//! lower one. docs/architecture.md walks through it, and through the life
//! of a connection and of a reload.
//! - [`build_info`], [`bundled`], [`sandbox`]: what this binary is; the
//!   guests built in; the engine, guests compiled once, one instance per
//!   run. The sandbox is a leaf: a run gets all it needs in its
//!   `Invocation`, speaks through the `Report` it was given, and returns a
//!   `RunReport`; what a tenant's guests share (memory sum, lane weight) is
//!   the `Pool` the invocation names
//! - [`config`]: the xinetd config language to validated `ServiceSpec`s
//!   (where each listens: `Listen`), address rules and time windows
//!   ([`config::access`]) included; `tenant` blocks and the policy a
//!   tenant's services are checked against
//! - [`admission`]: who gets a guest: checks and their order, the shares
//!   of `--limit`, `per_source`, `cps`, the load average, the sensors'
//!   deny list
//! - [`logging`]: log set-up, the per-connection line, `log_type` sinks, JSON
//! - [`metrics`]: per-service counters and their Prometheus text
//! - [`conn`]: one connection's life: accept, a PROXY header, admit, run,
//!   relay, finish; one stream type and one peer type for every transport;
//!   each tenant's running state
//! - [`server`]: the daemon: prepare, listeners (and Unix socket files),
//!   compiling after start-up, reload (SIGHUP), dump (SIGUSR1), upgrade
//!   (SIGUSR2), the admin listener, systemd, the guests' descriptor
//!   budget, shutdown
//! - [`cli`]: the command line
//! - [`commands`]: what each command does

// Public: what the binary (main.rs) and the benchmarks use; the rest is
// the daemon's own.
mod admission;
mod build_info;
pub mod bundled;
pub mod cli;
pub mod commands;
mod config;
mod conn;
pub mod logging;
mod metrics;
pub mod sandbox;
mod server;

#[cfg(test)]
mod layering {
    //! The layout above, enforced: a module names only modules in a layer
    //! below its own, so no import runs back up and no two modules import
    //! each other. A room is named by `crate::NAME`, by each first name of
    //! a `crate::{...}` group (over as many lines as it takes), and by a
    //! `super::` path that climbs to the crate root (counting the inline
    //! modules around it).

    use std::path::Path;

    /// Bottom first; modules in one layer do not use each other.
    const LAYERS: &[&[&str]] = &[
        &["build_info", "bundled", "sandbox"],
        &["config"],
        &["admission"],
        &["logging"],
        &["metrics"],
        &["conn"],
        &["server"],
        &["cli"],
        &["commands"],
    ];

    fn layer_of(module: &str) -> usize {
        LAYERS
            .iter()
            .position(|l| l.contains(&module))
            .unwrap_or_else(|| panic!("`{module}` is in no layer of lib.rs's `LAYERS`"))
    }

    /// Every `.rs` file under `dir`.
    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The module path of a source file: `conn/service.rs` is
    /// `conn::service`, `conn/mod.rs` is `conn`.
    fn module_path(rel: &Path) -> Vec<String> {
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_owned()
            })
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        parts
    }

    /// The identifier at the start of `text`.
    fn ident(text: &str) -> &str {
        let end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len());
        &text[..end]
    }

    /// The rooms `text` (what follows a path that reached the crate root)
    /// names: one name, or each first name of a `{a, b::c, ...}` group,
    /// which may span lines.
    fn names_after(text: &str) -> Vec<&str> {
        let Some(group) = text.strip_prefix('{') else {
            return vec![ident(text)];
        };
        let mut names = Vec::new();
        let mut depth = 0;
        let mut item_start = Some(0);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = Some(i + 1),
                c if c.is_whitespace() => {
                    if item_start == Some(i) {
                        item_start = Some(i + 1);
                    }
                }
                _ => {
                    if let Some(at) = item_start.take() {
                        names.push(ident(&group[at..]));
                    }
                }
            }
        }
        names
    }

    /// How many inline modules (`mod NAME { ... }`) enclose each of
    /// `positions` (ascending byte offsets in `text`).
    fn inline_depths(text: &str, positions: &[usize]) -> Vec<usize> {
        let mut stack: Vec<bool> = Vec::new();
        let mut depths = Vec::with_capacity(positions.len());
        let mut next = positions.iter().peekable();
        for (i, c) in text.char_indices() {
            while next.peek().is_some_and(|&&p| p <= i) {
                next.next();
                depths.push(stack.iter().filter(|&&m| m).count());
            }
            match c {
                '{' => {
                    let head = text[..i].trim_end();
                    let name =
                        head.trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
                    stack.push(name.trim_end().ends_with("mod") && name.len() < head.len());
                }
                '}' => {
                    stack.pop();
                }
                _ => {}
            }
        }
        depths.resize(positions.len(), stack.iter().filter(|&&m| m).count());
        depths
    }

    /// Every room a file's text names, with its line: through `crate::`,
    /// and through as many `super::` as it takes to reach the crate root
    /// from `path` (its module path) and the inline modules around it.
    fn rooms_named<'t>(text: &'t str, path: &[String]) -> Vec<(usize, &'t str)> {
        let line_of = |at: usize| text[..at].matches('\n').count() + 1;
        let mut named = Vec::new();
        for (at, _) in text.match_indices("crate::") {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue; // `my_crate::`
            }
            for name in names_after(&text[at + "crate::".len()..]) {
                named.push((line_of(at), name));
            }
        }
        // Runs of `super::` that start a path: (start, end, how many).
        let mut runs = Vec::new();
        let mut at = 0;
        while let Some(found) = text[at..].find("super::") {
            let start = at + found;
            let mut end = start;
            while text[end..].starts_with("super::") {
                end += "super::".len();
            }
            let continues = text[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            if !continues {
                runs.push((start, end, (end - start) / "super::".len()));
            }
            at = end;
        }
        let starts: Vec<usize> = runs.iter().map(|r| r.0).collect();
        for ((start, end, ups), inline) in runs.into_iter().zip(inline_depths(text, &starts)) {
            if ups == path.len() + inline {
                for name in names_after(&text[end..]) {
                    named.push((line_of(start), name));
                }
            }
        }
        named
    }

    #[test]
    fn paths_to_rooms_are_found_in_every_form() {
        let path = ["conn".to_owned(), "service".to_owned()];
        let text = "use crate::admission::Gatekeeper;\n\
                    use crate::{\n    config::{Cap, ServiceSpec},\n    logging,\n};\n\
                    use super::super::server::Roster;\n\
                    use super::close;\n\
                    let x = my_crate::metrics;\n\
                    mod tests {\n    use super::super::super::admission;\n    use super::super::close;\n}\n";
        let names: Vec<(usize, &str)> = rooms_named(text, &path);
        assert_eq!(
            names,
            [
                (1, "admission"),
                (2, "config"),
                (2, "logging"),
                (6, "server"),
                (10, "admission")
            ]
        );
    }

    #[test]
    fn no_module_uses_one_above_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut wrong = Vec::new();
        for file in files {
            let rel = file.strip_prefix(&src).unwrap();
            let path = module_path(rel);
            let module = path[0].as_str();
            if matches!(module, "lib" | "main") {
                continue;
            }
            let own = layer_of(module);
            let text = std::fs::read_to_string(&file).unwrap();
            for (line, name) in rooms_named(&text, &path) {
                if name.is_empty() || name == module || name == "self" {
                    continue;
                }
                if layer_of(name) >= own {
                    wrong.push(format!("{}:{line}: {module} uses {name}", rel.display()));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "imports that run up or sideways:\n{}",
            wrong.join("\n")
        );
    }
}
