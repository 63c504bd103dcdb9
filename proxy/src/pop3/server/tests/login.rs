//! USER/PASS and AUTH PLAIN (protocols.md §6 rows 42, 43), and logins before TLS.

use super::*;

#[test]
fn user_pass_keeps_spaces_in_the_password() {
    // Row 42.
    let t = Scenario::new("USER alice\r\nPASS correct horse battery staple\r\n").check();
    assert_eq!(t.output, "+OK Send PASS\r\n");
    assert_eq!(
        t.events,
        vec![pass("alice", "correct horse battery staple")]
    );
    assert_eq!(t.leftover.as_deref(), Some(&b""[..]));
    // Only the one separator space is not part of it: leading and trailing ones are.
    let t = Scenario::new("user alice\r\npass   pw with  spaces  \r\n").check();
    assert_eq!(t.events, vec![pass("alice", "  pw with  spaces  ")]);
    // Tabs, quotes, backslashes, 8-bit UTF-8: verbatim.
    let t = Scenario::new("USER jörg@example.test\r\nPASS \t\"p\\w\" pä\t\r\n").check();
    assert_eq!(t.events, vec![pass("jörg@example.test", "\t\"p\\w\" pä\t")]);
}

#[test]
fn user_answers_ok_for_anyone_and_the_last_user_counts() {
    let t = Scenario::new("USER nobody-here\r\nUSER alice\r\nPASS pw\r\n").check();
    assert_eq!(t.output, "+OK Send PASS\r\n+OK Send PASS\r\n");
    assert_eq!(t.events, vec![pass("alice", "pw")]);
}

#[test]
fn pass_needs_user_and_user_is_forgotten_after_pass() {
    let t = Scenario::new("PASS pw\r\nUSER alice\r\nPASS wrong\r\nPASS again\r\n")
        .failing([LoginFailure::BadCredentials])
        .check();
    assert_eq!(
        t.output,
        "-ERR USER first\r\n+OK Send PASS\r\n-ERR [AUTH] Authentication failed\r\n\
         -ERR USER first\r\n"
    );
    assert_eq!(t.events, vec![pass("alice", "wrong")]);
}

#[test]
fn bad_user_and_pass_arguments() {
    let t = Scenario::new(
        b"USER\r\nPASS\r\nUSER \r\nUSER al\x01ice\r\nUSER \xff\r\nUSER a\r\nPASS \r\n\
         USER a\r\nPASS \xfe\r\n",
    )
    .check();
    assert_eq!(
        t.output,
        "-ERR Missing argument\r\n-ERR Missing argument\r\n\
         -ERR [AUTH] Empty or malformed credentials\r\n-ERR [AUTH] Invalid user name\r\n\
         -ERR [AUTH] User name and password must be UTF-8\r\n+OK Send PASS\r\n\
         -ERR [AUTH] Empty or malformed credentials\r\n+OK Send PASS\r\n\
         -ERR [AUTH] User name and password must be UTF-8\r\n"
    );
    assert!(t.events.is_empty());
}

#[test]
fn auth_plain_with_and_without_initial_response() {
    // Row 43. "\0alice\0s3cret" and "alice\0alice\0s3cret" (authzid = user).
    let t = Scenario::new("AUTH PLAIN AGFsaWNlAHMzY3JldA==\r\n").check();
    assert_eq!(t.output, "");
    assert_eq!(t.events, vec![plain("alice", "s3cret")]);
    let t = Scenario::new("auth plain\r\nYWxpY2UAYWxpY2UAczNjcmV0\r\nNOOP\r\n").check();
    assert_eq!(
        t.output, "+ \r\n",
        "the empty challenge has its trailing space"
    );
    assert_eq!(t.events, vec![plain("alice", "s3cret")]);
    assert_eq!(t.leftover.as_deref(), Some(&b"NOOP\r\n"[..]));
    // Passwords with spaces and NUL-free 8-bit survive base64.
    let t = Scenario::new("AUTH PLAIN AGrDtnJnACBwIMOkIA==\r\n").check();
    assert_eq!(t.events, vec![plain("jörg", " p ä ")]);
}

#[test]
fn auth_plain_refusals() {
    // Row 43: `*` cancels; `=` is empty and fails; bad base64; another authzid; other
    // mechanisms; syntax.
    let t = Scenario::new(concat!(
        "AUTH PLAIN\r\n*\r\n",
        "AUTH PLAIN =\r\n",
        "AUTH PLAIN *\r\n",
        "AUTH PLAIN\r\nAAA=BBB\r\n",
        "AUTH PLAIN Ym9iAGFsaWNlAHMzY3JldA==\r\n",
        "AUTH XOAUTH2 dXNlcj1h\r\n",
        "AUTH CRAM-MD5\r\n",
        "AUTH PLAIN a b\r\n",
        "AUTH PLAIN\r\n=\r\n",
    ))
    .check();
    assert_eq!(
        t.output,
        "+ \r\n-ERR Authentication cancelled\r\n\
         -ERR [AUTH] Empty or malformed credentials\r\n\
         -ERR Invalid base64\r\n\
         + \r\n-ERR Invalid base64\r\n\
         -ERR [AUTH] Logging in as another user is not supported\r\n\
         -ERR Unsupported authentication mechanism\r\n\
         -ERR Unsupported authentication mechanism\r\n\
         -ERR Syntax: AUTH mechanism [initial-response]\r\n\
         + \r\n-ERR [AUTH] Empty or malformed credentials\r\n"
    );
    assert!(t.events.is_empty());
}

#[test]
fn bare_auth_lists_plain() {
    // Row 43 (the RFC 1734-era listing).
    let t = Scenario::new("AUTH\r\nauth\r\n").check();
    assert_eq!(t.output, "+OK\r\nPLAIN\r\n.\r\n".repeat(2));
}

#[test]
fn a_long_initial_response_fits_the_auth_line_limit() {
    // 255 octets is RFC 5034's limit; a lenient client gets up to max_auth_line.
    let password = "p".repeat(3000);
    let message = format!("\0alice\0{password}");
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, message);
    let t = Scenario::new(format!("AUTH PLAIN {b64}\r\n")).check();
    assert_eq!(t.events, vec![plain("alice", &password)]);
    let t = Scenario::new(format!("AUTH PLAIN\r\n{b64}\r\n")).check();
    assert_eq!(t.events, vec![plain("alice", &password)]);
    // The same length on another command is too long.
    let t = Scenario::new(format!("USER {b64}\r\n")).check();
    assert_eq!(t.output, "-ERR Line too long\r\n");
    assert_eq!(t.events, vec![Seen::Close]);
}

#[test]
fn login_before_tls_when_tls_is_required() {
    let required = |o: &mut ServerOptions| {
        o.starttls = true;
        o.require_tls = true;
    };
    let t = Scenario::new(
        "USER alice\r\nPASS pw\r\nAUTH PLAIN AGFsaWNlAHMzY3JldA==\r\nAUTH PLAIN\r\nAUTH\r\nAPOP a b\r\n",
    )
    .options(required)
    .check();
    assert_eq!(
        t.output,
        "-ERR [SYS/PERM] Use STLS first\r\n".repeat(4)
            + "+OK\r\n.\r\n-ERR APOP is not supported\r\n"
    );
    assert!(t.events.is_empty());
    // Without STLS on offer (a misconfiguration the core still answers sensibly).
    let t = Scenario::new("USER alice\r\n")
        .options(|o| o.require_tls = true)
        .check();
    assert_eq!(t.output, "-ERR [SYS/PERM] Login requires TLS\r\n");
    // After STLS the login works.
    let t = Scenario::new("STLS\r\n")
        .options(required)
        .after_tls("CAPA\r\nUSER alice\r\nPASS pw\r\n")
        .check();
    assert_eq!(
        t.output,
        "+OK Begin TLS negotiation\r\n+OK Capability list follows\r\nUSER\r\nSASL PLAIN\r\n\
         RESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n+OK Send PASS\r\n"
    );
    assert_eq!(t.events, vec![Seen::StartTls, pass("alice", "pw")]);
}
