//! Writing the small files a deployment keeps (keys, certificates, key sets) so that a reader
//! never sees half of one: a new file is created only where none is (`write_new`), and a file
//! is replaced whole by a rename (`replace`). Private files are made readable by their owner
//! only (0600) from the moment they exist, not chmod-ed afterwards.

use std::io::Write;
use std::path::Path;

/// Creates `path` with `contents`; an error of kind `AlreadyExists` if something is there.
pub fn write_new(path: &Path, contents: &[u8], private: bool) -> std::io::Result<()> {
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

/// Writes `path` whole: a new file beside it, renamed over it.
pub fn replace(path: &Path, contents: &[u8], private: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, contents, private)?;
    std::fs::rename(&tmp, path)
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
        assert!(!p.with_extension("tmp").exists());
    }
}
