//! How a figure reads in a table cell: seconds, percentages, durations, byte sizes, counts.

/// A duration in milliseconds as seconds with one decimal, `-` when there is none.
pub(in crate::cli) fn secs(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| format!("{:.1}", ms / 1000.0))
}

/// A fraction 0..1 as a percentage with one decimal, `-` when there is none.
pub(in crate::cli) fn pct(frac: Option<f64>) -> String {
    frac.map_or_else(|| "-".into(), |f| format!("{:.1}", f * 100.0))
}

/// `45s`, `1m05s`, `2h03m09s`, `3d04h05m`: compact and sortable by eye.
pub(in crate::cli) fn duration(ms: i64) -> String {
    if ms < 0 {
        // Possible when the source clock runs ahead of the daemon's.
        return format!("-{}", duration(ms.saturating_neg()));
    }
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Bytes in binary units with one decimal: `512 B`, `64.0 KiB`, `1.0 GiB`.
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `name n, name n`; `none` when empty.
pub(super) fn counts<'a>(items: impl IntoIterator<Item = (&'a String, &'a u64)>) -> String {
    let parts: Vec<String> = items.into_iter().map(|(k, v)| format!("{k} {v}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_clocks() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(45_999), "45s");
        assert_eq!(duration(65_000), "1m05s");
        assert_eq!(duration(2 * 3_600_000 + 3 * 60_000 + 9_000), "2h03m09s");
        assert_eq!(
            duration(3 * 86_400_000 + 4 * 3_600_000 + 5 * 60_000),
            "3d04h05m"
        );
        assert_eq!(duration(-5_000), "-5s");
        assert_eq!(duration(i64::MIN).chars().next(), Some('-'));
    }
}
