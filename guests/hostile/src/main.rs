//! `hostile`: the guest the adversarial tests (`tests/e2e/hostile`) run.
//! `argv[1]` picks an attack on the sandbox; each mode prints one line
//! (`attacking`) on stdout before it starts, so a test knows the attack
//! runs, then never stops by itself: the sandbox must stop it.
//!
//! Built as a preview 1 module and as a preview 2 component, so each
//! attack is tried on both kinds of guest.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: hostile MODE [ARGS...]
modes:
  clock                     read the clock in a loop (a cheap host call)
  stderr-bytes              write one byte at a time to stderr, forever
  grow                      ask for 1 GiB more memory in a loop (refused)
  random BYTES              ask for BYTES random bytes in a loop
  compute-then-random MS BYTES
                            compute for MS ms, then ask for random bytes in a loop
  compute-then-wait MS      compute for MS ms, print `waiting`, then read stdin to its end
  compute MS                compute for MS ms, then print `done` and exit
  forge                     write log-forging bytes to stderr (CR, NUL, VT, U+2028), then exit
  stderr-lines N LEN        write N lines of LEN characters to stderr, then exit
  touch MIB                 allocate and write MIB MiB of memory, then exit
  scatter RUNS              grow memory and write one byte on every other page, RUNS
                            pages in all (RUNS disjoint runs of dirty pages), each first
                            checked to read 0; say `scattered RUNS clean|found`, exit
  remnant                   say whether memory holds what an earlier guest planted there
                            (`image: found|clean`, `grown: found|clean`), plant it, say
                            `planted`, then hold until stdin ends
  slow-answer MS            read stdin to its end, wait MS ms, then answer `answer`
  read-bytes                read stdin one byte per call to its end, then print the count
  open-files PATH N         open PATH N times and keep them; say how many opened, then
                            hold them until stdin ends
  connect-hold ADDR N       the same with TCP connections to ADDR
  fill PATH CHUNK           append CHUNK bytes at a time to PATH until a write fails
  sparse PATH SIZE          create PATH and set its size to SIZE
  many-files DIR N          create N empty files in DIR until one fails
  symlink TARGET LINK       create the symlink LINK pointing at TARGET
  read-file PATH            read PATH whole, and list its folder, in a loop
  open-close PATH           open PATH, stat it and close it, in a loop";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("", String::as_str);
    let arg = |i: usize| -> Option<u64> { args.get(i).and_then(|a| a.parse().ok()) };
    match (mode, arg(2), arg(3)) {
        ("clock", ..) => attack(|| {
            std::hint::black_box(Instant::now());
        }),
        ("stderr-bytes", ..) => attack(|| {
            let _ = std::io::stderr().write(b"x");
        }),
        ("grow", ..) => attack(|| {
            // 16,384 pages of 64 KiB: refused by any sane rlimit_as.
            std::hint::black_box(core::arch::wasm32::memory_grow(0, 16_384));
        }),
        ("random", Some(bytes), _) => {
            let mut buf = vec![0u8; bytes as usize];
            attack(move || random(&mut buf))
        }
        ("compute-then-random", Some(ms), Some(bytes)) => {
            compute(ms);
            let mut buf = vec![0u8; bytes as usize];
            attack(move || random(&mut buf))
        }
        ("compute-then-wait", Some(ms), _) => {
            compute(ms);
            let mut out = std::io::stdout();
            let _ = out.write_all(b"waiting\n").and_then(|()| out.flush());
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
            ExitCode::SUCCESS
        }
        ("compute", Some(ms), _) => {
            compute(ms);
            println!("done");
            ExitCode::SUCCESS
        }
        ("forge", ..) => {
            let mut err = std::io::stderr();
            let _ = err.write_all(
                "x\rINFO wasinetd::conn: exit=0 service=FAKE\0\x0bnul-and-vt\u{2028}INFO forged\n"
                    .as_bytes(),
            );
            ExitCode::SUCCESS
        }
        ("touch", Some(mib), _) => {
            let mut memory = vec![0u8; (mib as usize) << 20];
            for byte in memory.iter_mut().step_by(4096) {
                *byte = 1;
            }
            std::hint::black_box(&memory);
            println!("touched {mib} MiB");
            ExitCode::SUCCESS
        }
        ("remnant", ..) => remnant(),
        ("scatter", Some(runs), _) => scatter(runs as usize),
        ("read-bytes", ..) => {
            use std::os::fd::FromRawFd as _;
            // Descriptor 0 itself, not std's buffered stdin: one host call
            // per byte. ManuallyDrop: stdin is not this code's to close.
            // SAFETY: descriptor 0 is open for the whole run.
            let mut stdin = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
            let mut byte = [0u8; 1];
            let mut count = 0u64;
            while let Ok(1) = std::io::Read::read(&mut *stdin, &mut byte) {
                count += 1;
            }
            println!("{count}");
            ExitCode::SUCCESS
        }
        ("slow-answer", Some(ms), _) => {
            let mut input = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut input);
            std::thread::sleep(Duration::from_millis(ms));
            println!("answer");
            ExitCode::SUCCESS
        }
        ("open-files", ..) => hold(args.get(2), arg(3), |p| {
            std::fs::File::open(p).map(drop_later)
        }),
        ("connect-hold", ..) => hold(args.get(2), arg(3), |a| {
            std::net::TcpStream::connect(a).map(drop_later)
        }),
        ("fill", _, Some(chunk)) => {
            let path = args.get(2).map_or("", String::as_str);
            let data = vec![b'z'; chunk as usize];
            let mut total = 0u64;
            let result = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| {
                    loop {
                        f.write_all(&data)?;
                        total += chunk;
                    }
                });
            report(&format!("wrote {total}"), result.map(|_: ()| ()))
        }
        ("sparse", _, Some(size)) => {
            let path = args.get(2).map_or("", String::as_str);
            let result = std::fs::File::create(path).and_then(|f| f.set_len(size));
            report("sparse", result)
        }
        ("many-files", _, Some(n)) => {
            let dir = args.get(2).map_or("", String::as_str);
            let mut made = 0;
            let mut result = Ok(());
            for i in 0..n {
                if let Err(e) = std::fs::File::create(format!("{dir}/f{i}")) {
                    result = Err(e);
                    break;
                }
                made += 1;
            }
            report(&format!("made {made}"), result)
        }
        ("read-file", ..) => {
            let path = args.get(2).cloned().unwrap_or_default();
            let folder = std::path::Path::new(&path)
                .parent()
                .map(|p| p.to_owned())
                .unwrap_or_default();
            attack(move || {
                let _ = std::hint::black_box(std::fs::read(&path));
                let _ = std::fs::read_dir(&folder).map(|d| d.count());
            })
        }
        ("open-close", ..) => {
            let path = args.get(2).cloned().unwrap_or_default();
            attack(move || {
                let _ = std::hint::black_box(std::fs::File::open(&path).and_then(|f| f.metadata()));
            })
        }
        ("symlink", ..) => {
            let (target, link) = (
                args.get(2).map_or("", String::as_str),
                args.get(3).map_or("", String::as_str),
            );
            report("symlink", symlink(target, link))
        }
        ("stderr-lines", Some(n), Some(len)) => {
            let line = format!("{}\n", "y".repeat(len as usize));
            let mut err = std::io::stderr();
            for _ in 0..n {
                let _ = err.write_all(line.as_bytes());
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// What `remnant` plants on every page it owns, for a later guest to find.
const MARK: [u8; 8] = *b"REMNANT!";
/// Four pages of initialised data: in the module's data segment, so they
/// come from the memory image (copied on write), not from zero pages.
static mut IMAGE_AREA: [u8; 4 * 4096] = [0x55; 4 * 4096];
/// Pages `remnant` grows its memory by (64 KiB each): zero pages, marked
/// every other 4 KiB page, so 64 disjoint runs of dirty pages (a slot's
/// reset scans them 32 at a time).
const GROWN_PAGES: usize = 8;

/// Looks for [`MARK`] on each page of two areas, an image one and a grown
/// one, plants it there, then holds its pages until stdin ends: the test
/// pushes them out to swap meanwhile, and a second `remnant` in the same
/// pool slot must find neither area marked.
fn remnant() -> ExitCode {
    let grown_at = core::arch::wasm32::memory_grow(0, GROWN_PAGES);
    if grown_at == usize::MAX {
        println!("grow refused");
        return ExitCode::FAILURE;
    }
    // (name, start, length, distance between marks)
    let areas = [
        ("image", (&raw mut IMAGE_AREA).cast::<u8>(), 4 * 4096, 4096),
        (
            "grown",
            (grown_at * 65536) as *mut u8,
            GROWN_PAGES * 65536,
            2 * 4096,
        ),
    ];
    for (name, base, len, step) in areas {
        // SAFETY: both areas are this guest's own memory, `len` bytes
        // long; nothing else reads or writes them.
        let found = (0..len)
            .step_by(step)
            .any(|off| unsafe { base.add(off).cast::<[u8; 8]>().read_volatile() } == MARK);
        println!("{name}: {}", if found { "found" } else { "clean" });
        for off in (0..len).step_by(step) {
            // SAFETY: as above.
            unsafe { base.add(off).cast::<[u8; 8]>().write_volatile(MARK) };
        }
    }
    println!("planted");
    let _ = std::io::stdout().flush();
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    ExitCode::SUCCESS
}

/// Grows memory and dirties `runs` pages two pages apart: as many
/// disjoint runs of dirty pages as an interpreter leaves in its heap.
fn scatter(runs: usize) -> ExitCode {
    let bytes = runs * 2 * 4096;
    let grown_at = core::arch::wasm32::memory_grow(0, bytes.div_ceil(65536));
    if grown_at == usize::MAX {
        println!("grow refused");
        return ExitCode::FAILURE;
    }
    let base = (grown_at * 65536) as *mut u8;
    let mut found = false;
    for run in 0..runs {
        // SAFETY: the grown pages are this guest's own; nothing else
        // reads or writes them.
        unsafe {
            let byte = base.add(run * 2 * 4096);
            found |= byte.read_volatile() != 0;
            byte.write_volatile(1);
        }
    }
    println!("scattered {runs} {}", if found { "found" } else { "clean" });
    ExitCode::SUCCESS
}

/// Says `attacking`, then runs `step` forever.
/// Burns CPU for `ms` milliseconds of wall-clock time.
fn compute(ms: u64) {
    let until = Instant::now() + Duration::from_millis(ms);
    let mut x = 1u64;
    while Instant::now() < until {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
}

fn attack(mut step: impl FnMut()) -> ExitCode {
    let mut out = std::io::stdout();
    let _ = out.write_all(b"attacking\n").and_then(|()| out.flush());
    loop {
        step();
    }
}

#[cfg(target_env = "p1")]
fn random(buf: &mut [u8]) {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        fn random_get(buf: *mut u8, len: usize) -> u16;
    }
    // SAFETY: the host writes at most `len` bytes into `buf`.
    unsafe {
        random_get(buf.as_mut_ptr(), buf.len());
    }
}

#[cfg(target_env = "p2")]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/deps/random",
        inline: "package wasinetd:hostile; world hostile { import wasi:random/random@0.2.12; }",
        world: "wasinetd:hostile/hostile",
        generate_all,
    });
}

#[cfg(target_env = "p2")]
fn random(buf: &mut [u8]) {
    let bytes = bindings::wasi::random::random::get_random_bytes(buf.len() as u64);
    let n = bytes.len().min(buf.len());
    buf[..n].copy_from_slice(&bytes[..n]);
}

/// Keeps `value` alive until the process ends.
fn drop_later<T: 'static>(value: T) {
    std::mem::forget(value);
}

/// Prints `what`, then `ok` or the error, on one line.
fn report(what: &str, result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => println!("{what}: ok"),
        Err(e) => println!("{what}: error {:?} {e}", e.kind()),
    }
    ExitCode::SUCCESS
}

/// Opens `target` up to `n` times with `open`, keeping each; says how many
/// it got and how the last failed, then holds them until stdin ends.
fn hold(
    target: Option<&String>,
    n: Option<u64>,
    open: impl Fn(&str) -> std::io::Result<()>,
) -> ExitCode {
    let (target, n) = (target.map_or("", String::as_str), n.unwrap_or(0));
    let mut opened = 0;
    let mut last = Ok(());
    for _ in 0..n {
        if let Err(e) = open(target) {
            last = Err(e);
            break;
        }
        opened += 1;
    }
    report(&format!("opened {opened}"), last);
    let _ = std::io::stdout().flush();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    ExitCode::SUCCESS
}

/// `symlink(2)` through wasi-libc (std's is not stable on WASI).
fn symlink(target: &str, link: &str) -> std::io::Result<()> {
    unsafe extern "C" {
        fn symlink(target: *const std::ffi::c_char, link: *const std::ffi::c_char) -> i32;
    }
    let (target, link) = (
        std::ffi::CString::new(target).map_err(std::io::Error::other)?,
        std::ffi::CString::new(link).map_err(std::io::Error::other)?,
    );
    // SAFETY: two NUL-terminated strings that live across the call.
    match unsafe { symlink(target.as_ptr(), link.as_ptr()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
