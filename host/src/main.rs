//! The `wasinetd` binary: parse the command line, start logging, run, and
//! turn the result into an exit status.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = wasinetd::cli::Cli::parse();
    wasinetd::logging::init(cli.log_format, cli.default_log_level());
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
