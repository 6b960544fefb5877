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
//!   `RunReport`
//! - [`config`]: the xinetd config language to validated `ServiceSpec`s
//!   (where each listens: `Listen`), address rules and time windows
//!   ([`config::access`]) included
//! - [`admission`]: who gets a guest: checks and their order, the shares
//!   of `--limit`, `per_source`, `cps`, the load average, the sensors'
//!   deny list
//! - [`logging`]: log set-up, the per-connection line, `log_type` sinks, JSON
//! - [`metrics`]: per-service counters and their Prometheus text
//! - [`conn`]: one connection's life: accept, admit, run, relay, finish;
//!   one stream type and one peer type for every transport
//! - [`server`]: the daemon: prepare, listeners (and Unix socket files),
//!   compiling after start-up, reload (SIGHUP), dump (SIGUSR1), the admin
//!   listener, systemd, the guests' descriptor budget, shutdown
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
    //! The layout above, enforced: a module names (`crate::NAME`) only
    //! modules in a layer below its own, so no import runs back up and no
    //! two modules import each other.

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

    #[test]
    fn no_module_uses_one_above_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut wrong = Vec::new();
        for file in files {
            let rel = file.strip_prefix(&src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let module = top.trim_end_matches(".rs");
            if matches!(module, "lib" | "main") {
                continue;
            }
            let own = layer_of(module);
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, line) in text.lines().enumerate() {
                for used in line.split("crate::").skip(1) {
                    let name: String = used
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if name.is_empty() || name == module {
                        continue;
                    }
                    if layer_of(&name) >= own {
                        wrong.push(format!("{}:{}: {module} uses {name}", rel.display(), i + 1));
                    }
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
