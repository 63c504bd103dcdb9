//! What ends a login: no STARTTLS, injected plaintext, PREAUTH, BYE, EOF, overruns, protocol
//! violations, out-of-turn calls, options that could inject.

use super::*;

#[test]
fn no_starttls_means_nothing_more_is_sent() {
    both(|feed| {
        // Capabilities in the greeting: not one byte goes out.
        let mut t = Talk::new(options(false), feed);
        t.server(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER] stripped\r\n");
        assert_eq!(t.events(), failed(UpstreamFailure::NoStartTls));
        t.core.authenticate(&token());
        t.core.tls_started();
        t.server(b"+ \r\n");
        assert_eq!(t.sent(), "");
        assert_eq!(t.events(), vec![]);

        // Capabilities asked for: only the CAPABILITY command went out.
        let mut t = Talk::new(options(false), feed);
        t.server(b"* OK hi\r\n");
        assert_eq!(t.sent(), "mo1 CAPABILITY\r\n");
        t.server(b"* CAPABILITY IMAP4rev1 AUTH=XOAUTH2\r\nmo1 OK done\r\n");
        assert_eq!(t.events(), failed(UpstreamFailure::NoStartTls));
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "");
    });
}

#[test]
fn bytes_after_the_starttls_ok_are_refused() {
    both(|feed| {
        let mut t = Talk::new(options(false), feed);
        t.server(DOVECOT_GREETING);
        t.sent();
        // An injected greeting right behind the OK, in the same read: no StartTls event at all,
        // so the driver never hands those bytes to TLS.
        t.server(b"mo1 OK Begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] injected\r\n");
        assert!(is_protocol_failure(&t.events()));
        t.core.tls_started();
        assert_eq!(t.sent(), "");
    });
    // Arriving after the StartTls event was taken (before the handshake) fails as well.
    let mut t = Talk::new(options(false), Feed::Whole);
    t.server(DOVECOT_GREETING);
    t.server(b"mo1 OK Begin TLS\r\n");
    assert_eq!(t.events(), vec![UpstreamEvent::StartTls]);
    t.server(b"x");
    assert!(is_protocol_failure(&t.events()));
}

#[test]
fn starttls_refused() {
    let mut t = Talk::new(options(false), Feed::Whole);
    t.server(DOVECOT_GREETING);
    t.server(b"mo1 BAD not now\r\n");
    assert_eq!(
        t.events(),
        failed(UpstreamFailure::Protocol(
            "the server refused STARTTLS: not now".into()
        ))
    );
}

#[test]
fn preauth_and_bye_greetings() {
    both(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(b"* PREAUTH [CAPABILITY IMAP4rev1] Logged in as alice\r\n");
        assert_eq!(t.events(), failed(UpstreamFailure::Preauth));
        assert_eq!(t.sent(), "");

        let mut t = Talk::new(options(true), feed);
        t.server(b"* BYE Too many connections\r\n");
        assert_eq!(
            t.events(),
            failed(UpstreamFailure::Bye("Too many connections".into()))
        );
        t.server(DOVECOT_GREETING);
        t.core.eof();
        assert_eq!(t.events(), vec![], "nothing after a failure");
    });
}

#[test]
fn bye_during_authentication() {
    both(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(DOVECOT_GREETING);
        t.events();
        t.core.authenticate(&token());
        t.sent();
        t.server(b"* CAPABILITY IMAP4rev1\r\n* BYE [UNAVAILABLE] Server shutting down\r\n");
        assert_eq!(
            t.events(),
            failed(UpstreamFailure::Bye(
                "[UNAVAILABLE] Server shutting down".into()
            ))
        );
    });
}

#[test]
fn eof_before_and_after_login() {
    // Dovecot closes without a word when the token's user has no userdb entry.
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(DOVECOT_GREETING);
    t.events();
    t.core.authenticate(&token());
    t.server(b"* OK [ALERT] partial li");
    t.core.eof();
    assert_eq!(t.events(), failed(UpstreamFailure::Closed));

    let mut t = Talk::new(options(true), Feed::Whole);
    t.core.eof();
    assert_eq!(t.events(), failed(UpstreamFailure::Closed));

    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(DOVECOT_GREETING);
    t.core.authenticate(&token());
    t.server(DOVECOT_OK);
    t.core.eof();
    assert_eq!(
        t.events(),
        vec![
            UpstreamEvent::NeedToken {
                mechanism: Mechanism::OAuthBearer
            },
            UpstreamEvent::Authenticated
        ]
    );
}

#[test]
fn oversized_line_and_too_much_preauth_data() {
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(&vec![b'*'; MAX_FRAME + 1]);
    assert!(is_protocol_failure(&t.events()));

    // Small lines, but without end: the total is bounded as well.
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(DOVECOT_GREETING);
    t.events();
    let line = b"* OK [ALERT] still here\r\n";
    let mut sent = DOVECOT_GREETING.len();
    while sent <= MAX_PREAUTH_BYTES {
        t.server(line);
        sent += line.len();
    }
    assert!(is_protocol_failure(&t.events()));
}

#[test]
fn protocol_violations() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"HTTP/1.1 400 Bad Request\r\n", b""),
        (b"+ go ahead\r\n", b""),
        (b"* NO go away\r\n", b""),
        (DOVECOT_GREETING, b"zz OK wrong tag\r\n"),
        (DOVECOT_GREETING, b"a1 OK not asked\r\n"),
        (DOVECOT_GREETING, b"* PREAUTH late\r\n"),
        (GMAIL_GREETING, b"mo1 NO no capabilities for you\r\n"),
        (GMAIL_GREETING, b"mo1 OK but no list\r\n"),
        (GMAIL_GREETING, b"+ \r\n"),
    ];
    for (greeting, then) in cases {
        let mut t = Talk::new(options(true), Feed::Whole);
        t.server(greeting);
        t.server(then);
        let events = t.events();
        assert!(
            matches!(
                events.last(),
                Some(UpstreamEvent::Failed(UpstreamFailure::Protocol(_)))
            ),
            "{:?} then {:?}: {events:?}",
            String::from_utf8_lossy(greeting),
            String::from_utf8_lossy(then)
        );
    }
    // During authentication: BAD, a foreign tag, a second challenge after the ack.
    for then in [
        &b"a1 BAD what\r\n"[..],
        b"a2 OK hm\r\n",
        b"+ eyJ9\r\n+ eyJ9\r\n",
    ] {
        let mut t = Talk::new(options(true), Feed::Whole);
        t.server(DOVECOT_GREETING);
        t.events();
        t.core.authenticate(&token());
        t.server(then);
        assert!(is_protocol_failure(&t.events()), "{then:?}");
    }
}

#[test]
fn out_of_turn_calls_fail_and_send_nothing() {
    let mut t = Talk::new(options(true), Feed::Whole);
    t.core.authenticate(&token());
    assert_eq!(t.sent(), "");
    assert!(is_protocol_failure(&t.events()));

    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(DOVECOT_GREETING);
    t.core.tls_started();
    // The NeedToken not yet taken is withdrawn: a failed core asks for nothing.
    assert_eq!(
        t.events(),
        failed(UpstreamFailure::Protocol(
            "internal: tls_started() without a StartTls event".into()
        ))
    );
    assert_eq!(t.core.into_client_bytes(), b"");
}

#[test]
fn options_that_could_inject_fail_at_once() {
    let bad = [
        UpstreamOptions {
            tag: "a1 LOGOUT\r\na2".into(),
            ..options(true)
        },
        UpstreamOptions {
            tag: String::new(),
            ..options(true)
        },
        UpstreamOptions {
            tag: "a+1".into(),
            ..options(true)
        },
        UpstreamOptions {
            user: "alice\x01auth=Bearer x".into(),
            ..options(true)
        },
        UpstreamOptions {
            host: "imap.example.test\x01port=1".into(),
            ..options(true)
        },
    ];
    for options in bad {
        let mut t = Talk::new(options.clone(), Feed::Whole);
        t.server(DOVECOT_GREETING);
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "", "{options:?}");
        assert!(is_protocol_failure(&t.events()), "{options:?}");
    }
    // Tags with `]` or other ASTRING-CHARs are fine.
    let mut t = Talk::new(
        UpstreamOptions {
            tag: "A.0]1".into(),
            ..options(true)
        },
        Feed::Whole,
    );
    t.server(DOVECOT_GREETING);
    t.core.authenticate(&token());
    assert!(t.sent().starts_with("A.0]1 AUTHENTICATE OAUTHBEARER "));
}

#[test]
fn no_oauth_mechanism() {
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=XOAUTH] old server\r\n");
    assert_eq!(t.events(), failed(UpstreamFailure::NoMechanism));
    assert_eq!(t.sent(), "");
}
