//! `inetd`: the classic inetd internal services in one small guest, the
//! mode chosen by `argv[0]` (the service NAME, which wasinetd passes for
//! `type = INTERNAL`): `discard` (RFC 863), `chargen` (RFC 864), `daytime`
//! (RFC 867) and `time` (RFC 868). `echo` (RFC 862) is its own guest.
//!
//! With `--dgram` as `argv[1]` (wasinetd adds it on `socket_type = dgram`)
//! stdin is one datagram and stdout the reply: only `chargen` differs, with
//! one reply of a random length from 1 to 512 instead of an endless stream.
//! One package rather than one per service: the guest build links once.

use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

mod clock;

/// Characters per chargen line, before CR LF (RFC 864).
const LINE: usize = 72;
/// The printable ASCII characters, space to tilde, that chargen rotates.
const PRINTABLE: usize = 95;
/// The longest chargen reply to one datagram. RFC 864 says "0 to 512"; the
/// guest never picks 0, because wasinetd sends no reply at all for a guest
/// that writes nothing, and a client would wait for one.
const DGRAM_MAX: usize = 512;
/// Seconds from 1900-01-01 to 1970-01-01 (RFC 868).
const EPOCH_1900: u64 = 2_208_988_800;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.first().map(String::as_str).unwrap_or("");
    let dgram = args.get(1).is_some_and(|a| a == "--dgram");
    let mut out = io::stdout().lock();
    let result = match mode {
        "discard" => discard(&mut io::stdin().lock()),
        "chargen" if dgram => chargen_dgram(&mut out, 1 + random() as usize % DGRAM_MAX),
        "chargen" => chargen(&mut out),
        "daytime" => out.write_all(clock::daytime(now()).as_bytes()),
        "time" => out.write_all(&time(now()).to_be_bytes()),
        other => {
            eprintln!("inetd: unknown service `{other}`: discard, chargen, daytime, time");
            return ExitCode::from(2);
        }
    };
    match result.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // The client went away: the end of chargen, not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{mode}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Seconds since 1970-01-01 UTC, from WASI's wall clock.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 868: seconds since 1900-01-01 00:00 UTC, modulo 2^32.
fn time(unix: u64) -> u32 {
    (unix + EPOCH_1900) as u32
}

/// RFC 863: reads and drops everything until EOF.
fn discard(input: &mut impl Read) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// One full cycle of chargen lines: line `i` is the 72 characters starting
/// at the `i`th printable one, then CR LF; after 95 lines it repeats.
fn cycle() -> Vec<u8> {
    let mut text = Vec::with_capacity(PRINTABLE * (LINE + 2));
    for first in 0..PRINTABLE {
        text.extend((0..LINE).map(|k| b' ' + ((first + k) % PRINTABLE) as u8));
        text.extend_from_slice(b"\r\n");
    }
    text
}

/// RFC 864 over a stream: the cycle, over and over, one cycle per write,
/// until a write fails (the client closed) or the guest's limits end it.
fn chargen(out: &mut impl Write) -> io::Result<()> {
    let text = cycle();
    loop {
        match out.write_all(&text).and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Any other error is the client going away: end cleanly.
            Err(_) => return Ok(()),
        }
    }
}

/// RFC 864 over datagrams: the start of the cycle, `len` bytes of it.
fn chargen_dgram(out: &mut impl Write, len: usize) -> io::Result<()> {
    out.write_all(&cycle()[..len])
}

/// A random number, from the hasher keys std seeds with WASI's `random_get`
/// (std has no other random source, and the guests take no dependencies).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chargen_lines_rotate_through_the_printable_characters() {
        let text = cycle();
        let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), PRINTABLE + 1);
        assert_eq!(&lines[0][..5], b" !\"#$");
        assert_eq!(&lines[1][..3], b"!\"#");
        assert_eq!(lines[0].len(), LINE + 1);
        assert_eq!(lines[0][LINE], b'\r');
    }

    #[test]
    fn time_counts_from_1900() {
        assert_eq!(time(0), 2_208_988_800);
        // 2036-02-07 06:28:16 UTC is 2^32 seconds after 1900: it wraps.
        assert_eq!(time(2_085_978_496), 0);
    }

    #[test]
    fn discard_reads_to_eof() {
        discard(&mut &b"abc"[..]).unwrap();
    }
}
