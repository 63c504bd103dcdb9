//! Reading PEM files: bounded reads, the private-key permission check, and PEM parsing (via
//! `rustls_pki_types::pem::PemObject`) with diagnostics that say what the file looks like
//! instead (empty, binary DER, a key where a certificate was expected, an encrypted key, …).
//!
//! Files are read into memory first (rather than with `pem_file_iter`) so that the size can be
//! bounded, the permission check is done on the opened file (no check-then-open race), and an
//! empty or non-PEM file can be told apart from one without the expected section.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use crate::error::{CertError, FileKind};

/// Largest certificate / CA file accepted (a full system CA bundle is ~250 KB).
const MAX_CERT_FILE: u64 = 16 << 20;
/// Largest private key file accepted (an RSA-8192 PEM key is ~6.5 KB).
const MAX_KEY_FILE: u64 = 1 << 20;

/// Reads `path` completely, refusing oversized, empty and (for keys) group/world-readable
/// files. The buffer is wiped when dropped.
pub(crate) fn read(kind: FileKind, path: &Path) -> Result<Zeroizing<Vec<u8>>, CertError> {
    let limit = match kind {
        FileKind::PrivateKey => MAX_KEY_FILE,
        _ => MAX_CERT_FILE,
    };
    let file = File::open(path).map_err(|e| CertError::read(kind, path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| CertError::read(kind, path, e))?;
    if !meta.is_file() {
        let e = std::io::Error::other("not a regular file");
        return Err(CertError::read(kind, path, e));
    }
    #[cfg(unix)]
    if kind == FileKind::PrivateKey {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(CertError::KeyExposed {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    if meta.len() > limit {
        return Err(too_large(kind, path, limit));
    }
    // Sized up front so that the buffer is not reallocated (leaving key bytes behind).
    let mut buf = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CertError::read(kind, path, e))?;
    if buf.len() as u64 > limit {
        return Err(too_large(kind, path, limit));
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Err(CertError::Empty {
            kind,
            path: path.to_path_buf(),
        });
    }
    Ok(buf)
}

fn too_large(kind: FileKind, path: &Path, limit: u64) -> CertError {
    CertError::TooLarge {
        kind,
        path: path.to_path_buf(),
        limit,
    }
}

/// All `CERTIFICATE` sections of `bytes`, in order; at least one.
pub(crate) fn certificates(
    kind: FileKind,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(bytes) {
        certs.push(item.map_err(|e| damaged(kind, path, &e))?);
    }
    if certs.is_empty() {
        return Err(nothing_found(kind, path, bytes));
    }
    Ok(certs)
}

/// The one private key (PKCS#8, PKCS#1 or SEC1) in `bytes`.
pub(crate) fn private_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    let kind = FileKind::PrivateKey;
    let mut keys = PrivateKeyDer::pem_slice_iter(bytes);
    let key = match keys.next() {
        None => return Err(nothing_found(kind, path, bytes)),
        Some(item) => item.map_err(|e| damaged(kind, path, &e))?,
    };
    match keys.next() {
        None => Ok(key),
        Some(Err(e)) => Err(damaged(kind, path, &e)),
        Some(Ok(_)) => Err(CertError::NotPem {
            kind,
            path: path.to_path_buf(),
            problem: "holds more than one private key".into(),
            hint: "keep only the key that belongs to the certificate".into(),
        }),
    }
}

/// A PEM syntax error. For private keys the decoder's detail is dropped: it could quote bytes.
fn damaged(kind: FileKind, path: &Path, e: &pem::Error) -> CertError {
    let secret = kind == FileKind::PrivateKey;
    let problem = match e {
        pem::Error::MissingSectionEnd { .. } => {
            "has a PEM section without its \"-----END\" line (truncated or damaged)".to_string()
        }
        pem::Error::IllegalSectionStart { .. } => "has a malformed \"-----BEGIN\" line".into(),
        pem::Error::Base64Decode(detail) if !secret => {
            format!("has a PEM section whose base64 text is damaged ({detail})")
        }
        pem::Error::Base64Decode(_) => "has a PEM section whose base64 text is damaged".into(),
        pem::Error::SectionTooLarge => "has a PEM section larger than 256 MB".into(),
        other if !secret => format!("cannot be parsed as PEM ({other})"),
        _ => "cannot be parsed as PEM".into(),
    };
    CertError::NotPem {
        kind,
        path: path.to_path_buf(),
        problem,
        hint: "restore the file from its original or export it again in PEM form".into(),
    }
}

/// No section of the wanted kind: say what the file holds instead and what to do.
fn nothing_found(kind: FileKind, path: &Path, bytes: &[u8]) -> CertError {
    let found = labels(bytes);
    let shown = path.display();
    let (problem, hint) = if found.is_empty() {
        let binary = bytes.first() == Some(&0x30) || std::str::from_utf8(bytes).is_err();
        let problem = if binary {
            "is not PEM (it looks like binary DER)".to_string()
        } else {
            "is not PEM (no \"-----BEGIN\" line)".to_string()
        };
        let hint = match (kind, binary) {
            (FileKind::PrivateKey, true) => format!(
                "convert it with `openssl pkey -inform der -in {shown} -out key.pem` and \
                 `chmod 600 key.pem`"
            ),
            (_, true) => {
                format!("convert it with `openssl x509 -inform der -in {shown} -out cert.pem`")
            }
            (_, false) => format!(
                "it must contain PEM text starting with \"-----BEGIN {}-----\"",
                kind.pem_label()
            ),
        };
        (problem, hint)
    } else {
        let problem = format!(
            "contains no {} (found: {})",
            match kind {
                FileKind::PrivateKey => "private key",
                _ => "certificate",
            },
            found.join(", ")
        );
        let has = |label: &str| found.iter().any(|f| f == label);
        let hint = if kind == FileKind::PrivateKey && has("ENCRYPTED PRIVATE KEY") {
            format!(
                "the key is encrypted; write an unencrypted copy with `openssl pkey -in {shown} \
                 -out key.pem`, `chmod 600 key.pem` and use that"
            )
        } else if kind == FileKind::PrivateKey && has("CERTIFICATE") {
            "this is a certificate; did you swap the certificate and key paths?".into()
        } else if kind != FileKind::PrivateKey && found.iter().any(|f| f.contains("PRIVATE KEY")) {
            "this is a private key; did you swap the certificate and key paths?".into()
        } else {
            format!(
                "it must contain a \"-----BEGIN {}-----\" section",
                kind.pem_label()
            )
        };
        (problem, hint)
    };
    CertError::NotPem {
        kind,
        path: path.to_path_buf(),
        problem,
        hint,
    }
}

/// The labels of the `-----BEGIN …-----` lines in `bytes` (labels are never secret).
fn labels(bytes: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in bytes.split(|&b| b == b'\n') {
        let Some(rest) = line.strip_prefix(b"-----BEGIN ") else {
            continue;
        };
        let end = rest
            .windows(5)
            .position(|w| w == b"-----")
            .unwrap_or(rest.len());
        let label: String = rest[..end]
            .iter()
            .take(40)
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '?'
                }
            })
            .collect();
        if !out.contains(&label) {
            out.push(label);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_listed_once() {
        let text = b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n\
                     -----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n\
                     -----BEGIN CERTIFICATE-----\n";
        assert_eq!(labels(text), ["CERTIFICATE", "EC PRIVATE KEY"]);
    }

    #[test]
    fn der_input_is_recognised() {
        let e = nothing_found(
            FileKind::Certificate,
            Path::new("c.der"),
            &[0x30, 0x82, 1, 2],
        );
        let msg = e.to_string();
        assert!(msg.contains("binary DER"), "{msg}");
        assert!(msg.contains("openssl x509 -inform der"), "{msg}");
    }

    #[test]
    fn swapped_files_are_suggested() {
        let key = b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n";
        let e = certificates(FileKind::Certificate, Path::new("cert.pem"), key).unwrap_err();
        assert!(e.to_string().contains("swap"), "{e}");
        let cert = b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        let e = private_key(Path::new("key.pem"), cert).unwrap_err();
        assert!(e.to_string().contains("swap"), "{e}");
    }

    #[test]
    fn encrypted_key_is_explained() {
        let text =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA==\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = private_key(Path::new("key.pem"), text).unwrap_err();
        assert!(e.to_string().contains("encrypted"), "{e}");
    }

    #[test]
    fn damaged_key_base64_is_not_quoted() {
        let text = b"-----BEGIN PRIVATE KEY-----\nSECRETSECRET!!!\n-----END PRIVATE KEY-----\n";
        let e = private_key(Path::new("key.pem"), text).unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("damaged"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }

    #[test]
    fn two_keys_are_refused() {
        let one = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let e = private_key(Path::new("key.pem"), one.repeat(2).as_bytes()).unwrap_err();
        assert!(e.to_string().contains("more than one"), "{e}");
    }
}
