//! The digest of a file's bytes, for its checksum (`job::checksum`).
//!
//! Where it can, the writer thread digests the bytes as it writes them ([`Streamed`]): a file
//! fetched from its first byte to its last in order (one connection, ranges too) is not read
//! again. Otherwise (a file split over connections, or resumed from a checkpoint of an earlier
//! run) it is read back once written and flushed, on a blocking thread, a MiB at a time, and
//! abandoned between two reads when the transfer is told to stop. SHA-2 and SHA-1 use the CPU's
//! instructions through aws-lc-rs.

use crate::job::checksum::{Checksum, DigestAlgorithm};
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

const READ: usize = 1 << 20;

pub(crate) enum Hasher {
    Lc(aws_lc_rs::digest::Context),
    Md5(md5::Md5),
}

impl Hasher {
    pub(crate) fn new(algorithm: DigestAlgorithm) -> Hasher {
        use aws_lc_rs::digest;
        match algorithm {
            DigestAlgorithm::Sha256 => Hasher::Lc(digest::Context::new(&digest::SHA256)),
            DigestAlgorithm::Sha512 => Hasher::Lc(digest::Context::new(&digest::SHA512)),
            DigestAlgorithm::Sha1 => {
                Hasher::Lc(digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY))
            }
            DigestAlgorithm::Md5 => Hasher::Md5(md5::Digest::new()),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Lc(context) => context.update(bytes),
            Hasher::Md5(md5) => md5::Digest::update(md5, bytes),
        }
    }

    pub(crate) fn hex(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::Lc(context) => context.finish().as_ref().to_vec(),
            Hasher::Md5(md5) => md5::Digest::finalize(md5).to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A digest taken while the file is written: of its bytes `0..at`, in order.
pub(crate) struct Streamed {
    pub algorithm: DigestAlgorithm,
    pub hasher: Hasher,
    pub at: u64,
}

impl Streamed {
    pub(crate) fn new(algorithm: DigestAlgorithm) -> Streamed {
        Streamed {
            algorithm,
            hasher: Hasher::new(algorithm),
            at: 0,
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.at += bytes.len() as u64;
    }

    pub(crate) fn finish(self) -> Checksum {
        Checksum {
            algorithm: self.algorithm,
            hex: self.hasher.hex(),
        }
    }
}

/// The `algorithm` digest of the file at `path`; `None` if `stop` turned true meanwhile.
pub(crate) fn of_file(
    path: &Path,
    algorithm: DigestAlgorithm,
    stop: &AtomicBool,
) -> io::Result<Option<Checksum>> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Hasher::new(algorithm);
    let mut buffer = vec![0u8; READ];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..read]);
    }
    Ok(Some(Checksum {
        algorithm,
        hex: hasher.hex(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_the_known_values() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").expect("write");
        let go = AtomicBool::new(false);
        let hex = |algorithm| {
            of_file(&path, algorithm, &go)
                .expect("read")
                .expect("digest")
                .hex
        };
        assert_eq!(
            hex(DigestAlgorithm::Sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(DigestAlgorithm::Sha1),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(DigestAlgorithm::Md5),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert!(hex(DigestAlgorithm::Sha512).starts_with("ddaf35a193617aba"));
        let stopped = AtomicBool::new(true);
        assert!(
            of_file(&path, DigestAlgorithm::Sha256, &stopped)
                .expect("read")
                .is_none()
        );
    }
}
