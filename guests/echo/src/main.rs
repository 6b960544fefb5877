//! `echo`: the RFC 862 echo service. Copies stdin (the connection) back to
//! stdout chunk by chunk until the client half-closes, then exits 0.
//!
//! It exists as the simplest streaming guest: each chunk is written and
//! flushed as soon as it is read, so a client sees its bytes echoed before it
//! sends more, which exercises the host's stdin/stdout plumbing in both
//! directions at once (unlike `hello-http`, which reads, then writes).

use std::io::{self, Read, Write};
use std::process::ExitCode;

/// Size of one read, like `bench/handlers/echo.c`.
const CHUNK: usize = 16 * 1024;

fn main() -> ExitCode {
    match echo(&mut io::stdin().lock(), &mut io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Copies `input` to `output` until EOF, flushing after every chunk.
// Not `io::copy`: it may buffer, and an echo must never hold bytes back.
fn echo(input: &mut impl Read, output: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        output.write_all(&buf[..n])?;
        output.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_everything_until_eof() {
        let input: Vec<u8> = (0..3 * CHUNK + 7).map(|i| i as u8).collect();
        let mut output = Vec::new();
        echo(&mut input.as_slice(), &mut output).expect("in-memory copy cannot fail");
        assert_eq!(output, input);
    }
}
