//! The `keyring` sealer: records are age-encrypted (X25519) files whose key lives in the OS
//! keyring (Secret Service on Linux/BSD, Keychain on macOS).
//!
//! Why not put the whole record in the keyring: the record is rewritten on every refresh and
//! must be replaced atomically together with its lock discipline, which files give us; the
//! keyring only has to hold one small, rarely written key. The key is a standard age identity,
//! so a user can always recover a record by hand (`secret-tool lookup service mailoauth username
//! token-store-key > id; age -d -i id RECORD`).

use std::sync::{Arc, Mutex};

use age::secrecy::ExposeSecret as _;
use keyring_core::{CredentialStore, Entry};
use zeroize::Zeroizing;

use super::StoreError;
use super::sealer::Sealer;

const SERVICE: &str = "mailoauth";
const KEY_USER: &str = "token-store-key";

/// Seals records with an age identity kept in the OS keyring.
pub struct KeyringSealer {
    /// The identity once fetched (or created), so a process talks to the keyring once.
    identity: Mutex<Option<Arc<age::x25519::Identity>>>,
    service: String,
}

impl Default for KeyringSealer {
    fn default() -> Self {
        Self::new(SERVICE)
    }
}

impl KeyringSealer {
    /// A sealer whose key is stored under `service` (the default is `mailoauth`).
    pub fn new(service: &str) -> Self {
        KeyringSealer {
            identity: Mutex::new(None),
            service: service.to_string(),
        }
    }

    fn entry(&self) -> Result<Entry, StoreError> {
        let store = os_store()?;
        Entry::new_in_store(&store, &self.service, KEY_USER).map_err(|e| unavailable(&e))
    }

    /// The identity, from memory, from the keyring, or (when `create`) newly made and stored.
    fn identity(&self, create: bool) -> Result<Arc<age::x25519::Identity>, StoreError> {
        let mut cached = self
            .identity
            .lock()
            .expect("keyring identity lock poisoned");
        if let Some(id) = cached.as_ref() {
            return Ok(id.clone());
        }
        let entry = self.entry()?;
        let identity = match entry.get_password() {
            Ok(text) => {
                let text = Zeroizing::new(text);
                text.trim()
                    .parse::<age::x25519::Identity>()
                    .map_err(|e| StoreError::Seal {
                        kind: "keyring",
                        detail: format!(
                            "the keyring item {}/{KEY_USER} is not an age identity ({e})",
                            self.service
                        ),
                    })?
            }
            Err(keyring_core::Error::NoEntry) if create => {
                let fresh = age::x25519::Identity::generate();
                entry
                    .set_password(fresh.to_string().expose_secret())
                    .map_err(|e| unavailable(&e))?;
                fresh
            }
            Err(keyring_core::Error::NoEntry) => {
                return Err(StoreError::Seal {
                    kind: "keyring",
                    detail: format!(
                        "the keyring has no mailoauth key (item {}/{KEY_USER}), so the record cannot be decrypted; was the keyring reset?",
                        self.service
                    ),
                });
            }
            Err(e) => return Err(unavailable(&e)),
        };
        let identity = Arc::new(identity);
        *cached = Some(identity.clone());
        Ok(identity)
    }
}

impl KeyringSealer {
    /// True when the OS keyring answers (whether or not it holds mailoauth's key yet); creates
    /// nothing. `setup` asks this to recommend a store.
    pub fn reachable(&self) -> bool {
        match self.entry().map(|e| e.get_password()) {
            Ok(Ok(key)) => {
                drop(Zeroizing::new(key));
                true
            }
            Ok(Err(keyring_core::Error::NoEntry)) => true,
            Ok(Err(_)) | Err(_) => false,
        }
    }
}

impl Sealer for KeyringSealer {
    fn kind(&self) -> &'static str {
        "keyring"
    }
    fn extension(&self) -> &'static str {
        "age"
    }
    fn seal(&self, _account: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let identity = self.identity(true)?;
        age::encrypt(&identity.to_public(), plaintext).map_err(|e| StoreError::Seal {
            kind: "keyring",
            detail: format!("age encryption failed: {e}"),
        })
    }
    fn ready(&self) -> Result<(), StoreError> {
        self.identity(true).map(|_| ())
    }
    fn open(&self, _account: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let identity = self.identity(false)?;
        age::decrypt(identity.as_ref(), sealed)
            .map(Zeroizing::new)
            .map_err(|e| StoreError::Seal {
                kind: "keyring",
                detail: format!("the record does not decrypt with the keyring's key ({e})"),
            })
    }
}

#[cfg(target_os = "linux")]
fn os_store() -> Result<Arc<CredentialStore>, StoreError> {
    let store = zbus_secret_service_keyring_store::Store::new().map_err(|e| unavailable(&e))?;
    Ok(store)
}

#[cfg(target_os = "macos")]
fn os_store() -> Result<Arc<CredentialStore>, StoreError> {
    let store = apple_native_keyring_store::keychain::Store::new().map_err(|e| unavailable(&e))?;
    Ok(store)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn os_store() -> Result<Arc<CredentialStore>, StoreError> {
    Err(StoreError::Seal {
        kind: "keyring",
        detail: "no OS keyring is supported on this platform".into(),
    })
}

fn unavailable(e: &keyring_core::Error) -> StoreError {
    StoreError::Seal {
        kind: "keyring",
        detail: format!(
            "the OS keyring is not available ({e}). On Linux a Secret Service (gnome-keyring, KeePassXC) must run in your session and be unlocked; on a headless machine choose [store] kind = \"command\" (gpg or age) instead"
        ),
    }
}
