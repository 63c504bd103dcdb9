//! TLS material for mailoauth.
//!
//! * [`local::Identity`] — the certificate and key the proxy's own listeners present: loaded
//!   from PEM files ([`Identity::from_pem_files`]) or a self-signed certificate for `127.0.0.1`,
//!   `::1` and `localhost` generated once and cached on disk ([`Identity::self_signed_cached`]).
//!   Its SHA-256 fingerprint is what users pin in their mail clients.
//! * [`upstream::client_config`] — the rustls client configuration for connections to the real
//!   mail servers: webpki or system roots plus an optional extra CA file; verification always on.
//!
//! Everything uses the aws-lc-rs provider explicitly ([`crypto_provider`]), so no process-wide
//! rustls provider needs to be installed and none can be missing. Errors ([`CertError`]) name
//! the file, say what is wrong and what to do, and never contain key material.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod der;
mod error;
pub mod local;
mod pemfile;
pub mod upstream;

use std::sync::{Arc, OnceLock};

pub use error::{CertError, FileKind};
pub use local::{Identity, Origin};
pub use upstream::{Roots, UnknownRoots, client_config};

/// The rustls crypto provider used for every configuration built here (aws-lc-rs, rustls'
/// defaults: TLS 1.3 and 1.2 cipher suites, X25519MLKEM768/X25519/P-256/P-384 key exchange).
///
/// Shared so that callers building their own rustls objects (e.g. a `TlsConnector` with a
/// different verifier in tests) use the very same provider.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}
