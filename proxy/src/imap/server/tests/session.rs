//! Pipelining, login outcomes, STARTTLS and limits (protocols.md §6 rows 16, 17, 20, 28).

use super::*;

const CAPS: &str = "* CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID AUTH=PLAIN\r\n";

#[test]
fn pipelined_commands_after_a_login_are_the_leftover() {
    // Row 16: a1 answered, a Login for a2, a3 untouched for the upstream.
    let t = Scenario::new("a1 CAPABILITY\r\na2 LOGIN u p\r\na3 SELECT INBOX\r\n").check();
    assert_eq!(t.output, format!("{CAPS}a1 OK CAPABILITY completed\r\n"));
    assert_eq!(t.events, vec![login("a2", "u", "p")]);
    assert_eq!(t.leftover.as_deref(), Some(&b"a3 SELECT INBOX\r\n"[..]));
    // Byte for byte, whatever it is: a partial command, literals, a bare LF, 8-bit, NUL.
    let rest: &[u8] = b"a3 APPEND INBOX {5+}\r\nhe\0lo\r\na4 NOOP\na5 FET\xffCH 1 (BODY[";
    let mut script = b"a2 LOGIN u p\r\n".to_vec();
    script.extend_from_slice(rest);
    let t = Scenario::new(script).check();
    assert_eq!(t.leftover.as_deref(), Some(rest));
    // Nothing pipelined, nothing left.
    let t = Scenario::new("a2 LOGIN u p\r\n").check();
    assert_eq!(t.leftover.as_deref(), Some(&b""[..]));
}

#[test]
fn pipelined_commands_after_a_failed_login_are_answered_here() {
    // Row 17.
    let t = Scenario::new("a1 CAPABILITY\r\na2 LOGIN u p\r\na3 SELECT INBOX\r\n")
        .failing([LoginFailure::BadCredentials])
        .check();
    assert_eq!(
        t.output,
        format!(
            "{CAPS}a1 OK CAPABILITY completed\r\n\
             a2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n\
             a3 BAD Command invalid in this state: log in first\r\n"
        )
    );
    assert_eq!(t.events, vec![login("a2", "u", "p")]);
    assert_eq!(t.leftover, None);
}

#[test]
fn login_failures_map_to_one_line_each() {
    let failure = |failure: LoginFailure| {
        Scenario::new("a1 LOGIN u p\r\n")
            .failing([failure])
            .check()
            .output
    };
    assert_eq!(
        failure(LoginFailure::BadCredentials),
        "a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    assert_eq!(
        failure(LoginFailure::Unavailable(
            "Upstream temporarily unavailable".to_owned()
        )),
        "a1 NO [UNAVAILABLE] Upstream temporarily unavailable\r\n"
    );
    assert_eq!(
        failure(LoginFailure::Reauthorize(
            "Account needs re-authorization: run 'mailoauth authorize alice'".to_owned()
        )),
        "a1 NO [AUTHORIZATIONFAILED] Account needs re-authorization: run 'mailoauth authorize alice'\r\n"
    );
    assert_eq!(
        failure(LoginFailure::UpstreamRejected(
            "Upstream rejected OAuth token".to_owned()
        )),
        "a1 NO [AUTHENTICATIONFAILED] Upstream rejected OAuth token\r\n"
    );
    // Texts become one line: no CR, LF, NUL or other controls can start a response of their own.
    assert_eq!(
        failure(LoginFailure::Unavailable(
            "down\r\n* OK [ALERT] hi\0\x1b[31m\u{85}x\r\n".to_owned()
        )),
        "a1 NO [UNAVAILABLE] down  * OK [ALERT] hi  [31m x\r\n"
    );
    // Empty texts get a default; long ones are cut (at a character boundary).
    assert_eq!(
        failure(LoginFailure::Reauthorize(" \r\n".to_owned())),
        "a1 NO [AUTHORIZATIONFAILED] Account needs re-authorization\r\n"
    );
    assert_eq!(
        failure(LoginFailure::UpstreamRejected(String::new())),
        "a1 NO [AUTHENTICATIONFAILED] Upstream rejected the login\r\n"
    );
    assert_eq!(
        failure(LoginFailure::Unavailable(String::new())),
        "a1 NO [UNAVAILABLE] Upstream temporarily unavailable\r\n"
    );
    let long = failure(LoginFailure::Unavailable("ä".repeat(5000)));
    assert_eq!(long, format!("a1 NO [UNAVAILABLE] {}\r\n", "ä".repeat(500)));
}

#[test]
fn too_many_failed_logins_close_after_the_no() {
    let t = Scenario::new(
        "a1 LOGIN u p\r\na2 LOGIN u p\r\na3 AUTHENTICATE PLAIN AHUAcA==\r\na4 LOGIN u p\r\n",
    )
    .failing([
        LoginFailure::BadCredentials,
        LoginFailure::BadCredentials,
        LoginFailure::UpstreamRejected("no".to_owned()),
        LoginFailure::BadCredentials,
    ])
    .check();
    assert_eq!(
        t.output,
        "a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n\
         a2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n\
         a3 NO [AUTHENTICATIONFAILED] no\r\n* BYE Too many failed logins\r\n"
    );
    assert_eq!(
        t.events,
        vec![
            login("a1", "u", "p"),
            login("a2", "u", "p"),
            plain("a3", "u", "p"),
            Seen::Close
        ]
    );
}

#[test]
fn starttls_drops_what_was_pipelined_after_it() {
    // Row 20: a2 is gone (it does not run after TLS); the capabilities are recomputed.
    let t = Scenario::new("a1 STARTTLS\r\na2 LOGIN u p\r\n")
        .options(|o| o.starttls = true)
        .after_tls("a3 CAPABILITY\r\n")
        .check();
    assert_eq!(
        t.output,
        format!("a1 OK Begin TLS negotiation now\r\n{CAPS}a3 OK CAPABILITY completed\r\n")
    );
    assert_eq!(t.events, vec![Seen::StartTls]);
    // Also in the middle of a command, and a literal's worth of it.
    let t = Scenario::new("a1 STARTTLS\r\na2 LOGIN alice {6+}\r\n")
        .options(|o| o.starttls = true)
        .after_tls("secret\r\na3 NOOP\r\n")
        .check();
    assert_eq!(
        t.output,
        "a1 OK Begin TLS negotiation now\r\n* BAD Syntax error\r\na3 OK NOOP completed\r\n"
    );
    assert_eq!(t.events, vec![Seen::StartTls]);
}

#[test]
fn starttls_when_unavailable_or_done() {
    let t = Scenario::new("a1 STARTTLS\r\na2 NOOP\r\n").check();
    assert_eq!(
        t.output,
        "a1 BAD STARTTLS is not available\r\na2 OK NOOP completed\r\n"
    );
    assert!(t.events.is_empty());
    let t = Scenario::new("a1 STARTTLS\r\n")
        .options(|o| o.starttls = true)
        .after_tls("a2 STARTTLS\r\na3 NOOP\r\n")
        .check();
    assert_eq!(
        t.output,
        "a1 OK Begin TLS negotiation now\r\na2 BAD TLS is active already\r\na3 OK NOOP completed\r\n"
    );
    assert_eq!(t.events, vec![Seen::StartTls]);
    let t = Scenario::new("a1 STARTTLS\r\n")
        .options(|o| {
            o.tls_active = true;
            o.starttls = true;
        })
        .check();
    assert_eq!(t.output, "a1 BAD TLS is active already\r\n");
}

#[test]
fn a_line_without_end_closes_at_the_limit() {
    // Row 28: 64 KiB without CRLF.
    let t = Scenario::new(format!("a1 LOGIN alice {}", "x".repeat(64 * 1024))).check();
    assert_eq!(
        t.output,
        "* BAD Command line too long\r\n* BYE Too much input\r\n"
    );
    assert_eq!(t.events, vec![Seen::Close]);
    // The limit counts the line ending: max_line octets pass, one more does not.
    let line = |len: usize| format!("a1 NOOP{}\r\n", " ".repeat(len - 9));
    let limited = |o: &mut ServerOptions| o.limits.max_line = 64;
    let t = Scenario::new(line(64)).options(limited).check();
    assert_eq!(t.output, "a1 BAD Syntax error\r\n");
    let t = Scenario::new(line(65)).options(limited).check();
    assert_eq!(
        t.output,
        "* BAD Command line too long\r\n* BYE Too much input\r\n"
    );
    // After the close, input is ignored.
    let mut core = ServerCore::new(options());
    core.feed(&vec![b'x'; 9000]);
    assert!(matches!(core.next_event(), Some(ServerEvent::Close)));
    core.feed(b"a1 NOOP\r\n");
    assert!(core.next_event().is_none());
    core.take_output();
    assert!(core.take_output().is_empty());
}

#[test]
fn too_many_commands_close() {
    // Row 28: 1000 NOOPs; the 101st gets the BYE instead of an answer.
    let script = "a NOOP\r\n".repeat(1000);
    let t = Scenario::new(script).check();
    let expected =
        "a OK NOOP completed\r\n".repeat(100) + "* BYE Too many commands before login\r\n";
    assert_eq!(t.output, expected);
    assert_eq!(t.events, vec![Seen::Close]);
    // Commands refused at a literal count too.
    let t = Scenario::new("a1 LOGIN {9999}\r\na2 NOOP\r\na3 NOOP\r\n")
        .options(|o| o.limits.max_commands = 2)
        .check();
    assert_eq!(
        t.output,
        "a1 NO [TOOBIG] Literal too large\r\na2 OK NOOP completed\r\n\
         * BYE Too many commands before login\r\n"
    );
}

#[test]
fn too_many_errors_close() {
    let t = Scenario::new("a SELECT x\r\n".repeat(11) + "a NOOP\r\n").check();
    let expected = "a BAD Command invalid in this state: log in first\r\n".repeat(10)
        + "* BYE Too many errors\r\n";
    assert_eq!(t.output, expected);
    assert_eq!(t.events, vec![Seen::Close]);
    // Any BAD or NO the core sends counts; failed logins do not.
    let t = Scenario::new(
        "a1 LOGIN u p\r\na2 XFOO\r\na3 LOGIN {5000}\r\na4 AUTHENTICATE CRAM-MD5\r\na5 NOOP\r\n",
    )
    .options(|o| o.limits.max_errors = 3)
    .failing([LoginFailure::BadCredentials])
    .check();
    assert_eq!(
        t.output,
        "a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\na2 BAD Syntax error\r\n\
         a3 NO [TOOBIG] Literal too large\r\na4 NO Unsupported authentication mechanism\r\n\
         * BYE Too many errors\r\n"
    );
}

#[test]
fn calls_out_of_turn_are_ignored() {
    let mut core = ServerCore::new(options());
    core.take_output();
    core.login_failed(LoginFailure::BadCredentials);
    core.tls_started();
    assert!(!core.is_tls_active());
    assert!(core.take_output().is_empty());
    core.feed(b"a1 LOGIN u p\r\na2 NOOP\r\n");
    assert!(matches!(core.next_event(), Some(ServerEvent::Login(_))));
    // While the login is pending, nothing is processed.
    assert!(core.next_event().is_none());
    core.tls_started();
    assert!(core.take_output().is_empty());
    core.login_failed(LoginFailure::BadCredentials);
    assert!(core.next_event().is_none());
    assert_eq!(
        core.take_output(),
        b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\na2 OK NOOP completed\r\n"
    );
    assert!(!core.is_tls_active());
    let core = ServerCore::new(ServerOptions {
        tls_active: true,
        ..options()
    });
    assert!(core.is_tls_active());
}
