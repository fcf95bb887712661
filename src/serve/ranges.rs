//! `Range: bytes=…` requests (RFC 9110 §14): single and multiple ranges, kept in request order
//! and not merged when they are disjoint (spec §8.7: a BITS client checks each part). Overlapping
//! ranges, which no BITS client sends, are coalesced (RFC 9110 §14.2 allows it), so that an answer
//! never carries more than the file; more than [`MAX_RANGES`] ranges get the whole file.

/// The most ranges one request may ask for; more are answered with the whole file (200), as
/// RFC 9110 §14.2 allows for "many small ranges".
pub const MAX_RANGES: usize = 100;

/// What a Range header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// No usable Range header (absent, another unit, or malformed): the whole file, 200.
    Whole,
    /// These inclusive byte ranges, in request order: 206.
    Ranges(Vec<(u64, u64)>),
    /// No range overlaps the file: 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Parses a Range header value against a file of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> Wanted {
    let Some(specs) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    let mut ranges = Vec::new();
    for (count, spec) in specs.split(',').enumerate() {
        if count >= MAX_RANGES {
            return Wanted::Whole;
        }
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        let Some((first, last)) = spec.split_once('-') else {
            return Wanted::Whole;
        };
        let (first, last) = (first.trim(), last.trim());
        let range = if first.is_empty() {
            // A suffix: the last N bytes.
            let Ok(n) = last.parse::<u64>() else {
                return Wanted::Whole;
            };
            (n > 0 && size > 0).then(|| (size.saturating_sub(n), size - 1))
        } else {
            let Ok(first) = first.parse::<u64>() else {
                return Wanted::Whole;
            };
            let last = if last.is_empty() {
                u64::MAX
            } else {
                match last.parse::<u64>() {
                    Ok(last) if last >= first => last,
                    _ => return Wanted::Whole,
                }
            };
            (first < size).then(|| (first, last.min(size - 1)))
        };
        if let Some(range) = range {
            ranges.push(range);
        }
    }
    if ranges.is_empty() {
        Wanted::Unsatisfiable
    } else {
        Wanted::Ranges(coalesce_if_overlapping(ranges))
    }
}

/// Disjoint ranges as asked, in request order; any overlap: all merged, in file order.
fn coalesce_if_overlapping(ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut sorted = ranges.clone();
    sorted.sort_unstable();
    if sorted.windows(2).all(|w| w[0].1 < w[1].0) {
        return ranges;
    }
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
    for (first, last) in sorted {
        match merged.last_mut() {
            Some(previous) if first <= previous.1 => previous.1 = previous.1.max(last),
            _ => merged.push((first, last)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse(None, 100), Wanted::Whole);
        assert_eq!(parse(Some("items=0-1"), 100), Wanted::Whole);
        assert_eq!(parse(Some("bytes=0-9"), 100), Wanted::Ranges(vec![(0, 9)]));
        assert_eq!(
            parse(Some("bytes=90-"), 100),
            Wanted::Ranges(vec![(90, 99)])
        );
        assert_eq!(
            parse(Some("bytes=-10"), 100),
            Wanted::Ranges(vec![(90, 99)])
        );
        assert_eq!(
            parse(Some("bytes=-500"), 100),
            Wanted::Ranges(vec![(0, 99)])
        );
        assert_eq!(
            parse(Some("bytes=50-500"), 100),
            Wanted::Ranges(vec![(50, 99)])
        );
        // Disjoint ranges keep the request order.
        assert_eq!(
            parse(Some("bytes=50-59, 0-9,20-24"), 100),
            Wanted::Ranges(vec![(50, 59), (0, 9), (20, 24)])
        );
        // Overlaps are coalesced (defect: `bytes=0-,0-,…` drew 2 GB from a 1 MiB file).
        assert_eq!(
            parse(Some("bytes=50-59, 0-9,5-14"), 100),
            Wanted::Ranges(vec![(0, 14), (50, 59)])
        );
        let many_overlapping = format!("bytes={}", vec!["0-"; 99].join(","));
        assert_eq!(
            parse(Some(&many_overlapping), 1 << 20),
            Wanted::Ranges(vec![(0, (1 << 20) - 1)])
        );
        // Too many ranges: the whole file.
        let too_many = format!("bytes={}", vec!["0-0"; 2000].join(","));
        assert_eq!(parse(Some(&too_many), 100), Wanted::Whole);
        // Ranges past the end are dropped; none left → 416.
        assert_eq!(
            parse(Some("bytes=0-0,200-300"), 100),
            Wanted::Ranges(vec![(0, 0)])
        );
        assert_eq!(parse(Some("bytes=100-"), 100), Wanted::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 100), Wanted::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        // Malformed: ignored, the whole file.
        assert_eq!(parse(Some("bytes=9-1"), 100), Wanted::Whole);
        assert_eq!(parse(Some("bytes=a-b"), 100), Wanted::Whole);
        assert_eq!(parse(Some("bytes=5"), 100), Wanted::Whole);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]

            #[test]
            fn any_range_header_is_answered_within_the_file(
                specs in proptest::collection::vec(
                    prop_oneof!["[0-9]{0,6}-[0-9]{0,6}", "-[0-9]{1,6}", "[ -~]{0,8}"],
                    0..120,
                ),
                size in 0..2_000_000u64,
            ) {
                let header = format!("bytes={}", specs.join(","));
                match parse(Some(&header), size) {
                    Wanted::Whole | Wanted::Unsatisfiable => {}
                    Wanted::Ranges(ranges) => {
                        prop_assert!(ranges.len() <= MAX_RANGES);
                        let mut bytes = 0u64;
                        for (first, last) in &ranges {
                            prop_assert!(first <= last && *last < size);
                            bytes += last - first + 1;
                        }
                        // Never more bytes than the file (overlaps are coalesced).
                        prop_assert!(bytes <= size, "{} bytes of {}", bytes, size);
                    }
                }
            }
        }
    }
}
