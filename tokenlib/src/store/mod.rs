//! The token store: one sealed record per account, replaced atomically, readable only by its
//! owner, plus a small non-secret state file per account (needs re-authorization, last refresh,
//! last error) that status displays can read without unsealing anything.
//!
//! Layout under the store directory (mode 0700):
//! `<account>.<ext>` the sealed record (0600), `<account>.lock` the writers' lock,
//! `<account>.state.json` the non-secret state. Account names are percent-encoded into file names.

mod fsutil;
pub mod keyring;
pub mod mutt;
pub mod password;
pub mod sealer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use fsutil::{
    FileLock, ReadPrivateError, ensure_private_dir, make_private, read_private, write_atomic,
};
pub use sealer::{CommandPipe, Plaintext, Sealer};

use crate::token::{Grant, TokenSet};

/// Every sealer's record extension, to find records a different sealer wrote.
const ALL_EXTENSIONS: [(&str, &str); 3] = [
    ("json", "plaintext"),
    ("sealed", "command"),
    ("age", "keyring"),
];

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to read {}: its mode {mode:o} lets other users read it. Run `chmod 600 {}` if you trust its content, or delete it and authorize again", path.display(), path.display())]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the {kind} sealer failed: {detail}")]
    Seal { kind: &'static str, detail: String },
    #[error(
        "the tokens of {account} are sealed with its local password and are locked in this process: log in through the proxy once (or give the password) to unlock them"
    )]
    Locked { account: String },
    #[error("{} is damaged ({detail}); delete it and authorize the account again", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("{} was written by the {found} sealer but [store] kind is {configured}; set kind back to {found:?}, or authorize the account again", path.display())]
    OtherSealer {
        path: PathBuf,
        found: &'static str,
        configured: &'static str,
    },
}

/// The serialized form of a record. Only this module sees token values as plain strings.
#[derive(Serialize, Deserialize)]
struct RecordFile {
    version: u32,
    account: String,
    grant: Grant,
    access_token: String,
    expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_issued_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

impl Drop for RecordFile {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.access_token.zeroize();
        if let Some(r) = self.refresh_token.as_mut() {
            r.zeroize();
        }
    }
}

/// Non-secret facts about an account, kept beside its record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountState {
    /// Set when the provider refused the grant (`invalid_grant` class): the plain-language reason.
    /// Cleared by a successful authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_reauthorization: Option<String>,
    /// When the last successful refresh happened (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh: Option<i64>,
    /// When the account was last authorized (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized_at: Option<i64>,
    /// The last error, in plain language, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<i64>,
    /// When the stored access token expires (Unix seconds): `status` reads it here, so it never
    /// has to unseal a record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<i64>,
    /// When the stored refresh token was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_issued_at: Option<i64>,
    /// When the provider said the stored refresh token stops working, if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<i64>,
}

impl AccountState {
    /// Copies the non-secret facts of freshly saved tokens.
    pub fn note_tokens(&mut self, tokens: &crate::token::TokenSet) {
        self.access_expires_at = Some(tokens.expires_at);
        self.refresh_issued_at = tokens.refresh_issued_at;
        self.refresh_expires_at = tokens.refresh_expires_at;
    }
}

/// Proof that the caller holds an account's writer lock; required to save.
#[derive(Debug)]
pub struct AccountLock {
    _lock: FileLock,
    account: String,
}

/// How records are encoded inside their seal.
#[derive(Clone, Debug)]
pub enum RecordFormat {
    /// mailoauth's own record.
    Native,
    /// mutt_oauth2.py's token file (`access_token`, `access_token_expiration` as local ISO time,
    /// `refresh_token`, plus `registration`, `authflow`, `email`, which are kept as they are).
    /// `defaults` supplies those extra fields when a new file is written.
    MuttOauth2 {
        defaults: serde_json::Map<String, serde_json::Value>,
    },
}

/// Where records live.
#[derive(Clone, Debug)]
enum Layout {
    /// One record per account in a directory.
    Dir,
    /// A single record at a fixed path (a mutt_oauth2.py token file), whatever the account name.
    File(PathBuf),
}

/// Sealed per-account token records.
#[derive(Clone)]
pub struct Store {
    /// The records' directory, or for a single file the directory of its lock and state files.
    dir: PathBuf,
    layout: Layout,
    format: RecordFormat,
    sealer: Arc<dyn Sealer>,
}

impl Store {
    /// A store of mailoauth records in `dir`.
    pub fn new(dir: impl Into<PathBuf>, sealer: Arc<dyn Sealer>) -> Store {
        Store {
            dir: dir.into(),
            layout: Layout::Dir,
            format: RecordFormat::Native,
            sealer,
        }
    }

    /// A store holding one record at `path` in `format`; its lock and state files go to `aux_dir`
    /// (so nothing new appears beside the user's file).
    pub fn single_file(
        path: PathBuf,
        aux_dir: PathBuf,
        format: RecordFormat,
        sealer: Arc<dyn Sealer>,
    ) -> Store {
        Store {
            dir: aux_dir,
            layout: Layout::File(path),
            format,
            sealer,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn sealer_kind(&self) -> &'static str {
        self.sealer.kind()
    }

    /// True when the store's records open only after [`Store::unlock`].
    pub fn needs_password(&self) -> bool {
        self.sealer.needs_password()
    }

    /// Unlocks `account` with its verified local password (password sealer; a no-op otherwise).
    pub fn unlock(
        &self,
        account: &str,
        password: &secrecy::SecretString,
    ) -> Result<(), StoreError> {
        if !self.sealer.needs_password() {
            return Ok(());
        }
        let path = self.record_path(account);
        let existing = match fsutil::read_private(&path) {
            Ok(bytes) => Some(bytes),
            Err(fsutil::ReadPrivateError::Missing) => None,
            Err(fsutil::ReadPrivateError::Exposed(mode)) => {
                return Err(StoreError::Exposed { path, mode });
            }
            Err(fsutil::ReadPrivateError::Io(e)) => return Err(Self::io("read", &path)(e)),
        };
        self.sealer
            .unlock(account, password, existing.as_deref().map(|v| v.as_slice()))
    }

    /// Unlocks `account` for a record that will be written anew (authorization, password change),
    /// whatever its current record was sealed with.
    pub fn unlock_for_new_record(
        &self,
        account: &str,
        password: &secrecy::SecretString,
    ) -> Result<(), StoreError> {
        self.sealer.unlock(account, password, None)
    }

    /// Checks the sealer can work (see [`Sealer::ready`]) and the directory can be created.
    pub fn check_ready(&self) -> Result<(), StoreError> {
        ensure_private_dir(&self.dir).map_err(Self::io("create", &self.dir))?;
        self.sealer.ready()
    }

    /// The path of an account's record.
    pub fn record_path(&self, account: &str) -> PathBuf {
        match &self.layout {
            Layout::Dir => self.path_with(account, self.sealer.extension()),
            Layout::File(path) => path.clone(),
        }
    }

    /// Lock and state files: per account in a directory store; per file (named after a hash of
    /// its absolute path) for a single-file store.
    fn path_with(&self, account: &str, ext: &str) -> PathBuf {
        match &self.layout {
            Layout::Dir => self.dir.join(format!("{}.{ext}", file_stem(account))),
            Layout::File(path) => {
                use sha2::{Digest, Sha256};
                let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                let digest = Sha256::digest(absolute.as_os_str().as_encoded_bytes());
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                self.dir.join(format!("file-{hex}.{ext}"))
            }
        }
    }

    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
        move |source| StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Takes the account's writer lock, waiting for other processes that hold it. Every refresh
    /// and every save happens under it, so that two processes never spend the same refresh token.
    pub fn lock(&self, account: &str) -> Result<AccountLock, StoreError> {
        ensure_private_dir(&self.dir).map_err(Self::io("create", &self.dir))?;
        let path = self.path_with(account, "lock");
        let lock = FileLock::acquire(&path).map_err(Self::io("lock", &path))?;
        Ok(AccountLock {
            _lock: lock,
            account: account.to_string(),
        })
    }

    /// Loads and unseals an account's tokens; `None` if it was never authorized.
    pub fn load(&self, account: &str) -> Result<Option<TokenSet>, StoreError> {
        let path = self.record_path(account);
        let sealed = match fsutil::read_private(&path) {
            Ok(bytes) => bytes,
            Err(fsutil::ReadPrivateError::Missing) => return self.missing(account),
            Err(fsutil::ReadPrivateError::Exposed(mode)) => {
                return Err(StoreError::Exposed { path, mode });
            }
            Err(fsutil::ReadPrivateError::Io(e)) => return Err(Self::io("read", &path)(e)),
        };
        let plain = self.sealer.open(account, &sealed)?;
        if let RecordFormat::MuttOauth2 { .. } = &self.format {
            return mutt::decode(&plain).map_err(|detail| StoreError::Corrupt { path, detail });
        }
        let file: RecordFile = serde_json::from_slice(&plain).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            detail: format!(
                "not a mailoauth record: line {} column {}",
                e.line(),
                e.column()
            ),
        })?;
        if file.version != 1 {
            return Err(StoreError::Corrupt {
                path,
                detail: format!("unknown record version {}", file.version),
            });
        }
        Ok(Some(TokenSet {
            access_token: SecretString::from(file.access_token.clone()),
            expires_at: file.expires_at,
            refresh_token: file.refresh_token.clone().map(SecretString::from),
            refresh_issued_at: file.refresh_issued_at,
            refresh_expires_at: file.refresh_expires_at,
            scope: file.scope.clone(),
            grant: file.grant,
        }))
    }

    /// No record under the configured sealer: say so plainly if another sealer's record exists.
    fn missing(&self, account: &str) -> Result<Option<TokenSet>, StoreError> {
        if let Layout::File(_) = self.layout {
            return Ok(None);
        }
        for (ext, kind) in ALL_EXTENSIONS {
            let other = self.path_with(account, ext);
            if ext != self.sealer.extension() && other.exists() {
                return Err(StoreError::OtherSealer {
                    path: other,
                    found: kind,
                    configured: self.sealer.kind(),
                });
            }
        }
        Ok(None)
    }

    /// Seals and atomically replaces an account's record. Holding the lock is required.
    pub fn save(&self, lock: &AccountLock, tokens: &TokenSet) -> Result<(), StoreError> {
        let account = lock.account.as_str();
        let path = self.record_path(account);
        let plain = match &self.format {
            RecordFormat::Native => self.encode_native(account, tokens),
            RecordFormat::MuttOauth2 { defaults } => {
                // Keep the file's other fields: read what is there (under the lock) and update it.
                let existing = match fsutil::read_private(&path) {
                    Ok(sealed) => Some(self.sealer.open(account, &sealed)?),
                    Err(fsutil::ReadPrivateError::Missing) => None,
                    Err(fsutil::ReadPrivateError::Exposed(mode)) => {
                        return Err(StoreError::Exposed { path, mode });
                    }
                    Err(fsutil::ReadPrivateError::Io(e)) => return Err(Self::io("read", &path)(e)),
                };
                mutt::encode(existing.as_ref().map(|b| b.as_slice()), defaults, tokens).map_err(
                    |detail| StoreError::Corrupt {
                        path: path.clone(),
                        detail,
                    },
                )?
            }
        };
        let sealed = self.sealer.seal(account, &plain)?;
        fsutil::remove_stale_temps(&path);
        fsutil::write_atomic(&path, &sealed).map_err(Self::io("write", &path))
    }

    fn encode_native(&self, account: &str, tokens: &TokenSet) -> Zeroizing<Vec<u8>> {
        let file = RecordFile {
            version: 1,
            account: account.to_string(),
            grant: tokens.grant,
            access_token: tokens.access_token.expose_secret().to_string(),
            expires_at: tokens.expires_at,
            refresh_token: tokens
                .refresh_token
                .as_ref()
                .map(|t| t.expose_secret().to_string()),
            refresh_issued_at: tokens.refresh_issued_at,
            refresh_expires_at: tokens.refresh_expires_at,
            scope: tokens.scope.clone(),
        };
        Zeroizing::new(serde_json::to_vec(&file).expect("record serializes"))
    }

    /// Reads an account's non-secret state (defaults if none or unreadable: it is advisory).
    pub fn state(&self, account: &str) -> AccountState {
        std::fs::read(self.path_with(account, "state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Updates an account's state under its lock.
    pub fn update_state(
        &self,
        lock: &AccountLock,
        change: impl FnOnce(&mut AccountState),
    ) -> Result<AccountState, StoreError> {
        let mut state = self.state(&lock.account);
        change(&mut state);
        let path = self.path_with(&lock.account, "state.json");
        let bytes = serde_json::to_vec_pretty(&state).expect("state serializes");
        fsutil::write_atomic(&path, &bytes).map_err(Self::io("write", &path))?;
        Ok(state)
    }
}

/// Maps an account name to a file-name stem: letters, digits and `@._+-` stay, everything else
/// (including `/` and a leading `.`) is percent-encoded, so names are safe and reversible.
pub fn file_stem(account: &str) -> String {
    let mut out = String::with_capacity(account.len());
    for (i, b) in account.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b"@_+-".contains(&b) || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("mailoauth-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn tokens(access: &str, refresh: Option<&str>) -> TokenSet {
        TokenSet {
            access_token: SecretString::from(access.to_string()),
            expires_at: 1_000,
            refresh_token: refresh.map(|r| SecretString::from(r.to_string())),
            refresh_issued_at: Some(5),
            refresh_expires_at: None,
            scope: Some("mail".into()),
            grant: Grant::User,
        }
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("me@example.com"), "me@example.com");
        assert_eq!(file_stem("../etc/passwd"), "%2E.%2Fetc%2Fpasswd");
        assert_eq!(file_stem("a b"), "a%20b");
    }

    #[test]
    fn round_trip_through_a_real_command_sealer() {
        let dir = scratch("rt");
        let sealer = CommandPipe {
            encrypt: vec!["rev".into()],
            decrypt: vec!["rev".into()],
        };
        let store = Store::new(&dir, Arc::new(sealer));
        assert!(store.load("a@x").unwrap().is_none());
        let lock = store.lock("a@x").unwrap();
        store.save(&lock, &tokens("AT-1", Some("RT-1"))).unwrap();
        let raw = std::fs::read_to_string(store.record_path("a@x")).unwrap();
        assert!(!raw.contains("AT-1"), "the record on disk must be sealed");
        let back = store.load("a@x").unwrap().unwrap();
        assert_eq!(back.access_token.expose_secret(), "AT-1");
        assert_eq!(back.refresh_token.unwrap().expose_secret(), "RT-1");
        assert_eq!(back.expires_at, 1_000);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exposed_and_other_sealer_records_are_refused() {
        let dir = scratch("refuse");
        let store = Store::new(&dir, Arc::new(Plaintext));
        let lock = store.lock("a").unwrap();
        store.save(&lock, &tokens("AT", None)).unwrap();
        std::fs::set_permissions(
            store.record_path("a"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = store.load("a").unwrap_err();
        assert!(
            matches!(err, StoreError::Exposed { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
        let other = Store::new(
            &dir,
            Arc::new(CommandPipe {
                encrypt: vec!["cat".into()],
                decrypt: vec!["cat".into()],
            }),
        );
        let err = other.load("a").unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::OtherSealer {
                    found: "plaintext",
                    ..
                }
            ),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_records_say_so_without_content() {
        let dir = scratch("corrupt");
        let store = Store::new(&dir, Arc::new(Plaintext));
        std::fs::create_dir_all(&dir).unwrap();
        let p = store.record_path("a");
        std::fs::write(&p, b"{\"access_token\":\"SECRET\"").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = store.load("a").unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn state_round_trip() {
        let dir = scratch("state");
        let store = Store::new(&dir, Arc::new(Plaintext));
        assert_eq!(store.state("a"), AccountState::default());
        let lock = store.lock("a").unwrap();
        store
            .update_state(&lock, |s| s.needs_reauthorization = Some("revoked".into()))
            .unwrap();
        assert_eq!(
            store.state("a").needs_reauthorization.as_deref(),
            Some("revoked")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
