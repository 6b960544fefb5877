//! The `wasinetd` binary: parse the command line, start logging, run, and
//! turn the result into an exit status.

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};

/// Every connection allocates and frees a few hundred small objects:
/// mimalloc does that for less CPU than glibc's malloc (host/Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    no_huge_pages();
    let cli = wasinetd::cli::Cli::parse();
    if let Some(option) = cli.misplaced() {
        // As clap reports a misused option: usage, exit status 2.
        let hint = match &cli.command {
            Some(wasinetd::cli::Command::Check(_)) if option.starts_with("-f") => {
                " (give it after `check`: `wasinetd check -f FILE`)"
            }
            Some(wasinetd::cli::Command::Check(_)) => " (only serving uses it)",
            Some(wasinetd::cli::Command::Build(_)) => {
                " (`build` reads no config; only serving uses it)"
            }
            _ => " (`run` reads no config; only serving uses it)",
        };
        wasinetd::cli::Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("`{option}` does not apply to this command{hint}"),
            )
            .exit();
    }
    wasinetd::logging::init(cli.log_format.into(), cli.default_log_level());
    let code = match wasinetd::commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            wasinetd::logging::fatal(&e);
            ExitCode::FAILURE
        }
    };
    wasinetd::logging::finish();
    code
}

/// Keeps transparent huge pages out of this process. A guest touches a few
/// pages of its memory, its stack and the heap; with huge pages (THP
/// `always`, or mimalloc asking for them on its heap) each touch can make
/// 2 MiB resident, and a daemon holding many idle guests pays for pages
/// nobody uses: the heap alone held 37 KiB per live guest instead of 25 at
/// 10,000 (bench/extras.sh hold). Best effort: a kernel without the call
/// keeps its default.
fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}
