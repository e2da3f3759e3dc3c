//! UTC timestamps as Zaqar writes and reads them (`2016-01-01T00:00:00`),
//! without a date-time dependency.

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SS` (UTC, no zone suffix).
pub fn format_utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses an ISO 8601 date or date-time (`2016-01-01`, `2016-01-01T00:00`,
/// `2016-01-01T00:00:00.5+02:00`, ...) into seconds since the epoch (UTC; no
/// zone means UTC).
pub fn parse_iso8601(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, time) = match text.find(['T', 't', ' ']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year: i64 = number(parts.next()?, 4)?;
    let month: i64 = number(parts.next()?, 2)?;
    let day: i64 = number(parts.next()?, 2)?;
    if parts.next().is_some()
        || !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
    {
        return None;
    }
    let mut secs = days_from_civil(year, month, day) * 86_400;
    if let Some(time) = time {
        let zone_at = time.find(['Z', 'z', '+', '-']).unwrap_or(time.len());
        let (clock, zone) = time.split_at(zone_at);
        let clock = clock.split('.').next()?;
        let mut fields = clock.split(':');
        let hour: i64 = number(fields.next()?, 2)?;
        let minute: i64 = number(fields.next()?, 2)?;
        let second: i64 = match fields.next() {
            Some(s) => number(s, 2)?,
            None => 0,
        };
        if fields.next().is_some() || hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        secs += hour * 3600 + minute * 60 + second - zone_offset(zone)?;
    }
    Some(secs)
}

fn zone_offset(zone: &str) -> Option<i64> {
    if zone.is_empty() || zone.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits: String = zone[1..].chars().filter(|&c| c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        2 => (number(&digits, 2)?, 0),
        4 => (number(&digits[..2], 2)?, number(&digits[2..], 2)?),
        _ => return None,
    };
    Some(sign * (hours * 3600 + minutes * 60))
}

fn number(text: &str, width: usize) -> Option<i64> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's `days_from_civil`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00");
        assert_eq!(format_utc(1_795_623_895), "2026-11-25T16:24:55");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00");
        for secs in [0, 951_782_400, 1_795_623_895, 1_893_456_000] {
            assert_eq!(parse_iso8601(&format_utc(secs)), Some(secs));
        }
    }

    #[test]
    fn parses_the_forms_zaqar_accepts() {
        let base = parse_iso8601("2030-01-01T00:00:00").unwrap();
        assert_eq!(parse_iso8601("2030-01-01"), Some(base));
        assert_eq!(parse_iso8601("2030-01-01T00:00:00.123Z"), Some(base));
        assert_eq!(parse_iso8601("2030-01-01T02:00:00+02:00"), Some(base));
        assert_eq!(parse_iso8601("2029-12-31T22:00:00-0200"), Some(base));
        assert_eq!(parse_iso8601("2030-01-01T00:00"), Some(base));
        assert_eq!(parse_iso8601("garbage"), None);
        assert_eq!(parse_iso8601("2030-02-30"), None);
        assert_eq!(parse_iso8601("123"), None);
        // A multi-byte character where the zone's digits are: refused, no panic.
        assert_eq!(parse_iso8601("2030-01-01T00:00:00+1\u{e9}1"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_a_panic(text in "\\PC{0,40}") {
            let _ = parse_iso8601(&text);
        }

        #[test]
        fn text_shaped_like_a_date_parses_or_is_refused_without_a_panic(
            text in "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])[T ]([01][0-9]|2[0-3]):[0-5][0-9]\
                     (:[0-5][0-9](\\.[0-9]{1,3})?)?([Zz]|[+-][0-9:é€😀]{1,5})?"
        ) {
            let _ = parse_iso8601(&text);
        }

        #[test]
        fn every_second_round_trips(secs in -62_135_596_800i64..253_402_300_799) {
            proptest::prop_assert_eq!(parse_iso8601(&format_utc(secs)), Some(secs));
        }
    }
}
