//! The `password` sealer: each account's record is encrypted with a key derived from that
//! account's local password (the one its mail client gives the proxy). email-oauth2-proxy's
//! model, done right: the caller verifies the password against its Argon2 verifier *before*
//! unlocking, a wrong password never touches a record (and would fail authentication anyway),
//! and the expensive derivation runs once per process and account, not per login.
//!
//! Record format: `MAILOAUTH-PW1\n`, a 16-byte salt, a 24-byte nonce, then XChaCha20-Poly1305
//! ciphertext of the record. The key is Argon2id(password, salt) with the crate's default cost.
//! A record is rewritten with the same salt, so the derived key stays valid while the process
//! runs; a password change re-seals under a new salt.

use std::collections::HashMap;
use std::sync::Mutex;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use zeroize::{Zeroize, Zeroizing};

use super::StoreError;
use super::sealer::Sealer;

const MAGIC: &[u8] = b"MAILOAUTH-PW1\n";
const SALT: usize = 16;
const NONCE: usize = 24;

/// A derived key and the salt it belongs to.
struct Unlocked {
    salt: [u8; SALT],
    key: Zeroizing<[u8; 32]>,
}

/// Seals records with keys derived from the accounts' local passwords.
#[derive(Default)]
pub struct PasswordSealer {
    keys: Mutex<HashMap<String, Unlocked>>,
}

impl PasswordSealer {
    pub fn new() -> PasswordSealer {
        PasswordSealer::default()
    }

    /// Derives `account`'s key from `password` for the salt of its existing record (`existing`),
    /// or a new salt when there is none. Costs one Argon2id run; a second call with the same salt
    /// and password is free.
    pub fn unlock(
        &self,
        account: &str,
        password: &SecretString,
        existing: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let salt = match existing {
            Some(record) => parse(record)?.0,
            None => {
                let mut salt = [0u8; SALT];
                getrandom::fill(&mut salt).expect("the OS random number generator works");
                salt
            }
        };
        if self
            .keys
            .lock()
            .expect("key map poisoned")
            .get(account)
            .is_some_and(|u| u.salt == salt)
            && existing.is_some()
        {
            return Ok(());
        }
        let mut key = Zeroizing::new([0u8; 32]);
        argon2::Argon2::default()
            .hash_password_into(password.expose_secret().as_bytes(), &salt, key.as_mut())
            .map_err(|e| seal_error(format!("key derivation failed: {e}")))?;
        if let Some(record) = existing {
            // The record must open with it: a wrong password never replaces a working key.
            open_with(&key, record)?;
        }
        self.keys
            .lock()
            .expect("key map poisoned")
            .insert(account.to_string(), Unlocked { salt, key });
        Ok(())
    }

    /// True once `account` was unlocked in this process.
    pub fn is_unlocked(&self, account: &str) -> bool {
        self.keys
            .lock()
            .expect("key map poisoned")
            .contains_key(account)
    }

    /// Forgets `account`'s key (after a password change, before unlocking with the new one).
    pub fn forget(&self, account: &str) {
        self.keys.lock().expect("key map poisoned").remove(account);
    }
}

fn seal_error(detail: String) -> StoreError {
    StoreError::Seal {
        kind: "password",
        detail,
    }
}

fn locked(account: &str) -> StoreError {
    StoreError::Locked {
        account: account.to_string(),
    }
}

/// A sealed record's parts: salt, nonce, ciphertext.
type Parts<'a> = ([u8; SALT], &'a [u8], &'a [u8]);

/// Splits a record into salt, nonce and ciphertext.
fn parse(record: &[u8]) -> Result<Parts<'_>, StoreError> {
    let body = record
        .strip_prefix(MAGIC)
        .filter(|b| b.len() > SALT + NONCE)
        .ok_or_else(|| seal_error("the record is not a password-sealed record".into()))?;
    let mut salt = [0u8; SALT];
    salt.copy_from_slice(&body[..SALT]);
    Ok((salt, &body[SALT..SALT + NONCE], &body[SALT + NONCE..]))
}

fn open_with(key: &[u8; 32], record: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let (_, nonce, ciphertext) = parse(record)?;
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), ciphertext)
        .map(Zeroizing::new)
        .map_err(|_| seal_error("the record does not decrypt with this local password".into()))
}

impl Sealer for PasswordSealer {
    fn kind(&self) -> &'static str {
        "password"
    }
    fn unlock(
        &self,
        account: &str,
        password: &SecretString,
        existing: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        PasswordSealer::unlock(self, account, password, existing)
    }
    fn extension(&self) -> &'static str {
        "pwsealed"
    }
    fn needs_password(&self) -> bool {
        true
    }
    fn seal(&self, account: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let keys = self.keys.lock().expect("key map poisoned");
        let unlocked = keys.get(account).ok_or_else(|| locked(account))?;
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).expect("the OS random number generator works");
        let key: &[u8; 32] = &unlocked.key;
        let ciphertext = XChaCha20Poly1305::new(key.into())
            .encrypt(XNonce::from_slice(&nonce), plaintext)
            .map_err(|_| seal_error("encryption failed".into()))?;
        let mut out = Vec::with_capacity(MAGIC.len() + SALT + NONCE + ciphertext.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&unlocked.salt);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        nonce.zeroize();
        Ok(out)
    }
    fn open(&self, account: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let keys = self.keys.lock().expect("key map poisoned");
        let unlocked = keys.get(account).ok_or_else(|| locked(account))?;
        if parse(sealed)?.0 != unlocked.salt {
            // Re-sealed elsewhere (a password change): this key no longer applies.
            return Err(locked(account));
        }
        open_with(&unlocked.key, sealed)
    }
    fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_wrong_password_and_locked() {
        let s = PasswordSealer::new();
        let pw = SecretString::from("local secret");
        assert!(matches!(s.seal("a", b"x"), Err(StoreError::Locked { .. })));
        s.unlock("a", &pw, None).unwrap();
        let sealed = s.seal("a", b"{\"access_token\":\"AT\"}").unwrap();
        assert!(sealed.starts_with(MAGIC));
        assert!(!sealed.windows(2).any(|w| w == b"AT"));
        assert_eq!(
            &*s.open("a", &sealed).unwrap(),
            b"{\"access_token\":\"AT\"}"
        );
        // Another process: the right password unlocks with the record's salt, a wrong one fails
        // and leaves the sealer locked.
        let other = PasswordSealer::new();
        assert!(
            other
                .unlock("a", &SecretString::from("wrong"), Some(&sealed))
                .is_err()
        );
        assert!(!other.is_unlocked("a"));
        other.unlock("a", &pw, Some(&sealed)).unwrap();
        assert_eq!(
            &*other.open("a", &sealed).unwrap(),
            b"{\"access_token\":\"AT\"}"
        );
        // Records are per account.
        assert!(matches!(
            other.open("b", &sealed),
            Err(StoreError::Locked { .. })
        ));
        // Tampering is detected.
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(other.open("a", &bad).is_err());
        assert!(other.open("a", b"garbage").is_err());
    }
}
