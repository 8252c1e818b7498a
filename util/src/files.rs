//! Writing the small files a deployment keeps (keys, certificates, key sets) so that a reader
//! never sees half of one: a new file is created only where none is (`write_new`), and a file
//! is replaced whole by a rename (`replace`). Private files are made readable by their owner
//! only (0600) from the moment they exist, not chmod-ed afterwards; so are the files a process
//! keeps its data in (stores, logs, outboxes: `private`), which hold what shoppers entrust.

use std::io::Write;
use std::path::Path;

/// Creates `path` with `contents`, whole or not at all (written beside it, then linked into
/// place, so a crash never leaves half of a key); an error of kind `AlreadyExists` if something
/// is there.
pub fn write_new(path: &Path, contents: &[u8], private: bool) -> std::io::Result<()> {
    let tmp = write_beside(path, contents, private)?;
    let linked = match std::fs::hard_link(&tmp, path) {
        // A file system without hard links: created in place, which a crash may leave short.
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists && !path.exists() => {
            write_file(path, contents, private)
        }
        other => other,
    };
    let _ = std::fs::remove_file(&tmp);
    linked?;
    sync_dir(path)
}

/// `contents` written to a new file in `path`'s directory, under a name no other writer uses;
/// nothing is left there if that fails.
fn write_beside(
    path: &Path,
    contents: &[u8],
    private: bool,
) -> std::io::Result<std::path::PathBuf> {
    use std::hash::{BuildHasher, Hasher};
    // Random per process and per call, so that a leftover of a crashed writer (which may have
    // had the same process id) is never taken for this one's.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{random:016x}.tmp"));
    let tmp = path.with_file_name(name);
    if let Err(e) = write_file(&tmp, contents, private) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Makes the entry of `path` in its directory durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => std::fs::File::open(".")?.sync_all(),
    }
}

/// Creates `path` (which must not exist) with `contents`, synced.
fn write_file(path: &Path, contents: &[u8], private: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Makes `path` a file only its owner may read and write: created empty with mode 0600 when it
/// is missing (a store then initialises it), its mode narrowed to 0600 when it is there.
pub fn private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let f = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if f.metadata()?.permissions().mode() & 0o077 != 0 {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Opens `path` for appending (a log), created private (0600) when it is missing.
pub fn append_private(path: &Path) -> std::io::Result<std::fs::File> {
    private(path)?;
    std::fs::OpenOptions::new().append(true).open(path)
}

/// Writes `path` whole: a new file beside it, renamed over it.
pub fn replace(path: &Path, contents: &[u8], private: bool) -> std::io::Result<()> {
    let tmp = write_beside(path, contents, private)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_files_are_never_overwritten_and_replacement_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_new(&p, b"one", true).unwrap();
        let again = write_new(&p, b"two", true).unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        replace(&p, b"three", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"three");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Nothing is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn data_files_are_made_private_and_kept_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let new = dir.path().join("store.redb");
        private(&new).unwrap();
        assert_eq!((mode(&new), std::fs::read(&new).unwrap().len()), (0o600, 0));
        // One made before, readable by all: narrowed, its bytes untouched.
        let old = dir.path().join("old.redb");
        std::fs::write(&old, b"data").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        private(&old).unwrap();
        assert_eq!(
            (mode(&old), std::fs::read(&old).unwrap()),
            (0o600, b"data".to_vec())
        );
        let log = dir.path().join("core.log");
        use std::io::Write;
        append_private(&log).unwrap().write_all(b"one\n").unwrap();
        append_private(&log).unwrap().write_all(b"two\n").unwrap();
        assert_eq!(
            (mode(&log), std::fs::read(&log).unwrap()),
            (0o600, b"one\ntwo\n".to_vec())
        );
    }
}
