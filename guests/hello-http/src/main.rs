//! `hello-http`: the health-check guest. It reads the HTTP request head from
//! stdin (the connection) up to the blank line, then answers with a fixed
//! `200 OK` / `Hello, World!` and exits.
//!
//! It exists to compare wasinetd with the classic super-servers: its bytes and
//! behaviour match the native seed handler `bench/handlers/hello.c`, so a
//! benchmark measures the server, not the handler. Reading the whole head
//! before answering matters: request bytes left unread when the connection
//! closes make the kernel send a RST instead of a FIN.
//!
//! Optional `argv[1]`: milliseconds (0..=60000) to sleep after the head and
//! before answering, used to probe whether handlers run concurrently.

use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

/// The answer, byte for byte the one `hello.c` writes.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
    Content-Type: text/plain\r\n\
    Connection: close\r\n\
    Content-Length: 13\r\n\
    \r\n\
    Hello, World!";

/// Bytes of request head held at once; a longer head is read through, keeping
/// only a 3-byte tail so a blank line split across reads is still found.
const HEAD_BUF: usize = 8192;

/// Longest delay `argv[1]` may ask for, in milliseconds.
const MAX_DELAY_MS: u64 = 60_000;

fn main() -> ExitCode {
    let delay = delay_from_args();
    if let Err(e) = read_head(&mut io::stdin().lock()) {
        eprintln!("hello-http: failed to read the request head: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(delay) = delay {
        thread::sleep(delay);
    }
    if let Err(e) = respond() {
        eprintln!("hello-http: failed to write the response: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The delay asked for by `argv[1]`, if any. Like `hello.c`, a value that is
/// not a number in range means no delay: a health check should still answer.
fn delay_from_args() -> Option<Duration> {
    let arg = std::env::args().nth(1)?;
    match arg.parse::<u64>() {
        Ok(ms) if ms <= MAX_DELAY_MS => Some(Duration::from_millis(ms)),
        _ => {
            eprintln!(
                "hello-http: ignoring delay `{arg}`: expected milliseconds 0..={MAX_DELAY_MS}"
            );
            None
        }
    }
}

/// Writes [`RESPONSE`] to stdout in a single `write`, then flushes.
fn respond() -> io::Result<()> {
    // Not through `io::stdout()`: it is line-buffered, so it would write the
    // head up to its last '\n' and then the body, two writes where hello.c
    // makes one.
    // SAFETY: stdout's descriptor stays open for the whole run, nothing else
    // writes to it, and ManuallyDrop keeps this `File` from closing it.
    let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(io::stdout().as_raw_fd()) });
    out.write_all(RESPONSE)?;
    out.flush()
}

/// Reads `input` up to and including the blank line that ends an HTTP request
/// head (`\r\n\r\n` or `\n\n`), or to EOF: a client that half-closes without
/// a blank line is answered anyway.
fn read_head(input: &mut impl Read) -> io::Result<()> {
    let mut buf = [0u8; HEAD_BUF];
    let mut len = 0;
    loop {
        let n = match input.read(&mut buf[len..]) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Search only the new bytes plus 3 bytes of overlap with the old ones.
        let from = len.saturating_sub(3);
        len += n;
        if head_complete(&buf[from..len]) {
            return Ok(());
        }
        if len == buf.len() {
            buf.copy_within(len - 3..len, 0);
            len = 3;
        }
    }
}

/// Whether `bytes` contain the blank line that ends a request head.
fn head_complete(bytes: &[u8]) -> bool {
    contains(bytes, b"\r\n\r\n") || contains(bytes, b"\n\n")
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its chunks one `read` at a time, then EOF.
    struct Chunks(Vec<Vec<u8>>);

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(chunk) = self.0.first_mut() else {
                return Ok(0);
            };
            let n = chunk.len().min(buf.len());
            buf[..n].copy_from_slice(&chunk[..n]);
            chunk.drain(..n);
            if chunk.is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }

    /// Runs `read_head` over `chunks` and returns the bytes it left unread.
    fn unread_after_head(chunks: &[&[u8]]) -> Vec<u8> {
        let mut input = Chunks(chunks.iter().map(|c| c.to_vec()).collect());
        read_head(&mut input).expect("reading from memory cannot fail");
        input.0.concat()
    }

    #[test]
    fn stops_at_blank_line_split_across_reads() {
        let rest: &[u8] = b"after";
        let chunks: &[&[u8]] = &[b"GET / HTTP/1.1\r\nHost: x\r", b"\n\r", b"\n", rest];
        assert_eq!(unread_after_head(chunks), rest);
    }

    #[test]
    fn accepts_bare_newlines() {
        let chunks: &[&[u8]] = &[b"GET / HTTP/1.0\n", b"\n", b"after"];
        assert_eq!(unread_after_head(chunks), b"after");
    }

    #[test]
    fn reads_through_a_head_longer_than_the_buffer() {
        let long = vec![b'a'; 3 * HEAD_BUF + 5];
        let chunks: &[&[u8]] = &[b"GET / HTTP/1.1\r\nX: ", &long, b"\r\n\r\n", b"after"];
        assert_eq!(unread_after_head(chunks), b"after");
    }

    #[test]
    fn finds_blank_line_across_a_buffer_wrap() {
        // The head fills the buffer exactly with "\r\n\r" at its end.
        let mut head = vec![b'a'; HEAD_BUF - 3];
        head.extend_from_slice(b"\r\n\r");
        let chunks: &[&[u8]] = &[&head, b"\n", b"after"];
        assert_eq!(unread_after_head(chunks), b"after");
    }

    #[test]
    fn response_matches_hello_c() {
        let expected: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 13\r\n\r\nHello, World!";
        assert_eq!(RESPONSE, expected);
    }

    #[test]
    fn eof_without_blank_line_ends_the_head() {
        assert!(unread_after_head(&[b"GET / HTTP/1.1\r\n"]).is_empty());
    }
}
