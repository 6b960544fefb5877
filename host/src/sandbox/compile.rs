//! Compiling a guest, which is untrusted input too. wasmtime treats a
//! denial of service while compiling as outside its security promise: a
//! module of a few megabytes can take a compiler tens of seconds and
//! gigabytes (many tiny functions, one function with a huge operand
//! stack). So a guest is compiled within [`CompileLimits`]:
//!
//! - its shape is checked first, cheaply ([`check_shape`]): its size, how
//!   many functions it has, how large its largest function body is;
//! - then it is compiled in a child process of the daemon's own binary
//!   (`wasinetd __compile`), with its memory capped (`RLIMIT_DATA`), a
//!   wall-clock deadline after which it is killed, and a parent-death
//!   signal; the native code comes back on a pipe. Whatever the compiler
//!   allocated goes away with the child: the daemon's own memory never
//!   holds a compile.
//!
//! Each limit, when hit, is named in the error, with the flag that sets it.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use wasmtime::wasmparser::{Parser, Payload};

/// What compiling one guest may cost, and how it is done.
#[derive(Debug, Clone)]
pub struct CompileLimits {
    /// The largest guest, in bytes (`--max-guest-size`).
    pub max_bytes: u64,
    /// The most functions, across every module a component holds
    /// (`--max-guest-functions`).
    pub max_functions: u64,
    /// The largest function body, in bytes: the cost of compiling one
    /// function grows with it (`--max-guest-functions` names both).
    pub max_function_bytes: u64,
    /// How long one compile may take (`--compile-timeout`).
    pub timeout: Duration,
    /// How much memory one compile may use (`--compile-memory`).
    pub memory: u64,
    /// The binary to compile with (this daemon's own); `None` compiles in
    /// this process (library users, benchmarks), with the shape checks
    /// only.
    pub isolate: Option<PathBuf>,
}

/// The largest guest file read, by default.
pub const MAX_GUEST_BYTES: u64 = 128 << 20;
/// The most functions a guest may have, by default: CPython built for WASI
/// has about 11,000, its componentized form about three times that.
pub const MAX_FUNCTIONS: u64 = 100_000;
/// The largest function body, by default: CPython's largest is 104 KiB.
pub const MAX_FUNCTION_BYTES: u64 = 1 << 20;
/// How long one compile may take, by default: CPython compiles in about
/// 10 s on two cores.
pub const COMPILE_TIMEOUT: Duration = Duration::from_secs(60);
/// How much memory one compile may use, by default: CPython takes about
/// 400 MiB.
pub const COMPILE_MEMORY: u64 = 2 << 30;

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits {
            max_bytes: MAX_GUEST_BYTES,
            max_functions: MAX_FUNCTIONS,
            max_function_bytes: MAX_FUNCTION_BYTES,
            timeout: COMPILE_TIMEOUT,
            memory: COMPILE_MEMORY,
            isolate: None,
        }
    }
}

/// Refuses a guest whose shape alone makes it too costly to compile. Text
/// (`.wat`) is left to the compile's own limits.
pub fn check_shape(bytes: &[u8], limits: &CompileLimits) -> anyhow::Result<()> {
    if bytes.len() as u64 > limits.max_bytes {
        bail!(
            "it is {} bytes, more than the {} a guest may have (--max-guest-size)",
            bytes.len(),
            limits.max_bytes
        );
    }
    if !Parser::is_core_wasm(bytes) && !Parser::is_component(bytes) {
        return Ok(());
    }
    let mut functions = 0u64;
    for payload in Parser::new(0).parse_all(bytes) {
        // A malformed guest is the compiler's to report, in its words.
        let Ok(payload) = payload else { return Ok(()) };
        match payload {
            Payload::CodeSectionStart { count, .. } => {
                functions += u64::from(count);
                if functions > limits.max_functions {
                    bail!(
                        "it has more than {} functions, the most a guest may have \
                         (--max-guest-functions): compiling it would take too long and too \
                         much memory",
                        limits.max_functions
                    );
                }
            }
            Payload::CodeSectionEntry(body) => {
                let size = body.range().len() as u64;
                if size > limits.max_function_bytes {
                    bail!(
                        "it has a function of {size} bytes, more than the {} one function may \
                         have (--max-guest-functions): compiling it would take too long and too \
                         much memory",
                        limits.max_function_bytes
                    );
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// What the child compiles: a core module or a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Module,
    Component,
}

impl Kind {
    fn arg(self) -> &'static str {
        match self {
            Kind::Module => "module",
            Kind::Component => "component",
        }
    }
}

/// Exit status of the child when its input does not compile: its stderr
/// says why.
const INVALID: u8 = 65;

/// Compiles `bytes` in a child process of `exe` within `limits`, for an
/// engine made with `pooling` or not whose memories reserve
/// `memory_reservation` bytes; returns the native code.
pub fn precompile_isolated(
    exe: &std::path::Path,
    bytes: &[u8],
    kind: Kind,
    (pooling, memory_reservation): (bool, u64),
    limits: &CompileLimits,
) -> anyhow::Result<Vec<u8>> {
    let memory = limits.memory;
    let mut cmd = Command::new(exe);
    cmd.arg("__compile")
        .arg(kind.arg())
        .arg(if pooling { "pooling" } else { "on-demand" })
        .arg(memory_reservation.to_string())
        .arg(limits.max_functions.to_string())
        .arg(limits.max_function_bytes.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        // The binary's allocator (mimalloc) keeps freed pages for 10 ms
        // before it returns them: in the compiler, which frees as it goes,
        // that raised the peak a hostile guest can cause (a 500,000-deep
        // stack: 223 MiB, over the 200 MiB `check` promises). Returned at
        // once here; the daemon keeps the delay, which saves it work.
        .env("MIMALLOC_PURGE_DELAY", "0");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let data = libc::rlimit {
                rlim_cur: memory,
                rlim_max: memory,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &data) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // A daemon that dies takes its compiles with it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the compiler process")?;
    let started = Instant::now();
    // Input and output on threads of their own, so that a child stuck
    // either way cannot hold this one past the deadline.
    let mut stdin = child.stdin.take().context("no stdin")?;
    let input = bytes.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut code = Vec::new();
        stdout.read_to_end(&mut code).map(|_| code)
    });
    let mut stderr = child.stderr.take().context("no stderr")?;
    let errors = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = (&mut stderr).take(64 << 10).read_to_end(&mut text);
        String::from_utf8_lossy(&text).trim().to_owned()
    });
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for the compiler")? {
            break Some(status);
        }
        if started.elapsed() > limits.timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = feeder.join();
    let code = reader.join().ok();
    let errors = errors.join().unwrap_or_default();
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        None => bail!(
            "compiling took longer than {:?}, the most a compile may take (--compile-timeout)",
            limits.timeout
        ),
        Some(s) if s.success() => match code {
            Some(Ok(code)) => Ok(code),
            _ => bail!("the compiler's output was lost"),
        },
        Some(s) if s.code() == Some(i32::from(INVALID)) => bail!("{errors}"),
        // An allocation past RLIMIT_DATA aborts the child (or the kernel
        // kills it).
        Some(s)
            if matches!(
                s.signal(),
                Some(libc::SIGABRT | libc::SIGKILL | libc::SIGSEGV)
            ) =>
        {
            bail!(
                "compiling needed more than {} MiB of memory, the most a compile may use \
                 (--compile-memory)",
                limits.memory >> 20
            )
        }
        Some(s) => bail!("the compiler failed ({s}): {errors}"),
    }
}

/// `wasinetd __compile module|component pooling|on-demand RESERVATION FUNCTIONS
/// FUNCTION_BYTES`: the child's side. Reads the guest on stdin, checks its
/// shape (text is only known once parsed, here, within the limits), writes
/// its native code on stdout.
pub fn child_main(
    kind: &str,
    engine: wasmtime::Engine,
    max_functions: u64,
    max_function_bytes: u64,
) -> ExitCode {
    let mut bytes = Vec::new();
    if std::io::stdin().read_to_end(&mut bytes).is_err() {
        return ExitCode::from(INVALID);
    }
    let limits = CompileLimits {
        max_functions,
        max_function_bytes,
        max_bytes: u64::MAX,
        ..CompileLimits::default()
    };
    let code = (|| {
        let binary = wat::parse_bytes(&bytes).map_err(wasmtime::Error::msg)?;
        check_shape(&binary, &limits).map_err(wasmtime::Error::msg)?;
        match kind {
            "component" => engine.precompile_component(&binary),
            _ => engine.precompile_module(&binary),
        }
    })();
    match code {
        Ok(code) => match std::io::stdout().write_all(&code) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(INVALID)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module of `n` empty functions, in binary.
    fn many_functions(n: u32) -> Vec<u8> {
        fn leb(mut v: u32, out: &mut Vec<u8>) {
            loop {
                let b = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    out.push(b);
                    return;
                }
                out.push(b | 0x80);
            }
        }
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend([1, 4, 1, 0x60, 0, 0]); // one type: [] -> []
        let mut funcs = Vec::new();
        leb(n, &mut funcs);
        funcs.extend(std::iter::repeat_n(0, n as usize));
        m.push(3);
        leb(funcs.len() as u32, &mut m);
        m.extend(funcs);
        let mut code = Vec::new();
        leb(n, &mut code);
        for _ in 0..n {
            code.extend([2, 0, 0x0b]); // size 2: no locals, end
        }
        m.push(10);
        leb(code.len() as u32, &mut m);
        m.extend(code);
        m
    }

    #[test]
    fn a_guest_of_too_many_functions_is_refused_by_its_shape() {
        let limits = CompileLimits {
            max_functions: 1000,
            ..CompileLimits::default()
        };
        check_shape(&many_functions(1000), &limits).unwrap();
        let e = check_shape(&many_functions(1001), &limits).unwrap_err();
        assert!(e.to_string().contains("more than 1000 functions"), "{e}");
        let small = CompileLimits {
            max_bytes: 100,
            ..limits
        };
        let e = check_shape(&many_functions(100), &small).unwrap_err();
        assert!(e.to_string().contains("(--max-guest-size)"), "{e}");
    }
}
