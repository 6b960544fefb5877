//! Text log lines carry only what the daemon meant to write: every control
//! character in a value (a guest's stderr, a peer's socket path, a name or
//! an error text that came from a guest file) is written as an escape, so
//! that no one outside can end a line early, forge another, rewrite it on
//! a terminal (`\r`, ANSI escapes) or reorder it (bidirectional overrides).
//!
//! [`escape`] is applied to whole rendered lines written to files and
//! syslog, and, through [`Fields`], to every field of a line tracing writes
//! to stderr. The JSON format needs none of this: JSON strings escape
//! control characters themselves.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// Whether `c` must not appear raw in a text log line: ASCII and C1
/// controls, the Unicode line and paragraph separators, and the
/// bidirectional formatting characters. A backslash is escaped too, so
/// that an escape in the log always means the daemon wrote it.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200E}' | '\u{200F}')
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `text` with every character [`needs_escape`] names written as `\n`,
/// `\r`, `\t`, `\\` or `\u{…}`; borrowed when there is none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Formats an event's fields for the text log as tracing's default does
/// (`message` first, then `name=value`), each value escaped.
pub struct Fields;

impl<'w> FormatFields<'w> for Fields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn put(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        let value = escape(value);
        self.result = match field.name() {
            "message" => write!(self.writer, "{sep}{value}"),
            name => write!(self.writer, "{sep}{name}={value}"),
        };
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `message` is the format_args! of the event: its Debug is its text.
        self.put(field, &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_separators_and_overrides_are_escaped() {
        assert!(matches!(escape("plain text: ok"), Cow::Borrowed(_)));
        assert_eq!(
            escape("x\rINFO wasinetd::conn: exit=0 service=FAKE"),
            "x\\rINFO wasinetd::conn: exit=0 service=FAKE"
        );
        assert_eq!(
            escape("a\nb\0c\x0bd\x1b[31m"),
            "a\\nb\\u{0}c\\u{b}d\\u{1b}[31m"
        );
        assert_eq!(
            escape("line\u{2028}sep \u{202e}evil"),
            "line\\u{2028}sep \\u{202e}evil"
        );
        assert_eq!(escape("back\\slash \u{85}"), "back\\\\slash \\u{85}");
        assert_eq!(escape("é ü 漢字 tab\t"), "é ü 漢字 tab\\t");
    }
}
