//! AUTHENTICATE PLAIN with and without SASL-IR, other mechanisms, and the TLS policy
//! (protocols.md §6 rows 11-15, 21).

use super::*;

/// `\0alice\0s3cret`
const ALICE: &str = "AGFsaWNlAHMzY3JldA==";

#[test]
fn plain_with_initial_response() {
    // Row 11 (SASL-IR).
    let t = Scenario::new(format!("a1 AUTHENTICATE PLAIN {ALICE}\r\n")).check();
    assert_eq!(t.output, "");
    assert_eq!(t.events, vec![plain("a1", "alice", "s3cret")]);
    // UTF-8 and a space in the password.
    let t = Scenario::new("a1 AUTHENTICATE PLAIN AGrDtnJnAHDDpHNzIHdvcmQ=\r\n").check();
    assert_eq!(t.events, vec![plain("a1", "jörg", "päss word")]);
}

#[test]
fn plain_with_an_empty_initial_response_fails() {
    // Row 11 (`=` is an empty response: a PLAIN message needs two NULs).
    let t = Scenario::new("a1 AUTHENTICATE PLAIN =\r\na2 NOOP\r\n").check();
    assert_eq!(
        t.output,
        "a1 NO [AUTHENTICATIONFAILED] Empty or malformed credentials\r\na2 OK NOOP completed\r\n"
    );
    assert!(t.events.is_empty());
}

#[test]
fn plain_in_two_steps() {
    // Row 11 (`+ `, then one line).
    let t = Scenario::new("a1 AUTHENTICATE PLAIN\r\n").check();
    assert_eq!(t.output, "+ \r\n");
    assert!(t.events.is_empty());
    let t = Scenario::new(format!(
        "a1 AUTHENTICATE PLAIN\r\n{ALICE}\r\na2 SELECT INBOX\r\n"
    ))
    .check();
    assert_eq!(t.output, "+ \r\n");
    assert_eq!(t.events, vec![plain("a1", "alice", "s3cret")]);
    assert_eq!(t.leftover.as_deref(), Some(&b"a2 SELECT INBOX\r\n"[..]));
    // An empty response line is an empty message.
    let t = Scenario::new("a1 AUTHENTICATE PLAIN\r\n\r\n").check();
    assert_eq!(
        t.output,
        "+ \r\na1 NO [AUTHENTICATIONFAILED] Empty or malformed credentials\r\n"
    );
}

#[test]
fn mechanism_names_in_any_case() {
    // Row 9.
    for mechanism in ["plain", "Plain", "pLaIn"] {
        let t = Scenario::new(format!("a1 authenticate {mechanism} {ALICE}\r\n")).check();
        assert_eq!(
            t.events,
            vec![plain("a1", "alice", "s3cret")],
            "{mechanism}"
        );
        let t = Scenario::new(format!("a1 AUTHENTICATE {mechanism}\r\n{ALICE}\r\n")).check();
        assert_eq!(
            t.events,
            vec![plain("a1", "alice", "s3cret")],
            "{mechanism}"
        );
    }
}

#[test]
fn authorization_identity_must_be_empty_or_the_user() {
    // Row 12, with the initial response and in two steps.
    for script in [
        "a1 AUTHENTICATE PLAIN YWxpY2UAYWxpY2UAczNjcmV0\r\n",
        "a1 AUTHENTICATE PLAIN\r\nYWxpY2UAYWxpY2UAczNjcmV0\r\n",
    ] {
        let t = Scenario::new(script).check();
        assert_eq!(t.events, vec![plain("a1", "alice", "s3cret")]);
    }
    let t = Scenario::new(
        "a1 AUTHENTICATE PLAIN Ym9iAGFsaWNlAHMzY3JldA==\r\n\
         a2 AUTHENTICATE PLAIN\r\nYm9iAGFsaWNlAHMzY3JldA==\r\n",
    )
    .check();
    assert_eq!(
        t.output,
        "a1 NO [AUTHORIZATIONFAILED] Logging in as another user is not supported\r\n+ \r\n\
         a2 NO [AUTHORIZATIONFAILED] Logging in as another user is not supported\r\n"
    );
    assert!(t.events.is_empty());
}

#[test]
fn malformed_plain_messages_fail() {
    // No password; a NUL too many.
    let t = Scenario::new(
        "a1 AUTHENTICATE PLAIN AGFsaWNlAA==\r\na2 AUTHENTICATE PLAIN AGFsaWNlAHBhAHNz\r\n",
    )
    .check();
    assert_eq!(
        t.output,
        "a1 NO [AUTHENTICATIONFAILED] Empty or malformed credentials\r\n\
         a2 NO [AUTHENTICATIONFAILED] Empty or malformed credentials\r\n"
    );
}

#[test]
fn cancel_is_bad() {
    // Row 13.
    let t = Scenario::new("a1 AUTHENTICATE PLAIN\r\n*\r\na2 NOOP\r\n").check();
    assert_eq!(
        t.output,
        "+ \r\na1 BAD Authentication cancelled\r\na2 OK NOOP completed\r\n"
    );
    assert!(t.events.is_empty());
}

#[test]
fn invalid_base64_is_bad() {
    // Row 14: padding inside, characters outside the alphabet, embedded spaces, non-canonical
    // trailing bits, missing padding.
    for b64 in [
        "AAA=BBB",
        "!!",
        "AGFs aWNl AHMzY3JldA==",
        "AB==",
        "AGFsaWNlAHMzY3JldA",
        "=AAA",
    ] {
        let t = Scenario::new(format!("a1 AUTHENTICATE PLAIN\r\n{b64}\r\na2 NOOP\r\n")).check();
        assert_eq!(
            t.output, "+ \r\na1 BAD Invalid base64\r\na2 OK NOOP completed\r\n",
            "{b64}"
        );
        assert!(t.events.is_empty());
        let t = Scenario::new(format!("a1 AUTHENTICATE PLAIN {b64}\r\na2 NOOP\r\n")).check();
        assert_eq!(
            t.output, "a1 BAD Syntax error\r\na2 OK NOOP completed\r\n",
            "{b64}"
        );
        assert!(t.events.is_empty());
    }
    // A response line ending in something like a literal announcement carries no literal.
    let t = Scenario::new("a1 AUTHENTICATE PLAIN\r\nAAAA{4}\r\na2 NOOP\r\n").check();
    assert_eq!(
        t.output,
        "+ \r\na1 BAD Invalid base64\r\na2 OK NOOP completed\r\n"
    );
    // Nor a bare LF.
    let t = Scenario::new(format!("a1 AUTHENTICATE PLAIN\r\n{ALICE}\na2 NOOP\r\n")).check();
    assert_eq!(
        t.output,
        "+ \r\na1 BAD Lines must end with CRLF\r\na2 OK NOOP completed\r\n"
    );
}

#[test]
fn other_mechanisms_are_unsupported() {
    // Row 15: NO at once, no `+`, with or without an initial response.
    for command in [
        "AUTHENTICATE XOAUTH2 dXNlcj1hbGljZQFhdXRoPUJlYXJlciB4AQE=",
        "AUTHENTICATE XOAUTH2",
        "AUTHENTICATE OAUTHBEARER",
        "AUTHENTICATE CRAM-MD5",
        "AUTHENTICATE LOGIN",
        "authenticate login YWxpY2U=",
        "AUTHENTICATE PLAINX",
        "AUTHENTICATE ANONYMOUS =",
    ] {
        let t = Scenario::new(format!("a1 {command}\r\na2 NOOP\r\n")).check();
        assert_eq!(
            t.output, "a1 NO Unsupported authentication mechanism\r\na2 OK NOOP completed\r\n",
            "{command}"
        );
        assert!(t.events.is_empty());
    }
}

fn require_tls(o: &mut ServerOptions) {
    o.starttls = true;
    o.require_tls = true;
}

#[test]
fn logindisabled_refuses_every_login_before_tls() {
    // Row 21: no login, no `+` for a password literal, no Login event.
    let t = Scenario::new(format!(
        "a1 LOGIN alice s3cret\r\na2 AUTHENTICATE PLAIN {ALICE}\r\na3 AUTHENTICATE PLAIN\r\n\
         a4 LOGIN alice {{6}}\r\na5 LOGIN {{5+}}\r\nalice {{6+}}\r\ns3cret\r\n"
    ))
    .options(require_tls)
    .check();
    let no = "NO [PRIVACYREQUIRED] Use STARTTLS first\r\n";
    assert_eq!(t.output, format!("a1 {no}a2 {no}a3 {no}a4 {no}a5 {no}"));
    assert!(t.events.is_empty());
    // Without STARTTLS to offer (a listener that only refuses), the text says so.
    let t = Scenario::new("a1 LOGIN alice s3cret\r\n")
        .options(|o| o.require_tls = true)
        .check();
    assert_eq!(t.output, "a1 NO [PRIVACYREQUIRED] Login requires TLS\r\n");
}

#[test]
fn after_starttls_login_works() {
    let t = Scenario::new("a1 STARTTLS\r\n")
        .options(require_tls)
        .after_tls(format!(
            "a2 CAPABILITY\r\na3 AUTHENTICATE PLAIN {ALICE}\r\n"
        ))
        .check();
    assert_eq!(
        t.output,
        "a1 OK Begin TLS negotiation now\r\n\
         * CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID AUTH=PLAIN\r\na2 OK CAPABILITY completed\r\n"
    );
    assert_eq!(
        t.events,
        vec![Seen::StartTls, plain("a3", "alice", "s3cret")]
    );
}
