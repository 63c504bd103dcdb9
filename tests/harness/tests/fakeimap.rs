//! The scripted fake IMAP upstream, poked with a raw line client: each TLS mode, each scripted
//! answer, the logged-in session, and what it records.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailoauth_harness::fakeimap::{Event, MICROSOFT_CAPABILITIES};
use mailoauth_harness::lineclient::{oauthbearer, xoauth2};
use mailoauth_harness::{AuthAnswer, FakeImap, FakeImapOptions, FakeTls, LineClient};

const ALICE: &str = "alice@example.test";
const TOKEN: &str = "ya29.a0AfH6SMBx-first-token-0123456789";
const TOKEN2: &str = "ya29.a0AfH6SMBx-second-token-9876543210";

fn tls_client(fake: &FakeImap) -> LineClient {
    LineClient::connect_tls(fake.port(), fake.ca_pem_path()).unwrap()
}

#[test]
fn implicit_tls_gmail_login_and_session() {
    let fake = FakeImap::start(FakeImapOptions::gmail(FakeTls::Implicit));
    let mut c = tls_client(&fake);
    let greeting = c.read_line().unwrap();
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1 ")
            && greeting.contains(" SASL-IR ")
            && greeting.contains(" AUTH=OAUTHBEARER")
            && !greeting.contains("STARTTLS"),
        "{greeting}"
    );
    let ir = xoauth2(ALICE, TOKEN);
    c.send_line(&format!("a1 AUTHENTICATE XOAUTH2 {ir}"))
        .unwrap();
    let lines = c.read_tagged("a1").unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("* CAPABILITY IMAP4rev1 ") && lines[0].contains("LITERAL-"));
    assert!(
        lines[1].starts_with("a1 OK [CAPABILITY IMAP4rev1 ") && lines[1].ends_with("] Success")
    );

    // The logged-in session.
    c.send_line("a2 SELECT INBOX").unwrap();
    assert_eq!(
        c.read_tagged("a2").unwrap().last().unwrap(),
        "a2 OK [READ-WRITE] SELECT completed"
    );
    c.send_line("a3 ECHO hello world").unwrap();
    assert_eq!(
        c.read_tagged("a3").unwrap(),
        ["* ECHO hello world", "a3 OK ECHO completed"]
    );
    c.send_line("a4 APPEND INBOX {7}").unwrap();
    assert_eq!(c.read_line().unwrap(), "+ Ready for literal data");
    c.send(b"hi\r\nyou\r\n").unwrap();
    assert_eq!(
        c.read_tagged("a4").unwrap(),
        ["a4 OK [APPENDUID 1 1] APPEND completed"]
    );
    c.send(b"a5 APPEND INBOX {3+}\r\nabc\r\n").unwrap();
    assert_eq!(
        c.read_tagged("a5").unwrap(),
        ["a5 OK [APPENDUID 1 1] APPEND completed"]
    );
    c.send_line("a6 IDLE").unwrap();
    assert_eq!(c.read_line().unwrap(), "+ idling");
    c.send_line("DONE").unwrap();
    assert_eq!(c.read_tagged("a6").unwrap(), ["a6 OK IDLE terminated"]);
    c.send_line("a7 LOGOUT").unwrap();
    assert_eq!(
        c.read_tagged("a7").unwrap(),
        ["* BYE Logging out", "a7 OK LOGOUT completed"]
    );
    assert!(c.is_closed_by_peer());

    assert_eq!(fake.connections(), 1);
    assert_eq!(fake.authenticate_attempts(), 1);
    assert_eq!(fake.tokens_seen(), [TOKEN]);
    assert!(fake.plaintext_received().is_empty());
    let auths = fake.authentications();
    assert_eq!(auths[0].mechanism, "XOAUTH2");
    assert!(auths[0].initial_response && auths[0].tls);
    assert_eq!(
        auths[0].decoded,
        format!("user={ALICE}\x01auth=Bearer {TOKEN}\x01\x01").as_bytes()
    );
    let received = fake.received_lines(0);
    assert_eq!(received[0], format!("a1 AUTHENTICATE XOAUTH2 {ir}"));
    // Literals stay inline; the CRLF after the literal ends the command.
    assert_eq!(received[3], "a4 APPEND INBOX {7}\r\nhi\r\nyou");
    assert_eq!(received[4], "a5 APPEND INBOX {3+}\r\nabc");
    assert!(fake.wait_until(std::time::Duration::from_secs(5), |f| {
        f.transcript().last() == Some(&Event::Closed { connection: 0 })
    }));
    // Debug output shortens the SASL payloads and tokens.
    let debug = format!("{:?} {:?}", fake.transcript(), fake.authentications());
    assert!(!debug.contains(&ir) && !debug.contains(TOKEN), "{debug}");
}

#[test]
fn starttls_then_two_step_oauthbearer_with_an_error_challenge() {
    let fake = FakeImap::start(FakeImapOptions {
        tls: FakeTls::StartTls,
        greeting: None,
        capabilities: "IMAP4rev1 AUTH=OAUTHBEARER".into(),
        answers: vec![AuthAnswer::Challenge {
            json: r#"{"status":"invalid_token"}"#.into(),
            final_no: "[AUTHENTICATIONFAILED] Authentication failed.".into(),
        }],
        ..FakeImapOptions::gmail(FakeTls::StartTls)
    });
    let mut c = LineClient::connect_plain(fake.port()).unwrap();
    let greeting = c.read_line().unwrap();
    assert!(greeting.contains(" STARTTLS]"), "{greeting}");
    // A command pipelined behind STARTTLS is plaintext and is dropped, not run after TLS.
    c.send(b"a STARTTLS\r\nb NOOP\r\n").unwrap();
    assert_eq!(c.read_line().unwrap(), "a OK Begin TLS negotiation now.");
    let mut c = c.starttls(fake.ca_pem_path()).unwrap();
    c.send_line("c CAPABILITY").unwrap();
    assert_eq!(
        c.read_tagged("c").unwrap()[0],
        "* CAPABILITY IMAP4rev1 AUTH=OAUTHBEARER",
        "no STARTTLS after TLS"
    );
    // No SASL-IR advertised: an initial response is refused and uses no scripted answer.
    let response = oauthbearer(ALICE, TOKEN, "127.0.0.1", fake.port());
    c.send_line(&format!("d AUTHENTICATE OAUTHBEARER {response}"))
        .unwrap();
    assert_eq!(c.read_line().unwrap(), "d BAD SASL-IR not advertised");

    c.send_line("e AUTHENTICATE OAUTHBEARER").unwrap();
    assert_eq!(c.read_line().unwrap(), "+ ");
    c.send_line(&response).unwrap();
    let challenge = c.read_line().unwrap();
    let json = STANDARD
        .decode(challenge.strip_prefix("+ ").unwrap())
        .unwrap();
    assert_eq!(json, br#"{"status":"invalid_token"}"#);
    c.send_line("AQ==").unwrap();
    assert_eq!(
        c.read_line().unwrap(),
        "e NO [AUTHENTICATIONFAILED] Authentication failed."
    );

    c.send_line("f AUTHENTICATE OAUTHBEARER").unwrap();
    assert_eq!(c.read_line().unwrap(), "+ ");
    c.send_line(&oauthbearer(ALICE, TOKEN2, "127.0.0.1", fake.port()))
        .unwrap();
    assert!(
        c.read_tagged("f")
            .unwrap()
            .last()
            .unwrap()
            .starts_with("f OK ")
    );

    assert_eq!(fake.challenge_answers(), ["AQ=="]);
    assert_eq!(fake.tokens_seen(), [TOKEN, TOKEN2]);
    assert_eq!(fake.authenticate_attempts(), 3);
    assert_eq!(fake.plaintext_received(), b"a STARTTLS\r\nb NOOP\r\n");
    let auths = fake.authentications();
    assert!(auths.iter().all(|a| a.tls && a.mechanism == "OAUTHBEARER"));
    // The refused initial response was not read as an authentication.
    assert_eq!(auths.len(), 2);
    assert!(!auths[0].initial_response && !auths[1].initial_response);
    assert!(String::from_utf8_lossy(&auths[0].decoded).contains("\x01host=127.0.0.1\x01"));
    assert!(
        fake.transcript()
            .contains(&Event::TlsStarted { connection: 0 })
    );
    assert!(!fake.received_lines(0).contains(&"b NOOP".to_string()));
}

#[test]
fn microsoft_immediate_no_answers_span_connections() {
    let fake = FakeImap::start(FakeImapOptions {
        answers: vec![AuthAnswer::microsoft_no(), AuthAnswer::microsoft_no()],
        ..FakeImapOptions::microsoft(FakeTls::Implicit)
    });
    for (connection, expected) in [
        (0, vec!["a NO AUTHENTICATE failed."]),
        (1, vec!["a NO AUTHENTICATE failed.", "a OK "]),
    ] {
        let mut c = tls_client(&fake);
        assert_eq!(
            c.read_line().unwrap(),
            format!("* OK [CAPABILITY {MICROSOFT_CAPABILITIES}] Gimap ready for requests (fake)")
        );
        for want in expected {
            c.send_line(&format!("a AUTHENTICATE XOAUTH2 {}", xoauth2(ALICE, TOKEN)))
                .unwrap();
            let got = c.read_tagged("a").unwrap();
            assert!(
                got.last().unwrap().starts_with(want),
                "#{connection}: {got:?}"
            );
        }
    }
    assert_eq!(fake.connections(), 2);
    assert_eq!(fake.authenticate_attempts(), 3);
    assert_eq!(fake.tokens_seen().len(), 3);
}

#[test]
fn plain_server_offers_no_starttls_and_records_what_came_in_clear() {
    let fake = FakeImap::start(FakeImapOptions::gmail(FakeTls::Plain));
    let mut c = LineClient::connect_plain(fake.port()).unwrap();
    assert!(!c.read_line().unwrap().contains("STARTTLS"));
    c.send_line("a STARTTLS").unwrap();
    assert_eq!(c.read_line().unwrap(), "a BAD STARTTLS not available");
    // The fake accepts a token in clear, so that a test can catch a client that sends one.
    let ir = xoauth2(ALICE, TOKEN);
    c.send_line(&format!("b AUTHENTICATE XOAUTH2 {ir}"))
        .unwrap();
    assert!(
        c.read_tagged("b")
            .unwrap()
            .last()
            .unwrap()
            .starts_with("b OK")
    );
    let plaintext = String::from_utf8(fake.plaintext_received()).unwrap();
    assert!(plaintext.contains(&ir));
    assert!(!fake.authentications()[0].tls);
}

#[test]
fn preauth_and_bye_greetings() {
    let fake = FakeImap::start(FakeImapOptions {
        greeting: Some("* PREAUTH [CAPABILITY IMAP4rev1] Logged in as alice".into()),
        ..FakeImapOptions::gmail(FakeTls::Implicit)
    });
    let mut c = tls_client(&fake);
    assert_eq!(
        c.read_line().unwrap(),
        "* PREAUTH [CAPABILITY IMAP4rev1] Logged in as alice"
    );
    c.send_line("a SELECT INBOX").unwrap();
    assert!(
        c.read_tagged("a")
            .unwrap()
            .last()
            .unwrap()
            .starts_with("a OK")
    );

    let fake = FakeImap::start(FakeImapOptions {
        greeting: Some("* BYE Too many connections".into()),
        ..FakeImapOptions::gmail(FakeTls::StartTls)
    });
    let mut c = LineClient::connect_plain(fake.port()).unwrap();
    assert_eq!(c.read_line().unwrap(), "* BYE Too many connections");
    assert!(c.is_closed_by_peer());
}

#[test]
fn reset_bye_cancel_and_unsupported_mechanism() {
    let fake = FakeImap::start(FakeImapOptions {
        answers: vec![
            AuthAnswer::google_challenge(),
            AuthAnswer::Reset,
            AuthAnswer::Bye("[UNAVAILABLE] Server shutting down".into()),
        ],
        ..FakeImapOptions::gmail(FakeTls::Implicit)
    });
    let mut c = tls_client(&fake);
    c.read_line().unwrap();
    c.send_line("a AUTHENTICATE CRAM-MD5").unwrap();
    assert_eq!(
        c.read_line().unwrap(),
        "a NO [CANNOT] Unsupported authentication mechanism"
    );
    // Gmail offers PLAIN, but a PLAIN response carries no token: refused, no answer used.
    c.send_line("a AUTHENTICATE PLAIN AGFsaWNlAHg=").unwrap();
    assert_eq!(
        c.read_line().unwrap(),
        "a NO [AUTHENTICATIONFAILED] No bearer token (fake)"
    );
    c.send_line("a AUTHENTICATE XOAUTH2 !!").unwrap();
    assert_eq!(c.read_line().unwrap(), "a BAD Invalid base64 data");
    // The client cancels the error challenge.
    c.send_line(&format!("b AUTHENTICATE XOAUTH2 {}", xoauth2(ALICE, TOKEN)))
        .unwrap();
    assert!(c.read_line().unwrap().starts_with("+ eyJzdGF0dXMiOiI0MDAi"));
    c.send_line("*").unwrap();
    assert_eq!(
        c.read_line().unwrap(),
        "b BAD Authentication aborted by client."
    );
    // Reset: not a word.
    c.send_line(&format!("c AUTHENTICATE XOAUTH2 {}", xoauth2(ALICE, TOKEN)))
        .unwrap();
    assert!(c.read_line().is_err());

    let mut c = tls_client(&fake);
    c.read_line().unwrap();
    c.send_line(&format!(
        "a AUTHENTICATE XOAUTH2 {}",
        xoauth2(ALICE, TOKEN2)
    ))
    .unwrap();
    assert_eq!(
        c.read_line().unwrap(),
        "* BYE [UNAVAILABLE] Server shutting down"
    );
    assert!(c.is_closed_by_peer());
    assert_eq!(fake.authenticate_attempts(), 6);
    assert_eq!(fake.challenge_answers(), ["*"]);
    assert_eq!(fake.tokens_seen(), [TOKEN, TOKEN, TOKEN2]);
}
