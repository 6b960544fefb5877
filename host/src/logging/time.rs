//! Timestamps: RFC 3339 in UTC for files and JSON, and RFC 3164's
//! `Mmm dd hh:mm:ss` in local time for syslog.

use std::time::{SystemTime, UNIX_EPOCH};

/// Broken-down time of `now`, in UTC or local time.
fn broken_down(now: SystemTime, local: bool) -> Option<(libc::tm, u32)> {
    let since = now.duration_since(UNIX_EPOCH).ok()?;
    let t = libc::time_t::try_from(since.as_secs()).ok()?;
    let mut tm = std::mem::MaybeUninit::<libc::tm>::uninit();
    // SAFETY: `gmtime_r` / `localtime_r` write only to `tm`, and fill it
    // when they succeed (a non-null return).
    let tm = unsafe {
        let done = if local {
            libc::localtime_r(&t, tm.as_mut_ptr())
        } else {
            libc::gmtime_r(&t, tm.as_mut_ptr())
        };
        if done.is_null() {
            return None;
        }
        tm.assume_init()
    };
    Some((tm, since.subsec_millis()))
}

/// `2026-11-22T05:10:00.123Z`.
pub fn rfc3339(now: SystemTime) -> String {
    match broken_down(now, false) {
        Some((tm, ms)) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        ),
        None => "1970-01-01T00:00:00.000Z".into(),
    }
}

/// `Nov 22 05:10:00` (the day padded with a space), local time.
pub(super) fn rfc3164(now: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    match broken_down(now, true) {
        Some((tm, _)) => format!(
            "{} {:2} {:02}:{:02}:{:02}",
            MONTHS[tm.tm_mon.clamp(0, 11) as usize],
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        ),
        None => "Jan  1 00:00:00".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn utc_timestamps() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_324_200_123);
        assert_eq!(rfc3339(t), "2026-11-22T05:10:00.123Z");
        let syslog = rfc3164(t);
        assert_eq!(syslog.len(), 15, "{syslog}");
    }
}
