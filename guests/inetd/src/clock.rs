//! The calendar for `daytime`: UTC only, since a guest sees the wall clock
//! but no time zone.

const DAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// RFC 867's human-readable line for `unix` seconds, in UTC:
/// `Sunday, November 22, 2026 05:10:00-UTC` and CR LF.
pub fn daytime(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (year, month, day) = civil(days as i64);
    format!(
        "{}, {} {:02}, {} {:02}:{:02}:{:02}-UTC\r\n",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        year,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Year, month (1-12) and day (1-31) of a day count from 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_a_known_instant() {
        assert_eq!(daytime(0), "Thursday, January 01, 1970 00:00:00-UTC\r\n");
        // 2026-11-22 05:10:00 UTC.
        assert_eq!(
            daytime(1_795_324_200),
            "Sunday, November 22, 2026 05:10:00-UTC\r\n"
        );
        // A leap day.
        assert_eq!(
            daytime(951_782_400),
            "Tuesday, February 29, 2000 00:00:00-UTC\r\n"
        );
    }
}
