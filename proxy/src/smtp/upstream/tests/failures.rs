//! What ends a login: no STARTTLS, injected plaintext, a refusing greeting, 421, temporary
//! errors, EOF, overruns, malformed replies, calls out of turn, options that could inject.

use super::*;

#[test]
fn no_starttls_means_nothing_more_is_sent() {
    // Row 37: the stripping case on 587; the token is never asked for.
    all_feeds(|feed| {
        let mut t = Talk::new(options(false), feed);
        t.server(GMAIL_GREETING);
        assert_eq!(t.sent(), "EHLO client.example\r\n");
        t.server(GMAIL_EHLO);
        assert_eq!(t.events(), failed(UpstreamFailure::NoStartTls));
        t.core.authenticate(&token());
        t.core.tls_started();
        t.server(b"334 \r\n");
        assert_eq!(t.sent(), "");
        assert_eq!(t.events(), vec![]);
        assert!(t.core.extensions().is_empty());
        assert!(t.core.into_client_bytes().is_empty());
    });
}

#[test]
fn bytes_after_the_starttls_220_are_refused() {
    all_feeds(|feed| {
        let mut t = Talk::new(options(false), feed);
        t.server(&[MS_GREETING, MS_EHLO_PLAIN].concat());
        assert_eq!(t.sent(), "EHLO client.example\r\nSTARTTLS\r\n");
        // An injected reply right behind the 220, in the same read: no StartTls event at all,
        // so the driver never hands those bytes to TLS.
        t.core
            .feed(b"220 2.0.0 SMTP server ready\r\n250-x\r\n250 AUTH XOAUTH2\r\n");
        assert!(is_protocol_failure(&t.events()));
        t.core.tls_started();
        assert_eq!(t.sent(), "");
    });
    // Arriving after the StartTls event was taken (before the handshake) fails as well.
    let mut t = Talk::new(options(false), Feed::Whole);
    t.server(&[MS_GREETING, MS_EHLO_PLAIN].concat());
    assert_eq!(t.sent(), "EHLO client.example\r\nSTARTTLS\r\n");
    t.server(b"220 2.0.0 SMTP server ready\r\n");
    assert_eq!(t.events(), vec![UpstreamEvent::StartTls]);
    t.server(b"x");
    assert!(is_protocol_failure(&t.events()));
    t.core.tls_started();
    assert_eq!(t.sent(), "");
}

#[test]
fn refusing_greetings_and_421_anywhere() {
    all_feeds(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(b"554-mx.example no SMTP service here\r\n554 5.3.2 go away\r\n");
        assert_eq!(
            t.events(),
            failed(UpstreamFailure::Bye(
                "554 mx.example no SMTP service here 5.3.2 go away".into()
            ))
        );
        assert_eq!(t.sent(), "");
        for at in 0..4 {
            let mut t = Talk::new(options(true), feed);
            let script: [&[u8]; 3] = [GMAIL_GREETING, GMAIL_EHLO, b""];
            for part in &script[..at.min(2)] {
                t.server(part);
            }
            if at >= 2 {
                t.events();
                t.core.authenticate(&token());
            }
            if at == 3 {
                t.server(b"334 \r\n");
            }
            t.server(b"421 4.7.0 Try again later, closing connection.\r\n");
            assert_eq!(
                t.events(),
                failed(UpstreamFailure::Bye(
                    "421 4.7.0 Try again later, closing connection.".into()
                )),
                "at {at}"
            );
        }
    });
}

#[test]
fn temporary_errors_fail_without_a_rejection() {
    // A 4xx is not a verdict on the token: no Rejected, so no refresh is spent.
    all_feeds(|feed| {
        for (after_response, reply) in [
            (
                false,
                &b"454 4.7.0 Temporary authentication failure\r\n"[..],
            ),
            (
                true,
                b"454-4.7.0 Too many login attempts, please try again later.\r\n454 4.7.0 x\r\n",
            ),
            (true, b"432 4.7.12 A password transition is needed\r\n"),
        ] {
            let mut t = Talk::new(options(true), feed);
            t.server(&[GMAIL_GREETING, GMAIL_EHLO].concat());
            t.events();
            t.core.authenticate(&token());
            if after_response {
                t.server(b"334 \r\n");
            }
            t.sent();
            t.server(reply);
            let events = t.events();
            let [UpstreamEvent::Failed(UpstreamFailure::Protocol(text))] = &events[..] else {
                panic!("{events:?}");
            };
            assert!(
                text.starts_with("the server refused the login for now: 4"),
                "{text}"
            );
            assert_eq!(t.sent(), "");
        }
    });
    // After the error challenge too.
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(&[GMAIL_GREETING, GMAIL_EHLO].concat());
    t.events();
    t.core.authenticate(&token());
    t.server(b"334 \r\n");
    t.server(GMAIL_CHALLENGE);
    t.server(b"454 4.7.0 later\r\n");
    assert!(is_protocol_failure(&t.events()));
}

#[test]
fn a_5xx_to_the_auth_command_is_a_rejection_without_a_token() {
    all_feeds(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(&[MS_GREETING, MS_EHLO_TLS].concat());
        t.events();
        t.sent();
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "AUTH XOAUTH2\r\n");
        t.server(b"504 5.7.4 Unrecognized authentication type\r\n");
        assert_eq!(t.sent(), "");
        assert_eq!(
            t.events(),
            vec![UpstreamEvent::Rejected {
                status: None,
                text: "504 5.7.4 Unrecognized authentication type".into()
            }]
        );
    });
}

#[test]
fn refused_ehlo_and_starttls() {
    let mut t = Talk::new(options(false), Feed::Whole);
    t.server(b"220 hi\r\n501 5.5.4 Invalid domain name\r\n");
    assert_eq!(
        t.events(),
        failed(UpstreamFailure::Protocol(
            "the server refused EHLO: 501 5.5.4 Invalid domain name".into()
        ))
    );
    let mut t = Talk::new(options(false), Feed::Whole);
    t.server(&[MS_GREETING, MS_EHLO_PLAIN].concat());
    t.server(b"454 4.7.0 TLS not available due to temporary reason\r\n");
    assert_eq!(
        t.events(),
        failed(UpstreamFailure::Protocol(
            "the server refused STARTTLS: 454 4.7.0 TLS not available due to temporary reason"
                .into()
        ))
    );
}

#[test]
fn unexpected_replies() {
    all_feeds(|feed| {
        // A reply nobody asked for, while the driver fetches the token: the NeedToken not yet
        // taken is withdrawn.
        let mut t = Talk::new(options(true), feed);
        t.server(&[GMAIL_GREETING, GMAIL_EHLO, b"250 2.0.0 OK\r\n"].concat());
        assert!(is_protocol_failure(&t.events()));
        // 235 before the token went out; 235 after the error acknowledgement; a second challenge.
        for script in [
            &[&b"235 2.7.0 ok\r\n"[..]][..],
            &[b"334 \r\n", GMAIL_CHALLENGE, b"235 2.7.0 ok\r\n"],
            &[b"334 \r\n", GMAIL_CHALLENGE, GMAIL_CHALLENGE],
            &[b"334 \r\n", b"250 2.0.0 OK\r\n"],
        ] {
            let mut t = Talk::new(options(true), feed);
            t.server(&[GMAIL_GREETING, GMAIL_EHLO].concat());
            t.events();
            t.core.authenticate(&token());
            for part in script {
                t.server(part);
            }
            assert!(is_protocol_failure(&t.events()), "{script:?}");
            assert!(t.core.into_client_bytes().is_empty());
        }
    });
}

#[test]
fn malformed_replies() {
    for bad in [
        &b"hello\r\n"[..],
        b"22 ok\r\n",
        b"220_ok\r\n",
        b"220-a\r\n221 b\r\n",
        b"\r\n",
    ] {
        let mut t = Talk::new(options(true), Feed::Whole);
        t.server(bad);
        assert_eq!(
            t.events(),
            failed(UpstreamFailure::Protocol(
                "the server sent a line that is not an SMTP reply".into()
            )),
            "{bad:?}"
        );
    }
}

#[test]
fn eof_before_the_end() {
    all_feeds(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(b"220 hi\r\n250-mx\r\n");
        t.core.eof();
        assert_eq!(t.events(), failed(UpstreamFailure::Closed));
        t.core.eof();
        assert_eq!(t.events(), vec![]);
    });
    // After the login an EOF is the splice's business.
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(&[GMAIL_GREETING, GMAIL_EHLO].concat());
    t.events();
    t.core.authenticate(&token());
    t.server(&[&b"334 \r\n"[..], GMAIL_OK].concat());
    t.core.eof();
    assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
    assert_eq!(t.core.into_client_bytes(), GMAIL_OK);
}

#[test]
fn limits() {
    // One reply of more than 64 KiB, whether or not its lines end.
    for reply in [
        [b"220-".to_vec(), vec![b'x'; MAX_REPLY]].concat(),
        b"220-xxxxxxxxxxxxxxxx\r\n".repeat(MAX_REPLY / 22 + 1),
    ] {
        let mut t = Talk::new(options(true), Feed::Whole);
        t.server(&reply);
        assert!(is_protocol_failure(&t.events()));
        assert_eq!(t.sent(), "");
    }
    // Large replies under the limit are fine: two attempts with 60 KiB refusals each.
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(&[GMAIL_GREETING, GMAIL_EHLO].concat());
    t.events();
    for _ in 0..MAX_ATTEMPTS {
        t.core.authenticate(&token());
        let big_no = [
            b"334 \r\n".to_vec(),
            b"535-5.7.8 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n".repeat(1200),
            b"535 5.7.8 no\r\n".to_vec(),
        ]
        .concat();
        t.server(&big_no);
        assert!(matches!(&t.events()[..], [UpstreamEvent::Rejected { .. }]));
    }
    // The 1 MiB total is a second fence: a login has at most ten replies (greeting, EHLO,
    // STARTTLS, EHLO, and per attempt 334, 334, 535), so the per-reply limit comes first.
    const { assert!(10 * MAX_REPLY < MAX_PREAUTH_BYTES) };
}

#[test]
fn calls_out_of_turn() {
    let mut t = Talk::new(options(true), Feed::Whole);
    t.core.authenticate(&token());
    assert_eq!(t.sent(), "");
    assert!(is_protocol_failure(&t.events()));
    let mut t = Talk::new(options(true), Feed::Whole);
    t.core.tls_started();
    assert!(is_protocol_failure(&t.events()));
    // Twice in a row without the server's answer.
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(&[GMAIL_GREETING, GMAIL_EHLO].concat());
    t.events();
    t.core.authenticate(&token());
    t.core.authenticate(&token());
    assert_eq!(t.sent(), "", "failing drops the pending output");
    assert!(is_protocol_failure(&t.events()));
}

#[test]
fn options_that_could_inject() {
    for options in [
        UpstreamOptions {
            user: "alice\r\nRSET".into(),
            ..options(true)
        },
        UpstreamOptions {
            user: String::new(),
            ..options(true)
        },
        UpstreamOptions {
            host: "smtp.example.test port=1".into(),
            ..options(true)
        },
    ] {
        let mut t = Talk::new(options, Feed::Whole);
        assert!(is_protocol_failure(&t.events()));
        t.server(GMAIL_GREETING);
        assert_eq!(t.sent(), "");
    }
}
