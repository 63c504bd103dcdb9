//! A minimal, bounds-checked DER walk that pulls the subject alternative names (DNS names and IP
//! addresses) out of an X.509 certificate, for display only (`Debug`, logs, `mailoauth init`).
//!
//! Verification never relies on this: rustls/webpki parse certificates properly. Anything
//! unexpected simply yields no names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Subject alternative name extension, OID 2.5.29.17.
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
/// `[3] EXPLICIT Extensions` in TBSCertificate.
const EXTENSIONS: u8 = 0xa3;
/// GeneralName `dNSName [2] IA5String`.
const DNS_NAME: u8 = 0x82;
/// GeneralName `iPAddress [7] OCTET STRING`.
const IP_ADDRESS: u8 = 0x87;

/// The DNS names and IP addresses in the certificate's subjectAltName, in order.
pub(crate) fn subject_alt_names(cert: &[u8]) -> Vec<String> {
    san_extension(cert).map(general_names).unwrap_or_default()
}

fn san_extension(cert: &[u8]) -> Option<&[u8]> {
    let certificate = Reader(cert).expect(SEQUENCE)?;
    let tbs = Reader(certificate).expect(SEQUENCE)?;
    let mut fields = Reader(tbs);
    while let Some((tag, value)) = fields.next() {
        if tag != EXTENSIONS {
            continue;
        }
        let mut extensions = Reader(Reader(value).expect(SEQUENCE)?);
        while let Some((tag, extension)) = extensions.next() {
            if tag != SEQUENCE {
                return None;
            }
            let mut parts = Reader(extension);
            let oid = parts.expect(OID)?;
            let (mut tag, mut value) = parts.next()?;
            if tag == BOOLEAN {
                (tag, value) = parts.next()?;
            }
            if oid == OID_SUBJECT_ALT_NAME && tag == OCTET_STRING {
                return Reader(value).expect(SEQUENCE);
            }
        }
        return None;
    }
    None
}

fn general_names(names: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut reader = Reader(names);
    while let Some((tag, value)) = reader.next() {
        match tag {
            DNS_NAME => out.push(String::from_utf8_lossy(value).into_owned()),
            IP_ADDRESS => {
                let ip = if let Ok(v4) = <[u8; 4]>::try_from(value) {
                    IpAddr::V4(Ipv4Addr::from(v4))
                } else if let Ok(v6) = <[u8; 16]>::try_from(value) {
                    IpAddr::V6(Ipv6Addr::from(v6))
                } else {
                    continue;
                };
                out.push(ip.to_string());
            }
            _ => {}
        }
    }
    out
}

/// Reads consecutive DER TLVs (single-byte tags, definite lengths up to 4 bytes).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The next TLV as `(tag, value)`; `None` at the end or on malformed input (which also
    /// stops the reader).
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let parsed = Self::split(self.0);
        self.0 = parsed.map(|(_, _, rest)| rest).unwrap_or_default();
        parsed.map(|(tag, value, _)| (tag, value))
    }

    /// The value of the next TLV if it has tag `tag`.
    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        self.next().filter(|(t, _)| *t == tag).map(|(_, v)| v)
    }

    fn split(data: &'a [u8]) -> Option<(u8, &'a [u8], &'a [u8])> {
        let (&tag, rest) = data.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tag: not used by X.509
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (bytes, rest) = rest.split_at(n);
            let len = bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, rest)
        };
        if rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        Some((tag, value, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_an_rcgen_certificate() {
        let names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
            "mail.example.org".to_string(),
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names.clone())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(subject_alt_names(cert.der()), names);
    }

    #[test]
    fn no_extension_gives_no_names() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(subject_alt_names(cert.der()).is_empty());
    }

    #[test]
    fn garbage_gives_no_names_and_no_panic() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        for cut in 0..der.len() {
            let _ = subject_alt_names(&der[..cut]);
        }
        assert!(subject_alt_names(&[]).is_empty());
        assert!(subject_alt_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_empty());
        assert!(subject_alt_names(b"not a certificate").is_empty());
    }
}
