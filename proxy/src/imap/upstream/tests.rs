//! The upstream core driven by scripted server bytes: Dovecot's, Gmail's and Microsoft's lines
//! (captured ones where we have them), each script delivered whole and one byte at a time, with
//! the exact bytes the core writes asserted.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;

mod failures;

const DOVECOT_GREETING: &[u8] =
    b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE \
LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN AUTH=XOAUTH2 AUTH=OAUTHBEARER] Dovecot (Debian) ready.\r\n";
/// Dovecot configured with `auth_mechanisms = plain login xoauth2` (Microsoft-like).
const DOVECOT_XOAUTH2_GREETING: &[u8] = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID \
ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN AUTH=XOAUTH2] Dovecot (Debian) ready.\r\n";
const DOVECOT_OK: &[u8] = b"a1 OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE \
SORT SORT=DISPLAY THREAD=REFERENCES MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED \
I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE \
SNIPPET=FUZZY PREVIEW=FUZZY STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE] Logged in\r\n";
const GMAIL_GREETING: &[u8] = b"* OK Gimap ready for requests from 192.0.2.7 h1mb12345678abc\r\n";
const GMAIL_CAPS: &[u8] = b"* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST \
CHILDREN X-GM-EXT-1 XYZZY SASL-IR AUTH=XOAUTH2 AUTH=PLAIN AUTH=PLAIN-CLIENTTOKEN AUTH=OAUTHBEARER \
AUTH=XOAUTH\r\nmo1 OK Thats all she wrote! h1mb12345678abc\r\n";
const GMAIL_POST_AUTH_CAPS: &[u8] = b"* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID \
XLIST CHILDREN X-GM-EXT-1 UIDPLUS COMPRESS=DEFLATE ENABLE MOVE CONDSTORE ESEARCH UTF8=ACCEPT \
LIST-EXTENDED LIST-STATUS LITERAL- SPECIAL-USE APPENDLIMIT=35651584\r\n";
/// `{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`
const GMAIL_CHALLENGE: &[u8] = b"+ eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==\r\n";
const GMAIL_NO: &[u8] = b"a1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n";
const MS_GREETING: &[u8] = b"* OK The Microsoft Exchange IMAP4 service is ready. \
[TQBOADIAUABSADAAMgBDAEEAMAAwADQANgAuAGEAcABjAHAAcgBkADAAMgAuAHAAcgBvAGQALgBvAHUAdABsAG8AbwBrAC4AYwBvAG0A]\r\n";
const MS_CAPS: &[u8] = b"* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS \
MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+\r\nmo1 OK CAPABILITY completed.\r\n";

fn dovecot_challenge(status: &str) -> Vec<u8> {
    let json = format!(
        r#"{{"status":"{status}","schemes":"bearer","scope":"mail","openid-configuration":"http://127.0.0.1:1/.well-known/openid-configuration"}}"#
    );
    format!("+ {}\r\n", STANDARD.encode(json)).into_bytes()
}

fn options(implicit_tls: bool) -> UpstreamOptions {
    UpstreamOptions {
        implicit_tls,
        host: "imap.example.test".into(),
        port: if implicit_tls { 993 } else { 143 },
        user: "alice@example.test".into(),
        tag: "a1".into(),
    }
}

fn token() -> SecretString {
    SecretString::from("ya29.tok-123")
}

/// The XOAUTH2 initial response for [`options`] and [`token`], built here by hand.
fn xoauth2_ir() -> String {
    STANDARD.encode("user=alice@example.test\x01auth=Bearer ya29.tok-123\x01\x01")
}

/// The OAUTHBEARER initial response for [`options`] and [`token`]: the upstream's host and port.
fn oauthbearer_ir(port: u16) -> String {
    STANDARD.encode(format!(
        "n,a=alice@example.test,\x01host=imap.example.test\x01port={port}\x01auth=Bearer ya29.tok-123\x01\x01"
    ))
}

#[derive(Debug, Clone, Copy)]
enum Feed {
    Whole,
    ByteByByte,
}

/// A core and the way server bytes reach it.
struct Talk {
    core: UpstreamCore,
    feed: Feed,
}

impl Talk {
    fn new(options: UpstreamOptions, feed: Feed) -> Talk {
        Talk {
            core: UpstreamCore::new(options),
            feed,
        }
    }

    fn server(&mut self, bytes: &[u8]) {
        match self.feed {
            Feed::Whole => self.core.feed(bytes),
            Feed::ByteByByte => bytes.iter().for_each(|b| self.core.feed(&[*b])),
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

/// Runs `script` with the server's bytes delivered whole, then one byte at a time.
fn both(script: impl Fn(Feed)) {
    script(Feed::Whole);
    script(Feed::ByteByByte);
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
fn dovecot_oauthbearer_with_sasl_ir() {
    both(|feed| {
        let mut t = Talk::new(options(true), feed);
        assert_eq!(t.events(), vec![]);
        t.server(DOVECOT_GREETING);
        // Implicit TLS: Dovecot's STARTTLS is ignored, the greeting's capabilities suffice.
        assert_eq!(t.events(), need(Mechanism::OAuthBearer));
        assert_eq!(t.sent(), "");
        assert_eq!(t.core.mechanism(), Some(Mechanism::OAuthBearer));
        t.core.authenticate(&token());
        assert_eq!(
            t.sent(),
            format!("a1 AUTHENTICATE OAUTHBEARER {}\r\n", oauthbearer_ir(993))
        );
        t.server(DOVECOT_OK);
        assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
        assert_eq!(t.sent(), "");
        assert_eq!(t.core.into_client_bytes(), DOVECOT_OK);
    });
}

#[test]
fn dovecot_xoauth2_rejection_is_acked_with_an_empty_line_then_retried() {
    both(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(DOVECOT_XOAUTH2_GREETING);
        assert_eq!(t.events(), need(Mechanism::XOAuth2));
        t.core.authenticate(&token());
        let command = format!("a1 AUTHENTICATE XOAUTH2 {}\r\n", xoauth2_ir());
        assert_eq!(t.sent(), command);
        t.server(&dovecot_challenge("401"));
        assert_eq!(t.sent(), "\r\n", "the challenge is answered before the NO");
        assert_eq!(t.events(), vec![]);
        t.server(b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
        assert_eq!(
            t.events(),
            vec![UpstreamEvent::Rejected {
                status: Some("401".into()),
                text: "[AUTHENTICATIONFAILED] Authentication failed.".into()
            }]
        );
        // The retry: same connection, the client's tag again.
        t.core.authenticate(&token());
        assert_eq!(t.sent(), command);
        t.server(DOVECOT_OK);
        assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
        assert_eq!(t.core.into_client_bytes(), DOVECOT_OK);
    });
}

#[test]
fn dovecot_oauthbearer_rejection_is_acked_with_0x01() {
    both(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(DOVECOT_GREETING);
        t.events();
        t.core.authenticate(&token());
        t.sent();
        t.server(&dovecot_challenge("invalid_token"));
        assert_eq!(t.sent(), "AQ==\r\n");
        t.server(b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
        assert!(matches!(
            &t.events()[..],
            [UpstreamEvent::Rejected { status: Some(s), .. }] if s == "invalid_token"
        ));
    });
}

#[test]
fn gmail_capability_round_trip_and_untagged_capabilities_go_to_the_client() {
    both(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(GMAIL_GREETING);
        // No capabilities in the greeting: ask, under our own tag.
        assert_eq!(t.sent(), "mo1 CAPABILITY\r\n");
        assert_eq!(t.events(), vec![]);
        t.server(GMAIL_CAPS);
        assert_eq!(
            t.events(),
            need(Mechanism::OAuthBearer),
            "preferred over XOAUTH2"
        );
        t.core.authenticate(&token());
        assert_eq!(
            t.sent(),
            format!("a1 AUTHENTICATE OAUTHBEARER {}\r\n", oauthbearer_ir(993))
        );
        let ok = b"a1 OK alice@example.test authenticated (Success)\r\n";
        let after = b"* 12 EXISTS\r\n* OK [UNSEEN 3] partial";
        t.server(&[GMAIL_POST_AUTH_CAPS, ok, after].concat());
        assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
        // Bytes after the OK belong to the spliced stream and are not parsed (a partial line too).
        t.server(b" more\r\n");
        assert_eq!(
            t.core.into_client_bytes(),
            [GMAIL_POST_AUTH_CAPS, ok, after, b" more\r\n"].concat()
        );
    });
}

#[test]
fn gmail_style_error_challenge_then_successful_retry() {
    both(|feed| {
        let mut t = Talk::new(options(true), feed);
        // An XOAUTH2-only capability list, so the empty-line answer is the one exercised.
        t.server(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=PLAIN] Gimap ready\r\n");
        assert_eq!(t.events(), need(Mechanism::XOAuth2));
        t.core.authenticate(&token());
        t.sent();
        t.server(GMAIL_CHALLENGE);
        assert_eq!(t.sent(), "\r\n");
        // Google's alert for this attempt must not reach the client: this attempt failed.
        t.server(b"* NO [WEBALERT https://accounts.google.com/signin/continue?x=1] Web login required.\r\n");
        t.server(GMAIL_NO);
        assert_eq!(
            t.events(),
            vec![UpstreamEvent::Rejected {
                status: Some("400".into()),
                text: "[AUTHENTICATIONFAILED] Invalid credentials (Failure)".into()
            }]
        );
        t.core.authenticate(&token());
        assert_eq!(
            t.sent(),
            format!("a1 AUTHENTICATE XOAUTH2 {}\r\n", xoauth2_ir())
        );
        let alert = b"* OK [ALERT] Your password expires soon\r\n";
        let ok = b"a1 OK [CAPABILITY IMAP4rev1 LITERAL- COMPRESS=DEFLATE] Success\r\n";
        t.server(&[GMAIL_POST_AUTH_CAPS, alert, ok].concat());
        assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
        assert_eq!(
            t.core.into_client_bytes(),
            [GMAIL_POST_AUTH_CAPS, alert, ok].concat()
        );
    });
}

#[test]
fn microsoft_immediate_no_twice_and_no_third_attempt() {
    both(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(MS_GREETING);
        assert_eq!(t.sent(), "mo1 CAPABILITY\r\n");
        t.server(MS_CAPS);
        assert_eq!(
            t.events(),
            need(Mechanism::XOAuth2),
            "Microsoft has no OAUTHBEARER"
        );
        let command = format!("a1 AUTHENTICATE XOAUTH2 {}\r\n", xoauth2_ir());
        let rejected = UpstreamEvent::Rejected {
            status: None,
            text: "AUTHENTICATE failed.".into(),
        };
        for _ in 0..MAX_ATTEMPTS {
            t.core.authenticate(&token());
            assert_eq!(t.sent(), command);
            t.server(b"a1 NO AUTHENTICATE failed.\r\n");
            assert_eq!(t.sent(), "", "an immediate NO needs no answer");
            assert_eq!(t.events(), vec![rejected.clone()]);
        }
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "");
        assert!(is_protocol_failure(&t.events()));
    });
}

#[test]
fn microsoft_success() {
    both(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(&[MS_GREETING, MS_CAPS].concat());
        assert_eq!(t.events(), need(Mechanism::XOAuth2));
        t.core.authenticate(&token());
        t.sent();
        t.server(b"a1 OK AUTHENTICATE completed.\r\n");
        assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
        assert_eq!(
            t.core.into_client_bytes(),
            b"a1 OK AUTHENTICATE completed.\r\n"
        );
    });
}

#[test]
fn starttls_then_capabilities_are_read_again() {
    both(|feed| {
        let mut t = Talk::new(options(false), feed);
        t.server(DOVECOT_GREETING);
        assert_eq!(t.sent(), "mo1 STARTTLS\r\n");
        assert_eq!(t.events(), vec![]);
        assert_eq!(t.core.mechanism(), None, "no mechanism chosen in plaintext");
        t.server(b"mo1 OK Begin TLS negotiation now.\r\n");
        assert_eq!(t.events(), vec![UpstreamEvent::StartTls]);
        assert_eq!(t.sent(), "");
        t.core.tls_started();
        assert_eq!(t.sent(), "mo2 CAPABILITY\r\n");
        // After TLS the list differs (no OAUTHBEARER here): the plaintext one is forgotten.
        t.server(
            b"* CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=XOAUTH2\r\n\
              mo2 OK Pre-login capabilities listed, post-login capabilities have more.\r\n",
        );
        assert_eq!(t.events(), need(Mechanism::XOAuth2));
        t.core.authenticate(&token());
        assert_eq!(
            t.sent(),
            format!("a1 AUTHENTICATE XOAUTH2 {}\r\n", xoauth2_ir())
        );
        t.server(DOVECOT_OK);
        assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
    });
}

#[test]
fn starttls_capabilities_from_the_tagged_ok_and_oauthbearer_port() {
    let mut t = Talk::new(options(false), Feed::Whole);
    t.server(b"* OK ready\r\n");
    assert_eq!(t.sent(), "mo1 CAPABILITY\r\n");
    t.server(b"mo1 OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] done\r\n");
    assert_eq!(t.sent(), "mo2 STARTTLS\r\n");
    t.server(b"* OK unrelated\r\nmo2 OK go\r\n");
    assert_eq!(t.events(), vec![UpstreamEvent::StartTls]);
    t.core.tls_started();
    assert_eq!(t.sent(), "mo3 CAPABILITY\r\n");
    t.server(b"mo3 OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=OAUTHBEARER] done\r\n");
    assert_eq!(t.events(), need(Mechanism::OAuthBearer));
    t.core.authenticate(&token());
    assert_eq!(
        t.sent(),
        format!("a1 AUTHENTICATE OAUTHBEARER {}\r\n", oauthbearer_ir(143))
    );
}

#[test]
fn without_sasl_ir_the_response_waits_for_the_continuation() {
    both(|feed| {
        let mut t = Talk::new(options(true), feed);
        t.server(b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] no IR here\r\n");
        t.events();
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "a1 AUTHENTICATE XOAUTH2\r\n");
        t.server(b"+ \r\n");
        assert_eq!(t.sent(), format!("{}\r\n", xoauth2_ir()));
        // Dovecot-style: a second `+` is the error challenge.
        t.server(&dovecot_challenge("401"));
        assert_eq!(t.sent(), "\r\n");
        t.server(b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
        assert!(matches!(
            &t.events()[..],
            [UpstreamEvent::Rejected { status: Some(s), .. }] if s == "401"
        ));
        // A NO before the continuation (mechanism refused) is a rejection too; no token sent.
        t.core.authenticate(&token());
        assert_eq!(t.sent(), "a1 AUTHENTICATE XOAUTH2\r\n");
        t.server(b"a1 NO [CANNOT] not today\r\n");
        assert_eq!(t.sent(), "");
        assert_eq!(
            t.events(),
            vec![UpstreamEvent::Rejected {
                status: None,
                text: "[CANNOT] not today".into()
            }]
        );
    });
}

#[test]
fn literals_in_untagged_responses_are_kept_whole() {
    both(|feed| {
        let mut t = Talk::new(options(true), feed);
        // A literal in the greeting phase is skipped as a unit.
        t.server(b"* OK hi\r\n");
        assert_eq!(t.sent(), "mo1 CAPABILITY\r\n");
        t.server(b"* ID (\"name\" {4}\r\nmo1 )\r\n");
        t.server(b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2\r\nmo1 OK done\r\n");
        assert_eq!(t.events(), need(Mechanism::XOAuth2));
        t.core.authenticate(&token());
        // The literal holds something that looks like our tagged OK: it is data, not a response.
        let id = b"* ID (\"name\" {10}\r\na1 OK hi\r\n \"x\" {0}\r\n)\r\n";
        t.server(id);
        assert_eq!(t.events(), vec![]);
        t.server(b"a1 OK done\r\n");
        assert_eq!(t.events(), vec![UpstreamEvent::Authenticated]);
        assert_eq!(
            t.core.into_client_bytes(),
            [&id[..], b"a1 OK done\r\n"].concat()
        );
    });
}

#[test]
fn debug_output_shows_no_token() {
    let mut core = UpstreamCore::new(options(true));
    core.feed(b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] no IR\r\n");
    core.authenticate(&token());
    let out = core.take_output();
    assert_eq!(&out[..], b"a1 AUTHENTICATE XOAUTH2\r\n");
    drop(out);
    // The response waits inside the core for the `+`.
    let debug = format!("{core:?}");
    assert!(
        !debug.contains("tok-123") && !debug.contains(&xoauth2_ir()),
        "{debug}"
    );
    let events = format!(
        "{:?}",
        std::iter::from_fn(|| core.next_event()).collect::<Vec<_>>()
    );
    assert!(!events.contains("tok-123"));
}

#[test]
fn failure_messages_are_plain_words() {
    for failure in [
        UpstreamFailure::Bye("bye".into()),
        UpstreamFailure::Preauth,
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
