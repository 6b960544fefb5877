//! How much one connection's sandbox costs, without the network: the
//! hello-http guest run start to end, N times in a row, as a WASI preview 1
//! module and as a preview 2 component, through the same `Guest::run` the
//! daemon uses per connection (empty stdin, discarded stdout).
//!
//! `cargo bench -p wasinetd --bench instantiate [-- N]` prints, per kind,
//! the distribution of `instantiate` (a fresh instance from the pool: what
//! fork+exec is replaced by) and of the whole run (WASI context, store,
//! instance, the guest's own `_start`, teardown), in microseconds.

use std::time::{Duration, Instant};

use wasinetd::sandbox::Limits;
use wasinetd::sandbox::{Connection, Invocation, Sandbox, SandboxOptions, Transport, Unheard};

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let sandbox = Sandbox::new(&SandboxOptions::default())?;
    let component = std::fs::read(concat!(
        env!("WASINETD_GUESTS"),
        "/wasm32-wasip2/release/hello-http.wasm"
    ))?;
    let kinds = [
        (
            "module (wasip1)",
            wasinetd::bundled::guest("hello-http")
                .expect("bundled")
                .to_vec(),
        ),
        ("component (wasip2)", component),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!("hello-http, {n} runs each, sequential, one thread; microseconds");
    println!("| guest | what | min | p50 | p90 | p99 | max |");
    println!("|---|---|--:|--:|--:|--:|--:|");
    for (name, bytes) in kinds {
        let guest = sandbox.load(&bytes)?;
        let argv = vec!["hello-http".to_owned()];
        let mut inst = Vec::with_capacity(n);
        let mut whole = Vec::with_capacity(n);
        rt.block_on(async {
            for i in 0..n + n / 10 {
                let started = Instant::now();
                let report = guest
                    .run(Invocation {
                        argv: &argv,
                        env: &[],
                        preopens: &[],
                        quotas: &[],
                        limits: Limits::default(),
                        stdin: tokio::io::empty(),
                        stdout: tokio::io::empty(),
                        stderr: tokio::io::empty(),
                        connection: Connection {
                            service: "bench".into(),
                            id: i as u64,
                            transport: Transport::Stdio,
                            peer: None,
                            local: None,
                        },
                        allow_connect: Default::default(),
                        report: std::sync::Arc::new(Unheard),
                        watch: None,
                        gathered: None,
                        // The implicit pool, as a service outside every tenant.
                        pool: Default::default(),
                    })
                    .await;
                let took = started.elapsed();
                assert!(report.outcome.is_success(), "{}", report.outcome);
                // The first tenth warms the pool's slots and is not counted.
                if i >= n / 10 {
                    whole.push(took);
                    inst.push(report.instantiate.unwrap_or_default());
                }
            }
        });
        for (what, mut v) in [("instantiate", inst), ("whole run", whole)] {
            v.sort_unstable();
            let p = |q: f64| us(v[((v.len() as f64 * q) as usize).min(v.len() - 1)]);
            println!(
                "| {name} | {what} | {} | {} | {} | {} | {} |",
                us(v[0]),
                p(0.50),
                p(0.90),
                p(0.99),
                us(v[v.len() - 1])
            );
        }
    }
    Ok(())
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}
