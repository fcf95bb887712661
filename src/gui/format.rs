//! Numbers as people read them: sizes, rates and spans of time.

use std::time::Duration;

/// `1.5 MB`, with decimal units as file managers show them.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A speed limit in the binary units it was given in (`2M` is `2 MiB/s`, `1536K` is
/// `1.5 MiB/s`), as curl and aria2 count limits.
pub fn limit(rate: crate::job::Rate) -> String {
    let bytes = rate.bytes_per_second() as f64;
    let units = [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    let (scale, unit) = units
        .into_iter()
        .find(|(scale, _)| bytes >= *scale as f64)
        .unwrap_or((1, "B"));
    let value = bytes / scale as f64;
    if value.fract() == 0.0 {
        format!("{value:.0} {unit}/s")
    } else {
        format!("{value:.1} {unit}/s")
    }
}

/// `2.3 MB/s`.
pub fn rate(bytes_per_second: f64) -> String {
    format!("{}/s", bytes(bytes_per_second.max(0.0) as u64))
}

/// The two largest units of a span: `3 d 4 h`, `5 min 20 s`, `12 s`.
pub fn span(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min {s} s")
    } else {
        format!("{s} s")
    }
}

/// A span between two timestamps, never negative.
pub fn between(from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_rates_and_spans() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1500), "1.5 kB");
        assert_eq!(bytes(123_456_789), "123 MB");
        assert_eq!(rate(2_300_000.0), "2.3 MB/s");
        let limit_of = |t: &str| limit(crate::job::Rate::parse(t).expect("rate"));
        assert_eq!(limit_of("2M"), "2 MiB/s");
        assert_eq!(limit_of("1536K"), "1.5 MiB/s");
        assert_eq!(limit_of("512K"), "512 KiB/s");
        assert_eq!(limit_of("1G"), "1 GiB/s");
        assert_eq!(limit_of("1500"), "1.5 KiB/s");
        assert_eq!(span(Duration::from_secs(12)), "12 s");
        assert_eq!(span(Duration::from_secs(320)), "5 min 20 s");
        assert_eq!(span(Duration::from_secs(90_000)), "1 d 1 h");
    }
}
