//! TLS client configuration for the upstream IMAP/POP3/SMTP connections.
//!
//! Trust comes from one root set — Mozilla's roots compiled in ([`Roots::Webpki`], the default:
//! deterministic, works in containers without a CA bundle) or the operating system's store
//! ([`Roots::System`], for corporate TLS-inspecting networks) — plus, optionally, the
//! certificates of an extra PEM file. Certificate verification is always on; there is no
//! client certificate and no ALPN.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use crate::error::{CertError, FileKind};
use crate::pemfile;

/// Which root certificates upstream servers are verified against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Roots {
    /// Mozilla's root program, compiled in (`webpki-roots`).
    #[default]
    Webpki,
    /// The operating system's trust store (`rustls-native-certs`; honours `SSL_CERT_FILE` and
    /// `SSL_CERT_DIR`).
    System,
}

impl fmt::Display for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Roots::Webpki => "webpki",
            Roots::System => "system",
        })
    }
}

/// The error of parsing a [`Roots`] from text other than `webpki` or `system`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown root certificate set {0:?}; use \"webpki\" (built in, the default) or \"system\"")]
pub struct UnknownRoots(pub String);

impl FromStr for Roots {
    type Err = UnknownRoots;

    fn from_str(s: &str) -> Result<Roots, UnknownRoots> {
        match s.trim().to_ascii_lowercase().as_str() {
            "webpki" => Ok(Roots::Webpki),
            "system" => Ok(Roots::System),
            _ => Err(UnknownRoots(s.to_string())),
        }
    }
}

/// Builds the client configuration for upstream connections: `roots` plus the certificates in
/// `extra_ca` (a PEM file with one or more certificates) as trust anchors.
///
/// Uses the aws-lc-rs provider explicitly and rustls' safe default protocol versions (TLS 1.2
/// and 1.3), so no process-wide provider has to be installed.
pub fn client_config(
    roots: Roots,
    extra_ca: Option<&Path>,
) -> Result<Arc<ClientConfig>, CertError> {
    let mut store = match roots {
        Roots::Webpki => webpki_roots(),
        Roots::System => system_roots()?,
    };
    if let Some(path) = extra_ca {
        add_extra_ca(&mut store, path)?;
    }
    let config = ClientConfig::builder_with_provider(crate::crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn webpki_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn system_roots() -> Result<RootCertStore, CertError> {
    let found = rustls_native_certs::load_native_certs();
    let problems: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let detail = if !problems.is_empty() {
            problems.join("; ")
        } else if ignored > 0 {
            format!("{ignored} certificates found, none usable")
        } else {
            "the system CA bundle is missing or empty".to_string()
        };
        return Err(CertError::NoSystemRoots { detail });
    }
    Ok(store)
}

fn add_extra_ca(store: &mut RootCertStore, path: &Path) -> Result<(), CertError> {
    let kind = FileKind::CaCertificates;
    let bytes = pemfile::read(kind, path)?;
    for (i, cert) in pemfile::certificates(kind, path, &bytes)?
        .into_iter()
        .enumerate()
    {
        store.add(cert).map_err(|e| CertError::BadCertificate {
            kind,
            path: path.to_path_buf(),
            index: i + 1,
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_parse_and_print() {
        assert_eq!("webpki".parse(), Ok(Roots::Webpki));
        assert_eq!(" System ".parse(), Ok(Roots::System));
        assert_eq!(Roots::default(), Roots::Webpki);
        assert_eq!(Roots::System.to_string(), "system");
        let e = "native".parse::<Roots>().unwrap_err();
        assert!(e.to_string().contains("\"webpki\""), "{e}");
    }

    #[test]
    fn webpki_config_builds_without_client_auth_or_alpn() {
        let config = client_config(Roots::Webpki, None).unwrap();
        assert!(config.alpn_protocols.is_empty());
        assert!(!config.client_auth_cert_resolver.has_certs());
        assert!(config.enable_sni);
    }
}
