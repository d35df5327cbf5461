//! ISO 8601 durations (`P180D`, `P1Y6M`, `PT12H`) in words ("180 days"), for output people read: GDAP's
//! `autoExtendDuration` and the like. The JSON keeps Microsoft's value as it came.

/// `P180D` -> "180 days", `P1Y2M` -> "1 year 2 months", `PT0S` -> "0 days". A value that is not an ISO 8601
/// duration comes back as it was, so nothing is hidden.
pub fn duration_words(iso: &str) -> String {
    let text = iso.trim();
    let Ok(span) = text.parse::<jiff::Span>() else {
        return text.to_string();
    };
    let parts: [(i64, &str, &str); 7] = [
        (i64::from(span.get_years()), "year", "years"),
        (i64::from(span.get_months()), "month", "months"),
        (i64::from(span.get_weeks()), "week", "weeks"),
        (i64::from(span.get_days()), "day", "days"),
        (i64::from(span.get_hours()), "hour", "hours"),
        (span.get_minutes(), "minute", "minutes"),
        (span.get_seconds(), "second", "seconds"),
    ];
    let words: Vec<String> = parts
        .iter()
        .filter(|(n, _, _)| *n != 0)
        .map(|(n, one, many)| {
            super::count(
                usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX),
                one,
                many,
            )
        })
        .collect();
    if words.is_empty() {
        "0 days".into()
    } else {
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::duration_words;

    #[test]
    fn iso_durations_read_as_words() {
        assert_eq!(duration_words("P180D"), "180 days");
        assert_eq!(duration_words("p1d"), "1 day");
        assert_eq!(duration_words("P1Y2M"), "1 year 2 months");
        assert_eq!(duration_words("P2W"), "2 weeks");
        assert_eq!(duration_words("PT12H30M"), "12 hours 30 minutes");
        assert_eq!(duration_words("PT0S"), "0 days");
        assert_eq!(duration_words(" forever "), "forever");
    }
}
