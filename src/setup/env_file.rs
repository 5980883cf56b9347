//! The credentials file `ozbridge setup` writes: one `NAME=value` line per setting, as
//! Docker's `--env-file`, `fly secrets import` and systemd's `EnvironmentFile` read it,
//! readable by its owner only.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the credentials file cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    /// The file is there already and `--force` was not given.
    #[error("{} exists already; move it away or pass --force to replace it", .0.display())]
    Exists(PathBuf),
    /// The file system refused.
    #[error("cannot write {}: {reason}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        reason: String,
    },
}

/// Fails early when `path` would not be written (it exists and `force` is off), so a
/// setup does not start what it cannot finish.
pub fn check_free(path: &Path, force: bool) -> Result<(), EnvFileError> {
    if !force && path.exists() {
        return Err(EnvFileError::Exists(path.to_owned()));
    }
    Ok(())
}

/// Writes `entries` under a `# comment` header, all at once (a reader never sees half a
/// file), with mode 0600; replaces an existing file only when `force`. A value's line
/// breaks are written as `\n` (ozbridge reads a PEM key written so).
pub fn write(
    path: &Path,
    force: bool,
    comment: &str,
    entries: &[(&str, &str)],
) -> Result<(), EnvFileError> {
    let io = |e: std::io::Error| EnvFileError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    check_free(path, force)?;
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // A temporary file in the same folder is created readable by its owner only, and
    // renamed into place.
    let mut file = tempfile::NamedTempFile::new_in(folder).map_err(io)?;
    let mut text = String::new();
    for line in comment.lines() {
        text.push_str(&format!("# {line}\n"));
    }
    for (name, value) in entries {
        let value = value.trim_end_matches('\n').replace('\n', "\\n");
        text.push_str(&format!("{name}={value}\n"));
    }
    file.write_all(text.as_bytes()).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    if force {
        file.persist(path).map_err(|e| io(e.error))?;
    } else {
        file.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                EnvFileError::Exists(path.to_owned())
            } else {
                io(e.error)
            }
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_once_owner_only_and_replaced_only_when_forced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ozbridge.env");
        write(
            &path,
            false,
            "first",
            &[("A", "1"), ("KEY", "line one\nline two\n")],
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "# first\nA=1\nKEY=line one\\nline two\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            check_free(&path, false),
            Err(EnvFileError::Exists(_))
        ));
        assert!(matches!(
            write(&path, false, "second", &[("A", "2")]),
            Err(EnvFileError::Exists(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "untouched");
        write(&path, true, "second", &[("A", "2")]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# second\nA=2\n");
    }
}
