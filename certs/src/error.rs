//! [`CertError`]: everything that can go wrong while loading, generating or using TLS material.
//!
//! Every message says what happened (naming the file) and what to do next. No message and no
//! `Debug` output ever contains key material: PEM decoding details of private keys are reduced to
//! a fixed description before they get here, and rustls errors carry no key bytes.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Which kind of file an error is about; used in messages ("certificate file /x/cert.pem …").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A certificate (chain) for a local listener.
    Certificate,
    /// A private key for a local listener.
    PrivateKey,
    /// Extra trusted CA certificates for upstream connections.
    CaCertificates,
}

impl FileKind {
    /// The PEM label expected in this kind of file.
    pub(crate) fn pem_label(self) -> &'static str {
        match self {
            FileKind::Certificate | FileKind::CaCertificates => "CERTIFICATE",
            FileKind::PrivateKey => "PRIVATE KEY",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Certificate => "certificate file",
            FileKind::PrivateKey => "private key file",
            FileKind::CaCertificates => "CA certificate file",
        })
    }
}

/// An error from the `certs` crate. The `Display` text is meant for the user as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The file does not exist.
    #[error("{kind} {} does not exist; check the path in the configuration", path.display())]
    Missing {
        /// What the file was supposed to hold.
        kind: FileKind,
        /// The path as given.
        path: PathBuf,
    },

    /// The file exists but could not be read.
    #[error(
        "cannot read {kind} {}: {source}; check that it is a regular file readable by this user",
        path.display()
    )]
    Read {
        /// What the file was supposed to hold.
        kind: FileKind,
        /// The path as given.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },

    /// The file is larger than any sane PEM file of its kind.
    #[error(
        "{kind} {} is larger than {limit} bytes; point the configuration at a PEM file, not at \
         something else",
        path.display()
    )]
    TooLarge {
        /// What the file was supposed to hold.
        kind: FileKind,
        /// The path as given.
        path: PathBuf,
        /// The size limit in bytes.
        limit: u64,
    },

    /// The file is empty.
    #[error(
        "{kind} {} is empty; it must contain PEM text starting with \"-----BEGIN {}-----\"",
        path.display(),
        kind.pem_label()
    )]
    Empty {
        /// What the file was supposed to hold.
        kind: FileKind,
        /// The path as given.
        path: PathBuf,
    },

    /// The file is not PEM, or holds no section of the expected kind.
    #[error("{kind} {} {problem}; {hint}", path.display())]
    NotPem {
        /// What the file was supposed to hold.
        kind: FileKind,
        /// The path as given.
        path: PathBuf,
        /// What is wrong with the content (never key material).
        problem: String,
        /// What to do about it.
        hint: String,
    },

    /// The private key file may be read by other users.
    #[error(
        "private key file {} can be read by other users (mode {mode:03o}); refusing to use it: \
         run `chmod 600 {}` (and consider replacing the key, it may have been copied)",
        path.display(),
        path.display()
    )]
    KeyExposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The private key is not usable (unsupported type, damaged encoding).
    #[error(
        "private key file {} holds a key that cannot be used: {reason}; use an unencrypted \
         RSA, ECDSA (P-256/P-384) or Ed25519 key in PKCS#8, PKCS#1 or SEC1 PEM form",
        path.display()
    )]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// Why (from rustls; never contains key material).
        reason: String,
    },

    /// A certificate in the file could not be parsed or used.
    #[error(
        "{kind} {}: certificate #{index} cannot be used: {reason}; replace it with a valid \
         X.509 certificate in PEM form",
        path.display()
    )]
    BadCertificate {
        /// What the file was supposed to hold.
        kind: FileKind,
        /// The path as given.
        path: PathBuf,
        /// 1-based position of the certificate in the file.
        index: usize,
        /// Why.
        reason: String,
    },

    /// The key does not belong to the certificate.
    #[error(
        "private key file {} does not match certificate file {} (the key belongs to a different \
         certificate); use the key that was created together with this certificate",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },

    /// `Roots::System` found no usable CA certificate on this machine.
    #[error(
        "no system CA certificates found ({detail}); install them (Debian/Ubuntu: \
         `apt-get install ca-certificates`, Fedora: `dnf install ca-certificates`), or set \
         SSL_CERT_FILE to a CA bundle, or use the built-in webpki roots instead"
    )]
    NoSystemRoots {
        /// What rustls-native-certs reported.
        detail: String,
    },

    /// Writing generated files failed.
    #[error("cannot write {}: {source}; check that the directory exists and is writable by this user", path.display())]
    Write {
        /// The file or directory being written.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },

    /// rcgen failed to generate the self-signed certificate.
    #[error(
        "cannot generate the local self-signed certificate: {0}; this is a bug, please report it"
    )]
    Generate(String),

    /// rustls refused the configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl CertError {
    /// Maps an I/O error from opening/reading `path` to [`CertError::Missing`] or
    /// [`CertError::Read`].
    pub(crate) fn read(kind: FileKind, path: &std::path::Path, source: io::Error) -> CertError {
        if source.kind() == io::ErrorKind::NotFound {
            CertError::Missing {
                kind,
                path: path.to_path_buf(),
            }
        } else {
            CertError::Read {
                kind,
                path: path.to_path_buf(),
                source,
            }
        }
    }

    /// Builds a [`CertError::Write`].
    pub(crate) fn write(path: &std::path::Path, source: io::Error) -> CertError {
        CertError::Write {
            path: path.to_path_buf(),
            source,
        }
    }
}
