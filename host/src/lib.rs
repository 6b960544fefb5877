//! wasinetd: xinetd's job, done with WebAssembly.
//!
//! The daemon listens on many ports for many services; for each accepted
//! connection it instantiates the service's WASI guest with the connection
//! as the guest's stdin and stdout, where xinetd would fork and exec. Every
//! guest is isolated (no file, network or environment it was not given) and
//! limited (memory, CPU time, wall-clock time).
//!
//! # Layout
//! - [`cli`]: the command line (serve, `check`, `run`)
//! - [`admin`]: the optional admin listener: `/metrics`, `/health`, `/status`
//! - [`commands`]: what each subcommand does, start to exit status
//! - [`config`]: the xinetd config language, to validated `ServiceSpec`s
//! - [`server`]: compiles guests, binds listeners, reloads (SIGHUP), dumps
//!   the state (SIGUSR1), shuts down
//! - [`listener`]: binding and the accept loop of one service
//! - [`udp`]: UDP services: one guest per datagram, its stdout the reply
//! - [`unix_socket`]: Unix socket files bound, re-moded and removed without a race
//! - [`in_flight`]: the connections being served, for the dump and the drain
//! - [`service`]: one running service; admission and one connection's life
//! - [`redirect`]: `redirect = HOST PORT`: relaying a connection, no guest
//! - [`admission`]: who gets a guest: check order, per_source, cps, banners
//! - [`access`]: `only_from` / `no_access` and `access_times`, as predicates
//! - [`load`]: the host's load average for `max_load`, read at most once a second
//! - [`sensor`]: `flags = SENSOR` and the daemon-wide deny list it fills
//! - [`sandbox`]: the engine, guests compiled once, one instance per run
//! - [`bundled`]: guests built into the binary (internal services)
//! - [`systemd`]: sockets passed by systemd (`LISTEN_FDS`), `sd_notify`
//! - [`logging`]: log set-up, the per-connection line, `log_type` sinks, JSON
//! - [`metrics`]: per-service counters and their Prometheus text form
//! - [`build_info`]: version, wasmtime version and commit of this binary

pub mod access;
pub mod admin;
pub mod admission;
pub mod build_info;
pub mod bundled;
pub mod cli;
pub mod commands;
pub mod config;
pub mod in_flight;
pub mod listener;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod redirect;
pub mod sandbox;
pub mod sensor;
pub mod server;
pub mod service;
pub mod systemd;
pub mod udp;
pub mod unix_socket;
