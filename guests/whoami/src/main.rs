//! `whoami`: answers with what wasinetd told it about its connection,
//! through the `wasinetd:handler/connection` interface (`../wit`), one
//! `key=value` line per fact:
//!
//! ```text
//! service=whoami
//! conn=7
//! protocol=tcp
//! peer=127.0.0.1:40312
//! local=127.0.0.1:8000
//! ```
//!
//! `peer` and `local` are left out when the connection has none (a Unix
//! client that bound no path; `wasinetd run` on a pipe). It reads nothing:
//! the daemon drains what the client sent.
//!
//! Only a component can import the interface, so this guest is built for
//! wasm32-wasip2 only (`host/build.rs` leaves it out of the wasip1 build).

use std::io::Write as _;
use std::process::ExitCode;

wit_bindgen::generate!({
    path: "../../wit",
    world: "wasinetd:handler/imports",
});

use wasinetd::handler::connection::{self, Transport};

fn main() -> ExitCode {
    let mut answer = format!(
        "service={}\nconn={}\nprotocol={}\n",
        connection::service_name(),
        connection::connection_id(),
        protocol_name(connection::protocol()),
    );
    if let Some(peer) = connection::peer_address() {
        answer.push_str(&format!("peer={peer}\n"));
    }
    if let Some(local) = connection::local_address() {
        answer.push_str(&format!("local={local}\n"));
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(answer.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whoami: cannot write the answer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn protocol_name(protocol: Transport) -> &'static str {
    match protocol {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
        Transport::Unix => "unix",
        Transport::Stdio => "stdio",
    }
}
