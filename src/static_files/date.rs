//! HTTP dates in (RFC 9110 §5.6.7): IMF-fixdate, and the two obsolete forms a
//! recipient must still accept, RFC 850 and asctime.

/// Seconds since the Unix epoch (negative before 1970) for an HTTP date, or
/// `None` if `s` is none of the three forms. `now` (seconds) resolves the
/// two-digit years of the RFC 850 form: a year more than 50 years ahead of
/// `now` is the one a century earlier.
pub(super) fn parse(s: &[u8], now: i64) -> Option<i64> {
    let s = trim_ows(s);
    imf_fixdate(s)
        .or_else(|| rfc850(s, now))
        .or_else(|| asctime(s))
}

const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const LONG_DAYS: [&[u8]; 7] = [
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
    b"Sunday",
];
const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(s: &[u8]) -> Option<i64> {
    if s.len() != 29 || !DAYS.contains(&&s[..3]) || &s[3..5] != b", " || &s[25..] != b" GMT" {
        return None;
    }
    if s[7] != b' ' || s[11] != b' ' || s[16] != b' ' {
        return None;
    }
    let day = digits(&s[5..7])?;
    let month = month(&s[8..11])?;
    let year = digits(&s[12..16])?;
    let secs = time(&s[17..25])?;
    to_epoch(year, month, day, secs)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn rfc850(s: &[u8], now: i64) -> Option<i64> {
    let comma = s.iter().position(|&b| b == b',')?;
    if !LONG_DAYS.contains(&&s[..comma]) {
        return None;
    }
    let rest = &s[comma..];
    // ", 06-Nov-94 08:49:37 GMT"
    if rest.len() != 24 || &rest[..2] != b", " || &rest[20..] != b" GMT" {
        return None;
    }
    if rest[4] != b'-' || rest[8] != b'-' || rest[11] != b' ' {
        return None;
    }
    let day = digits(&rest[2..4])?;
    let month = month(&rest[5..8])?;
    let yy = digits(&rest[9..11])?;
    let secs = time(&rest[12..20])?;
    let this_year = year_of(now.div_euclid(86_400));
    let mut year = this_year - this_year.rem_euclid(100) + yy;
    if year > this_year + 50 {
        year -= 100;
    }
    to_epoch(year, month, day, secs)
}

/// `Sun Nov  6 08:49:37 1994`
fn asctime(s: &[u8]) -> Option<i64> {
    if s.len() != 24 || !DAYS.contains(&&s[..3]) {
        return None;
    }
    if s[3] != b' ' || s[7] != b' ' || s[10] != b' ' || s[19] != b' ' {
        return None;
    }
    let month = month(&s[4..7])?;
    let day = match s[8] {
        b' ' => digits(&s[9..10])?,
        _ => digits(&s[8..10])?,
    };
    let secs = time(&s[11..19])?;
    let year = digits(&s[20..24])?;
    to_epoch(year, month, day, secs)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A fixed-width run of ASCII digits.
fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, &d| n * 10 + i64::from(d - b'0')))
}

fn month(s: &[u8]) -> Option<i64> {
    MONTHS.iter().position(|m| *m == s).map(|i| i as i64 + 1)
}

/// `HH:MM:SS` to seconds into the day. A leap second (`:60`) counts as `:59`.
fn time(s: &[u8]) -> Option<i64> {
    if s.len() != 8 || s[2] != b':' || s[5] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(&s[..2])?, digits(&s[3..5])?, digits(&s[6..])?);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(h * 3600 + m * 60 + sec.min(59))
}

fn to_epoch(year: i64, month: i64, day: i64, secs: i64) -> Option<i64> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day < 1 || day > days_in_month {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + secs)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The year of a day count since 1970-01-01.
fn year_of(days: i64) -> i64 {
    crate::encode::civil_from_days(days).0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-06-01T00:00:00Z
    const NOW: i64 = 1_748_736_000;
    const RFC_EXAMPLE: i64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT

    fn p(s: &str) -> Option<i64> {
        parse(s.as_bytes(), NOW)
    }

    #[test]
    fn the_three_forms_of_the_rfc_example_agree() {
        assert_eq!(p("Sun, 06 Nov 1994 08:49:37 GMT"), Some(RFC_EXAMPLE));
        assert_eq!(p("Sunday, 06-Nov-94 08:49:37 GMT"), Some(RFC_EXAMPLE));
        assert_eq!(p("Sun Nov  6 08:49:37 1994"), Some(RFC_EXAMPLE));
        assert_eq!(p("Sun Nov 06 08:49:37 1994"), Some(RFC_EXAMPLE));
        assert_eq!(p("  Sun, 06 Nov 1994 08:49:37 GMT\t"), Some(RFC_EXAMPLE));
    }

    #[test]
    fn round_trips_the_formatter() {
        for secs in [
            0u64,
            951_782_400,
            1_700_000_000,
            4_102_444_799,
            253_402_300_799,
        ] {
            let s = crate::encode::http_date(secs);
            assert_eq!(
                parse(&s, NOW),
                Some(secs as i64),
                "{}",
                String::from_utf8_lossy(&s)
            );
        }
        assert_eq!(p("Wed, 31 Dec 1969 23:59:59 GMT"), Some(-1));
    }

    #[test]
    fn two_digit_years_are_within_fifty_years_ahead() {
        let y = |s: &str| p(s).map(|t| year_of(t.div_euclid(86_400)));
        assert_eq!(y("Monday, 01-Jan-75 00:00:00 GMT"), Some(2075));
        assert_eq!(y("Monday, 01-Jan-76 00:00:00 GMT"), Some(1976));
        assert_eq!(y("Monday, 01-Jan-25 00:00:00 GMT"), Some(2025));
        assert_eq!(y("Monday, 01-Jan-00 00:00:00 GMT"), Some(2000));
    }

    #[test]
    fn leap_days_and_leap_seconds() {
        assert_eq!(p("Tue, 29 Feb 2000 00:00:00 GMT"), Some(951_782_400));
        assert_eq!(p("Thu, 29 Feb 1900 00:00:00 GMT"), None);
        assert_eq!(
            p("Sat, 31 Dec 2016 23:59:60 GMT"),
            p("Sat, 31 Dec 2016 23:59:59 GMT")
        );
    }

    #[test]
    fn malformed_dates_are_refused() {
        for bad in [
            "",
            "yesterday",
            "1994-11-06T08:49:37Z",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "sun, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 32 Oct 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 08:49:61 GMT",
            "Sun, 06 Nov 1994 08:49:3x GMT",
            "Sun, 06 Nov -994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",
            "Sundae, 06-Nov-94 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov  6 08:49:37 94",
            "Sun Nov 6 08:49:37 1994",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }
}
