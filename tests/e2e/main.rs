//! The black-box suite: the real binary, real guests, real sockets.
//!
//! One test binary (faster to link than one per file); one module per area.

mod support;

mod access;
mod bad_input;
mod balancer;
mod build;
mod build_js;
mod cache;
mod config_golden;
mod connection;
mod container;
mod egress;
mod examples;
mod gathering;
mod guards;
mod guests;
mod hostile;
mod internal;
mod limits;
mod logging;
mod metrics;
mod operations;
mod operator;
mod packaging;
mod proxy;
mod redirect;
mod registry;
mod reload;
mod run_command;
mod scripts;
mod scripts_ruby;
mod serve;
mod sockets;
mod systemd;
mod systemd_boot;
mod tenants;
mod tenants_observe;
mod udp;
mod unix;
mod upgrade;
