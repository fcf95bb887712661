//! Maps a request path to a file inside the served directory, refusing every way out of it:
//! `..`, absolute paths, encoded separators (`%2F`, `%5C`), backslashes, NUL, and symlinks whose
//! target lies outside.

use std::path::{Component, Path, PathBuf};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with `/`")]
    NotAbsolute,
    #[error("the path has an invalid percent-encoding")]
    BadEncoding,
    #[error("the path may not contain `..`, `.`, backslashes, encoded separators or NUL")]
    Escapes,
    #[error("the path leads outside the served directory")]
    Outside,
}

/// The path under `root` that `request_path` (the URL path, still percent-encoded) names. Only
/// the syntax is checked here; see [`contained`] for symlinks.
pub fn resolve(root: &Path, request_path: &str) -> Result<PathBuf, PathError> {
    let rest = request_path
        .strip_prefix('/')
        .ok_or(PathError::NotAbsolute)?;
    let mut path = root.to_path_buf();
    for raw in rest.split('/') {
        if raw.is_empty() {
            continue;
        }
        let bytes: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
        let segment = String::from_utf8(bytes).map_err(|_| PathError::BadEncoding)?;
        if segment == "."
            || segment == ".."
            || segment.contains(['/', '\\', '\0'])
            || raw.contains('%') && !well_formed_escapes(raw)
        {
            return Err(PathError::Escapes);
        }
        // A segment like `C:` would be a prefix on Windows; on Unix every segment is Normal.
        if !matches!(
            Path::new(&segment).components().next(),
            Some(Component::Normal(_))
        ) {
            return Err(PathError::Escapes);
        }
        path.push(segment);
    }
    Ok(path)
}

/// `%` followed by two hex digits everywhere (a malformed escape is refused, not passed through).
fn well_formed_escapes(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if i + 2 >= bytes.len() {
                return false;
            }
            if !(bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Checks that `path` (an existing file, or a file to create in an existing folder) lies inside
/// `root` once symlinks are resolved. `root` must be canonical.
pub fn contained(root: &Path, path: &Path) -> Result<(), PathError> {
    let real = match std::fs::canonicalize(path) {
        Ok(real) => real,
        // Not there yet (an upload): its folder must be inside.
        Err(_) => {
            let parent = path.parent().ok_or(PathError::Outside)?;
            std::fs::canonicalize(parent).map_err(|_| PathError::Outside)?
        }
    };
    if real.starts_with(root) {
        Ok(())
    } else {
        Err(PathError::Outside)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_map_under_the_root() {
        let root = Path::new("/srv/files");
        assert_eq!(
            resolve(root, "/a/b%20c.txt"),
            Ok(PathBuf::from("/srv/files/a/b c.txt"))
        );
        assert_eq!(resolve(root, "//a//b"), Ok(PathBuf::from("/srv/files/a/b")));
        assert_eq!(resolve(root, "/"), Ok(PathBuf::from("/srv/files")));
    }

    #[test]
    fn every_way_out_is_refused() {
        let root = Path::new("/srv/files");
        for path in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/a/%2E%2E/%2e%2e/x",
            "/a%2F..%2F..%2Fetc",
            "/a%5C..%5Cx",
            "/a\\..\\x",
            "/a%00b",
            "/./a",
            "/a%2",
            "/a%zz",
        ] {
            assert!(resolve(root, path).is_err(), "{path} was accepted");
        }
        assert_eq!(resolve(root, "etc/passwd"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("root");
        let root = std::fs::canonicalize(&root).expect("canonical");
        std::fs::write(dir.path().join("secret"), b"x").expect("secret");
        std::fs::write(root.join("inside"), b"x").expect("inside");
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).expect("link");
        std::os::unix::fs::symlink(dir.path(), root.join("up")).expect("dir link");
        assert_eq!(contained(&root, &root.join("inside")), Ok(()));
        assert_eq!(contained(&root, &root.join("new-file")), Ok(()));
        assert_eq!(
            contained(&root, &root.join("link")),
            Err(PathError::Outside)
        );
        assert_eq!(
            contained(&root, &root.join("up/new")),
            Err(PathError::Outside)
        );
    }
}
