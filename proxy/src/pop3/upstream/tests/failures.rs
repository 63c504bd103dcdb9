//! What ends a login: no STLS, injected plaintext, an `-ERR` greeting, EOF, overruns, protocol
//! violations, out-of-turn calls, options that could inject.

use super::*;

#[test]
fn no_stls_means_nothing_more_is_sent() {
    all(|feed| {
        // Stripped: CAPA without STLS. Only the CAPA went out.
        let mut t = Talk::new(options(false), feed);
        t.server(MS_GREETING);
        assert_eq!(t.sent(), "CAPA\r\n");
        t.server(MS_CAPA);
        assert_eq!(t.events(), failed(UpstreamFailure::NoStartTls));
        assert_eq!(t.sent(), "");
        t.core.authenticate(&token());
        t.core.tls_started();
        t.server(b"+ \r\n");
        assert_eq!(t.sent(), "");
        assert_eq!(t.events(), vec![]);
        assert!(t.core.capabilities().is_empty());

        // CAPA refused in plaintext: STLS cannot be known to be there.
        let mut t = Talk::new(options(false), feed);
        t.server(b"+OK ready\r\n");
        assert_eq!(t.sent(), "CAPA\r\n");
        t.server(b"-ERR no CAPA here\r\n");
        assert_eq!(t.events(), failed(UpstreamFailure::NoStartTls));
        assert_eq!(t.sent(), "");
    });
}

#[test]
fn bytes_after_the_stls_ok_are_refused() {
    all(|feed| {
        let mut t = Talk::new(options(false), feed);
        t.server(&[DOVECOT_GREETING, DOVECOT_PLAIN_CAPA].concat());
        t.sent();
        // An injected answer right behind the +OK, in the same read: no StartTls event at all,
        // so the driver never hands those bytes to TLS.
        t.server(b"+OK Begin TLS\r\n+OK\r\nSASL XOAUTH2\r\n.\r\n");
        assert!(is_protocol_failure(&t.events()));
        t.core.tls_started();
        assert_eq!(t.sent(), "");
    });
    // Arriving after the StartTls event was taken (before the handshake) fails as well.
    let mut t = Talk::new(options(false), Feed::Whole);
    t.server(&[DOVECOT_GREETING, DOVECOT_PLAIN_CAPA].concat());
    t.server(b"+OK Begin TLS\r\n");
    assert_eq!(t.events(), vec![UpstreamEvent::StartTls]);
    t.server(b"x");
    assert!(is_protocol_failure(&t.events()));
}

#[test]
fn stls_refused() {
    let mut t = Talk::new(options(false), Feed::Whole);
    t.server(&[DOVECOT_GREETING, DOVECOT_PLAIN_CAPA].concat());
    t.server(b"-ERR not now\r\n");
    assert_eq!(
        t.events(),
        failed(UpstreamFailure::Protocol(
            "the server refused STLS: not now".into()
        ))
    );
}

#[test]
fn bad_greetings() {
    all(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(b"-ERR [SYS/TEMP] Too many connections\r\n");
        assert_eq!(
            t.events(),
            failed(UpstreamFailure::Bye(
                "[SYS/TEMP] Too many connections".into()
            ))
        );
        assert_eq!(t.sent(), "");
        t.server(DOVECOT_GREETING);
        t.core.eof();
        assert_eq!(t.events(), vec![]);

        for greeting in [
            &b"* OK IMAP4rev1 ready\r\n"[..],
            b"220 smtp ready\r\n",
            b"+ \r\n",
        ] {
            let mut t = Talk::new(options(true), feed);
            t.server(greeting);
            assert!(is_protocol_failure(&t.events()));
            assert_eq!(t.sent(), "");
        }
    });
}

#[test]
fn eof_at_any_point_before_the_ok_is_closed() {
    let script: &[&[u8]] = &[MS_GREETING, MS_CAPA, b"+ \r\n"];
    for stop in 0..=script.len() {
        let mut t = Talk::new(options(true), Feed::Whole);
        for bytes in &script[..stop] {
            t.server(bytes);
            if t.events() == need(Mechanism::XOAuth2) {
                t.core.authenticate(&token());
            }
        }
        t.core.eof();
        assert_eq!(t.events(), failed(UpstreamFailure::Closed), "stop {stop}");
    }
    // After the +OK, EOF is the splice's business.
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(&[MS_GREETING, MS_CAPA].concat());
    t.events();
    t.core.authenticate(&token());
    t.server(&[b"+ \r\n", MS_OK].concat());
    t.core.eof();
    assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
}

#[test]
fn overruns() {
    // One line over MAX_LINE, with or without an end.
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(b"+OK ");
    t.server(&vec![b'x'; MAX_LINE]);
    assert!(is_protocol_failure(&t.events()));
    assert_eq!(t.sent(), "");
    // A CAPA list over MAX_RESPONSE, in short lines.
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(b"+OK\r\n+OK\r\n");
    let line = format!("X-{}\r\n", "y".repeat(98));
    for _ in 0..(MAX_RESPONSE / line.len()) {
        t.server(line.as_bytes());
    }
    assert_eq!(t.events(), vec![]);
    t.server(line.as_bytes());
    assert!(is_protocol_failure(&t.events()));
    t.server(b".\r\n");
    assert_eq!(t.events(), vec![]);
}

#[test]
fn unexpected_answers() {
    let setup = |feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(&[DOVECOT_GREETING, DOVECOT_CAPA].concat());
        t.events();
        t.sent();
        t
    };
    all(|feed| {
        // A line while no command is in flight.
        let mut t = setup(feed);
        t.server(b"+OK surprise\r\n");
        assert!(is_protocol_failure(&t.events()));
        // +OK to AUTH before the token.
        let mut t = setup(feed);
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "AUTH OAUTHBEARER\r\n");
        t.server(b"+OK fine\r\n");
        assert!(is_protocol_failure(&t.events()));
        // A second challenge after the error challenge.
        let mut t = setup(feed);
        t.core.authenticate(&token());
        t.server(b"+ \r\n");
        t.server(&dovecot_challenge("invalid_token"));
        t.server(&dovecot_challenge("invalid_token"));
        assert!(is_protocol_failure(&t.events()));
        // Garbage instead of a status.
        let mut t = setup(feed);
        t.core.authenticate(&token());
        t.server(b"+ \r\nwhat\r\n");
        assert!(is_protocol_failure(&t.events()));
        // A garbage CAPA status.
        let mut t = Talk::new(options(true), feed);
        t.server(b"+OK\r\nTOP\r\n");
        assert!(is_protocol_failure(&t.events()));
    });
}

#[test]
fn no_oauth_mechanism() {
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(b"+OK\r\n+OK\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n");
    assert_eq!(t.events(), failed(UpstreamFailure::NoMechanism));
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(b"+OK\r\n");
    assert_eq!(t.sent(), "CAPA\r\n");
    t.server(b"+OK\r\nUSER\r\nTOP\r\n.\r\n");
    assert_eq!(t.events(), failed(UpstreamFailure::NoMechanism));
    assert_eq!(t.sent(), "");
}

#[test]
fn calls_out_of_turn() {
    let mut t = Talk::new(options(true), Feed::Whole);
    t.core.authenticate(&token());
    assert!(is_protocol_failure(&t.events()));
    assert_eq!(t.sent(), "");
    let mut t = Talk::new(options(true), Feed::Whole);
    t.core.tls_started();
    assert!(is_protocol_failure(&t.events()));
    // authenticate() twice without an answer in between.
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(&[MS_GREETING, MS_CAPA].concat());
    t.events();
    t.core.authenticate(&token());
    t.core.authenticate(&token());
    assert!(is_protocol_failure(&t.events()));
    assert_eq!(t.sent(), "", "pending output is dropped on failure");
    // into_client_bytes before Authenticated is empty.
    assert!(t.core.into_client_bytes().is_empty());
}

#[test]
fn options_that_could_inject_fail_at_once() {
    for (user, host) in [
        ("alice\r\nQUIT", "pop.example.test"),
        ("", "pop.example.test"),
        ("alice", "pop.example.test\r\n"),
        ("alice", "pop example"),
        ("alice", ""),
    ] {
        let mut t = Talk::new(
            UpstreamOptions {
                implicit_tls: true,
                host: host.into(),
                port: 995,
                user: user.into(),
            },
            Feed::Whole,
        );
        assert!(is_protocol_failure(&t.events()), "{user:?} {host:?}");
        t.server(MS_GREETING);
        assert_eq!(t.sent(), "");
    }
}

#[test]
fn a_failure_after_a_rejection_keeps_the_rejection() {
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(&[MS_GREETING, MS_CAPA].concat());
    t.events();
    t.core.authenticate(&token());
    t.server(&[b"+ \r\n", MS_ERR].concat());
    t.core.eof();
    let events = t.events();
    assert!(matches!(events[0], UpstreamEvent::Rejected { .. }));
    assert_eq!(events[1], UpstreamEvent::Failed(UpstreamFailure::Closed));
}

#[test]
fn failure_messages_are_plain_words() {
    for failure in [
        UpstreamFailure::Bye("[IN-USE] locked".into()),
        UpstreamFailure::NoStartTls,
        UpstreamFailure::NoMechanism,
        UpstreamFailure::Closed,
        UpstreamFailure::Protocol("x".into()),
    ] {
        let text = failure.to_string();
        assert!(
            text.starts_with("the mail server") || text.starts_with("unexpected"),
            "{text}"
        );
    }
}
