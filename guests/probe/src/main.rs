//! `probe`: the guest the host's integration tests run to exercise the
//! sandbox. `argv[1]` picks one behaviour (a mode); each mode reports on
//! stdout, one line at a time, flushed after every line, so a test reading
//! the connection sees each step as soon as it happens.
//!
//! One binary with many modes, rather than one guest per behaviour, keeps
//! the guest build small and lets a test say what it exercises in its
//! service's arguments. This file holds the dispatch and the modes about
//! stdio, arguments and exit; `stress` pushes against CPU, memory and time
//! limits, and `fs_ops` against the preopened directories.

use std::fmt;
use std::io::{self, Write};
use std::process::{self, ExitCode};
use std::str::FromStr;

/// Writes one formatted line to an [`Out`] and flushes it, returning early
/// from the enclosing mode (with `?`) if stdout fails.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        $out.line(format_args!($($arg)*))?
    };
}

mod fs_ops;
mod stress;

/// What `probe` prints on stderr for a missing, unknown or misused mode.
const USAGE: &str = "\
usage: probe MODE [ARGS...]
modes:
  env                  print every argv element, then the environment sorted by key
  greet [TEXT...]      print TEXT (default \"hello\") without reading stdin
  big N                print N bytes of 'x', then \"\\nend\\n\", without reading stdin
  exit N               exit with status N
  panic                panic (a trap, since guests abort on panic)
  spin                 burn CPU forever
  membomb [CHUNK_MIB]  allocate CHUNK_MIB (default 1) MiB at a time until it fails, then exit 3
  sleep [SECS]         sleep SECS seconds (default: forever)
  fs OP...             run each OP: ls:PATH, cat:PATH or write:PATH:TEXT
  stderr N             write N lines to stderr, then print \"done\"
  readall              read stdin to EOF and print how many bytes came
  pieces N [END]       print `piece <i>` for i in 0..N, each line its own write, then END:
                       exit:CODE (default exit:0), panic, spin, or read (stdin to EOF, then exit 0)";

/// Bytes per `big` write.
const BIG_CHUNK: usize = 64 * 1024;

/// Stdout, flushed after every line.
pub struct Out(io::StdoutLock<'static>);

impl Out {
    /// Writes `args` and a newline, then flushes.
    pub fn line(&mut self, args: fmt::Arguments<'_>) -> io::Result<()> {
        self.0.write_fmt(args)?;
        self.0.write_all(b"\n")?;
        self.0.flush()
    }
}

/// Why a mode stopped early.
pub enum Failure {
    /// The arguments were wrong: the message and the usage go to stderr, exit 2.
    Usage(String),
    /// Stdio failed, typically because the client went away: exit 1.
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mode = args.get(1).map_or("", String::as_str);
    let rest = args.get(2..).unwrap_or_default();
    let mut out = Out(io::stdout().lock());
    let result = match mode {
        "env" => env(&mut out, &args),
        "greet" => greet(&mut out, rest),
        "big" => big(&mut out, rest),
        "exit" => exit(&mut out, rest),
        "panic" => panic(&mut out, rest),
        "spin" => stress::spin(&mut out, rest),
        "membomb" => stress::membomb(&mut out, rest),
        "sleep" => stress::sleep(&mut out, rest),
        "fs" => fs_ops::fs(&mut out, rest),
        "stderr" => stderr(&mut out, rest),
        "readall" => readall(&mut out, rest),
        "pieces" => pieces(&mut out, rest),
        "" => Err(Failure::Usage("missing mode".into())),
        _ => Err(Failure::Usage(format!("unknown mode `{mode}`"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("probe: {message}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Io(e)) => {
            eprintln!("probe: {mode}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `env`: prints `arg <i>=<value>` for all of argv, `env <KEY>=<VALUE>` for
/// the environment sorted by key, then `end`.
fn env(out: &mut Out, args: &[String]) -> Result<(), Failure> {
    for (i, arg) in args.iter().enumerate() {
        say!(out, "arg {i}={arg}");
    }
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    vars.sort();
    for (key, value) in vars {
        say!(out, "env {key}={value}");
    }
    say!(out, "end");
    Ok(())
}

/// `greet [TEXT...]`: prints the words joined by spaces (default `hello`),
/// never touching stdin, so the guest exits while the client may still send.
fn greet(out: &mut Out, words: &[String]) -> Result<(), Failure> {
    if words.is_empty() {
        say!(out, "hello");
    } else {
        say!(out, "{}", words.join(" "));
    }
    Ok(())
}

/// `big N`: writes N bytes of `x` and `\nend\n` without reading stdin, to
/// test output larger than any pipe or socket buffer.
fn big(out: &mut Out, rest: &[String]) -> Result<(), Failure> {
    at_most(rest, 1)?;
    let mut left: u64 = required(number(rest.first(), "N")?, "N")?;
    let chunk = vec![b'x'; BIG_CHUNK];
    while left > 0 {
        // The chunk is no longer than BIG_CHUNK, so it fits a usize.
        let n = left.min(BIG_CHUNK as u64) as usize;
        out.0.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    out.0.write_all(b"\n")?;
    say!(out, "end");
    Ok(())
}

/// `exit N`: prints `exiting N`, then exits with status N.
fn exit(out: &mut Out, rest: &[String]) -> Result<(), Failure> {
    at_most(rest, 1)?;
    let code: i32 = required(number(rest.first(), "N")?, "N")?;
    say!(out, "exiting {code}");
    process::exit(code)
}

/// `panic`: prints `about to panic`, then panics; with `panic = "abort"`
/// the guest ends in a trap rather than an exit status.
fn panic(out: &mut Out, rest: &[String]) -> Result<(), Failure> {
    at_most(rest, 0)?;
    say!(out, "about to panic");
    panic!("probe panicked on purpose")
}

/// `stderr N`: writes `stderr line <i>` for i in 0..N to stderr, flushing
/// each, then prints `done` on stdout.
fn stderr(out: &mut Out, rest: &[String]) -> Result<(), Failure> {
    at_most(rest, 1)?;
    let lines: u64 = required(number(rest.first(), "N")?, "N")?;
    let mut err = io::stderr().lock();
    for i in 0..lines {
        writeln!(err, "stderr line {i}")?;
        err.flush()?;
    }
    say!(out, "done");
    Ok(())
}

/// `readall`: reads stdin to EOF, then prints `read <N> bytes`.
fn readall(out: &mut Out, rest: &[String]) -> Result<(), Failure> {
    at_most(rest, 0)?;
    let n = io::copy(&mut io::stdin().lock(), &mut io::sink())?;
    say!(out, "read {n} bytes");
    Ok(())
}

/// `pieces N [END]`: an answer in N pieces, each `piece <i>` line written
/// and flushed on its own, then the end END asks for, to show that no
/// piece is lost or reordered however the guest ends.
fn pieces(out: &mut Out, rest: &[String]) -> Result<(), Failure> {
    at_most(rest, 2)?;
    let n: u64 = required(number(rest.first(), "N")?, "N")?;
    for i in 0..n {
        say!(out, "piece {i}");
    }
    match rest.get(1).map_or("exit:0", String::as_str) {
        "panic" => panic!("probe panicked on purpose after its pieces"),
        "spin" => stress::spin(out, &[]),
        "read" => {
            io::copy(&mut io::stdin().lock(), &mut io::sink())?;
            Ok(())
        }
        end => match end.strip_prefix("exit:").map(str::parse::<i32>) {
            Some(Ok(code)) => process::exit(code),
            _ => Err(Failure::Usage(format!("unknown end `{end}`"))),
        },
    }
}

/// Parses `arg` as the number called `name`, if it is there.
pub fn number<T: FromStr>(arg: Option<&String>, name: &str) -> Result<Option<T>, Failure> {
    arg.map(|a| {
        a.parse()
            .map_err(|_| Failure::Usage(format!("{name} must be a number, not `{a}`")))
    })
    .transpose()
}

/// `value`, or a usage error saying that `name` is missing.
pub fn required<T>(value: Option<T>, name: &str) -> Result<T, Failure> {
    value.ok_or_else(|| Failure::Usage(format!("missing {name}")))
}

/// A usage error if a mode got more than `max` arguments: a typo in a test's
/// service arguments should fail loudly rather than be ignored.
pub fn at_most(rest: &[String], max: usize) -> Result<(), Failure> {
    match rest.get(max..) {
        Some(extra) if !extra.is_empty() => Err(Failure::Usage(format!(
            "unexpected argument `{}`",
            extra[0]
        ))),
        _ => Ok(()),
    }
}
