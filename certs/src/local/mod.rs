//! The local TLS server identity presented by the proxy's listeners (implicit-TLS ports and
//! local STARTTLS/STLS).
//!
//! An [`Identity`] is a certificate chain plus a loaded signing key. The key is parsed once
//! into rustls' signing-key object and the raw key bytes are wiped; nothing in an `Identity`
//! can print key material (`Debug` shows subject names, fingerprint and origin only).

mod cache;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::error::{CertError, FileKind};
use crate::{crypto_provider, der, pemfile};

pub use cache::{CERT_FILE, KEY_FILE, SELF_SIGNED_NAMES};

/// Where an [`Identity`] came from; lets the CLI tell the user about a new certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// Loaded from certificate and key files named in the configuration.
    Files,
    /// The self-signed certificate cached by an earlier run.
    Cached,
    /// A self-signed certificate generated now, as none was cached.
    Generated,
    /// A self-signed certificate generated now, replacing a cached one that was unusable.
    Replaced {
        /// Why the cached one was not used (expired, damaged, …).
        reason: String,
    },
}

impl Origin {
    /// True when the certificate was just generated (clients must accept a new fingerprint).
    pub fn is_new(&self) -> bool {
        matches!(self, Origin::Generated | Origin::Replaced { .. })
    }
}

/// A certificate chain and its private key, ready to serve TLS.
#[derive(Clone)]
pub struct Identity {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
    fingerprint: String,
    origin: Origin,
}

impl Identity {
    /// Loads a certificate chain (leaf first) and its private key (PKCS#8, PKCS#1 or SEC1) from
    /// PEM files, and checks that the key belongs to the leaf certificate.
    ///
    /// The key file must not be readable by group or others (on Unix).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Identity, CertError> {
        load(cert, key, Origin::Files)
    }

    /// The self-signed identity cached in `dir` (`local-cert.pem`, `local-key.pem`), generated
    /// and written there first if missing, damaged or near its end of validity. The key file is
    /// created with mode 0600, the certificate 0644, each atomically; `dir` is created (0700) if
    /// needed. Concurrent callers are serialised with a lock file in `dir`.
    ///
    /// A cached key that is readable by other users is an error, not silently replaced.
    pub fn self_signed_cached(dir: &Path) -> Result<Identity, CertError> {
        cache::self_signed_cached(dir)
    }

    /// SHA-256 of the leaf certificate (DER), as uppercase hex pairs joined by colons — the
    /// format `openssl x509 -fingerprint -sha256` and mutt show.
    pub fn sha256_fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// The DNS names and IP addresses of the leaf certificate (subjectAltName).
    pub fn subject_names(&self) -> &[String] {
        &self.names
    }

    /// The certificate chain, leaf first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.key.cert
    }

    /// Where this identity came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// A rustls server configuration presenting this identity: aws-lc-rs provider, TLS 1.2 and
    /// 1.3, no client authentication, no ALPN.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, CertError> {
        let config = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(self.key.clone())));
        Ok(Arc::new(config))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("names", &self.names)
            .field("sha256", &self.fingerprint)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Reads, parses and cross-checks a certificate/key pair.
fn load(cert: &Path, key: &Path, origin: Origin) -> Result<Identity, CertError> {
    let cert_pem = pemfile::read(FileKind::Certificate, cert)?;
    let chain = pemfile::certificates(FileKind::Certificate, cert, &cert_pem)?;
    let signing_key = {
        let key_pem = pemfile::read(FileKind::PrivateKey, key)?;
        let key_der = pemfile::private_key(key, &key_pem)?;
        crypto_provider()
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| CertError::BadKey {
                path: key.to_path_buf(),
                reason: e.to_string(),
            })?
    };
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(CertError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            });
        }
        Err(e) => {
            return Err(CertError::BadCertificate {
                kind: FileKind::Certificate,
                path: cert.to_path_buf(),
                index: 1,
                reason: e.to_string(),
            });
        }
    }
    let leaf = &certified.cert[0];
    Ok(Identity {
        names: der::subject_alt_names(leaf),
        fingerprint: fingerprint(leaf),
        key: Arc::new(certified),
        origin,
    })
}

/// `AB:CD:…` — SHA-256 of `der`, uppercase hex, colon-separated.
fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_format() {
        // SHA-256("abc"), a published test vector.
        assert_eq!(
            fingerprint(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn origin_is_new() {
        assert!(Origin::Generated.is_new());
        assert!(Origin::Replaced { reason: "x".into() }.is_new());
        assert!(!Origin::Cached.is_new());
        assert!(!Origin::Files.is_new());
    }
}
