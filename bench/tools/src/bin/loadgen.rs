//! Closed-loop load on loopback: `c` clients, each doing one TCP connection
//! per request (connect, send the request, read to EOF, check the answer),
//! for a bounded time and count. Latency runs from before `connect()` to
//! EOF, so accept-queue waits and SYN retransmits are in it.
//!
//! `loadgen ADDR -c 16 -d 10 [--max N] [--timeout 5] [--threads 2]`
//! prints one line of `key=value` pairs:
//! `ok= errors= refused= reset= timeout= bad= conn_per_s= p50_ms= p99_ms= max_ms=`.
//!
//! `--raw`: send nothing, count a connection ok when the server closes it
//! (to keep a busy-looping neighbour service at its instance cap).
//!
//! `loadgen ADDR --hold N [--sources K]`: opens N connections to an echo
//! service, proves each has a live guest (one byte echoed), reports, waits
//! for a line on stdin, then sends a line on every connection and checks
//! every answer. With K sources, connection i comes from 127.1.0.1 + i % K
//! (loopback: all of 127.0.0.0/8 is local), so past ~28,000 connections
//! the source ports of one address do not run out.

use std::io::{BufRead, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
const BODY: &[u8] = b"Hello, World!";

#[derive(Default)]
struct Tally {
    ok: u64,
    refused: u64,
    reset: u64,
    timeout: u64,
    bad: u64,
    other: u64,
    latencies_us: Vec<u32>,
}

fn arg<T: std::str::FromStr>(args: &[String], flag: &str, default: T) -> T {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad value for {flag}")))
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = args
        .get(1)
        .expect("usage: loadgen ADDR [-c N] [-d SECS]")
        .parse()
        .expect("ADDR");
    let threads: usize = arg(&args, "--threads", 2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    let hold: usize = arg(&args, "--hold", 0);
    if hold > 0 {
        let sources: u32 = arg(&args, "--sources", 1);
        rt.block_on(hold_mode(addr, hold, sources));
        return;
    }
    let c: usize = arg(&args, "-c", 16);
    let secs: f64 = arg(&args, "-d", 10.0);
    let max: u64 = arg(&args, "--max", 2_000_000);
    let timeout = Duration::from_secs_f64(arg(&args, "--timeout", 5.0));
    let window = Duration::from_secs_f64(secs);
    let raw = args.iter().any(|a| a == "--raw");
    let started = Instant::now();
    let per_client = max / c as u64 + 1;
    let tallies = rt.block_on(async {
        let tasks: Vec<_> = (0..c)
            .map(|_| tokio::spawn(client(addr, started + window, per_client, timeout, raw)))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("client task"));
        }
        out
    });
    let elapsed = started.elapsed().as_secs_f64().min(secs.max(0.001));
    let mut all = Tally::default();
    for t in tallies {
        all.ok += t.ok;
        all.refused += t.refused;
        all.reset += t.reset;
        all.timeout += t.timeout;
        all.bad += t.bad;
        all.other += t.other;
        all.latencies_us.extend(t.latencies_us);
    }
    all.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let v = &all.latencies_us;
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        v[i] as f64 / 1000.0
    };
    let errors = all.refused + all.reset + all.timeout + all.bad + all.other;
    println!(
        "ok={} errors={} refused={} reset={} timeout={} bad={} other={} conn_per_s={:.1} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        all.ok,
        errors,
        all.refused,
        all.reset,
        all.timeout,
        all.bad,
        all.other,
        all.ok as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
}

async fn client(
    addr: SocketAddr,
    deadline: Instant,
    max: u64,
    timeout: Duration,
    raw: bool,
) -> Tally {
    let mut t = Tally::default();
    let mut buf = Vec::with_capacity(256);
    for _ in 0..max {
        if Instant::now() >= deadline {
            break;
        }
        let begin = Instant::now();
        match tokio::time::timeout(timeout, one(addr, &mut buf, raw)).await {
            Ok(Ok(true)) => {
                t.ok += 1;
                t.latencies_us
                    .push(begin.elapsed().as_micros().min(u32::MAX as u128) as u32);
                continue;
            }
            Ok(Ok(false)) => t.bad += 1,
            Ok(Err(e)) => match e.kind() {
                ErrorKind::ConnectionRefused => t.refused += 1,
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => t.reset += 1,
                _ => t.other += 1,
            },
            Err(_) => t.timeout += 1,
        }
        // Back off a little after an error, as a real client would.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t
}

async fn one(addr: SocketAddr, buf: &mut Vec<u8>, raw: bool) -> std::io::Result<bool> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    if !raw {
        s.write_all(REQUEST).await?;
    }
    buf.clear();
    s.read_to_end(buf).await?;
    Ok(raw || (buf.starts_with(b"HTTP/1.1 200 OK\r\n") && buf.ends_with(BODY)))
}

/// A connection to `addr` from `source`, any port.
async fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(addr).await
}

async fn hold_mode(addr: SocketAddr, n: usize, sources: u32) {
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    let mut failed = 0usize;
    let mut first_error = None;
    for i in 0..n {
        let connected = if sources > 1 {
            connect_from(Ipv4Addr::from(0x7f01_0001 + i as u32 % sources), addr).await
        } else {
            TcpStream::connect(addr).await
        };
        match connected {
            Ok(s) => conns.push(s),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!("loadgen: {failed} connects failed, the first with: {e}");
    }
    // One byte echoed back proves a live guest behind each connection.
    let mut live = 0usize;
    let mut probes = Vec::new();
    for (i, mut s) in conns.into_iter().enumerate() {
        probes.push(tokio::spawn(async move {
            let ok = async {
                s.write_all(b"+").await?;
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await?;
                std::io::Result::Ok(b[0] == b'+')
            };
            let ok = matches!(
                tokio::time::timeout(Duration::from_secs(10), ok).await,
                Ok(Ok(true))
            );
            (i, s, ok)
        }));
    }
    let mut held = Vec::new();
    for p in probes {
        let (i, s, ok) = p.await.expect("probe");
        if ok {
            live += 1;
        }
        held.push((i, s));
    }
    println!(
        "held={live} requested={n} connect_failed={failed} setup_s={:.2}",
        started.elapsed().as_secs_f64()
    );
    // The caller measures the daemon now, then says go.
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    let mut answers = Vec::new();
    for (i, mut s) in held {
        answers.push(tokio::spawn(async move {
            let msg = format!("line {i}\n");
            let ok = async {
                s.write_all(msg.as_bytes()).await?;
                s.shutdown().await?;
                let mut out = Vec::new();
                s.read_to_end(&mut out).await?;
                // A connection that was not live at the probe (past the
                // daemon's limit) echoes the probe byte first, once served.
                let out = out.strip_prefix(b"+").unwrap_or(&out);
                std::io::Result::Ok(out == msg.as_bytes())
            };
            matches!(
                tokio::time::timeout(Duration::from_secs(60), ok).await,
                Ok(Ok(true))
            )
        }));
    }
    let mut correct = 0usize;
    for a in answers {
        if a.await.unwrap_or(false) {
            correct += 1;
        }
    }
    println!("answered_correctly={correct} of={n} live_at_probe={live}");
}
