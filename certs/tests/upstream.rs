//! Upstream client configuration: webpki and system roots, and the extra CA file — valid
//! bundles, and every way the file can be wrong, with the message the user sees.

#![cfg(unix)]

mod common;

use std::process::Command;

use certs::{CertError, Roots, client_config};
use common::{TempDir, rcgen_pair, write};

#[test]
fn system_roots_load_on_this_machine() {
    let config = client_config(Roots::System, None).unwrap_or_else(|e| {
        panic!("system roots: {e} (is the ca-certificates package installed?)")
    });
    assert!(config.alpn_protocols.is_empty());
}

/// Runs `system_roots_missing_child` in a child process with SSL_CERT_FILE pointing at `file`
/// (environment variables are process-wide; changing them in this process would race).
#[test]
fn system_roots_missing_is_explained() {
    let tmp = TempDir::new("noroots");
    for (name, contents) in [("empty.pem", Some("")), ("absent.pem", None)] {
        let file = tmp.join(name);
        if let Some(c) = contents {
            write(&file, c, 0o644);
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "system_roots_missing_child",
                "--nocapture",
            ])
            .env("SSL_CERT_FILE", &file)
            .env_remove("SSL_CERT_DIR")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {stdout}");
        assert!(stdout.contains("1 passed"), "{name}: {stdout}");
    }
}

#[test]
#[ignore = "run by system_roots_missing_is_explained with SSL_CERT_FILE set"]
fn system_roots_missing_child() {
    let err = client_config(Roots::System, None).unwrap_err();
    assert!(matches!(err, CertError::NoSystemRoots { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("apt-get install ca-certificates"), "{msg}");
    assert!(msg.contains("SSL_CERT_FILE"), "{msg}");
    println!("{msg}");
}

#[test]
fn extra_ca_file_with_several_certificates_loads() {
    let tmp = TempDir::new("bundle");
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let (a, _) = rcgen_pair(&["a.test"], now - day, now + day);
    let (b, _) = rcgen_pair(&["b.test"], now - day, now + day);
    let file = tmp.join("ca.pem");
    write(&file, format!("# my corporate CAs\n{a}\n{b}"), 0o644);
    client_config(Roots::Webpki, Some(&file)).unwrap();
    client_config(Roots::System, Some(&file)).unwrap();
}

/// The error for an extra CA file with `contents` (`None`: the file does not exist).
fn ca_error(contents: Option<&[u8]>) -> (CertError, String) {
    let tmp = TempDir::new("badca");
    let file = tmp.join("extra-ca.pem");
    if let Some(c) = contents {
        write(&file, c, 0o644);
    }
    let err = client_config(Roots::Webpki, Some(&file)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert!(msg.contains("CA certificate file"), "{msg}");
    (err, msg)
}

#[test]
fn extra_ca_file_problems_are_explained() {
    let (err, msg) = ca_error(None);
    assert!(matches!(err, CertError::Missing { .. }), "{err:?}");
    assert!(msg.contains("does not exist"), "{msg}");

    let (err, msg) = ca_error(Some(b""));
    assert!(matches!(err, CertError::Empty { .. }), "{err:?}");
    assert!(msg.contains("is empty"), "{msg}");

    let (_, msg) = ca_error(Some(b"just some text\n"));
    assert!(msg.contains("is not PEM"), "{msg}");

    let (_, msg) = ca_error(Some(&[0x30, 0x82, 0x01, 0x0a, 0x02, 0x82, 0xff, 0xfe]));
    assert!(msg.contains("binary DER"), "{msg}");
    assert!(msg.contains("openssl x509 -inform der"), "{msg}");

    let (_, msg) = ca_error(Some(
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ));
    assert!(
        msg.contains("contains no certificate (found: PRIVATE KEY)"),
        "{msg}"
    );

    let (_, msg) = ca_error(Some(
        b"-----BEGIN CERTIFICATE-----\nMIIB!!!\n-----END CERTIFICATE-----\n",
    ));
    assert!(msg.contains("base64"), "{msg}");

    let (err, msg) = ca_error(Some(
        b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    ));
    assert!(
        matches!(err, CertError::BadCertificate { index: 1, .. }),
        "{err:?}"
    );
    assert!(msg.contains("certificate #1"), "{msg}");
}
