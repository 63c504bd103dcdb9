//! The SMTP and POP3 proxies against scripted fake upstreams: Microsoft's 587 and 995 sequences
//! asserted step by step (no initial response on the AUTH line), Gmail's JSON challenge with one
//! refresh and retry, stripped STARTTLS/STLS, old-style `AUTH=` EHLO lines.

use std::time::Duration;

use base64::Engine;
use mailoauth_harness::{
    AuthServer, AuthServerOptions, FakePop3, FakePop3Options, FakeSmtp, FakeSmtpOptions, FakeTls,
    LineClient, Pop3AuthAnswer, SmtpAuthAnswer,
};

use super::*;

fn plain_ir() -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{ALICE}\0{LOCAL_PASSWORD}"))
}

fn smtp_proxy(server: &AuthServer, fake: &FakeSmtp, tls: FakeTls) -> Proxy {
    let scheme = if tls == FakeTls::Implicit {
        "smtps"
    } else {
        "smtp"
    };
    let upstream = format!("{scheme}://127.0.0.1:{}", fake.port());
    Proxy::start_for(
        "smtp",
        server,
        &upstream,
        Some(fake.ca_pem_path()),
        Local::Plain,
    )
}

/// EHLO + AUTH PLAIN through the proxy; returns the AUTH reply.
fn smtp_login(proxy: &Proxy) -> (LineClient, String) {
    let mut c = LineClient::connect_plain(proxy.port).unwrap();
    c.set_timeout(Duration::from_secs(30)).unwrap();
    c.read_smtp_reply().unwrap();
    c.send_line("EHLO client.example").unwrap();
    c.read_smtp_reply().unwrap();
    c.send_line(&format!("AUTH PLAIN {}", plain_ir())).unwrap();
    let reply = c.read_smtp_reply().unwrap().join(" ");
    (c, reply)
}

#[test]
fn smtp_microsoft_587_sequence_step_by_step() {
    let server = AuthServer::start(AuthServerOptions::default());
    let mut options = FakeSmtpOptions::microsoft(FakeTls::StartTls);
    options.answers = vec![SmtpAuthAnswer::microsoft_reject(), SmtpAuthAnswer::Ok];
    let fake = FakeSmtp::start(options);
    let proxy = smtp_proxy(&server, &fake, FakeTls::StartTls);
    let refreshes = server.refresh_requests();
    let (mut c, reply) = smtp_login(&proxy);
    assert!(reply.starts_with("235"), "{reply}\n{}", proxy.log());
    assert_eq!(
        server.refresh_requests(),
        refreshes + 1,
        "one refresh after the 535"
    );
    let auths = fake.authentications();
    assert_eq!(auths.len(), 2);
    for a in &auths {
        assert_eq!(a.mechanism, "XOAUTH2");
        assert!(
            !a.initial_response,
            "AUTH XOAUTH2 alone, the token after 334"
        );
        assert!(a.tls, "only after STARTTLS");
    }
    // The login connection's exchange, in order: EHLO, STARTTLS, EHLO, AUTH, token, …
    let lines = fake.received_lines(fake.connections() - 1);
    let verbs: Vec<String> = lines
        .iter()
        .map(|l| l.split(' ').next().unwrap_or("").to_uppercase())
        .collect();
    let ehlo = verbs.iter().position(|v| v == "EHLO").unwrap();
    assert_eq!(
        &verbs[ehlo..ehlo + 4],
        ["EHLO", "STARTTLS", "EHLO", "AUTH"],
        "{lines:?}"
    );
    c.send_line(&format!("MAIL FROM:<{ALICE}>")).unwrap();
    assert!(c.read_smtp_reply().unwrap()[0].starts_with("250"));
}

#[test]
fn smtp_gmail_challenge_stripped_starttls_and_temporary_failure() {
    let server = AuthServer::start(AuthServerOptions::default());
    let mut options = FakeSmtpOptions::gmail(FakeTls::Implicit);
    options.answers = vec![SmtpAuthAnswer::google_challenge(), SmtpAuthAnswer::Ok];
    let fake = FakeSmtp::start(options);
    let proxy = smtp_proxy(&server, &fake, FakeTls::Implicit);
    let (_c, reply) = smtp_login(&proxy);
    assert!(reply.starts_with("235"), "{reply}");
    assert_eq!(
        fake.challenge_answers(),
        vec!["AQ==".to_string()],
        "OAUTHBEARER's answer to the challenge"
    );

    // Old-style AUTH= lines and a stripped STARTTLS: nothing is sent in clear.
    let mut options = FakeSmtpOptions::gmail(FakeTls::Plain);
    options.ehlo.push("AUTH=XOAUTH2 OAUTHBEARER".into());
    let fake = FakeSmtp::start(options);
    let proxy = smtp_proxy(&server, &fake, FakeTls::Plain);
    let (_c, reply) = smtp_login(&proxy);
    assert!(
        reply.starts_with("454 4.7.0") && reply.contains("STARTTLS"),
        "{reply}"
    );
    assert_eq!(fake.auth_attempts(), 0);
    assert!(!String::from_utf8_lossy(&fake.plaintext_received()).contains("AUTH"));

    // A 454 from the server is temporary: no refresh spent, the client hears 454.
    let mut options = FakeSmtpOptions::microsoft(FakeTls::Implicit);
    options.answers = vec![SmtpAuthAnswer::Temporary("4.7.0 try later".into())];
    let fake = FakeSmtp::start(options);
    let proxy = smtp_proxy(&server, &fake, FakeTls::Implicit);
    let refreshes = server.refresh_requests();
    let (_c, reply) = smtp_login(&proxy);
    assert!(reply.starts_with("454"), "{reply}");
    assert_eq!(server.refresh_requests(), refreshes);
}

fn pop3_proxy(server: &AuthServer, fake: &FakePop3, tls: FakeTls) -> Proxy {
    let scheme = if tls == FakeTls::Implicit {
        "pop3s"
    } else {
        "pop3"
    };
    let upstream = format!("{scheme}://127.0.0.1:{}", fake.port());
    Proxy::start_for(
        "pop3",
        server,
        &upstream,
        Some(fake.ca_pem_path()),
        Local::Plain,
    )
}

fn pop3_login(proxy: &Proxy) -> (LineClient, String) {
    let mut c = LineClient::connect_plain(proxy.port).unwrap();
    c.set_timeout(Duration::from_secs(30)).unwrap();
    c.read_line().unwrap();
    c.send_line(&format!("USER {ALICE}")).unwrap();
    c.read_line().unwrap();
    c.send_line(&format!("PASS {LOCAL_PASSWORD}")).unwrap();
    let reply = c.read_line().unwrap();
    (c, reply)
}

#[test]
fn pop3_microsoft_995_two_line_auth_and_gmail_challenge() {
    let server = AuthServer::start(AuthServerOptions::default());
    let mut options = FakePop3Options::microsoft(FakeTls::Implicit);
    options.messages = vec![b"Subject: one\r\n\r\nbody\r\n".to_vec()];
    let fake = FakePop3::start(options);
    let proxy = pop3_proxy(&server, &fake, FakeTls::Implicit);
    let (mut c, reply) = pop3_login(&proxy);
    assert!(reply.starts_with("+OK"), "{reply}\n{}", proxy.log());
    let auth = &fake.authentications()[0];
    assert_eq!(auth.mechanism, "XOAUTH2");
    assert!(
        !auth.initial_response,
        "AUTH XOAUTH2 alone, the token on the next line"
    );
    c.send_line("STAT").unwrap();
    assert!(c.read_line().unwrap().starts_with("+OK 1 "));

    let mut options = FakePop3Options::gmail(FakeTls::Implicit);
    options.answers = vec![Pop3AuthAnswer::google_challenge(), Pop3AuthAnswer::Ok];
    let fake = FakePop3::start(options);
    let proxy = pop3_proxy(&server, &fake, FakeTls::Implicit);
    let refreshes = server.refresh_requests();
    let (_c, reply) = pop3_login(&proxy);
    assert!(reply.starts_with("+OK"), "{reply}");
    assert_eq!(server.refresh_requests(), refreshes + 1);
    assert_eq!(
        fake.challenge_answers(),
        vec![String::new()],
        "XOAUTH2's empty answer to the challenge"
    );
}

#[test]
fn pop3_stripped_stls_and_microsoft_rejects_twice() {
    let server = AuthServer::start(AuthServerOptions::default());
    let fake = FakePop3::start(FakePop3Options::gmail(FakeTls::Plain));
    let proxy = pop3_proxy(&server, &fake, FakeTls::Plain);
    let (_c, reply) = pop3_login(&proxy);
    assert!(
        reply.starts_with("-ERR [SYS/TEMP]") && reply.contains("STARTTLS"),
        "{reply}"
    );
    assert_eq!(fake.auth_attempts(), 0);

    let mut options = FakePop3Options::microsoft(FakeTls::StartTls);
    options.answers = vec![
        Pop3AuthAnswer::microsoft_reject(),
        Pop3AuthAnswer::microsoft_reject(),
    ];
    let fake = FakePop3::start(options);
    let proxy = pop3_proxy(&server, &fake, FakeTls::StartTls);
    let refreshes = server.refresh_requests();
    let (_c, reply) = pop3_login(&proxy);
    assert!(
        reply.starts_with("-ERR [AUTH]") && reply.contains("rejected the OAuth token"),
        "{reply}"
    );
    assert_eq!(fake.auth_attempts(), 2);
    assert_eq!(
        server.refresh_requests(),
        refreshes + 1,
        "exactly one refresh"
    );
    assert!(
        fake.authentications().iter().all(|a| a.tls),
        "the token went only over TLS"
    );
}
