//! wasinetd: xinetd's job, done with WebAssembly.
//!
//! The daemon listens on many ports for many services; for each accepted
//! connection it instantiates the service's WASI guest with the connection
//! as the guest's stdin and stdout, where xinetd would fork and exec. Every
//! guest is isolated (no file, network or environment it was not given) and
//! limited (memory, CPU time, wall-clock time).
//!
//! # Layout
//! From the bottom up; a module imports only modules below it.
//! - [`build_info`], [`bundled`]: what this binary is; the guests built in
//! - [`sandbox`]: the engine, guests compiled once, one instance per run;
//!   a leaf: what a run has to say leaves through a `Report`
//! - [`config`]: the xinetd config language to validated `ServiceSpec`s,
//!   address rules and time windows ([`config::access`]) included
//! - [`admission`]: who gets a guest: checks and their order, the shares
//!   of `--limit`, `per_source`, `cps`, the load average, the sensors'
//!   deny list
//! - [`logging`]: log set-up, the per-connection line, `log_type` sinks, JSON
//! - [`metrics`]: per-service counters and their Prometheus text form
//! - [`conn`]: one connection's life: accept, admit, run, relay, finish
//! - [`server`]: the daemon: prepare, listeners, reload (SIGHUP), dump
//!   (SIGUSR1), the admin listener, systemd, shutdown
//! - [`cli`], [`commands`]: the command line, and what each command does

pub mod admission;
pub mod build_info;
pub mod bundled;
pub mod cli;
pub mod commands;
pub mod config;
pub mod conn;
pub mod logging;
pub mod metrics;
pub mod sandbox;
pub mod server;
