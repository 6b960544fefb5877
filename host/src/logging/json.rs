//! The JSON form: one object per line on stderr, for log shippers. The
//! daemon's own messages go through [`Layer`]; connection lines build
//! their fields themselves (`Line::json`) and share [`head`] and
//! [`write_stderr`].

use std::fmt;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::Level;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// The fields every line starts with: `timestamp`, `level`, `target`.
pub(super) fn head(level: Level, target: &str) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(
        "timestamp".into(),
        super::time::rfc3339(SystemTime::now()).into(),
    );
    map.insert("level".into(), level.as_str().into());
    map.insert("target".into(), target.into());
    map
}

/// Writes `map` as one line on stderr, in a single write.
pub(super) fn write_stderr(map: &Map<String, Value>) {
    let mut line = Value::Object(map.clone()).to_string();
    line.push('\n');
    super::writer::line(line.into_bytes());
}

/// A tracing layer that prints each event as a JSON line on stderr.
pub(super) struct Layer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Layer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let mut map = head(*meta.level(), meta.target());
        event.record(&mut Fields(&mut map));
        write_stderr(&map);
    }
}

/// Puts an event's fields (its `message` too) into a JSON object.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}
