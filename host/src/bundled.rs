//! Guests built into the binary: the internal services (`type = INTERNAL`)
//! and what the built-in default config serves.
//!
//! The internal services are xinetd's (RFC 862-868): `echo`, `discard`,
//! `chargen`, `daytime`, `time`, on TCP and UDP; the others serve the
//! built-in default config and the tests.
//!
//! They are the WASI preview 1 builds of `guests/`, embedded at compile time
//! (see `build.rs`), and run under the same sandbox and limits as any other.

macro_rules! guest_bytes {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("WASINETD_GUESTS"),
            "/wasm32-wasip1/release/",
            $name,
            ".wasm"
        ))
    };
}

/// Names of the bundled guests, as `service NAME { type = INTERNAL }` takes them.
pub const NAMES: &[&str] = &[
    "chargen",
    "daytime",
    "discard",
    "echo",
    "hello-http",
    "time",
    "upper",
];

/// The bundled guest called `name`.
pub fn guest(name: &str) -> Option<&'static [u8]> {
    Some(match name {
        "echo" => guest_bytes!("echo"),
        // One guest for the four classic services: it picks one by argv[0],
        // which is the service NAME for `type = INTERNAL`.
        "chargen" | "daytime" | "discard" | "time" => guest_bytes!("inetd"),
        "hello-http" => guest_bytes!("hello-http"),
        "upper" => guest_bytes!("upper"),
        _ => return None,
    })
}

/// The config served when no `-f` is given and `/etc/wasinetd.conf` does
/// not exist: the bundled guests on loopback.
pub const DEFAULT_CONFIG: &str = include_str!("../../examples/default.conf");

#[cfg(test)]
mod tests {
    #[test]
    fn every_name_has_a_guest() {
        for name in super::NAMES {
            let bytes = super::guest(name).unwrap();
            assert_eq!(&bytes[..4], b"\0asm", "{name}");
        }
    }
}
