//! The upstream core over real sockets against the harness's scripted fake SMTP server, driven by
//! a small blocking driver that does what the session driver does. Here the server side asserts
//! the sequence: what it received, in plaintext and over TLS, and whether an `AUTH` line carried
//! an initial response (protocols.md §6 rows 36-38).

use std::io::{Read, Write};
use std::net::TcpStream;

use mailoauth_harness::lineclient::{oauthbearer, tls_config, xoauth2};
use mailoauth_harness::{FakeSmtp, FakeSmtpOptions, FakeTls, SmtpAuthAnswer};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use super::*;

const ALICE: &str = "alice@example.test";
const FIRST: &str = "ya29.first-token";
const SECOND: &str = "ya29.second-token";

enum Socket {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

/// How a drive ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Authenticated(Vec<u8>),
    Failed(UpstreamFailure),
    /// Rejected with no token left to try.
    Rejected,
}

/// Connects to `fake` and runs a core for `helo` to its end, with `tokens` for the attempts.
fn drive(fake: &FakeSmtp, implicit_tls: bool, helo: &str, tokens: &[&str]) -> End {
    let tcp = TcpStream::connect(("127.0.0.1", fake.port())).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let tls = |tcp: TcpStream| {
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let conn = ClientConnection::new(tls_config(fake.ca_pem_path()).unwrap(), name).unwrap();
        Socket::Tls(Box::new(StreamOwned::new(conn, tcp)))
    };
    let mut socket = if implicit_tls {
        tls(tcp)
    } else {
        Socket::Plain(tcp)
    };
    let mut core = UpstreamCore::new(UpstreamOptions {
        implicit_tls,
        host: "127.0.0.1".into(),
        port: fake.port(),
        user: ALICE.into(),
        helo: helo.into(),
    });
    let mut tokens = tokens.iter();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let event = core.next_event();
        let out = core.take_output();
        if !out.is_empty() {
            match &mut socket {
                Socket::Plain(s) => s.write_all(&out).unwrap(),
                Socket::Tls(s) => s.write_all(&out).unwrap(),
            }
        }
        match event {
            None => {
                let n = match &mut socket {
                    Socket::Plain(s) => s.read(&mut buf).unwrap(),
                    Socket::Tls(s) => s.read(&mut buf).unwrap_or(0),
                };
                if n == 0 {
                    core.eof();
                } else {
                    core.feed(&buf[..n]);
                }
            }
            Some(UpstreamEvent::StartTls) => {
                let Socket::Plain(tcp) = socket else {
                    panic!("StartTls over TLS")
                };
                socket = tls(tcp);
                core.tls_started();
            }
            Some(UpstreamEvent::NeedToken { .. } | UpstreamEvent::Rejected { .. }) => {
                let Some(token) = tokens.next() else {
                    return End::Rejected;
                };
                core.authenticate(&SecretString::from(token.to_string()));
            }
            Some(UpstreamEvent::Authenticated) => {
                return End::Authenticated(core.into_client_bytes());
            }
            Some(UpstreamEvent::Failed(failure)) => return End::Failed(failure),
        }
    }
}

#[test]
fn microsoft_587_as_the_server_sees_it() {
    // Row 36, and row 23's SMTP twin: an immediate 535, then the retry succeeds.
    let fake = FakeSmtp::start(FakeSmtpOptions {
        answers: vec![SmtpAuthAnswer::microsoft_reject()],
        ..FakeSmtpOptions::microsoft(FakeTls::StartTls)
    });
    let end = drive(&fake, false, "[127.0.0.1]", &[FIRST, SECOND]);
    assert_eq!(end, End::Authenticated(b"235 2.7.0 Accepted\r\n".to_vec()));
    assert_eq!(
        fake.received_lines(0),
        [
            "EHLO [127.0.0.1]".to_owned(),
            "STARTTLS".to_owned(),
            "EHLO [127.0.0.1]".to_owned(),
            "AUTH XOAUTH2".to_owned(),
            xoauth2(ALICE, FIRST),
            "AUTH XOAUTH2".to_owned(),
            xoauth2(ALICE, SECOND),
        ]
    );
    assert_eq!(
        fake.plaintext_received(),
        b"EHLO [127.0.0.1]\r\nSTARTTLS\r\n"
    );
    let auths = fake.authentications();
    assert_eq!(auths.len(), 2);
    assert!(auths.iter().all(|a| !a.initial_response && a.tls));
    assert_eq!(fake.tokens_seen(), [FIRST, SECOND]);
}

#[test]
fn gmail_465_error_challenge_as_the_server_sees_it() {
    // Row 38 with OAUTHBEARER: AQ== answers the challenge, the retry succeeds.
    let fake = FakeSmtp::start(FakeSmtpOptions {
        answers: vec![SmtpAuthAnswer::google_challenge()],
        ..FakeSmtpOptions::gmail(FakeTls::Implicit)
    });
    let end = drive(&fake, true, "client.example", &[FIRST, SECOND]);
    assert_eq!(end, End::Authenticated(b"235 2.7.0 Accepted\r\n".to_vec()));
    let port = fake.port();
    assert_eq!(
        fake.received_lines(0),
        [
            "EHLO client.example".to_owned(),
            "AUTH OAUTHBEARER".to_owned(),
            oauthbearer(ALICE, FIRST, "127.0.0.1", port),
            "AQ==".to_owned(),
            "AUTH OAUTHBEARER".to_owned(),
            oauthbearer(ALICE, SECOND, "127.0.0.1", port),
        ]
    );
    assert_eq!(fake.challenge_answers(), ["AQ=="]);
    assert!(fake.plaintext_received().is_empty());
    // Twice rejected: the driver runs out of tokens.
    let fake = FakeSmtp::start(FakeSmtpOptions {
        answers: vec![
            SmtpAuthAnswer::google_challenge(),
            SmtpAuthAnswer::google_challenge(),
        ],
        ehlo: ["AUTH XOAUTH2", "PIPELINING"].map(String::from).to_vec(),
        ..FakeSmtpOptions::gmail(FakeTls::Implicit)
    });
    assert_eq!(drive(&fake, true, "x", &[FIRST, SECOND]), End::Rejected);
    assert_eq!(fake.challenge_answers(), ["", ""], "XOAUTH2's empty line");
}

#[test]
fn stripped_starttls_and_temporary_failures_as_the_server_sees_them() {
    // Row 37: AUTH offered in clear, no STARTTLS: only the EHLO goes out, never a token.
    let fake = FakeSmtp::start(FakeSmtpOptions::microsoft(FakeTls::Plain));
    let end = drive(&fake, false, "bad name\r\nRSET", &[FIRST]);
    assert_eq!(end, End::Failed(UpstreamFailure::NoStartTls));
    assert_eq!(fake.plaintext_received(), b"EHLO [127.0.0.1]\r\n");
    assert_eq!(fake.auth_attempts(), 0);
    // A 454 ends the login without spending the retry.
    let fake = FakeSmtp::start(FakeSmtpOptions {
        answers: vec![SmtpAuthAnswer::Temporary("4.7.0 Try again later".into())],
        ..FakeSmtpOptions::gmail(FakeTls::StartTls)
    });
    let end = drive(&fake, false, "x", &[FIRST, SECOND]);
    assert!(
        matches!(&end, End::Failed(UpstreamFailure::Protocol(t)) if t.ends_with("454 4.7.0 Try again later")),
        "{end:?}"
    );
    assert_eq!(fake.tokens_seen(), [FIRST]);
    // A reset during AUTH.
    let fake = FakeSmtp::start(FakeSmtpOptions {
        answers: vec![SmtpAuthAnswer::Reset],
        ..FakeSmtpOptions::gmail(FakeTls::Implicit)
    });
    assert_eq!(
        drive(&fake, true, "x", &[FIRST, SECOND]),
        End::Failed(UpstreamFailure::Closed)
    );
}
