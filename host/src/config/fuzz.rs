//! Config input fuzzed in the normal test run: random mutations of the
//! golden cases (`tests/config/*.conf`), a bounded number of them, each
//! parsed and validated as the daemon would. Whatever the bytes, a load
//! ends, without a panic, in services or `FILE:LINE` errors.

use std::path::Path;
use std::time::{Duration, Instant};

use super::parse_str;

/// Mutants per golden case.
const ROUNDS: usize = 150;
/// The whole run must end within this, or something loops.
const BUDGET: Duration = Duration::from_secs(60);

/// A small deterministic generator (xorshift64*), so a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Words a config is made of, and a few it should never see.
const PIECES: &[&str] = &[
    "{",
    "}",
    "=",
    "+=",
    "-=",
    "\n",
    " ",
    "\t",
    "#",
    "service x",
    "defaults",
    "includefile",
    "includedir",
    "UNLIMITED",
    "0",
    "-1",
    "99999999999999999999",
    "1.5s",
    "64M",
    "18446744073709551616",
    "::1",
    "[::1]:0",
    "127.0.0.1:99999",
    "0.0.0.0/33",
    "\u{0}",
    "\u{202e}",
    "é",
    "\r\n",
    "listen_unix",
    "/",
    "..",
    "preopen",
    ":rw+symlinks",
    "redirect",
    "server",
    "port",
    "rlimit_as",
    "access_times",
    "25:61-00:00",
    "cps",
    "banner",
    "log_type",
    "FILE",
    "SYSLOG",
    "idle_timeout",
    "preopen_quota",
    "per_source",
    "instances",
    "flags",
    "SENSOR",
];

fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 if !bytes.is_empty() => {
                // Cut a run.
                let end = (at + rng.below(16)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            1 if !bytes.is_empty() => {
                // Flip a byte.
                let i = at.min(bytes.len() - 1);
                bytes[i] = rng.next() as u8;
            }
            2 => {
                // A piece, from the list.
                let piece = PIECES[rng.below(PIECES.len())];
                bytes.splice(at..at, piece.bytes());
            }
            3 if !bytes.is_empty() => {
                // Repeat a slice (a line twice, a block twice).
                let end = (at + rng.below(64)).min(bytes.len());
                let copy = bytes[at.min(end)..end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => {
                // A very long word.
                let word = "x".repeat(1 + rng.below(10_000));
                bytes.splice(at..at, word.bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn mutated_configs_end_in_services_or_file_line_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/config");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let started = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for case in &cases {
        let text = std::fs::read_to_string(case).unwrap();
        for round in 0..ROUNDS {
            let input = mutate(&text, &mut rng);
            // Relative paths (includes, guests, preopens) resolve next to
            // the golden cases, as `check` runs them.
            let origin = dir.join("fuzzed.conf");
            // Made-up names resolve to nothing, at once: no DNS.
            let load = || super::resolve::with_stub(|_| Vec::new(), || parse_str(&input, &origin));
            let config = std::panic::catch_unwind(load).unwrap_or_else(|_| {
                panic!("{}: mutant {round} panicked:\n{input}", case.display())
            });
            let lines = input.lines().count() as u32 + 1;
            for e in config.errors.iter().chain(&config.warnings) {
                assert!(
                    e.line >= 1 && (e.file != origin || e.line <= lines),
                    "{}: mutant {round}: an error at line {} of {} lines: {e}\n{input}",
                    case.display(),
                    e.line,
                    lines
                );
                assert!(!e.message.is_empty(), "{e:?}");
            }
            parsed += 1;
        }
        assert!(
            started.elapsed() < BUDGET,
            "{parsed} mutants took {:?}: a load that does not end?",
            started.elapsed()
        );
    }
}
