//! The harness Dovecot accepts tokens minted by the test authorization server — over IMAP,
//! POP3 and submission, with XOAUTH2 and OAUTHBEARER — and refuses them at once after
//! revocation or expiry (no auth cache, no failure delay, no anvil penalty).

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailoauth_harness::curl::LOGIN_DENIED;
use mailoauth_harness::lineclient::{oauthbearer, xoauth2};
use mailoauth_harness::{
    AuthServer, AuthServerOptions, Curl, Dovecot, DovecotOptions, LineClient, Mechanisms, Services,
    Style,
};

const ALICE: &str = "alice@example.test";

fn start(style: Style, mechanisms: Mechanisms, services: Services) -> (AuthServer, Dovecot) {
    let auth = AuthServer::start(AuthServerOptions::new(style));
    let options = DovecotOptions::new(&auth)
        .mechanisms(mechanisms)
        .services(services);
    let dovecot = Dovecot::start(options).unwrap_or_else(|e| panic!("{e}"));
    (auth, dovecot)
}

fn curl_login(dovecot: &Dovecot, url: String, token: &str) -> mailoauth_harness::CurlOutput {
    Curl::new(&url)
        .cacert(dovecot.ca_pem_path())
        .user(ALICE)
        .oauth2_bearer(token)
        .run()
        .unwrap()
}

/// Logs in with curl (OAUTHBEARER, or XOAUTH2 when that is all Dovecot offers); the token works,
/// then stops working after `revoke_user`, a fresh one works, and stops after expiry.
fn login_then_refused(auth: &AuthServer, dovecot: &Dovecot, url: &str, method: &str) {
    let token = auth.issue_tokens(ALICE, "mail").access_token;
    let before = auth.introspections();
    let out = curl_login(dovecot, url.to_string(), &token);
    assert!(out.success(), "{out:?}\n{}", dovecot.log_tail());
    assert!(
        dovecot
            .log_tail()
            .contains(&format!("user=<{ALICE}>, method={method}")),
        "{}",
        dovecot.log_tail()
    );

    auth.revoke_user(ALICE);
    let started = Instant::now();
    let out = curl_login(dovecot, url.to_string(), &token);
    assert_eq!(out.code, Some(LOGIN_DENIED), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refusal was delayed"
    );

    let fresh = auth.issue_tokens(ALICE, "mail").access_token;
    assert!(curl_login(dovecot, url.to_string(), &fresh).success());
    auth.expire_access_tokens();
    let out = curl_login(dovecot, url.to_string(), &fresh);
    assert_eq!(out.code, Some(LOGIN_DENIED), "{out:?}");
    // Every login asked the authorization server: nothing was cached.
    assert_eq!(auth.introspections() - before, 4);
}

#[test]
fn imaps_oauthbearer_with_curl() {
    let (auth, dovecot) = start(Style::Generic, Mechanisms::Both, Services::IMAP);
    let url = format!("imaps://127.0.0.1:{}/", dovecot.imaps_port());
    login_then_refused(&auth, &dovecot, &url, "OAUTHBEARER");
    eprintln!(
        "Dovecot (IMAP only) started in {:?}",
        dovecot.startup_time()
    );
}

#[test]
fn imaps_xoauth2_with_curl() {
    let (auth, dovecot) = start(Style::Microsoft, Mechanisms::XOAuth2Only, Services::IMAP);
    let url = format!("imaps://127.0.0.1:{}/", dovecot.imaps_port());
    login_then_refused(&auth, &dovecot, &url, "XOAUTH2");
}

#[test]
fn pop3s_with_curl_and_message_retrieval() {
    let (auth, dovecot) = start(Style::Generic, Mechanisms::Both, Services::POP3);
    let message = b"From: a@example.test\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nbody\r\n";
    dovecot.deliver(ALICE, message).unwrap();
    let token = auth.issue_tokens(ALICE, "mail").access_token;
    let out = curl_login(
        &dovecot,
        format!("pop3s://127.0.0.1:{}/1", dovecot.pop3s_port()),
        &token,
    );
    assert!(out.success(), "{out:?}\n{}", dovecot.log_tail());
    assert_eq!(out.stdout, message);
    let url = format!("pop3s://127.0.0.1:{}/", dovecot.pop3s_port());
    login_then_refused(&auth, &dovecot, &url, "OAUTHBEARER");
}

#[test]
fn pop3s_xoauth2_with_curl() {
    let (auth, dovecot) = start(Style::Google, Mechanisms::XOAuth2Only, Services::POP3);
    let url = format!("pop3s://127.0.0.1:{}/", dovecot.pop3s_port());
    login_then_refused(&auth, &dovecot, &url, "XOAUTH2");
}

#[test]
fn submission_relays_byte_identical_to_the_sink() {
    let (auth, dovecot) = start(Style::Generic, Mechanisms::Both, Services::SUBMISSION);
    let token = auth.issue_tokens(ALICE, "mail").access_token;
    let message = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: test\r\n\r\n\
        .a line with a leading dot\r\n\r\nbye\r\n";
    let send = |url: String, token: &str| {
        Curl::new(&url)
            .cacert(dovecot.ca_pem_path())
            .user(ALICE)
            .oauth2_bearer(token)
            .send_mail(ALICE, &["bob@example.test"], message)
            .run()
            .unwrap()
    };
    // 465-style implicit TLS.
    let smtps = format!("smtps://127.0.0.1:{}/", dovecot.submissions_port());
    let out = send(smtps.clone(), &token);
    assert!(out.success(), "{out:?}\n{}", dovecot.log_tail());
    // 587-style STARTTLS.
    let starttls = format!("smtp://127.0.0.1:{}/", dovecot.submission_port());
    let out = Curl::new(&starttls)
        .ssl_required()
        .cacert(dovecot.ca_pem_path())
        .user(ALICE)
        .oauth2_bearer(&token)
        .send_mail(ALICE, &["bob@example.test"], message)
        .run()
        .unwrap();
    assert!(out.success(), "{out:?}\n{}", dovecot.log_tail());

    let received = dovecot.sink().wait_for_messages(2, Duration::from_secs(5));
    assert_eq!(received.len(), 2);
    for m in &received {
        assert_eq!(m.mail_from, ALICE);
        assert_eq!(m.rcpt_to, vec!["bob@example.test".to_string()]);
        // Dovecot prepends its own Received: field; the rest is what the client sent.
        assert!(m.data.starts_with(b"Received: from "));
        assert_eq!(
            m.data_without_received(),
            message,
            "{}",
            String::from_utf8_lossy(&m.data)
        );
    }

    auth.revoke_user(ALICE);
    let out = send(smtps, &token);
    assert_eq!(out.code, Some(LOGIN_DENIED), "{out:?}");
    assert_eq!(dovecot.sink().messages().len(), 2);
}

/// Raw IMAP: SASL-IR with both mechanisms, STARTTLS, the JSON error challenge, and a long
/// (Microsoft-sized) token.
#[test]
fn imap_by_hand_both_mechanisms() {
    let (auth, dovecot) = start(Style::Microsoft, Mechanisms::Both, Services::IMAP);
    let token = auth.issue_tokens(ALICE, "mail").access_token;
    assert!(token.len() > 1000);

    let mut c = LineClient::connect_tls(dovecot.imaps_port(), dovecot.ca_pem_path()).unwrap();
    let greeting = c.read_line().unwrap();
    assert!(greeting.contains("AUTH=XOAUTH2") && greeting.contains("AUTH=OAUTHBEARER"));
    c.send_line(&format!(
        "a AUTHENTICATE XOAUTH2 {}",
        xoauth2(ALICE, &token)
    ))
    .unwrap();
    let done = c.read_tagged("a").unwrap();
    assert!(done.last().unwrap().starts_with("a OK"), "{done:?}");
    c.send_line("b LOGOUT").unwrap();
    c.read_tagged("b").unwrap();

    // STARTTLS on the plain port, then OAUTHBEARER.
    let mut c = LineClient::connect_plain(dovecot.imap_port()).unwrap();
    assert!(c.read_line().unwrap().contains("STARTTLS"));
    c.send_line("s STARTTLS").unwrap();
    assert!(
        c.read_tagged("s")
            .unwrap()
            .last()
            .unwrap()
            .starts_with("s OK")
    );
    let mut c = c.starttls(dovecot.ca_pem_path()).unwrap();
    let ir = oauthbearer(ALICE, &token, "127.0.0.1", dovecot.imap_port());
    c.send_line(&format!("a AUTHENTICATE OAUTHBEARER {ir}"))
        .unwrap();
    let done = c.read_tagged("a").unwrap();
    assert!(done.last().unwrap().starts_with("a OK"), "{done:?}");

    // A rejected token: a JSON challenge first, then NO after the client's answer.
    auth.revoke_access_token(&token);
    for (mech, ir, answer, status) in [
        ("XOAUTH2", xoauth2(ALICE, &token), "", "401"),
        (
            "OAUTHBEARER",
            oauthbearer(ALICE, &token, "127.0.0.1", 1),
            "AQ==",
            "invalid_token",
        ),
    ] {
        let mut c = LineClient::connect_tls(dovecot.imaps_port(), dovecot.ca_pem_path()).unwrap();
        c.read_line().unwrap();
        c.send_line(&format!("a AUTHENTICATE {mech} {ir}")).unwrap();
        let challenge = c.read_line().unwrap();
        let json = STANDARD
            .decode(challenge.strip_prefix("+ ").expect("a challenge"))
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json["status"], status, "{json}");
        assert_eq!(json["openid-configuration"], auth.discovery_url());
        c.send_line(answer).unwrap();
        let done = c.read_tagged("a").unwrap();
        assert!(
            done.last()
                .unwrap()
                .starts_with("a NO [AUTHENTICATIONFAILED]"),
            "{done:?}"
        );
    }
}

/// Raw POP3 over STLS with XOAUTH2 in two steps (no initial response), as Microsoft documents.
#[test]
fn pop3_stls_two_step_xoauth2() {
    let (auth, dovecot) = start(Style::Microsoft, Mechanisms::XOAuth2Only, Services::POP3);
    let token = auth.issue_tokens(ALICE, "mail").access_token;
    let mut c = LineClient::connect_plain(dovecot.pop3_port()).unwrap();
    assert!(c.read_line().unwrap().starts_with("+OK"));
    c.send_line("STLS").unwrap();
    assert!(c.read_line().unwrap().starts_with("+OK"));
    let mut c = c.starttls(dovecot.ca_pem_path()).unwrap();
    c.send_line("AUTH XOAUTH2").unwrap();
    assert_eq!(c.read_line().unwrap().trim_end(), "+");
    c.send_line(&xoauth2(ALICE, &token)).unwrap();
    let reply = c.read_line().unwrap();
    assert!(reply.starts_with("+OK"), "{reply}");
}

/// A valid token for a login without a userdb entry: Dovecot closes the connection without
/// any reply (the quirk the proxy must treat as a failure).
#[test]
fn token_for_unknown_user_gets_no_reply() {
    let (auth, dovecot) = start(Style::Generic, Mechanisms::Both, Services::IMAP);
    let carol = "carol@example.test";
    let token = auth.issue_tokens(carol, "mail").access_token;
    let mut c = LineClient::connect_tls(dovecot.imaps_port(), dovecot.ca_pem_path()).unwrap();
    c.read_line().unwrap();
    c.send_line(&format!(
        "a AUTHENTICATE XOAUTH2 {}",
        xoauth2(carol, &token)
    ))
    .unwrap();
    assert!(c.read_line().is_err(), "expected the connection to close");
}

#[test]
fn delivered_message_is_fetched_over_imap_and_scope_can_be_required() {
    let auth = AuthServer::start(AuthServerOptions::default());
    let options = DovecotOptions::new(&auth)
        .services(Services::IMAP)
        .required_scope("mail");
    let dovecot = Dovecot::start(options).unwrap_or_else(|e| panic!("{e}"));
    let message = b"Subject: stored\r\n\r\nhello\r\n";
    dovecot.deliver(ALICE, message).unwrap();
    assert_eq!(dovecot.mailbox_messages(ALICE), vec![message.to_vec()]);

    let token = auth.issue_tokens(ALICE, "openid mail").access_token;
    let url = format!("imaps://127.0.0.1:{}/INBOX;UID=1", dovecot.imaps_port());
    let out = curl_login(&dovecot, url.clone(), &token);
    assert!(out.success(), "{out:?}\n{}", dovecot.log_tail());
    assert_eq!(out.stdout, message);

    let wrong_scope = auth.issue_tokens(ALICE, "openid").access_token;
    let out = curl_login(&dovecot, url, &wrong_scope);
    assert_eq!(out.code, Some(LOGIN_DENIED), "{out:?}");
}

#[test]
fn all_services_start_quickly_and_stop_cleanly() {
    let auth = AuthServer::start(AuthServerOptions::default());
    let dovecot = Dovecot::start(DovecotOptions::new(&auth)).unwrap_or_else(|e| panic!("{e}"));
    let ports = [
        dovecot.imap_port(),
        dovecot.imaps_port(),
        dovecot.pop3_port(),
        dovecot.pop3s_port(),
        dovecot.submission_port(),
        dovecot.submissions_port(),
    ];
    eprintln!(
        "Dovecot (all services) started in {:?}",
        dovecot.startup_time()
    );
    assert!(dovecot.startup_time() < Duration::from_secs(3));
    let dir = dovecot.dir().to_path_buf();
    let stopped = Instant::now();
    drop(dovecot);
    eprintln!("stopped in {:?}", stopped.elapsed());
    assert!(!dir.exists(), "the temp dir is removed");
    for port in ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open"
        );
    }
}

#[test]
fn several_dovecots_side_by_side() {
    let auth = AuthServer::start(AuthServerOptions::default());
    let token = auth.issue_tokens(ALICE, "mail").access_token;
    let dovecots: Vec<Dovecot> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    Dovecot::start(DovecotOptions::new(&auth).services(Services::IMAP))
                        .unwrap_or_else(|e| panic!("{e}"))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for dovecot in &dovecots {
        let url = format!("imaps://127.0.0.1:{}/", dovecot.imaps_port());
        let out = curl_login(dovecot, url, &token);
        assert!(out.success(), "{out:?}");
    }
    let mut stopped = dovecots;
    stopped[0].stop();
    let out = curl_login(
        &stopped[1],
        format!("imaps://127.0.0.1:{}/", stopped[0].imaps_port()),
        &token,
    );
    assert_eq!(out.code, Some(7), "connection refused after stop: {out:?}");
}
