//! `hello-std`: the health check `hello-http` answers, written the way a
//! handler is usually written: the request read a line at a time with
//! `read_line`, the answer written a line at a time with `write!` to Rust's
//! stdout, which is line-buffered (also on a socket): one `fd_write` per
//! line, six in all. The daemon gathers them into one send
//! (`sandbox::stdio::stdout`); the benchmark serves this guest beside
//! `hello-http` (one write) to show what the gathering is worth.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    match serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello-std: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> io::Result<()> {
    // The request head, up to its blank line (or the end of input): read
    // whole, so no unread byte makes the kernel answer the close with RST.
    let mut line = String::new();
    let mut stdin = io::stdin().lock();
    loop {
        line.clear();
        if stdin.read_line(&mut line)? == 0 || line.trim_end_matches(['\r', '\n']).is_empty() {
            break;
        }
    }
    let mut out = io::stdout();
    write!(out, "HTTP/1.1 200 OK\r\n")?;
    write!(out, "Content-Type: text/plain\r\n")?;
    write!(out, "Connection: close\r\n")?;
    write!(out, "Content-Length: 13\r\n")?;
    write!(out, "\r\n")?;
    write!(out, "Hello, World!")?;
    out.flush()
}
