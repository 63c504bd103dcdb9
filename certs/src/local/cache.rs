//! The self-signed local identity, generated once with rcgen and cached on disk.
//!
//! Files in the cache directory belong to mailoauth: `local-key.pem` (PKCS#8, mode 0600),
//! `local-cert.pem` (mode 0644) and the lock file `.local-cert.lock`. A cached pair is used if
//! it loads, the key matches, and a client trusting the certificate would accept it for every
//! name in [`SELF_SIGNED_NAMES`] now and 30 days from now; otherwise a new pair replaces it
//! (and the returned identity's origin says why). Writes are atomic (temp file, fsync, rename,
//! directory fsync) and concurrent processes are serialised by a lock on the lock file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{ServerName, UnixTime};
use zeroize::Zeroizing;

use super::{Identity, Origin, load};
use crate::crypto_provider;
use crate::error::CertError;

/// File name of the cached certificate.
pub const CERT_FILE: &str = "local-cert.pem";
/// File name of the cached private key.
pub const KEY_FILE: &str = "local-key.pem";
/// The names the self-signed certificate is valid for.
pub const SELF_SIGNED_NAMES: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

const LOCK_FILE: &str = ".local-cert.lock";
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Lifetime of a generated certificate, counted from one day before its creation.
///
/// Why not ~10 years: macOS and iOS (since 10.15 / 13, Apple's "requirements for trusted
/// certificates") refuse *any* TLS server certificate valid for more than 825 days, even one the
/// user explicitly trusts — Apple Mail and Chrome on macOS would reject a 10-year certificate.
/// So 820 days (+1 day back-dated for clock skew = 821 ≤ 825). Renewal is automatic
/// ([`RENEW_BEFORE`]); users re-accept the new fingerprint about every two years.
const LIFETIME: Duration = Duration::from_secs(820 * 24 * 60 * 60);
/// A cached certificate expiring within this period is replaced.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

pub(super) fn self_signed_cached(dir: &Path) -> Result<Identity, CertError> {
    create_dir(dir)?;
    let _lock = lock(dir)?;
    let cert = dir.join(CERT_FILE);
    let key = dir.join(KEY_FILE);
    let replaced = match load(&cert, &key, Origin::Cached) {
        Ok(identity) => match check_usable(&identity) {
            Ok(()) => return Ok(identity),
            Err(reason) => Some(reason),
        },
        Err(CertError::Missing { .. }) => {
            if exists(&cert)? || exists(&key)? {
                Some(format!("only one of {CERT_FILE} and {KEY_FILE} existed"))
            } else {
                None
            }
        }
        // Not ours to overwrite blindly: the user must look at these.
        Err(e @ (CertError::KeyExposed { .. } | CertError::Read { .. })) => return Err(e),
        Err(e) => Some(e.to_string()),
    };
    generate(&cert, &key)?;
    let origin = match replaced {
        None => Origin::Generated,
        Some(reason) => Origin::Replaced { reason },
    };
    // Read back what was written: the returned identity is exactly what later runs will load.
    load(&cert, &key, origin)
}

fn exists(path: &Path) -> Result<bool, CertError> {
    path.try_exists().map_err(|e| CertError::Read {
        kind: crate::FileKind::Certificate,
        path: path.to_path_buf(),
        source: e,
    })
}

/// Would a client that trusts exactly this certificate accept it, for every local name, now
/// and [`RENEW_BEFORE`] from now? (Uses rustls' own verifier, so "valid" means what clients
/// check: signature, validity period, names, key usage.)
fn check_usable(identity: &Identity) -> Result<(), String> {
    let chain = identity.cert_chain();
    let mut roots = RootCertStore::empty();
    roots
        .add(chain[0].clone())
        .map_err(|e| format!("the cached certificate cannot be parsed: {e}"))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .map_err(|e| format!("the cached certificate cannot be used: {e}"))?;
    let now = SystemTime::now();
    for (at, when) in [(now, "now"), (now + RENEW_BEFORE, "in 30 days")] {
        let unix = UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap_or_default());
        for name in SELF_SIGNED_NAMES {
            let server_name = ServerName::try_from(name).map_err(|e| e.to_string())?;
            verifier
                .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], unix)
                .map_err(|e| {
                    format!("the cached certificate is not valid for {name} {when}: {e}")
                })?;
        }
    }
    Ok(())
}

/// Generates a new ECDSA P-256 key and self-signed certificate and writes both atomically.
///
/// P-256: accepted by every TLS client in use (OpenSSL, GnuTLS, NSS, Schannel, Apple), small,
/// fast; RSA would only add key-generation time.
fn generate(cert_path: &Path, key_path: &Path) -> Result<(), CertError> {
    let rcgen_err = |e: rcgen::Error| CertError::Generate(e.to_string());
    let key = KeyPair::generate().map_err(rcgen_err)?;
    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).map_err(rcgen_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "mailoauth local proxy");
    dn.push(DnType::OrganizationName, "mailoauth");
    params.distinguished_name = dn;
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - DAY;
    params.not_after = now + LIFETIME;
    let cert = params.self_signed(&key).map_err(rcgen_err)?;

    let key_pem = Zeroizing::new(key.serialize_pem());
    // Key first: a crash in between leaves a mismatched pair, which the next run replaces.
    write_atomic(key_path, key_pem.as_bytes(), 0o600)?;
    write_atomic(cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// Writes `bytes` to `path` via a temp file in the same directory created with `mode`
/// (never wider, even for a moment), fsync, rename, directory fsync.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    // A leftover from a crashed run of this process id; we hold the lock, so nobody writes it.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = create_new(&tmp, mode)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| CertError::write(path, e))
}

#[cfg(unix)]
fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // The umask may have narrowed `mode` (e.g. 0644 → 0600); set exactly what was asked.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(file)
}

#[cfg(not(unix))]
fn create_new(path: &Path, _mode: u32) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| CertError::write(dir, e))
}

/// An exclusive lock on `dir/.local-cert.lock`, released when the file is dropped.
fn lock(dir: &Path) -> Result<File, CertError> {
    let path = dir.join(LOCK_FILE);
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(&path)
        .map_err(|e| CertError::write(&path, e))?;
    file.lock().map_err(|e| CertError::write(&path, e))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetime_respects_apples_825_day_limit() {
        assert!((LIFETIME + DAY).as_secs() <= 825 * DAY.as_secs());
        assert!(RENEW_BEFORE < LIFETIME);
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("certs-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.pem");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644);
        }
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f.pem"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
