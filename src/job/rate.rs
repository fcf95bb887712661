//! Transfer rates, as speed limits are given: bytes per second in curl's `--limit-rate` syntax
//! (`500K`, `2M`, `1.5G`; K = 1024 bytes, as curl and aria2 count).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A speed limit in bytes per second, [`Rate::MIN`] to [`Rate::MAX`].
///
/// Written and read as curl writes it (`"2M"`); a plain number of bytes per second is read too,
/// so a config file may say either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(u64);

const KIB: u64 = 1024;

impl Rate {
    /// 1 KiB/s: slower is not a limit but a stall (the peers' own floors are of this order; BITS
    /// treats anything under 2 kbit/s as 2 kbit/s). To stop a transfer, suspend it.
    pub const MIN: Rate = Rate(KIB);
    /// 1 TiB/s: anything above is no limit at all, and a typo.
    pub const MAX: Rate = Rate(KIB * KIB * KIB * KIB);

    pub fn bytes_per_second(self) -> u64 {
        self.0
    }

    /// A rate of `bytes` per second, if within [`Rate::MIN`]..=[`Rate::MAX`].
    pub fn new(bytes: u64) -> Result<Rate, String> {
        if bytes < Self::MIN.0 {
            return Err(format!(
                "{bytes} bytes per second is below the lowest limit, 1K (1024 bytes per second): \
                 give 1K or more, or suspend the job to stop it"
            ));
        }
        if bytes > Self::MAX.0 {
            return Err(format!(
                "{bytes} bytes per second is above the highest limit, 1024G: give less, or \
                 `none` for no limit"
            ));
        }
        Ok(Rate(bytes))
    }

    /// Parses curl's syntax: a number (decimals allowed) and an optional unit K, M or G (either
    /// case; powers of 1024). A plain number is bytes per second.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let usage = "give bytes per second like 500K, 2M or 1.5G (K = 1024 bytes)";
        let trimmed = text.trim();
        let (number, unit) = match trimmed.char_indices().last() {
            Some((at, c)) if c.is_ascii_alphabetic() => (&trimmed[..at], c.to_ascii_uppercase()),
            _ => (trimmed, ' '),
        };
        let scale = match unit {
            ' ' => 1,
            'K' => KIB,
            'M' => KIB * KIB,
            'G' => KIB * KIB * KIB,
            _ => {
                return Err(format!(
                    "{text:?} is not a rate: unknown unit {unit:?}; {usage}"
                ));
            }
        };
        // Digits and at most one point only: no sign, no exponent, no "inf".
        let valid = !number.is_empty()
            && number.chars().all(|c| c.is_ascii_digit() || c == '.')
            && number.chars().filter(|&c| c == '.').count() <= 1
            && number.chars().any(|c| c.is_ascii_digit());
        let value: f64 = match number.parse() {
            Ok(value) if valid => value,
            _ => return Err(format!("{text:?} is not a rate: {usage}")),
        };
        let bytes = value * scale as f64;
        if bytes > Self::MAX.0 as f64 {
            return Err(format!(
                "{text:?} is above the highest limit, 1024G: give less, or `none` for no limit"
            ));
        }
        // In range, so the cast is exact to the byte (f64 holds integers to 2^53).
        Rate::new(bytes.round() as u64)
    }
}

impl fmt::Display for Rate {
    /// The shortest exact form in curl's syntax: `2M`, `1536K`, `1500`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(KIB * KIB * KIB, "G"), (KIB * KIB, "M"), (KIB, "K")];
        for (scale, unit) in units {
            if self.0.is_multiple_of(scale) {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Rate, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate like \"500K\", \"2M\" or a number of bytes per second")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Rate, E> {
                Rate::parse(text).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, bytes: u64) -> Result<Rate, E> {
                Rate::new(bytes).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, bytes: i64) -> Result<Rate, E> {
                let bytes = u64::try_from(bytes)
                    .map_err(|_| E::custom(format!("{bytes} is not a rate: it is negative")))?;
                Rate::new(bytes).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_syntax_is_read_in_powers_of_1024() {
        let cases = [
            ("500K", 500 * KIB),
            ("2M", 2 * KIB * KIB),
            ("2m", 2 * KIB * KIB),
            ("1.5G", 3 * KIB * KIB * KIB / 2),
            ("0.5M", KIB * KIB / 2),
            ("4096", 4096),
            (" 64k ", 64 * KIB),
            ("1024G", KIB * KIB * KIB * KIB),
        ];
        for (text, bytes) in cases {
            assert_eq!(
                Rate::parse(text).map(Rate::bytes_per_second),
                Ok(bytes),
                "{text}"
            );
        }
    }

    #[test]
    fn what_is_not_a_rate_is_refused_with_the_reason() {
        for (text, reason) in [
            ("", "is not a rate"),
            ("K", "is not a rate"),
            ("2X", "unknown unit"),
            ("-2M", "is not a rate"),
            ("1e6", "is not a rate"),
            ("inf", "unknown unit"),
            ("NaN", "unknown unit"),
            ("1.2.3M", "is not a rate"),
            ("2 M", "is not a rate"),
            ("100", "below the lowest limit"),
            ("0", "below the lowest limit"),
            ("2000G", "above the highest limit"),
            ("99999999999999999999999999G", "above the highest limit"),
        ] {
            let error = Rate::parse(text).expect_err(text);
            assert!(error.contains(reason), "{text:?}: {error}");
        }
    }

    #[test]
    fn printed_in_the_shortest_exact_form_and_read_back() {
        for (bytes, text) in [
            (2 * KIB * KIB, "2M"),
            (1536 * KIB, "1536K"),
            (1500, "1500"),
            (KIB * KIB * KIB, "1G"),
        ] {
            let rate = Rate::new(bytes).expect("in range");
            assert_eq!(rate.to_string(), text);
            assert_eq!(Rate::parse(text), Ok(rate));
        }
    }

    #[test]
    fn serde_takes_a_string_or_a_number() {
        let rate: Rate = ron::from_str("\"2M\"").expect("a string");
        assert_eq!(rate.bytes_per_second(), 2 * KIB * KIB);
        let rate: Rate = ron::from_str("4096").expect("a number");
        assert_eq!(rate.bytes_per_second(), 4096);
        assert_eq!(ron::to_string(&rate).expect("serializes"), "\"4K\"");
        assert!(ron::from_str::<Rate>("10").is_err(), "too low");
        let json: Rate = serde_json::from_str("\"500K\"").expect("json");
        assert_eq!(json.bytes_per_second(), 500 * KIB);
    }
}
