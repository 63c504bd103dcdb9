//! Pipelining, login outcomes, STLS (protocols.md §6 row 47) and limits.

use super::*;

#[test]
fn pipelined_commands_after_a_login_are_the_leftover() {
    let t = Scenario::new("CAPA\r\nUSER u\r\nPASS p\r\nSTAT\r\nLIST\r\n").check();
    assert!(t.output.ends_with(".\r\n+OK Send PASS\r\n"), "{}", t.output);
    assert_eq!(t.events, vec![pass("u", "p")]);
    assert_eq!(t.leftover.as_deref(), Some(&b"STAT\r\nLIST\r\n"[..]));
    // Byte for byte, whatever it is: a partial command, a bare LF, 8-bit, NUL.
    let rest: &[u8] = b"RETR 1\nTOP 1 \x00\xff\r\nUID";
    let mut script = b"AUTH PLAIN AHUAcA==\r\n".to_vec();
    script.extend_from_slice(rest);
    let t = Scenario::new(script).check();
    assert_eq!(t.events, vec![plain("u", "p")]);
    assert_eq!(t.leftover.as_deref(), Some(rest));
}

#[test]
fn pipelined_commands_after_a_failed_login_are_answered_here() {
    let t = Scenario::new("USER u\r\nPASS p\r\nSTAT\r\nRETR 1\r\nQUIT\r\n")
        .failing([LoginFailure::BadCredentials])
        .check();
    assert_eq!(
        t.output,
        "+OK Send PASS\r\n-ERR [AUTH] Authentication failed\r\n\
         -ERR Not authenticated: log in first\r\n-ERR Not authenticated: log in first\r\n\
         +OK Bye\r\n"
    );
    assert_eq!(t.events, vec![pass("u", "p"), Seen::Close]);
    assert_eq!(t.leftover, None);
}

#[test]
fn login_failures_map_to_rfc_3206_codes() {
    let failure = |failure: LoginFailure| {
        Scenario::new("USER u\r\nPASS p\r\n")
            .failing([failure])
            .check()
            .output
            .strip_prefix("+OK Send PASS\r\n")
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        failure(LoginFailure::BadCredentials),
        "-ERR [AUTH] Authentication failed\r\n"
    );
    assert_eq!(
        failure(LoginFailure::Unavailable(
            "Upstream temporarily unavailable".into()
        )),
        "-ERR [SYS/TEMP] Upstream temporarily unavailable\r\n"
    );
    assert_eq!(
        failure(LoginFailure::Reauthorize(
            "Account needs re-authorization: run 'mailoauth authorize alice'".into()
        )),
        "-ERR [SYS/PERM] Account needs re-authorization: run 'mailoauth authorize alice'\r\n"
    );
    assert_eq!(
        failure(LoginFailure::UpstreamRejected(
            "Upstream rejected OAuth token".into()
        )),
        "-ERR [AUTH] Upstream rejected OAuth token\r\n"
    );
    // Texts become one line: no CR, LF, NUL or other controls can start an answer of their own.
    assert_eq!(
        failure(LoginFailure::Unavailable(
            "down\r\n+OK Logged in\0\x1b[31m\u{85}x\r\n".into()
        )),
        "-ERR [SYS/TEMP] down  +OK Logged in  [31m x\r\n"
    );
    // Empty texts get a default; long ones are cut at a character boundary.
    assert_eq!(
        failure(LoginFailure::Reauthorize(" \r\n ".into())),
        "-ERR [SYS/PERM] Account needs re-authorization\r\n"
    );
    let long = failure(LoginFailure::UpstreamRejected("é".repeat(1000)));
    assert_eq!(long, format!("-ERR [AUTH] {}\r\n", "é".repeat(200)));
}

#[test]
fn failed_logins_close_at_the_limit() {
    let script = "USER u\r\nPASS 1\r\nAUTH PLAIN AHUAMg==\r\nUSER u\r\nPASS 3\r\nCAPA\r\n";
    let t = Scenario::new(script)
        .failing(vec![LoginFailure::BadCredentials; 3])
        .check();
    assert_eq!(
        t.output,
        "+OK Send PASS\r\n-ERR [AUTH] Authentication failed\r\n\
         -ERR [AUTH] Authentication failed\r\n+OK Send PASS\r\n\
         -ERR [AUTH] Authentication failed\r\n"
    );
    assert_eq!(
        t.events,
        vec![pass("u", "1"), plain("u", "2"), pass("u", "3"), Seen::Close]
    );
}

#[test]
fn stls_discards_what_was_pipelined_behind_it() {
    // Row 47: USER arrives in the same write as STLS and is not run after TLS.
    let t = Scenario::new("STLS\r\nUSER x\r\n")
        .options(|o| o.starttls = true)
        .after_tls("PASS secret\r\nCAPA\r\n")
        .check();
    assert_eq!(
        t.output,
        "+OK Begin TLS negotiation\r\n-ERR USER first\r\n+OK Capability list follows\r\n\
         USER\r\nSASL PLAIN\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n"
    );
    assert_eq!(t.events, vec![Seen::StartTls]);
    // A USER given before STLS is forgotten too.
    let t = Scenario::new("USER alice\r\nSTLS\r\n")
        .options(|o| o.starttls = true)
        .after_tls("PASS pw\r\n")
        .check();
    assert!(t.output.ends_with("-ERR USER first\r\n"), "{}", t.output);
    assert_eq!(t.events, vec![Seen::StartTls]);
}

#[test]
fn stls_when_not_available_or_active() {
    let t = Scenario::new("STLS\r\nSTLS now\r\n").check();
    assert_eq!(
        t.output,
        "-ERR STLS is not available\r\n-ERR No arguments allowed\r\n"
    );
    let t = Scenario::new("STLS\r\n")
        .options(|o| {
            o.tls_active = true;
            o.starttls = true;
        })
        .check();
    assert_eq!(t.output, "-ERR TLS is active already\r\n");
    let t = Scenario::new("STLS\r\n")
        .options(|o| o.starttls = true)
        .after_tls("STLS\r\n")
        .check();
    assert_eq!(
        t.output,
        "+OK Begin TLS negotiation\r\n-ERR TLS is active already\r\n"
    );
    assert_eq!(t.events, vec![Seen::StartTls]);
}

#[test]
fn a_line_over_the_limit_closes_whether_or_not_it_ends() {
    let long = "x".repeat(1023);
    // 1022 octets and CRLF: at the limit.
    let t = Scenario::new(format!("{}\r\n", &long[..1022])).check();
    assert_eq!(t.output, "-ERR Unknown command\r\n");
    let t = Scenario::new(format!("{long}\r\nCAPA\r\n")).check();
    assert_eq!(t.output, "-ERR Line too long\r\n");
    assert_eq!(t.events, vec![Seen::Close]);
    let t = Scenario::new("y".repeat(5000)).check();
    assert_eq!(t.output, "-ERR Line too long\r\n");
    assert_eq!(t.events, vec![Seen::Close]);
    // A SASL response line gets max_auth_line.
    let t = Scenario::new(format!("AUTH PLAIN\r\n{}", "A".repeat(12289))).check();
    assert_eq!(t.output, "+ \r\n-ERR Line too long\r\n");
    // Small limits.
    let t = Scenario::new("CAPA\r\nAUTH PLAIN AAAAAAAAAAAAAAAAAAAA\r\n")
        .options(|o| {
            o.limits.max_line = 2;
            o.limits.max_auth_line = 16;
        })
        .check();
    assert!(
        t.output.ends_with(".\r\n-ERR Line too long\r\n"),
        "{}",
        t.output
    );
}

#[test]
fn too_many_commands_or_errors_close() {
    let t = Scenario::new("CAPA\r\n".repeat(101)).check();
    assert_eq!(t.output.matches("+OK Capability list follows").count(), 100);
    assert!(
        t.output
            .ends_with(".\r\n-ERR Too many commands before login\r\n")
    );
    assert_eq!(t.events, vec![Seen::Close]);
    let t = Scenario::new("XYZZY\r\nUSER a\r\nXYZZY\r\nXYZZY\r\nCAPA\r\n")
        .options(|o| o.limits.max_errors = 3)
        .check();
    assert_eq!(
        t.output,
        "-ERR Unknown command\r\n+OK Send PASS\r\n-ERR Unknown command\r\n-ERR Unknown command\r\n"
    );
    assert_eq!(t.events, vec![Seen::Close]);
    // Nothing fed after the close is looked at.
    let mut core = ServerCore::new(options());
    core.take_output();
    core.feed(b"QUIT\r\n");
    assert!(matches!(core.next_event(), Some(ServerEvent::Close)));
    core.feed(b"CAPA\r\n");
    assert!(core.next_event().is_none());
    assert_eq!(core.take_output(), b"+OK Bye\r\n");
}

#[test]
fn calls_out_of_turn_are_ignored() {
    let mut core = ServerCore::new(options());
    core.take_output();
    core.login_failed(LoginFailure::BadCredentials);
    core.tls_started();
    assert!(!core.is_tls_active());
    assert_eq!(core.take_output(), b"");
    core.feed(b"CAPA\r\n");
    assert!(core.next_event().is_none());
    assert!(core.take_output().starts_with(b"+OK Capability"));
}
