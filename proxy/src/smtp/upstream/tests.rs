//! The upstream core driven by scripted server bytes: Microsoft's, Gmail's and Dovecot
//! submission's replies (captured ones where we have them), each script delivered whole, one
//! byte at a time and in random chunkings, with the exact bytes the core writes asserted.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;

mod failures;
mod fake;

const MS_GREETING: &[u8] = b"220 BN0PR04CA0123.outlook.office365.com Microsoft ESMTP MAIL \
Service ready at Sun, 29 Nov 2026 09:00:00 +0000 [08DD1234ABCD5678]\r\n";
/// Microsoft 365 on 587 before TLS: STARTTLS, no AUTH.
const MS_EHLO_PLAIN: &[u8] = b"250-BN0PR04CA0123.outlook.office365.com Hello [192.0.2.7]\r\n\
250-SIZE 157286400\r\n250-PIPELINING\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n\
250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n";
/// After TLS: AUTH LOGIN XOAUTH2 (no OAUTHBEARER), no STARTTLS.
const MS_EHLO_TLS: &[u8] = b"250-BN0PR04CA0123.outlook.office365.com Hello [192.0.2.7]\r\n\
250-SIZE 157286400\r\n250-PIPELINING\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n\
250-AUTH LOGIN XOAUTH2\r\n250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n";
const MS_KEYWORDS: [&str; 9] = [
    "SIZE 157286400",
    "PIPELINING",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "AUTH LOGIN XOAUTH2",
    "8BITMIME",
    "BINARYMIME",
    "CHUNKING",
    "SMTPUTF8",
];
const MS_OK: &[u8] = b"235 2.7.0 Authentication successful\r\n";
const MS_NO: &[u8] = b"535 5.7.3 Authentication unsuccessful \
[BN0PR04CA0123.namprd04.prod.outlook.com 2026-11-29T09:00:00.000Z 08DD1234ABCD5678]\r\n";

const GMAIL_GREETING: &[u8] = b"220 smtp.gmail.com ESMTP a1b2c3d4e5f6g7.123 - gsmtp\r\n";
const GMAIL_EHLO: &[u8] = b"250-smtp.gmail.com at your service, [192.0.2.7]\r\n\
250-SIZE 35882577\r\n250-8BITMIME\r\n\
250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\r\n\
250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n";
/// `{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`
const GMAIL_CHALLENGE: &[u8] = b"334 eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==\r\n";
const GMAIL_NO: &[u8] = b"535-5.7.8 Username and Password not accepted. For more information, \
go to\r\n535 5.7.8  https://support.google.com/mail/?p=BadCredentials a1b2c3d4e5f6g7.123 - gsmtp\r\n";
const GMAIL_OK: &[u8] = b"235 2.7.0 Accepted\r\n";

const DOVECOT_GREETING: &[u8] = b"220 mail.example.test Dovecot ready.\r\n";
const DOVECOT_EHLO: &[u8] = b"250-mail.example.test\r\n250-8BITMIME\r\n\
250-AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER\r\n250-BURL imap\r\n250-CHUNKING\r\n\
250-ENHANCEDSTATUSCODES\r\n250-SIZE\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n";
const DOVECOT_OK: &[u8] = b"235 2.7.0 Logged in.\r\n";
const DOVECOT_NO: &[u8] = b"535 5.7.8 Authentication failed.\r\n";

fn dovecot_challenge(status: &str) -> Vec<u8> {
    let json = format!(
        r#"{{"status":"{status}","schemes":"bearer","scope":"mail","openid-configuration":"http://127.0.0.1:1/.well-known/openid-configuration"}}"#
    );
    format!("334 {}\r\n", STANDARD.encode(json)).into_bytes()
}

/// `bytes` (ASCII) with `from` replaced by `to`.
fn replace(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(text.contains(from));
    text.replace(from, to).into_bytes()
}

fn options(implicit_tls: bool) -> UpstreamOptions {
    UpstreamOptions {
        implicit_tls,
        host: "smtp.example.test".into(),
        port: if implicit_tls { 465 } else { 587 },
        user: "alice@example.test".into(),
        helo: "client.example".into(),
    }
}

fn token() -> SecretString {
    SecretString::from("ya29.tok-123")
}

/// The XOAUTH2 response for [`options`] and [`token`], built here by hand.
fn xoauth2_response() -> String {
    STANDARD.encode("user=alice@example.test\x01auth=Bearer ya29.tok-123\x01\x01")
}

/// The OAUTHBEARER response for [`options`] and [`token`]: the upstream's host and port.
fn oauthbearer_response(port: u16) -> String {
    STANDARD.encode(format!(
        "n,a=alice@example.test,\x01host=smtp.example.test\x01port={port}\x01auth=Bearer ya29.tok-123\x01\x01"
    ))
}

#[derive(Debug, Clone, Copy)]
enum Feed {
    Whole,
    ByteByByte,
    Random(u64),
}

/// A core and the way server bytes reach it.
struct Talk {
    core: UpstreamCore,
    feed: Feed,
    rng: u64,
}

impl Talk {
    fn new(options: UpstreamOptions, feed: Feed) -> Talk {
        let seed = match feed {
            Feed::Random(seed) => seed,
            _ => 1,
        };
        Talk {
            core: UpstreamCore::new(options),
            feed,
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    fn server(&mut self, bytes: &[u8]) {
        match self.feed {
            Feed::Whole => self.core.feed(bytes),
            Feed::ByteByByte => bytes.iter().for_each(|b| self.core.feed(&[*b])),
            Feed::Random(_) => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    self.rng ^= self.rng << 13;
                    self.rng ^= self.rng >> 7;
                    self.rng ^= self.rng << 17;
                    let n = ((self.rng % 24) as usize).min(rest.len());
                    self.core.feed(&rest[..n]);
                    rest = &rest[n..];
                }
            }
        }
    }

    /// What the core wrote since the last call.
    fn sent(&mut self) -> String {
        String::from_utf8(self.core.take_output().to_vec()).unwrap()
    }

    fn events(&mut self) -> Vec<UpstreamEvent> {
        std::iter::from_fn(|| self.core.next_event()).collect()
    }
}

/// Runs `script` with the server's bytes delivered whole, one byte at a time and in 8 random
/// chunkings.
fn all_feeds(script: impl Fn(Feed)) {
    script(Feed::Whole);
    script(Feed::ByteByByte);
    for seed in 1..=8 {
        script(Feed::Random(seed));
    }
}

fn need(mechanism: Mechanism) -> Vec<UpstreamEvent> {
    vec![UpstreamEvent::NeedToken { mechanism }]
}

fn failed(failure: UpstreamFailure) -> Vec<UpstreamEvent> {
    vec![UpstreamEvent::Failed(failure)]
}

fn is_protocol_failure(events: &[UpstreamEvent]) -> bool {
    matches!(
        events,
        [UpstreamEvent::Failed(UpstreamFailure::Protocol(_))]
    )
}

#[test]
fn microsoft_587_sequence_byte_by_byte() {
    // Row 36: EHLO, STARTTLS, EHLO, `AUTH XOAUTH2` alone, the token only after `334 `.
    all_feeds(|feed| {
        let mut t = Talk::new(
            UpstreamOptions {
                helo: DEFAULT_HELO.into(),
                ..options(false)
            },
            feed,
        );
        assert_eq!(t.sent(), "", "the server speaks first");
        t.server(MS_GREETING);
        assert_eq!(t.sent(), "EHLO [127.0.0.1]\r\n");
        t.server(MS_EHLO_PLAIN);
        assert_eq!(t.sent(), "STARTTLS\r\n");
        assert_eq!(t.events(), vec![]);
        assert_eq!(t.core.mechanism(), None, "nothing chosen in plaintext");
        assert!(
            t.core.extensions().is_empty(),
            "the plaintext list is not kept"
        );
        t.server(b"220 2.0.0 SMTP server ready\r\n");
        assert_eq!(t.events(), vec![UpstreamEvent::StartTls]);
        assert_eq!(t.sent(), "");
        t.core.tls_started();
        assert_eq!(t.sent(), "EHLO [127.0.0.1]\r\n");
        t.server(MS_EHLO_TLS);
        assert_eq!(t.events(), need(Mechanism::XOAuth2));
        assert_eq!(t.core.extensions(), MS_KEYWORDS);
        assert_eq!(t.sent(), "");
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "AUTH XOAUTH2\r\n", "no initial response");
        assert_eq!(t.events(), vec![]);
        t.server(b"334 \r\n");
        assert_eq!(t.sent(), format!("{}\r\n", xoauth2_response()));
        t.server(MS_OK);
        assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
        assert_eq!(t.sent(), "");
        assert_eq!(t.core.mechanism(), Some(Mechanism::XOAuth2));
        assert_eq!(t.core.into_client_bytes(), MS_OK);
    });
}

#[test]
fn microsoft_immediate_535_twice_and_no_third_attempt() {
    all_feeds(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(&[MS_GREETING, MS_EHLO_TLS].concat());
        assert_eq!(t.sent(), "EHLO client.example\r\n");
        assert_eq!(t.events(), need(Mechanism::XOAuth2));
        let rejected = UpstreamEvent::Rejected {
            status: None,
            text: "535 5.7.3 Authentication unsuccessful \
[BN0PR04CA0123.namprd04.prod.outlook.com 2026-11-29T09:00:00.000Z 08DD1234ABCD5678]"
                .into(),
        };
        for _ in 0..MAX_ATTEMPTS {
            t.core.authenticate(&token());
            assert_eq!(t.sent(), "AUTH XOAUTH2\r\n");
            t.server(b"334 \r\n");
            assert_eq!(t.sent(), format!("{}\r\n", xoauth2_response()));
            t.server(MS_NO);
            assert_eq!(t.sent(), "", "an immediate 535 needs no answer");
            assert_eq!(t.events(), vec![rejected.clone()]);
        }
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "");
        assert!(is_protocol_failure(&t.events()));
    });
}

#[test]
fn gmail_465_oauthbearer_error_challenge_then_retry() {
    // Row 38 with OAUTHBEARER: the JSON challenge is answered with AQ==, the 535 is read.
    all_feeds(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(GMAIL_GREETING);
        assert_eq!(t.sent(), "EHLO client.example\r\n");
        t.server(GMAIL_EHLO);
        assert_eq!(
            t.events(),
            need(Mechanism::OAuthBearer),
            "preferred over XOAUTH2"
        );
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "AUTH OAUTHBEARER\r\n");
        t.server(b"334 \r\n");
        assert_eq!(t.sent(), format!("{}\r\n", oauthbearer_response(465)));
        t.server(GMAIL_CHALLENGE);
        assert_eq!(
            t.sent(),
            "AQ==\r\n",
            "the challenge is answered before the 535"
        );
        assert_eq!(t.events(), vec![]);
        t.server(GMAIL_NO);
        assert_eq!(
            t.events(),
            vec![UpstreamEvent::Rejected {
                status: Some("400".into()),
                text: "535 5.7.8 Username and Password not accepted. For more information, go \
to 5.7.8  https://support.google.com/mail/?p=BadCredentials a1b2c3d4e5f6g7.123 - gsmtp"
                    .into()
            }]
        );
        // The retry on the same connection (RFC 4954 §4 allows another AUTH).
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "AUTH OAUTHBEARER\r\n");
        t.server(b"334 \r\n");
        assert_eq!(t.sent(), format!("{}\r\n", oauthbearer_response(465)));
        // What follows the 235 belongs to the splice, a partial line too.
        t.server(&[GMAIL_OK, b"250 2.1.0 OK x"].concat());
        assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
        t.server(b"yz - gsmtp\r\n");
        assert_eq!(t.sent(), "");
        assert_eq!(
            t.core.into_client_bytes(),
            [GMAIL_OK, b"250 2.1.0 OK xyz - gsmtp\r\n"].concat()
        );
    });
}

#[test]
fn dovecot_submission_xoauth2_rejection_is_acked_with_an_empty_line() {
    // Row 38 with XOAUTH2, and Dovecot's answers (dovecot.md).
    all_feeds(|feed| {
        let mut t = Talk::new(options(false), feed);
        t.server(DOVECOT_GREETING);
        assert_eq!(t.sent(), "EHLO client.example\r\n");
        let plain_ehlo = replace(DOVECOT_EHLO, "250-SMTPUTF8", "250-SMTPUTF8\r\n250-STARTTLS");
        t.server(&plain_ehlo);
        assert_eq!(t.sent(), "STARTTLS\r\n");
        t.server(b"220 2.0.0 Begin TLS negotiation now.\r\n");
        assert_eq!(t.events(), vec![UpstreamEvent::StartTls]);
        t.core.tls_started();
        assert_eq!(t.sent(), "EHLO client.example\r\n");
        // This Dovecot offers XOAUTH2 only (Microsoft-like configuration).
        t.server(&replace(
            DOVECOT_EHLO,
            "AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER",
            "AUTH PLAIN XOAUTH2",
        ));
        assert_eq!(t.events(), need(Mechanism::XOAuth2));
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "AUTH XOAUTH2\r\n");
        t.server(b"334 \r\n");
        assert_eq!(t.sent(), format!("{}\r\n", xoauth2_response()));
        t.server(&dovecot_challenge("401"));
        assert_eq!(t.sent(), "\r\n", "XOAUTH2's answer is an empty line");
        t.server(DOVECOT_NO);
        assert_eq!(
            t.events(),
            vec![UpstreamEvent::Rejected {
                status: Some("401".into()),
                text: "535 5.7.8 Authentication failed.".into()
            }]
        );
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "AUTH XOAUTH2\r\n");
        t.server(b"334 \r\n");
        t.sent();
        t.server(DOVECOT_OK);
        assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
        assert_eq!(t.core.into_client_bytes(), DOVECOT_OK);
    });
}

#[test]
fn dovecot_submission_oauthbearer() {
    all_feeds(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(&[DOVECOT_GREETING, DOVECOT_EHLO].concat());
        assert_eq!(t.events(), need(Mechanism::OAuthBearer));
        assert_eq!(
            t.core.extensions(),
            [
                "8BITMIME",
                "AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER",
                "BURL imap",
                "CHUNKING",
                "ENHANCEDSTATUSCODES",
                "SIZE",
                "SMTPUTF8",
                "PIPELINING"
            ]
        );
        t.core.authenticate(&token());
        t.sent();
        t.server(b"334 \r\n");
        assert_eq!(t.sent(), format!("{}\r\n", oauthbearer_response(465)));
        t.server(&dovecot_challenge("invalid_token"));
        assert_eq!(t.sent(), "AQ==\r\n");
        t.server(DOVECOT_NO);
        assert!(matches!(
            &t.events()[..],
            [UpstreamEvent::Rejected { status: Some(s), .. }] if s == "invalid_token"
        ));
    });
}

#[test]
fn old_style_auth_lines_and_the_auth_line_last() {
    all_feeds(|feed| {
        // Only the `AUTH=` line names XOAUTH2 (Postfix broken_sasl_auth_clients style), and
        // it is the last line.
        let mut t = Talk::new(options(true), feed);
        t.server(b"220 hi\r\n250-mx\r\n250-AUTH PLAIN LOGIN\r\n250 AUTH=LOGIN xoauth2\r\n");
        assert_eq!(t.events(), need(Mechanism::XOAuth2));
        assert_eq!(
            t.core.extensions(),
            ["AUTH PLAIN LOGIN", "AUTH=LOGIN xoauth2"]
        );
        let mut t = Talk::new(options(true), feed);
        t.server(b"220 hi\r\n250-mx\r\n250-SIZE 0\r\n250 auth=oauthbearer\r\n");
        assert_eq!(t.events(), need(Mechanism::OAuthBearer));
        // A bare `250` ends the reply too.
        let mut t = Talk::new(options(true), feed);
        t.server(b"220\r\n250-mx\r\n250-Auth xoauth2\r\n250\r\n");
        assert_eq!(t.events(), need(Mechanism::XOAuth2));
        assert_eq!(t.core.extensions(), ["Auth xoauth2", ""]);
    });
}

#[test]
fn no_oauth_mechanism() {
    all_feeds(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(b"220 hi\r\n250-mx\r\n250-AUTH PLAIN LOGIN CRAM-MD5\r\n250-XOAUTH2\r\n250 AUTH=XOAUTH\r\n");
        assert_eq!(t.events(), failed(UpstreamFailure::NoMechanism));
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "");
        assert_eq!(t.events(), vec![]);
    });
}

#[test]
fn the_helo_name_is_checked_again() {
    // Row 40: nothing but a domain or an address literal reaches the upstream's EHLO line.
    let sent_helo = |helo: &str| {
        let mut t = Talk::new(
            UpstreamOptions {
                helo: helo.into(),
                ..options(true)
            },
            Feed::Whole,
        );
        t.server(b"220 hi\r\n");
        t.sent()
    };
    for good in [
        "client.example",
        "[127.0.0.1]",
        "[IPv6:::1]",
        "DESKTOP-AB12CD",
        "printer_01.local.",
    ] {
        assert_eq!(sent_helo(good), format!("EHLO {good}\r\n"));
    }
    let long = "a".repeat(256);
    for bad in [
        "",
        "x\r\nMAIL FROM:<evil@example>",
        "x\nRSET",
        "a b",
        "a\0b",
        "b\u{fc}cher.example",
        "[]",
        "[1.2.3.4",
        "[a]b]",
        "[a\\b]",
        "...",
        "x;rm",
        &long,
    ] {
        assert_eq!(sent_helo(bad), "EHLO [127.0.0.1]\r\n", "{bad:?}");
    }
    assert!(is_helo_name(&"a".repeat(255)));
}

#[test]
fn debug_output_shows_no_token() {
    let mut core = UpstreamCore::new(options(true));
    core.feed(&[GMAIL_GREETING, GMAIL_EHLO].concat());
    core.authenticate(&token());
    let out = core.take_output();
    assert_eq!(&out[..], b"EHLO client.example\r\nAUTH OAUTHBEARER\r\n");
    drop(out);
    // The response waits inside the core for the `334`.
    let debug = format!("{core:?}");
    assert!(
        !debug.contains("tok-123") && !debug.contains(&oauthbearer_response(465)),
        "{debug}"
    );
    let events = format!(
        "{:?}",
        std::iter::from_fn(|| core.next_event()).collect::<Vec<_>>()
    );
    assert!(!events.contains("tok-123"));
}
