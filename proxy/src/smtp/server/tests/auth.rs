//! AUTH PLAIN and AUTH LOGIN in every form, and their refusals (protocols.md §6 rows 31-33).

use super::*;

fn ehlo_then(rest: &str) -> String {
    format!("EHLO c.example\r\n{rest}")
}

const HELO: Option<&str> = Some("c.example");

#[test]
fn plain_with_and_without_initial_response() {
    // Row 31.
    let t = Scenario::new(ehlo_then(&format!(
        "AUTH PLAIN {}\r\n",
        plain_ir("alice", "s3cret")
    )))
    .check();
    assert_eq!(t.output, EHLO_REPLY);
    assert_eq!(t.events, vec![plain("alice", "s3cret", HELO)]);
    assert_eq!(t.leftover.as_deref(), Some(&b""[..]));
    // The empty challenge is `334 ` with its space.
    let t = Scenario::new(ehlo_then(&format!(
        "auth plain\r\n{}\r\n",
        plain_ir("alice", "pä ss")
    )))
    .check();
    assert_eq!(t.output, format!("{EHLO_REPLY}334 \r\n"));
    assert_eq!(t.events, vec![plain("alice", "pä ss", HELO)]);
    // authzid equal to the user; and not.
    let t = Scenario::new(ehlo_then(&format!(
        "AUTH PLAIN {}\r\nAUTH PLAIN {}\r\n",
        b64("bob\0alice\0pw"),
        b64("alice\0alice\0pw")
    )))
    .check();
    assert_eq!(
        t.output,
        format!("{EHLO_REPLY}535 5.7.8 Logging in as another user is not supported\r\n")
    );
    assert_eq!(t.events, vec![plain("alice", "pw", HELO)]);
}

#[test]
fn login_with_two_prompts_or_one() {
    // Row 32.
    let t = Scenario::new(ehlo_then(&format!(
        "AUTH LOGIN\r\n{}\r\n{}\r\n",
        b64("alice"),
        b64("correct horse")
    )))
    .check();
    assert_eq!(
        t.output,
        format!("{EHLO_REPLY}334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n")
    );
    assert_eq!(t.events, vec![login("alice", "correct horse", HELO)]);
    let t = Scenario::new(ehlo_then(&format!(
        "Auth Login {}\r\n{}\r\n",
        b64("alice"),
        b64("pw")
    )))
    .check();
    assert_eq!(t.output, format!("{EHLO_REPLY}334 UGFzc3dvcmQ6\r\n"));
    assert_eq!(t.events, vec![login("alice", "pw", HELO)]);
}

#[test]
fn refusals() {
    // Row 33: `*` cancel at each prompt, bad base64, unknown mechanisms, MAIL before AUTH.
    let script = ehlo_then(
        "AUTH PLAIN\r\n*\r\nAUTH LOGIN\r\n*\r\nAUTH LOGIN YWxpY2U=\r\n*\r\n\
         AUTH PLAIN AAA=BBB\r\nAUTH PLAIN\r\n!!\r\nAUTH LOGIN\r\nYW xp\r\n\
         AUTH FOO\r\nAUTH XOAUTH2 dXNlcj0=\r\nAUTH CRAM-MD5\r\nMAIL FROM:<a@b>\r\n",
    );
    let t = Scenario::new(script)
        .options(|o| o.limits.max_errors = 100)
        .check();
    assert_eq!(
        t.output,
        format!(
            "{EHLO_REPLY}334 \r\n501 5.7.0 Authentication cancelled\r\n\
             334 VXNlcm5hbWU6\r\n501 5.7.0 Authentication cancelled\r\n\
             334 UGFzc3dvcmQ6\r\n501 5.7.0 Authentication cancelled\r\n\
             501 5.5.2 Invalid base64 data\r\n334 \r\n501 5.5.2 Invalid base64 data\r\n\
             334 VXNlcm5hbWU6\r\n501 5.5.2 Invalid base64 data\r\n\
             504 5.5.4 Unrecognized authentication type\r\n\
             504 5.5.4 Unrecognized authentication type\r\n\
             504 5.5.4 Unrecognized authentication type\r\n\
             530 5.7.0 Authentication required\r\n"
        )
    );
    assert!(t.events.is_empty());
}

#[test]
fn empty_and_malformed_credentials() {
    // `=` is the empty initial response; an empty PLAIN message has no NULs, so it fails.
    let script = ehlo_then(&format!(
        "AUTH PLAIN =\r\nAUTH PLAIN\r\n\r\nAUTH PLAIN {}\r\nAUTH PLAIN {}\r\n\
         AUTH LOGIN =\r\n{}\r\nAUTH LOGIN\r\n{}\r\n=\r\nAUTH LOGIN {}\r\n{}\r\n",
        b64("\0alice\0"),
        STANDARD.encode(b"\0alice\0\xff"),
        b64("pw"),
        b64("alice"),
        b64("al\x07ice"),
        b64("pass\0word"),
    ));
    let t = Scenario::new(script)
        .options(|o| o.limits.max_errors = 100)
        .check();
    assert_eq!(
        t.output,
        format!(
            "{EHLO_REPLY}535 5.7.8 Empty or malformed credentials\r\n334 \r\n\
             535 5.7.8 Empty or malformed credentials\r\n\
             535 5.7.8 Empty or malformed credentials\r\n\
             535 5.7.8 User name and password must be UTF-8\r\n\
             334 UGFzc3dvcmQ6\r\n535 5.7.8 Empty or malformed credentials\r\n\
             334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n535 5.7.8 Empty or malformed credentials\r\n\
             334 UGFzc3dvcmQ6\r\n535 5.7.8 Invalid characters in the user name or password\r\n"
        )
    );
    assert!(t.events.is_empty());
}

#[test]
fn auth_syntax_and_sequence() {
    let t = Scenario::new(format!(
        "AUTH PLAIN {ir}\r\nEHLO x\r\nAUTH\r\nAUTH PLAIN {ir} extra\r\nAUTH  PLAIN  {ir}\r\n",
        ir = plain_ir("u", "p")
    ))
    .check();
    assert_eq!(
        t.output,
        format!(
            "503 5.5.1 Send EHLO first\r\n{EHLO_REPLY}\
             501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n\
             501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"
        )
    );
    assert_eq!(t.events, vec![plain("u", "p", Some("x"))]);
}

#[test]
fn auth_before_tls_when_tls_is_required() {
    let script = format!(
        "EHLO x\r\nAUTH PLAIN {}\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSTARTTLS\r\n",
        plain_ir("u", "p")
    );
    let t = Scenario::new(&script)
        .options(|o| {
            o.starttls = true;
            o.require_tls = true;
        })
        .after_tls(format!("EHLO y\r\nAUTH PLAIN {}\r\n", plain_ir("u", "p")))
        .check();
    let before = EHLO_REPLY.replace("250 AUTH PLAIN LOGIN\r\n", "250 STARTTLS\r\n");
    assert_eq!(
        t.output,
        format!(
            "{before}530 5.7.0 Must issue a STARTTLS command first\r\n\
             530 5.7.0 Must issue a STARTTLS command first\r\n\
             530 5.7.0 Must issue a STARTTLS command first\r\n\
             554 5.5.1 No valid recipients\r\n220 2.0.0 Ready to start TLS\r\n{EHLO_REPLY}"
        )
    );
    assert_eq!(t.events, vec![Seen::StartTls, plain("u", "p", Some("y"))]);
}

#[test]
fn sasl_response_lines_may_be_long_command_lines_not() {
    // Row 40: a response line up to 12288 octets is read; one more gets 500 5.5.6.
    let password = "p".repeat(9000);
    let ir = plain_ir("u", &password);
    let t = Scenario::new(ehlo_then(&format!("AUTH PLAIN\r\n{ir}\r\n"))).check();
    assert_eq!(t.events, vec![plain("u", &password, HELO)]);
    // An initial response gets the same allowance.
    let t = Scenario::new(ehlo_then(&format!("AUTH PLAIN {ir}\r\n"))).check();
    assert_eq!(t.events, vec![plain("u", &password, HELO)]);
    // 12288 octets with CRLF are read (and are not base64: 12286 is no multiple of 4); 12289
    // are not, and the exchange ends there.
    let fits = "A".repeat(12286);
    let t = Scenario::new(ehlo_then(&format!("AUTH PLAIN\r\n{fits}\r\n"))).check();
    assert_eq!(
        t.output,
        format!("{EHLO_REPLY}334 \r\n501 5.5.2 Invalid base64 data\r\n")
    );
    let over = "A".repeat(12288);
    let t = Scenario::new(ehlo_then(&format!("AUTH PLAIN\r\n{over}\r\nNOOP\r\n"))).check();
    assert_eq!(
        t.output,
        format!(
            "{EHLO_REPLY}334 \r\n500 5.5.6 Authentication exchange line is too long\r\n\
             250 2.0.0 OK\r\n"
        )
    );
    // Another command's line is held to 2048 octets.
    let t = Scenario::new(format!("NOOP {}\r\nNOOP\r\n", "x".repeat(2041))).check();
    assert_eq!(t.output, "250 2.0.0 OK\r\n250 2.0.0 OK\r\n");
    let t = Scenario::new(format!("NOOP {}\r\nNOOP\r\n", "x".repeat(2042))).check();
    assert_eq!(t.output, "500 5.5.6 Line too long\r\n250 2.0.0 OK\r\n");
}

#[test]
fn bare_lf_in_the_exchange_ends_it() {
    let t = Scenario::new(ehlo_then(&format!(
        "AUTH PLAIN\r\n{}\nNOOP\r\n",
        plain_ir("u", "p")
    )))
    .check();
    assert_eq!(
        t.output,
        format!(
            "{EHLO_REPLY}334 \r\n500 5.5.2 Syntax error: lines must end with CRLF\r\n\
             250 2.0.0 OK\r\n"
        )
    );
    assert!(t.events.is_empty());
}
