//! The upstream core driven by scripted server bytes: Dovecot's, Gmail's and Microsoft's lines
//! (Dovecot's answers as captured in dovecot.md, the providers' CAPA lists from protocols.md
//! §1.4, their greetings and texts as published in client fixtures), each script delivered
//! whole, one byte at a time and in random chunkings, with the exact bytes the core writes
//! asserted (protocols.md §6 rows 46, 47).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;

mod failures;

const DOVECOT_GREETING: &[u8] = b"+OK Dovecot (Debian) ready.\r\n";
/// Dovecot 2.3 with `auth_mechanisms = plain login xoauth2 oauthbearer`, after TLS.
const DOVECOT_CAPA: &[u8] = b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n\
AUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN XOAUTH2 OAUTHBEARER\r\n.\r\n";
/// The same before TLS on port 110: STLS offered.
const DOVECOT_PLAIN_CAPA: &[u8] = b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n\
AUTH-RESP-CODE\r\nSTLS\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n";
const DOVECOT_OK: &[u8] = b"+OK Logged in.\r\n";
const DOVECOT_ERR: &[u8] = b"-ERR [AUTH] Authentication failed.\r\n";
const GMAIL_GREETING: &[u8] = b"+OK Gpop ready for requests from 192.0.2.7 h1mb12345678abc\r\n";
const GMAIL_CAPA: &[u8] = b"+OK Capability list follows\r\nUSER\r\nRESP-CODES\r\nEXPIRE 0\r\n\
LOGIN-DELAY 300\r\nTOP\r\nUIDL\r\nX-GOOGLE-VERHOEVEN\r\nSASL PLAIN XOAUTH2\r\n.\r\n";
/// `{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`
const GMAIL_CHALLENGE: &[u8] = b"+ eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==\r\n";
const GMAIL_ERR: &[u8] = b"-ERR [AUTH] Invalid credentials.\r\n";
const GMAIL_OK: &[u8] = b"+OK Welcome.\r\n";
const MS_GREETING: &[u8] = b"+OK The Microsoft Exchange POP3 service is ready. \
[TQBOADIAUABSADAAMgBDAEEAMAAwADQANgAuAGEAcABjAHAAcgBkADAAMgAuAHAAcgBvAGQALgBvAHUAdABsAG8AbwBrAC4AYwBvAG0A]\r\n";
const MS_CAPA: &[u8] = b"+OK\r\nTOP\r\nUIDL\r\nSASL PLAIN XOAUTH2\r\nUSER\r\n.\r\n";
const MS_OK: &[u8] = b"+OK User successfully authenticated.\r\n";
const MS_ERR: &[u8] = b"-ERR Authentication failure: unknown user name or bad password.\r\n";

fn dovecot_challenge(status: &str) -> Vec<u8> {
    let json = format!(
        r#"{{"status":"{status}","schemes":"bearer","scope":"mail","openid-configuration":"http://127.0.0.1:1/.well-known/openid-configuration"}}"#
    );
    format!("+ {}\r\n", STANDARD.encode(json)).into_bytes()
}

fn options(implicit_tls: bool) -> UpstreamOptions {
    UpstreamOptions {
        implicit_tls,
        host: "pop.example.test".into(),
        port: if implicit_tls { 995 } else { 110 },
        user: "alice@example.test".into(),
    }
}

fn token() -> SecretString {
    SecretString::from("ya29.tok-123")
}

/// The XOAUTH2 response line for [`options`] and [`token`], built here by hand.
fn xoauth2_line() -> String {
    let b64 = STANDARD.encode("user=alice@example.test\x01auth=Bearer ya29.tok-123\x01\x01");
    format!("{b64}\r\n")
}

/// The OAUTHBEARER response line: the upstream's host and port.
fn oauthbearer_line(port: u16) -> String {
    let b64 = STANDARD.encode(format!(
        "n,a=alice@example.test,\x01host=pop.example.test\x01port={port}\x01auth=Bearer ya29.tok-123\x01\x01"
    ));
    format!("{b64}\r\n")
}

#[derive(Debug, Clone, Copy)]
enum Feed {
    Whole,
    ByteByByte,
    /// Pieces of 1 to 9 bytes, from a seed.
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
            Feed::Random(seed) => seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            _ => 1,
        };
        Talk {
            core: UpstreamCore::new(options),
            feed,
            rng: seed,
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
                    let n = ((self.rng % 9) as usize + 1).min(rest.len());
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

/// Runs `script` with the server's bytes delivered whole, one byte at a time, and in ten random
/// chunkings.
fn all(script: impl Fn(Feed)) {
    script(Feed::Whole);
    script(Feed::ByteByByte);
    for seed in 1..=10 {
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

fn strings(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

#[test]
fn microsoft_995_auth_xoauth2_alone_then_the_token_line() {
    // Row 46, asserted byte by byte.
    all(|feed| {
        let mut t = Talk::new(options(true), feed);
        assert_eq!(t.sent(), "");
        t.server(MS_GREETING);
        assert_eq!(t.sent(), "CAPA\r\n");
        assert_eq!(t.events(), vec![]);
        t.server(MS_CAPA);
        assert_eq!(t.events(), need(Mechanism::XOAuth2), "no OAUTHBEARER");
        assert_eq!(
            t.core.capabilities(),
            strings(&["TOP", "UIDL", "SASL PLAIN XOAUTH2", "USER"])
        );
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "AUTH XOAUTH2\r\n", "no initial response");
        t.server(b"+ \r\n");
        assert_eq!(t.sent(), xoauth2_line());
        assert_eq!(t.events(), vec![]);
        // Bytes after the +OK belong to the spliced stream and are not parsed.
        t.server(&[MS_OK, b"+OK 2 320\r\n+OK partial"].concat());
        assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
        t.server(b" more\r\n");
        assert_eq!(t.sent(), "");
        assert_eq!(
            t.core.into_client_bytes(),
            [MS_OK, b"+OK 2 320\r\n+OK partial more\r\n"].concat()
        );
    });
}

#[test]
fn microsoft_immediate_err_twice_and_no_third_attempt() {
    all(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(&[MS_GREETING, MS_CAPA].concat());
        assert_eq!(t.events(), need(Mechanism::XOAuth2));
        t.sent();
        let rejected = UpstreamEvent::Rejected {
            status: None,
            text: "Authentication failure: unknown user name or bad password.".into(),
        };
        for _ in 0..MAX_ATTEMPTS {
            t.core.authenticate(&token());
            assert_eq!(t.sent(), "AUTH XOAUTH2\r\n");
            t.server(b"+ \r\n");
            assert_eq!(t.sent(), xoauth2_line());
            t.server(MS_ERR);
            assert_eq!(t.sent(), "", "an immediate -ERR needs no answer");
            assert_eq!(t.events(), vec![rejected.clone()]);
        }
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "");
        assert!(is_protocol_failure(&t.events()));
    });
}

#[test]
fn gmail_json_challenge_is_acked_with_an_empty_line_then_retried() {
    all(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(GMAIL_GREETING);
        assert_eq!(t.sent(), "CAPA\r\n");
        t.server(GMAIL_CAPA);
        assert_eq!(t.events(), need(Mechanism::XOAuth2));
        assert_eq!(
            t.core.capabilities(),
            strings(&[
                "USER",
                "RESP-CODES",
                "EXPIRE 0",
                "LOGIN-DELAY 300",
                "TOP",
                "UIDL",
                "X-GOOGLE-VERHOEVEN",
                "SASL PLAIN XOAUTH2"
            ])
        );
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "AUTH XOAUTH2\r\n");
        t.server(b"+ \r\n");
        assert_eq!(t.sent(), xoauth2_line());
        t.server(GMAIL_CHALLENGE);
        assert_eq!(
            t.sent(),
            "\r\n",
            "the challenge is answered before the -ERR"
        );
        assert_eq!(t.events(), vec![]);
        t.server(GMAIL_ERR);
        assert_eq!(
            t.events(),
            vec![UpstreamEvent::Rejected {
                status: Some("400".into()),
                text: "[AUTH] Invalid credentials.".into()
            }]
        );
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "AUTH XOAUTH2\r\n");
        t.server(b"+ \r\n");
        assert_eq!(t.sent(), xoauth2_line());
        t.server(GMAIL_OK);
        assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
        assert_eq!(t.core.mechanism(), Some(Mechanism::XOAuth2));
        assert_eq!(t.core.into_client_bytes(), GMAIL_OK);
    });
}

#[test]
fn dovecot_oauthbearer_rejection_is_acked_with_0x01() {
    all(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(&[DOVECOT_GREETING, DOVECOT_CAPA].concat());
        assert_eq!(t.sent(), "CAPA\r\n");
        assert_eq!(
            t.events(),
            need(Mechanism::OAuthBearer),
            "preferred over XOAUTH2"
        );
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "AUTH OAUTHBEARER\r\n");
        t.server(b"+ \r\n");
        assert_eq!(t.sent(), oauthbearer_line(995));
        t.server(&dovecot_challenge("invalid_token"));
        assert_eq!(t.sent(), "AQ==\r\n");
        t.server(DOVECOT_ERR);
        assert_eq!(
            t.events(),
            vec![UpstreamEvent::Rejected {
                status: Some("invalid_token".into()),
                text: "[AUTH] Authentication failed.".into()
            }]
        );
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "AUTH OAUTHBEARER\r\n");
        t.server(&[b"+ \r\n", DOVECOT_OK].concat());
        assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
        assert_eq!(t.core.into_client_bytes(), DOVECOT_OK);
    });
}

#[test]
fn dovecot_xoauth2_rejection_is_acked_with_an_empty_line() {
    all(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(DOVECOT_GREETING);
        t.server(b"+OK\r\nUSER\r\nSASL PLAIN XOAUTH2\r\n.\r\n");
        assert_eq!(t.events(), need(Mechanism::XOAuth2));
        t.core.authenticate(&token());
        t.server(b"+ \r\n");
        assert_eq!(
            t.sent(),
            format!("CAPA\r\nAUTH XOAUTH2\r\n{}", xoauth2_line())
        );
        t.server(&dovecot_challenge("401"));
        assert_eq!(t.sent(), "\r\n");
        t.server(DOVECOT_ERR);
        assert!(matches!(
            &t.events()[..],
            [UpstreamEvent::Rejected { status: Some(s), .. }] if s == "401"
        ));
    });
}

#[test]
fn stls_then_capa_again_and_only_the_tls_list_counts() {
    // Row 47's upstream side: STLS, the handshake, then a fresh CAPA.
    all(|feed| {
        let mut t = Talk::new(options(false), feed);
        t.server(DOVECOT_GREETING);
        assert_eq!(t.sent(), "CAPA\r\n");
        t.server(DOVECOT_PLAIN_CAPA);
        assert_eq!(t.sent(), "STLS\r\n");
        assert_eq!(t.events(), vec![]);
        assert_eq!(t.core.mechanism(), None, "no mechanism chosen in plaintext");
        assert!(
            t.core.capabilities().is_empty(),
            "plaintext CAPA is not told"
        );
        t.server(b"+OK Begin TLS negotiation now.\r\n");
        assert_eq!(t.events(), vec![UpstreamEvent::StartTls]);
        assert_eq!(t.sent(), "");
        t.core.tls_started();
        assert_eq!(t.sent(), "CAPA\r\n");
        assert!(t.core.capabilities().is_empty());
        t.server(DOVECOT_CAPA);
        assert_eq!(t.events(), need(Mechanism::OAuthBearer));
        assert!(!t.core.capabilities().contains(&"STLS".to_string()));
        assert!(t.core.capabilities().contains(&"PIPELINING".to_string()));
        t.core.authenticate(&token());
        t.server(b"+ \r\n");
        assert_eq!(
            t.sent(),
            format!("AUTH OAUTHBEARER\r\n{}", oauthbearer_line(110))
        );
        t.server(DOVECOT_OK);
        assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
    });
}

#[test]
fn microsoft_110_stls() {
    all(|feed| {
        let mut t = Talk::new(options(false), feed);
        t.server(MS_GREETING);
        t.server(b"+OK\r\nTOP\r\nUIDL\r\nSTLS\r\nUSER\r\n.\r\n");
        assert_eq!(t.sent(), "CAPA\r\nSTLS\r\n");
        t.server(b"+OK Begin TLS negotiation\r\n");
        assert_eq!(t.events(), vec![UpstreamEvent::StartTls]);
        t.core.tls_started();
        t.server(MS_CAPA);
        assert_eq!(t.events(), need(Mechanism::XOAuth2));
        assert_eq!(t.sent(), "CAPA\r\n");
    });
}

#[test]
fn temporary_refusals_fail_without_burning_the_retry() {
    for err in [
        &b"-ERR [SYS/TEMP] Server busy, try again later\r\n"[..],
        b"-ERR [IN-USE] Mailbox locked by another session\r\n",
        b"-ERR [LOGIN-DELAY] Minimum time between logins not reached\r\n",
    ] {
        let text = display_text(&err[5..]);
        all(|feed| {
            // After the token (Gmail's LOGIN-DELAY, a locked maildrop)…
            let mut t = Talk::new(options(true), feed);
            t.server(&[GMAIL_GREETING, GMAIL_CAPA].concat());
            t.events();
            t.core.authenticate(&token());
            t.server(b"+ \r\n");
            t.server(err);
            assert_eq!(t.events(), failed(UpstreamFailure::Bye(text.clone())));
            // … after the error challenge's answer, and at the AUTH command itself.
            let mut t = Talk::new(options(true), feed);
            t.server(&[GMAIL_GREETING, GMAIL_CAPA].concat());
            t.events();
            t.core.authenticate(&token());
            t.server(&[b"+ \r\n", GMAIL_CHALLENGE, err].concat());
            assert_eq!(t.events(), failed(UpstreamFailure::Bye(text.clone())));
            let mut t = Talk::new(options(true), feed);
            t.server(&[MS_GREETING, MS_CAPA].concat());
            t.events();
            t.core.authenticate(&token());
            t.sent();
            t.server(err);
            assert_eq!(t.sent(), "", "no token after a refusal");
            assert_eq!(t.events(), failed(UpstreamFailure::Bye(text.clone())));
        });
    }
    // Other codes are rejections.
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(&[MS_GREETING, MS_CAPA].concat());
    t.events();
    t.core.authenticate(&token());
    t.server(b"+ \r\n-ERR [SYS/PERM] Account disabled\r\n");
    assert_eq!(
        t.events(),
        vec![UpstreamEvent::Rejected {
            status: None,
            text: "[SYS/PERM] Account disabled".into()
        }]
    );
}

#[test]
fn a_server_without_capa_gets_xoauth2() {
    all(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n");
        t.server(b"-ERR Unknown command\r\n");
        assert_eq!(t.events(), need(Mechanism::XOAuth2));
        assert!(t.core.capabilities().is_empty());
        t.core.authenticate(&token());
        t.server(&[b"+\r\n", &b"+OK maildrop has 2 messages\r\n"[..]].concat());
        assert_eq!(
            t.sent(),
            format!("CAPA\r\nAUTH XOAUTH2\r\n{}", xoauth2_line())
        );
        assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
        // Refused before the token: the server has no XOAUTH2; nothing to refresh.
        let mut t = Talk::new(options(true), feed);
        t.server(b"+OK ready\r\n-ERR what\r\n");
        t.events();
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "CAPA\r\nAUTH XOAUTH2\r\n");
        t.server(b"-ERR Unrecognized authentication type\r\n");
        assert_eq!(t.events(), failed(UpstreamFailure::NoMechanism));
    });
}

#[test]
fn capa_dot_stuffing_and_odd_lines() {
    let mut t = Talk::new(options(true), Feed::Whole);
    t.server(b"+OK\r\n");
    t.server(b"+OK here\r\n..dotted\r\nSASL\tXOAUTH2\r\n\r\nIMPLEMENTATION a\x1bb\n.\r\n");
    assert_eq!(t.events(), need(Mechanism::XOAuth2));
    assert_eq!(
        t.core.capabilities(),
        strings(&[".dotted", "SASL XOAUTH2", "", "IMPLEMENTATION a b"])
    );
}

#[test]
fn debug_output_shows_no_token() {
    let mut core = UpstreamCore::new(options(true));
    core.feed(&[MS_GREETING, MS_CAPA].concat());
    core.authenticate(&token());
    let out = core.take_output();
    assert_eq!(&out[..], b"CAPA\r\nAUTH XOAUTH2\r\n");
    drop(out);
    // The response waits inside the core for the `+`.
    let debug = format!("{core:?}");
    assert!(
        !debug.contains("tok-123") && !debug.contains(xoauth2_line().trim()),
        "{debug}"
    );
    let events = format!(
        "{:?}",
        std::iter::from_fn(|| core.next_event()).collect::<Vec<_>>()
    );
    assert!(!events.contains("tok-123"));
}
