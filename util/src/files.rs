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
    let tmp = beside(path);
    write_file(&tmp, contents, private)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked
}

/// A name in `path`'s directory that no other writer uses.
fn beside(path: &Path) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{n}.tmp", std::process::id()));
    path.with_file_name(name)
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
    let tmp = beside(path);
    write_file(&tmp, contents, private)?;
    let renamed = std::fs::rename(&tmp, path);
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
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
