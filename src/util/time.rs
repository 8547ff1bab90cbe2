//! Timestamps in and out: RFC 3339 or unix milliseconds in, RFC 3339 out.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Parses RFC 3339 text or a number of unix milliseconds (as text) into unix nanoseconds.
pub fn parse_timestamp_str(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .ok()
            .and_then(|ms| ms.checked_mul(1_000_000));
    }
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos()).ok())
}

/// The earliest and latest times a query filter means (about 1896 and 2079): any time
/// outside is taken as the nearest of them, so ranges and their lengths stay far from
/// i64's ends (a range's length and the period before it are computed in i64 too).
pub const QUERY_MIN_NS: i64 = -(1 << 61);
pub const QUERY_MAX_NS: i64 = (1 << 61) + (1 << 60);

/// A query's time filter: RFC 3339 text or unix milliseconds, any year, clamped to
/// [`QUERY_MIN_NS`, `QUERY_MAX_NS`] (`from=0001-01-01T00:00:00Z` means "from the start").
pub fn parse_query_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let ns: i128 = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        match s.trim_start_matches('0') {
            "" => 0,
            d if d.len() > 30 => i128::MAX,
            d => d.parse::<i128>().ok()?.saturating_mul(1_000_000),
        }
    } else {
        OffsetDateTime::parse(s, &Rfc3339)
            .ok()?
            .unix_timestamp_nanos()
    };
    Some(ns.clamp(QUERY_MIN_NS as i128, QUERY_MAX_NS as i128) as i64)
}

/// Parses a JSON value that is either RFC 3339 text or unix milliseconds.
pub fn parse_timestamp_json(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::String(s) => parse_timestamp_str(s),
        serde_json::Value::Number(n) => {
            let ms = n.as_f64()?;
            // Milliseconds whose nanoseconds fit in i64 (up to 2262).
            if !ms.is_finite() || !(0.0..=9.2e12).contains(&ms) {
                return None;
            }
            Some((ms * 1e6) as i64)
        }
        _ => None,
    }
}

/// Unix nanoseconds as RFC 3339 in UTC with the precision it has.
pub fn format_ns(ns: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ns as i128)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Unix nanoseconds to the nearest unix millisecond (a time given in milliseconds and
/// stored in nanoseconds through an f64 may sit a few hundred nanoseconds below it).
pub fn ms_of(ns: i64) -> i64 {
    ns.saturating_add(500_000).div_euclid(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_times_are_clamped_not_refused() {
        assert_eq!(parse_query_time("0038-04-12T04:49:52Z"), Some(QUERY_MIN_NS));
        assert_eq!(parse_query_time("9999-12-31T23:59:59Z"), Some(QUERY_MAX_NS));
        assert_eq!(
            parse_query_time("99999999999999999999999999"),
            Some(QUERY_MAX_NS)
        );
        assert_eq!(
            parse_query_time("1700000000000"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(parse_query_time("000"), Some(0));
        assert_eq!(parse_query_time("yesterday"), None);
        assert_eq!(parse_query_time(""), None);
        // A range's length and the period before it stay in i64.
        let len = QUERY_MAX_NS - QUERY_MIN_NS;
        assert!(QUERY_MIN_NS.checked_sub(len).is_some());
    }

    #[test]
    fn parses_both_forms() {
        assert_eq!(
            parse_timestamp_str("1700000000000"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_timestamp_str("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_timestamp_str("2023-11-14T23:13:20.5+01:00"),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(parse_timestamp_str("yesterday"), None);
        assert_eq!(
            parse_timestamp_json(&serde_json::json!(1700000000000u64)),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(parse_timestamp_json(&serde_json::json!(true)), None);
        assert_eq!(format_ns(1_700_000_000_000_000_000), "2023-11-14T22:13:20Z");
    }
}
