//! The scripted fake POP3 upstream, poked with a raw line client: each TLS mode, each scripted
//! answer, the maildrop session, and what it records.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailoauth_harness::fakepop3::Event;
use mailoauth_harness::lineclient::{oauthbearer, xoauth2};
use mailoauth_harness::{FakePop3, FakePop3Options, FakeTls, LineClient, Pop3AuthAnswer};

const ALICE: &str = "alice@example.test";
const TOKEN: &str = "ya29.a0AfH6SMBx-first-token-0123456789";
const TOKEN2: &str = "ya29.a0AfH6SMBx-second-token-9876543210";

fn tls_client(fake: &FakePop3) -> LineClient {
    LineClient::connect_tls(fake.port(), fake.ca_pem_path()).unwrap()
}

/// Reads a multi-line answer: its status line, then lines up to `.` (returned un-stuffed).
fn read_multi(c: &mut LineClient) -> (String, Vec<String>) {
    let status = c.read_line().unwrap();
    let mut lines = Vec::new();
    loop {
        let line = c.read_line().unwrap();
        if line == "." {
            return (status, lines);
        }
        lines.push(line.strip_prefix('.').map_or(line.clone(), str::to_string));
    }
}

/// CAPA, then `AUTH XOAUTH2` alone and the token after `+ ` (Microsoft's documented form).
fn login(c: &mut LineClient, token: &str) -> String {
    c.send_line("AUTH XOAUTH2").unwrap();
    assert_eq!(c.read_line().unwrap(), "+ ");
    c.send_line(&xoauth2(ALICE, token)).unwrap();
    c.read_line().unwrap()
}

#[test]
fn implicit_tls_microsoft_login_and_maildrop() {
    let fake = FakePop3::start(FakePop3Options {
        messages: vec![
            b"Subject: one\r\n\r\nhello\r\n.starts with a dot\r\n".to_vec(),
            b"Subject: two\r\n\r\nbody line 1\r\nbody line 2\r\n".to_vec(),
        ],
        ..FakePop3Options::microsoft(FakeTls::Implicit)
    });
    let mut c = tls_client(&fake);
    assert_eq!(c.read_line().unwrap(), "+OK Fake POP3 ready.");
    c.send_line("CAPA").unwrap();
    let (status, caps) = read_multi(&mut c);
    assert!(status.starts_with("+OK"));
    assert_eq!(caps, ["TOP", "UIDL", "SASL PLAIN XOAUTH2", "USER"]);
    c.send_line("STAT").unwrap();
    assert!(
        c.read_line().unwrap().starts_with("-ERR"),
        "not before login"
    );
    assert_eq!(login(&mut c, TOKEN), "+OK User successfully authenticated.");

    c.send_line("STAT").unwrap();
    assert_eq!(c.read_line().unwrap(), "+OK 2 85");
    c.send_line("LIST").unwrap();
    assert_eq!(
        read_multi(&mut c),
        ("+OK".into(), vec!["1 43".into(), "2 42".into()])
    );
    c.send_line("UIDL 2").unwrap();
    assert_eq!(c.read_line().unwrap(), "+OK 2 fake-uid-2");
    // RETR is dot-stuffed on the wire.
    c.send_line("RETR 1").unwrap();
    assert_eq!(c.read_line().unwrap(), "+OK 43 octets");
    let raw: Vec<String> = (0..5).map(|_| c.read_line().unwrap()).collect();
    assert_eq!(
        raw,
        ["Subject: one", "", "hello", "..starts with a dot", "."]
    );
    c.send_line("TOP 2 1").unwrap();
    let (_, top) = read_multi(&mut c);
    assert_eq!(top, ["Subject: two", "", "body line 1"]);
    c.send_line("DELE 1").unwrap();
    assert_eq!(c.read_line().unwrap(), "+OK message 1 deleted");
    c.send_line("RETR 1").unwrap();
    assert!(c.read_line().unwrap().starts_with("-ERR"));
    c.send_line("STAT").unwrap();
    assert_eq!(c.read_line().unwrap(), "+OK 1 42");
    c.send_line("NOOP").unwrap();
    assert_eq!(c.read_line().unwrap(), "+OK");
    c.send_line("QUIT").unwrap();
    assert_eq!(c.read_line().unwrap(), "+OK Bye (1 messages deleted)");
    assert!(c.is_closed_by_peer());

    assert_eq!(fake.connections(), 1);
    assert_eq!(fake.auth_attempts(), 1);
    assert_eq!(fake.tokens_seen(), [TOKEN]);
    assert!(fake.plaintext_received().is_empty());
    assert_eq!(fake.deleted(), [1]);
    let auths = fake.authentications();
    assert_eq!(auths[0].mechanism, "XOAUTH2");
    assert!(!auths[0].initial_response && auths[0].tls);
    assert_eq!(
        auths[0].decoded,
        format!("user={ALICE}\x01auth=Bearer {TOKEN}\x01\x01").as_bytes()
    );
    let received = fake.received_lines(0);
    assert_eq!(&received[2..4], ["AUTH XOAUTH2", &xoauth2(ALICE, TOKEN)]);
    assert!(fake.wait_until(Duration::from_secs(5), |f| {
        f.transcript().last() == Some(&Event::Closed { connection: 0 })
    }));
    // Debug output shortens the SASL payloads and tokens.
    let debug = format!("{:?} {:?}", fake.transcript(), fake.authentications());
    assert!(
        !debug.contains(&xoauth2(ALICE, TOKEN)) && !debug.contains(TOKEN),
        "{debug}"
    );
}

#[test]
fn a_token_as_initial_response_is_too_long_for_pop3() {
    let fake = FakePop3::start(FakePop3Options::microsoft(FakeTls::Implicit));
    let mut c = tls_client(&fake);
    c.read_line().unwrap();
    let long_token = "x".repeat(300);
    c.send_line(&format!("AUTH XOAUTH2 {}", xoauth2(ALICE, &long_token)))
        .unwrap();
    assert!(
        c.read_line()
            .unwrap()
            .starts_with("-ERR Command line too long")
    );
    // A short one fits (it is the length, not the form, that Microsoft refuses).
    c.send_line(&format!("AUTH XOAUTH2 {}", xoauth2("a", "t")))
        .unwrap();
    assert_eq!(
        c.read_line().unwrap(),
        "+OK User successfully authenticated."
    );
    let auths = fake.authentications();
    assert!(auths.iter().all(|a| a.initial_response));
    assert_eq!(fake.tokens_seen(), [long_token.as_str(), "t"]);
}

#[test]
fn stls_then_gmail_challenge_and_retry() {
    let fake = FakePop3::start(FakePop3Options {
        answers: vec![Pop3AuthAnswer::google_challenge()],
        ..FakePop3Options::gmail(FakeTls::StartTls)
    });
    let mut c = LineClient::connect_plain(fake.port()).unwrap();
    c.read_line().unwrap();
    c.send_line("CAPA").unwrap();
    let (_, caps) = read_multi(&mut c);
    assert_eq!(caps.last().map(String::as_str), Some("STLS"));
    // A command pipelined behind STLS is plaintext and is dropped, not run after TLS.
    c.send(b"STLS\r\nUSER x\r\n").unwrap();
    assert_eq!(c.read_line().unwrap(), "+OK Begin TLS negotiation");
    let mut c = c.starttls(fake.ca_pem_path()).unwrap();
    c.send_line("CAPA").unwrap();
    let (_, caps) = read_multi(&mut c);
    assert!(!caps.contains(&"STLS".to_string()), "no STLS after TLS");
    assert!(caps.contains(&"X-GOOGLE-VERHOEVEN".to_string()));
    c.send_line("AUTH XOAUTH2").unwrap();
    assert_eq!(c.read_line().unwrap(), "+ ");
    c.send_line(&xoauth2(ALICE, TOKEN)).unwrap();
    let challenge = c.read_line().unwrap();
    let json = STANDARD
        .decode(challenge.strip_prefix("+ ").unwrap())
        .unwrap();
    assert_eq!(
        json,
        br#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#
    );
    c.send_line("").unwrap();
    assert_eq!(c.read_line().unwrap(), "-ERR [AUTH] Invalid credentials.");
    assert_eq!(
        login(&mut c, TOKEN2),
        "+OK User successfully authenticated."
    );
    c.send_line("QUIT").unwrap();
    assert_eq!(c.read_line().unwrap(), "+OK Bye (0 messages deleted)");

    assert_eq!(fake.auth_attempts(), 2);
    assert_eq!(fake.tokens_seen(), [TOKEN, TOKEN2]);
    assert_eq!(fake.challenge_answers(), [""]);
    let plaintext = String::from_utf8(fake.plaintext_received()).unwrap();
    assert_eq!(plaintext, "CAPA\r\nSTLS\r\nUSER x\r\n");
    // The USER behind STLS was never run (the next line received over TLS is CAPA).
    let received = fake.received_lines(0);
    assert_eq!(&received[..3], ["CAPA", "STLS", "CAPA"]);
}

#[test]
fn oauthbearer_rejection_and_abort_and_temporary_and_reset() {
    let fake = FakePop3::start(FakePop3Options {
        tls: FakeTls::Implicit,
        greeting: Some("+OK Dovecot (Debian) ready.".into()),
        capabilities: vec!["USER".into(), "SASL PLAIN XOAUTH2 OAUTHBEARER".into()],
        answers: vec![
            Pop3AuthAnswer::Challenge {
                json: r#"{"status":"invalid_token"}"#.into(),
                final_err: "[AUTH] Authentication failed.".into(),
            },
            Pop3AuthAnswer::google_challenge(),
            Pop3AuthAnswer::microsoft_reject(),
            Pop3AuthAnswer::Temporary("Server busy".into()),
            Pop3AuthAnswer::Reject("[IN-USE] Mailbox locked".into()),
            Pop3AuthAnswer::Reset,
        ],
        messages: Vec::new(),
    });
    let mut c = tls_client(&fake);
    assert_eq!(c.read_line().unwrap(), "+OK Dovecot (Debian) ready.");
    c.send_line("AUTH").unwrap();
    assert_eq!(read_multi(&mut c).1, ["PLAIN", "XOAUTH2", "OAUTHBEARER"]);
    let ir = oauthbearer(ALICE, TOKEN, "127.0.0.1", fake.port());
    c.send_line("AUTH OAUTHBEARER").unwrap();
    assert_eq!(c.read_line().unwrap(), "+ ");
    c.send_line(&ir).unwrap();
    assert!(c.read_line().unwrap().starts_with("+ "));
    c.send_line("AQ==").unwrap();
    assert_eq!(c.read_line().unwrap(), "-ERR [AUTH] Authentication failed.");
    // `*` aborts a challenge.
    c.send_line("AUTH OAUTHBEARER").unwrap();
    c.read_line().unwrap();
    c.send_line(&ir).unwrap();
    c.read_line().unwrap();
    c.send_line("*").unwrap();
    assert_eq!(
        c.read_line().unwrap(),
        "-ERR Authentication aborted by client."
    );
    for expected in [
        "-ERR Authentication failure: unknown user name or bad password.",
        "-ERR [SYS/TEMP] Server busy",
        "-ERR [IN-USE] Mailbox locked",
    ] {
        c.send_line("AUTH OAUTHBEARER").unwrap();
        c.read_line().unwrap();
        c.send_line(&ir).unwrap();
        assert_eq!(c.read_line().unwrap(), expected);
    }
    // Refusals that take no answer: unsupported mechanism, PLAIN without a token, bad base64.
    c.send_line("AUTH CRAM-MD5").unwrap();
    assert!(
        c.read_line()
            .unwrap()
            .starts_with("-ERR [AUTH] Unsupported")
    );
    c.send_line("AUTH PLAIN AGFsaWNlAHB3").unwrap();
    assert_eq!(c.read_line().unwrap(), "-ERR [AUTH] No bearer token (fake)");
    c.send_line("AUTH XOAUTH2").unwrap();
    c.read_line().unwrap();
    c.send_line("!!").unwrap();
    assert_eq!(c.read_line().unwrap(), "-ERR Invalid base64 data");
    c.send_line("USER alice").unwrap();
    assert_eq!(c.read_line().unwrap(), "+OK");
    c.send_line("PASS secret").unwrap();
    assert!(c.read_line().unwrap().starts_with("-ERR [AUTH]"));
    // The reset.
    c.send_line("AUTH OAUTHBEARER").unwrap();
    c.read_line().unwrap();
    c.send_line(&ir).unwrap();
    assert!(c.is_closed_by_peer());

    assert_eq!(fake.auth_attempts(), 9);
    assert_eq!(fake.tokens_seen().len(), 6);
    assert_eq!(fake.challenge_answers(), ["AQ==", "*"]);
    let auth = &fake.authentications()[0];
    assert_eq!(auth.mechanism, "OAUTHBEARER");
    assert!(!auth.initial_response);
}

#[test]
fn plain_without_stls_and_an_err_greeting() {
    // Plain: no STLS offered, and STLS refused (the stripping case a proxy must catch).
    let fake = FakePop3::start(FakePop3Options::gmail(FakeTls::Plain));
    let mut c = LineClient::connect_plain(fake.port()).unwrap();
    c.read_line().unwrap();
    c.send_line("CAPA").unwrap();
    assert!(!read_multi(&mut c).1.contains(&"STLS".to_string()));
    c.send_line("STLS").unwrap();
    assert_eq!(c.read_line().unwrap(), "-ERR STLS not available");
    c.send_line("QUIT").unwrap();
    assert_eq!(c.read_line().unwrap(), "+OK Bye (fake)");
    assert!(c.is_closed_by_peer());

    let fake = FakePop3::start(FakePop3Options {
        greeting: Some("-ERR [SYS/TEMP] Too many connections".into()),
        ..FakePop3Options::gmail(FakeTls::Implicit)
    });
    let mut c = tls_client(&fake);
    assert_eq!(
        c.read_line().unwrap(),
        "-ERR [SYS/TEMP] Too many connections"
    );
    assert!(c.is_closed_by_peer());
}

#[test]
fn answers_are_shared_across_connections() {
    let fake = FakePop3::start(FakePop3Options {
        answers: vec![Pop3AuthAnswer::microsoft_reject()],
        ..FakePop3Options::microsoft(FakeTls::Implicit)
    });
    let mut c = tls_client(&fake);
    c.read_line().unwrap();
    assert!(login(&mut c, TOKEN).starts_with("-ERR Authentication failure"));
    let mut c2 = tls_client(&fake);
    c2.read_line().unwrap();
    assert_eq!(
        login(&mut c2, TOKEN2),
        "+OK User successfully authenticated."
    );
    c2.send_line("CAPA").unwrap();
    assert_eq!(read_multi(&mut c2).1, ["TOP", "UIDL", "USER", "PIPELINING"]);
    c2.send_line("AUTH XOAUTH2").unwrap();
    assert_eq!(c2.read_line().unwrap(), "-ERR Already authenticated");
    assert_eq!(fake.connections(), 2);
    assert_eq!(fake.authentications()[1].connection, 1);
}
