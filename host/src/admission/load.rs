//! The host's one-minute load average, for `max_load`: read from
//! `/proc/loadavg` at most once per [`REFRESH`], so a burst of connections
//! to a service with `max_load` costs one small read a second, not one per
//! connection. The kernel itself recomputes the average every 5 s.
//!
//! `WASINETD_LOADAVG` names another file in `/proc/loadavg`'s format, for
//! tests only: a test cannot raise the machine's load on demand.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a reading is used before the file is read again.
pub const REFRESH: Duration = Duration::from_secs(1);
/// Replaces `/proc/loadavg`; for tests only.
pub const LOADAVG_VAR: &str = "WASINETD_LOADAVG";

/// The last reading and when it was taken.
static LAST: Mutex<Option<(Instant, Option<f64>)>> = Mutex::new(None);

/// The one-minute load average, at most [`REFRESH`] old; `None` when it
/// cannot be read (then `max_load` refuses nothing: one warning says so).
pub fn one_minute() -> Option<f64> {
    let now = Instant::now();
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, load)) = *last
        && now.duration_since(at) < REFRESH
    {
        return load;
    }
    let load = read();
    *last = Some((now, load));
    load
}

fn read() -> Option<f64> {
    static PATH: OnceLock<String> = OnceLock::new();
    let path = PATH
        .get_or_init(|| std::env::var(LOADAVG_VAR).unwrap_or_else(|_| "/proc/loadavg".to_owned()));
    let parsed = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| parse(&text).ok_or_else(|| format!("unexpected content `{text}`")));
    match parsed {
        Ok(load) => Some(load),
        Err(e) => {
            static WARNED: OnceLock<()> = OnceLock::new();
            if WARNED.set(()).is_ok() {
                tracing::warn!(
                    "cannot read the load average from `{path}` ({e}); `max_load` refuses nothing"
                );
            }
            None
        }
    }
}

/// The first field of `/proc/loadavg` (`0.52 0.58 0.59 1/389 12345`).
fn parse(text: &str) -> Option<f64> {
    let load: f64 = text.split_whitespace().next()?.parse().ok()?;
    (load.is_finite() && load >= 0.0).then_some(load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_field_is_the_one_minute_average() {
        assert_eq!(parse("0.52 0.58 0.59 1/389 12345\n"), Some(0.52));
        assert_eq!(parse("12.00 1 1 1/1 1"), Some(12.0));
        assert_eq!(parse(""), None);
        assert_eq!(parse("x 1 1"), None);
        assert_eq!(parse("-1 0 0"), None);
    }

    #[test]
    fn max_load_is_reached_at_or_above_its_value() {
        let max = crate::config::MaxLoad::from_hundredths(250);
        assert!(!max.reached_by(2.49));
        assert!(max.reached_by(2.5));
        assert!(max.reached_by(7.0));
        assert_eq!(max.to_string(), "2.50");
    }
}
