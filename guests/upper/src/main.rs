//! `upper`: reads one line from stdin (the connection), writes it back
//! upper-cased and exits.
//!
//! The smallest guest that both reads and answers: the first thing to try
//! when checking that a service is wired up (`printf 'hi\n' | nc HOST PORT`),
//! and it logs what it got to stderr so the host's guest log can be checked.

use std::io::{self, BufRead, Read, Write};
use std::process::ExitCode;

/// Longest line read, in bytes (newline included); the rest is left unread.
const MAX_LINE: u64 = 64 * 1024;

fn main() -> ExitCode {
    let mut line = Vec::new();
    if let Err(e) = io::stdin()
        .lock()
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)
    {
        eprintln!("upper: failed to read a line: {e}");
        return ExitCode::FAILURE;
    }
    if line.is_empty() {
        eprintln!("got 0 bytes");
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "got {} bytes: {:?}",
        line.len(),
        String::from_utf8_lossy(&line)
    );
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(&to_upper(&line)).and_then(|()| out.flush()) {
        eprintln!("upper: failed to write the line: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Upper-cases the UTF-8 in `bytes` (ASCII and Unicode alike, so `ß` becomes
/// `SS`), passing any invalid bytes through unchanged.
// Bytes rather than `read_line`'s `String`: a client's bad UTF-8, or a
// character cut by `MAX_LINE`, still gets an answer instead of an error.
fn to_upper(bytes: &[u8]) -> Vec<u8> {
    let mut upper = Vec::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        upper.extend_from_slice(chunk.valid().to_uppercase().as_bytes());
        upper.extend_from_slice(chunk.invalid());
    }
    upper
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_cases_ascii_and_unicode_keeping_the_newline() {
        assert_eq!(
            to_upper("héllo straße\n".as_bytes()),
            "HÉLLO STRASSE\n".as_bytes()
        );
    }

    #[test]
    fn passes_invalid_utf8_through() {
        assert_eq!(to_upper(b"a\xffb\n"), b"A\xffB\n");
    }
}
