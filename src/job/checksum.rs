//! Ferry's extension beyond BITS: the digest a file must have (`--checksum sha-256=HEX`), as
//! aria2 and AB Download Manager check. Pure data here; the digest of the bytes on disk is
//! computed by the engine and judged by the model (`Event::FileDigest`).

use super::error::{BitsError, ErrorCode};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DigestAlgorithm {
    Sha256,
    Sha512,
    /// For old mirrors: broken as a defence against a hostile server, still a check of the bytes.
    Sha1,
    /// As SHA-1.
    Md5,
}

impl DigestAlgorithm {
    /// The name in a `--checksum` (as aria2 and RFC 3230 spell them).
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha-256",
            DigestAlgorithm::Sha512 => "sha-512",
            DigestAlgorithm::Sha1 => "sha-1",
            DigestAlgorithm::Md5 => "md5",
        }
    }

    /// Hex digits of a digest.
    pub fn hex_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 64,
            DigestAlgorithm::Sha512 => 128,
            DigestAlgorithm::Sha1 => 40,
            DigestAlgorithm::Md5 => 32,
        }
    }

    fn parse(name: &str) -> Option<DigestAlgorithm> {
        match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "sha-256" | "sha256" => Some(DigestAlgorithm::Sha256),
            "sha-512" | "sha512" => Some(DigestAlgorithm::Sha512),
            "sha-1" | "sha1" => Some(DigestAlgorithm::Sha1),
            "md5" | "md-5" => Some(DigestAlgorithm::Md5),
            _ => None,
        }
    }
}

/// The digest a file must have: its algorithm and the expected value, lowercase hex. Written as
/// `ALGORITHM=HEX` in the API and the store, and checked again when read.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Checksum {
    pub algorithm: DigestAlgorithm,
    pub hex: String,
}

impl Checksum {
    /// `ALGORITHM=HEX` (or `ALGORITHM:HEX`): sha-256, sha-512, sha-1 or md5, and as many hex
    /// digits as that digest has.
    pub fn parse(text: &str) -> Result<Checksum, BitsError> {
        let refuse = |why: String| {
            Err(BitsError::new(
                ErrorCode::InvalidArg,
                format!(
                    "checksum {text:?}: {why}; give it as ALGORITHM=HEX, for example \
                     sha-256=9f86d0…, with sha-256, sha-512, sha-1 or md5"
                ),
            ))
        };
        let Some((name, hex)) = text.trim().split_once(['=', ':']) else {
            return refuse("no algorithm".into());
        };
        let Some(algorithm) = DigestAlgorithm::parse(name.trim()) else {
            return refuse(format!("{:?} is not a digest Ferry knows", name.trim()));
        };
        let hex = hex.trim().to_ascii_lowercase();
        if hex.len() != algorithm.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return refuse(format!(
                "a {} digest is {} hex digits, not {:?}",
                algorithm.name(),
                algorithm.hex_len(),
                hex
            ));
        }
        Ok(Checksum { algorithm, hex })
    }
}

impl TryFrom<String> for Checksum {
    type Error = String;

    fn try_from(text: String) -> Result<Checksum, String> {
        Checksum::parse(&text).map_err(|e| e.message)
    }
}

impl From<Checksum> for String {
    fn from(checksum: Checksum) -> String {
        checksum.to_string()
    }
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.algorithm.name(), self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_parse_in_the_usual_spellings_and_nothing_else() {
        let sha = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
        let parsed = Checksum::parse(&format!("SHA256:{sha}")).expect("sha256");
        assert_eq!(parsed.algorithm, DigestAlgorithm::Sha256);
        assert_eq!(parsed.hex, sha.to_ascii_lowercase());
        assert_eq!(
            parsed.to_string(),
            format!("sha-256={}", sha.to_ascii_lowercase())
        );
        assert_eq!(Checksum::parse(&parsed.to_string()), Ok(parsed.clone()));
        let json = serde_json::to_string(&parsed).expect("json");
        assert_eq!(json, format!("\"{parsed}\""));
        assert_eq!(
            serde_json::from_str::<Checksum>(&json).expect("back"),
            parsed
        );
        assert!(serde_json::from_str::<Checksum>("\"sha-256=00\"").is_err());
        assert!(Checksum::parse(&format!("md5={}", "a".repeat(32))).is_ok());
        assert!(Checksum::parse(&format!("sha-1={}", "b".repeat(40))).is_ok());
        assert!(Checksum::parse(&format!("sha-512={}", "c".repeat(128))).is_ok());
        for bad in [
            sha.to_string(),
            format!("crc32={sha}"),
            format!("sha-256={}", &sha[1..]),
            format!("sha-256={}g", &sha[1..]),
        ] {
            let error = Checksum::parse(&bad).expect_err(&bad);
            assert_eq!(error.code, ErrorCode::InvalidArg);
            assert!(error.message.contains("ALGORITHM=HEX"), "{}", error.message);
        }
    }
}
