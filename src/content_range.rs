//! `Content-Range` values (RFC 9110 §14.4), for both sides: the download client checks a 206's
//! against what it asked (`engine/http.rs`), and `ferry serve` reads a BITS fragment's.

/// A `Content-Range` value (RFC 9110 §14.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes FIRST-LAST/TOTAL` or `bytes FIRST-LAST/*`.
    Bytes {
        first: u64,
        last: u64,
        total: Option<u64>,
    },
    /// `bytes */TOTAL` (a 416's).
    Unsatisfied { total: u64 },
}

impl ContentRange {
    pub fn parse(value: &str) -> Option<ContentRange> {
        let rest = value.trim().strip_prefix("bytes ")?.trim_start();
        let (span, total) = rest.split_once('/')?;
        let total = total.trim();
        if span.trim() == "*" {
            return Some(ContentRange::Unsatisfied {
                total: digits(total)?,
            });
        }
        let (first, last) = span.split_once('-')?;
        let (first, last) = (digits(first.trim())?, digits(last.trim())?);
        if last < first {
            return None;
        }
        let total = match total {
            "*" => None,
            total => Some(digits(total)?),
        };
        Some(ContentRange::Bytes { first, last, total })
    }
}

impl std::fmt::Display for ContentRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContentRange::Bytes {
                first,
                last,
                total: Some(total),
            } => write!(f, "bytes {first}-{last}/{total}"),
            ContentRange::Bytes {
                first,
                last,
                total: None,
            } => write!(f, "bytes {first}-{last}/*"),
            ContentRange::Unsatisfied { total } => write!(f, "bytes */{total}"),
        }
    }
}

/// ASCII digits only (`u64::from_str` also takes a leading `+`), without overflow.
pub(crate) fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        use ContentRange::*;
        let parse = ContentRange::parse;
        assert_eq!(
            parse("bytes 100-199/1000"),
            Some(Bytes {
                first: 100,
                last: 199,
                total: Some(1000)
            })
        );
        assert_eq!(
            parse("bytes 0-9/*"),
            Some(Bytes {
                first: 0,
                last: 9,
                total: None
            })
        );
        assert_eq!(parse("bytes */1000"), Some(Unsatisfied { total: 1000 }));
        for bad in [
            "bytes 9-0/10",
            "bytes +1-2/3",
            "bytes 1-2/-3",
            "bytes -1-2/3",
            "bytes 1-18446744073709551616/*",
            "items 0-1/2",
            "bytes 0-1",
            "bytes */*",
            "",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]

            #[test]
            fn content_range_round_trips(first in any::<u64>(), len in any::<u64>(), total in proptest::option::of(any::<u64>())) {
                let last = first.saturating_add(len);
                let range = ContentRange::Bytes { first, last, total };
                prop_assert_eq!(ContentRange::parse(&range.to_string()), Some(range));
                let unsatisfied = ContentRange::Unsatisfied { total: len };
                prop_assert_eq!(ContentRange::parse(&unsatisfied.to_string()), Some(unsatisfied));
            }
        }
    }
}
