//! The lock of a data directory: one process at a time may use it. A second
//! process opening the same directory would interleave its writes with the
//! first one's and corrupt both, so it is refused with an error naming the file.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// The name of the lock file inside a locked directory.
pub const LOCK_FILE: &str = "LOCK";

/// Holds the lock of a directory until dropped (or the process ends, even by a
/// crash: the operating system releases it).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` (which must exist) through `dir/LOCK`, or fails at once when
    /// another process holds it.
    pub fn acquire(dir: &Path) -> io::Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "another process uses the data directory {} (it holds {}): \
                     stop it, or give this one another directory",
                    dir.display(),
                    path.display()
                ),
            )),
            Err(TryLockError::Error(err)) => Err(err),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_locked_once_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let held = DirLock::acquire(dir.path()).unwrap();
        assert_eq!(held.path(), dir.path().join(LOCK_FILE));
        let refused = DirLock::acquire(dir.path()).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
        assert!(refused.to_string().contains("another process"), "{refused}");
        drop(held);
        DirLock::acquire(dir.path()).unwrap();
    }
}
