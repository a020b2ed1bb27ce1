//! `java.util.Date` (milliseconds since the Unix epoch) to and from text.
//!
//! In: milliseconds as a decimal integer, or an RFC 3339 / ISO-8601 date-time with an offset
//! (`2024-05-01T12:30:00Z`, `2024-05-01T14:30:00.250+02:00`); digits below the millisecond are dropped
//! (Java's `Date` holds milliseconds). Out: always UTC with milliseconds, `2024-05-01T12:30:00.000Z`, for
//! years 0000-9999; other instants are given as their millisecond number.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The milliseconds of `text`: an integer or an RFC 3339 date-time. `None` if it is neither.
pub fn parse_date(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

/// `ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), or `None` outside years 0000-9999.
pub fn format_date(ms: i64) -> Option<String> {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some(format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_millis_and_rfc3339() {
        assert_eq!(parse_date("0"), Some(0));
        assert_eq!(parse_date("-1"), Some(-1));
        assert_eq!(parse_date("1714566600000"), Some(1_714_566_600_000));
        assert_eq!(parse_date("2024-05-01T12:30:00Z"), Some(1_714_566_600_000));
        assert_eq!(
            parse_date("2024-05-01T14:30:00.250+02:00"),
            Some(1_714_566_600_250)
        );
        assert_eq!(parse_date("1969-12-31T23:59:59.9999Z"), Some(-1));
        for bad in [
            "",
            "x",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2024-05-01T12:30:00",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_utc_with_millis() {
        assert_eq!(format_date(0).unwrap(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_date(1_714_566_600_250).unwrap(),
            "2024-05-01T12:30:00.250Z"
        );
        assert_eq!(format_date(-1).unwrap(), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_date(i64::MAX), None);
        assert_eq!(format_date(i64::MIN), None);
        for ms in [0, -1, 1, 253_402_300_799_999, -62_167_219_200_000] {
            assert_eq!(parse_date(&format_date(ms).unwrap()), Some(ms), "{ms}");
        }
    }
}
