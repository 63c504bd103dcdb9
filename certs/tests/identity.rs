//! Local identity: the cached self-signed certificate (round trip, modes, replacement of
//! unusable caches, concurrency) and loading user-supplied PEM files (formats, mismatches,
//! exposed keys, garbage) — each failure with the message a user would see.

#![cfg(unix)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use certs::{CertError, Identity, Origin};
use common::{TempDir, mode, rcgen_pair, set_mode, write};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

#[test]
fn cached_identity_round_trip() {
    let tmp = TempDir::new("cache");
    let dir = tmp.join("tls"); // created by the call
    let first = Identity::self_signed_cached(&dir).unwrap();
    assert_eq!(first.origin(), &Origin::Generated);
    assert_eq!(first.subject_names(), ["127.0.0.1", "::1", "localhost"]);
    assert_eq!(mode(&dir.join("local-key.pem")), 0o600);
    assert_eq!(mode(&dir.join("local-cert.pem")), 0o644);
    assert_eq!(mode(&dir), 0o700);

    let second = Identity::self_signed_cached(&dir).unwrap();
    assert_eq!(second.origin(), &Origin::Cached);
    assert_eq!(second.sha256_fingerprint(), first.sha256_fingerprint());
    assert_eq!(mode(&dir.join("local-key.pem")), 0o600);

    // The same pair loads as user-supplied files too.
    let files =
        Identity::from_pem_files(&dir.join("local-cert.pem"), &dir.join("local-key.pem")).unwrap();
    assert_eq!(files.origin(), &Origin::Files);
    assert_eq!(files.sha256_fingerprint(), first.sha256_fingerprint());

    // Only our files (and the lock) are left in the directory.
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [".local-cert.lock", "local-cert.pem", "local-key.pem"]
    );
}

#[test]
fn fingerprint_is_sha256_of_the_certificate_in_openssl_format() {
    let tmp = TempDir::new("fp");
    let identity = Identity::self_signed_cached(tmp.path()).unwrap();
    let der = CertificateDer::from_pem_file(tmp.join("local-cert.pem")).unwrap();
    let expected: Vec<String> = Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let fp = identity.sha256_fingerprint();
    assert_eq!(fp, expected.join(":"));
    assert_eq!(fp.len(), 32 * 3 - 1);

    // Cross-check with the openssl CLI where it is installed.
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(tmp.join("local-cert.pem"))
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8(out.stdout).unwrap();
            assert!(text.trim().ends_with(&format!("={fp}")), "{text}");
        }
        _ => eprintln!("openssl not available; skipped the CLI cross-check"),
    }
}

#[test]
fn debug_shows_names_and_fingerprint_but_no_key() {
    let tmp = TempDir::new("debug");
    let identity = Identity::self_signed_cached(tmp.path()).unwrap();
    let debug = format!("{identity:?}");
    assert!(debug.contains(&identity.sha256_fingerprint()), "{debug}");
    assert!(debug.contains("localhost"), "{debug}");
    let key_pem = fs::read_to_string(tmp.join("local-key.pem")).unwrap();
    for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!debug.contains(line), "key material in Debug: {debug}");
    }
    assert!(!debug.to_lowercase().contains("private"), "{debug}");
}

#[test]
fn concurrent_callers_share_one_certificate() {
    let tmp = TempDir::new("race");
    let dir = tmp.join("tls");
    let fingerprints: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| Identity::self_signed_cached(&dir).unwrap()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().sha256_fingerprint())
            .collect()
    });
    assert!(fingerprints.iter().all(|f| f == &fingerprints[0]));
    let on_disk = Identity::self_signed_cached(&dir).unwrap();
    assert_eq!(on_disk.origin(), &Origin::Cached);
    assert_eq!(on_disk.sha256_fingerprint(), fingerprints[0]);
}

fn assert_replaced(identity: &Identity, reason_part: &str) {
    match identity.origin() {
        Origin::Replaced { reason } => assert!(reason.contains(reason_part), "{reason}"),
        other => panic!("expected Replaced, got {other:?}"),
    }
}

#[test]
fn damaged_cached_certificate_is_replaced() {
    let tmp = TempDir::new("damaged");
    let old = Identity::self_signed_cached(tmp.path()).unwrap();
    write(&tmp.join("local-cert.pem"), "garbage\n", 0o644);
    let new = Identity::self_signed_cached(tmp.path()).unwrap();
    assert_replaced(&new, "not PEM");
    assert_ne!(new.sha256_fingerprint(), old.sha256_fingerprint());
    assert_eq!(mode(&tmp.join("local-key.pem")), 0o600);
}

#[test]
fn expired_or_expiring_cached_certificate_is_replaced() {
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    for (not_after, why) in [(now - day, "now"), (now + 10 * day, "in 30 days")] {
        let tmp = TempDir::new("expired");
        let (cert, key) = rcgen_pair(
            &["127.0.0.1", "::1", "localhost"],
            now - 400 * day,
            not_after,
        );
        write(&tmp.join("local-cert.pem"), cert, 0o644);
        write(&tmp.join("local-key.pem"), key, 0o600);
        let identity = Identity::self_signed_cached(tmp.path()).unwrap();
        assert_replaced(&identity, why);
        assert_eq!(identity.subject_names(), ["127.0.0.1", "::1", "localhost"]);
    }
}

#[test]
fn cached_certificate_missing_a_name_is_replaced() {
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let tmp = TempDir::new("names");
    let (cert, key) = rcgen_pair(&["localhost", "127.0.0.1"], now - day, now + 100 * day);
    write(&tmp.join("local-cert.pem"), cert, 0o644);
    write(&tmp.join("local-key.pem"), key, 0o600);
    let identity = Identity::self_signed_cached(tmp.path()).unwrap();
    assert_replaced(&identity, "::1");
}

#[test]
fn lone_key_or_certificate_is_replaced() {
    let tmp = TempDir::new("lone");
    Identity::self_signed_cached(tmp.path()).unwrap();
    fs::remove_file(tmp.join("local-cert.pem")).unwrap();
    let identity = Identity::self_signed_cached(tmp.path()).unwrap();
    assert_replaced(&identity, "only one of");
}

#[test]
fn exposed_key_is_refused_with_chmod_advice() {
    let tmp = TempDir::new("exposed");
    Identity::self_signed_cached(tmp.path()).unwrap();
    let key = tmp.join("local-key.pem");
    for exposed in [0o644, 0o640, 0o604, 0o660] {
        set_mode(&key, exposed);
        let err = Identity::from_pem_files(&tmp.join("local-cert.pem"), &key).unwrap_err();
        assert!(matches!(err, CertError::KeyExposed { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("chmod 600 {}", key.display())),
            "{msg}"
        );
        assert!(msg.contains(&format!("{exposed:03o}")), "{msg}");
        // The cache refuses too, rather than silently replacing the key.
        let err = Identity::self_signed_cached(tmp.path()).unwrap_err();
        assert!(matches!(err, CertError::KeyExposed { .. }), "{err:?}");
    }
    set_mode(&key, 0o400);
    assert_eq!(
        Identity::self_signed_cached(tmp.path()).unwrap().origin(),
        &Origin::Cached
    );
}

#[test]
fn mismatched_certificate_and_key_are_refused() {
    let a = TempDir::new("mis-a");
    let b = TempDir::new("mis-b");
    Identity::self_signed_cached(a.path()).unwrap();
    Identity::self_signed_cached(b.path()).unwrap();
    let cert = a.join("local-cert.pem");
    let key = b.join("local-key.pem");
    let err = Identity::from_pem_files(&cert, &key).unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&cert.display().to_string()), "{msg}");
    assert!(msg.contains(&key.display().to_string()), "{msg}");
    assert!(msg.contains("does not match"), "{msg}");
}

/// Loads `cert`/`key` contents written to files and returns the error message.
fn load_error(cert: &str, key: &str) -> (CertError, String) {
    let tmp = TempDir::new("bad");
    let good = Identity::self_signed_cached(&tmp.join("good")).unwrap();
    assert!(!good.sha256_fingerprint().is_empty());
    let good_cert = fs::read_to_string(tmp.join("good/local-cert.pem")).unwrap();
    let good_key = fs::read_to_string(tmp.join("good/local-key.pem")).unwrap();
    let pick = |s: &str, good: &str| {
        if s == "GOOD" {
            good.to_string()
        } else {
            s.to_string()
        }
    };
    write(&tmp.join("c.pem"), pick(cert, &good_cert), 0o644);
    write(&tmp.join("k.pem"), pick(key, &good_key), 0o600);
    let err = Identity::from_pem_files(&tmp.join("c.pem"), &tmp.join("k.pem")).unwrap_err();
    let msg = err.to_string();
    (err, msg)
}

#[test]
fn garbage_and_empty_files_give_clear_errors() {
    let (_, msg) = load_error("hello, world\n", "GOOD");
    assert!(
        msg.contains("certificate file") && msg.contains("c.pem"),
        "{msg}"
    );
    assert!(msg.contains("is not PEM"), "{msg}");
    assert!(msg.contains("-----BEGIN CERTIFICATE-----"), "{msg}");

    let (_, msg) = load_error("GOOD", "this is not a key\n");
    assert!(
        msg.contains("private key file") && msg.contains("k.pem"),
        "{msg}"
    );
    assert!(msg.contains("is not PEM"), "{msg}");

    let (err, msg) = load_error("", "GOOD");
    assert!(matches!(err, CertError::Empty { .. }), "{err:?}");
    assert!(msg.contains("c.pem is empty"), "{msg}");

    let (err, msg) = load_error("GOOD", "\n\n");
    assert!(matches!(err, CertError::Empty { .. }), "{err:?}");
    assert!(msg.contains("k.pem is empty"), "{msg}");

    let (_, msg) = load_error("-----BEGIN CERTIFICATE-----\nMIIB\n", "GOOD");
    assert!(msg.contains("\"-----END\""), "{msg}");

    // Well-formed PEM whose content is not a certificate / not a key.
    let (err, msg) = load_error(
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        "GOOD",
    );
    assert!(matches!(err, CertError::BadCertificate { .. }), "{err:?}");
    assert!(msg.contains("certificate #1"), "{msg}");
    let (err, msg) = load_error(
        "GOOD",
        "-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n",
    );
    assert!(matches!(err, CertError::BadKey { .. }), "{err:?}");
    assert!(msg.contains("PKCS#8"), "{msg}");
}

#[test]
fn missing_files_name_the_path() {
    let tmp = TempDir::new("missing");
    let err = Identity::from_pem_files(&tmp.join("nope.pem"), &tmp.join("k.pem")).unwrap_err();
    assert!(matches!(err, CertError::Missing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("nope.pem does not exist"), "{msg}");
    let err = Identity::from_pem_files(tmp.path(), &tmp.join("k.pem")).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

/// Runs openssl with `args` in `dir`; false if openssl is not installed.
fn openssl(dir: &Path, args: &[&str]) -> bool {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(out) => {
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
            true
        }
        Err(_) => {
            eprintln!("openssl not available; skipped");
            false
        }
    }
}

#[test]
fn pkcs1_sec1_and_chain_files_from_openssl_load() {
    let tmp = TempDir::new("openssl");
    let d = tmp.path();
    let san = "subjectAltName=DNS:localhost,IP:127.0.0.1";
    let ec = [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ec.pem",
        "-out",
        "ec-cert.pem",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
        "-addext",
        san,
    ];
    if !openssl(d, &ec) {
        return;
    }
    let rsa = [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "rsa.pem",
        "-out",
        "rsa-cert.pem",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
        "-addext",
        san,
    ];
    assert!(openssl(d, &rsa));
    assert!(openssl(d, &["ec", "-in", "ec.pem", "-out", "sec1.pem"]));
    assert!(openssl(
        d,
        &["rsa", "-in", "rsa.pem", "-traditional", "-out", "pkcs1.pem"]
    ));
    for f in ["ec.pem", "rsa.pem", "sec1.pem", "pkcs1.pem"] {
        set_mode(&d.join(f), 0o600);
    }
    let sec1 = fs::read_to_string(d.join("sec1.pem")).unwrap();
    assert!(sec1.contains("BEGIN EC PRIVATE KEY"), "{sec1}");
    let pkcs1 = fs::read_to_string(d.join("pkcs1.pem")).unwrap();
    assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"), "{pkcs1}");

    for (cert, key) in [
        ("ec-cert.pem", "ec.pem"),
        ("ec-cert.pem", "sec1.pem"),
        ("rsa-cert.pem", "rsa.pem"),
        ("rsa-cert.pem", "pkcs1.pem"),
    ] {
        let id = Identity::from_pem_files(&d.join(cert), &d.join(key))
            .unwrap_or_else(|e| panic!("{cert} + {key}: {e}"));
        assert_eq!(id.subject_names(), ["localhost", "127.0.0.1"]);
        id.server_config().unwrap();
    }

    // A chain file (leaf first, then another certificate) keeps its order.
    let chain = format!(
        "{}{}",
        fs::read_to_string(d.join("ec-cert.pem")).unwrap(),
        fs::read_to_string(d.join("rsa-cert.pem")).unwrap()
    );
    write(&d.join("chain.pem"), chain, 0o644);
    let id = Identity::from_pem_files(&d.join("chain.pem"), &d.join("ec.pem")).unwrap();
    assert_eq!(id.cert_chain().len(), 2);

    // Key and certificate in one file works as well (the file must then be 0600).
    let both = format!(
        "{}{}",
        fs::read_to_string(d.join("ec.pem")).unwrap(),
        fs::read_to_string(d.join("ec-cert.pem")).unwrap()
    );
    write(&d.join("both.pem"), both, 0o600);
    Identity::from_pem_files(&d.join("both.pem"), &d.join("both.pem")).unwrap();

    // RSA key with the EC certificate: mismatch.
    let err = Identity::from_pem_files(&d.join("ec-cert.pem"), &d.join("pkcs1.pem")).unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err:?}");
}
