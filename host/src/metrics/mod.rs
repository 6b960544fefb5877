//! Per-service counters and histograms, and their Prometheus text form.
//!
//! Each service owns one [`ServiceMetrics`]; the accept loop and the
//! connection record into it with relaxed atomic adds (no lock and no
//! allocation per connection), and the admin listener (`admin`) reads it to
//! render `/metrics` and `/status`. Counters only grow; a reader may see
//! one connection's counters half-updated, never a torn number. Bytes are
//! counted as they cross the socket, by [`CountedSocket`].

use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::admission::Refusal;
use crate::logging::Traffic;
use crate::sandbox::{Kind, Outcome, RunReport, Socket};

/// Connection duration buckets (upper bounds, seconds).
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Instantiation time buckets (upper bounds, seconds).
const INSTANTIATE_BUCKETS: &[f64] = &[
    5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2,
];
const MAX_BUCKETS: usize = 16;

/// Distinct refusal reasons counted separately; more are counted as `other`.
const REFUSAL_SLOTS: usize = 8;

/// Everything counted for one service.
pub struct ServiceMetrics {
    accepted: AtomicU64,
    refused: [RefusalSlot; REFUSAL_SLOTS],
    refused_other: AtomicU64,
    /// Indexed like [`Kind::COUNTED`].
    outcomes: [AtomicU64; Kind::COUNTED.len()],
    exit_nonzero: AtomicU64,
    duration: Histogram,
    instantiate: Histogram,
    cpu_ns: AtomicU64,
    received: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
}

/// A refusal reason, named on first use, and its count.
#[derive(Default)]
struct RefusalSlot {
    reason: OnceLock<&'static str>,
    count: AtomicU64,
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        let m = Self {
            accepted: AtomicU64::new(0),
            refused: Default::default(),
            refused_other: AtomicU64::new(0),
            outcomes: Default::default(),
            exit_nonzero: AtomicU64::new(0),
            duration: Histogram::new(DURATION_BUCKETS),
            instantiate: Histogram::new(INSTANTIATE_BUCKETS),
            cpu_ns: AtomicU64::new(0),
            received: Arc::default(),
            sent: Arc::default(),
        };
        // Known from the start, so the series exists (at 0) before the
        // first refusal; reasons added later appear when first counted.
        let _ = m.refused[0].reason.set(Refusal::Instances.as_str());
        m
    }
}

impl ServiceMetrics {
    /// A connection was accepted (whether then refused or served).
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }

    /// An accepted connection was closed without running the guest.
    pub fn refused(&self, reason: Refusal) {
        let reason = reason.as_str();
        for slot in &self.refused {
            if *slot.reason.get_or_init(|| reason) == reason {
                slot.count.fetch_add(1, Relaxed);
                return;
            }
        }
        self.refused_other.fetch_add(1, Relaxed);
    }

    /// A served connection ended, `duration` after it was accepted.
    pub fn finished(&self, report: &RunReport, duration: Duration) {
        if let Outcome::Exited(code) = report.outcome
            && code != 0
        {
            self.exit_nonzero.fetch_add(1, Relaxed);
        }
        let kind = report.outcome.kind().counted_as();
        let index = Kind::COUNTED.iter().position(|k| *k == kind);
        self.outcomes[index.unwrap_or(0)].fetch_add(1, Relaxed);
        self.duration.observe(duration);
        if let Some(t) = report.instantiate {
            self.instantiate.observe(t);
        }
        self.cpu_ns.fetch_add(nanos(report.cpu), Relaxed);
    }

    /// A snapshot of the counters, for `/status`.
    pub fn snapshot(&self) -> Snapshot {
        let finished: u64 = self.outcomes.iter().map(|c| c.load(Relaxed)).sum();
        let exits = self.outcomes[0].load(Relaxed);
        let nonzero = self.exit_nonzero.load(Relaxed);
        Snapshot {
            accepted: self.accepted.load(Relaxed),
            refused: self.refusals(),
            finished,
            outcomes: std::array::from_fn(|i| {
                (Kind::COUNTED[i].label(), self.outcomes[i].load(Relaxed))
            }),
            exit_zero: exits.saturating_sub(nonzero),
            exit_nonzero: nonzero,
            received: self.received.load(Relaxed),
            sent: self.sent.load(Relaxed),
        }
    }

    fn refusals(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<_> = self
            .refused
            .iter()
            .filter_map(|s| Some((*s.reason.get()?, s.count.load(Relaxed))))
            .collect();
        let other = self.refused_other.load(Relaxed);
        if other > 0 {
            out.push(("other", other));
        }
        out
    }
}

/// A connection's socket that adds what it reads and writes to its
/// service's byte counters and its own: the guest's stdio (through
/// [`Socket`]), the bytes a `redirect` relays (through `AsyncRead` and
/// `AsyncWrite`), and the unread input drained at the end.
pub struct CountedSocket<S = TcpStream> {
    stream: S,
    received: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    /// This connection's own counts, for its log line (`TRAFFIC`) and its
    /// idle watch.
    conn: Arc<ConnCounts>,
}

/// One connection's bytes so far, shared with whoever watches it.
#[derive(Debug, Default)]
pub struct ConnCounts {
    received: AtomicU64,
    sent: AtomicU64,
}

impl ConnCounts {
    /// What the connection has read and written so far.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            bytes_in: self.received.load(Relaxed),
            bytes_out: self.sent.load(Relaxed),
        }
    }
}

impl<S> CountedSocket<S> {
    /// Counts `stream`'s bytes into `metrics`.
    pub fn new(stream: S, metrics: &ServiceMetrics) -> Self {
        Self {
            stream,
            received: metrics.received.clone(),
            sent: metrics.sent.clone(),
            conn: Arc::default(),
        }
    }

    /// What this connection has read and written so far.
    pub fn traffic(&self) -> Traffic {
        self.conn.traffic()
    }

    /// This connection's counts, to watch while the socket is in use.
    pub fn counts(&self) -> Arc<ConnCounts> {
        self.conn.clone()
    }
}

impl<S: Socket> Socket for CountedSocket<S> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_read_ready(cx)
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.try_read(buf)?;
        self.count_in(n);
        Ok(n)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_write_ready(cx)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stream.try_write(buf)?;
        self.count_out(n);
        Ok(n)
    }

    fn gone(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.stream.gone()
    }
}

impl<S> CountedSocket<S> {
    fn count_in(&self, n: usize) {
        self.received.fetch_add(n as u64, Relaxed);
        self.conn.received.fetch_add(n as u64, Relaxed);
    }

    fn count_out(&self, n: usize) {
        self.sent.fetch_add(n as u64, Relaxed);
        self.conn.sent.fetch_add(n as u64, Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountedSocket<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        this.count_in(buf.filled().len() - before);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountedSocket<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = std::task::ready!(Pin::new(&mut this.stream).poll_write(cx, buf))?;
        this.count_out(n);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl<S: AsFd> AsFd for CountedSocket<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// Counters read at one moment (each on its own).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub accepted: u64,
    pub refused: Vec<(&'static str, u64)>,
    pub finished: u64,
    pub outcomes: [(&'static str, u64); Kind::COUNTED.len()],
    pub exit_zero: u64,
    pub exit_nonzero: u64,
    pub received: u64,
    pub sent: u64,
}

/// A Prometheus histogram over fixed buckets; counts are kept per bucket
/// and made cumulative when rendered.
struct Histogram {
    bounds: &'static [f64],
    /// Bucket upper bounds in nanoseconds, for the hot path.
    bounds_ns: [u64; MAX_BUCKETS],
    /// One per bound, then the `+Inf` bucket.
    counts: [AtomicU64; MAX_BUCKETS + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        assert!(bounds.len() <= MAX_BUCKETS, "too many histogram buckets");
        let mut bounds_ns = [u64::MAX; MAX_BUCKETS];
        for (ns, s) in bounds_ns.iter_mut().zip(bounds) {
            *ns = (s * 1e9).round() as u64;
        }
        Self {
            bounds,
            bounds_ns,
            counts: Default::default(),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let ns = nanos(d);
        let i = self.bounds_ns[..self.bounds.len()].partition_point(|&b| b < ns);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, service: &str) {
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{service=\"{service}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[self.bounds.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{service=\"{service}\",le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{service=\"{service}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{service=\"{service}\"}} {cumulative}");
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One service as `/metrics` shows it: its name, its counters, and the
/// guests it runs now.
pub struct Row<'a> {
    pub name: &'a str,
    pub metrics: &'a ServiceMetrics,
    pub active: u32,
}

/// The Prometheus text exposition (format 0.0.4) of the daemon and every
/// service.
pub fn render(services: &[Row<'_>], daemon: &Daemon) -> String {
    let rows: Vec<(String, &ServiceMetrics, Snapshot)> = services
        .iter()
        .map(|s| (escape(s.name), s.metrics, s.metrics.snapshot()))
        .collect();
    // Each family is written whole (HELP, TYPE, then every service's
    // samples), as the format requires.
    let mut out = String::with_capacity(4096 + 2048 * rows.len());
    daemon.render(&mut out);
    header(
        &mut out,
        "wasinetd_connections_accepted_total",
        "counter",
        "Connections accepted, whether then refused or served.",
    );
    for (svc, _, s) in &rows {
        sample(
            &mut out,
            "wasinetd_connections_accepted_total",
            svc,
            "",
            s.accepted,
        );
    }
    header(
        &mut out,
        "wasinetd_connections_refused_total",
        "counter",
        "Connections closed without running the guest, by reason.",
    );
    for (svc, _, s) in &rows {
        for (reason, n) in &s.refused {
            let label = format!(",reason=\"{}\"", escape(reason));
            sample(
                &mut out,
                "wasinetd_connections_refused_total",
                svc,
                &label,
                *n,
            );
        }
    }
    header(
        &mut out,
        "wasinetd_connections_active",
        "gauge",
        "Guests running now.",
    );
    for ((svc, _, _), service) in rows.iter().zip(services) {
        let active = u64::from(service.active);
        sample(&mut out, "wasinetd_connections_active", svc, "", active);
    }
    header(
        &mut out,
        "wasinetd_connections_finished_total",
        "counter",
        "Served connections that ended, by how the guest ended.",
    );
    for (svc, _, s) in &rows {
        for (outcome, n) in &s.outcomes {
            let label = format!(",outcome=\"{outcome}\"");
            sample(
                &mut out,
                "wasinetd_connections_finished_total",
                svc,
                &label,
                *n,
            );
        }
    }
    header(
        &mut out,
        "wasinetd_guest_exits_total",
        "counter",
        "Guests that exited, by exit status (zero or nonzero).",
    );
    for (svc, _, s) in &rows {
        let name = "wasinetd_guest_exits_total";
        sample(&mut out, name, svc, ",status=\"zero\"", s.exit_zero);
        sample(&mut out, name, svc, ",status=\"nonzero\"", s.exit_nonzero);
    }
    header(
        &mut out,
        "wasinetd_connection_duration_seconds",
        "histogram",
        "Time from accept to close of served connections.",
    );
    for (svc, m, _) in &rows {
        m.duration
            .render(&mut out, "wasinetd_connection_duration_seconds", svc);
    }
    header(
        &mut out,
        "wasinetd_instantiation_seconds",
        "histogram",
        "Time to instantiate the guest for a connection.",
    );
    for (svc, m, _) in &rows {
        m.instantiate
            .render(&mut out, "wasinetd_instantiation_seconds", svc);
    }
    header(
        &mut out,
        "wasinetd_guest_cpu_seconds_total",
        "counter",
        "CPU time spent running guest code.",
    );
    for (svc, m, _) in &rows {
        let secs = m.cpu_ns.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "wasinetd_guest_cpu_seconds_total{{service=\"{svc}\"}} {secs}"
        );
    }
    header(
        &mut out,
        "wasinetd_received_bytes_total",
        "counter",
        "Bytes read from clients for the guest's stdin.",
    );
    for (svc, _, s) in &rows {
        sample(
            &mut out,
            "wasinetd_received_bytes_total",
            svc,
            "",
            s.received,
        );
    }
    header(
        &mut out,
        "wasinetd_sent_bytes_total",
        "counter",
        "Bytes the guest wrote to clients on its stdout.",
    );
    for (svc, _, s) in &rows {
        sample(&mut out, "wasinetd_sent_bytes_total", svc, "", s.sent);
    }
    out
}

/// What the daemon reports about itself, beside its services: the build,
/// the config being served and the reloads.
pub struct Daemon<'a> {
    /// The served config's digest.
    pub config_digest: &'a str,
    /// When the served config was read.
    pub config_loaded: SystemTime,
    /// Reloads that switched, and reloads that left the old config.
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// When the last reload ended, and whether it switched.
    pub last_reload: Option<(SystemTime, bool)>,
}

impl Daemon<'_> {
    fn render(&self, out: &mut String) {
        let unix = |t: SystemTime| {
            let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            since.as_millis() as f64 / 1e3
        };
        let lines = [
            (
                "wasinetd_build_info",
                "gauge",
                "Always 1; the labels name this binary.",
                format!(
                    "{{version=\"{}\",wasmtime=\"{}\",commit=\"{}\"}} 1",
                    escape(crate::build_info::VERSION),
                    escape(crate::build_info::WASMTIME),
                    escape(crate::build_info::COMMIT)
                ),
            ),
            (
                "wasinetd_config_info",
                "gauge",
                "Always 1; `digest` names the config being served.",
                format!("{{digest=\"{}\"}} 1", escape(self.config_digest)),
            ),
            (
                "wasinetd_config_loaded_timestamp_seconds",
                "gauge",
                "When the config being served was read (Unix time).",
                format!(" {}", unix(self.config_loaded)),
            ),
            (
                "wasinetd_config_last_reload_successful",
                "gauge",
                "0 if the last reload failed and the previous config is still served, else 1.",
                format!(" {}", u8::from(self.last_reload.is_none_or(|(_, ok)| ok))),
            ),
        ];
        for (name, kind, help, rest) in lines {
            header(out, name, kind, help);
            let _ = writeln!(out, "{name}{rest}");
        }
        let name = "wasinetd_reloads_total";
        header(out, name, "counter", "Config reloads, by result.");
        let _ = writeln!(out, "{name}{{result=\"ok\"}} {}", self.reloads_ok);
        let _ = writeln!(out, "{name}{{result=\"failed\"}} {}", self.reloads_failed);
        if let Some((at, _)) = self.last_reload {
            let name = "wasinetd_config_last_reload_timestamp_seconds";
            header(
                out,
                name,
                "gauge",
                "When the last reload ended (Unix time).",
            );
            let _ = writeln!(out, "{name} {}", unix(at));
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, service: &str, labels: &str, value: u64) {
    let _ = writeln!(out, "{name}{{service=\"{service}\"{labels}}} {value}");
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
