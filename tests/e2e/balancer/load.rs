//! Clients of the balancer: one request at a time, and continuous load
//! from a few client threads, every request recorded with when it started
//! and ended and which host answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The client address every request comes from (a second loopback one, so
/// that a handler that shows `127.0.0.1` would be showing HAProxy).
pub const CLIENT: &str = "127.0.0.5";
/// Requests one client thread makes at most, whatever the scenario.
const MAX_PER_CLIENT: usize = 5_000;
/// How long a load runs at most, whatever the scenario.
const MAX_LOAD: Duration = Duration::from_secs(60);

/// One request through the balancer from `from`: the host that served it
/// and the `REMOTE_ADDR` its guest saw; or why it failed (a refused,
/// reset or cut connection, or an answer without both lines).
pub fn request(from: &str, front: SocketAddr) -> Result<(String, String), String> {
    use socket2::{Domain, Socket, Type};
    use std::io::Read;
    let at = |step: &'static str| move |e: std::io::Error| format!("{step}: {e}");
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(at("socket"))?;
    let from: std::net::IpAddr = from.parse().map_err(|e| format!("{e}"))?;
    (socket.bind(&SocketAddr::new(from, 0).into())).map_err(at("bind"))?;
    (socket.connect_timeout(&front.into(), Duration::from_secs(5))).map_err(at("connect"))?;
    let mut s: std::net::TcpStream = socket.into();
    // Past HAProxy's retries: three turn-arounds of 1s at most.
    (s.set_read_timeout(Some(Duration::from_secs(10)))).map_err(at("timeout"))?;
    // No half-close: the guest reads nothing, and HAProxy (2.6, mode tcp)
    // takes a client's FIN that arrives before its server connection is up
    // for an abort (log flags `CC`) and resets that connection.
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(at("read"))?;
    let get = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::to_owned)
    };
    match (get("env HOST="), get("env REMOTE_ADDR=")) {
        (Some(host), Some(remote)) => Ok((host, remote)),
        _ => Err(format!("answer without HOST and REMOTE_ADDR: {out:?}")),
    }
}

/// One request of a load.
#[derive(Debug, Clone)]
pub struct Record {
    pub start: Instant,
    pub end: Instant,
    /// The host that answered (`hN`); `None`: the request failed.
    pub host: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Client threads sending one request after another until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Record>>>,
}

impl Load {
    /// `clients` threads, each with one request in flight at a time.
    pub fn start(front: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let deadline = Instant::now() + MAX_LOAD;
                    let mut records = Vec::new();
                    while !stop.load(Ordering::Relaxed)
                        && records.len() < MAX_PER_CLIENT
                        && Instant::now() < deadline
                    {
                        let start = Instant::now();
                        let answer = request(CLIENT, front);
                        if let Ok((host, remote)) = &answer {
                            assert_eq!(remote, CLIENT, "the handler on {host} saw {remote}");
                        }
                        records.push(Record {
                            start,
                            end: Instant::now(),
                            host: answer.as_ref().ok().map(|(host, _)| host.clone()),
                            error: answer.err(),
                        });
                    }
                    records
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops the clients once their requests in flight end; every record.
    pub fn finish(self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Record> = (self.threads.into_iter())
            .flat_map(|t| t.join().expect("a client thread panicked"))
            .collect();
        all.sort_by_key(|r| r.start);
        all
    }
}
