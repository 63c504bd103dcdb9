//! A throw-away certificate authority for tests: one CA per `TestCa`, server certificates
//! issued on demand (rcgen, ECDSA P-256). Clients trust the CA file, never the system roots.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::error::{HarnessError, IoContext};

/// A test CA. Its private key lives only in memory.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// Generates a new CA ("mailoauth test CA <random>").
    pub fn new() -> Result<TestCa, HarnessError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("mailoauth test CA {}", crate::util::random_hex(4)),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(rcgen_err)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(rcgen_err)?;
        Ok(TestCa { issuer })
    }

    /// The CA certificate, PEM.
    pub fn ca_cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate (PEM) to `path`.
    pub fn write_ca_pem(&self, path: &Path) -> Result<(), HarnessError> {
        std::fs::write(path, self.ca_cert_pem()).ctx(|| format!("writing {}", path.display()))
    }

    /// Issues a server certificate for `names` (DNS names and/or IP addresses, e.g.
    /// `["127.0.0.1", "localhost"]`). Returns `(certificate PEM, PKCS#8 private key PEM)`.
    pub fn issue(&self, names: &[&str]) -> Result<(String, String), HarnessError> {
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).map_err(rcgen_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(rcgen_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCa { .. }")
    }
}

fn rcgen_err(e: rcgen::Error) -> HarnessError {
    HarnessError::Other(format!("certificate generation failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_a_pem_pair() {
        let ca = TestCa::new().unwrap();
        let (cert, key) = ca.issue(&["127.0.0.1", "localhost"]).unwrap();
        assert!(ca.ca_cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_ne!(cert, ca.ca_cert_pem());
    }
}
