//! Small files kept whole and durably: [`replace`] writes a file so that a
//! crash leaves the old content or the new, never a mix (write a temp file,
//! fsync it, rename it over, fsync the directory); [`load_or_make`] reads a
//! one-line value (a token, an id) or makes and saves it the first time.
//! The registry's state file, its token and a node's instance id use them.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Where [`replace`] writes before it renames: `PATH.tmp`.
pub fn temp_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces `path` with `bytes`, durably and atomically; a new file gets
/// permissions `mode` (e.g. `0o600` for a secret).
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let temp = temp_of(path);
    match std::fs::remove_file(&temp) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// The longest value [`load_or_make`] reads.
const MAX_VALUE: u64 = 256;

/// The value kept in `path` (one line, `what` names it in errors): read
/// when the file is there (it must pass `valid`), else `make`d and saved
/// with permissions `mode` (the directory is created if need be). A file
/// that does not hold a valid value is an error naming it, never replaced.
pub fn load_or_make(
    path: &Path,
    what: &str,
    mode: u32,
    valid: impl Fn(&str) -> bool,
    make: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    match File::open(path) {
        Ok(file) => {
            let loose = file.metadata().map(|m| m.permissions().mode() & 0o077 & !mode != 0).unwrap_or(false);
            if loose {
                tracing::warn!(path = %path.display(), "{what} is readable by other users (chmod {mode:o} it)");
            }
            let mut text = String::new();
            file.take(MAX_VALUE + 1)
                .read_to_string(&mut text)
                .with_context(|| format!("reading {}", path.display()))?;
            let value = text.trim();
            if text.len() as u64 > MAX_VALUE || !valid(value) {
                anyhow::bail!(
                    "{} does not hold a valid {what}: fix it, or remove it to make a new one",
                    path.display()
                );
            }
            Ok(value.to_string())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let value = make()?;
            replace(path, format!("{value}\n").as_bytes(), mode)
                .with_context(|| format!("saving the {what} in {}", path.display()))?;
            Ok(value)
        }
        Err(e) => Err(e).with_context(|| format!("opening {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(v: &str) -> bool {
        !v.is_empty() && v.bytes().all(|b| b.is_ascii_hexdigit())
    }

    #[test]
    fn a_value_is_made_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("id");
        let made = load_or_make(&path, "id", 0o600, hex, || Ok("abc123".into())).unwrap();
        assert_eq!(made, "abc123");
        let again = load_or_make(&path, "id", 0o600, hex, || panic!("not made twice")).unwrap();
        assert_eq!(again, "abc123");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!temp_of(&path).exists());
    }

    #[test]
    fn a_file_without_a_valid_value_is_an_error_naming_it_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        for bad in ["", "not hex!", &"a".repeat(300)] {
            std::fs::write(&path, bad).unwrap();
            let err = load_or_make(&path, "id", 0o600, hex, || Ok("new".into())).unwrap_err();
            assert!(format!("{err:#}").contains(&path.display().to_string()), "{err:#}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), bad);
        }
    }
}
