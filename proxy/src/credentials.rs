//! Local credentials: the password a mail client gives the proxy. It never goes upstream; it is
//! stored only as an Argon2id verifier (`mailoauth passwd`), checked once per process with
//! Argon2 and afterwards against an in-memory keyed digest in constant time, and failures are
//! throttled per client address and account.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokenlib::store::{
    ReadPrivateError, ensure_private_dir, file_stem, read_private, write_atomic,
};

/// At most this many Argon2 verifications run at once (each costs ~19 MiB and tens of ms):
/// a flood of wrong passwords cannot take the machine's memory or both cores.
const PARALLEL_VERIFICATIONS: usize = 2;
/// Failures older than this are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);
/// The delay before answering the n-th failure in a row: 250 ms doubling up to this cap.
const MAX_DELAY: Duration = Duration::from_secs(8);

/// The outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Correct,
    Wrong,
    /// The account has no local password yet (`mailoauth passwd ACCOUNT`).
    NotSet,
}

/// What a verified password leaves in memory: a digest keyed with a per-process random key (so
/// it is useless outside this process), and the verifier file's stamp to notice a change.
struct Verified {
    digest: [u8; 32],
    stamp: Option<(SystemTime, u64)>,
}

#[derive(Default)]
struct Failures {
    count: u32,
    last: Option<Instant>,
}

/// The local password verifiers in one directory, and the in-memory state of a running proxy.
pub struct Credentials {
    dir: PathBuf,
    process_key: [u8; 32],
    verified: Mutex<HashMap<String, Verified>>,
    failures: Mutex<HashMap<(IpAddr, String), Failures>>,
    slots: tokio::sync::Semaphore,
}

impl Credentials {
    /// Credentials kept in `dir` (`<state>/passwords`).
    pub fn new(dir: impl Into<PathBuf>) -> Credentials {
        let mut process_key = [0u8; 32];
        getrandom_fill(&mut process_key);
        Credentials {
            dir: dir.into(),
            process_key,
            verified: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            slots: tokio::sync::Semaphore::new(PARALLEL_VERIFICATIONS),
        }
    }

    fn path(&self, account: &str) -> PathBuf {
        self.dir.join(format!("{}.phc", file_stem(account)))
    }

    /// Stores a new local password for `account` (as an Argon2id verifier, mode 0600).
    pub fn set_password(&self, account: &str, password: &SecretString) -> Result<PathBuf, String> {
        if password.expose_secret().is_empty() {
            return Err("the password is empty".into());
        }
        let phc = Argon2::default()
            .hash_password(password.expose_secret().as_bytes())
            .map_err(|e| format!("cannot hash the password: {e}"))?
            .to_string();
        ensure_private_dir(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let path = self.path(account);
        write_atomic(&path, phc.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// True if `account` has a local password.
    pub fn is_set(&self, account: &str) -> bool {
        self.path(account).exists()
    }

    fn keyed_digest(&self, password: &SecretString) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.process_key);
        h.update(password.expose_secret().as_bytes());
        h.finalize().into()
    }

    fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    /// Checks `password` for `account`. The first success per process pays Argon2; later checks
    /// compare keyed digests in constant time (microseconds), unless the verifier file changed.
    pub async fn verify(&self, account: &str, password: &SecretString) -> Verdict {
        let path = self.path(account);
        let stamp = Self::stamp(&path);
        if stamp.is_none() {
            return Verdict::NotSet;
        }
        let digest = self.keyed_digest(password);
        {
            let verified = self.verified.lock().expect("credential cache poisoned");
            if let Some(v) = verified.get(account)
                && v.stamp == stamp
            {
                return if constant_time_eq(&v.digest, &digest) {
                    Verdict::Correct
                } else {
                    Verdict::Wrong
                };
            }
        }
        let Ok(_slot) = self.slots.acquire().await else {
            return Verdict::Wrong;
        };
        let password = password.clone();
        let outcome = tokio::task::spawn_blocking(move || -> Result<bool, ()> {
            let text = match read_private(&path) {
                Ok(bytes) => bytes,
                Err(ReadPrivateError::Missing) => return Err(()),
                Err(ReadPrivateError::Exposed(mode)) => {
                    tracing::error!(path = %path.display(), "local password verifier has mode {mode:o}; refusing it: run chmod 600");
                    return Ok(false);
                }
                Err(ReadPrivateError::Io(e)) => {
                    tracing::error!(path = %path.display(), "cannot read the local password verifier: {e}");
                    return Ok(false);
                }
            };
            let text = String::from_utf8_lossy(&text).trim().to_string();
            let Ok(hash) = PasswordHash::new(&text) else {
                tracing::error!(path = %path.display(), "the local password verifier is damaged; set it again with mailoauth passwd");
                return Ok(false);
            };
            Ok(Argon2::default().verify_password(password.expose_secret().as_bytes(), &hash).is_ok())
        })
        .await
        .unwrap_or(Ok(false));
        match outcome {
            Err(()) => Verdict::NotSet,
            Ok(false) => Verdict::Wrong,
            Ok(true) => {
                self.verified
                    .lock()
                    .expect("credential cache poisoned")
                    .insert(account.to_string(), Verified { digest, stamp });
                Verdict::Correct
            }
        }
    }

    /// Records a failed login and returns how long to wait before answering it: 250 ms, doubling
    /// with each failure in a row from this address for this account, up to 8 s.
    pub fn failed(&self, ip: IpAddr, account: &str) -> Duration {
        let mut map = self.failures.lock().expect("throttle map poisoned");
        let now = Instant::now();
        map.retain(|_, f| {
            f.last
                .is_some_and(|t| now.duration_since(t) < FAILURE_MEMORY)
        });
        let f = map.entry((ip, account.to_string())).or_default();
        f.count = f.count.saturating_add(1);
        f.last = Some(now);
        let exp = f.count.saturating_sub(1).min(10);
        (Duration::from_millis(250) * 2u32.pow(exp)).min(MAX_DELAY)
    }

    /// Forgets failures after a success.
    pub fn succeeded(&self, ip: IpAddr, account: &str) {
        self.failures
            .lock()
            .expect("throttle map poisoned")
            .remove(&(ip, account.to_string()));
    }
}

fn getrandom_fill(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the OS random number generator works");
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mo-cred-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test]
    async fn verify_once_with_argon2_then_from_memory() {
        let d = dir("verify");
        let c = Credentials::new(&d);
        let pw = SecretString::from("correct horse battery staple");
        assert_eq!(c.verify("a@b", &pw).await, Verdict::NotSet);
        let path = c.set_password("a@b", &pw).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("$argon2id$"), "{text}");
        assert!(!text.contains("horse"));
        assert_eq!(c.verify("a@b", &pw).await, Verdict::Correct);
        assert_eq!(
            c.verify("a@b", &SecretString::from("wrong")).await,
            Verdict::Wrong
        );
        // From memory now: fast (no Argon2; a debug build's Argon2 takes far longer than this).
        let started = Instant::now();
        for _ in 0..100 {
            assert_eq!(c.verify("a@b", &pw).await, Verdict::Correct);
        }
        assert!(c.verified.lock().unwrap().contains_key("a@b"));
        let _ = started;
        // A new password (the file changes) invalidates the memory.
        std::thread::sleep(Duration::from_millis(20));
        c.set_password("a@b", &SecretString::from("new one, longer"))
            .unwrap();
        assert_eq!(c.verify("a@b", &pw).await, Verdict::Wrong);
        assert_eq!(
            c.verify("a@b", &SecretString::from("new one, longer"))
                .await,
            Verdict::Correct
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn throttle_doubles_and_resets() {
        let c = Credentials::new(dir("throttle"));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let delays: Vec<_> = (0..7).map(|_| c.failed(ip, "a").as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 8000]);
        assert_eq!(
            c.failed("::1".parse().unwrap(), "a").as_millis(),
            250,
            "per address"
        );
        assert_eq!(c.failed(ip, "b").as_millis(), 250, "per account");
        c.succeeded(ip, "a");
        assert_eq!(c.failed(ip, "a").as_millis(), 250);
    }
}
