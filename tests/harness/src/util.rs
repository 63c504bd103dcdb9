//! Small shared pieces: random strings, a self-deleting temporary directory, free loopback
//! ports, and a tokio runtime on a background thread that stops when its handle is dropped.

use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::oneshot;

/// `n` bytes from the OS random source.
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the OS random source failed");
    buf
}

/// A URL-safe (base64url, no padding) random string made of `nbytes` random bytes.
pub(crate) fn random_urlsafe(nbytes: usize) -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(nbytes))
}

/// Lower-case hex of `nbytes` random bytes.
pub(crate) fn random_hex(nbytes: usize) -> String {
    random_bytes(nbytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Shortens a secret for Debug output: the first few characters and the length.
pub(crate) fn redact(secret: &str) -> String {
    let head: String = secret.chars().take(6).collect();
    format!("{head}…({} chars)", secret.len())
}

/// A directory under the system temp dir, removed with everything in it on drop.
///
/// Set `MAILOAUTH_HARNESS_KEEP=1` to keep it (for post-mortem debugging); its path is then
/// printed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/<prefix>-<random>`. Keep `prefix` short: Dovecot puts UNIX sockets
    /// under it and socket paths are limited to 107 bytes.
    pub fn new(prefix: &str) -> io::Result<TempDir> {
        let base = std::env::temp_dir();
        for _ in 0..16 {
            let path = base.join(format!("{prefix}-{}", random_hex(5)));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "could not find a free temporary directory name",
        ))
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("MAILOAUTH_HARNESS_KEEP").is_some_and(|v| v == "1") {
            eprintln!("mailoauth-harness: keeping {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

impl std::fmt::Debug for TempDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TempDir").field(&self.path).finish()
    }
}

/// `n` distinct loopback ports that were free a moment ago (all bound at once, then released).
pub(crate) fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// A tokio runtime on its own thread, running one future until it finishes or the handle is
/// dropped. Lets servers work the same from plain `#[test]`s and from `#[tokio::test]`s (the
/// test's own runtime never runs our tasks, so a test that blocks cannot starve them).
pub(crate) struct Background {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Starts a thread named `name` and runs `make(shutdown)` on a fresh current-thread
    /// runtime there. The future should return soon after `shutdown` resolves; tasks it
    /// spawned are dropped with the runtime.
    pub(crate) fn spawn<F, Fut>(name: &str, make: F) -> io::Result<Background>
    where
        F: FnOnce(oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                runtime.block_on(make(rx));
                // Dropping the runtime here (on its own thread) cancels leftover tasks.
                drop(runtime);
            })?;
        Ok(Background {
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Decodes `%XX` escapes and `+` (as a space), as in `application/x-www-form-urlencoded`.
pub(crate) fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Parses `a=b&c=d` (form or query encoding) into ordered pairs.
pub(crate) fn parse_form(s: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decode_handles_escapes_and_plus() {
        assert_eq!(form_decode("a%3Ab+c"), "a:b c");
        assert_eq!(form_decode("x%26y%3Dz"), "x&y=z");
    }

    #[test]
    fn temp_dir_is_removed_on_drop() {
        let dir = TempDir::new("mo-t").unwrap();
        let path = dir.path().to_path_buf();
        std::fs::write(path.join("f"), b"x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(6).unwrap();
        let mut sorted = ports.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 6);
    }
}
