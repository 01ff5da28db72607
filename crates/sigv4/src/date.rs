//! The two timestamp formats SigV4 accepts, parsed by hand so that nothing panics
//! and nothing lenient slips through.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Formats `t` (converted to UTC, sub-seconds dropped) as ISO 8601 basic: `20150830T123600Z`.
pub(crate) fn format_amz_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses ISO 8601 basic format, exactly `yyyymmddThhmmssZ`.
pub(crate) fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[4..6])?;
    let day = digits(&b[6..8])?;
    let hour = digits(&b[9..11])?;
    let minute = digits(&b[11..13])?;
    let second = digits(&b[13..15])?;
    build(year, month, day, hour, minute, second)
}

/// Parses an HTTP `Date` header in RFC 1123 form: `Sun, 30 Aug 2015 12:36:00 GMT`.
///
/// The weekday is optional and not checked; the zone may be `GMT`, `UTC`, `UT`, `Z`,
/// `+0000` or `-0000` (botocore sends `-0000`, from Python's `email.utils.formatdate`).
pub(crate) fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    let mut tokens: Vec<&str> = s.split_ascii_whitespace().collect();
    if tokens.first().is_some_and(|t| t.ends_with(',')) {
        tokens.remove(0);
    }
    let [day, month, year, clock, zone] = tokens.as_slice() else {
        return None;
    };
    if !matches!(*zone, "GMT" | "UTC" | "UT" | "Z" | "+0000" | "-0000") {
        return None;
    }
    let day = match day.len() {
        1 | 2 => digits(day.as_bytes())?,
        _ => return None,
    };
    let month = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(month))
        .and_then(|i| u32::try_from(i + 1).ok())?;
    if year.len() != 4 {
        return None;
    }
    let year = digits(year.as_bytes())?;
    let c = clock.as_bytes();
    if c.len() != 8 || c[2] != b':' || c[5] != b':' {
        return None;
    }
    build(
        year,
        month,
        day,
        digits(&c[0..2])?,
        digits(&c[3..5])?,
        digits(&c[6..8])?,
    )
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

fn build(
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<OffsetDateTime> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()?;
    let time = Time::from_hms(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn amz_date_round_trip() {
        let t = datetime!(2015-08-30 12:36:00 UTC);
        assert_eq!(format_amz_date(t), "20150830T123600Z");
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(t));
        // Converted to UTC, sub-seconds dropped.
        assert_eq!(
            format_amz_date(datetime!(2015-08-30 14:36:00.9 +02:00)),
            "20150830T123600Z"
        );
    }

    #[test]
    fn amz_date_rejects_junk() {
        for s in [
            "",
            "20150830T123600",
            "20150830 123600Z",
            "2015-08-30T12:36:00Z",
            "20151330T123600Z",
            "20150230T123600Z",
            "20150830T246000Z",
            "20150830T123660Z",
            "+0150830T123600Z",
            "20150830T12360ZZ",
            "２０150830T1236Z",
        ] {
            assert_eq!(parse_amz_date(s), None, "{s:?}");
        }
    }

    #[test]
    fn http_dates() {
        let t = datetime!(2015-08-30 12:36:00 UTC);
        for s in [
            "Sun, 30 Aug 2015 12:36:00 GMT",
            "Sun, 30 Aug 2015 12:36:00 -0000",
            "Sun, 30 Aug 2015 12:36:00 +0000",
            "30 Aug 2015 12:36:00 UTC",
            "Sun,  30 aug 2015 12:36:00 GMT",
        ] {
            assert_eq!(parse_http_date(s), Some(t), "{s:?}");
        }
        for s in [
            "",
            "Sun, 30 Aug 2015 12:36:00 +0200",
            "Sun, 30 Aug 2015 12:36:00",
            "Sun, 30 Foo 2015 12:36:00 GMT",
            "Sun, 31 Sep 2015 12:36:00 GMT",
            "Sun, 30 Aug 15 12:36:00 GMT",
            "Sun, 30 Aug 2015 12:36 GMT",
            "Sun, 300 Aug 2015 12:36:00 GMT",
            "20150830T123600Z",
        ] {
            assert_eq!(parse_http_date(s), None, "{s:?}");
        }
    }
}
