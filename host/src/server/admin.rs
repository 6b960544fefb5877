//! The admin listener (`--admin ADDR`, off by default): `GET /metrics`
//! (Prometheus text), `GET /health` (200 or 503), `GET /status` (JSON;
//! `?tenant=NAME`: that tenant's services and totals only), and
//! the orchestrators' probes `GET /livez` and `GET /readyz`, over plain
//! HTTP/1.1, one request per connection.
//!
//! `/livez` answers 200 whenever this listener can answer at all: it runs
//! on the daemon's own thread, with the accept loops and the signal
//! handling, so an answer means the daemon's loop is alive. Nothing a
//! service does (not listening, compiling, broken, busy) and no drain
//! fails it: an orchestrator that restarts on it must not restart a daemon
//! that is only waiting for a port or finishing its connections. `/readyz`
//! is `/health`: 200 while every configured service listens and the daemon
//! is not draining, else 503 and why (`draining` from the stop request on,
//! while the drain delay still serves; `stopping` once it stops accepting).
//!
//! Five fixed paths do not need an HTTP library: the request head is read
//! with a byte bound and a timeout, only its request line is looked at, and
//! every answer carries `Content-Length` and `Connection: close`. Each
//! connection is a task of its own on the daemon's runtime (no guest runs
//! there), so idle or slow clients never hold up the next one: a client
//! has [`HEAD_TIMEOUT`] to send its request, and beyond [`MAX_CLIENTS`]
//! open at once a new one is closed at once rather than left waiting.
//! The listener stays up while the daemon drains, so `/health` can say 503.
//! What is counted is `metrics`' business; this module only reads it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::conn::service::Service;
use crate::metrics;
use crate::server::Roster;

/// Longest request head read; a longer one is answered 431.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client has to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections open at once; more are closed as they arrive.
const MAX_CLIENTS: usize = 4096;

/// Refuses an admin address off the loopback unless `any` says otherwise:
/// the metrics name every service and its traffic.
pub fn check_addr(addr: SocketAddr, any: bool) -> anyhow::Result<()> {
    if !addr.ip().to_canonical().is_loopback() && !any {
        bail!(
            "--admin `{addr}` is not a loopback address; add --admin-any to serve \
             metrics and status to the network"
        );
    }
    Ok(())
}

/// Binds the admin listener.
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    crate::conn::listener::bind(addr, &crate::config::SocketOptions::default())
        .with_context(|| format!("cannot start the admin listener on {addr}"))
}

/// What the admin endpoints report on.
pub struct View {
    /// The config being served, replaced by each reload.
    pub roster: watch::Receiver<Arc<Roster>>,
    /// Turns `true` when a stop is asked for: not ready from then on,
    /// though it may still accept for the drain delay.
    pub draining: watch::Receiver<bool>,
    /// Turns `true` when the daemon stops accepting.
    pub stopping: watch::Receiver<bool>,
    /// When the daemon started serving.
    pub started: Instant,
}

impl View {
    /// `None` when every configured listener is accepting, else why not.
    fn unhealthy(&self) -> Option<String> {
        let roster = self.roster.borrow();
        if *self.stopping.borrow() {
            Some("stopping".into())
        } else if *self.draining.borrow() {
            // Still accepting: balancers should send no more, until the
            // drain delay is over and the listeners close.
            Some("draining".into())
        } else if !roster.not_listening.is_empty() {
            Some(format!(
                "not listening: {}",
                roster.not_listening.join(", ")
            ))
        } else if !roster.compiling.is_empty() {
            Some(format!("compiling: {}", roster.compiling.join(", ")))
        } else {
            None
        }
    }

    /// `/status`, of every service and tenant, or (`only`) of one
    /// tenant's services and totals; `None` when no tenant is named `only`.
    fn status(&self, only: Option<&str>) -> Option<serde_json::Value> {
        let roster = self.roster.borrow().clone();
        let grouped = roster.by_tenant();
        let (services, tenants): (Vec<_>, Vec<_>) = match only {
            None => (roster.services(), grouped.tenants),
            Some(name) => {
                let (tenant, services) =
                    (grouped.tenants.into_iter()).find(|(t, _)| t.name() == name)?;
                (services, vec![(tenant, Vec::new())])
            }
        };
        let services: Vec<_> = (services.iter())
            .map(|(s, addr)| service_status(s, addr))
            .collect();
        let tenants: Vec<_> = (tenants.iter())
            .map(|(t, _)| tenant_status(&t.totals()))
            .collect();
        // `/health` says whether clients are served; `/status` also says
        // whether the config on disk is the one served.
        let config = &roster.config;
        let problem = self.unhealthy().or_else(|| {
            let error = config.reload_error()?;
            Some(format!(
                "last reload failed, serving the previous config: {error}"
            ))
        });
        let time = crate::logging::time::rfc3339;
        let last_reload = config.last_reload.as_ref().map(|last| {
            json!({
                "at": time(last.at),
                "result": if last.error.is_some() { "failed" } else { "ok" },
                "error": last.error,
            })
        });
        Some(json!({
            "version": crate::build_info::VERSION,
            "wasmtime": crate::build_info::WASMTIME,
            "commit": crate::build_info::COMMIT,
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "healthy": problem.is_none(),
            "problem": problem,
            "config": {
                "digest": config.digest,
                "loaded_at": time(config.loaded_at),
                "reloads": { "ok": config.reloads_ok, "failed": config.reloads_failed },
                "last_reload": last_reload,
            },
            "draining": *self.draining.borrow(),
            "stopping": *self.stopping.borrow(),
            "services": services,
            "tenants": tenants,
            "not_listening": roster.not_listening,
            "compiling": roster.compiling,
        }))
    }
}

fn tenant_status(t: &metrics::TenantTotals) -> serde_json::Value {
    let refused: serde_json::Map<_, _> = (t.refused.iter())
        .map(|(reason, n)| ((*reason).to_owned(), json!(n)))
        .collect();
    json!({
        "name": &*t.name,
        "limits": {
            "instances": t.instances,
            "memory_bytes": t.memory_limit,
            "cpu_share": t.cpu_share,
        },
        "active": t.active,
        "accepted": t.accepted,
        "refused": refused,
        "cpu_seconds": t.cpu.as_secs_f64(),
        "memory_bytes": t.memory,
    })
}

fn service_status(s: &Service, addr: &str) -> serde_json::Value {
    let spec = &s.spec;
    let millis = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
    let m = s.metrics().snapshot();
    let refused: serde_json::Map<_, _> = m
        .refused
        .iter()
        .map(|(reason, n)| ((*reason).to_owned(), json!(n)))
        .collect();
    let finished: serde_json::Map<_, _> = m
        .outcomes
        .iter()
        .map(|(kind, n)| ((*kind).to_owned(), json!(n)))
        .collect();
    let tenant = Some(s.tenant().name()).filter(|t| !t.is_empty());
    json!({
        "name": s.name(),
        "tenant": tenant,
        "addr": addr,
        "guest": spec.guest.to_string(),
        "kind": match s.guest() {
            Some(g) => g.kind_name(),
            None => "redirect",
        },
        "limits": {
            "memory_bytes": spec.limits.memory,
            "cpu_ms": millis(spec.limits.cpu),
            "runtime_ms": millis(spec.limits.runtime),
            "instances": spec.instances.set(),
        },
        "active": s.active(),
        "connections": {
            "accepted": m.accepted,
            "refused": refused,
            "finished": finished,
            "exit_zero": m.exit_zero,
            "exit_nonzero": m.exit_nonzero,
        },
        "bytes": { "received": m.received, "sent": m.sent },
    })
}

/// Serves admin requests until the runtime stops.
pub async fn serve(listener: TcpListener, view: View) {
    let view = Arc::new(view);
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Full: close it now, rather than let the backlog (and `/health`
        // behind it) wait for idle clients to time out.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let view = view.clone();
        tokio::spawn(async move {
            handle(stream, &view).await;
            drop(permit);
        });
    }
}

async fn handle(mut stream: TcpStream, view: &View) {
    let Ok(head) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await else {
        return; // too slow: just close
    };
    let response = match head {
        Ok(head) => respond(&head, view),
        Err(status) => reply(status, TEXT, format!("{}\n", status.1)),
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&response)).await;
    let _ = stream.shutdown().await;
}

/// An HTTP status: code and reason phrase.
type Status = (u16, &'static str);
const OK: Status = (200, "OK");
const BAD_REQUEST: Status = (400, "Bad Request");
const NOT_FOUND: Status = (404, "Not Found");
const NOT_ALLOWED: Status = (405, "Method Not Allowed");
const TOO_LARGE: Status = (431, "Request Header Fields Too Large");
const UNAVAILABLE: Status = (503, "Service Unavailable");

/// Reads up to the blank line that ends the request head.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, Status> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.map_err(|_| BAD_REQUEST)?;
        if n == 0 {
            return Err(BAD_REQUEST);
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(TOO_LARGE);
        }
    }
}

fn respond(head: &[u8], view: &View) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return reply(BAD_REQUEST, TEXT, "bad request line\n".into());
    };
    if !version.starts_with("HTTP/1.") {
        return reply(BAD_REQUEST, TEXT, "HTTP/1.x only\n".into());
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return reply(NOT_ALLOWED, TEXT, "GET or HEAD only\n".into()),
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut response = match path {
        "/metrics" => {
            let roster = view.roster.borrow().clone();
            let listed = roster.services();
            let services: Vec<metrics::Row> = (listed.iter())
                .map(|(s, _)| metrics::Row {
                    name: s.name(),
                    tenant: Some(s.tenant().name()).filter(|t| !t.is_empty()),
                    metrics: s.metrics(),
                    active: s.active(),
                })
                .collect();
            let config = &roster.config;
            let daemon = metrics::Daemon {
                config_digest: &config.digest,
                config_loaded: config.loaded_at,
                reloads_ok: config.reloads_ok,
                reloads_failed: config.reloads_failed,
                last_reload: (config.last_reload.as_ref()).map(|l| (l.at, l.error.is_none())),
            };
            let tenants: Vec<_> = (roster.by_tenant().tenants.iter())
                .map(|(t, _)| t.totals())
                .collect();
            reply(
                OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics::render(&services, &tenants, &daemon),
            )
        }
        "/health" | "/readyz" => match view.unhealthy() {
            None => reply(OK, TEXT, "ok\n".into()),
            Some(why) => reply(UNAVAILABLE, TEXT, format!("unavailable: {why}\n")),
        },
        "/livez" => reply(OK, TEXT, "alive\n".into()),
        "/status" => match tenant_asked(query) {
            Err(why) => reply(BAD_REQUEST, TEXT, format!("{why}\n")),
            Ok(only) => match view.status(only) {
                Some(status) => reply(OK, "application/json", format!("{status}\n")),
                None => reply(
                    NOT_FOUND,
                    TEXT,
                    format!(
                        "no tenant `{}` in the config being served\n",
                        only.unwrap_or("")
                    ),
                ),
            },
        },
        _ => reply(
            NOT_FOUND,
            TEXT,
            "not found; try /metrics, /health, /status, /livez or /readyz\n".into(),
        ),
    };
    if head_only {
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |i| i + 4);
        response.truncate(end);
    }
    response
}

/// The tenant a `/status?tenant=NAME` query names, if any; other
/// parameters are ignored, as they always were. Only a plain name is
/// taken (`A-Z a-z 0-9 _ . -`, no percent-encoding): it is echoed in the
/// answer and compared, never decoded.
fn tenant_asked(query: &str) -> Result<Option<&str>, &'static str> {
    let mut named = query.split('&').filter_map(|p| p.strip_prefix("tenant="));
    let Some(name) = named.next() else {
        return Ok(None);
    };
    if named.next().is_some() {
        return Err("name one tenant only");
    }
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    if name.is_empty() || !name.bytes().all(plain) {
        return Err("a tenant name is letters, digits, `_`, `.` and `-`");
    }
    Ok(Some(name))
}

const TEXT: &str = "text/plain; charset=utf-8";

fn reply(status: Status, content_type: &str, body: String) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        status.0,
        status.1,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_unless_any() {
        check_addr("127.0.0.1:9100".parse().unwrap(), false).unwrap();
        check_addr("[::1]:9100".parse().unwrap(), false).unwrap();
        check_addr("[::ffff:127.0.0.1]:9100".parse().unwrap(), false).unwrap();
        assert!(check_addr("0.0.0.0:9100".parse().unwrap(), false).is_err());
        assert!(check_addr("192.0.2.1:9100".parse().unwrap(), false).is_err());
        check_addr("0.0.0.0:9100".parse().unwrap(), true).unwrap();
    }

    #[test]
    fn only_a_plain_tenant_name_is_asked_for() {
        assert_eq!(tenant_asked(""), Ok(None));
        assert_eq!(tenant_asked("pretty=1"), Ok(None));
        assert_eq!(tenant_asked("tenant=acme"), Ok(Some("acme")));
        assert_eq!(tenant_asked("x=1&tenant=a.b_c-9"), Ok(Some("a.b_c-9")));
        for bad in [
            "tenant=",
            "tenant=a%20b",
            "tenant=../x",
            "tenant=a b",
            "tenant=\u{e9}",
            "tenant=a&tenant=b",
            "tenant=a=b",
        ] {
            assert!(tenant_asked(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_reply_carries_its_length() {
        let r = String::from_utf8(reply(OK, TEXT, "ok\n".into())).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Length: 3\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nok\n"), "{r}");
    }
}
