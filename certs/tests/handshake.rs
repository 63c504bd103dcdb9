//! Real TLS over loopback TCP with tokio-rustls: a listener using `Identity::server_config()`
//! and clients from `upstream::client_config`. Trusting the self-signed certificate through the
//! extra CA file works for every local name; without it (or for another name) verification
//! fails — proving verification is on.

#![cfg(unix)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use certs::{Identity, Roots, client_config};
use common::TempDir;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Serves TLS echo-style sessions ("ping" → "pong <sni>") until the runtime ends.
async fn serve(config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // Failed handshakes are the client's business in these tests.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut tls = BufReader::new(tls);
                let mut line = String::new();
                if tls.read_line(&mut line).await.is_ok() && line == "ping\n" {
                    let _ = tls.get_mut().write_all(b"pong\n").await;
                    let _ = tls.get_mut().shutdown().await;
                }
            });
        }
    });
    addr
}

/// Connects, verifies as `name`, exchanges one line; returns the negotiated TLS version.
async fn talk(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: &str,
) -> Result<rustls::ProtocolVersion, std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let tls = TlsConnector::from(config).connect(server_name, tcp).await?;
    let version = tls.get_ref().1.protocol_version().unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        None,
        "no ALPN is negotiated"
    );
    let mut tls = BufReader::new(tls);
    tls.get_mut().write_all(b"ping\n").await?;
    let mut line = String::new();
    tls.read_line(&mut line).await?;
    assert_eq!(line, "pong\n");
    Ok(version)
}

/// The rustls error inside a failed handshake.
fn rustls_error(err: &std::io::Error) -> &rustls::Error {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a rustls error: {err:?}"))
}

#[tokio::test]
async fn self_signed_identity_is_trusted_through_the_extra_ca_file() {
    let tmp = TempDir::new("hs");
    let identity = Identity::self_signed_cached(tmp.path()).unwrap();
    let addr = serve(identity.server_config().unwrap()).await;
    let ca_file = tmp.join("local-cert.pem");

    let trusting = client_config(Roots::Webpki, Some(&ca_file)).unwrap();
    for name in ["127.0.0.1", "localhost", "::1"] {
        let version = talk(addr, trusting.clone(), name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(version, rustls::ProtocolVersion::TLSv1_3, "{name}");
    }

    // The same CA file on top of the system roots works too.
    let system = client_config(Roots::System, Some(&ca_file)).unwrap();
    talk(addr, system, "localhost").await.unwrap();

    // Without the extra CA the certificate is not trusted: verification is on.
    let plain = client_config(Roots::Webpki, None).unwrap();
    for name in ["127.0.0.1", "localhost"] {
        let err = talk(addr, plain.clone(), name).await.unwrap_err();
        assert_eq!(
            rustls_error(&err),
            &rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            "{name}"
        );
    }

    // Trusted, but not for this name.
    let err = talk(addr, trusting, "mail.example.org").await.unwrap_err();
    assert!(
        matches!(
            rustls_error(&err),
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn client_config_speaks_tls12_to_older_servers() {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let tmp = TempDir::new("tls12");
    Identity::self_signed_cached(tmp.path()).unwrap();
    let ca_file = tmp.join("local-cert.pem");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ca_file)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(tmp.join("local-key.pem")).unwrap();
    let server = ServerConfig::builder_with_provider(certs::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let addr = serve(Arc::new(server)).await;

    let client = client_config(Roots::Webpki, Some(&ca_file)).unwrap();
    let version = talk(addr, client, "127.0.0.1").await.unwrap();
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_2);
}
