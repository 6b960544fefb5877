//! The connection path: accept, admit, run the guest (or relay, or trip a
//! sensor), finish. One room for every transport: TCP and Unix streams
//! ([`listener`]), UDP datagrams ([`udp`]), `redirect` relays
//! ([`redirect`]), sensors ([`sensor`]), the PROXY protocol header that
//! names the client behind a balancer ([`proxy`]); one stream type and one peer
//! type for them all ([`stream`]); one [`service::Service`] holding
//! a service's version, admission state and counters; the connections in
//! flight ([`in_flight`]) for the dump and the drain.

pub mod close;
pub mod in_flight;
pub mod listener;
pub mod proxy;
pub mod redirect;
pub mod sensor;
pub mod service;
pub mod stream;
pub mod tenant;
pub mod udp;
