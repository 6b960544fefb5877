//! Which script a prebuilt guest was built from, recorded inside the guest
//! itself: a custom section `wasinetd-source` at the end of the component
//! (custom sections are ignored when it runs), so the record travels with
//! the file wherever it is copied. Its text is one `key=value` per line:
//! `script=` the script's absolute path when it was built, `sha256=` the
//! SHA-256 of its bytes then, `tool=` what built it.
//!
//! `wasinetd check` reads it back ([`stale`]) and warns when the script at
//! that path now hashes differently: the guest serves an older version.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use wasmtime::wasmparser::{Parser, Payload};

use super::tools::hex;

/// The custom section's name.
const SECTION: &str = "wasinetd-source";

/// What a build records about its script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub script: PathBuf,
    pub sha256: String,
    pub tool: String,
}

impl Source {
    /// The record for `script` (absolute) as `bytes`, built by `tool`.
    pub fn new(script: &Path, bytes: &[u8], tool: &str) -> Source {
        Source {
            script: script.to_owned(),
            sha256: hex(&Sha256::digest(bytes)),
            tool: tool.to_owned(),
        }
    }

    fn text(&self) -> String {
        format!(
            "script={}\nsha256={}\ntool={}\n",
            self.script.display(),
            self.sha256,
            self.tool
        )
    }

    fn parse(text: &str) -> Option<Source> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        };
        Some(Source {
            script: PathBuf::from(field("script")?),
            sha256: field("sha256")?.to_owned(),
            tool: field("tool").unwrap_or_default().to_owned(),
        })
    }

    /// `wasm` (a component or module) with this record appended as a custom
    /// section: id 0, the size, the name, the text.
    pub fn append_to(&self, wasm: &mut Vec<u8>) {
        let text = self.text();
        let mut body = Vec::new();
        leb128(&mut body, SECTION.len() as u64);
        body.extend_from_slice(SECTION.as_bytes());
        body.extend_from_slice(text.as_bytes());
        wasm.push(0);
        leb128(wasm, body.len() as u64);
        wasm.extend_from_slice(&body);
    }

    /// The record in `wasm`, if a build wrote one.
    pub fn read(wasm: &[u8]) -> Option<Source> {
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.ok()? {
                Payload::CustomSection(c) if c.name() == SECTION => {
                    return Source::parse(std::str::from_utf8(c.data()).ok()?);
                }
                _ => {}
            }
        }
        None
    }
}

/// Why the guest at `guest` is older than its script, if it is: the
/// script it was built from now hashes differently. A guest with no record,
/// or whose script is no longer there (deployed elsewhere), is not judged.
pub fn stale(guest: &Path) -> Option<String> {
    let wasm = std::fs::read(guest).ok()?;
    let source = Source::read(&wasm)?;
    let now = std::fs::read(&source.script).ok()?;
    let sha256 = hex(&Sha256::digest(&now));
    (sha256 != source.sha256).then(|| {
        format!(
            "guest `{}` is older than its script `{}`: the script changed since it was built \
             (SHA-256 {} then, {} now); rebuild it: wasinetd build {} -o {}",
            guest.display(),
            source.script.display(),
            &source.sha256[..12.min(source.sha256.len())],
            &sha256[..12],
            source.script.display(),
            guest.display()
        )
    })
}

fn leb128(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_appended_to_a_component_reads_back_and_it_still_validates() {
        let mut wasm = wat::parse_str("(component)").unwrap();
        let source = Source::new(Path::new("/srv/app/hello.py"), b"print(1)\n", "t 1");
        source.append_to(&mut wasm);
        assert_eq!(Source::read(&wasm), Some(source));
        wasmtime::wasmparser::Validator::new_with_features(
            wasmtime::wasmparser::WasmFeatures::all(),
        )
        .validate_all(&wasm)
        .unwrap();
    }

    #[test]
    fn a_guest_without_a_record_has_none() {
        assert_eq!(Source::read(&wat::parse_str("(component)").unwrap()), None);
    }

    #[test]
    fn long_sections_get_multi_byte_sizes() {
        let mut out = Vec::new();
        leb128(&mut out, 624_485);
        assert_eq!(out, [0xe5, 0x8e, 0x26]);
    }
}
