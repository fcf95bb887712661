//! A checksums file for a whole job (`SHA256SUMS`, `SHA512SUMS`, `MD5SUMS`, BSD-style `CHECKSUM`
//! files): fetched once when the job is created, off the actor, and each file given the digest
//! the list has for its name. All or nothing: a file the list does not name is refused, since a
//! user who gives a list expects every file checked.

use crate::job::checksum::{Checksum, DigestAlgorithm};
use crate::job::{BitsError, ErrorCode, NewFile};

/// The largest checksums file read (a list of thousands of files is well under it).
pub const MAX_SUMS_FILE: usize = 1 << 20;

/// The digests a checksums file gives, by file name: GNU lines (`HEX  NAME`, `HEX *NAME`, the
/// algorithm known by the length of HEX) and BSD lines (`SHA256 (NAME) = HEX`). Blank lines and
/// `#` comments are skipped; any other line is an error naming it.
pub fn parse(text: &str) -> Result<Vec<(String, Checksum)>, String> {
    let mut sums = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            format!(
                "line {} is not `HEX  NAME` or `ALGORITHM (NAME) = HEX`: {line:?}",
                number + 1
            )
        };
        let (name, checksum) = if let Some((head, hex)) = line.rsplit_once(") = ") {
            let (tag, name) = head.split_once(" (").ok_or_else(bad)?;
            let checksum = Checksum::parse(&format!("{tag}={hex}")).map_err(|_| bad())?;
            (name.to_string(), checksum)
        } else {
            let (hex, name) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
            let algorithm = match hex.len() {
                64 => DigestAlgorithm::Sha256,
                128 => DigestAlgorithm::Sha512,
                40 => DigestAlgorithm::Sha1,
                32 => DigestAlgorithm::Md5,
                _ => return Err(bad()),
            };
            let checksum =
                Checksum::parse(&format!("{}={hex}", algorithm.name())).map_err(|_| bad())?;
            let name = name.trim_start();
            (name.strip_prefix('*').unwrap_or(name).to_string(), checksum)
        };
        sums.push((name, checksum));
    }
    Ok(sums)
}

/// The base name a list entry gives (`./dir/x.iso` → `x.iso`).
fn base_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// Gives each file the digest `sums` has for its local file name.
pub fn assign(
    files: &mut [NewFile],
    sums: &[(String, Checksum)],
    url: &str,
) -> Result<(), BitsError> {
    for file in files.iter_mut() {
        let name = file
            .local_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let found: Vec<&Checksum> = sums
            .iter()
            .filter(|(listed, _)| base_name(listed) == name)
            .map(|(_, checksum)| checksum)
            .collect();
        match found.as_slice() {
            [one] => file.checksum = Some((*one).clone()),
            [] => {
                return Err(BitsError::new(
                    ErrorCode::InvalidArg,
                    format!(
                        "the checksums file {url} lists no {name}: every file of the job must be \
                         in it (or give each file its own --checksum)"
                    ),
                ));
            }
            _ => {
                return Err(BitsError::new(
                    ErrorCode::InvalidArg,
                    format!(
                        "the checksums file {url} lists {name} {} times",
                        found.len()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Fetches and parses the checksums file at `url`, with `client` (the engine's, with its
/// resolver and timeouts): a 200 answer of at most [`MAX_SUMS_FILE`] bytes.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
) -> Result<Vec<(String, Checksum)>, BitsError> {
    let refuse = |why: String| {
        BitsError::new(
            ErrorCode::InvalidArg,
            format!(
                "cannot use the checksums file {}: {why}",
                crate::job::redact_url(url)
            ),
        )
    };
    crate::job::check_remote_url(url).map_err(|e| refuse(e.message))?;
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| refuse(super::http::error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(refuse(format!("the server answered {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| refuse(super::http::error_chain(&e)))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_SUMS_FILE {
            return Err(refuse(format!(
                "larger than {} MiB: not a checksums file",
                MAX_SUMS_FILE >> 20
            )));
        }
    }
    let text = String::from_utf8(body).map_err(|_| refuse("not text".into()))?;
    let sums = parse(&text).map_err(refuse)?;
    if sums.is_empty() {
        return Err(refuse("it lists no file".into()));
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_and_bsd_lines_are_read_and_files_found_by_name() {
        let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let md5 = "900150983cd24fb0d6963f7d28e17f72";
        let text = format!(
            "# release\n{sha}  debian.iso\n{md5} *./pool/notes.txt\r\nSHA512 (big.img) = {}\n",
            "c".repeat(128)
        );
        let sums = parse(&text).expect("parsed");
        assert_eq!(sums.len(), 3);
        assert_eq!(sums[1].0, "./pool/notes.txt");
        assert_eq!(sums[2].1.algorithm, DigestAlgorithm::Sha512);
        let file = |name: &str| NewFile {
            remote_url: format!("http://127.0.0.1/{name}"),
            local_path: format!("/tmp/{name}").into(),
            ranges: None,
            checksum: None,
        };
        let mut files = vec![file("debian.iso"), file("notes.txt")];
        assign(&mut files, &sums, "SUMS").expect("assigned");
        assert_eq!(
            files[0].checksum.as_ref().map(|c| c.hex.as_str()),
            Some(sha)
        );
        assert_eq!(
            files[1].checksum.as_ref().map(|c| c.algorithm),
            Some(DigestAlgorithm::Md5)
        );
        let error = assign(&mut [file("other.bin")], &sums, "SUMS").expect_err("not listed");
        assert!(
            error.message.contains("lists no other.bin"),
            "{}",
            error.message
        );
        let error = parse("not a checksum line").expect_err("garbage");
        assert!(error.contains("line 1"), "{error}");
    }
}
