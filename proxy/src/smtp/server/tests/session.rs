//! Pipelining, login outcomes, STARTTLS, local commands and limits (protocols.md §6 rows 33-35,
//! 39, 40).

use super::*;

fn auth_plain() -> String {
    format!("AUTH PLAIN {}\r\n", plain_ir("u", "p"))
}

#[test]
fn pipelined_commands_after_auth_plain_are_the_leftover() {
    // Row 34: one write; the Login comes first, the rest is held byte for byte.
    let rest = "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n";
    let t = Scenario::new(format!("EHLO x\r\n{}{rest}", auth_plain())).check();
    assert_eq!(t.output, EHLO_REPLY);
    assert_eq!(t.events, vec![plain("u", "p", Some("x"))]);
    assert_eq!(t.leftover.as_deref(), Some(rest.as_bytes()));
    // Whatever it is: a partial line, bare LF, 8-bit, NUL, a BDAT chunk, a second AUTH (the
    // upstream answers that one: 503).
    let rest: &[u8] = b"AUTH PLAIN AHUAcA==\r\nBDAT 4 LAST\r\n\0\xff\r\nRSET\nMAIL FR";
    let t =
        Scenario::new([format!("EHLO x\r\n{}", auth_plain()).as_bytes(), rest].concat()).check();
    assert_eq!(t.leftover.as_deref(), Some(rest));
    // Nothing pipelined, nothing left.
    let t = Scenario::new(format!("EHLO x\r\n{}", auth_plain())).check();
    assert_eq!(t.leftover.as_deref(), Some(&b""[..]));
}

#[test]
fn pipelined_commands_after_a_failed_login_are_answered_here() {
    // Row 34, failing: the AUTH's 535, then MAIL/RCPT 530 and DATA 554 (RFC 2920 §3.1).
    let script = format!(
        "EHLO x\r\n{}MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
        auth_plain()
    );
    let t = Scenario::new(&script)
        .failing([LoginFailure::BadCredentials])
        .check();
    assert_eq!(
        t.output,
        format!(
            "{EHLO_REPLY}535 5.7.8 Authentication credentials invalid\r\n\
             530 5.7.0 Authentication required\r\n530 5.7.0 Authentication required\r\n\
             554 5.5.1 No valid recipients\r\n"
        )
    );
    assert_eq!(t.leftover, None);
    // A held BDAT chunk is dropped, not read as commands (RFC 3030 §2).
    let script = format!(
        "EHLO x\r\n{}MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 20 LAST\r\nQUIT\r\nAUTH PLAIN x\r\nNOOP\r\n",
        auth_plain()
    );
    let t = Scenario::new(&script)
        .failing([LoginFailure::Unavailable("try later".into())])
        .check();
    assert_eq!(
        t.output,
        format!(
            "{EHLO_REPLY}454 4.7.0 try later\r\n\
             530 5.7.0 Authentication required\r\n530 5.7.0 Authentication required\r\n\
             554 5.5.1 No valid recipients\r\n250 2.0.0 OK\r\n"
        )
    );
    assert!(!t.events.contains(&Seen::Close));
}

#[test]
fn login_failures_map_to_one_line_each() {
    let failure = |failure: LoginFailure| {
        Scenario::new(format!("EHLO x\r\n{}", auth_plain()))
            .failing([failure])
            .check()
            .output
            .strip_prefix(EHLO_REPLY)
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        failure(LoginFailure::BadCredentials),
        "535 5.7.8 Authentication credentials invalid\r\n"
    );
    assert_eq!(
        failure(LoginFailure::Unavailable(
            "Temporary authentication failure".into()
        )),
        "454 4.7.0 Temporary authentication failure\r\n"
    );
    assert_eq!(
        failure(LoginFailure::Reauthorize(
            "Account needs re-authorization: run 'mailoauth authorize alice'".into()
        )),
        "535 5.7.8 Account needs re-authorization: run 'mailoauth authorize alice'\r\n"
    );
    assert_eq!(
        failure(LoginFailure::UpstreamRejected("rejected the token".into())),
        "535 5.7.8 rejected the token\r\n"
    );
    // Texts become one line: no CR, LF or NUL can start a reply of their own.
    assert_eq!(
        failure(LoginFailure::Unavailable(
            "down\r\n250 2.0.0 OK\0x\r\n".into()
        )),
        "454 4.7.0 down  250 2.0.0 OK x\r\n"
    );
    // Empty texts get a default; long ones are cut (at a character boundary) to fit 512.
    assert_eq!(
        failure(LoginFailure::Reauthorize(" \r\n".into())),
        "535 5.7.8 Account needs re-authorization\r\n"
    );
    assert_eq!(
        failure(LoginFailure::UpstreamRejected(String::new())),
        "535 5.7.8 Upstream rejected the login\r\n"
    );
    assert_eq!(
        failure(LoginFailure::Unavailable(String::new())),
        "454 4.7.0 Temporary authentication failure\r\n"
    );
    let long = failure(LoginFailure::Unavailable("ä".repeat(5000)));
    assert_eq!(long, format!("454 4.7.0 {}\r\n", "ä".repeat(240)));
    assert!(long.len() <= 512);
}

#[test]
fn too_many_failed_logins_close_after_the_reply() {
    let script = format!("EHLO x\r\n{0}{0}{0}{0}", auth_plain());
    let t = Scenario::new(script)
        .failing([
            LoginFailure::BadCredentials,
            LoginFailure::Unavailable("x".into()),
            LoginFailure::UpstreamRejected("no".into()),
            LoginFailure::BadCredentials,
        ])
        .check();
    assert_eq!(
        t.output,
        format!(
            "{EHLO_REPLY}535 5.7.8 Authentication credentials invalid\r\n454 4.7.0 x\r\n\
             535 5.7.8 no\r\n421 4.7.0 Too many failed logins, closing connection\r\n"
        )
    );
    let login = plain("u", "p", Some("x"));
    assert_eq!(
        t.events,
        vec![login.clone(), login.clone(), login, Seen::Close]
    );
}

#[test]
fn starttls_drops_what_was_pipelined_after_it() {
    // Row 35: the EHLO behind STARTTLS is gone; after TLS, AUTH needs a new EHLO.
    let t = Scenario::new("EHLO x\r\nSTARTTLS\r\nEHLO x\r\n")
        .options(|o| o.starttls = true)
        .after_tls(format!("{}EHLO y\r\n{}", auth_plain(), auth_plain()))
        .check();
    let before = EHLO_REPLY.replace(
        "250 AUTH PLAIN LOGIN\r\n",
        "250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n",
    );
    assert_eq!(
        t.output,
        format!(
            "{before}220 2.0.0 Ready to start TLS\r\n503 5.5.1 Send EHLO first\r\n{EHLO_REPLY}"
        )
    );
    // The EHLO argument from before TLS is forgotten (RFC 3207 §4.2).
    assert_eq!(t.events, vec![Seen::StartTls, plain("u", "p", Some("y"))]);
    // Also half-way through an AUTH exchange's line.
    let t = Scenario::new("STARTTLS\r\nAUTH PLA")
        .options(|o| o.starttls = true)
        .after_tls("IN\r\nNOOP\r\n")
        .check();
    assert_eq!(
        t.output,
        "220 2.0.0 Ready to start TLS\r\n500 5.5.1 Command unrecognized\r\n250 2.0.0 OK\r\n"
    );
}

#[test]
fn starttls_refusals() {
    let t = Scenario::new("STARTTLS\r\nSTARTTLS now\r\n").check();
    assert_eq!(
        t.output,
        "502 5.5.1 STARTTLS is not available\r\n501 5.5.4 Syntax: STARTTLS\r\n"
    );
    let t = Scenario::new("STARTTLS\r\n")
        .options(|o| o.starttls = true)
        .after_tls("STARTTLS\r\nEHLO x\r\n")
        .check();
    assert_eq!(
        t.output,
        format!("220 2.0.0 Ready to start TLS\r\n503 5.5.1 TLS is active already\r\n{EHLO_REPLY}")
    );
    assert_eq!(t.events, vec![Seen::StartTls]);
}

#[test]
fn local_commands() {
    let t = Scenario::new(
        "NOOP\r\nnoop hello\r\nRSET\r\nHELP\r\nVRFY alice\r\nVRFY\r\nEXPN list\r\nXYZZY\r\n\r\n\
         TURN\r\nBURL imap://x\r\nQUIT\r\nNOOP\r\n",
    )
    .check();
    assert_eq!(
        t.output,
        "250 2.0.0 OK\r\n250 2.0.0 OK\r\n250 2.0.0 OK\r\n\
         214 2.0.0 Log in with AUTH PLAIN or AUTH LOGIN, then send mail\r\n\
         252 2.5.0 Cannot VRFY user, but will accept mail and try\r\n\
         501 5.5.4 Syntax: VRFY address\r\n502 5.5.1 EXPN is not supported\r\n\
         500 5.5.1 Command unrecognized\r\n500 5.5.1 Command unrecognized\r\n\
         500 5.5.1 Command unrecognized\r\n530 5.7.0 Authentication required\r\n221 2.0.0 Bye\r\n"
    );
    assert_eq!(t.events, vec![Seen::Close]);
}

#[test]
fn the_mail_transaction_before_auth() {
    // Row 33 (MAIL before AUTH); DATA/BDAT alone get 530, after a refused MAIL/RCPT 554; RSET
    // and EHLO start over.
    let t = Scenario::new(
        "DATA\r\nBDAT 0 LAST\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nRSET\r\nDATA\r\n\
         RCPT TO:<c@d>\r\nEHLO x\r\nDATA\r\n",
    )
    .check();
    assert_eq!(
        t.output,
        format!(
            "530 5.7.0 Authentication required\r\n530 5.7.0 Authentication required\r\n\
             530 5.7.0 Authentication required\r\n530 5.7.0 Authentication required\r\n\
             554 5.5.1 No valid recipients\r\n250 2.0.0 OK\r\n\
             530 5.7.0 Authentication required\r\n530 5.7.0 Authentication required\r\n\
             {EHLO_REPLY}530 5.7.0 Authentication required\r\n"
        )
    );
    assert!(t.events.is_empty());
}

#[test]
fn bdat_chunks_are_skipped_or_the_connection_closes() {
    // Row 39's binary chunk, refused before AUTH: its octets (CRLF, NUL, "QUIT") are dropped.
    let chunk = b"QUIT\r\n\0\xff..\r\nAUTH PLAIN AHUAcA==\r\n";
    let script = [
        format!("BDAT {}\r\n", chunk.len()).as_bytes(),
        chunk,
        b"BDAT 2 last\r\nNONOOP\r\n",
    ]
    .concat();
    let t = Scenario::new(script).check();
    assert_eq!(
        t.output,
        "530 5.7.0 Authentication required\r\n530 5.7.0 Authentication required\r\n250 2.0.0 OK\r\n"
    );
    assert!(t.events.is_empty());
    // 1 MiB is skipped; more closes.
    let t = Scenario::new(
        [
            format!("BDAT {MAX_SKIPPED_CHUNK}\r\n").as_bytes(),
            &vec![b'x'; MAX_SKIPPED_CHUNK as usize],
            b"NOOP\r\n",
        ]
        .concat(),
    )
    .run(Chunking::Random(7));
    assert_eq!(
        t.output,
        "530 5.7.0 Authentication required\r\n250 2.0.0 OK\r\n"
    );
    let t = Scenario::new(format!("BDAT {}\r\nNOOP\r\n", MAX_SKIPPED_CHUNK + 1)).check();
    assert_eq!(
        t.output,
        "530 5.7.0 Authentication required\r\n\
         421 4.7.0 Chunk too large to skip before authentication, closing connection\r\n"
    );
    assert_eq!(t.events, vec![Seen::Close]);
    // A size that cannot be read: where the chunk ends is unknown.
    for bad in [
        "BDAT",
        "BDAT x",
        "BDAT -1",
        "BDAT 99999999999999999999",
        "BDAT 5 NOW",
    ] {
        let t = Scenario::new(format!("{bad}\r\nNOOP\r\n")).check();
        assert_eq!(
            t.output,
            "501 5.5.4 Syntax: BDAT size [LAST]\r\n\
             421 4.7.0 Cannot find the end of the chunk, closing connection\r\n",
            "{bad}"
        );
        assert_eq!(t.events, vec![Seen::Close]);
    }
}

#[test]
fn bare_lf_and_nul_are_refused() {
    let t = Scenario::new("NOOP\nEHLO x\nNO\0OP\r\n\nNOOP\r\n").check();
    assert_eq!(
        t.output,
        "500 5.5.2 Syntax error: lines must end with CRLF\r\n\
         500 5.5.2 Syntax error: lines must end with CRLF\r\n500 5.5.2 Syntax error\r\n\
         500 5.5.2 Syntax error: lines must end with CRLF\r\n250 2.0.0 OK\r\n"
    );
}

#[test]
fn an_endless_line_closes() {
    // Row 40 / 28's SMTP twin: one over-long line gets 500 5.5.6 and is dropped; one that goes
    // on past 64 KiB closes the connection.
    let t = Scenario::new(format!("EHLO {}", "x".repeat(64 * 1024))).check();
    assert_eq!(
        t.output,
        "500 5.5.6 Line too long\r\n421 4.7.0 Line too long, closing connection\r\n"
    );
    assert_eq!(t.events, vec![Seen::Close]);
    // After the close, input is ignored.
    let mut core = ServerCore::new(options());
    core.feed(&vec![b'x'; 70_000]);
    assert!(matches!(core.next_event(), Some(ServerEvent::Close)));
    core.feed(b"NOOP\r\n");
    assert!(core.next_event().is_none());
    core.take_output();
    assert!(core.take_output().is_empty());
}

#[test]
fn too_many_commands_close() {
    let t = Scenario::new("NOOP\r\n".repeat(1000)).check();
    let expected =
        "250 2.0.0 OK\r\n".repeat(100) + "421 4.7.0 Too many commands, closing connection\r\n";
    assert_eq!(t.output, expected);
    assert_eq!(t.events, vec![Seen::Close]);
}

#[test]
fn too_many_errors_close() {
    let t = Scenario::new("MAIL FROM:<a@b>\r\n".repeat(11) + "NOOP\r\n").check();
    let expected = "530 5.7.0 Authentication required\r\n".repeat(10)
        + "421 4.7.0 Too many errors, closing connection\r\n";
    assert_eq!(t.output, expected);
    assert_eq!(t.events, vec![Seen::Close]);
    // Over-long lines count; failed logins do not.
    let t = Scenario::new(format!(
        "EHLO x\r\n{}NOOP {}\r\nXFOO\r\nAUTH FOO\r\nNOOP\r\n",
        auth_plain(),
        "y".repeat(3000)
    ))
    .options(|o| o.limits.max_errors = 3)
    .failing([LoginFailure::BadCredentials])
    .check();
    assert_eq!(
        t.output,
        format!(
            "{EHLO_REPLY}535 5.7.8 Authentication credentials invalid\r\n\
             500 5.5.6 Line too long\r\n500 5.5.1 Command unrecognized\r\n\
             504 5.5.4 Unrecognized authentication type\r\n\
             421 4.7.0 Too many errors, closing connection\r\n"
        )
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
    core.feed(format!("EHLO x\r\n{}NOOP\r\n", auth_plain()).as_bytes());
    assert!(matches!(core.next_event(), Some(ServerEvent::Login(_))));
    // While the login is pending, nothing is processed.
    assert!(core.next_event().is_none());
    core.tls_started();
    assert_eq!(core.take_output(), EHLO_REPLY.as_bytes());
    core.login_failed(LoginFailure::BadCredentials);
    assert!(core.next_event().is_none());
    assert_eq!(
        core.take_output(),
        b"535 5.7.8 Authentication credentials invalid\r\n250 2.0.0 OK\r\n"
    );
    assert!(!core.is_tls_active());
    let core = ServerCore::new(ServerOptions {
        tls_active: true,
        ..options()
    });
    assert!(core.is_tls_active());
}
