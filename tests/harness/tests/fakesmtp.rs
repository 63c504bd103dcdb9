//! The scripted fake SMTP upstream, poked with a raw line client: each TLS mode, each scripted
//! answer, the mail session after AUTH, and what it records.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailoauth_harness::fakesmtp::{Event, GMAIL_EHLO};
use mailoauth_harness::lineclient::{oauthbearer, xoauth2};
use mailoauth_harness::{FakeSmtp, FakeSmtpOptions, FakeTls, LineClient, SmtpAuthAnswer};

const ALICE: &str = "alice@example.test";
const TOKEN: &str = "ya29.a0AfH6SMBx-first-token-0123456789";
const TOKEN2: &str = "ya29.a0AfH6SMBx-second-token-9876543210";

fn tls_client(fake: &FakeSmtp) -> LineClient {
    LineClient::connect_tls(fake.port(), fake.ca_pem_path()).unwrap()
}

/// The reply's lines joined with `|`.
fn reply(c: &mut LineClient) -> String {
    c.read_smtp_reply().unwrap().join("|")
}

#[test]
fn implicit_tls_gmail_login_and_mail_session() {
    let fake = FakeSmtp::start(FakeSmtpOptions::gmail(FakeTls::Implicit));
    let mut c = tls_client(&fake);
    assert_eq!(reply(&mut c), "220 fake.smtp.test ESMTP fakesmtp ready");
    c.send_line("EHLO client.example").unwrap();
    let ehlo = c.read_smtp_reply().unwrap();
    assert_eq!(
        ehlo[0],
        "250-fake.smtp.test at your service, client.example"
    );
    let keywords: Vec<String> = ehlo[1..].iter().map(|l| l[4..].to_string()).collect();
    assert_eq!(keywords, GMAIL_EHLO);
    assert!(ehlo.last().unwrap().starts_with("250 "));

    // The two-step AUTH the proxy uses.
    c.send_line("AUTH XOAUTH2").unwrap();
    assert_eq!(c.read_line().unwrap(), "334 ");
    c.send_line(&xoauth2(ALICE, TOKEN)).unwrap();
    assert_eq!(reply(&mut c), "235 2.7.0 Accepted");

    // DATA with dot-stuffing and 8-bit content, then BDAT chunks with binary content.
    c.send(b"MAIL FROM:<alice@example.test> BODY=8BITMIME\r\nRCPT TO:<bob@example.test>\r\n")
        .unwrap();
    assert_eq!(reply(&mut c), "250 2.1.0 OK");
    assert_eq!(reply(&mut c), "250 2.1.5 OK");
    c.send_line("DATA").unwrap();
    assert_eq!(reply(&mut c), "354 Go ahead");
    c.send("Subject: t\r\n\r\n..leading dot\r\nGr\u{fc}\u{df}e\r\n.\r\n".as_bytes())
        .unwrap();
    assert_eq!(reply(&mut c), "250 2.0.0 OK message stored (fake)");
    let binary: Vec<u8> = (0..=255u8).collect();
    c.send_line("MAIL FROM:<>").unwrap();
    assert_eq!(reply(&mut c), "250 2.1.0 OK");
    c.send_line("RCPT TO:<carol@example.test>").unwrap();
    assert_eq!(reply(&mut c), "250 2.1.5 OK");
    c.send(&[b"BDAT 100\r\n".as_slice(), &binary[..100]].concat())
        .unwrap();
    assert_eq!(reply(&mut c), "250 2.0.0 100 octets received");
    c.send(&[b"BDAT 156 LAST\r\n".as_slice(), &binary[100..]].concat())
        .unwrap();
    assert_eq!(reply(&mut c), "250 2.0.0 OK message stored (fake)");
    // RSET drops a transaction; NOOP; AUTH again is refused; QUIT.
    c.send_line("MAIL FROM:<x@y>").unwrap();
    reply(&mut c);
    c.send_line("RSET").unwrap();
    assert_eq!(reply(&mut c), "250 2.0.0 OK");
    c.send_line("DATA").unwrap();
    assert_eq!(reply(&mut c), "503 5.5.1 RCPT first");
    c.send_line("NOOP").unwrap();
    assert_eq!(reply(&mut c), "250 2.0.0 OK");
    c.send_line("AUTH XOAUTH2").unwrap();
    assert_eq!(reply(&mut c), "503 5.5.1 Already authenticated");
    c.send_line("QUIT").unwrap();
    assert_eq!(reply(&mut c), "221 2.0.0 closing connection");
    assert!(c.is_closed_by_peer());

    let messages = fake.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].mail_from, ALICE);
    assert_eq!(messages[0].rcpt_to, ["bob@example.test"]);
    assert_eq!(
        messages[0].data,
        "Subject: t\r\n\r\n.leading dot\r\nGr\u{fc}\u{df}e\r\n".as_bytes()
    );
    assert!(!messages[0].chunked);
    assert_eq!(messages[1].mail_from, "");
    assert_eq!(messages[1].data, binary);
    assert!(messages[1].chunked);

    assert_eq!(fake.connections(), 1);
    assert_eq!(
        fake.auth_attempts(),
        1,
        "the AUTH after the login is not an attempt"
    );
    assert_eq!(fake.tokens_seen(), [TOKEN]);
    assert!(fake.plaintext_received().is_empty());
    let auths = fake.authentications();
    assert_eq!(auths.len(), 1);
    assert_eq!(auths[0].mechanism, "XOAUTH2");
    assert!(!auths[0].initial_response && auths[0].tls);
    assert_eq!(
        auths[0].decoded,
        format!("user={ALICE}\x01auth=Bearer {TOKEN}\x01\x01").as_bytes()
    );
    let received = fake.received_lines(0);
    assert_eq!(received[..2], ["EHLO client.example", "AUTH XOAUTH2"]);
    assert!(fake.wait_until(Duration::from_secs(5), |f| {
        f.transcript().last() == Some(&Event::Closed { connection: 0 })
    }));
    // Debug output shortens the SASL payloads and tokens.
    let debug = format!("{:?} {:?}", fake.transcript(), fake.authentications());
    assert!(!debug.contains(TOKEN), "{debug}");
}

#[test]
fn starttls_microsoft_offers_auth_only_after_tls() {
    let fake = FakeSmtp::start(FakeSmtpOptions {
        answers: vec![SmtpAuthAnswer::microsoft_reject()],
        ..FakeSmtpOptions::microsoft(FakeTls::StartTls)
    });
    let mut c = LineClient::connect_plain(fake.port()).unwrap();
    reply(&mut c);
    c.send_line("EHLO [127.0.0.1]").unwrap();
    let plain = reply(&mut c);
    assert!(
        plain.ends_with("|250 STARTTLS") && !plain.contains("AUTH"),
        "{plain}"
    );
    c.send_line("AUTH XOAUTH2").unwrap();
    assert_eq!(reply(&mut c), "504 5.7.4 Unrecognized authentication type");
    // A command pipelined behind STARTTLS is plaintext and is dropped.
    c.send(b"STARTTLS\r\nNOOP\r\n").unwrap();
    assert_eq!(reply(&mut c), "220 2.0.0 Ready to start TLS");
    let mut c = c.starttls(fake.ca_pem_path()).unwrap();
    // After TLS, EHLO again first.
    c.send_line("AUTH XOAUTH2").unwrap();
    assert_eq!(reply(&mut c), "503 5.5.1 EHLO first");
    c.send_line("EHLO [127.0.0.1]").unwrap();
    let tls = reply(&mut c);
    assert!(
        tls.contains("|250-AUTH LOGIN XOAUTH2|") && !tls.contains("STARTTLS"),
        "{tls}"
    );
    // Microsoft compares the mechanism case-sensitively; OAUTHBEARER is not offered.
    c.send_line("AUTH xoauth2").unwrap();
    assert_eq!(reply(&mut c), "504 5.7.4 Unrecognized authentication type");
    c.send_line("AUTH OAUTHBEARER").unwrap();
    assert_eq!(reply(&mut c), "504 5.7.4 Unrecognized authentication type");
    // An initial response is accepted, but recorded as such.
    c.send_line(&format!("AUTH XOAUTH2 {}", xoauth2(ALICE, TOKEN)))
        .unwrap();
    assert_eq!(
        reply(&mut c),
        "535 5.7.3 Authentication unsuccessful [fake]"
    );
    c.send_line("AUTH XOAUTH2").unwrap();
    assert_eq!(c.read_line().unwrap(), "334 ");
    c.send_line(&xoauth2(ALICE, TOKEN2)).unwrap();
    assert_eq!(reply(&mut c), "235 2.7.0 Accepted");

    let auths = fake.authentications();
    assert_eq!(
        auths.iter().map(|a| a.initial_response).collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(fake.tokens_seen(), [TOKEN, TOKEN2]);
    let plaintext = String::from_utf8(fake.plaintext_received()).unwrap();
    assert_eq!(
        plaintext,
        "EHLO [127.0.0.1]\r\nAUTH XOAUTH2\r\nSTARTTLS\r\nNOOP\r\n"
    );
    assert_eq!(
        fake.received_lines(0),
        [
            "EHLO [127.0.0.1]",
            "AUTH XOAUTH2",
            "STARTTLS",
            "AUTH XOAUTH2",
            "EHLO [127.0.0.1]",
            "AUTH xoauth2",
            "AUTH OAUTHBEARER",
            &format!("AUTH XOAUTH2 {}", xoauth2(ALICE, TOKEN)),
            "AUTH XOAUTH2",
            &xoauth2(ALICE, TOKEN2),
        ]
    );
}

#[test]
fn error_challenge_temporary_and_reset_answers() {
    let fake = FakeSmtp::start(FakeSmtpOptions {
        answers: vec![
            SmtpAuthAnswer::google_challenge(),
            SmtpAuthAnswer::google_challenge(),
            SmtpAuthAnswer::Temporary("4.7.0 Try again later (fake)".into()),
            SmtpAuthAnswer::Reset,
        ],
        ..FakeSmtpOptions::gmail(FakeTls::Implicit)
    });
    let mut c = tls_client(&fake);
    reply(&mut c);
    c.send_line("EHLO x").unwrap();
    reply(&mut c);
    let response = oauthbearer(ALICE, TOKEN, "127.0.0.1", fake.port());
    c.send_line("AUTH OAUTHBEARER").unwrap();
    assert_eq!(c.read_line().unwrap(), "334 ");
    c.send_line(&response).unwrap();
    let challenge = c.read_line().unwrap();
    let json = STANDARD
        .decode(challenge.strip_prefix("334 ").unwrap())
        .unwrap();
    assert_eq!(
        json,
        br#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#
    );
    c.send_line("AQ==").unwrap();
    assert_eq!(
        reply(&mut c),
        "535 5.7.8 Username and Password not accepted (fake)"
    );
    // Cancelling the challenge gets 501.
    c.send_line("AUTH OAUTHBEARER").unwrap();
    c.read_line().unwrap();
    c.send_line(&response).unwrap();
    c.read_line().unwrap();
    c.send_line("*").unwrap();
    assert_eq!(reply(&mut c), "501 5.7.0 Authentication cancelled");
    // Temporary.
    c.send_line("AUTH XOAUTH2").unwrap();
    c.read_line().unwrap();
    c.send_line(&xoauth2(ALICE, TOKEN)).unwrap();
    assert_eq!(reply(&mut c), "454 4.7.0 Try again later (fake)");
    // A response without a token takes no scripted answer.
    c.send_line("AUTH PLAIN").unwrap();
    c.read_line().unwrap();
    c.send_line(&STANDARD.encode("\0alice\0password")).unwrap();
    assert_eq!(reply(&mut c), "535 5.7.8 No bearer token (fake)");
    // Reset.
    c.send_line("AUTH XOAUTH2").unwrap();
    c.read_line().unwrap();
    c.send_line(&xoauth2(ALICE, TOKEN)).unwrap();
    assert!(c.is_closed_by_peer());
    assert_eq!(fake.challenge_answers(), ["AQ==", "*"]);
    assert_eq!(fake.auth_attempts(), 5);
    assert_eq!(fake.tokens_seen().len(), 4);
}

#[test]
fn plain_server_offers_auth_without_starttls() {
    // The stripped case: AUTH in clear, no STARTTLS; what a proxy must refuse to use.
    let fake = FakeSmtp::start(FakeSmtpOptions::microsoft(FakeTls::Plain));
    let mut c = LineClient::connect_plain(fake.port()).unwrap();
    reply(&mut c);
    c.send_line("EHLO").unwrap();
    assert_eq!(
        reply(&mut c),
        "501 5.5.4 Empty HELO/EHLO argument not allowed"
    );
    c.send_line("MAIL FROM:<a@b>").unwrap();
    assert_eq!(reply(&mut c), "530 5.7.0 Authentication Required");
    c.send_line("EHLO x").unwrap();
    let ehlo = reply(&mut c);
    assert!(
        ehlo.contains("AUTH LOGIN XOAUTH2") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    c.send_line("STARTTLS").unwrap();
    assert_eq!(reply(&mut c), "502 5.5.1 STARTTLS not available");
    c.send_line("QUIT").unwrap();
    assert_eq!(reply(&mut c), "221 2.0.0 closing connection");
    assert_eq!(
        fake.plaintext_received(),
        b"EHLO\r\nMAIL FROM:<a@b>\r\nEHLO x\r\nSTARTTLS\r\nQUIT\r\n"
    );
}

#[test]
fn a_refusing_greeting() {
    let fake = FakeSmtp::start(FakeSmtpOptions {
        greeting: Some("554 5.3.2 No SMTP service here (fake)".into()),
        ..FakeSmtpOptions::gmail(FakeTls::Implicit)
    });
    let mut c = tls_client(&fake);
    assert_eq!(reply(&mut c), "554 5.3.2 No SMTP service here (fake)");
    c.send_line("EHLO x").unwrap();
    assert_eq!(reply(&mut c), "503 5.5.1 No service here");
    c.send_line("QUIT").unwrap();
    assert_eq!(reply(&mut c), "221 2.0.0 Bye");
    assert!(c.is_closed_by_peer());
    assert_eq!(fake.auth_attempts(), 0);
}
