//! `health-check`: what a load balancer asks of a host. For each HTTP
//! request (one per connection) it opens a TCP connection to every backend
//! it was given, then answers `200 OK` when all of them accepted, else
//! `503 Service Unavailable`; the body has one line per backend:
//!
//! ```text
//! ok 127.0.0.1:5432
//! failed 127.0.0.1:6379: connection refused
//! ```
//!
//! Arguments (`server_args`): the backends, `IP:PORT` (`[IPv6]:PORT`),
//! optionally preceded by `--timeout-ms N` (how long each connect may take,
//! default 1000). The guest has no name lookup: the sandbox allows none.
//!
//! It needs sockets, so it is a component (wasm32-wasip2) only, and it can
//! reach only what the service's `allow_connect` lists: a backend missing
//! there fails with `permission denied`, which the body reports.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// How long a connect may take unless `--timeout-ms` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
/// The longest `--timeout-ms` accepted.
const MAX_TIMEOUT_MS: u64 = 60_000;
/// Bytes of request head held at once (only the end of it matters).
const HEAD_BUF: usize = 8192;

fn main() -> ExitCode {
    // The request first: its bytes must not be left unread, and a balancer
    // measures from it.
    if let Err(e) = read_head(&mut io::stdin().lock()) {
        eprintln!("health-check: cannot read the request: {e}");
        return ExitCode::FAILURE;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (status, body, code) = match parse_args(&args) {
        Ok((timeout, backends)) => {
            let (healthy, body) = probe_all(&backends, timeout);
            let status = if healthy {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            (status, body, ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("health-check: {e}");
            (
                "500 Internal Server Error",
                format!("health-check: {e}\n"),
                ExitCode::from(2),
            )
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut out = io::stdout().lock();
    if let Err(e) = out
        .write_all(response.as_bytes())
        .and_then(|()| out.flush())
    {
        eprintln!("health-check: cannot write the response: {e}");
        return ExitCode::FAILURE;
    }
    code
}

/// `[--timeout-ms N] BACKEND...`
fn parse_args(args: &[String]) -> Result<(Duration, Vec<SocketAddr>), String> {
    let mut timeout = DEFAULT_TIMEOUT;
    let mut rest = args;
    if let [flag, value, tail @ ..] = args
        && flag == "--timeout-ms"
    {
        timeout = match value.parse::<u64>() {
            Ok(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Duration::from_millis(ms),
            _ => {
                return Err(format!(
                    "--timeout-ms takes milliseconds 1..={MAX_TIMEOUT_MS}, not `{value}`"
                ));
            }
        };
        rest = tail;
    }
    if rest.is_empty() {
        return Err("no backends to probe: give them as arguments, IP:PORT".into());
    }
    let backends = rest
        .iter()
        .map(|a| {
            a.parse::<SocketAddr>()
                .map_err(|_| format!("`{a}` is not a backend: write IP:PORT, [IPv6]:PORT"))
        })
        .collect::<Result<_, _>>()?;
    Ok((timeout, backends))
}

/// Probes every backend; whether all are up, and one body line each.
fn probe_all(backends: &[SocketAddr], timeout: Duration) -> (bool, String) {
    let mut healthy = true;
    let mut body = String::new();
    for backend in backends {
        match connect(backend, timeout) {
            Ok(()) => body.push_str(&format!("ok {backend}\n")),
            Err(e) => {
                healthy = false;
                body.push_str(&format!("failed {backend}: {}\n", describe(&e)));
            }
        }
    }
    (healthy, body)
}

/// Opens (and closes) a TCP connection to `backend`, waiting at most
/// `timeout`.
fn connect(backend: &SocketAddr, timeout: Duration) -> io::Result<()> {
    let stream = TcpStream::connect_timeout(backend, timeout)?;
    // On wasm32-wasip2 (Rust 1.95, wasi-libc) `connect_timeout` returns Ok
    // once the attempt is over, refused or not; the outcome is the
    // socket's pending error, and a connected socket has a peer.
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    stream.peer_addr().map(drop)
}

/// A short, stable description of why a connect failed.
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".into(),
        _ => e.to_string(),
    }
}

/// Reads up to the blank line that ends an HTTP request head, or to EOF,
/// so the client's request is consumed before the answer.
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
        let from = len.saturating_sub(3);
        len += n;
        let new = &buf[from..len];
        if new.windows(4).any(|w| w == b"\r\n\r\n") || new.windows(2).any(|w| w == b"\n\n") {
            return Ok(());
        }
        if len == buf.len() {
            buf.copy_within(len - 3..len, 0);
            len = 3;
        }
    }
}
