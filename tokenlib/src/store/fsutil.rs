//! File-system primitives for the token store: private directories, atomic replacement of a
//! file (temp file, fsync, rename, fsync of the directory), reading only private files, and an
//! advisory lock across processes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Test hook: when set, atomic writes dribble their bytes out this many milliseconds apart, so a
/// test can kill the process in the middle of a write. It never changes what is written.
const SLOW_WRITE_ENV: &str = "MAILOAUTH_TEST_SLOW_WRITE_MS";

/// Creates `dir` (and parents) with mode 0700 if missing.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Replaces `path` with `bytes` so that a crash at any moment leaves either the old or the new
/// content, never a mix: write a temp file in the same directory (mode 0600 from creation), fsync
/// it, rename it over `path`, fsync the directory so the rename itself is durable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        match slow_write_delay() {
            Some(delay) => {
                for chunk in bytes.chunks(16) {
                    file.write_all(chunk)?;
                    file.flush()?;
                    std::thread::sleep(delay);
                }
            }
            None => file.write_all(bytes)?,
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn slow_write_delay() -> Option<std::time::Duration> {
    let ms: u64 = std::env::var(SLOW_WRITE_ENV).ok()?.parse().ok()?;
    Some(std::time::Duration::from_millis(ms))
}

/// The temp file name for `path`: hidden, in the same directory, unique per process and call.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("record");
    let mut nonce = [0u8; 6];
    let _ = getrandom::fill(&mut nonce);
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    path.with_file_name(format!(".{name}.tmp-{}-{nonce}", std::process::id()))
}

/// Removes temp files a killed writer left behind for `path`. Call only while holding the lock
/// that serializes writers of `path`, so that no live writer's temp file is touched.
pub fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let prefix = format!(".{name}.tmp-");
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Why a private file could not be read.
#[derive(Debug)]
pub enum ReadPrivateError {
    Missing,
    /// Group or others may read it; the mode is given.
    Exposed(u32),
    Io(io::Error),
}

/// Reads a file that must be private to its owner (no group or other permission bits).
pub fn read_private(path: &Path) -> Result<Zeroizing<Vec<u8>>, ReadPrivateError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadPrivateError::Missing),
        Err(e) => return Err(ReadPrivateError::Io(e)),
    };
    // Check the file we opened, not the path (no race with a swap in between).
    let meta = file.metadata().map_err(ReadPrivateError::Io)?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ReadPrivateError::Exposed(mode));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.read_to_end(&mut buf).map_err(ReadPrivateError::Io)?;
    Ok(buf)
}

/// Sets mode 0600 on an existing file (used by `import` on files it creates).
pub fn make_private(path: &Path) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

/// An exclusive advisory lock (flock) on a lock file, held until dropped.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Blocks until the lock on `path` is ours.
    pub fn acquire(path: &Path) -> io::Result<FileLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        file.lock()?;
        Ok(FileLock { file })
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("mailoauth-fsutil-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        ensure_private_dir(&dir).unwrap();
        dir
    }

    #[test]
    fn atomic_write_replaces_and_is_private() {
        let dir = scratch("atomic");
        let p = dir.join("rec");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(&*read_private(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        // No temp files are left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exposed_files_are_refused() {
        let dir = scratch("exposed");
        let p = dir.join("rec");
        write_atomic(&p, b"x").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            read_private(&p),
            Err(ReadPrivateError::Exposed(0o640))
        ));
        assert!(matches!(
            read_private(&dir.join("none")),
            Err(ReadPrivateError::Missing)
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_temps_are_removed() {
        let dir = scratch("stale");
        let p = dir.join("rec");
        fs::write(dir.join(".rec.tmp-1-abc"), b"partial").unwrap();
        fs::write(dir.join(".other.tmp-1-abc"), b"keep").unwrap();
        remove_stale_temps(&p);
        assert!(!dir.join(".rec.tmp-1-abc").exists());
        assert!(dir.join(".other.tmp-1-abc").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lock_is_exclusive_across_handles() {
        let dir = scratch("lock");
        let p = dir.join("a.lock");
        let held = FileLock::acquire(&p).unwrap();
        let other = OpenOptions::new().write(true).open(&p).unwrap();
        assert!(
            other.try_lock().is_err(),
            "a second open file description must not get the lock"
        );
        drop(held);
        assert!(other.try_lock().is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
